//! Real Redis servers for tests (feature `testing`): one `redis-server`, or
//! a 3-master Redis Cluster, on loopback ports, installed with apt-get when
//! missing. The registry's tests and the gateway's fleet tests use them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, stopped when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    /// Starts it.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_with(port, &[])
    }

    /// A server on `port` with `extra` arguments, in its own directory.
    pub fn start_with(port: u16, extra: &[&str]) -> Self {
        ensure_installed();
        let dir = std::env::temp_dir().join(format!("registry-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = spawn(port, &dir, extra);
        let server = Self { child, port, dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not answer PING on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `kill -9` (its data is gone: it ran without persistence).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, empty (a plain server).
    pub fn restart(&mut self) {
        self.kill9();
        self.child = spawn(self.port, &self.dir, &[]);
        self.wait_ready();
    }

    /// Whether it answers PING now.
    pub fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let mut buf = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

fn spawn(port: u16, dir: &std::path::Path, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--dir", dir.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("starting redis-server")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port that is free, and whose cluster bus port (+10000) is free too
/// (an ephemeral port from the kernel can be too high for that).
fn cluster_port() -> u16 {
    let seed = std::process::id() ^ Instant::now().elapsed().subsec_nanos();
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    (0..2_000u32)
        .map(|i| 20_000 + ((seed.wrapping_mul(2_654_435_761).wrapping_add(i * 7_919)) % 25_000) as u16)
        .find(|&port| free(port) && free(port + 10_000))
        .expect("no free port pair for a cluster node")
}

/// Three cluster-enabled servers, every slot assigned (no replicas).
#[derive(Debug)]
pub struct RedisCluster {
    servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts it.
    pub fn start() -> Self {
        let servers: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(
                    cluster_port(),
                    &["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
                )
            })
            .collect();
        let addresses: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(created.success(), "creating the cluster failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        for server in &servers {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &server.port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli cluster info");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster never reached cluster_state:ok");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Self { servers }
    }

    /// Its servers' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }
}

/// Installs `redis-server` with apt-get when missing (as root; otherwise
/// fails saying so): a test never skips for want of it.
pub fn ensure_installed() {
    if Command::new("redis-server").arg("--version").output().is_ok() {
        return;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0"));
    assert!(root, "redis-server is missing and this user cannot apt-get install redis-server");
    let installed = Command::new("sh")
        .args(["-c", "apt-get install -y -qq redis-server || (apt-get update -qq && apt-get install -y -qq redis-server)"])
        .status()
        .is_ok_and(|status| status.success());
    assert!(installed, "apt-get install redis-server failed");
}
