//! Operating the binary: signing keys (the development key and configured
//! keys directories), `gateway token`, the drain (refused connections, exit
//! at the deadline) and the admin listener at the descriptor limit. Real
//! processes, sockets and files; `prlimit` for the descriptor limit.

// Test code: a panic is a failed assertion, so unwrap and indexing are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../common/mod.rs"]
mod support;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client::{Client, ClientConfig, ClientError, Event};
use gateway_auth::keys;
use gateway_auth::Signer;
use protocol::{DeviceId, ErrorCode, UserId};
use support::{temp_dir, upgrade_request, Gateway};

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");

/// Starts the binary on `dir` with `config` and `env`, its stderr (WARN and
/// up) kept in `<dir>/stderr.log`, under `prlimit --nofile=N:N` when
/// `nofile` is given; waits until `/healthz` answers.
fn start_logged(dir: PathBuf, config: &str, nofile: Option<u32>, env: &[(&str, &str)]) -> Gateway {
    match nofile {
        Some(n) => Gateway::start_logged(dir, config, env, &["prlimit", &format!("--nofile={n}:{n}"), "--"]),
        None => Gateway::start_logged(dir, config, env, &[]),
    }
}

/// `gateway --data-dir <data_dir> [--config <config>] token ...args`.
fn gateway_token(data_dir: &Path, config: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(GATEWAY);
    command.args(["--data-dir", data_dir.to_str().unwrap()]);
    if let Some(config) = config {
        command.args(["--config", config.to_str().unwrap()]);
    }
    command.arg("token").args(args).output().unwrap()
}

fn minted(out: &Output) -> String {
    assert!(out.status.success(), "gateway token: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap().trim().to_owned()
}

async fn connect(gateway: &Gateway, token: String, device: u32) -> Result<Client, ClientError> {
    let config = ClientConfig::new(gateway.url(), token.into_bytes(), DeviceId(device));
    tokio::time::timeout(Duration::from_secs(10), Client::connect(config)).await.expect("connect timed out")
}

/// The AUTH_ERROR code a connection attempt got.
fn auth_code(attempt: Result<Client, ClientError>) -> ErrorCode {
    match attempt {
        Err(ClientError::AuthRejected { code, .. }) => code,
        Err(other) => panic!("expected AUTH_ERROR, got {other:?}"),
        Ok(_) => panic!("the token was accepted"),
    }
}

/// Names, sizes, inodes and modification times of a directory's files.
fn listing(dir: &Path) -> Vec<(String, u64, u64, i64, i64)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, meta.len(), meta.ino(), meta.mtime(), meta.mtime_nsec())
        })
        .collect();
    files.sort();
    files
}

/// A directory made read-only by a bind mount onto itself, until dropped.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> Self {
        let dir = dir.to_str().unwrap();
        for args in [&["--bind", dir, dir][..], &["-o", "remount,bind,ro", dir]] {
            let status = Command::new("mount").args(args).status().expect("run mount (util-linux)");
            assert!(status.success(), "mount {args:?} failed: this test needs root (CAP_SYS_ADMIN)");
        }
        Self(dir.into())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_configured_keys_dir_gets_no_dev_key_and_refuses_dev_tokens() {
    let dir = temp_dir();
    let production = dir.join("production-keys");
    let (signer, _) = Signer::generate(5).unwrap();
    keys::write_public_key(&production, 5, &signer.public_key()).unwrap();
    let before = listing(&production);
    let config = format!("[auth]\nkeys_dir = \"{}\"\n", production.display());
    let gateway = start_logged(dir, &config, None, &[]);

    assert_eq!(listing(&production), before, "nothing written into the configured keys directory");
    assert!(!gateway.log().contains("development signing key"), "{}", gateway.log());
    // `gateway token` still mints with the dev key (of the default config's
    // data dir), and this node does not hold its id.
    let dev_token = minted(&gateway_token(&gateway.data_dir(), None, &["--user", "1", "--device", "1"]));
    assert_eq!(auth_code(connect(&gateway, dev_token, 1).await), ErrorCode::AUTH_UNKNOWN_KEY);
    // With the same configuration it says so.
    let out = gateway_token(
        &gateway.data_dir(),
        Some(&gateway.dir.join("gateway.toml")),
        &["--user", "1", "--device", "1"],
    );
    minted(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTH_UNKNOWN_KEY"), "{out:?}");

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let token = signer.mint(UserId(1), DeviceId(1), now, 600);
    let client = connect(&gateway, token, 1).await.expect("the production key's token");
    assert_eq!(client.user(), Some(UserId(1)));
    assert_eq!(listing(&production), before);
}

#[tokio::test]
async fn the_dev_key_is_written_once_announced_and_derives_its_key_id() {
    let mut gateway = start_logged(temp_dir(), "", None, &[]);
    let key_path = keys::dev_key_path(&gateway.data_dir());
    let text = gateway.log();
    let warning = text.lines().find(|line| line.contains("development signing key in use"));
    let warning = warning.unwrap_or_else(|| panic!("no dev key warning in: {text}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(&key_path.display().to_string()), "{warning}");
    let keys_dir = keys::keys_dir(&gateway.data_dir());
    let first = listing(&keys_dir);
    assert_eq!(first.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), [keys::DEV_SIGNING_KEY_FILE]);

    // User 0 is a user like any other (TOKEN.md).
    let client = connect(&gateway, gateway.token(0, 1), 1).await.expect("user 0");
    assert_eq!(client.user(), Some(UserId(0)));
    drop(client);

    // A token of another dev key names an id this node does not hold.
    let other = temp_dir();
    let stranger = minted(&gateway_token(&other, None, &["--user", "1", "--device", "1"]));
    assert_eq!(auth_code(connect(&gateway, stranger, 1).await), ErrorCode::AUTH_UNKNOWN_KEY);
    fs::remove_dir_all(other).unwrap();

    // A restart only reads the key: it works with the keys directory
    // read-only (as on a full disk).
    let read_only = ReadOnly::mount(&keys_dir);
    gateway.kill9_and_restart();
    drop(read_only);
    assert_eq!(listing(&keys_dir), first, "the dev key is not rewritten, nothing is added");
    connect(&gateway, gateway.token(3, 1), 1).await.expect("the same dev key after a restart");
}

#[test]
fn two_keys_with_one_key_id_stop_the_start() {
    let dir = temp_dir();
    let data = dir.join("data");
    // `gateway token` creates the dev key; a .pub with its id and another key
    // then sits in the default keys directory.
    minted(&gateway_token(&data, None, &["--user", "1", "--device", "1"]));
    let dev = keys::dev_signer_from_pkcs8(&fs::read(keys::dev_key_path(&data)).unwrap()).unwrap();
    let (other, _) = Signer::generate(dev.key_id()).unwrap();
    let clash = keys::write_public_key(&keys::keys_dir(&data), dev.key_id(), &other.public_key()).unwrap();

    let mut node = Gateway::spawn_logged(dir.clone(), "");
    let status = node.wait_exit(Duration::from_secs(30));
    let status = status.unwrap_or_else(|| panic!("the node started with two keys for id {}", dev.key_id()));
    assert!(!status.success());
    let text = node.log();
    assert!(text.contains(&format!("key id {}", dev.key_id())), "{text}");
    assert!(text.contains(&clash.display().to_string()), "{text}");
}

#[test]
fn gateway_token_refuses_a_ttl_of_0() {
    let data = temp_dir();
    let out = gateway_token(&data, None, &["--user", "1", "--device", "1", "--ttl", "0"]);
    assert!(!out.status.success(), "minted {:?}", String::from_utf8_lossy(&out.stdout));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ttl"), "{stderr}");
    minted(&gateway_token(&data, None, &["--user", "1", "--device", "1", "--ttl", "1"]));
    fs::remove_dir_all(data).unwrap();
}

#[test]
fn gateway_token_never_creates_the_dev_key_in_a_configured_keys_dir() {
    let dir = temp_dir();
    let data = dir.join("data");
    let config = dir.join("gateway.toml");
    fs::write(&config, format!("[auth]\nkeys_dir = \"{}\"\n", keys::keys_dir(&data).display())).unwrap();
    let out = gateway_token(&data, Some(&config), &["--user", "1", "--device", "1"]);
    assert!(!out.status.success(), "minted {:?}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("never writes into a configured keys directory"), "{stderr}");
    assert!(!keys::keys_dir(&data).exists(), "something was written into the keys directory");
    fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_drain_refuses_new_connections_and_exits_at_its_deadline() {
    const DEADLINE: Duration = Duration::from_millis(2000);
    // As under the shipped unit (WatchdogSec=30s): the watchdog thread must
    // not hold the exit back.
    let mut gateway = start_logged(
        temp_dir(),
        "[drain]\nwindow_ms = 0\ndeadline_ms = 2000\n",
        None,
        &[("WATCHDOG_USEC", "30000000")],
    );
    let mut client = connect(&gateway, gateway.token(5, 1), 1).await.unwrap();
    let signalled = Instant::now();
    gateway.signal("-TERM");
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap();
        if let Event::GoAway(_) = event.unwrap() {
            break;
        }
    }
    // A new connection is refused or reset at once: it never waits in an
    // accept queue nobody reads.
    for _ in 0..3 {
        let Ok(mut stream) = TcpStream::connect_timeout(&gateway.listen, Duration::from_secs(1)) else {
            continue;
        };
        stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let _ = stream.write_all(&upgrade_request("/ws", "dGhlIHNhbXBsZSBub25jZQ==", "13"));
        let mut answer = [0u8; 64];
        match stream.read(&mut answer) {
            Ok(0) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {}
            Ok(n) => panic!("a draining node answered {:?}", String::from_utf8_lossy(&answer[..n])),
            Err(e) => panic!("a new connection hung during the drain: {e}"),
        }
    }
    // The client stays: the node closes it at the deadline and exits then,
    // without waiting out the close handshake.
    let status = gateway.wait_exit(Duration::from_secs(15)).expect("the node exits after draining");
    let exited = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    eprintln!("drain deadline {DEADLINE:?}, exited {exited:?} after SIGTERM");
    assert!(exited <= DEADLINE + Duration::from_millis(1500), "exited {exited:?} after SIGTERM");
}

#[test]
fn healthz_answers_at_the_descriptor_limit() {
    // 800 descriptors (the 512 of the reserve and some room) and a
    // connection limit far above them: idle client connections use up every
    // descriptor the node has.
    let config = "[listen]\nmax_connections = 1000000\n\
                  [limits]\nconnections_per_ip_per_sec = 1000000\nconnections_per_ip_burst = 1000000\n";
    let gateway = start_logged(temp_dir(), config, Some(800), &[]);
    let idle: Vec<TcpStream> = (0..1_000)
        .filter_map(|_| TcpStream::connect_timeout(&gateway.listen, Duration::from_secs(2)).ok())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gateway.log().contains("Too many open files") {
        assert!(Instant::now() < deadline, "the node never ran out of descriptors: {}", gateway.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..5 {
        let asked = Instant::now();
        let answer = gateway.http_get("/healthz");
        assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "at the descriptor limit: {answer:?}");
        assert!(asked.elapsed() < Duration::from_secs(3), "healthz took {:?}", asked.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(idle);
}

#[test]
fn version_names_the_build_commit_and_the_drivers_this_host_runs() {
    let out = Command::new(GATEWAY).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    let prefix = format!("gateway {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = first
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{first}"));
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().unwrap();
    if head.status.success() {
        assert_eq!(commit, String::from_utf8(head.stdout).unwrap().trim(), "built from this checkout's HEAD");
    } else {
        assert_eq!(commit, "unknown");
    }
    assert!(text.contains("protocol: v1-v1\n"), "{text}");
    assert!(text.contains("drivers: epoll (default), io_uring (on this host: "), "{text}");
    // -V is the same.
    let short = Command::new(GATEWAY).arg("-V").output().unwrap();
    assert_eq!(String::from_utf8(short.stdout).unwrap().lines().next(), Some(first));
}

#[test]
fn check_config_lists_what_differs_from_the_defaults_and_refuses_a_bad_file() {
    let dir = temp_dir();
    let good = dir.join("good.toml");
    fs::write(&good, "[node]\nworkers = 4\n[session]\nheartbeat_ms = 30000\n[listen]\nwss = \"0.0.0.0:7443\"\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n").unwrap();
    let out = Command::new(GATEWAY).arg("check-config").arg(&good).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{}: valid; 4 key(s) differ from the defaults", good.display()).as_str(),
            "listen.wss = \"0.0.0.0:7443\"    # default: unset",
            "node.workers = 4    # default: 0",
            "tls.cert = \"/c.pem\"    # default: unset",
            "tls.key = \"/k.pem\"    # default: unset",
        ]
    );
    // Invalid (wss without its key), unknown key, missing file: status 1 and why.
    let cases = [
        ("[listen]\nwss = \"0.0.0.0:7443\"\n", "tls.cert: required when listen.wss is set"),
        ("[node]\nworkerz = 4\n", "unknown field `workerz`"),
    ];
    for (content, why) in cases {
        let file = dir.join("bad.toml");
        fs::write(&file, content).unwrap();
        let out = Command::new(GATEWAY).arg("check-config").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{content}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(GATEWAY).arg("check-config").arg(dir.join("missing.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("No such file").count(), 1, "said once: {stderr}");
}
