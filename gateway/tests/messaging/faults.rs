//! `kill -9` in the middle of traffic: of the gateway (every mode), of the
//! store and push processes (remote mode), and of a Redis master (with a
//! replica, and the store waiting for it). Afterwards every acknowledged
//! message reaches the recipient exactly once (counted at the application),
//! and none is lost.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use client::{Client, ClientError, Event};
use protocol::{Conversation, Payload, UserId};

use super::{all_modes, connect, within, Cluster, Mode};

/// What the sender saw: payload text → acknowledged.
type Acked = BTreeMap<String, bool>;

/// Sends `count` messages to user 2 without waiting, recording each ack; on
/// a resumable error reconnects (pending sends are resent with their ids).
async fn send_through_faults(mut a: Client, count: usize) -> (Client, Acked) {
    let mut acked = Acked::new();
    let mut ids = BTreeMap::new();
    // Sends refused with a retryable code, resent in rounds.
    let mut retry = Vec::new();
    for i in 0..count {
        let text = format!("msg-{i}");
        let id = loop {
            match a
                .send(Conversation::Direct(UserId(2)), Payload::new(text.clone().into_bytes()).unwrap())
                .await
            {
                Ok(id) => break id,
                Err(err) => reconnect(&mut a, err).await,
            }
        };
        ids.insert(id, text.clone());
        acked.insert(text, false);
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Take what has arrived, without waiting.
        while let Ok(Ok(event)) = tokio::time::timeout(Duration::ZERO, a.next_event()).await {
            record(&event, &ids, &mut acked, &mut retry);
        }
    }
    // Every send must end acknowledged: retryable refusals are resent (in
    // rounds) and lost connections resumed, with the same client ids.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.values().any(|done| !done) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} sends never acknowledged",
            acked.values().filter(|done| !**done).count(),
            acked.len()
        );
        match tokio::time::timeout(Duration::from_millis(300), a.next_event()).await {
            Ok(Ok(event)) => record(&event, &ids, &mut acked, &mut retry),
            Ok(Err(err)) => reconnect(&mut a, err).await,
            Err(_) => {
                for client_id in retry.drain(..) {
                    let _ = a.resend(client_id).await;
                }
            }
        }
    }
    (a, acked)
}

/// Marks acknowledged sends; collects retryable refusals for the next round.
fn record(event: &Event, ids: &BTreeMap<u64, String>, acked: &mut Acked, retry: &mut Vec<u64>) {
    match event {
        Event::Sent { client_id, .. } => {
            if let Some(text) = ids.get(client_id) {
                acked.insert(text.clone(), true);
            }
        }
        Event::SendFailed { client_id, retryable: true, .. } => retry.push(*client_id),
        Event::SendFailed { client_id, code, .. } => panic!("send {client_id} refused for good: {code}"),
        _ => {}
    }
}

async fn reconnect(client: &mut Client, err: ClientError) {
    assert!(err.is_resumable(), "{err}");
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if client.reconnect().await.is_ok() {
            return;
        }
    }
}

/// Connects user 2 and collects every message until `expected` distinct ones
/// arrived, counting duplicates surfaced to the application (none allowed).
async fn receive_all(cluster: &Cluster, expected: &HashSet<String>) {
    let mut b = within(Client::connect(super::client_config(cluster, 2, 1, 0))).await.unwrap();
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !expected.is_subset(&seen) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {:?}",
            expected.difference(&seen).take(5).collect::<Vec<_>>()
        );
        let event = tokio::time::timeout(Duration::from_secs(20), b.next_event()).await;
        let event = event.unwrap_or_else(|_| panic!("stalled after {} of {}", seen.len(), expected.len()));
        match event.unwrap() {
            Event::Delivered(d) => {
                let text = String::from_utf8(d.payload.bytes().to_vec()).unwrap();
                assert!(seen.insert(text.clone()), "{text} surfaced twice");
                b.ack(d.seq).await.unwrap();
            }
            Event::SyncProgress { up_to, .. } if up_to.0 > 0 => b.ack(up_to).await.unwrap(),
            _ => {}
        }
    }
    // Nothing else arrives: every message exactly once.
    let quiet = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(event) = tokio::time::timeout_at(quiet, b.next_event()).await {
        if let Ok(Event::Delivered(d)) = event {
            let text = String::from_utf8(d.payload.bytes().to_vec()).unwrap();
            assert!(seen.insert(text.clone()), "{text} surfaced twice");
        }
    }
    // Resent sends that were stored before the crash are deduplicated, so the
    // recipient has exactly the acknowledged set.
    assert_eq!(&seen, expected);
}

/// Sends while `fault` strikes after `after` messages; checks delivery.
async fn survive(mode: Mode, fault: impl FnOnce(&mut Cluster) + Send + 'static) {
    const COUNT: usize = 300;
    let mut cluster = Cluster::start(mode, "");
    // B registers its device, then stays away while A sends.
    connect(&cluster, 2, 1).await.close().await.unwrap();
    let a = connect(&cluster, 1, 1).await;
    let sending = tokio::spawn(send_through_faults(a, COUNT));
    tokio::time::sleep(Duration::from_millis(300)).await;
    fault(&mut cluster);
    let result = tokio::time::timeout(Duration::from_secs(90), sending).await.expect("sends stalled");
    let (_a, acked) = result.unwrap();
    let expected: HashSet<String> = acked.into_keys().collect();
    assert_eq!(expected.len(), COUNT);
    receive_all(&cluster, &expected).await;
}

all_modes!(kill9_of_the_gateway_loses_no_acknowledged_message);
async fn kill9_of_the_gateway_loses_no_acknowledged_message(mode: Mode) {
    survive(mode, |cluster| cluster.gateway.kill9_and_restart()).await;
}

// The store process on fjall, and a store instance of the Redis engine
// (its chains interrupted mid-way are rolled forward by the resends).
super::in_modes!(kill9_of_the_store_loses_no_acknowledged_message: remote Remote, redis Redis);
async fn kill9_of_the_store_loses_no_acknowledged_message(mode: Mode) {
    survive(mode, |cluster| {
        let store = cluster.store.as_mut().unwrap();
        store.kill9();
        std::thread::sleep(Duration::from_millis(300));
        store.restart();
    })
    .await;
}

// A Redis master dies mid-traffic with writes its replica has not taken
// yet: the replica is stopped (SIGSTOP) and the link to it filled, so the
// master acknowledges what only it holds; then the master is killed and the
// replica, resumed, takes over without those writes. The store acknowledges
// a send only once a replica has its writes (`--replicas 1`), so nothing
// acknowledged is among them. (With `--replicas 0` it fails.) Sends refused
// meanwhile are retried by the client. Once for the master of the
// conversation's slot (the append), once for the recipient's (its entries).
super::in_modes!(kill9_of_the_conversations_redis_master_loses_no_acknowledged_message: redis_replicas RedisReplicas);
async fn kill9_of_the_conversations_redis_master_loses_no_acknowledged_message(mode: Mode) {
    survive(mode, |cluster| fail_over_master_of(cluster, "{p:1:2}:seq")).await;
}

super::in_modes!(kill9_of_the_recipients_redis_master_loses_no_acknowledged_message: redis_replicas RedisReplicas);
async fn kill9_of_the_recipients_redis_master_loses_no_acknowledged_message(mode: Mode) {
    survive(mode, |cluster| fail_over_master_of(cluster, "{u:2}:devs")).await;
}

/// Fails over the master that serves `key`, with writes only it holds.
fn fail_over_master_of(cluster: &mut Cluster, key: &str) {
    let redis = cluster.redis.as_mut().unwrap();
    let master = redis.master_of(key).expect("a master serves the key");
    let replica = redis.replica_of(master).expect("the master has a replica");
    redis.freeze(replica, true);
    // 8 MB more than the link takes: what follows stays in the master.
    let fill = "redis.call('SET', KEYS[1], string.rep('x', 8388608)) return 1";
    let filler = format!("{}:fill", &key[..key.find('}').unwrap() + 1]);
    assert_eq!(redis.cli(master, &["EVAL", fill, "1", &filler]).trim(), "1");
    std::thread::sleep(Duration::from_millis(400));
    redis.kill9(master);
    redis.freeze(replica, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while redis.master_of(key) != Some(replica) {
        assert!(std::time::Instant::now() < deadline, "the replica did not take over");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Back, as the new master's replica.
    redis.restart(master);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_push_loses_no_acknowledged_message() {
    survive(Mode::Remote, |cluster| cluster.push.as_mut().unwrap().kill9_and_restart()).await;
}

/// `/readyz` follows the remote store: 503 (`store not writable`) soon after
/// the store process dies, 200 again once it is back, with no client traffic
/// (the store client reopens its stream by itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_remote_store_without_traffic() {
    let mut cluster = Cluster::start(Mode::Remote, "");
    let readyz = |cluster: &Cluster| cluster.gateway.http_get("/readyz");
    let wait_for = |cluster: &Cluster, status: u16| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match readyz(cluster) {
                Some((got, body)) if got == status => return body,
                other => assert!(std::time::Instant::now() < deadline, "/readyz is {other:?}, not {status}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&cluster, 200);
    assert_eq!(cluster.gateway.metric("gateway_store_writable"), 1.0);
    cluster.store.as_mut().unwrap().kill9();
    assert_eq!(wait_for(&cluster, 503), "store not writable\n");
    assert_eq!(cluster.gateway.metric("gateway_store_writable"), 0.0);
    cluster.store.as_mut().unwrap().restart();
    wait_for(&cluster, 200);
    connect(&cluster, 1, 1).await;
}
