//! The real `store` binary behind a real `RemoteStore`: every kind of request
//! end to end, domain errors as the same variant, pipelined requests applied
//! in call order, and `kill -9` mid-traffic with a restart on the same data
//! directory and port.

// Integration tests: a failed unwrap is a failed assertion, and indexing into
// replies the test itself shaped is the clearest way to check them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use backend_rpc::{RemoteStore, RemoteStoreConfig};
use backend_store::{
    Ack, Connect, GroupChange, GroupOp, InboxQuery, PrekeyFetch, PrekeyUpload, ReadCursor, Request, Response,
    SendMessage, StoreApi, StoreError,
};
use bytes::Bytes;
use common::Daemon;
use protocol::{
    Conversation, DeviceId, GroupId, GroupName, Key, MessageId, OneTimePrekey, ReceiptKind, Role, Seq,
    Signature, SignedPrekey, UserId,
};

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const CAROL: UserId = UserId(3);
const D1: DeviceId = DeviceId(1);

fn start_store(dir: &std::path::Path, listen: &str) -> Daemon {
    Daemon::start(
        env!("CARGO_BIN_EXE_store"),
        &["--listen", listen, "--data-dir", dir.to_str().unwrap(), "--max-devices", "3"],
    )
}

fn client(endpoint: String) -> RemoteStore {
    let mut config = RemoteStoreConfig::new(endpoint);
    config.connect_timeout = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(3);
    RemoteStore::start(config).unwrap()
}

/// Starts a call; the receiver gets its outcome.
fn start(store: &RemoteStore, request: Request) -> mpsc::Receiver<Result<Response, StoreError>> {
    let (tx, rx) = mpsc::channel();
    store.call(
        request,
        Box::new(move |outcome| {
            let _ = tx.send(outcome);
        }),
    );
    rx
}

fn call(store: &RemoteStore, request: Request) -> Result<Response, StoreError> {
    start(store, request).recv_timeout(Duration::from_secs(10)).expect("an answer within 10 s")
}

fn send(client_id: u64, to: Conversation, payload: &'static [u8]) -> Request {
    Request::Send(SendMessage {
        user: ALICE,
        device: D1,
        client_id,
        to,
        payload: Bytes::from_static(payload),
    })
}

/// A send from Alice's device 1 whose payload names its client id.
fn numbered(client_id: u64, to: Conversation, prefix: &str) -> Request {
    Request::Send(SendMessage {
        user: ALICE,
        device: D1,
        client_id,
        to,
        payload: Bytes::from(format!("{prefix}{client_id}")),
    })
}

fn connect(store: &RemoteStore, user: UserId) {
    match call(store, Request::Connect(Connect { user, device: D1 })) {
        Ok(Response::Connected(_)) => {}
        other => panic!("connect {user}: {other:?}"),
    }
}

/// Every entry of `user`'s device 1 inbox: (message id, payload), paging.
fn inbox(store: &RemoteStore, user: UserId) -> Vec<(MessageId, Bytes)> {
    let mut entries = Vec::new();
    let mut after = Seq(0);
    loop {
        let query = InboxQuery { user, device: D1, after, limit: 256, max_bytes: 1 << 20 };
        let Ok(Response::Inbox(page)) = call(store, Request::Inbox(query)) else { panic!("inbox read") };
        for deliver in &page.entries {
            entries.push((deliver.message_id, deliver.payload.bytes().clone()));
            after = deliver.seq;
        }
        if page.remaining == 0 || page.entries.is_empty() {
            return entries;
        }
    }
}

#[test]
fn every_request_kind_works_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_store(dir.path(), "127.0.0.1:0");
    let store = client(daemon.endpoint());

    connect(&store, ALICE);
    connect(&store, BOB);

    // Send A → B.
    let sent = match call(&store, send(1, Conversation::Direct(BOB), b"hi bob")) {
        Ok(Response::Sent(sent)) => sent,
        other => panic!("send: {other:?}"),
    };
    assert!(!sent.duplicate);
    assert_eq!(sent.message.sender, ALICE);
    assert_eq!(sent.message.payload, Bytes::from_static(b"hi bob"));
    let to_bob: Vec<_> = sent.deliveries.iter().filter(|d| d.user == BOB).collect();
    assert_eq!(to_bob.len(), 1);
    assert_eq!(to_bob[0].conversation, Conversation::Direct(ALICE));

    // The same client id again is a duplicate with the same message.
    match call(&store, send(1, Conversation::Direct(BOB), b"hi bob")) {
        Ok(Response::Sent(again)) => {
            assert!(again.duplicate);
            assert_eq!(again.message.id, sent.message.id);
            // With the original entries, to fan out again (SPEC §6.1).
            assert_eq!(again.deliveries, sent.deliveries);
        }
        other => panic!("resend: {other:?}"),
    }

    // B's inbox has it.
    let query = InboxQuery { user: BOB, device: D1, after: Seq(0), limit: 10, max_bytes: 1 << 20 };
    let page = match call(&store, Request::Inbox(query)) {
        Ok(Response::Inbox(page)) => page,
        other => panic!("inbox: {other:?}"),
    };
    assert_eq!(page.entries.len(), 1);
    let entry = &page.entries[0];
    assert_eq!(entry.message_id, sent.message.id);
    assert_eq!(entry.conversation, Conversation::Direct(ALICE));
    assert_eq!(entry.payload.bytes(), &Bytes::from_static(b"hi bob"));
    assert_eq!(page.head, entry.seq);

    // B acks: A hears "delivered".
    let receipts = match call(&store, Request::Ack(Ack { user: BOB, device: D1, up_to: entry.seq })) {
        Ok(Response::Receipts(receipts)) => receipts,
        other => panic!("ack: {other:?}"),
    };
    assert!(
        receipts.iter().any(|r| r.to == ALICE && r.user == BOB && r.kind == ReceiptKind::Delivered),
        "{receipts:?}"
    );
    // B reads: A hears "read".
    let read = ReadCursor {
        user: BOB,
        device: D1,
        conversation: Conversation::Direct(ALICE),
        up_to: entry.conv_seq,
    };
    match call(&store, Request::Read(read)) {
        Ok(Response::Receipts(receipts)) => {
            assert!(receipts
                .iter()
                .any(|r| r.to == ALICE && r.kind == ReceiptKind::Read && r.up_to == entry.conv_seq));
        }
        other => panic!("read: {other:?}"),
    }
    match call(&store, Request::Cursors { user: ALICE, since: protocol::Timestamp(0) }) {
        Ok(Response::Cursors(_)) => {}
        other => panic!("cursors: {other:?}"),
    }

    // Groups.
    let create = GroupOp::Create { name: GroupName::new("trio").unwrap(), members: vec![BOB] };
    let changed = match call(&store, Request::Group(GroupChange { user: ALICE, device: D1, op: create })) {
        Ok(Response::GroupChanged(changed)) => changed,
        other => panic!("group create: {other:?}"),
    };
    let group = changed.info.group;
    assert_eq!(changed.info.name.as_str(), "trio");
    match call(&store, Request::GroupGet { user: BOB, group }) {
        Ok(Response::Group(info)) => {
            assert_eq!(info, changed.info);
            assert!(info.members.iter().any(|m| m.user == ALICE && m.role == Role::Admin));
        }
        other => panic!("group get: {other:?}"),
    }
    // A non-member gets the domain error, as the same variant.
    assert_eq!(
        call(&store, Request::GroupGet { user: CAROL, group }).unwrap_err(),
        StoreError::NotAMember(group)
    );
    assert_eq!(
        call(&store, Request::GroupGet { user: ALICE, group: GroupId(999_999) }).unwrap_err(),
        StoreError::UnknownGroup(GroupId(999_999))
    );

    // Prekeys.
    let key = |b: u8| Key::new(vec![b; 32]).unwrap();
    let upload = PrekeyUpload {
        user: BOB,
        device: D1,
        identity_key: key(1),
        signed_prekey: SignedPrekey { id: 7, key: key(2), signature: Signature::new(vec![3; 64]).unwrap() },
        one_time: vec![OneTimePrekey { id: 1, key: key(4) }, OneTimePrekey { id: 2, key: key(5) }],
    };
    assert!(matches!(call(&store, Request::PrekeyUpload(upload)), Ok(Response::PrekeyStock(2))));
    match call(&store, Request::PrekeyFetch(PrekeyFetch { user: BOB, device: DeviceId(0) })) {
        Ok(Response::PrekeyFetched(fetched)) => {
            assert_eq!(fetched.bundles.len(), 1);
            assert_eq!(fetched.bundles[0].identity_key, key(1));
            assert_eq!(fetched.bundles[0].signed_prekey.id, 7);
            assert!(fetched.bundles[0].one_time.is_some());
        }
        other => panic!("prekey fetch: {other:?}"),
    }
    assert_eq!(
        call(&store, Request::PrekeyFetch(PrekeyFetch { user: CAROL, device: DeviceId(0) })).unwrap_err(),
        StoreError::UnknownDevice(CAROL)
    );

    // Visibility.
    let set = Request::SetVisibility { user: ALICE, visibility: protocol::Visibility::Nobody };
    assert!(matches!(call(&store, set), Ok(Response::Done)));
    assert!(matches!(
        call(&store, Request::GetVisibility { user: ALICE }),
        Ok(Response::Visibility(protocol::Visibility::Nobody))
    ));

    // A domain error arrives as the same variant.
    let err = call(&store, send(2, Conversation::Direct(CAROL), b"anyone?")).unwrap_err();
    assert_eq!(err, StoreError::UnknownRecipient(CAROL));

    // The device limit (3 here) is a domain error too.
    for device in 2..=3 {
        assert!(call(&store, Request::Connect(Connect { user: CAROL, device: DeviceId(device) })).is_ok());
    }
    assert!(call(&store, Request::Connect(Connect { user: CAROL, device: DeviceId(1) })).is_ok());
    assert_eq!(
        call(&store, Request::Connect(Connect { user: CAROL, device: DeviceId(4) })).unwrap_err(),
        StoreError::TooManyDevices(CAROL)
    );
    assert!(store.stats().answered > 0);
}

#[test]
fn a_dead_store_is_unavailable_not_a_hang() {
    // Nothing listens on this port (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let store = client(format!("127.0.0.1:{port}"));
    let started = Instant::now();
    match call(&store, Request::GetVisibility { user: ALICE }) {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert_eq!(store.stats().unavailable, 1);
}

#[test]
fn in_flight_bound_answers_overloaded_at_once() {
    // A listener that never accepts: the connection sits in its backlog and
    // the first call waits out its timeout, holding the only permit.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = RemoteStoreConfig::new(format!("http://{}", silent.local_addr().unwrap()));
    config.max_in_flight = 1;
    config.request_timeout = Duration::from_millis(500);
    let store = RemoteStore::start(config).unwrap();
    let started = Instant::now();
    let first = start(&store, Request::GetVisibility { user: ALICE });
    let second = start(&store, Request::GetVisibility { user: ALICE });
    // Answered on the caller's thread, before `call` returned.
    assert!(matches!(second.try_recv().unwrap(), Err(StoreError::Overloaded)));
    match first.recv_timeout(Duration::from_secs(10)).unwrap() {
        // The request timeout, not a refused connection.
        Err(StoreError::Unavailable(_)) => assert!(started.elapsed() >= Duration::from_millis(500)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(store.stats().overloaded, 1);
    // The permit is back.
    let third = start(&store, Request::GetVisibility { user: ALICE });
    assert!(matches!(third.recv_timeout(Duration::from_secs(10)).unwrap(), Err(StoreError::Unavailable(_))));
    drop(silent);
}

#[test]
fn kill_9_mid_traffic_loses_no_acked_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = start_store(dir.path(), "127.0.0.1:0");
    let addr = daemon.addr;
    let store = client(daemon.endpoint());
    connect(&store, ALICE);
    connect(&store, BOB);

    // Acked sends: client id → message id.
    let mut acked: HashMap<u64, MessageId> = HashMap::new();
    fn record(acked: &mut HashMap<u64, MessageId>, client_id: u64, outcome: Result<Response, StoreError>) {
        match outcome {
            Ok(Response::Sent(sent)) => {
                assert!(acked.insert(client_id, sent.message.id).is_none());
            }
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("send {client_id}: {other:?}"),
        }
    }

    // Steady traffic first, one at a time.
    for client_id in 0..100 {
        record(&mut acked, client_id, call(&store, send(client_id, Conversation::Direct(BOB), b"steady")));
    }
    assert_eq!(acked.len(), 100);

    // A burst in flight, and kill -9 in the middle of it: once 50 of its
    // answers are back, the rest are queued or being written.
    let (tx, answers) = mpsc::channel();
    for client_id in 100..400 {
        let tx = tx.clone();
        store.call(
            numbered(client_id, Conversation::Direct(BOB), "burst "),
            Box::new(move |outcome| {
                let _ = tx.send((client_id, outcome));
            }),
        );
    }
    drop(tx);
    let before = acked.len();
    for _ in 0..50 {
        let (client_id, outcome) = answers.recv_timeout(Duration::from_secs(10)).unwrap();
        record(&mut acked, client_id, outcome);
    }
    daemon.kill9();
    // Every call is answered, once (the channel closes when all `done`s ran),
    // and what was not answered before the kill answers Unavailable.
    let mut answered = 50;
    let mut unavailable = 0;
    while let Ok((client_id, outcome)) = answers.recv_timeout(Duration::from_secs(10)) {
        if matches!(outcome, Err(StoreError::Unavailable(_))) {
            unavailable += 1;
        }
        record(&mut acked, client_id, outcome);
        answered += 1;
    }
    assert_eq!(answered, 300);
    assert_eq!(acked.len() - before + unavailable, 300);
    assert_eq!(store.stats().in_flight, 0);
    // The client noticed (at once if a request was waiting, else soon).
    let noticed = Instant::now() + Duration::from_secs(10);
    while store.stats().stream_failures == 0 {
        assert!(Instant::now() < noticed, "the stream's failure went unnoticed");
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("burst of 300 around the kill: {} acked, {unavailable} Unavailable", acked.len() - before);

    // While it is down: Unavailable, promptly.
    for client_id in 400..405 {
        match call(&store, send(client_id, Conversation::Direct(BOB), b"down")) {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable while down, got {other:?}"),
        }
    }

    // Restart on the same data dir and port; the same client recovers by
    // itself (no new client, no reconnect call).
    let daemon = start_store(dir.path(), &addr.to_string());
    assert_eq!(daemon.addr, addr);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut client_id = 1_000;
    loop {
        match call(&store, send(client_id, Conversation::Direct(BOB), b"after")) {
            Ok(Response::Sent(sent)) => {
                acked.insert(client_id, sent.message.id);
                break;
            }
            Err(StoreError::Unavailable(why)) => {
                assert!(Instant::now() < deadline, "no recovery after restart: {why}");
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("after restart: {other:?}"),
        }
        client_id += 1;
    }
    for client_id in 2_000..2_050 {
        record(&mut acked, client_id, call(&store, send(client_id, Conversation::Direct(BOB), b"after")));
    }

    // An acked send, resent, is a duplicate of the same message: the dedup
    // record survived the crash with it.
    let (&some_id, &some_message) =
        acked.iter().find(|(id, _)| (100..400).contains(*id)).unwrap_or_else(|| acked.iter().next().unwrap());
    match call(&store, send(some_id, Conversation::Direct(BOB), b"again")) {
        Ok(Response::Sent(sent)) => {
            assert!(sent.duplicate);
            assert_eq!(sent.message.id, some_message);
        }
        other => panic!("resend: {other:?}"),
    }

    // Every acked message is in B's inbox exactly once.
    let entries = inbox(&store, BOB);
    let mut seen: HashMap<MessageId, usize> = HashMap::new();
    for (id, _) in &entries {
        *seen.entry(*id).or_default() += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "a message is in the inbox twice");
    let missing: HashSet<_> = acked.values().filter(|id| !seen.contains_key(id)).collect();
    assert!(missing.is_empty(), "{} acked messages lost: {missing:?}", missing.len());
    assert!(acked.len() >= 151, "acked {}", acked.len());

    // The store applied the burst in call order and the crash cut it: what
    // survived of it is a prefix of the calls, in call order.
    let burst: Vec<u64> = entries
        .iter()
        .filter_map(|(_, payload)| std::str::from_utf8(payload).ok()?.strip_prefix("burst ")?.parse().ok())
        .collect();
    let prefix: Vec<u64> = (100..100 + burst.len() as u64).collect();
    assert_eq!(burst, prefix, "the burst's surviving messages are not a prefix in call order");
}

#[test]
fn pipelined_requests_reach_the_store_in_call_order() {
    const N: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_store(dir.path(), "127.0.0.1:0");
    let store = client(daemon.endpoint());
    connect(&store, ALICE);
    connect(&store, BOB);

    // 500 sends from one device to one recipient, none waiting for another.
    let (tx, answers) = mpsc::channel();
    for client_id in 0..N {
        let tx = tx.clone();
        store.call(
            numbered(client_id, Conversation::Direct(BOB), "m"),
            Box::new(move |outcome| {
                let _ = tx.send((client_id, outcome));
            }),
        );
    }
    drop(tx);
    let mut stored = vec![None; N as usize];
    for _ in 0..N {
        let (client_id, outcome) = answers.recv_timeout(Duration::from_secs(10)).unwrap();
        match outcome {
            Ok(Response::Sent(sent)) if !sent.duplicate => {
                stored[client_id as usize] = Some((sent.message.conv_seq, sent.message.id));
            }
            other => panic!("send {client_id}: {other:?}"),
        }
    }
    // Conversation seqs (and message ids) increase in call order.
    let stored: Vec<_> = stored.into_iter().map(Option::unwrap).collect();
    for (i, pair) in stored.windows(2).enumerate() {
        assert!(pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1, "call {} stored after call {}", i, i + 1);
    }
    // The recipient's inbox lists the payloads in call order.
    let payloads: Vec<Bytes> = inbox(&store, BOB).into_iter().map(|(_, payload)| payload).collect();
    let expected: Vec<Bytes> = (0..N).map(|i| Bytes::from(format!("m{i}"))).collect();
    assert_eq!(payloads, expected);

    // A call depending on the one before it: a device registered by a
    // Connect is a known recipient for the Send called right after it.
    let (tx, answers) = mpsc::channel();
    for k in 0..100 {
        let user = UserId(1_000 + k);
        let tx_connect = tx.clone();
        store.call(
            Request::Connect(Connect { user, device: D1 }),
            Box::new(move |outcome| {
                let _ = tx_connect.send(("connect", outcome));
            }),
        );
        let tx_send = tx.clone();
        store.call(
            numbered(10_000 + k, Conversation::Direct(user), "hello "),
            Box::new(move |outcome| {
                let _ = tx_send.send(("send", outcome));
            }),
        );
    }
    drop(tx);
    let mut answered = 0;
    while let Ok((what, outcome)) = answers.recv_timeout(Duration::from_secs(10)) {
        match (what, outcome) {
            ("connect", Ok(Response::Connected(_))) | ("send", Ok(Response::Sent(_))) => answered += 1,
            (what, other) => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(answered, 200);
    let stats = store.stats();
    assert_eq!(stats.in_flight, 0);
    assert_eq!((stats.unavailable, stats.overloaded, stats.stream_failures), (0, 0, 0));
}

#[test]
fn sigterm_exits_0_keeps_data_and_metrics_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let mut daemon = Daemon::start(
        env!("CARGO_BIN_EXE_store"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--metrics-listen",
            &metrics,
        ],
    );
    let store = client(daemon.endpoint());
    connect(&store, ALICE);
    connect(&store, BOB);
    let Ok(Response::Sent(sent)) = call(&store, send(1, Conversation::Direct(BOB), b"kept")) else {
        panic!("send")
    };

    let (status, body) = common::http_get(&metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(!body.is_empty());
    let (status, _) = common::http_get(&metrics, "/other");
    assert!(status.contains("404"), "{status}");

    assert!(daemon.terminate().success(), "exit status after SIGTERM");
    // The data is there for the next process.
    let daemon = start_store(dir.path(), "127.0.0.1:0");
    let store = client(daemon.endpoint());
    let entries = inbox(&store, BOB);
    assert_eq!(entries, vec![(sent.message.id, Bytes::from_static(b"kept"))]);
}
