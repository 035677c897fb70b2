//! The harness the flood integration tests share: a real gateway node (the
//! debug binary) in a temporary directory.
//!
//! The gateway binary belongs to another package, so Cargo does not build it
//! for these tests: it is taken from `<target>/debug/gateway` (built by
//! `cargo build -p gateway`, or by any workspace-wide build or test run).

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `<target>/debug/gateway`: `CARGO_TARGET_DIR` if set, else the workspace's
/// `target/`.
fn gateway_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("debug/gateway");
    assert!(
        path.is_file(),
        "the gateway binary is missing at {}: build it first with `cargo build -p gateway`",
        path.display()
    );
    path
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A gateway node in a temporary directory, killed on drop.
pub struct Gateway {
    child: Child,
    pub dir: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

impl Gateway {
    pub fn start(config: &str) -> Self {
        Self::start_with(config, |_| {})
    }

    /// As [`Gateway::start`]; `prepare` gets the node's data directory
    /// (created, empty) before the node starts.
    pub fn start_with(config: &str, prepare: impl FnOnce(&std::path::Path)) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "flood-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        prepare(&dir.join("data"));
        let file = dir.join("gateway.toml");
        std::fs::write(&file, config).unwrap();
        let (listen, admin) = (free_port(), free_port());
        let child = Command::new(gateway_binary())
            .args(["--config", file.to_str().unwrap(), "--data-dir", dir.join("data").to_str().unwrap()])
            .args(["--listen", &listen.to_string(), "--admin", &admin.to_string(), "--workers", "2"])
            .env("GATEWAY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the gateway binary");
        let gateway = Self { child, dir, listen, admin };
        let deadline = Instant::now() + Duration::from_secs(30);
        while gateway.http_get("/healthz").is_none() {
            assert!(Instant::now() < deadline, "gateway did not become healthy");
            std::thread::sleep(Duration::from_millis(20));
        }
        gateway
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http_get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.admin, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.starts_with("HTTP/1.1 200").then(|| text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))?
    }

    pub fn metric(&self, series: &str) -> Option<f64> {
        let body = self.http_get("/metrics")?;
        body.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The baseline server (`<target>/debug/baseline`, built like the gateway by
/// `cargo build -p baseline` or any workspace-wide build), killed on drop.
pub struct Baseline {
    child: Child,
    pub listen: SocketAddr,
}

impl Baseline {
    pub fn start() -> Self {
        let path = gateway_binary().with_file_name("baseline");
        assert!(
            path.is_file(),
            "the baseline binary is missing at {}: `cargo build -p baseline`",
            path.display()
        );
        let listen = free_port();
        let child = Command::new(path)
            .args(["--listen", &listen.to_string(), "--threads", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the baseline binary");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "the baseline did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, listen }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
