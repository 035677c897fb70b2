//! Shared by the end-to-end test targets (`tests/node`, `tests/tls`): runs the
//! real `gateway` binary (a temporary data dir, free loopback ports, readiness
//! by polling the admin listener, a kill on drop) and a raw WebSocket client.
//!
//! The nodes inherit the test's environment, so `GATEWAY_DRIVER=io_uring
//! GATEWAY_DRIVER_REQUIRED=1` runs the whole suite on the io_uring driver
//! (`scripts/test` runs it on both).

// Each target uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

pub(crate) struct Gateway {
    pub(crate) child: Child,
    pub(crate) dir: PathBuf,
    pub(crate) listen: SocketAddr,
    pub(crate) admin: SocketAddr,
    /// A command the binary runs under (`prlimit ...`, `sh -c ...`), if any.
    launcher: Vec<String>,
    /// Whether its stderr goes to `<dir>/stderr.log` ([`Gateway::log`])
    /// rather than the test's.
    logged: bool,
}

/// A loopback address with a port that was free a moment ago, and that
/// this process has not handed out before: the kernel may give a port
/// just released again, and a node started with the same port for two
/// listeners refuses its configuration (it happened in CI: admin and ws).
pub(crate) fn free_port() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

/// A new, empty temporary directory for one node.
pub(crate) fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gateway-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Gateway {
    /// Starts a node with `config` (TOML appended to the test's own settings).
    pub(crate) fn start(config: &str) -> Self {
        Self::start_in(temp_dir(), config)
    }

    /// Starts a node in `dir` (a [`temp_dir`] the test has put files in;
    /// removed on drop).
    pub(crate) fn start_in(dir: PathBuf, config: &str) -> Self {
        Self::start_with_env(dir, config, &[])
    }

    /// As [`Gateway::start_in`], with extra environment variables.
    pub(crate) fn start_with_env(dir: PathBuf, config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_under(dir, config, env, &[])
    }

    /// As [`Gateway::start_with_env`], with the binary and its arguments
    /// appended to `launcher` (e.g. `["prlimit", "--nofile=900:900"]`).
    pub(crate) fn start_under(dir: PathBuf, config: &str, env: &[(&str, &str)], launcher: &[&str]) -> Self {
        let mut gateway = Self::spawn(dir, config, env, launcher, false);
        gateway.wait_healthy();
        gateway
    }

    /// As [`Gateway::start_under`], with the node's stderr kept in
    /// `<dir>/stderr.log` for the test to read ([`Gateway::log`]).
    pub(crate) fn start_logged(dir: PathBuf, config: &str, env: &[(&str, &str)], launcher: &[&str]) -> Self {
        let mut gateway = Self::spawn(dir, config, env, launcher, true);
        gateway.wait_healthy();
        gateway
    }

    /// Starts the process (stderr logged) without waiting for it to be
    /// healthy: for a start that must fail.
    pub(crate) fn spawn_logged(dir: PathBuf, config: &str) -> Self {
        Self::spawn(dir, config, &[], &[], true)
    }

    /// As [`Gateway::spawn_logged`], with extra environment variables and a
    /// launcher (see [`Gateway::start_under`]).
    pub(crate) fn spawn_logged_under(
        dir: PathBuf,
        config: &str,
        env: &[(&str, &str)],
        launcher: &[&str],
    ) -> Self {
        Self::spawn(dir, config, env, launcher, true)
    }

    fn spawn(dir: PathBuf, config: &str, env: &[(&str, &str)], launcher: &[&str], logged: bool) -> Self {
        let (listen, admin) = (free_port(), free_port());
        std::fs::write(dir.join("gateway.toml"), config).unwrap();
        let launcher: Vec<String> = launcher.iter().map(|arg| (*arg).to_owned()).collect();
        let child = spawn(&dir, listen, admin, env, &launcher, logged);
        Self { child, dir, listen, admin, launcher, logged }
    }

    /// What the node wrote to stderr so far (a logged node only).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// `kill -9` of the process (it stays down).
    #[allow(dead_code)] // Used by some test binaries only.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// `kill -9` of the process, then a new one on the same data directory,
    /// configuration and ports.
    pub(crate) fn kill9_and_restart(&mut self) {
        self.kill9();
        self.child = spawn(&self.dir, self.listen, self.admin, &[], &self.launcher, self.logged);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        // Generous: a debug build replaying a 100K-message store takes
        // 13-19 s here, and 25-27 s while the suite loads both cores.
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.http_get("/healthz").is_none() {
            // A node that refused to start says so at once, not in 60 s.
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gateway exited before it became healthy ({status}): {}", self.log());
            }
            assert!(Instant::now() < deadline, "gateway did not become healthy: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's data directory (keys, the embedded store).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.listen)
    }

    /// A token minted by `gateway token` with this node's key.
    pub(crate) fn token(&self, user: u64, device: u32) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--data-dir", self.dir.join("data").to_str().unwrap(), "token"])
            .args(["--user", &user.to_string(), "--device", &device.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "gateway token: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Status line and body of `GET path` on the admin listener.
    pub(crate) fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.admin, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Some((status, body))
    }

    /// The value of one metric series, e.g. `gateway_accepts_total` or
    /// `gateway_closes_total{code="4007"}`.
    pub(crate) fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").expect("scrape");
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no series {series}"))
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its status, or None after `within`.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Starts the gateway binary on `dir` (its `gateway.toml` and `data/`), under
/// `launcher` if not empty; its stderr into `<dir>/stderr.log` (appended to,
/// across restarts) when `logged`.
fn spawn(
    dir: &std::path::Path,
    listen: SocketAddr,
    admin: SocketAddr,
    env: &[(&str, &str)],
    launcher: &[String],
    logged: bool,
) -> Child {
    let stderr = match logged {
        true => Stdio::from(
            std::fs::OpenOptions::new().create(true).append(true).open(dir.join("stderr.log")).unwrap(),
        ),
        false => Stdio::inherit(),
    };
    let file = dir.join("gateway.toml");
    let mut command = match launcher.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(env!("CARGO_BIN_EXE_gateway"));
            command
        }
        None => Command::new(env!("CARGO_BIN_EXE_gateway")),
    };
    command
        .args(["--config", file.to_str().unwrap(), "--data-dir", dir.join("data").to_str().unwrap()])
        .args(["--listen", &listen.to_string(), "--admin", &admin.to_string(), "--workers", "2"])
        .env("GATEWAY_LOG", "warn")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start the gateway binary")
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw client: the upgrade by hand, then masked frames, for inputs the client
/// library will not produce. Over TCP, or any stream (a TLS one).
pub(crate) struct Raw<S = TcpStream>(pub(crate) S);

impl Raw {
    pub(crate) fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Self(stream)
    }

    pub(crate) fn upgrade(addr: SocketAddr, path: &str) -> Self {
        let mut raw = Self::connect(addr);
        raw.upgrade_over(path);
        raw
    }
}

impl<S: Read + Write> Raw<S> {
    /// Sends the upgrade request for `path` and checks for 101.
    pub(crate) fn upgrade_over(&mut self, path: &str) {
        self.send(&upgrade_request(path, "dGhlIHNhbXBsZSBub25jZQ==", "13"));
        let head = self.read_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    /// The HTTP response head.
    pub(crate) fn read_head(&mut self) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if self.0.read(&mut byte).unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// Reads server frames until a close frame; returns its code (None if the
    /// connection ended without one).
    pub(crate) fn close_code(&mut self) -> Option<u16> {
        loop {
            let (opcode, payload) = self.read_frame()?;
            if opcode == 0x8 {
                return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
    }

    /// One server frame: its opcode and payload (None at the end of the
    /// stream).
    pub(crate) fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut header = [0u8; 2];
        self.0.read_exact(&mut header).ok()?;
        let len = match header[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                self.0.read_exact(&mut ext).ok()?;
                u16::from_be_bytes(ext) as usize
            }
            127 => {
                let mut ext = [0u8; 8];
                self.0.read_exact(&mut ext).ok()?;
                u64::from_be_bytes(ext) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0; len];
        self.0.read_exact(&mut payload).ok()?;
        Some((header[0] & 0x0f, payload))
    }
}

pub(crate) fn upgrade_request(path: &str, key: &str, version: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n"
    )
    .into_bytes()
}

/// A masked client frame header + payload.
pub(crate) fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = client_header(opcode, payload.len() as u64);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

const MASK: [u8; 4] = [1, 2, 3, 4];

pub(crate) fn client_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 it signed.
pub(crate) struct Pki {
    pub(crate) ca: CertificateDer<'static>,
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, name);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        Self { ca: ca.der().clone(), ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// Writes `cert.pem` and `key.pem` into `dir` (replacing them).
    pub(crate) fn write(&self, dir: &Path) {
        std::fs::write(dir.join("cert.pem"), &self.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &self.key_pem).unwrap();
    }

    pub(crate) fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        roots
    }

    /// The client library's TLS settings, trusting only this CA.
    pub(crate) fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        client::tls_config(self.roots()).unwrap()
    }
}

const ACCESS_KEY: &str = "gateway-test";
const SECRET_KEY: &str = "gateway-test-secret-key";
/// The version the suite installs (`scripts/test`): the newest one that
/// builds with this machine's Rust.
const S3S_FS_VERSION: &str = "0.14.1";

/// `s3s-fs` (crates.io), a real S3-compatible server, on a loopback port with
/// its own credentials; killed when dropped. It checks every presigned URL's
/// signature and expiry itself.
pub(crate) struct ObjectStore {
    child: Option<Child>,
    pub(crate) port: u16,
    pub(crate) root: PathBuf,
}

impl ObjectStore {
    pub(crate) fn start() -> Self {
        let root = temp_dir().join("s3");
        std::fs::create_dir_all(root.join("media")).unwrap();
        let mut store = Self { child: None, port: free_port().port(), root };
        store.restart();
        store
    }

    pub(crate) fn restart(&mut self) {
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node's `[media]` section for this store, with `extra` keys.
    pub(crate) fn config(&self, extra: &str) -> String {
        media_section(&format!("http://127.0.0.1:{}", self.port), extra)
    }
}

/// `[media]` for the store at `endpoint`, with its credentials and `extra`
/// keys.
pub(crate) fn media_section(endpoint: &str, extra: &str) -> String {
    let credentials = temp_dir().join("media.credentials");
    std::fs::write(&credentials, format!("{ACCESS_KEY}\n{SECRET_KEY}\n")).unwrap();
    format!("[media]\nendpoint = \"{endpoint}\"\ncredentials_file = \"{}\"\n{extra}", credentials.display())
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `s3s-fs` binary: `$S3S_FS`, else the suite's install under
/// `target/tools`, installed there now if missing (one install at a time
/// across the suite's processes).
fn s3s_fs() -> PathBuf {
    if let Some(path) = std::env::var_os("S3S_FS") {
        return path.into();
    }
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools");
    let binary = tools.join("bin/s3s-fs");
    if !binary.exists() {
        std::fs::create_dir_all(&tools).unwrap();
        let status = Command::new("flock")
            .arg(tools.join(".install.lock"))
            .args(["sh", "-c", "[ -x \"$1/bin/s3s-fs\" ] || cargo install --quiet --locked --features binary --root \"$1\" \"s3s-fs@$2\"", "sh"])
            .arg(&tools)
            .arg(S3S_FS_VERSION)
            .status()
            .expect("running cargo install s3s-fs (needs flock and cargo)");
        assert!(status.success(), "cargo install s3s-fs@{S3S_FS_VERSION} failed: the media tests need it");
    }
    binary
}
