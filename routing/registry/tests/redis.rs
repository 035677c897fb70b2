//! The registry against real Redis the test starts: one `redis-server`, and
//! a 3-master Redis Cluster on loopback ports (installed with apt-get when
//! missing, as root; otherwise the test fails saying so). Every scenario
//! runs on both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{DeviceId, UserId};
use redis::aio::ConnectionLike;
use routing_registry::{Config, Epoch, NodeId, Placement, Registry, RegistryError, Renewal};

/// A `redis-server` on a free loopback port, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_with(port, &[])
    }

    /// A server on `port` with `extra` arguments, in its own directory.
    fn start_with(port: u16, extra: &[&str]) -> Self {
        ensure_installed();
        let dir = std::env::temp_dir().join(format!("registry-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", dir.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let server = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not answer PING on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let mut buf = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for Server {
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
struct Cluster {
    servers: Vec<Server>,
}

impl Cluster {
    fn start() -> Self {
        let servers: Vec<Server> = (0..3)
            .map(|_| {
                Server::start_with(
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

    fn urls(&self) -> Vec<String> {
        self.servers.iter().map(Server::url).collect()
    }
}

fn ensure_installed() {
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

fn config(lease: Duration) -> Config {
    Config { timeout: Duration::from_millis(500), lease, ..Config::default() }
}

fn at(node: u32, epoch: Epoch, session: u64) -> Placement {
    Placement { node: NodeId(node), epoch, session }
}

/// Registries on one backend: a single server or a cluster.
trait Backend {
    type Conn: ConnectionLike + Clone + Send;
    async fn registry(&self, lease: Duration) -> Registry<Self::Conn>;
}

impl Backend for Server {
    type Conn = redis::aio::ConnectionManager;
    async fn registry(&self, lease: Duration) -> Registry<Self::Conn> {
        Registry::single(&self.url(), config(lease)).await.unwrap()
    }
}

impl Backend for Cluster {
    type Conn = redis::cluster_async::ClusterConnection;
    async fn registry(&self, lease: Duration) -> Registry<Self::Conn> {
        let urls = self.urls();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        Registry::cluster(&urls, config(lease)).await.unwrap()
    }
}

/// Runs each scenario as two tests: on one server and on a cluster.
macro_rules! on_both {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn single() {
                    super::$scenario(&super::Server::start()).await;
                }
                #[tokio::test]
                async fn cluster() {
                    super::$scenario(&super::Cluster::start()).await;
                }
            }
        )+
    };
}

on_both!(
    each_join_is_a_new_epoch_and_an_old_epoch_is_fenced,
    a_newer_connection_replaces_the_old_one_and_a_late_close_cannot_erase_it,
    placements_of_a_node_whose_lease_expired_are_ignored_and_swept,
);

async fn each_join_is_a_new_epoch_and_an_old_epoch_is_fenced(backend: &impl Backend) {
    let registry = backend.registry(Duration::from_secs(10)).await;
    let first = registry.join(NodeId(1)).await.unwrap();
    assert_eq!(registry.renew(NodeId(1), first).await.unwrap(), Renewal::Renewed);
    // The node paused past its lease and was restarted (or re-joined).
    let second = registry.join(NodeId(1)).await.unwrap();
    assert!(second > first);
    assert_eq!(registry.renew(NodeId(1), first).await.unwrap(), Renewal::Fenced, "the old epoch is fenced");
    assert_eq!(registry.lease(NodeId(1)).await.unwrap(), Some(second));
    registry.leave(NodeId(1), first).await.unwrap();
    assert_eq!(registry.lease(NodeId(1)).await.unwrap(), Some(second), "an old epoch cannot end the lease");
    registry.leave(NodeId(1), second).await.unwrap();
    assert_eq!(registry.lease(NodeId(1)).await.unwrap(), None);
}

async fn a_newer_connection_replaces_the_old_one_and_a_late_close_cannot_erase_it(backend: &impl Backend) {
    let registry = backend.registry(Duration::from_secs(10)).await;
    let (a, b) = (registry.join(NodeId(1)).await.unwrap(), registry.join(NodeId(2)).await.unwrap());
    let (user, device) = (UserId(42), DeviceId(1));
    assert_eq!(registry.register(user, device, at(1, a, 7)).await.unwrap(), None);
    // The device reconnects on node 2: node 1's session is the one replaced.
    assert_eq!(registry.register(user, device, at(2, b, 9)).await.unwrap(), Some(at(1, a, 7)));
    // Node 1's session closes late: it must not remove node 2's placement.
    assert!(!registry.unregister(user, device, at(1, a, 7)).await.unwrap());
    assert_eq!(registry.lookup(user).await.unwrap(), [(device, at(2, b, 9))]);
    assert!(registry.unregister(user, device, at(2, b, 9)).await.unwrap());
    assert!(registry.lookup(user).await.unwrap().is_empty());
}

async fn placements_of_a_node_whose_lease_expired_are_ignored_and_swept(backend: &impl Backend) {
    let short = backend.registry(Duration::from_millis(300)).await;
    let long = backend.registry(Duration::from_secs(10)).await;
    let dead = short.join(NodeId(1)).await.unwrap();
    let alive = long.join(NodeId(2)).await.unwrap();
    let user = UserId(5);
    short.register(user, DeviceId(1), at(1, dead, 1)).await.unwrap();
    long.register(user, DeviceId(2), at(2, alive, 1)).await.unwrap();
    assert_eq!(long.lookup(user).await.unwrap().len(), 2);
    // Node 1 stops renewing (killed, or paused past its lease).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(long.lookup(user).await.unwrap(), [(DeviceId(2), at(2, alive, 1))]);
    assert_eq!(short.renew(NodeId(1), dead).await.unwrap(), Renewal::Fenced);
    // The dead placement was swept: re-registering device 1 replaces nothing.
    let back = short.join(NodeId(1)).await.unwrap();
    assert_eq!(short.register(user, DeviceId(1), at(1, back, 2)).await.unwrap(), None);
}

#[tokio::test]
async fn a_registry_that_is_down_fails_within_the_timeout() {
    let mut server = Server::start();
    let registry = Registry::single(&server.url(), config(Duration::from_secs(10))).await.unwrap();
    let epoch = registry.join(NodeId(3)).await.unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let started = Instant::now();
    let result = registry.register(UserId(1), DeviceId(1), at(3, epoch, 1)).await;
    let took = started.elapsed();
    assert!(matches!(result, Err(RegistryError::Timeout(_) | RegistryError::Redis(_))), "{result:?}");
    assert!(took < Duration::from_secs(2), "a call to a dead registry took {took:?}");
}
