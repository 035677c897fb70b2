//! Real Redis servers for tests (feature `testing`): one `redis-server`, or
//! a 3-master Redis Cluster, on loopback ports, installed with apt-get when
//! missing. The registry's tests and the gateway's fleet tests use them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A `redis-server` on a free loopback port, stopped when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: std::path::PathBuf,
    /// The arguments it was started with, for a restart.
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts it.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_with(port, &[])
    }

    /// A server on `port` with `extra` arguments, in its own directory.
    pub fn start_with(port: u16, extra: &[&str]) -> Self {
        Self::try_start_with(port, extra)
            .unwrap_or_else(|| panic!("redis-server exited at start on port {port} (port taken?)"))
    }

    /// As `start_with`, or `None` if the server exits at start (the port
    /// was taken meanwhile, e.g. by another test).
    fn try_start_with(port: u16, extra: &[&str]) -> Option<Self> {
        ensure_installed();
        let dir = std::env::temp_dir().join(format!("registry-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = spawn(port, &dir, extra);
        let extra = extra.iter().map(|arg| (*arg).to_owned()).collect();
        let mut server = Self { child, port, dir, extra };
        server.wait_ready().then_some(server)
    }

    /// False if the server exited first: then PING could be answered by
    /// another process on the same port.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if self.answers_ping() {
                return true;
            }
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

    /// Starts it again on the same port with the same arguments: a plain
    /// server comes back empty, a cluster node with its AOF and its place
    /// in the cluster.
    pub fn restart(&mut self) {
        self.kill9();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.child = spawn(self.port, &self.dir, &extra);
        assert!(self.wait_ready(), "redis-server exited at restart on port {}", self.port);
    }

    /// SIGSTOP (`stop = true`) or SIGCONT: it holds its connections and
    /// answers nothing meanwhile (a stalled or partitioned Redis).
    pub fn freeze(&self, stop: bool) {
        let signal = if stop { "-STOP" } else { "-CONT" };
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(sent.success(), "kill {signal} {pid}");
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
/// (an ephemeral port from the kernel can be too high for that). Tests of
/// one process (threads) and of several (nextest) draw different ports.
fn cluster_port() -> u16 {
    static DRAWN: AtomicU32 = AtomicU32::new(0);
    let clock = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    let seed = std::process::id() ^ clock;
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    (0..2_000u32)
        .map(|_| {
            let draw = DRAWN.fetch_add(1, Ordering::Relaxed);
            20_000 + (seed.wrapping_mul(2_654_435_761).wrapping_add(draw.wrapping_mul(7_919)) % 25_000) as u16
        })
        .find(|&port| free(port) && free(port + 10_000))
        .expect("no free port pair for a cluster node")
}

/// Three cluster-enabled masters with AOF (`appendfsync everysec`), every
/// slot assigned, and optionally a replica each.
#[derive(Debug)]
pub struct RedisCluster {
    servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts it, with no replicas.
    pub fn start() -> Self {
        Self::start_with_replicas(0)
    }

    /// Starts it with `replicas` replicas per master.
    pub fn start_with_replicas(replicas: usize) -> Self {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "2000",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            // A replica's first sync starts at once (the default waits 5 s).
            "--repl-diskless-sync-delay",
            "0",
        ];
        let servers: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| {
                (0..5)
                    .find_map(|_| RedisServer::try_start_with(cluster_port(), &args))
                    .expect("no cluster node started on 5 ports")
            })
            .collect();
        let addresses: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        // `timeout`: redis-cli waits forever for a node that never joins.
        let created = Command::new("timeout")
            .args(["60", "redis-cli", "--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(created.success(), "redis-cli --cluster create failed or took over 60 s: {created}");
        let deadline = Instant::now() + Duration::from_secs(20);
        for server in &servers {
            while !cluster_ok(server.port) || !replica_synced(server.port) {
                assert!(
                    Instant::now() < deadline,
                    "the cluster never reached cluster_state:ok with replicas in sync"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Self { servers }
    }

    /// Its servers' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// The server that serves `key` as its master now, if one does.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        self.servers.iter().position(|server| {
            let answer = Command::new("redis-cli")
                .args(["-p", &server.port.to_string(), "EXISTS", key])
                .output()
                .expect("redis-cli EXISTS");
            // Others answer MOVED; a dead one answers nothing.
            let text = String::from_utf8_lossy(&answer.stdout);
            answer.status.success() && matches!(text.trim(), "0" | "1") && cluster_ok(server.port)
        })
    }

    /// The replica of master `index`, if it has one.
    pub fn replica_of(&self, index: usize) -> Option<usize> {
        let master = format!("master_port:{}", self.servers[index].port);
        self.servers.iter().position(|server| {
            Command::new("redis-cli")
                .args(["-p", &server.port.to_string(), "info", "replication"])
                .output()
                .is_ok_and(|info| {
                    String::from_utf8_lossy(&info.stdout).lines().any(|line| line.trim() == master)
                })
        })
    }

    /// Waits (up to 10 s) until every replica of master `index` has
    /// acknowledged what the master had written when this was called:
    /// replication is asynchronous, so a replica promoted before that lacks
    /// the latest writes (on a loaded machine, for longer than one expects).
    pub fn await_replicas(&self, index: usize) {
        let port = self.servers[index].port;
        let written = written_offset(&replication_info(port)).expect("a master reports master_repl_offset");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = replication_info(port);
            let acked: Vec<u64> = replicas(&info).filter_map(|(_, offset)| offset).collect();
            if !acked.is_empty() && acked.iter().all(|&offset| offset >= written) {
                return;
            }
            assert!(Instant::now() < deadline, "replicas of :{port} never reached offset {written}: {info}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP (`stop = true`) or SIGCONT of server `index`.
    pub fn freeze(&self, index: usize, stop: bool) {
        self.servers[index].freeze(stop);
    }

    /// Runs `redis-cli -p <port of index> args...` and returns its output.
    pub fn cli(&self, index: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.servers[index].port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kill -9` of server `index`.
    pub fn kill9(&mut self, index: usize) {
        self.servers[index].kill9();
    }

    /// Starts server `index` again (it rejoins the cluster; after a
    /// failover, as a replica of the master that replaced it).
    pub fn restart(&mut self, index: usize) {
        self.servers[index].restart();
    }
}

/// Whether the node on `port` is in sync: a replica whose link to its master
/// is up (a replica that never synced cannot take over), or a master whose
/// replicas are. For a master: every replica it has is `online` (the master streams writes
/// to a replica only after its first acknowledgement, up to a second after
/// the sync) and has acknowledged everything.
fn replica_synced(port: u16) -> bool {
    let text = replication_info(port);
    if text.contains("master_link_status:up") {
        return true;
    }
    let written = written_offset(&text);
    text.contains("role:master")
        && replicas(&text)
            .all(|(line, acked)| line.contains("state=online") && written.is_some() && acked == written)
}

/// A master's `master_repl_offset` in its `INFO replication`.
fn written_offset(info: &str) -> Option<u64> {
    info.lines().find_map(|line| line.trim().strip_prefix("master_repl_offset:")?.parse().ok())
}

/// A master's replica lines in its `INFO replication`, each with the offset
/// the replica acknowledged.
fn replicas(info: &str) -> impl Iterator<Item = (&str, Option<u64>)> {
    info.lines().filter(|line| line.starts_with("slave")).map(|line| {
        let acked = line.split(',').find_map(|field| field.strip_prefix("offset=")?.parse().ok());
        (line, acked)
    })
}

/// `INFO replication` of the node on `port` ("" if it does not answer).
fn replication_info(port: u16) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "replication"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// Whether the node on `port` says the cluster is whole.
fn cluster_ok(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .is_ok_and(|info| String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok"))
}

/// Installs `redis-server` with apt-get when missing (as root; otherwise
/// fails saying so): a test never skips for want of it.
pub fn ensure_installed() {
    ensure_debian_package("redis-server", "redis-server");
}

/// Installs Debian's `package` with apt-get unless `command` is on the
/// PATH (as root; otherwise fails saying so). The suite's test processes
/// run in parallel and dpkg serves one at a time (a second apt-get fails
/// at once on its lock), so installs queue on a lock file of their own and
/// each looks for `command` again once it holds it; apt-get also waits for
/// a dpkg lock held by anything else.
pub fn ensure_debian_package(command: &str, package: &str) {
    if Command::new(command).arg("--version").output().is_ok() {
        return;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0"));
    assert!(root, "{command} is missing and this user cannot apt-get install {package}");
    let lock = std::env::temp_dir().join("gateway-tests-apt.lock");
    let script = r#"command -v "$1" >/dev/null && exit 0
export DEBIAN_FRONTEND=noninteractive
apt="apt-get -o DPkg::Lock::Timeout=600 -y -qq"
$apt install "$2" || { $apt update && $apt install "$2"; }"#;
    let installed = Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", script, "sh", command, package])
        .status()
        .unwrap_or_else(|err| panic!("running apt-get install {package} under flock: {err}"));
    assert!(installed.success(), "apt-get install {package} failed: the tests need {command}");
}
