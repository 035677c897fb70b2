//! SEND_ACK in a fleet: it waits until the nodes of the recipients took the
//! message's entries (at most `cluster.ack_wait_ms`), and a client whose
//! node died before that resends through another node, whose deduplicated
//! retry fans the entries out again.

use std::time::Duration;

use client::{Client, Event};
use protocol::{Conversation, Payload, UserId};

use super::super::{deliveries, no_delivery, wait_for, within};
use super::{payload, send_acked, Fleet, Kind};

/// Whether `client`'s SEND_ACK of `id` arrives within `wait`.
async fn acked_within(client: &mut Client, id: u64, wait: Duration) -> bool {
    let acked = wait_for(client, |event| {
        matches!(event, Event::Sent { client_id, .. } if *client_id == id).then_some(())
    });
    tokio::time::timeout(wait, acked).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_ack_waits_until_the_recipients_node_took_the_entry() {
    // ack_wait as long as the lease: a node stopped for a second is waited for.
    let fleet = Fleet::start_with(Kind::Single, 2, "ack_wait_ms = 3000\n");
    let mut a = fleet.connect(0, 1, 1).await;
    let mut b = fleet.connect(1, 2, 1).await;
    send_acked(&mut a, 2, "warm").await;
    assert_eq!(deliveries(&mut b, 1).await[0].payload.bytes().as_ref(), b"warm");
    // B's node stops: the entry is stored, written to the link, not taken.
    fleet.node(1).signal("-STOP");
    let id = a.send(Conversation::Direct(UserId(2)), payload("held")).await.unwrap();
    assert!(
        !acked_within(&mut a, id, Duration::from_millis(800)).await,
        "no SEND_ACK before the recipient's node took the entry"
    );
    fleet.node(1).signal("-CONT");
    assert!(acked_within(&mut a, id, Duration::from_secs(10)).await, "the SEND_ACK once it took it");
    assert_eq!(deliveries(&mut b, 1).await[0].payload.bytes().as_ref(), b"held");
    let node = fleet.node(0);
    assert_eq!(node.metric("gateway_send_acks_held_total"), 2.0);
    assert_eq!(node.metric("gateway_send_acks_unconfirmed_total"), 0.0);
    // Stopped past ack_wait: the SEND_ACK goes at the bound, unconfirmed
    // (the message is stored: B gets it once its node is back).
    fleet.node(1).signal("-STOP");
    send_acked(&mut a, 2, "bounded").await;
    assert_eq!(node.metric("gateway_send_acks_unconfirmed_total"), 1.0);
    fleet.node(1).signal("-CONT");
    assert_eq!(deliveries(&mut b, 1).await[0].payload.bytes().as_ref(), b"bounded");
    no_delivery(&mut b, Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_whose_node_died_before_their_send_ack_reach_the_live_recipient_through_the_retry() {
    const MESSAGES: usize = 24;
    // The smallest credit and queue: 24 messages of 60 KB are more than the
    // link to B's node may write while that node is stopped.
    let extra = "ack_wait_ms = 3000\nlink_queue_bytes = 1048580\nlink_window_bytes = 1048580\n";
    let mut fleet = Fleet::start_with(Kind::Single, 3, extra);
    let mut a = within(Client::connect(fleet.config_with_fallbacks(0, 1, 1))).await.unwrap();
    let mut b = fleet.connect(1, 2, 1).await;
    send_acked(&mut a, 2, "warm").await;
    assert_eq!(deliveries(&mut b, 1).await[0].payload.bytes().as_ref(), b"warm");
    fleet.node(1).signal("-STOP");
    for i in 0..MESSAGES {
        let mut body = format!("big {i}|").into_bytes();
        body.resize(60_000, b'.');
        a.send(Conversation::Direct(UserId(2)), Payload::new(body).unwrap()).await.unwrap();
    }
    // Every message stored, the first ones written to the link, the last
    // ones still queued on A's node when it dies: only A's resends can
    // announce those to B, which sees no gap (nothing follows them).
    // Wait until entries stay queued (the link's credit is spent), not for
    // a batch passing through the queue on its way to the socket.
    let queued = "gateway_fleet_link_queue_bytes{peer=\"2\"}";
    let mut stuck = 0;
    for _ in 0..500 {
        stuck = if fleet.node(0).metric(queued) > 0.0 { stuck + 1 } else { 0 };
        if stuck == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stuck, 5, "some entries wait on A's node, unwritten");
    assert_eq!(fleet.node(0).metric("gateway_send_acks_unconfirmed_total"), 0.0);
    fleet.nodes[0].0.kill9();
    fleet.node(1).signal("-CONT");
    // A resumes on another node and resends its pending messages (the
    // store has them: duplicates, with their entries to fan out again).
    let sender = tokio::spawn(async move {
        let mut acked = 0;
        let mut duplicates = 0;
        while acked < MESSAGES {
            match a.next_event().await {
                Ok(Event::Sent { duplicate, .. }) => {
                    acked += 1;
                    duplicates += usize::from(duplicate);
                }
                Ok(_) => {}
                Err(_) => {
                    let mut tries = 0;
                    while a.reconnect().await.is_err() {
                        tries += 1;
                        assert!(tries < 100, "no node took A back");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        duplicates
    });
    // B, live on its node all along, gets each message once, in order.
    let got: Vec<String> = deliveries(&mut b, MESSAGES)
        .await
        .iter()
        .map(|d| String::from_utf8_lossy(d.payload.bytes()).split('|').next().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("big {i}")).collect();
    assert_eq!(got, expected);
    no_delivery(&mut b, Duration::from_millis(500)).await;
    let duplicates = within(sender).await.unwrap();
    // The queued ones at least were stored before A's node died.
    assert!(duplicates > 0, "the resends were deduplicated");
}
