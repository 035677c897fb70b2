//! Nodes that leave the fleet (`kill -9`, drain), pause past their lease,
//! lose the registry or never reach it: clients resume on other nodes and
//! nothing acknowledged is lost.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use client::{Client, ClientConfig, Event};
use protocol::{Conversation, DeviceId, Payload, UserId};

use super::super::cluster::Service;
use super::super::support::{free_port, temp_dir, Gateway};
use super::super::{deliveries, no_delivery, wait_for, within};
use super::{closed_with, payload, send_acked, until_readyz, Fleet, Kind, SECRET};

on_both_registries!(
    kill_9_of_a_node_mid_traffic_its_clients_resume_elsewhere_and_lose_nothing,
    a_node_stopped_past_its_lease_fences_itself_and_its_sessions_miss_nothing,
    a_device_that_moved_while_its_node_was_stopped_stays_where_it_moved,
    a_stopped_peer_costs_its_senders_a_bounded_queue_and_loses_nothing,
    a_draining_node_moves_its_clients_to_other_nodes_without_loss,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_traffic_loses_nothing() {
    let mut fleet = Fleet::start(Kind::Single, 2);
    let mut a = fleet.connect(0, 1, 1).await;
    let mut b = fleet.connect(1, 2, 1).await;
    send_acked(&mut a, 2, "before").await;
    assert_eq!(deliveries(&mut b, 1).await[0].payload.bytes().as_ref(), b"before");
    // Redis dies with every lease and placement (it ran without persistence).
    fleet.redis_server().kill9();
    until_readyz(fleet.node(0), 503).await;
    // Messages are still stored and acknowledged meanwhile.
    for i in 0..10 {
        send_acked(&mut a, 2, &format!("down {i}")).await;
    }
    // A device that connects now is served, unplaced.
    let mut c = fleet.connect(1, 3, 1).await;
    fleet.redis_server().restart();
    until_readyz(fleet.node(0), 200).await;
    until_readyz(fleet.node(1), 200).await;
    // B gets every message exactly once, in order (live, or by the resync
    // that follows its placement again).
    let got: Vec<Vec<u8>> = deliveries(&mut b, 10).await.iter().map(|d| d.payload.bytes().to_vec()).collect();
    let expected: Vec<Vec<u8>> = (0..10).map(|i| format!("down {i}").into_bytes()).collect();
    assert_eq!(got, expected);
    no_delivery(&mut b, Duration::from_millis(500)).await;
    // C was placed once the registry came back: node 1 reaches it live.
    send_acked(&mut a, 3, "to c").await;
    assert_eq!(deliveries(&mut c, 1).await[0].payload.bytes().as_ref(), b"to c");
    let late: f64 = (0..2).map(|i| fleet.node(i).metric("gateway_fleet_placed_late_total")).sum();
    assert!(late >= 1.0, "C (and the fenced nodes' sessions) placed again: {late}");
}

/// Presence's registry calls never hold the router: with the registry
/// frozen, subscriptions on node 0 (a watch and a lookup each, each
/// waiting out the 500 ms registry timeout) do not delay a message to a
/// device whose placement node 0 has cached. Before, the router made those
/// calls inline: 20 subscriptions held it for about 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_registry_holds_presence_not_the_messages_beside_it() {
    let mut fleet = Fleet::start(Kind::Single, 2);
    let mut a = fleet.connect(0, 1, 1).await;
    let mut b = fleet.connect(1, 2, 1).await;
    send_acked(&mut a, 2, "warm").await;
    assert_eq!(deliveries(&mut b, 1).await[0].payload.bytes().as_ref(), b"warm");
    fleet.redis_server().freeze(true);
    for user in 100..120 {
        a.presence_subscribe(UserId(user)).await.unwrap();
    }
    a.send(Conversation::Direct(UserId(2)), payload("beside")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), deliveries(&mut b, 1)).await;
    fleet.redis_server().freeze(false);
    let got = got.expect("a message waited for presence's registry calls");
    assert_eq!(got[0].payload.bytes().as_ref(), b"beside");
    // And presence still answers every subscription: offline (nowhere, or
    // its lookup timed out while the registry was frozen).
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < 20 {
        let user = wait_for(&mut a, |event| match event {
            Event::Presence(p) if (100..120).contains(&p.user.0) => Some(p.user.0),
            _ => None,
        })
        .await;
        answered.insert(user);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_lookup_failed_reaches_the_live_device_once_the_registry_answers() {
    let mut fleet = Fleet::start(Kind::Single, 2);
    let mut a = fleet.connect(0, 1, 1).await;
    let mut b = fleet.connect(1, 2, 1).await;
    // Node 0 has never looked B up. B sends nothing and syncs no more:
    // only the retried lookup brings the entry.
    comes_live_through_a_registry_stall(&mut fleet, &mut a, &mut b, "while stalled").await;
    assert_eq!(fleet.node(0).metric("gateway_fleet_lookups_given_up_total"), 0.0);
    assert_eq!(fleet.node(0).metric("gateway_fleet_parked"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_a_stale_cache_sends_to_a_dead_node_reaches_the_device_where_it_moved() {
    let mut fleet = Fleet::start(Kind::Single, 3);
    let (mut a, mut new) = b_moves_off_a_dead_node(&mut fleet).await;
    send_acked(&mut a, 2, "after the kill").await;
    // Node 0 still routes to node 1 (a cached placement is used while it
    // is re-read); the link to the dead node hands the entry back, node 0
    // looks the device up again and sends it to node 2: B gets it live,
    // not at some later sync.
    let got = tokio::time::timeout(Duration::from_secs(10), deliveries(&mut new, 1)).await;
    let got = got.expect("the entry reached B's new session live");
    assert_eq!(got[0].payload.bytes().as_ref(), b"after the kill");
    let returned = fleet.node(0).metric("gateway_fleet_link_returned_total{peer=\"2\"}");
    assert!(returned >= 1.0, "node 0's link to node 1 handed it back: {returned}");
    no_delivery(&mut new, Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_handed_back_while_the_registry_stalls_reaches_the_device_where_it_moved() {
    let mut fleet = Fleet::start(Kind::Single, 3);
    let (mut a, mut new) = b_moves_off_a_dead_node(&mut fleet).await;
    // Node 0 routes to dead node 1 from its cache; the link hands the
    // entry back while the registry answers nothing: its lookup is made
    // again once the registry is back, and B gets the entry live.
    comes_live_through_a_registry_stall(&mut fleet, &mut a, &mut new, "handed back").await;
    no_delivery(&mut new, Duration::from_millis(500)).await;
}

/// A (user 1) on node 0 and B (user 2) on node 1; node 0 caches B on node
/// 1 (A sent to it); node 1 is killed and B's device resumes on node 2,
/// synced (the store had nothing new for it). Returns A and B's new client.
async fn b_moves_off_a_dead_node(fleet: &mut Fleet) -> (Client, Client) {
    let mut a = fleet.connect(0, 1, 1).await;
    let mut old = fleet.connect(1, 2, 1).await;
    send_acked(&mut a, 2, "before").await;
    assert_eq!(deliveries(&mut old, 1).await[0].payload.bytes().as_ref(), b"before");
    fleet.nodes[1].0.kill9();
    drop(old);
    (a, fleet.connect(2, 2, 1).await)
}

/// `from` sends `text` to user 2 while the registry answers nothing for
/// 1.5 s (well within the lease); `to` (user 2) gets it live within 8 s
/// of the registry's return, though a lookup of it failed (the first, or a
/// relocation's when a link hands the entry back: then how soon it does
/// decides whether the parked retry fails too).
async fn comes_live_through_a_registry_stall(
    fleet: &mut Fleet,
    from: &mut Client,
    to: &mut Client,
    text: &str,
) {
    fleet.redis_server().freeze(true);
    send_acked(from, 2, text).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    fleet.redis_server().freeze(false);
    let got = tokio::time::timeout(Duration::from_secs(8), deliveries(to, 1)).await;
    let got = got.expect("the entry never came live after the registry answered again");
    assert_eq!(got[0].payload.bytes().as_ref(), text.as_bytes());
    assert!(fleet.node(0).metric("gateway_fleet_registry_calls_total{result=\"error\"}") >= 1.0);
}

async fn kill_9_of_a_node_mid_traffic_its_clients_resume_elsewhere_and_lose_nothing(kind: Kind) {
    node_goes_away_mid_traffic(kind, Away::Kill9).await;
}

async fn a_draining_node_moves_its_clients_to_other_nodes_without_loss(kind: Kind) {
    node_goes_away_mid_traffic(kind, Away::Drain).await;
}

/// How node 1 leaves the fleet.
#[derive(Debug, Clone, Copy)]
enum Away {
    /// `kill -9`.
    Kill9,
    /// SIGTERM: GOAWAY to its sessions, then it exits.
    Drain,
}

async fn node_goes_away_mid_traffic(kind: Kind, away: Away) {
    const MESSAGES: usize = 60;
    let mut fleet = Fleet::start_with(kind, 3, "[drain]\nwindow_ms = 300\ndeadline_ms = 3000\n");
    // Node 1 holds B (receiving from A on node 0) and C (sending to D on node 2).
    let a = within(Client::connect(fleet.config_with_fallbacks(0, 1, 1))).await.unwrap();
    let b = within(Client::connect(fleet.config_with_fallbacks(1, 2, 1))).await.unwrap();
    let c = within(Client::connect(fleet.config_with_fallbacks(1, 3, 1))).await.unwrap();
    let d = within(Client::connect(fleet.config_with_fallbacks(2, 4, 1))).await.unwrap();
    let (a_sent, a_task) = sender(a, 2, MESSAGES);
    let c_task = sender(c, 4, MESSAGES).1;
    let b_task = receiver(b, MESSAGES);
    let d_task = receiver(d, MESSAGES);
    // A third of the way in, node 1 dies.
    while a_sent.load(std::sync::atomic::Ordering::Relaxed) < MESSAGES / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match away {
        Away::Kill9 => fleet.nodes[1].0.kill9(),
        Away::Drain => {
            fleet.node(1).signal("-TERM");
            let exited = fleet.nodes[1].0.wait_exit(Duration::from_secs(10));
            assert!(exited.is_some_and(|status| status.success()), "the drained node exits 0: {exited:?}");
        }
    }
    let ((a_acked, a_moved), (c_acked, c_moved)) =
        (within(a_task).await.unwrap(), within(c_task).await.unwrap());
    let ((b_got, b_moved), (d_got, d_moved)) = (within(b_task).await.unwrap(), within(d_task).await.unwrap());
    // Every message was acknowledged (C's pending ones resent after its
    // reconnect, deduplicated by the store), and each recipient saw each
    // exactly once, in the order sent.
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    assert_eq!(a_acked, expected);
    assert_eq!(c_acked, expected);
    assert_eq!(b_got, expected, "B (resumed on another node)");
    assert_eq!(d_got, expected, "D (its sender resumed on another node)");
    assert_eq!(
        (a_moved, b_moved, c_moved, d_moved),
        (0, 1, 1, 0),
        "B and C moved to another node, nobody else"
    );
}

async fn a_node_stopped_past_its_lease_fences_itself_and_its_sessions_miss_nothing(kind: Kind) {
    let fleet = Fleet::start(kind, 2);
    let mut a = fleet.connect(0, 1, 1).await;
    let mut b = fleet.connect(1, 2, 1).await;
    send_acked(&mut a, 2, "before").await;
    assert_eq!(deliveries(&mut b, 1).await[0].payload.bytes().as_ref(), b"before");
    // Node 1 pauses past its 3 s lease: the others take it for dead.
    fleet.node(1).signal("-STOP");
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    for i in 0..10 {
        send_acked(&mut a, 2, &format!("paused {i}")).await;
    }
    fleet.node(1).signal("-CONT");
    // It finds its lease gone, joins with a new epoch, places B again and
    // resyncs it: B gets everything once, in order, on the same connection.
    let got: Vec<Vec<u8>> = deliveries(&mut b, 10).await.iter().map(|d| d.payload.bytes().to_vec()).collect();
    let expected: Vec<Vec<u8>> = (0..10).map(|i| format!("paused {i}").into_bytes()).collect();
    assert_eq!(got, expected);
    no_delivery(&mut b, Duration::from_millis(500)).await;
    assert_eq!(fleet.node(1).metric("gateway_fleet_fenced_total"), 1.0);
    // And it is reachable live again.
    send_acked(&mut a, 2, "after").await;
    assert_eq!(deliveries(&mut b, 1).await[0].payload.bytes().as_ref(), b"after");
}

async fn a_device_that_moved_while_its_node_was_stopped_stays_where_it_moved(kind: Kind) {
    let fleet = Fleet::start(kind, 2);
    let mut a = fleet.connect(0, 1, 1).await;
    let mut old = fleet.connect(1, 2, 1).await;
    // Node 1 pauses past its lease; meanwhile B's device connects on node 0
    // (node 1 holds no lease: nobody tells it, it is taken for dead).
    fleet.node(1).signal("-STOP");
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let mut new = fleet.connect(0, 2, 1).await;
    send_acked(&mut a, 2, "while stopped").await;
    assert_eq!(deliveries(&mut new, 1).await[0].payload.bytes().as_ref(), b"while stopped");
    // Node 1 comes back fenced: placing its sessions again, it finds B's
    // device on a live node and closes its own, older session with 4007,
    // instead of taking the device back from the newer one.
    fleet.node(1).signal("-CONT");
    let closed = closed_with(&mut old).await;
    assert_eq!(closed, Some(protocol::CloseCode::REPLACED));
    assert_eq!(fleet.node(1).metric("gateway_fleet_fenced_total"), 1.0);
    assert_eq!(fleet.node(1).metric("gateway_fleet_replaced_total"), 1.0);
    // The newer session still gets B's messages, live.
    send_acked(&mut a, 2, "after").await;
    assert_eq!(deliveries(&mut new, 1).await[0].payload.bytes().as_ref(), b"after");
    no_delivery(&mut new, Duration::from_millis(500)).await;
}

async fn a_stopped_peer_costs_its_senders_a_bounded_queue_and_loses_nothing(kind: Kind) {
    // The smallest queue and credit a node takes: 1 MiB + 4 bytes each.
    let fleet = Fleet::start_with(kind, 2, "link_queue_bytes = 1048580\nlink_window_bytes = 1048580\n");
    let mut a = fleet.connect(0, 1, 1).await;
    let mut b = fleet.connect(1, 2, 1).await;
    send_acked(&mut a, 2, "warm").await;
    assert_eq!(deliveries(&mut b, 1).await[0].payload.bytes().as_ref(), b"warm");
    // Node 1 stops reading (SIGSTOP, within its lease): 5 MiB of messages
    // for B pile up on node 0's side of the link.
    fleet.node(1).signal("-STOP");
    // Sent at once, as a client does: each SEND_ACK waits for node 1 (up to
    // cluster.ack_wait_ms), all of them at the same time.
    let queue = "gateway_fleet_link_queue_bytes{peer=\"2\"}";
    let mut highest = 0.0f64;
    let mut pending = std::collections::HashSet::new();
    for i in 0..80 {
        let mut body = format!("big {i}|").into_bytes();
        body.resize(60_000, b'.');
        pending.insert(a.send(Conversation::Direct(UserId(2)), Payload::new(body).unwrap()).await.unwrap());
        highest = highest.max(fleet.node(0).metric(queue));
    }
    while !pending.is_empty() {
        let id = wait_for(&mut a, |event| match event {
            Event::Sent { client_id, .. } => Some(*client_id),
            _ => None,
        })
        .await;
        pending.remove(&id);
        highest = highest.max(fleet.node(0).metric(queue));
    }
    assert!(highest <= 1_048_580.0, "the queue stayed within its bound: {highest} bytes");
    let shed = fleet.node(0).metric("gateway_fleet_link_shed_total{peer=\"2\",lane=\"live\"}");
    assert!(shed > 0.0, "what neither the credit nor the queue holds is shed and counted");
    fleet.node(1).signal("-CONT");
    // B gets all 80 once, in order: what was shed comes from the store (the
    // session sees the gap at the next live entry and resyncs).
    let got: Vec<String> = deliveries(&mut b, 80)
        .await
        .iter()
        .map(|d| String::from_utf8_lossy(d.payload.bytes()).split('|').next().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = (0..80).map(|i| format!("big {i}")).collect();
    assert_eq!(got, expected);
    no_delivery(&mut b, Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_storm_over_the_fleet_with_a_node_killed_loses_nothing() {
    const SESSIONS: u64 = 300;
    let fleet = Fleet::start_with(
        Kind::Single,
        3,
        "[limits]\nconnections_per_ip_per_sec = 100000\nconnections_per_ip_burst = 100000\n",
    );
    let targets: Vec<String> = (0..3).map(|i| fleet.node(i).listen.to_string()).collect();
    let key = fleet.node(0).data_dir().join("keys").join("dev-signing.pk8");
    let killed = fleet.node(1).child.id().to_string();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("flood");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p flood` (the test suite does)",
        bin.display()
    );
    // Session i on node i mod 3: each pair spans two nodes. At the trigger
    // node 1 dies with a third of the sessions; they resume on the next node.
    let mut args: Vec<String> = ["storm", "--fleet", "--sessions", &SESSIONS.to_string(), "--drop", "0"]
        .iter()
        .map(ToString::to_string)
        .collect();
    for target in &targets {
        args.extend(["--target".to_owned(), target.clone()]);
    }
    args.extend(
        [
            "--rate",
            "4/s",
            "--warmup",
            "1",
            "--after",
            "2",
            "--connect-rate",
            "300/s",
            "--storm-timeout",
            "60",
            "--signing-key",
        ]
        .iter()
        .map(ToString::to_string),
    );
    args.extend([key.display().to_string(), "--kill-at-storm".to_owned(), killed, "--json".to_owned()]);
    let output = tokio::task::spawn_blocking(move || std::process::Command::new(bin).args(args).output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "flood failed: {}\n{stdout}\n{stderr}", output.status);
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let count = |key: &str| summary[key].as_u64().unwrap_or_else(|| panic!("no {key} in {summary}"));
    // Sessions 1, 4, 7, ... were on node 1: every one of them lost its
    // connection, came back on another node and synced.
    assert_eq!(count("connections_lost"), SESSIONS / 3, "{stderr}");
    assert_eq!(count("resynced"), SESSIONS / 3);
    assert_eq!(summary["all_back"], serde_json::Value::Bool(true));
    assert!(count("acked") > SESSIONS, "traffic flowed across nodes: {summary}");
    assert_eq!((count("lost"), count("duplicates")), (0, 0), "{summary}");
}

/// A task that sends `count` messages to `to` one after the other, each
/// once acknowledged (reconnecting to the next node when its node is gone);
/// returns how many were acknowledged so far, and the acknowledged texts.
fn sender(
    mut client: Client,
    to: u64,
    count: usize,
) -> (std::sync::Arc<std::sync::atomic::AtomicUsize>, tokio::task::JoinHandle<(Vec<String>, usize)>) {
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shared = progress.clone();
    let task = tokio::spawn(async move {
        let mut reconnects = 0;
        let mut acked = Vec::new();
        let mut next = 0;
        let mut waiting: Option<u64> = None;
        while acked.len() < count {
            if waiting.is_none() && next < count {
                // While disconnected the send stays pending; the reconnect
                // resends it with its client id.
                let text = format!("m{next}");
                waiting = Some(client.send(Conversation::Direct(UserId(to)), payload(&text)).await.unwrap());
                next += 1;
            }
            match client.next_event().await {
                Ok(Event::Sent { client_id, .. }) if Some(client_id) == waiting => {
                    acked.push(format!("m{}", acked.len()));
                    shared.store(acked.len(), std::sync::atomic::Ordering::Relaxed);
                    waiting = None;
                }
                // A draining node: go now (its listener is closed, so the
                // reconnect lands on another node).
                Ok(Event::GoAway(_)) | Err(_) => reconnect(&mut client, &mut reconnects).await,
                Ok(_) => {}
            }
        }
        (acked, reconnects)
    });
    (progress, task)
}

/// A task that takes `count` deliveries (acking each, reconnecting to the
/// next node when its node is gone) and returns their texts in order.
fn receiver(mut client: Client, count: usize) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    tokio::spawn(async move {
        let mut reconnects = 0;
        let mut got = Vec::new();
        while got.len() < count {
            match client.next_event().await {
                Ok(Event::Delivered(deliver)) => {
                    got.push(String::from_utf8_lossy(deliver.payload.bytes()).into_owned());
                    let _ = client.ack(deliver.seq).await;
                }
                Ok(Event::SyncProgress { up_to, .. }) if up_to.0 > 0 => {
                    let _ = client.ack(up_to).await;
                }
                // A draining node: go now (its listener is closed, so the
                // reconnect lands on another node).
                Ok(Event::GoAway(_)) | Err(_) => reconnect(&mut client, &mut reconnects).await,
                Ok(_) => {}
            }
        }
        (got, reconnects)
    })
}

/// Reconnects (to the next node that answers), retrying for a while;
/// counts it in `reconnects`.
async fn reconnect(client: &mut Client, reconnects: &mut usize) {
    for _ in 0..100 {
        if client.reconnect().await.is_ok() {
            *reconnects += 1;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no node took the client back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_while_redis_is_down_serves_its_clients_and_stops_cleanly() {
    let store_dir = temp_dir();
    let store = Service::start("store", vec!["--data-dir".into(), store_dir.to_str().unwrap().into()]);
    let push = Service::start("push", vec![]);
    let dir = temp_dir();
    std::fs::write(dir.join("cluster.secret"), SECRET).unwrap();
    // Nothing listens there: the registry is down from the start.
    let redis = free_port();
    let config = format!(
        "[drain]\nwindow_ms = 200\ndeadline_ms = 1000\n\
         [store]\nmode = \"remote\"\nendpoint = \"http://{}\"\n[push]\nmode = \"remote\"\nendpoint = \"http://{}\"\n\
         [cluster]\nregistry = [\"redis://{redis}\"]\nlink_listen = \"{}\"\nsecret_file = \"{}\"\n",
        store.addr,
        push.addr,
        free_port(),
        dir.join("cluster.secret").display(),
    );
    let mut node = Gateway::start_in(dir, &config);
    until_readyz(&node, 503).await;
    assert_eq!(node.http_get("/readyz").unwrap().1, "registry unreachable\n");
    let signer = gateway_auth::keys::load_or_create_dev_signer(&node.data_dir()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let token = signer.mint(UserId(1), DeviceId(1), now, 3_600).into_bytes();
    // Served (unplaced), and its messages to itself are stored and delivered.
    let mut client =
        within(Client::connect(ClientConfig::new(node.url(), token, DeviceId(1)))).await.unwrap();
    send_acked(&mut client, 1, "note to self").await;
    // It drains and stops although it never joined (no lease to give up).
    node.signal("-TERM");
    let exited = node.wait_exit(Duration::from_secs(15));
    assert!(exited.is_some_and(|status| status.success()), "{exited:?}");
}
