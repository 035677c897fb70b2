//! Several gateway nodes as one fleet: a real `redis-server` as the session
//! registry (started by the test), the shared `store` and `push` processes,
//! and three gateway processes in cluster mode, linked to each other with a
//! cluster secret. Clients on different nodes reach each other live.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use client::{Client, ClientConfig, Event};
use protocol::{Capabilities, CloseCode, Conversation, DeviceId, Payload, ReceiptKind, Seq, UserId};
use routing::link::{LinkFrame, NONCE_LEN, PROOF_LEN};
use routing_registry::testing::RedisServer;

use super::cluster::Service;
use super::support::{free_port, temp_dir, Gateway};
use super::{deliveries, wait_for, within};

const SECRET: &str = "a cluster secret of at least thirty-two bytes, for the test";

/// The registry, the shared store and push, and `nodes` gateway nodes.
struct Fleet {
    nodes: Vec<(Gateway, SocketAddr)>,
    _store: Service,
    _push: Service,
    _redis: RedisServer,
}

impl Fleet {
    fn start(nodes: u32) -> Self {
        let redis = RedisServer::start();
        let store_dir = temp_dir();
        let store = Service::start("store", vec!["--data-dir".into(), store_dir.to_str().unwrap().into()]);
        let push = Service::start("push", vec![]);
        let mut started: Vec<(Gateway, SocketAddr)> = Vec::new();
        for id in 1..=nodes {
            let dir = temp_dir();
            std::fs::write(dir.join("cluster.secret"), SECRET).unwrap();
            if let Some((first, _)) = started.first() {
                // Every node accepts the same tokens: the first node's key.
                share_dev_key(&first.data_dir(), &dir.join("data"));
            }
            let link = free_port();
            let config = format!(
                "[node]\nid = {id}\n\
                 [store]\nmode = \"remote\"\nendpoint = \"http://{}\"\n\
                 [push]\nmode = \"remote\"\nendpoint = \"http://{}\"\n\
                 [cluster]\nregistry = [\"{}\"]\nlink_listen = \"{link}\"\nsecret_file = \"{}\"\nlease_ms = 3000\n",
                store.addr,
                push.addr,
                redis.url(),
                dir.join("cluster.secret").display(),
            );
            let gateway = Gateway::start_in(dir, &config);
            wait_ready(&gateway);
            started.push((gateway, link));
        }
        Self { nodes: started, _store: store, _push: push, _redis: redis }
    }

    fn node(&self, index: usize) -> &Gateway {
        &self.nodes[index].0
    }

    fn token(&self, user: u64, device: u32) -> String {
        let signer = gateway_auth::keys::load_or_create_dev_signer(&self.node(0).data_dir()).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        signer.mint(UserId(user), DeviceId(device), now, 3_600)
    }

    fn config(&self, node: usize, user: u64, device: u32) -> ClientConfig {
        let token = self.token(user, device).into_bytes();
        let mut config = ClientConfig::new(self.node(node).url(), token, DeviceId(device));
        config.capabilities = Capabilities::ALL;
        config.resume_after = Seq(0);
        config
    }

    /// A client of (user, device) on node `node`, its first sync over.
    async fn connect(&self, node: usize, user: u64, device: u32) -> Client {
        let mut client = within(Client::connect(self.config(node, user, device))).await.unwrap();
        wait_for(&mut client, |event| matches!(event, Event::Synced { .. }).then_some(())).await;
        client
    }
}

fn share_dev_key(from: &Path, to: &Path) {
    use std::os::unix::fs::DirBuilderExt as _;
    let keys = to.join("keys");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&keys).unwrap();
    for entry in std::fs::read_dir(from.join("keys")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), keys.join(entry.file_name())).unwrap();
    }
}

/// Until the node has joined the registry (`/readyz` 200).
fn wait_ready(gateway: &Gateway) {
    for _ in 0..500 {
        if gateway.http_get("/readyz").is_some_and(|(status, _)| status == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the node never became ready: {:?}", gateway.http_get("/readyz"));
}

fn payload(text: &str) -> Payload {
    Payload::new(text.as_bytes().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_crosses_nodes_live_with_receipts_back() {
    let fleet = Fleet::start(3);
    let mut a = fleet.connect(0, 1, 1).await;
    let mut b1 = fleet.connect(1, 2, 1).await;
    let mut b2 = fleet.connect(2, 2, 2).await;
    for round in 0..20 {
        let text = format!("hello {round}");
        let id = a.send(Conversation::Direct(UserId(2)), payload(&text)).await.unwrap();
        let message_id = wait_for(&mut a, |event| match event {
            Event::Sent { client_id, message_id, .. } if *client_id == id => Some(*message_id),
            _ => None,
        })
        .await;
        for b in [&mut b1, &mut b2] {
            let got = deliveries(b, 1).await;
            assert_eq!((got[0].message_id, got[0].payload.bytes().as_ref()), (message_id, text.as_bytes()));
            assert_eq!(got[0].conversation, Conversation::Direct(UserId(1)));
        }
    }
    // The delivered receipts of B's devices (on nodes 2 and 3) reach A on node 1.
    let receipt = wait_for(&mut a, |event| match event {
        Event::Receipt(r) if r.kind == ReceiptKind::Delivered && r.up_to.0 == 20 => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(receipt.user, UserId(2));
    // And back the other way: B on node 3 answers A on node 1.
    b2.send(Conversation::Direct(UserId(1)), payload("hi")).await.unwrap();
    let got = deliveries(&mut a, 1).await;
    assert_eq!(got[0].payload.bytes().as_ref(), b"hi");
    // Deliveries crossed links, were looked up in the registry, and nothing
    // was refused.
    let node1 = fleet.node(0);
    assert!(node1.metric("gateway_fleet_registry_calls_total{result=\"ok\"}") > 0.0);
    let received: f64 = (1..3).map(|i| fleet.node(i).metric("gateway_fleet_inbound_frames_total")).sum();
    assert!(received >= 20.0, "{received} link frames received by nodes 2 and 3");
    assert_eq!(node1.metric("gateway_fleet_inbound_refused_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_connects_on_another_node_closes_its_old_session_with_4007() {
    let fleet = Fleet::start(2);
    let mut old = fleet.connect(0, 5, 1).await;
    let mut new = fleet.connect(1, 5, 1).await;
    let closed = within(async {
        loop {
            match old.next_event().await {
                Ok(_) => {}
                Err(client::ClientError::Closed { code, .. }) => break Some(code),
                Err(_) => break None,
            }
        }
    })
    .await;
    assert_eq!(closed, Some(CloseCode::REPLACED));
    assert_eq!(fleet.node(1).metric("gateway_fleet_replaced_total"), 1.0);
    // The new session is the one messages reach.
    let mut sender = fleet.connect(0, 6, 1).await;
    sender.send(Conversation::Direct(UserId(5)), payload("to the new one")).await.unwrap();
    assert_eq!(deliveries(&mut new, 1).await[0].payload.bytes().as_ref(), b"to the new one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_without_the_cluster_secret_is_refused() {
    let fleet = Fleet::start(1);
    let link = fleet.nodes[0].1;
    let mut stream = TcpStream::connect(link).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = BytesMut::new();
    LinkFrame::Hello { min_version: 1, max_version: 1, node: 9, epoch: 1, nonce: [7; NONCE_LEN] }
        .encode(&mut out);
    stream.write_all(&out).unwrap();
    // The node answers WELCOME; a forger cannot compute the proof.
    let mut input = BytesMut::new();
    let welcome = read_link_frame(&mut stream, &mut input);
    assert!(matches!(welcome, Some(LinkFrame::Welcome { .. })), "{welcome:?}");
    out.clear();
    LinkFrame::Proof { proof: [0; PROOF_LEN] }.encode(&mut out);
    // A delivery straight after the forged proof must never be read.
    LinkFrame::Replace { user: UserId(1), device: DeviceId(1), epoch: 1, session: 1 }.encode(&mut out);
    stream.write_all(&out).unwrap();
    let refused = read_link_frame(&mut stream, &mut input);
    assert!(matches!(refused, Some(LinkFrame::Refuse { code: 2, .. })), "{refused:?}");
    assert_eq!(read_link_frame(&mut stream, &mut input), None, "closed after the refusal");
    assert_eq!(fleet.node(0).metric("gateway_fleet_inbound_refused_total"), 1.0);
    assert_eq!(fleet.node(0).metric("gateway_fleet_inbound_frames_total"), 0.0);
}

/// The next link frame, or `None` once the node closed the connection.
fn read_link_frame(stream: &mut TcpStream, input: &mut BytesMut) -> Option<LinkFrame> {
    loop {
        if let Some(frame) = LinkFrame::decode(input).unwrap() {
            return Some(frame);
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => input.extend_from_slice(&buf[..n]),
        }
    }
}
