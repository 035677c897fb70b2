//! The `gateway` command line: flags over the config file, and subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::{Config, ConfigError};

/// Command line of the `gateway` binary. Each flag overrides the config file
/// and has an environment variable; a flag on the command line wins over its
/// variable.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "gateway",
    about = "Connection gateway node: thread-per-core WebSocket daemon",
    disable_version_flag = true
)]
pub struct Cli {
    /// Config file (TOML); without one the built-in defaults apply.
    #[arg(long, env = "GATEWAY_CONFIG", value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Client WebSocket listener, ip:port (listen.ws).
    #[arg(long, env = "GATEWAY_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin HTTP listener, ip:port (listen.admin).
    #[arg(long, env = "GATEWAY_ADMIN", value_name = "ADDR")]
    pub admin: Option<String>,
    /// State directory (node.data_dir).
    #[arg(long, env = "GATEWAY_DATA_DIR", value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Worker threads, 0 = one per core (node.workers).
    #[arg(long, env = "GATEWAY_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// The workers' IO driver (node.driver).
    #[arg(long, env = "GATEWAY_DRIVER", value_name = "DRIVER")]
    pub driver: Option<crate::config::Driver>,
    /// Refuse to start when the driver cannot run (node.driver_required).
    #[arg(long, env = "GATEWAY_DRIVER_REQUIRED", value_parser = clap::builder::BoolishValueParser::new())]
    pub driver_required: bool,
    /// The embedded store's writer threads (store.writers).
    #[arg(long, env = "GATEWAY_STORE_WRITERS", value_name = "N")]
    pub store_writers: Option<usize>,
    /// Node id (node.id).
    #[arg(long, env = "GATEWAY_NODE_ID", value_name = "ID")]
    pub node_id: Option<u32>,
    /// Serve the `/echo` route (session.echo_route = true).
    #[arg(long, env = "GATEWAY_ECHO", value_parser = clap::builder::BoolishValueParser::new())]
    pub echo: bool,
    /// Log filter, RUST_LOG syntax (log.filter).
    #[arg(long, env = "GATEWAY_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Print the default configuration as commented TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Print the version, the commit it was built from, what it was built
    /// with and which IO drivers this host can run, and exit.
    #[arg(short = 'V', long)]
    pub version: bool,
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands of [`Cli`].
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Mint a signed session token for a device with the node's signing key.
    Token(TokenArgs),
    /// Check a config file (parse and validate, as at start) and print the
    /// keys it sets to other values than the defaults; exit status 1 if it is
    /// invalid. Flags and GATEWAY_* variables are not applied.
    CheckConfig {
        /// The config file (TOML).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `gateway token --user U --device D [--ttl SECS]`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct TokenArgs {
    /// User id.
    #[arg(long, value_name = "U")]
    pub user: u64,
    /// Device id (from 1).
    #[arg(long, value_name = "D", value_parser = clap::value_parser!(u32).range(1..))]
    pub device: u32,
    /// Lifetime of the token, seconds (from 1: a node refuses a token that
    /// expires when it is issued).
    #[arg(long, value_name = "SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl: u64,
}

impl Cli {
    /// Applies the flags (and their environment variables) that were given
    /// over `config`; call after reading the file.
    pub fn apply(&self, config: &mut Config) {
        if let Some(listen) = &self.listen {
            config.listen.ws.clone_from(listen);
        }
        if let Some(admin) = &self.admin {
            config.listen.admin.clone_from(admin);
        }
        if let Some(data_dir) = &self.data_dir {
            config.node.data_dir.clone_from(data_dir);
        }
        if let Some(workers) = self.workers {
            config.node.workers = workers;
        }
        if let Some(driver) = self.driver {
            config.node.driver = driver;
        }
        if self.driver_required {
            config.node.driver_required = true;
        }
        if let Some(writers) = self.store_writers {
            config.store.writers = writers;
        }
        if let Some(node_id) = self.node_id {
            config.node.id = node_id;
        }
        if self.echo {
            config.session.echo_route = true;
        }
        if let Some(log) = &self.log {
            config.log.filter.clone_from(log);
        }
    }

    /// The effective configuration: the `--config` file (or the defaults),
    /// then [`Cli::apply`], then [`Config::validate`].
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = Config::read(self.config.as_deref())?;
        self.apply(&mut config);
        config.validate()?;
        Ok(config)
    }
}
