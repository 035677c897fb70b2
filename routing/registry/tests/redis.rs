//! The registry against a real `redis-server` the test starts (installed
//! with apt-get when missing, as root; otherwise the test fails saying so).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{DeviceId, UserId};
use routing_registry::{Config, Epoch, NodeId, Placement, Registry, RegistryError, Renewal};

/// A `redis-server` on a free loopback port, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Self {
        ensure_installed();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let server = Self { child, port };
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

#[tokio::test]
async fn each_join_is_a_new_epoch_and_an_old_epoch_is_fenced() {
    let server = Server::start();
    let registry = Registry::single(&server.url(), config(Duration::from_secs(10))).await.unwrap();
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

#[tokio::test]
async fn a_newer_connection_replaces_the_old_one_and_a_late_close_cannot_erase_it() {
    let server = Server::start();
    let registry = Registry::single(&server.url(), config(Duration::from_secs(10))).await.unwrap();
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

#[tokio::test]
async fn placements_of_a_node_whose_lease_expired_are_ignored_and_swept() {
    let server = Server::start();
    let short = Registry::single(&server.url(), config(Duration::from_millis(300))).await.unwrap();
    let long = Registry::single(&server.url(), config(Duration::from_secs(10))).await.unwrap();
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
