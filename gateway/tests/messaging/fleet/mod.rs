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
use protocol::{
    Capabilities, CloseCode, Conversation, DeviceId, Payload, PresenceStatus, ReceiptKind, Seq, UserId,
    Visibility,
};
use routing::link::{LinkFrame, NONCE_LEN, PROOF_LEN};
use routing_registry::testing::{RedisCluster, RedisServer};

use super::cluster::Service;
use super::support::{free_port, temp_dir, Gateway, ObjectStore};
use super::{deliveries, wait_for, within};

const SECRET: &str = "a cluster secret of at least thirty-two bytes, for the test";

/// Which registry the fleet uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// One redis-server.
    Single,
    /// A 3-master Redis Cluster.
    Cluster,
}

/// The registry the test started (kept running until the test ends).
#[allow(dead_code)] // The cluster is only held.
enum Redis {
    Single(RedisServer),
    Cluster(RedisCluster),
}

/// Runs `$name(kind)` once per registry kind, as two tests.
macro_rules! on_both_registries {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn single() {
                    super::$name(super::Kind::Single).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn cluster() {
                    super::$name(super::Kind::Cluster).await;
                }
            }
        )+
    };
}

// Nodes that die, drain, pause or lose Redis (uses the macro above).
mod failover;
// SEND_ACK held for the recipients' nodes, and the retry of one never sent.
mod acks;

on_both_registries!(
    one_to_one_crosses_nodes_live_with_receipts_back,
    a_device_that_connects_on_another_node_closes_its_old_session_with_4007,
    a_1024_member_group_over_5_nodes_takes_one_link_frame_per_node,
    presence_crosses_nodes_and_a_hidden_user_stays_hidden,
);

/// The registry, the shared store and push, and `nodes` gateway nodes.
pub(crate) struct Fleet {
    nodes: Vec<(Gateway, SocketAddr)>,
    _store: Service,
    _push: Service,
    redis: Redis,
}

impl Fleet {
    pub(crate) fn start(kind: Kind, nodes: u32) -> Self {
        Self::start_with(kind, nodes, "")
    }

    /// As [`Fleet::start`], with `extra` TOML for every node (it goes on
    /// the `[cluster]` section).
    fn start_with(kind: Kind, nodes: u32, extra: &str) -> Self {
        let (redis, registry) = match kind {
            Kind::Single => {
                let server = RedisServer::start();
                let url = server.url();
                (Redis::Single(server), format!("registry = [\"{url}\"]\n"))
            }
            Kind::Cluster => {
                let cluster = RedisCluster::start();
                let urls: Vec<String> = cluster.urls().iter().map(|url| format!("\"{url}\"")).collect();
                (
                    Redis::Cluster(cluster),
                    format!("registry = [{}]\nregistry_cluster = true\n", urls.join(", ")),
                )
            }
        };
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
                 [cluster]\n{registry}link_listen = \"{link}\"\nsecret_file = \"{}\"\nlease_ms = 3000\n{extra}",
                store.addr,
                push.addr,
                dir.join("cluster.secret").display(),
            );
            let gateway = Gateway::start_in(dir, &config);
            wait_ready(&gateway);
            started.push((gateway, link));
        }
        Self { nodes: started, _store: store, _push: push, redis }
    }

    /// The single redis-server (of a [`Kind::Single`] fleet).
    fn redis_server(&mut self) -> &mut RedisServer {
        match &mut self.redis {
            Redis::Single(server) => server,
            Redis::Cluster(_) => panic!("a single-server test on a cluster"),
        }
    }

    pub(crate) fn node(&self, index: usize) -> &Gateway {
        &self.nodes[index].0
    }

    /// A client configuration for `node` that falls back to the others.
    fn config_with_fallbacks(&self, node: usize, user: u64, device: u32) -> ClientConfig {
        let mut config = self.config(node, user, device);
        config.fallback_urls = (0..self.nodes.len())
            .filter(|other| *other != node)
            .map(|other| self.node(other).url())
            .collect();
        config
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

async fn one_to_one_crosses_nodes_live_with_receipts_back(kind: Kind) {
    let fleet = Fleet::start(kind, 3);
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
    let received: f64 =
        (1..3).map(|i| fleet.node(i).metric("gateway_fleet_inbound_frames_total{kind=\"live\"}")).sum();
    assert!(received >= 20.0, "{received} link frames received by nodes 2 and 3");
    assert_eq!(node1.metric("gateway_fleet_inbound_refused_total"), 0.0);
}

async fn a_device_that_connects_on_another_node_closes_its_old_session_with_4007(kind: Kind) {
    let fleet = Fleet::start(kind, 2);
    let mut old = fleet.connect(0, 5, 1).await;
    let mut new = fleet.connect(1, 5, 1).await;
    let closed = closed_with(&mut old).await;
    assert_eq!(closed, Some(CloseCode::REPLACED));
    assert_eq!(fleet.node(1).metric("gateway_fleet_replaced_total"), 1.0);
    // The new session is the one messages reach.
    let mut sender = fleet.connect(0, 6, 1).await;
    sender.send(Conversation::Direct(UserId(5)), payload("to the new one")).await.unwrap();
    assert_eq!(deliveries(&mut new, 1).await[0].payload.bytes().as_ref(), b"to the new one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_without_the_cluster_secret_is_refused() {
    let fleet = Fleet::start(Kind::Single, 1);
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
    assert_eq!(fleet.node(0).metric("gateway_fleet_inbound_frames_total{kind=\"live\"}"), 0.0);
    assert_eq!(fleet.node(0).metric("gateway_fleet_inbound_frames_total{kind=\"other\"}"), 0.0);
}

async fn a_1024_member_group_over_5_nodes_takes_one_link_frame_per_node(kind: Kind) {
    const MEMBERS: u64 = 1024;
    const NODES: usize = 5;
    let limits = "[limits]\nconnections_per_ip_per_sec = 5000\nconnections_per_ip_burst = 5000\n";
    let fleet = Fleet::start_with(kind, NODES as u32, limits);
    let mut creator = fleet.connect(0, 1, 1).await;
    let mut members = Vec::new();
    for user in 2..=MEMBERS {
        // Round robin: every node holds about a fifth of the group.
        let node = (user as usize) % NODES;
        members.push(within(Client::connect(fleet.config(node, user, 1))).await.unwrap());
    }
    let others: Vec<UserId> = (2..=MEMBERS).map(UserId).collect();
    let request = creator.group_create("everyone", &others).await.unwrap();
    let group = wait_for(&mut creator, |event| match event {
        Event::GroupOk(ok) if ok.request == request => Some(ok.group),
        _ => None,
    })
    .await;
    // The system entry of the creation reaches everyone first.
    let members = every_member_gets(members, |got| assert!(client::system_group_info(got).is_some())).await;
    let lives = |fleet: &Fleet| -> f64 {
        (0..NODES).map(|i| fleet.node(i).metric("gateway_fleet_inbound_frames_total{kind=\"live\"}")).sum()
    };
    let before = lives(&fleet);
    creator.send(Conversation::Group(group), Payload::new(vec![7u8; 1000]).unwrap()).await.unwrap();
    let members = every_member_gets(members, |got| assert_eq!(got.payload.bytes().len(), 1000)).await;
    let frames = lives(&fleet) - before;
    // One LIVE per node holding members other than the sender's: the
    // message crossed each link once, with all of that node's recipients.
    assert!((1.0..=(NODES - 1) as f64).contains(&frames), "{frames} LIVE frames for one group message");
    drop(members);
}

/// Each member's next delivery, checked by `check` (and acked).
async fn every_member_gets(members: Vec<Client>, check: fn(&protocol::Deliver)) -> Vec<Client> {
    let tasks: Vec<_> = members
        .into_iter()
        .map(|mut member| {
            tokio::spawn(async move {
                check(&deliveries(&mut member, 1).await[0]);
                member
            })
        })
        .collect();
    let mut back = Vec::new();
    for task in tasks {
        back.push(within(task).await.unwrap());
    }
    back
}

async fn presence_crosses_nodes_and_a_hidden_user_stays_hidden(kind: Kind) {
    let fleet = Fleet::start_with(kind, 3, "[messaging]\npresence_grace_ms = 300\n");
    let mut watcher = fleet.connect(0, 10, 1).await;
    let mut user = fleet.connect(1, 11, 1).await;
    watcher.presence_subscribe(UserId(11)).await.unwrap();
    // Presence is eventually consistent across nodes: a state may be told
    // twice, or "offline" first while the user's visibility is still being
    // read where it is; what matters is what is reached, and that nothing
    // is shown that the user hides.
    let reach = |status: PresenceStatus| {
        move |event: &Event| match event {
            Event::Presence(p) if p.user == UserId(11) && p.status == status => Some(p.last_seen.0),
            _ => None,
        }
    };
    // Answered by the node that holds the user.
    wait_for(&mut watcher, reach(PresenceStatus::Online)).await;
    // It leaves: offline after the grace period, with when it was last seen.
    user.close().await.unwrap();
    assert!(wait_for(&mut watcher, reach(PresenceStatus::Offline)).await > 0, "a last seen");
    // Back on a third node: online again.
    let mut back = fleet.connect(2, 11, 1).await;
    wait_for(&mut watcher, reach(PresenceStatus::Online)).await;
    // A second device on another node leaving does not make it "offline"
    // (node 1 finds it still placed on node 3).
    let mut second = fleet.connect(1, 11, 2).await;
    second.close().await.unwrap();
    let flap = tokio::time::timeout(
        Duration::from_millis(1_000),
        wait_for(&mut watcher, reach(PresenceStatus::Offline)),
    );
    assert!(flap.await.is_err(), "offline announced while online on another node");
    // It hides: watchers see offline without a last seen...
    back.presence_set(Visibility::Nobody).await.unwrap();
    assert_eq!(wait_for(&mut watcher, reach(PresenceStatus::Offline)).await, 0);
    // ...and never online while hidden, even as another device connects.
    let _third = fleet.connect(1, 11, 3).await;
    let leak = tokio::time::timeout(
        Duration::from_millis(800),
        wait_for(&mut watcher, reach(PresenceStatus::Online)),
    );
    assert!(leak.await.is_err(), "a hidden user's presence leaked");
    assert!(fleet.node(1).metric("gateway_fleet_presence_suppressed_total") >= 1.0);
}

/// The close code that ends `client`'s connection (events before it are
/// skipped); `None` if it ends otherwise.
async fn closed_with(client: &mut Client) -> Option<CloseCode> {
    within(async {
        loop {
            match client.next_event().await {
                Ok(_) => {}
                Err(client::ClientError::Closed { code, .. }) => break Some(code),
                Err(_) => break None,
            }
        }
    })
    .await
}

/// Sends `text` to `to` and waits for its SEND_ACK.
async fn send_acked(client: &mut Client, to: u64, text: &str) {
    let id = client.send(Conversation::Direct(UserId(to)), payload(text)).await.unwrap();
    wait_for(client, |event| {
        matches!(event, Event::Sent { client_id, .. } if *client_id == id).then_some(())
    })
    .await;
}

/// Until the node's `/readyz` answers `status`.
async fn until_readyz(gateway: &Gateway, status: u16) {
    for _ in 0..1_000 {
        if gateway.http_get("/readyz").is_some_and(|(got, _)| got == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/readyz never answered {status}: {:?}", gateway.http_get("/readyz"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_uploaded_through_one_node_is_fetched_through_another() {
    // Every node seals media ids with the fleet's one key.
    let store = ObjectStore::start();
    let key = temp_dir().join("media-id.key");
    std::fs::write(&key, "f".repeat(64)).unwrap();
    let media = store.config(&format!("id_key_file = \"{}\"\n", key.display()));
    let fleet = Fleet::start_with(Kind::Single, 2, &format!("\n{media}"));
    let mut a = fleet.connect(0, 1, 1).await;
    let mut b = fleet.connect(1, 2, 1).await;
    let blob = bytes::Bytes::from_static(b"a voice note, encrypted by the app");
    let reference = within(a.upload(blob.clone(), protocol::MediaClass::Audio)).await.unwrap();
    assert_eq!(within(b.download(&reference)).await.unwrap(), blob);
}
