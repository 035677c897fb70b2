//! `flood connect` end to end against the real gateway binary: 200 sessions
//! from two source addresses, held for 2 s; every one authenticates, the
//! node's `gateway_sessions_open` reaches 200, heartbeats are answered and
//! the close is clean.
//!
//! The gateway binary belongs to another package, so Cargo does not build it
//! for this test: it is taken from `<target>/debug/gateway` (built by
//! `cargo build -p gateway`, or by any workspace-wide build or test run).

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

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
struct Gateway {
    child: Child,
    dir: PathBuf,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Gateway {
    fn start(config: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "flood-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while gateway.http_get("/healthz").is_none() {
            assert!(Instant::now() < deadline, "gateway did not become healthy");
            std::thread::sleep(Duration::from_millis(20));
        }
        gateway
    }

    fn http_get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.admin, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.starts_with("HTTP/1.1 200").then(|| text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))?
    }

    fn metric(&self, series: &str) -> Option<f64> {
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

#[test]
fn two_hundred_sessions_authenticate_and_hold() {
    let gateway = Gateway::start(
        "[session]\nheartbeat_ms = 500\n\
         [limits]\nconnections_per_ip_per_sec = 100000\nconnections_per_ip_burst = 100000\n",
    );
    let key = gateway.dir.join("data/keys/dev-signing.pk8");
    assert!(key.is_file(), "the node did not create its dev key");

    let mut flood = Command::new(env!("CARGO_BIN_EXE_flood"))
        .args(["connect", "--target", &gateway.listen.to_string(), "--sessions", "200", "--rate", "1000/s"])
        .args(["--hold", "2", "--source", "127.0.0.2-127.0.0.3", "--signing-key", key.to_str().unwrap()])
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flood");

    // Watch the node while flood holds its sessions.
    let mut most_open = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(open) = gateway.metric("gateway_sessions_open") {
            most_open = most_open.max(open);
        }
        if let Some(status) = flood.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = flood.kill();
            panic!("flood did not stop by itself within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    flood.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    flood.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "flood failed: {status}\n{stderr}");

    let summary: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("flood's --json output ({e}):\n{stdout}"));
    let count = |key: &str| summary[key].as_u64().unwrap_or_else(|| panic!("no {key} in {summary}"));
    assert_eq!(count("authenticated"), 200, "{summary}");
    assert_eq!(count("failed"), 0, "{summary}");
    assert_eq!(count("dropped"), 0, "{summary}");
    assert_eq!(count("live_at_hold_end"), 200, "{summary}");
    assert_eq!(count("closed_clean"), 200, "{summary}");
    assert!(summary["ramp_complete"].as_bool().unwrap(), "{summary}");
    assert!(summary["errors"].as_object().unwrap().is_empty(), "{summary}");
    // A 500 ms heartbeat over a 2 s hold: every session pinged and was answered.
    assert!(count("pongs") >= 200, "{summary}");
    assert!(summary["cpu_secs"].as_f64().unwrap() < 60.0 && count("rss_bytes") > 0, "{summary}");
    assert_eq!(most_open, 200.0, "gateway_sessions_open peaked at {most_open}");
    // The progress line went to stderr.
    assert!(stderr.contains("authenticated 200"), "{stderr}");

    // flood closed every session: the node's gauge returns to 0.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.metric("gateway_sessions_open") != Some(0.0) {
        assert!(Instant::now() < deadline, "sessions still open on the node after flood exited");
        std::thread::sleep(Duration::from_millis(50));
    }
}
