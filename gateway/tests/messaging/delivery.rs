//! One-to-one delivery: live, offline then sync, retried sends, ordering when
//! live traffic races a sync, and a 100K backlog.

use std::collections::BTreeSet;
use std::time::Duration;

use backend_store::{Connect, Request, Response, SendMessage, Store, StoreApi, StoreConfig};
use client::Event;
use protocol::{Conversation, DeviceId, Frame, Payload, SendMessage as Send, UserId};

use super::{
    all_modes, connect, connect_after, deliveries, no_delivery, wait_for, within, Backing, Cluster, Mode,
};

fn payload(text: &str) -> Payload {
    Payload::new(text.as_bytes().to_vec()).unwrap()
}

all_modes!(one_to_one_reaches_every_device_and_receipts_come_back);
async fn one_to_one_reaches_every_device_and_receipts_come_back(mode: Mode) {
    let cluster = Cluster::start(mode, "");
    let mut a1 = connect(&cluster, 1, 1).await;
    let mut a2 = connect(&cluster, 1, 2).await;
    let mut b1 = connect(&cluster, 2, 1).await;
    let mut b2 = connect(&cluster, 2, 2).await;
    let id = a1.send(Conversation::Direct(UserId(2)), payload("hello")).await.unwrap();
    let (message_id, conv_seq) = wait_for(&mut a1, |event| match event {
        Event::Sent { client_id, message_id, conv_seq, duplicate: false, .. } if *client_id == id => {
            Some((*message_id, *conv_seq))
        }
        _ => None,
    })
    .await;
    for (client, seen_as) in [(&mut b1, UserId(1)), (&mut b2, UserId(1)), (&mut a2, UserId(2))] {
        let got = deliveries(client, 1).await;
        assert_eq!(got[0].message_id, message_id);
        assert_eq!(got[0].conversation, Conversation::Direct(seen_as));
        assert_eq!((got[0].sender, got[0].sender_device), (UserId(1), DeviceId(1)));
        assert_eq!(got[0].payload.bytes().as_ref(), b"hello");
    }
    // B's ack (in `deliveries`) moved B's delivered cursor: both of A's devices hear it.
    for client in [&mut a1, &mut a2] {
        let receipt = wait_for(client, |event| match event {
            Event::Receipt(r) if r.kind == protocol::ReceiptKind::Delivered => Some(r.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            (receipt.user, receipt.conversation, receipt.up_to),
            (UserId(2), Conversation::Direct(UserId(2)), conv_seq)
        );
    }
    // The author's own device gets no copy.
    no_delivery(&mut a1, Duration::from_millis(200)).await;
}

all_modes!(an_offline_device_gets_its_backlog_in_order_on_reconnect);
async fn an_offline_device_gets_its_backlog_in_order_on_reconnect(mode: Mode) {
    let cluster = Cluster::start(mode, "[messaging]\nsync_window = 4\n");
    // B registers its device, then goes away.
    let mut b = connect(&cluster, 2, 1).await;
    b.close().await.unwrap();
    let mut a = connect(&cluster, 1, 1).await;
    for i in 0..10 {
        a.send(Conversation::Direct(UserId(2)), payload(&format!("m{i}"))).await.unwrap();
    }
    let mut acked = 0;
    while acked < 10 {
        wait_for(&mut a, |event| matches!(event, Event::Sent { .. }).then_some(())).await;
        acked += 1;
    }
    let mut b = connect_after(&cluster, 2, 1, 0).await;
    // `connect_after` waited for SYNC_DONE, acking the windows on the way.
    assert_eq!(b.session().acked().0, 10, "ten entries synced and acked");
    // Reconnecting after the ack replays nothing.
    b.close().await.unwrap();
    let mut b = connect_after(&cluster, 2, 1, 10).await;
    no_delivery(&mut b, Duration::from_millis(300)).await;
}

all_modes!(backlog_arrives_in_seq_order_with_payloads);
async fn backlog_arrives_in_seq_order_with_payloads(mode: Mode) {
    let cluster = Cluster::start(mode, "[messaging]\nsync_window = 3\n");
    let mut b = connect(&cluster, 2, 1).await;
    b.close().await.unwrap();
    let mut a = connect(&cluster, 1, 1).await;
    for i in 0..7 {
        a.send(Conversation::Direct(UserId(2)), payload(&format!("m{i}"))).await.unwrap();
    }
    for _ in 0..7 {
        wait_for(&mut a, |event| matches!(event, Event::Sent { .. }).then_some(())).await;
    }
    let config = super::client_config(&cluster, 2, 1, 0);
    let mut b = within(client::Client::connect(config)).await.unwrap();
    let got = deliveries(&mut b, 7).await;
    let texts: Vec<String> =
        got.iter().map(|d| String::from_utf8_lossy(d.payload.bytes()).into_owned()).collect();
    assert_eq!(texts, (0..7).map(|i| format!("m{i}")).collect::<Vec<_>>());
    let seqs: Vec<u64> = got.iter().map(|d| d.seq.0).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    let conv: Vec<u64> = got.iter().map(|d| d.conv_seq.0).collect();
    assert!(conv.windows(2).all(|w| w[0] < w[1]), "conversation order {conv:?}");
}

all_modes!(a_retried_send_is_stored_once);
async fn a_retried_send_is_stored_once(mode: Mode) {
    let cluster = Cluster::start(mode, "");
    let mut a = connect(&cluster, 1, 1).await;
    let mut b = connect(&cluster, 2, 1).await;
    let send = Frame::SendMessage(Send {
        client_id: 77,
        to: Conversation::Direct(UserId(2)),
        payload: payload("once").into(),
    });
    a.send_frames(std::slice::from_ref(&send)).await.unwrap();
    a.send_frames(&[send]).await.unwrap();
    let mut acks = Vec::new();
    while acks.len() < 2 {
        let ack = wait_for(&mut a, |event| match event {
            Event::Sent { client_id: 77, message_id, duplicate, .. } => Some((*message_id, *duplicate)),
            _ => None,
        })
        .await;
        acks.push(ack);
    }
    assert_eq!(acks[0].0, acks[1].0, "the same stored message");
    assert_eq!((acks[0].1, acks[1].1), (false, true));
    assert_eq!(deliveries(&mut b, 1).await[0].payload.bytes().as_ref(), b"once");
    no_delivery(&mut b, Duration::from_millis(300)).await;
}

all_modes!(live_traffic_racing_a_sync_arrives_in_order_without_gaps);
async fn live_traffic_racing_a_sync_arrives_in_order_without_gaps(mode: Mode) {
    // Small windows make the sync long enough for live entries to race it.
    let cluster = Cluster::start(mode, "[messaging]\nsync_window = 8\n");
    let mut b = connect(&cluster, 2, 1).await;
    b.close().await.unwrap();
    let mut a = connect(&cluster, 1, 1).await;
    const BACKLOG: usize = 200;
    const LIVE: usize = 200;
    for i in 0..BACKLOG {
        a.send(Conversation::Direct(UserId(2)), payload(&format!("{i}"))).await.unwrap();
    }
    for _ in 0..BACKLOG {
        wait_for(&mut a, |event| matches!(event, Event::Sent { .. }).then_some(())).await;
    }
    // A keeps sending while B reconnects and syncs.
    let sender = tokio::spawn(async move {
        for i in BACKLOG..BACKLOG + LIVE {
            a.send(Conversation::Direct(UserId(2)), payload(&format!("{i}"))).await.unwrap();
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        for _ in 0..LIVE {
            wait_for(&mut a, |event| matches!(event, Event::Sent { .. }).then_some(())).await;
        }
    });
    let config = super::client_config(&cluster, 2, 1, 0);
    let mut b = within(client::Client::connect(config)).await.unwrap();
    let got = deliveries(&mut b, BACKLOG + LIVE).await;
    within(sender).await.unwrap();
    let seqs: Vec<u64> = got.iter().map(|d| d.seq.0).collect();
    assert_eq!(seqs, (1..=(BACKLOG + LIVE) as u64).collect::<Vec<_>>(), "store order, none missing");
    let texts: Vec<usize> =
        got.iter().map(|d| std::str::from_utf8(d.payload.bytes()).unwrap().parse().unwrap()).collect();
    // One device's pipelined sends are stored in the order sent, in both modes.
    assert_eq!(texts, (0..BACKLOG + LIVE).collect::<Vec<_>>());
    no_delivery(&mut b, Duration::from_millis(300)).await;
}

/// Fills the store with `count` messages from user 1 to user 2's device 1,
/// the text of message i being `i`, much faster than through a client: the
/// fjall engine through its own API, the Redis engine through its send
/// steps run in bulk (`backend_store_redis::testing`).
pub(crate) fn fill(backing: Backing<'_>, count: usize) {
    let dir = match backing {
        Backing::Dir(dir) => dir,
        Backing::Redis(urls) => {
            let payloads: Vec<bytes::Bytes> =
                (0..count).map(|i| format!("{i}").into_bytes().into()).collect();
            let (from, to) = ((UserId(1), DeviceId(1)), (UserId(2), DeviceId(1)));
            backend_store_redis::testing::fill_direct(urls, from, to, &payloads).unwrap();
            return;
        }
    };
    // The node reads GATEWAY_STORE_WRITERS too (`scripts/test` sets it for a
    // second run): a store directory opens only with its writer count.
    let mut config = StoreConfig::new(dir);
    if let Some(writers) = std::env::var("GATEWAY_STORE_WRITERS").ok().and_then(|w| w.parse().ok()) {
        config.writers = writers;
    }
    let store = Store::open(config).unwrap();
    let call = |request: Request| {
        let (tx, rx) = std::sync::mpsc::channel();
        store.call(request, Box::new(move |result| tx.send(result).unwrap()));
        rx
    };
    for (user, device) in [(1, 1), (2, 1)] {
        let connect = Connect { user: UserId(user), device: DeviceId(device) };
        assert!(matches!(call(Request::Connect(connect)).recv().unwrap(), Ok(Response::Connected(_))));
    }
    // Pipelined in chunks, so that the writer group-commits them.
    for chunk in (0..count).collect::<Vec<_>>().chunks(1_000) {
        let pending: Vec<_> = chunk
            .iter()
            .map(|&i| {
                call(Request::Send(SendMessage {
                    user: UserId(1),
                    device: DeviceId(1),
                    client_id: i as u64 + 1,
                    to: Conversation::Direct(UserId(2)),
                    payload: format!("{i}").into_bytes().into(),
                }))
            })
            .collect();
        for rx in pending {
            assert!(matches!(rx.recv().unwrap(), Ok(Response::Sent(_))));
        }
    }
}

all_modes!(a_backlog_of_100k_drains_in_order);
async fn a_backlog_of_100k_drains_in_order(mode: Mode) {
    const COUNT: usize = 100_000;
    let push = super::cluster::PushSettings::default();
    let cluster = Cluster::start_with(mode, "", &push, |backing| fill(backing, COUNT));
    let config = super::client_config(&cluster, 2, 1, 0);
    let mut b = within(client::Client::connect(config)).await.unwrap();
    let mut next = 1u64;
    let mut seen = BTreeSet::new();
    loop {
        let event = within(b.next_event()).await.unwrap();
        match event {
            Event::Delivered(deliver) => {
                assert_eq!(deliver.seq.0, next, "in seq order, none missing");
                let text: usize = std::str::from_utf8(deliver.payload.bytes()).unwrap().parse().unwrap();
                assert_eq!(text, next as usize - 1);
                seen.insert(deliver.message_id);
                next += 1;
            }
            Event::SyncProgress { up_to, .. } => b.ack(up_to).await.unwrap(),
            Event::Synced { head } => {
                assert_eq!(head.0, COUNT as u64);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(seen.len(), COUNT);
}

all_modes!(a_user_holds_at_most_the_configured_number_of_devices);
async fn a_user_holds_at_most_the_configured_number_of_devices(mode: Mode) {
    // The default limit is 5 (the remote store is started with --max-devices 5).
    let cluster = Cluster::start(mode, "");
    let mut devices = Vec::new();
    for device in 1..=5 {
        devices.push(connect(&cluster, 1, device).await);
    }
    let refused = within(client::Client::connect(super::client_config(&cluster, 1, 6, 0))).await.unwrap_err();
    match refused {
        client::ClientError::AuthRejected { code, .. } => {
            assert_eq!(code, protocol::ErrorCode::TOO_MANY_DEVICES)
        }
        other => panic!("expected TOO_MANY_DEVICES, got {other}"),
    }
    // A registered device still connects; a message reaches all five.
    let mut a = connect(&cluster, 2, 1).await;
    a.send(Conversation::Direct(UserId(1)), payload("to all")).await.unwrap();
    for device in &mut devices {
        assert_eq!(deliveries(device, 1).await[0].payload.bytes().as_ref(), b"to all");
    }
}

all_modes!(a_burst_of_acks_is_stored_up_to_the_last_even_when_the_device_closes_at_once);
/// The gateway keeps one store Ack in flight per connection and lets the
/// newest ACK stand for those that arrive meanwhile (SPEC §6.2): the last of a
/// burst must still be stored, also when the connection closes right after it.
async fn a_burst_of_acks_is_stored_up_to_the_last_even_when_the_device_closes_at_once(mode: Mode) {
    let cluster = Cluster::start(mode, "");
    let mut a = connect(&cluster, 1, 1).await;
    let mut b = connect(&cluster, 2, 1).await;
    for close_after_burst in [false, true] {
        let mut last_conv_seq = protocol::ConvSeq(0);
        for i in 0..20 {
            a.send(Conversation::Direct(UserId(2)), payload(&format!("m{i}"))).await.unwrap();
        }
        for _ in 0..20 {
            let conv_seq = wait_for(&mut a, |event| match event {
                Event::Sent { conv_seq, .. } => Some(*conv_seq),
                _ => None,
            })
            .await;
            last_conv_seq = last_conv_seq.max(conv_seq);
        }
        // B takes the 20 deliveries without acking them, then acks each one
        // separately, all in one WebSocket message: one read at the gateway.
        let mut seqs = Vec::new();
        while seqs.len() < 20 {
            if let Event::Delivered(deliver) = within(b.next_event()).await.unwrap() {
                seqs.push(deliver.seq);
            }
        }
        let acks: Vec<Frame> = seqs.iter().map(|&up_to| Frame::Ack(protocol::Ack { up_to })).collect();
        b.send_frames(&acks).await.unwrap();
        if close_after_burst {
            b.close().await.unwrap();
        }
        // The delivered cursor reaches the last message (intermediate
        // receipts may come first).
        wait_for(&mut a, |event| match event {
            Event::Receipt(r) if r.kind == protocol::ReceiptKind::Delivered && r.up_to == last_conv_seq => {
                Some(())
            }
            _ => None,
        })
        .await;
    }
    // Every entry left B's inbox: a device that resumes from 0 syncs nothing
    // (`connect_after` acks what a sync brings, so its cursor would move).
    let mut b = connect_after(&cluster, 2, 1, 0).await;
    assert_eq!(b.session().acked().0, 0, "entries were left in the inbox");
    no_delivery(&mut b, Duration::from_millis(300)).await;
}

all_modes!(a_reader_that_stalls_until_live_pauses_gets_everything_once_it_reads);
async fn a_reader_that_stalls_until_live_pauses_gets_everything_once_it_reads(mode: Mode) {
    // B stops reading while A sends 8 MB: B's socket buffers fill, then its
    // session's queue passes the (small) pause mark and live delivery pauses.
    // When B reads again, the write that drains the queue resumes delivery,
    // which reads the rest from the store: that sync must reach B. (Before
    // the hub, the driver lost a session whose write produced more work: its
    // output was never written again, and B was cut within 2 s.)
    const COUNT: usize = 2_000;
    let config =
        "[session]\noutbound_pause_bytes = 16384\n[limits]\nframes_per_sec = 100000\nframes_burst = 100000\n";
    let cluster = Cluster::start(mode, config);
    let mut b = connect(&cluster, 2, 1).await;
    let mut a = connect(&cluster, 1, 1).await;
    for i in 0..COUNT {
        a.send(Conversation::Direct(UserId(2)), payload(&format!("{i:>4096}"))).await.unwrap();
        if i % 100 == 99 {
            for _ in 0..100 {
                wait_for(&mut a, |event| matches!(event, Event::Sent { .. }).then_some(())).await;
            }
        }
    }
    let paused = r#"gateway_drops_total{reason="live_paused"}"#;
    assert!(cluster.gateway.metric(paused) >= 1.0, "live delivery to the stalled reader never paused");
    let got = deliveries(&mut b, COUNT).await;
    let seqs: Vec<u64> = got.iter().map(|d| d.seq.0).collect();
    assert_eq!(seqs, (1..=COUNT as u64).collect::<Vec<_>>(), "every entry once, in order");
    let last: usize = std::str::from_utf8(got[COUNT - 1].payload.bytes()).unwrap().trim().parse().unwrap();
    assert_eq!(last, COUNT - 1);
}
