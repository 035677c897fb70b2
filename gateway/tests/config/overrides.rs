//! Command-line flags and `GATEWAY_*` variables over the file, and the
//! subcommands' arguments.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use clap::Parser;
use gateway::config::{Cli, Command, Config, ConfigError, Driver, LogFormat, TokenArgs};

use super::{TempFile, FULL};

/// Every variable `Cli` reads.
const ENV_VARS: &[&str] = &[
    "GATEWAY_CONFIG",
    "GATEWAY_LISTEN",
    "GATEWAY_ADMIN",
    "GATEWAY_DATA_DIR",
    "GATEWAY_WORKERS",
    "GATEWAY_NODE_ID",
    "GATEWAY_ECHO",
    "GATEWAY_LOG",
    "GATEWAY_DRIVER",
    "GATEWAY_DRIVER_REQUIRED",
];

/// The process environment is shared by the tests of this binary (threads
/// under `cargo test`): every test that parses a command line holds this lock,
/// so one test's variables never leak into another's parse.
static ENV: Mutex<()> = Mutex::new(());

/// Holds the environment lock with the `GATEWAY_*` variables cleared, sets
/// `vars`, and clears them all again when dropped.
struct Env<'a> {
    _lock: MutexGuard<'a, ()>,
}

impl Env<'_> {
    fn with(vars: &[(&str, &str)]) -> Self {
        let lock = ENV.lock().unwrap_or_else(PoisonError::into_inner);
        ENV_VARS.iter().for_each(|var| std::env::remove_var(var));
        for (key, value) in vars {
            std::env::set_var(key, value);
        }
        Self { _lock: lock }
    }

    fn clean() -> Self {
        Self::with(&[])
    }
}

impl Drop for Env<'_> {
    fn drop(&mut self) {
        ENV_VARS.iter().for_each(|var| std::env::remove_var(var));
    }
}

fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("gateway").chain(args.iter().copied()))
}

#[test]
fn cli_overrides_win_over_the_file() {
    let _env = Env::clean();
    let file = TempFile::new("cli", FULL);
    let c = cli(&[
        "--config",
        file.arg(),
        "--listen",
        "127.0.0.1:9000",
        "--admin",
        "127.0.0.1:9001",
        "--data-dir",
        "/tmp/gw",
        "--workers",
        "2",
        "--node-id",
        "99",
        "--log",
        "debug",
        "--driver",
        "io_uring",
        "--driver-required",
    ])
    .unwrap()
    .load()
    .unwrap();
    assert_eq!(c.listen.ws, "127.0.0.1:9000");
    assert_eq!(c.listen.admin, "127.0.0.1:9001");
    assert_eq!(c.node.data_dir, Path::new("/tmp/gw"));
    assert_eq!((c.node.workers, c.node.id), (2, 99));
    assert_eq!(c.log.filter, "debug");
    assert_eq!((c.node.driver, c.node.driver_required), (Driver::IoUring, true));
    // Keys without a flag keep the file's values.
    assert_eq!(c.listen.wss.as_deref(), Some("0.0.0.0:443"));
    assert_eq!(c.session.heartbeat_ms, 45_000);
    assert_eq!(c.log.format, LogFormat::Json);

    let mut file_config = Config::read(Some(file.path())).unwrap();
    file_config.session.echo_route = false;
    cli(&["--echo"]).unwrap().apply(&mut file_config);
    assert!(file_config.session.echo_route);
}

#[test]
fn without_flags_the_file_and_defaults_stand() {
    let _env = Env::clean();
    let parsed = cli(&[]).unwrap();
    assert_eq!(parsed.config, None);
    assert!(!parsed.echo && !parsed.print_config && parsed.command.is_none());
    assert_eq!(parsed.load().unwrap(), Config::default());
    let file = TempFile::new("noflags", FULL);
    let parsed = cli(&["--config", file.arg()]).unwrap();
    assert_eq!(parsed.load().unwrap(), Config::load(Some(file.path())).unwrap());
}

#[test]
fn overrides_are_validated() {
    let _env = Env::clean();
    let err = cli(&["--listen", "not-an-address"]).unwrap().load().unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { key: "listen.ws", .. }), "{err:?}");
    let err = cli(&["--admin", "127.0.0.1:7700"]).unwrap().load().unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { key: "listen.admin", .. }), "{err:?}");
    // A flag can repair a file value before validation.
    let file = TempFile::new("repair", "[listen]\nws = \"bad\"\n");
    let c = cli(&["--config", file.arg(), "--listen", "127.0.0.1:7000"]).unwrap().load().unwrap();
    assert_eq!(c.listen.ws, "127.0.0.1:7000");
    // Flag values clap itself refuses.
    assert!(cli(&["--workers", "-1"]).is_err());
    assert!(cli(&["--node-id", "x"]).is_err());
    assert!(cli(&["--bogus"]).is_err());
}

#[test]
fn environment_variables_override_the_file() {
    let file = TempFile::new("env", FULL);
    let _env = Env::with(&[
        ("GATEWAY_CONFIG", file.arg()),
        ("GATEWAY_LISTEN", "127.0.0.1:8100"),
        ("GATEWAY_ADMIN", "127.0.0.1:8101"),
        ("GATEWAY_DATA_DIR", "/srv/gw"),
        ("GATEWAY_WORKERS", "5"),
        ("GATEWAY_NODE_ID", "12"),
        ("GATEWAY_ECHO", "true"),
        ("GATEWAY_LOG", "trace"),
        ("GATEWAY_DRIVER", "io_uring"),
        ("GATEWAY_DRIVER_REQUIRED", "1"),
    ]);
    let parsed = cli(&[]).unwrap();
    assert_eq!(parsed.config.as_deref(), Some(file.path()));
    let c = parsed.load().unwrap();
    assert_eq!((c.listen.ws.as_str(), c.listen.admin.as_str()), ("127.0.0.1:8100", "127.0.0.1:8101"));
    assert_eq!((c.node.data_dir.as_path(), c.node.workers, c.node.id), (Path::new("/srv/gw"), 5, 12));
    assert!(c.session.echo_route);
    assert_eq!(c.log.filter, "trace");
    assert_eq!((c.node.driver, c.node.driver_required), (Driver::IoUring, true));
    assert_eq!(c.session.heartbeat_ms, 45_000, "from the file");

    // A flag on the command line wins over its variable.
    let c = cli(&["--workers", "1", "--listen", "127.0.0.1:8200"]).unwrap().load().unwrap();
    assert_eq!((c.node.workers, c.listen.ws.as_str()), (1, "127.0.0.1:8200"));
    assert_eq!(c.node.id, 12, "still from the environment");
}

#[test]
fn echo_variable_takes_boolean_words() {
    for (value, echo) in [
        ("1", true),
        ("true", true),
        ("yes", true),
        ("on", true),
        ("0", false),
        ("false", false),
        ("no", false),
    ] {
        let _env = Env::with(&[("GATEWAY_ECHO", value)]);
        assert_eq!(cli(&[]).unwrap().echo, echo, "GATEWAY_ECHO={value}");
    }
    let _env = Env::with(&[("GATEWAY_ECHO", "maybe")]);
    assert!(cli(&[]).is_err());
}

#[test]
fn token_subcommand_parses() {
    let _env = Env::clean();
    let parsed = cli(&["token", "--user", "42", "--device", "2"]).unwrap();
    assert_eq!(parsed.command, Some(Command::Token(TokenArgs { user: 42, device: 2, ttl: 86_400 })));
    let parsed =
        cli(&["--config", "g.toml", "token", "--user", "1", "--device", "1", "--ttl", "60"]).unwrap();
    assert_eq!(parsed.command, Some(Command::Token(TokenArgs { user: 1, device: 1, ttl: 60 })));
    assert_eq!(parsed.config.as_deref(), Some(Path::new("g.toml")));
    // --config and --data-dir also work after the subcommand (the key lives there).
    let parsed =
        cli(&["token", "--user", "1", "--device", "3", "--config", "h.toml", "--data-dir", "/d"]).unwrap();
    assert_eq!(parsed.config.as_deref(), Some(Path::new("h.toml")));
    assert_eq!(parsed.data_dir.as_deref(), Some(Path::new("/d")));
    for bad in [
        &["token", "--user", "1"][..],
        &["token", "--device", "1"],
        &["token", "--user", "1", "--device", "0"],
        &["token", "--user", "x", "--device", "1"],
        &["token", "--user", "1", "--device", "1", "--ttl", "-5"],
        &["token", "--user", "1", "--device", "1", "--ttl", "0"],
    ] {
        assert!(cli(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn print_config_flag_parses() {
    let _env = Env::clean();
    assert!(cli(&["--print-config"]).unwrap().print_config);
    // clap's own consistency checks of the derive (names, conflicts, env).
    <Cli as clap::CommandFactory>::command().debug_assert();
}
