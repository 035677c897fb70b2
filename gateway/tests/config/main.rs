//! The node configuration: defaults, the TOML file, validation rules, the
//! documented defaults, and command-line and environment overrides.

// Test code: a panic is a failed assertion. (clippy.toml's test allowances
// cover `#[test]` functions, not the helpers here.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod overrides;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::config::{documented_defaults, Config, ConfigError, DevKey, Driver, LogFormat, MAX_WORKERS};

/// A config file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("gateway-config-test-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The key an `Invalid` error names (panics on any other outcome).
fn invalid_key(config: &Config) -> &'static str {
    match config.validate() {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

const FULL: &str = r#"
[node]
id = 7
data_dir = "/var/lib/gateway"
workers = 6
pin_workers = false
driver = "io_uring"
driver_required = true
uring_buffers = 1024
uring_buffer_size = 8192
uring_entries = 2048

[listen]
ws = "0.0.0.0:80"
wss = "0.0.0.0:443"
admin = "10.0.0.5:9100"
backlog = 65535
max_connections = 500000
accept_resume_ratio = 0.8

[tls]
cert = "/etc/gateway/cert.pem"
key = "/etc/gateway/key.pem"
session_tickets = false

[session]
handshake_timeout_ms = 3000
auth_timeout_ms = 8000
heartbeat_ms = 45000
heartbeat_misses = 2
max_message = 131072
max_payload = 32768
outbound_queue_bytes = 1048576
outbound_pause_bytes = 524288
write_stall_ms = 20000
linger_ms = 1500
echo_route = true

[limits]
connections_per_ip_per_sec = 10
connections_per_ip_burst = 20
frames_per_sec = 50
frames_burst = 100
worker_inbox = 1024
logins_in_flight = 64
login_queue = 0

[drain]
window_ms = 10000
deadline_ms = 15000

[auth]
keys_dir = "/etc/gateway/keys"
leeway_secs = 30
dev_key = "off"

[log]
filter = "warn,gateway=debug"
format = "json"
"#;

#[test]
fn defaults_are_the_documented_values_and_valid() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(Config::load(None).unwrap(), c);
    assert_eq!(
        (c.node.id, c.node.data_dir.as_path(), c.node.workers, c.node.pin_workers),
        (1, Path::new("./data"), 0, true)
    );
    assert_eq!((c.node.driver, c.node.driver_required), (Driver::Epoll, false));
    assert_eq!((c.node.uring_buffers, c.node.uring_buffer_size, c.node.uring_entries), (64, 16_384, 4096));
    assert_eq!(
        (c.listen.ws.as_str(), c.listen.wss.as_deref(), c.listen.admin.as_str()),
        ("127.0.0.1:7700", None, "127.0.0.1:7701")
    );
    assert_eq!((c.listen.backlog, c.listen.max_connections, c.listen.accept_resume_ratio), (4096, 0, 0.9));
    assert_eq!((c.tls.cert.as_deref(), c.tls.key.as_deref(), c.tls.session_tickets), (None, None, true));
    let s = &c.session;
    assert_eq!(
        (s.handshake_timeout_ms, s.auth_timeout_ms, s.heartbeat_ms, s.heartbeat_misses),
        (5000, 10000, 30000, 3)
    );
    assert_eq!((s.max_message, s.max_payload), (266_240, 65_536));
    assert_eq!(
        (s.outbound_queue_bytes, s.outbound_pause_bytes, s.write_stall_ms, s.echo_route),
        (262_144, 131_072, 30_000, false)
    );
    assert_eq!(s.max_message, protocol::limits::MAX_CLIENT_MESSAGE_LEN);
    assert_eq!(s.max_payload, protocol::limits::MAX_PAYLOAD);
    let l = &c.limits;
    assert_eq!(
        (
            l.connections_per_ip_per_sec,
            l.connections_per_ip_burst,
            l.frames_per_sec,
            l.frames_burst,
            l.worker_inbox,
            l.logins_in_flight,
            l.login_queue
        ),
        (50, 200, 100, 400, 4_096, 4_096, 16_384)
    );
    assert_eq!((c.drain.window_ms, c.drain.deadline_ms), (30_000, 60_000));
    assert_eq!((c.auth.keys_dir.as_deref(), c.auth.leeway_secs, c.auth.dev_key), (None, 60, DevKey::Auto));
    assert_eq!((c.log.filter.as_str(), c.log.format), ("info", LogFormat::Text));
}

#[test]
fn dev_key_is_auto_on_or_off_and_auto_follows_keys_dir() {
    let parse =
        |value: &str| Config::from_toml(&format!("[auth]\ndev_key = {value}\n")).map(|c| c.auth.dev_key);
    assert_eq!(parse("\"auto\"").unwrap(), DevKey::Auto);
    assert_eq!(parse("\"on\"").unwrap(), DevKey::On);
    assert_eq!(parse("\"off\"").unwrap(), DevKey::Off);
    // The booleans of earlier versions keep their meaning.
    assert_eq!((parse("true").unwrap(), parse("false").unwrap()), (DevKey::On, DevKey::Off));
    let err = parse("\"yes\"").unwrap_err().to_string();
    assert!(err.contains("\"auto\", \"on\" or \"off\""), "{err}");

    let mut c = Config::default();
    assert!(c.uses_dev_key(), "no keys configured: the dev key");
    c.auth.keys_dir = Some("/etc/gateway/keys".into());
    assert!(!c.uses_dev_key(), "a keys directory and no explicit ask: no dev key");
    c.auth.dev_key = DevKey::On;
    assert!(c.uses_dev_key());
    c.validate().unwrap();
    c.auth.dev_key = DevKey::Off;
    c.auth.keys_dir = None;
    assert!(!c.uses_dev_key());

    // "on" with keys_dir = where the dev key lives would mix it into the
    // configured keys.
    c.auth.dev_key = DevKey::On;
    c.auth.keys_dir = Some(c.node.data_dir.join("keys"));
    assert_eq!(invalid_key(&c), "auth.dev_key");
    c.auth.dev_key = DevKey::Auto;
    c.validate().unwrap();
    assert!(!c.uses_dev_key());
}

#[test]
fn derived_values() {
    let mut c = Config::default();
    assert_eq!(c.keys_dir(), Path::new("./data/keys"));
    c.auth.keys_dir = Some("/k".into());
    assert_eq!(c.keys_dir(), Path::new("/k"));
    assert!(c.worker_threads() >= 1, "0 resolves to the core count");
    c.node.workers = 3;
    assert_eq!(c.worker_threads(), 3);
    assert_eq!(c.listen.ws_addr().unwrap(), "127.0.0.1:7700".parse().unwrap());
    assert_eq!(c.listen.admin_addr().unwrap().port(), 7701);
    assert_eq!(c.listen.wss_addr().unwrap(), None);
    assert_eq!(c.listen.accept_resume_below(), None, "unlimited");
    c.listen.max_connections = 1000;
    assert_eq!(c.listen.accept_resume_below(), Some(900));
    c.listen.max_connections = 1;
    assert_eq!(c.listen.accept_resume_below(), Some(1), "resumes once empty");
    c.listen.accept_resume_ratio = 1.0;
    c.listen.max_connections = 10;
    assert_eq!(c.listen.accept_resume_below(), Some(10));
    assert_eq!(c.session.heartbeat(), Duration::from_secs(30));
    assert_eq!(c.session.heartbeat_timeout(), Duration::from_secs(90));
    assert_eq!(c.session.handshake_timeout(), Duration::from_secs(5));
    assert_eq!(c.session.auth_timeout(), Duration::from_secs(10));
    assert_eq!(c.session.write_stall(), Duration::from_secs(30));
    assert_eq!(c.session.linger(), Duration::from_secs(2));
    assert_eq!((c.drain.window(), c.drain.deadline()), (Duration::from_secs(30), Duration::from_secs(60)));
}

#[test]
fn a_full_file_parses() {
    let file = TempFile::new("full", FULL);
    let c = Config::load(Some(file.path())).unwrap();
    assert_eq!(
        (c.node.id, c.node.data_dir.as_path(), c.node.workers, c.node.pin_workers),
        (7, Path::new("/var/lib/gateway"), 6, false)
    );
    assert_eq!((c.node.driver, c.node.driver_required), (Driver::IoUring, true));
    assert_eq!((c.node.uring_buffers, c.node.uring_buffer_size, c.node.uring_entries), (1024, 8192, 2048));
    assert_eq!(c.listen.ws, "0.0.0.0:80");
    assert_eq!(c.listen.wss.as_deref(), Some("0.0.0.0:443"));
    assert_eq!(c.listen.admin, "10.0.0.5:9100");
    assert_eq!(
        (c.listen.backlog, c.listen.max_connections, c.listen.accept_resume_ratio),
        (65535, 500_000, 0.8)
    );
    assert_eq!(c.tls.cert.as_deref(), Some(Path::new("/etc/gateway/cert.pem")));
    assert_eq!(c.tls.key.as_deref(), Some(Path::new("/etc/gateway/key.pem")));
    assert!(!c.tls.session_tickets);
    let s = &c.session;
    assert_eq!(
        (s.handshake_timeout_ms, s.auth_timeout_ms, s.heartbeat_ms, s.heartbeat_misses),
        (3000, 8000, 45000, 2)
    );
    assert_eq!(
        (s.max_message, s.max_payload, s.outbound_queue_bytes, s.outbound_pause_bytes),
        (131_072, 32_768, 1_048_576, 524_288)
    );
    assert_eq!((s.write_stall_ms, s.linger_ms, s.echo_route), (20_000, 1_500, true));
    let l = &c.limits;
    assert_eq!(
        (
            l.connections_per_ip_per_sec,
            l.connections_per_ip_burst,
            l.frames_per_sec,
            l.frames_burst,
            l.worker_inbox,
            l.logins_in_flight,
            l.login_queue
        ),
        (10, 20, 50, 100, 1024, 64, 0)
    );
    assert_eq!((c.drain.window_ms, c.drain.deadline_ms), (10_000, 15_000));
    assert_eq!(c.auth.keys_dir.as_deref(), Some(Path::new("/etc/gateway/keys")));
    assert_eq!((c.auth.leeway_secs, c.auth.dev_key), (30, DevKey::Off));
    assert_eq!((c.log.filter.as_str(), c.log.format), ("warn,gateway=debug", LogFormat::Json));
    assert_eq!(c.keys_dir(), Path::new("/etc/gateway/keys"));
    assert_eq!(c.listen.wss_addr().unwrap(), Some("0.0.0.0:443".parse().unwrap()));
}

#[test]
fn a_partial_file_keeps_the_other_defaults() {
    let c = Config::from_toml("[session]\nheartbeat_ms = 1000\n").unwrap();
    let mut want = Config::default();
    want.session.heartbeat_ms = 1000;
    assert_eq!(c, want);
    assert_eq!(Config::from_toml("").unwrap(), Config::default());
}

#[test]
fn unknown_keys_are_rejected_with_a_clear_error() {
    let err = Config::from_toml("[node]\nid = 2\nworker = 4\n").unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("unknown field `worker`"), "{message}");
    assert!(message.contains("`workers`"), "lists the known keys: {message}");
    assert!(message.contains("line 3"), "points at the line: {message}");

    let message = Config::from_toml("[nodes]\nid = 2\n").unwrap_err().to_string();
    assert!(message.contains("unknown field `nodes`"), "{message}");

    let file = TempFile::new("unknown", "[listen]\nws = \"127.0.0.1:1\"\nwebsocket = true\n");
    let message = Config::load(Some(file.path())).unwrap_err().to_string();
    assert!(message.contains(file.arg()), "names the file: {message}");
    assert!(message.contains("unknown field `websocket`"), "{message}");
}

#[test]
fn wrong_types_and_values_are_rejected_at_parse() {
    for text in [
        "[node]\nworkers = \"four\"\n",
        "[node]\nid = -1\n",
        "[log]\nformat = \"xml\"\n",
        "[node]\ndriver = \"kqueue\"\n",
        "[listen]\nwss = 443\n",
        "node = 1\n",
        "[session]\nmax_message = 1.5\n",
    ] {
        let err = Config::from_toml(text).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {err:?}");
    }
}

#[test]
fn a_missing_file_is_a_read_error() {
    let err = Config::load(Some(Path::new("/nonexistent/gateway.toml"))).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/gateway.toml"));
}

#[test]
fn load_validates() {
    let file = TempFile::new("invalid", "[session]\nheartbeat_ms = 0\n");
    let err = Config::load(Some(file.path())).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { key: "session.heartbeat_ms", .. }), "{err:?}");
    assert_eq!(err.to_string(), "invalid config: session.heartbeat_ms: must be greater than 0");
    // `read` does not validate (overrides may still fix the value).
    assert_eq!(Config::read(Some(file.path())).unwrap().session.heartbeat_ms, 0);
}

/// A config with a wss listener and its certificate, valid.
fn with_wss() -> Config {
    let mut c = Config::default();
    c.listen.wss = Some("127.0.0.1:7443".into());
    c.tls.cert = Some("cert.pem".into());
    c.tls.key = Some("key.pem".into());
    c.validate().unwrap();
    c
}

#[test]
fn each_validation_rule_fails_on_a_bad_value() {
    type Rule = (&'static str, fn(&mut Config));
    let rules: &[Rule] = &[
        ("node.workers", |c| c.node.workers = MAX_WORKERS + 1),
        ("node.uring_buffers", |c| c.node.uring_buffers = 300),
        ("node.uring_buffers", |c| c.node.uring_buffers = 65_536),
        ("node.uring_buffer_size", |c| c.node.uring_buffer_size = 100),
        ("node.uring_entries", |c| c.node.uring_entries = 0),
        ("node.data_dir", |c| c.node.data_dir = PathBuf::new()),
        ("listen.ws", |c| c.listen.ws = "nonsense".into()),
        ("listen.ws", |c| c.listen.ws = "localhost:7700".into()),
        ("listen.ws", |c| c.listen.ws = "127.0.0.1".into()),
        ("listen.admin", |c| c.listen.admin = "127.0.0.1:99999".into()),
        ("listen.admin", |c| c.listen.admin = "127.0.0.1:7700".into()),
        ("listen.admin", |c| c.listen.admin = "0.0.0.0:7700".into()),
        ("listen.backlog", |c| c.listen.backlog = 0),
        ("listen.backlog", |c| c.listen.backlog = u32::MAX),
        ("listen.accepts_per_turn", |c| c.listen.accepts_per_turn = 0),
        ("listen.accept_resume_ratio", |c| c.listen.accept_resume_ratio = 0.0),
        ("listen.accept_resume_ratio", |c| c.listen.accept_resume_ratio = -0.5),
        ("listen.accept_resume_ratio", |c| c.listen.accept_resume_ratio = 1.01),
        ("listen.accept_resume_ratio", |c| c.listen.accept_resume_ratio = f64::NAN),
        ("tls.cert", |c| c.listen.wss = Some("127.0.0.1:7443".into())),
        ("tls.cert", |c| c.tls.cert = Some("cert.pem".into())),
        ("tls.key", |c| c.tls.key = Some("key.pem".into())),
        ("session.handshake_timeout_ms", |c| c.session.handshake_timeout_ms = 0),
        ("session.auth_timeout_ms", |c| c.session.auth_timeout_ms = 0),
        ("session.heartbeat_ms", |c| c.session.heartbeat_ms = 0),
        ("session.heartbeat_misses", |c| c.session.heartbeat_misses = 0),
        ("session.write_stall_ms", |c| c.session.write_stall_ms = 0),
        ("session.linger_ms", |c| c.session.linger_ms = 0),
        ("session.max_message", |c| c.session.max_message = protocol::limits::MAX_CLIENT_MESSAGE_LEN + 1),
        ("session.max_message", |c| c.session.max_message = 0),
        ("session.max_payload", |c| c.session.max_payload = protocol::limits::MAX_PAYLOAD + 1),
        ("session.max_payload", |c| c.session.max_payload = 0),
        ("session.max_payload", |c| {
            c.session.max_message = 4096;
            c.session.max_payload = 4096;
        }),
        ("session.outbound_pause_bytes", |c| c.session.outbound_pause_bytes = c.session.outbound_queue_bytes),
        ("session.outbound_pause_bytes", |c| c.session.outbound_queue_bytes = 1000),
        ("session.outbound_pause_bytes", |c| c.session.outbound_pause_bytes = 0),
        ("session.outbound_preauth_bytes", |c| c.session.outbound_preauth_bytes = 0),
        ("session.outbound_preauth_bytes", |c| {
            c.session.outbound_preauth_bytes = c.session.outbound_queue_bytes + 1;
        }),
        ("session.echo_max_message", |c| c.session.echo_max_message = 0),
        ("session.echo_max_message", |c| c.session.echo_max_message = (16 << 20) + 1),
        ("limits.connections_per_ip_per_sec", |c| c.limits.connections_per_ip_per_sec = 0),
        ("limits.connections_per_ip_burst", |c| c.limits.connections_per_ip_burst = 0),
        ("limits.frames_per_sec", |c| c.limits.frames_per_sec = 0),
        ("limits.frames_burst", |c| c.limits.frames_burst = 0),
        ("limits.worker_inbox", |c| c.limits.worker_inbox = 0),
        ("limits.logins_in_flight", |c| c.limits.logins_in_flight = 0),
        ("drain.window_ms", |c| c.drain.window_ms = c.drain.deadline_ms + 1),
        ("drain.deadline_ms", |c| {
            c.drain.window_ms = 0;
            c.drain.deadline_ms = 0;
        }),
        ("log.filter", |c| c.log.filter = "  ".into()),
    ];
    for (i, (key, spoil)) in rules.iter().enumerate() {
        let mut c = Config::default();
        spoil(&mut c);
        assert_eq!(invalid_key(&c), *key, "rule #{i}");
        let message = c.validate().unwrap_err().to_string();
        assert!(message.starts_with(&format!("invalid config: {key}: ")), "{message}");
    }

    // The same rules with a wss listener configured.
    let wss_rules: &[Rule] = &[
        ("tls.cert", |c| c.tls.cert = None),
        ("tls.key", |c| c.tls.key = None),
        ("listen.wss", |c| c.listen.wss = Some("::1".into())),
        ("listen.wss", |c| c.listen.wss = Some("127.0.0.1:7700".into())),
        ("listen.admin", |c| c.listen.admin = "[::]:7443".into()),
    ];
    for (key, spoil) in wss_rules {
        let mut c = with_wss();
        spoil(&mut c);
        assert_eq!(invalid_key(&c), *key);
    }
}

#[test]
fn boundary_values_are_valid() {
    let edits: &[fn(&mut Config)] = &[
        |c| c.listen.accept_resume_ratio = 1.0,
        |c| c.listen.accept_resume_ratio = 0.01,
        |c| c.drain.window_ms = c.drain.deadline_ms,
        |c| c.drain.window_ms = 0,
        |c| c.session.outbound_pause_bytes = c.session.outbound_queue_bytes - 1,
        |c| c.node.workers = MAX_WORKERS,
        |c| {
            // Ephemeral ports (tests) do not clash.
            c.listen.ws = "127.0.0.1:0".into();
            c.listen.admin = "127.0.0.1:0".into();
        },
        |c| c.listen.admin = "127.0.0.2:7700".into(),
        |c| c.listen.ws = "[::1]:7700".into(),
        |c| c.listen.backlog = 1,
        |c| c.listen.max_connections = 1,
    ];
    for (i, edit) in edits.iter().enumerate() {
        let mut c = Config::default();
        edit(&mut c);
        c.validate().unwrap_or_else(|e| panic!("edit #{i}: {e}"));
    }
    with_wss();
}

#[test]
fn documented_defaults_parse_back_to_the_defaults() {
    let text = documented_defaults();
    assert_eq!(Config::from_toml(&text).unwrap(), Config::default());
}

/// The keys serde knows for a section (`None`: top level), taken from the
/// unknown-field error, so the list does not depend on the code under test.
fn known_keys(section: Option<&str>) -> Vec<String> {
    let probe = match section {
        Some(section) => format!("[{section}]\nzz_not_a_key = 1\n"),
        None => "zz_not_a_key = 1\n".to_owned(),
    };
    let message = Config::from_toml(&probe).unwrap_err().to_string();
    let expected = message.split_once("expected").unwrap_or_else(|| panic!("{message}")).1;
    let expected = expected.lines().next().unwrap();
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn documented_defaults_list_every_field_with_a_doc_line() {
    let text = documented_defaults();
    let lines: Vec<&str> = text.lines().collect();
    let sections = known_keys(None);
    assert_eq!(
        sections,
        [
            "node",
            "listen",
            "tls",
            "session",
            "limits",
            "drain",
            "store",
            "push",
            "messaging",
            "media",
            "cluster",
            "auth",
            "log"
        ]
    );
    let mut total = 0;
    for section in &sections {
        let header = format!("[{section}]");
        let start = lines.iter().position(|l| *l == header).unwrap_or_else(|| panic!("no {header}"));
        assert!(lines[start - 1].starts_with("# "), "{header} has a doc line");
        let end =
            lines[start + 1..].iter().position(|l| l.starts_with('[')).map_or(lines.len(), |i| start + 1 + i);
        let body = &lines[start + 1..end];
        let keys = known_keys(Some(section));
        assert!(!keys.is_empty());
        for key in &keys {
            let set = format!("{key} = ");
            let unset = format!("# {key} = ");
            let at = body
                .iter()
                .position(|l| l.starts_with(&set) || l.starts_with(&unset))
                .unwrap_or_else(|| panic!("{section}.{key} missing from documented_defaults"));
            assert!(
                at > 0
                    && body[at - 1].starts_with("# ")
                    && !keys.iter().any(|k| body[at - 1].starts_with(&format!("# {k} = "))),
                "{section}.{key} has no doc line"
            );
            total += 1;
        }
        // And nothing else is set in the section.
        let set_keys: Vec<&str> = body
            .iter()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert!(set_keys.iter().all(|k| keys.iter().any(|known| known == k)), "{section}: {set_keys:?}");
    }
    assert_eq!(total, 91, "keys in all sections");
}

#[test]
fn documented_examples_of_unset_keys_are_valid() {
    let text = documented_defaults();
    let known: Vec<String> = known_keys(None).iter().flat_map(|s| known_keys(Some(s))).collect();
    let mut uncommented = String::new();
    let mut examples = BTreeMap::new();
    for line in text.lines() {
        let key = line.strip_prefix("# ").and_then(|rest| rest.split_once(" = ")).map(|(key, _)| key);
        match key {
            Some(key) if known.iter().any(|k| k == key) => {
                examples.insert(key.to_owned(), line.to_owned());
                uncommented.push_str(&line[2..]);
            }
            _ => uncommented.push_str(line),
        }
        uncommented.push('\n');
    }
    assert_eq!(
        examples.keys().collect::<Vec<_>>(),
        [
            "ca_file",
            "cert",
            "credentials_file",
            "endpoint",
            "id_key_file",
            "key",
            "keys_dir",
            "link_advertise",
            "secret_file",
            "wss"
        ]
    );
    let c = Config::from_toml(&uncommented).unwrap();
    c.validate().unwrap();
    assert!(
        c.listen.wss.is_some() && c.tls.cert.is_some() && c.tls.key.is_some() && c.auth.keys_dir.is_some()
    );
}

#[test]
fn a_fleet_needs_the_shared_store_a_secret_and_redis_urls() {
    let fleet =
        "[cluster]\nregistry = [\"redis://127.0.0.1:6379\"]\nsecret_file = \"/etc/gateway/cluster.secret\"\n";
    let remote = "[store]\nmode = \"remote\"\n";
    let key_of = |text: &str| match Config::from_toml(text).unwrap().validate() {
        Err(gateway::config::ConfigError::Invalid { key, .. }) => key,
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(key_of(fleet), "store.mode", "an embedded store cannot serve a fleet");
    Config::from_toml(&format!("{fleet}{remote}")).unwrap().validate().unwrap();
    let without_secret = "[cluster]\nregistry = [\"redis://127.0.0.1:6379\"]\n";
    assert_eq!(key_of(&format!("{without_secret}{remote}")), "cluster.secret_file");
    let not_redis = fleet.replace("redis://127.0.0.1:6379", "http://127.0.0.1:6379");
    assert_eq!(key_of(&format!("{not_redis}{remote}")), "cluster.registry");
    let two = fleet.replace("\"redis://127.0.0.1:6379\"", "\"redis://a:1\", \"redis://b:2\"");
    assert_eq!(key_of(&format!("{two}{remote}")), "cluster.registry", "several URLs are a Redis Cluster's");
    let slow = format!("{fleet}lease_ms = 1000\nregistry_timeout_ms = 500\n{remote}");
    assert_eq!(key_of(&slow), "cluster.registry_timeout_ms");
    let long_wait =
        format!("{fleet}lease_ms = 3000\nregistry_timeout_ms = 500\nack_wait_ms = 3001\n{remote}");
    assert_eq!(key_of(&long_wait), "cluster.ack_wait_ms", "a SEND_ACK never waits past a lease");
}

#[test]
fn media_settings_are_checked_at_load() {
    let key_of = |text: &str| match Config::from_toml(text).unwrap().validate() {
        Err(gateway::config::ConfigError::Invalid { key, .. }) => key,
        other => panic!("{text}: {other:?}"),
    };
    let media = "[media]\nendpoint = \"http://127.0.0.1:9000\"\n";
    Config::from_toml(media).unwrap().validate().unwrap();
    assert_eq!(key_of("[media]\nendpoint = \"ftp://host\"\n"), "media.endpoint");
    assert_eq!(key_of(&format!("{media}ticket_lifetime_secs = 604801\n")), "media.ticket_lifetime_secs");
    assert_eq!(
        key_of(&format!("{media}max_blob_bytes = 6000000000\nquota_bytes_per_day = 9000000000\n")),
        "media.max_blob_bytes"
    );
    assert_eq!(
        key_of(&format!("{media}max_blob_bytes = 2000\nquota_bytes_per_day = 1000\n")),
        "media.max_blob_bytes"
    );
    // In a fleet every node must seal ids with one key.
    let fleet = "[store]\nmode = \"remote\"\n[cluster]\nregistry = [\"redis://127.0.0.1:6379\"]\nsecret_file = \"/s\"\n";
    assert_eq!(key_of(&format!("{fleet}{media}")), "media.id_key_file");
    Config::from_toml(&format!("{fleet}{media}id_key_file = \"/etc/gateway/media-id.key\"\n"))
        .unwrap()
        .validate()
        .unwrap();
}
