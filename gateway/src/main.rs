//! `gateway`: run a node, mint a development token, or print the default
//! configuration. Errors are reported with their context and exit status 1.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use gateway::config::{documented_defaults, Cli, Command, Config, LogFormat};
use gateway::{fds, Node};
use protocol::{DeviceId, UserId};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gateway: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    // Before anything creates a file: the data dir and what is in it are
    // private whatever the umask.
    fds::private_umask();
    let cli = Cli::parse();
    if cli.version {
        print!("{}", version());
        return Ok(());
    }
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return check_config(file);
    }
    if cli.print_config {
        print!("{}", documented_defaults());
        // On stderr: the derived value is this machine's, not a default.
        let limit = fds::raise_open_file_limit();
        let connections = fds::connection_limit(0, limit)?;
        let limit = limit.map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
        eprintln!(
            "# here: open-file limit {limit}, reserve {}, so max_connections = 0 means {connections}",
            fds::FD_RESERVE
        );
        return Ok(());
    }
    let config = cli.load().context("configuration")?;
    init_logging(&config);
    match &cli.command {
        Some(Command::Token(args)) => {
            let data_dir = &config.node.data_dir;
            if config.dev_key_in_keys_dir() {
                anyhow::bail!(
                    "auth.keys_dir is {}, where the development key would be created: \
                     `gateway token` never writes into a configured keys directory",
                    config.keys_dir().display()
                );
            }
            let signer = gateway_auth::keys::load_or_create_dev_signer(data_dir)
                .with_context(|| format!("signing key in {}", data_dir.display()))?;
            if !config.uses_dev_key() {
                tracing::warn!(
                    keys_dir = %config.keys_dir().display(),
                    "this configuration does not accept the development key (auth.dev_key): \
                     a node started with it refuses this token with AUTH_UNKNOWN_KEY"
                );
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            println!("{}", signer.mint(UserId(args.user), DeviceId(args.device), now, args.ttl));
            Ok(())
        }
        // Answered before the configuration is loaded.
        Some(Command::CheckConfig { .. }) => Ok(()),
        None => Node::start(&config)?.run_until_stopped(|| cli.load().context("configuration")),
    }
}

/// `gateway --version`: what this binary is and what this host lets it run.
fn version() -> String {
    let uring = match gateway_uring::probe() {
        Ok(()) => "available".to_owned(),
        Err(why) => format!("unavailable ({why})"),
    };
    format!(
        "gateway {} (commit {})\n\
         protocol: v{}-v{}\n\
         drivers: epoll (default), io_uring (on this host: {uring})\n\
         built with: rustls (ring) for wss and links, fjall (embedded store), tonic (remote store and push), \
         Redis (fleet registry, store engine), SigV4 presigning (media)\n",
        env!("CARGO_PKG_VERSION"),
        env!("GATEWAY_GIT_COMMIT"),
        protocol::limits::VERSION_MIN,
        protocol::limits::VERSION_MAX,
    )
}

/// `gateway check-config FILE`: parse and validate as at start, then list
/// what differs from the defaults.
fn check_config(file: &std::path::Path) -> Result<()> {
    let config = Config::read(Some(file))?;
    config.validate()?;
    let differences = gateway::config::differences(&config);
    println!("{}: valid; {} key(s) differ from the defaults", file.display(), differences.len());
    for difference in differences {
        let default = difference.default.unwrap_or_else(|| "unset".to_owned());
        println!("{} = {}    # default: {default}", difference.key, difference.value);
    }
    Ok(())
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
