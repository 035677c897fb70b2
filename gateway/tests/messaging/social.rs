//! Receipts and unread counts across devices, presence, typing, prekeys and
//! push notifications to offline devices.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::Event;
use protocol::{
    ConvSeq, Conversation, DeviceId, ErrorCode, Key, OneTimePrekey, Payload, PresenceStatus, ReceiptKind,
    Signature, SignedPrekey, UserId, Visibility,
};

use super::cluster::PushSettings;
use super::{all_modes, connect, connect_after, deliveries, wait_for, Cluster, Mode};

async fn send_and_wait(client: &mut client::Client, to: u64, text: &str) -> ConvSeq {
    let id = client
        .send(Conversation::Direct(UserId(to)), Payload::new(text.as_bytes().to_vec()).unwrap())
        .await
        .unwrap();
    wait_for(client, |event| match event {
        Event::Sent { client_id, conv_seq, .. } if *client_id == id => Some(*conv_seq),
        _ => None,
    })
    .await
}

fn read_receipt(event: &Event, user: u64) -> Option<ConvSeq> {
    match event {
        Event::Receipt(r) if r.kind == ReceiptKind::Read && r.user == UserId(user) => Some(r.up_to),
        _ => None,
    }
}

all_modes!(read_cursors_and_unread_counts_agree_across_devices);
async fn read_cursors_and_unread_counts_agree_across_devices(mode: Mode) {
    let cluster = Cluster::start(mode, "");
    let mut a = connect(&cluster, 1, 1).await;
    let mut b1 = connect(&cluster, 2, 1).await;
    let mut b2 = connect(&cluster, 2, 2).await;
    let mut last = ConvSeq(0);
    for i in 0..3 {
        last = send_and_wait(&mut a, 2, &format!("m{i}")).await;
    }
    let on_b1 = deliveries(&mut b1, 3).await;
    let on_b2 = deliveries(&mut b2, 3).await;
    assert_eq!(on_b1.last().unwrap().conv_seq, last);
    assert_eq!(on_b2.last().unwrap().conv_seq, last);
    // B reads two of three on device 1.
    b1.read(Conversation::Direct(UserId(1)), on_b1[1].conv_seq).await.unwrap();
    let seen_by_b2 = wait_for(&mut b2, |event| read_receipt(event, 2)).await;
    let seen_by_a = wait_for(&mut a, |event| read_receipt(event, 2)).await;
    assert_eq!(seen_by_b2, on_b1[1].conv_seq);
    assert_eq!(seen_by_a, on_b1[1].conv_seq);
    // Unread = last conv_seq − read cursor, the same on both of B's devices.
    assert_eq!(last.0 - seen_by_b2.0, 1);
    // A lower cursor is ignored; device 2 goes away and device 1 reads the rest.
    b1.read(Conversation::Direct(UserId(1)), ConvSeq(1)).await.unwrap();
    b2.close().await.unwrap();
    b1.read(Conversation::Direct(UserId(1)), last).await.unwrap();
    assert_eq!(wait_for(&mut a, |event| read_receipt(event, 2)).await, last);
    // Back online, device 2 gets the cursor that moved while it was away.
    let mut b2 =
        super::within(client::Client::connect(super::client_config(&cluster, 2, 2, 3))).await.unwrap();
    assert_eq!(wait_for(&mut b2, |event| read_receipt(event, 2)).await, last);
}

fn presence(event: &Event, user: u64) -> Option<(PresenceStatus, u64)> {
    match event {
        Event::Presence(p) if p.user == UserId(user) => Some((p.status, p.last_seen.0)),
        _ => None,
    }
}

all_modes!(presence_goes_to_subscribers_and_expires_after_the_grace_period);
async fn presence_goes_to_subscribers_and_expires_after_the_grace_period(mode: Mode) {
    let cluster = Cluster::start(mode, "[messaging]\npresence_grace_ms = 300\n");
    // B has never been here: offline, never seen.
    let mut a = connect(&cluster, 1, 1).await;
    a.presence_subscribe(UserId(2)).await.unwrap();
    assert_eq!(wait_for(&mut a, |e| presence(e, 2)).await, (PresenceStatus::Offline, 0));
    let mut b = connect(&cluster, 2, 1).await;
    assert_eq!(wait_for(&mut a, |e| presence(e, 2)).await.0, PresenceStatus::Online);
    let left = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    b.close().await.unwrap();
    let started = std::time::Instant::now();
    let (status, last_seen) = wait_for(&mut a, |e| presence(e, 2)).await;
    assert_eq!(status, PresenceStatus::Offline);
    assert!(started.elapsed() >= Duration::from_millis(200), "offline only after the grace period");
    assert!(last_seen.abs_diff(left) < 2_000, "last seen {last_seen} vs {left}");
    // A hidden user looks offline and never seen, even when connected.
    let mut b = connect(&cluster, 2, 1).await;
    assert_eq!(wait_for(&mut a, |e| presence(e, 2)).await.0, PresenceStatus::Online);
    b.presence_set(Visibility::Nobody).await.unwrap();
    assert_eq!(wait_for(&mut a, |e| presence(e, 2)).await, (PresenceStatus::Offline, 0));
    let mut c = connect(&cluster, 3, 1).await;
    c.presence_subscribe(UserId(2)).await.unwrap();
    assert_eq!(wait_for(&mut c, |e| presence(e, 2)).await, (PresenceStatus::Offline, 0));
}

all_modes!(typing_is_throttled_per_conversation);
async fn typing_is_throttled_per_conversation(mode: Mode) {
    let cluster = Cluster::start(mode, "[messaging]\ntyping_interval_ms = 2000\n");
    let mut a = connect(&cluster, 1, 1).await;
    let mut b = connect(&cluster, 2, 1).await;
    for _ in 0..5 {
        a.typing(Conversation::Direct(UserId(2)), true).await.unwrap();
    }
    a.typing(Conversation::Direct(UserId(2)), false).await.unwrap();
    // A marker after the typing frames: B sees what passed before it.
    send_and_wait(&mut a, 2, "marker").await;
    let mut seen = Vec::new();
    loop {
        match super::within(b.next_event()).await.unwrap() {
            Event::Typing(t) => {
                assert_eq!((t.user, t.conversation), (UserId(1), Conversation::Direct(UserId(1))));
                seen.push(t.active);
            }
            Event::Delivered(d) => {
                b.ack(d.seq).await.unwrap();
                break;
            }
            _ => {}
        }
    }
    assert_eq!(seen, vec![true, false], "one start through the throttle, and the stop");
}

fn key(byte: u8) -> Key {
    Key::new(vec![byte; 32]).unwrap()
}

all_modes!(prekey_fetch_consumes_one_time_keys_and_warns_when_low);
async fn prekey_fetch_consumes_one_time_keys_and_warns_when_low(mode: Mode) {
    let cluster = Cluster::start(mode, "[messaging]\nprekey_fetches_per_min = 3\n");
    let mut b = connect(&cluster, 2, 1).await;
    let signed = SignedPrekey { id: 1, key: key(2), signature: Signature::new(vec![3; 64]).unwrap() };
    let one_time: Vec<OneTimePrekey> = (1..=12).map(|id| OneTimePrekey { id, key: key(id as u8) }).collect();
    let request = b.prekey_upload(key(1), signed.clone(), &one_time).await.unwrap();
    let stock = wait_for(&mut b, |event| match event {
        Event::PrekeyOk(ok) if ok.request == request => Some(ok.stock),
        _ => None,
    })
    .await;
    assert_eq!(stock, 12);
    let mut a = connect(&cluster, 1, 1).await;
    let mut consumed = Vec::new();
    for _ in 0..2 {
        let request = a.prekey_fetch(UserId(2), DeviceId(0)).await.unwrap();
        let bundles = wait_for(&mut a, |event| match event {
            Event::PrekeyBundles(b) if b.request == request => Some(b.bundles.iter().collect::<Vec<_>>()),
            _ => None,
        })
        .await;
        assert_eq!(bundles.len(), 1);
        assert_eq!(
            (bundles[0].device, &bundles[0].identity_key, &bundles[0].signed_prekey),
            (DeviceId(1), &key(1), &signed)
        );
        consumed.push(bundles[0].one_time.as_ref().unwrap().id);
    }
    assert_eq!(consumed, vec![1, 2], "each fetch consumes the next one-time key");
    // Ten left: at the low mark, B is told.
    let low = wait_for(&mut b, |event| match event {
        Event::PrekeyLow { stock } => Some(*stock),
        _ => None,
    })
    .await;
    assert_eq!(low, 10);
    // The third fetch passes, the fourth in the same minute is refused.
    a.prekey_fetch(UserId(2), DeviceId(0)).await.unwrap();
    let refused = a.prekey_fetch(UserId(2), DeviceId(0)).await.unwrap();
    let code = wait_for(&mut a, |event| match event {
        Event::Error(e) if e.reference == refused => Some(e.code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::RATE_LIMITED);
    // A user without keys: UNKNOWN_DEVICE (C's own budget).
    let mut c = connect(&cluster, 3, 1).await;
    let request = c.prekey_fetch(UserId(9), DeviceId(0)).await.unwrap();
    let code = wait_for(&mut c, |event| match event {
        Event::Error(e) if e.reference == request => Some(e.code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::UNKNOWN_DEVICE);
}

/// A webhook receiver on loopback: answers the first `failures` POSTs with
/// 500 and the rest with 200, and keeps every body.
pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    pub(crate) fn start(failures: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/push", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                kept.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                let status = if n < failures { "500 Internal Server Error" } else { "200 OK" };
                let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Self { url, bodies }
    }
}

all_modes!(offline_devices_get_one_coalesced_push_retried_until_accepted);
async fn offline_devices_get_one_coalesced_push_retried_until_accepted(mode: Mode) {
    let receiver = Receiver::start(2);
    let push = PushSettings { webhook: Some(receiver.url.clone()), window_ms: Some(300) };
    let cluster = Cluster::start_with(mode, "", &push, |_| {});
    let mut b = connect(&cluster, 2, 1).await;
    b.close().await.unwrap();
    let mut a = connect(&cluster, 1, 1).await;
    for i in 0..3 {
        send_and_wait(&mut a, 2, &format!("m{i}")).await;
    }
    // Two refusals, then accepted: three POSTs of the same notification.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.bodies.lock().unwrap().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "pushes: {:?}", receiver.bodies.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies = receiver.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "one notification, tried three times: {bodies:?}");
    for body in &bodies {
        assert_eq!(body["user"], 2);
        assert_eq!(body["device"], 1);
        assert_eq!(body["count"], 3, "three messages in one push");
        assert_eq!(body["seq"], 3);
    }
    // A connected device gets no push.
    let mut b = connect_after(&cluster, 2, 1, 3).await;
    send_and_wait(&mut a, 2, "live").await;
    deliveries(&mut b, 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.bodies.lock().unwrap().len(), 3);
}
