//! Send, inbox, ack, dedup, receipts, devices, retention and queueing against
//! a real fjall store in a temporary directory.
// Tests unwrap and index: a panic there is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use backend_store::*;
use common::*;
use protocol::{Conversation, DeviceId, ReceiptKind, Timestamp, UserId};

const A: u64 = 1;
const B: u64 = 2;

fn two_by_two(store: &Store) {
    for (u, d) in [(A, 1), (A, 2), (B, 1), (B, 2)] {
        connect(store, u, d);
    }
}

#[test]
fn fan_out_gives_contiguous_seqs_and_per_device_views() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    two_by_two(&store);
    for i in 0..3 {
        let sent = send(&store, A, 1, i, direct(B), b"hi");
        assert!(!sent.duplicate);
        let mut got: Vec<_> =
            sent.deliveries.iter().map(|d| (d.user.0, d.device.0, d.conversation)).collect();
        got.sort_by_key(|g| (g.0, g.1));
        assert_eq!(got, vec![(A, 2, direct(B)), (B, 1, direct(A)), (B, 2, direct(A))]);
        assert!(sent.deliveries.iter().all(|d| d.seq.0 == i + 1));
        assert_eq!(sent.message.conv_seq.0, i + 1, "conv_seq order");
    }
    for (u, d, view) in [(B, 1, direct(A)), (B, 2, direct(A)), (A, 2, direct(B))] {
        let all = inbox_all(&store, u, d);
        assert_eq!(all.iter().map(|e| e.seq.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(all.iter().all(|e| e.conversation == view && e.sender == UserId(A)));
        assert_eq!(all.iter().map(|e| e.conv_seq.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
    assert!(inbox_all(&store, A, 1).is_empty(), "the sending device gets nothing");
    // B answers: conv_seq continues in the same conversation.
    let reply = send(&store, B, 1, 1, direct(A), b"yo");
    assert_eq!(reply.message.conv_seq.0, 4);
    assert_eq!(inbox_all(&store, A, 1).len(), 1);
}

#[test]
fn unknown_recipient_and_note_to_self() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    two_by_two(&store);
    assert_eq!(
        try_send(&store, A, 1, 1, direct(99), b"x").unwrap_err(),
        StoreError::UnknownRecipient(UserId(99))
    );
    let note = send(&store, A, 1, 2, direct(A), b"note");
    assert_eq!(note.deliveries.len(), 1);
    assert_eq!((note.deliveries[0].device, note.deliveries[0].conversation), (DeviceId(2), direct(A)));
}

fn sorted(deliveries: &[Delivery]) -> Vec<(u64, u32, u64, Conversation)> {
    let mut all: Vec<_> =
        deliveries.iter().map(|d| (d.user.0, d.device.0, d.seq.0, d.conversation)).collect();
    all.sort_by_key(|d| (d.0, d.1));
    all
}

#[test]
fn dedup_returns_original_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let store = Store::open(config(dir.path())).unwrap();
        two_by_two(&store);
        let first = send(&store, A, 1, 42, direct(B), b"original");
        let again = send(&store, A, 1, 42, direct(B), b"different");
        assert!(again.duplicate && again.receipts.is_empty());
        assert_eq!(again.message, first.message);
        // The retry fans the original entries out again (the gateway that
        // answered the first attempt may have died before it did).
        assert_eq!(sorted(&again.deliveries), sorted(&first.deliveries));
        first
    };
    let store = Store::open(config(dir.path())).unwrap();
    let again = send(&store, A, 1, 42, direct(B), b"third");
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    assert_eq!(again.message.payload.as_ref(), b"original");
    assert_eq!(sorted(&again.deliveries), sorted(&first.deliveries), "read from disk after a reopen");
    // An entry its device acked is not fanned out again.
    ack(&store, B, 2, 1);
    let again = send(&store, A, 1, 42, direct(B), b"fourth");
    let left: Vec<_> =
        first.deliveries.iter().copied().filter(|d| (d.user.0, d.device.0) != (B, 2)).collect();
    assert_eq!(sorted(&again.deliveries), sorted(&left));
    // Same client id from another device is another message.
    let other = send(&store, A, 2, 42, direct(B), b"other");
    assert!(!other.duplicate);
    assert!(other.message.id > first.message.id);
    assert_eq!(inbox_all(&store, B, 1).len(), 2);
}

#[test]
fn dedup_and_acks_across_reopen_with_client_ids_out_of_order() {
    // The writer knows a device's highest committed client id and only then
    // skips the dedup read; acks take entries from its cache when it has
    // them. Both must agree with the disk across a reopen (cold caches).
    let dir = tempfile::tempdir().unwrap();
    let (ten, twenty) = {
        let store = Store::open(config(dir.path())).unwrap();
        two_by_two(&store);
        let ten = send(&store, A, 1, 10, direct(B), b"ten");
        let twenty = send(&store, A, 1, 20, direct(B), b"twenty");
        assert!(!send(&store, A, 1, 15, direct(B), b"fifteen").duplicate, "below the max, still new");
        assert!(send(&store, A, 1, 15, direct(B), b"again").duplicate);
        ack(&store, B, 1, 1); // from the cache
        (ten, twenty)
    };
    let store = Store::open(config(dir.path())).unwrap();
    for (id, original) in [(10, &ten), (20, &twenty)] {
        let again = send(&store, A, 1, id, direct(B), b"retry");
        assert!(again.duplicate);
        assert_eq!(again.message.id, original.message.id);
    }
    assert!(send(&store, A, 1, 15, direct(B), b"again").duplicate);
    assert!(!send(&store, A, 1, 21, direct(B), b"new").duplicate);
    assert!(send(&store, A, 1, 21, direct(B), b"again").duplicate);
    assert!(!send(&store, A, 1, 5, direct(B), b"low").duplicate);
    let deleted = || store.metrics().messages_deleted.load(Ordering::Relaxed);
    // Entries 2..=3 were written before the reopen (engine), 4..=5 after (cache).
    ack(&store, B, 1, 5);
    assert!(inbox_all(&store, B, 1).is_empty());
    assert_eq!(deleted(), 0, "B2 and A2 still hold every message");
    ack(&store, B, 2, 5);
    ack(&store, A, 2, 5);
    let copies = body_copies(&store);
    assert_eq!(deleted(), 5 * copies, "each of the five bodies deleted once, with its last entry");
    ack(&store, B, 2, 5);
    ack(&store, A, 2, 5);
    assert_eq!(deleted(), 5 * copies);
}

#[test]
fn paging_by_count_and_bytes_and_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    two_by_two(&store);
    for i in 0..10 {
        send(&store, A, 1, i, direct(B), &[7u8; 100]);
    }
    let page = inbox(&store, B, 1, 0, 4, u32::MAX);
    assert_eq!(page.entries.iter().map(|e| e.seq.0).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!((page.remaining, page.head.0), (6, 10));
    let one = protocol::Wire::wire_len(&page.entries[0]) as u32;
    let page = inbox(&store, B, 1, 4, 100, one * 3);
    assert_eq!(page.entries.iter().map(|e| e.seq.0).collect::<Vec<_>>(), vec![5, 6, 7]);
    let page = inbox(&store, B, 1, 7, 100, 1);
    assert_eq!(page.entries.len(), 1, "at least one entry even over max_bytes");
    let page = inbox(&store, B, 1, 7, 0, u32::MAX);
    assert_eq!(page.entries.len(), 1, "limit 0 is clamped to 1");
    let page = inbox(&store, B, 1, 10, 100, u32::MAX);
    assert!(page.entries.is_empty());
    assert_eq!(page.remaining, 0);
}

#[test]
fn hundred_thousand_entries_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    connect(&store, A, 1);
    connect(&store, B, 1);
    const N: u64 = 100_000;
    let (tx, rx) = mpsc::channel();
    for i in 0..N {
        let tx = tx.clone();
        let req = SendMessage {
            user: UserId(A),
            device: DeviceId(1),
            client_id: i,
            to: direct(B),
            payload: bytes::Bytes::from_static(b"m"),
        };
        // Pipelined: the queue holds them all, the writer group-commits.
        store.call(Request::Send(req), Box::new(move |r| tx.send(r.is_ok()).unwrap()));
        if i % 20_000 == 19_999 {
            for _ in 0..20_000 {
                assert!(rx.recv().unwrap());
            }
        }
    }
    let mut expected = 1;
    loop {
        let page = inbox(&store, B, 1, expected - 1, 512, u32::MAX);
        if page.entries.is_empty() {
            break;
        }
        assert!(page.entries.len() <= 512);
        for e in &page.entries {
            assert_eq!(e.seq.0, expected);
            expected += 1;
        }
        assert_eq!(page.remaining, N - (expected - 1));
    }
    assert_eq!(expected - 1, N);
    assert!(store.metrics().write_batches.load(Ordering::Relaxed) < N, "group commit batched sends");
}

/// How many copies of a body from A to B (with their other devices) the
/// store keeps: one per shard holding entries of it (`SHARDS.md`).
fn body_copies(store: &Store) -> u64 {
    if store.shard_of(UserId(A)) == store.shard_of(UserId(B)) {
        1
    } else {
        2
    }
}

#[test]
fn ack_removes_clamps_and_deletes_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    two_by_two(&store);
    for i in 0..5 {
        send(&store, A, 1, i, direct(B), b"m");
    }
    let deleted = || store.metrics().messages_deleted.load(Ordering::Relaxed);
    ack(&store, B, 1, 3);
    assert_eq!(inbox_all(&store, B, 1).iter().map(|e| e.seq.0).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(inbox_all(&store, B, 2).len(), 5, "other device untouched");
    assert_eq!(deleted(), 0, "B2 and A2 still point to the messages");
    ack(&store, B, 2, 3);
    ack(&store, A, 2, 3);
    assert_eq!(deleted(), 3 * body_copies(&store), "last pointer gone: bodies deleted");
    // Clamp to the head, and a lower ack changes nothing.
    ack(&store, B, 1, 1_000);
    assert_eq!(connect(&store, B, 1).acked.0, 5);
    assert!(ack(&store, B, 1, 2).is_empty());
    assert!(inbox_all(&store, B, 1).is_empty());
    // Seqs are never reused after acks.
    let next = send(&store, A, 1, 9, direct(B), b"m");
    assert!(next.deliveries.iter().any(|d| d.user == UserId(B) && d.device == DeviceId(1) && d.seq.0 == 6));
}

/// A 1:1 message to a user with one device has a single inbox entry, so its
/// body lives in that entry: the entry's ack (or the retention sweep)
/// deletes it, and a retry finds it until then.
#[test]
fn a_body_with_one_entry_is_deleted_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.retention = Duration::from_millis(800);
    let store = Store::open(cfg).unwrap();
    connect(&store, A, 1);
    connect(&store, B, 1);
    let deleted = || store.metrics().messages_deleted.load(Ordering::Relaxed);
    for i in 1..=3 {
        assert_eq!(send(&store, A, 1, i, direct(B), b"one").deliveries.len(), 1);
    }
    let retry = send(&store, A, 1, 1, direct(B), b"retry");
    assert!(retry.duplicate);
    assert_eq!(&retry.message.payload[..], b"one", "the body is there until its entry is acked");
    ack(&store, B, 1, 2);
    assert_eq!(deleted(), 2);
    let retry = send(&store, A, 1, 1, direct(B), b"retry");
    assert!(retry.duplicate && retry.message.payload.is_empty(), "acked: the body is gone");
    let left = inbox_all(&store, B, 1);
    assert_eq!(
        left.iter().map(|e| (e.seq.0, &e.payload.bytes()[..])).collect::<Vec<_>>(),
        [(3, &b"one"[..])]
    );
    // Never acked: the retention sweep deletes the entry and the body.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while deleted() < 3 {
        assert!(std::time::Instant::now() < deadline, "the sweep did not delete the third body");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(store.metrics().expired_entries.load(Ordering::Relaxed), 1);
    assert!(inbox_all(&store, B, 1).is_empty());
}

#[test]
fn delivered_and_read_receipts_one_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    two_by_two(&store);
    let sent = send(&store, A, 1, 1, direct(B), b"m1");
    // The author's read cursor moved: its other devices hear it, and B.
    let own = sent.receipts.iter().find(|r| r.to == UserId(A)).unwrap();
    assert_eq!(
        (own.except, own.conversation, own.kind, own.up_to.0),
        (Some(DeviceId(1)), direct(B), ReceiptKind::Read, 1)
    );
    let peer = sent.receipts.iter().find(|r| r.to == UserId(B)).unwrap();
    assert_eq!((peer.conversation, peer.user, peer.kind), (direct(A), UserId(A), ReceiptKind::Read));
    send(&store, A, 1, 2, direct(B), b"m2");

    let notes = ack(&store, B, 2, 1);
    assert_eq!(notes.len(), 1);
    let n = notes[0];
    assert_eq!(
        (n.to, n.except, n.conversation, n.user, n.kind, n.up_to.0),
        (UserId(A), None, direct(B), UserId(B), ReceiptKind::Delivered, 1)
    );
    assert!(ack(&store, B, 1, 1).is_empty(), "delivered cursor is per user: no move");
    assert_eq!(ack(&store, B, 1, 2)[0].up_to.0, 2);
    // Acking copies of one's own messages tells nobody.
    assert!(ack(&store, A, 2, 2).is_empty());

    let notes = read(&store, B, 1, direct(A), 2).unwrap();
    assert_eq!(notes.len(), 2);
    assert!(notes
        .iter()
        .any(|r| r.to == UserId(A) && r.kind == ReceiptKind::Read && r.conversation == direct(B)));
    assert!(notes
        .iter()
        .any(|r| r.to == UserId(B) && r.except == Some(DeviceId(1)) && r.conversation == direct(A)));
    assert!(read(&store, B, 2, direct(A), 1).unwrap().is_empty(), "lower read is ignored");
}

/// A pair cursor lives in the peer's mailbox note (no key of its own): after
/// a reopen (the writer's cache empty) the cursor is read back from there,
/// so a lower or equal move stays silent and a higher one is told once;
/// the same for a note to self, whose home is the owner's own mailbox.
#[test]
fn pair_cursors_are_read_back_from_the_mailbox_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path())).unwrap();
        two_by_two(&store);
        for i in 1..=3 {
            send(&store, A, 1, i, direct(B), b"m");
        }
        send(&store, A, 1, 4, direct(A), b"note");
        assert_eq!(ack(&store, B, 1, 2)[0].up_to.0, 2);
        assert_eq!(read(&store, B, 1, direct(A), 2).unwrap().len(), 2);
        assert!(read(&store, A, 2, direct(A), 1).unwrap().is_empty(), "sending the note moved it");
    }
    let store = Store::open(config(dir.path())).unwrap();
    assert!(ack(&store, B, 2, 2).is_empty(), "delivered up to 2 is known");
    assert!(read(&store, B, 2, direct(A), 2).unwrap().is_empty(), "read up to 2 is known");
    assert!(read(&store, A, 1, direct(A), 1).unwrap().is_empty(), "the note to self's cursor is known");
    let notes = ack(&store, B, 2, 3);
    assert_eq!(
        notes.iter().map(|n| (n.to.0, n.kind, n.up_to.0)).collect::<Vec<_>>(),
        [(A, ReceiptKind::Delivered, 3)]
    );
    assert_eq!(read(&store, B, 1, direct(A), 3).unwrap().len(), 2);
    let cursors = match call(&store, Request::Cursors { user: UserId(A), since: Timestamp(0) }) {
        Ok(Response::Cursors(c)) => c,
        other => panic!("{other:?}"),
    };
    let mut from_b: Vec<_> =
        cursors.iter().filter(|c| c.user == UserId(B)).map(|c| (c.conversation, c.kind, c.up_to.0)).collect();
    from_b.sort_by_key(|c| c.1 as u8);
    assert_eq!(from_b, [(direct(B), ReceiptKind::Delivered, 3), (direct(B), ReceiptKind::Read, 3)]);
}

#[test]
fn unread_count_agrees_across_devices_and_cursors_since() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    two_by_two(&store);
    for i in 0..4 {
        send(&store, A, 1, i, direct(B), b"m");
    }
    let before = protocol::Timestamp(0);
    read(&store, B, 1, direct(A), 3).unwrap();
    // B2 learns B's read cursor from the own-device note / Cursors, and the
    // last conv_seq from its inbox: unread = 4 − 3 on both devices.
    let last = inbox_all(&store, B, 2).last().unwrap().conv_seq.0;
    let cursors = match call(&store, Request::Cursors { user: UserId(B), since: before }) {
        Ok(Response::Cursors(c)) => c,
        other => panic!("{other:?}"),
    };
    let own = cursors.iter().find(|c| c.user == UserId(B) && c.kind == ReceiptKind::Read).unwrap();
    assert_eq!(last - own.up_to.0, 1);
    // A, offline, gets B's read cursor from Cursors.
    let for_a = match call(&store, Request::Cursors { user: UserId(A), since: before }) {
        Ok(Response::Cursors(c)) => c,
        other => panic!("{other:?}"),
    };
    assert!(for_a.iter().any(|c| c.user == UserId(B)
        && c.kind == ReceiptKind::Read
        && c.up_to.0 == 3
        && c.conversation == direct(B)));
    // `since` filters: nothing moved after the latest move.
    let latest = for_a.iter().map(|c| c.at).max().unwrap();
    let later = match call(&store, Request::Cursors { user: UserId(A), since: latest }) {
        Ok(Response::Cursors(c)) => c,
        other => panic!("{other:?}"),
    };
    assert!(later.is_empty());
}

#[test]
fn device_limit_and_previous_connect() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_devices = 2;
    let store = Store::open(cfg).unwrap();
    let first = connect(&store, A, 1);
    assert_eq!(first.previous_connect, Timestamp(0));
    assert_eq!(first.prekey_stock, None);
    connect(&store, A, 2);
    let err = call(&store, Request::Connect(Connect { user: UserId(A), device: DeviceId(3) })).unwrap_err();
    assert_eq!(err, StoreError::TooManyDevices(UserId(A)));
    let again = connect(&store, A, 1);
    assert!(again.previous_connect.0 > 0, "known devices reconnect");
}

#[test]
fn retention_skips_and_sweeps_expired_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.retention = Duration::from_millis(600);
    let store = Store::open(cfg).unwrap();
    two_by_two(&store);
    send(&store, A, 1, 1, direct(B), b"old");
    std::thread::sleep(Duration::from_millis(700));
    let fresh = send(&store, A, 1, 2, direct(B), b"new");
    let page = inbox(&store, B, 1, 0, 10, u32::MAX);
    assert_eq!(page.entries.iter().map(|e| e.seq.0).collect::<Vec<_>>(), vec![2], "expired entry skipped");
    assert_eq!(page.head.0, 2);
    // The sweep (every retention/4) deletes the 3 expired entries and the body.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.metrics().expired_entries.load(Ordering::Relaxed) < 3 {
        assert!(std::time::Instant::now() < deadline, "sweep did not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(store.metrics().expired_entries.load(Ordering::Relaxed), 3);
    // Dedup records expire too: the old client id is a new message now.
    let retry = send(&store, A, 1, 1, direct(B), b"again");
    assert!(!retry.duplicate);
    assert!(retry.message.id > fresh.message.id);
}

#[test]
fn fsync_mode_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.durability = Durability::Fsync { interval: Duration::from_millis(20) };
    let store = Store::open(cfg).unwrap();
    two_by_two(&store);
    let fsyncs_before = store.metrics().fsyncs.load(Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    const N: u64 = 200;
    for i in 0..N {
        let tx = tx.clone();
        let req = SendMessage {
            user: UserId(A),
            device: DeviceId(1),
            client_id: i,
            to: direct(B),
            payload: bytes::Bytes::from_static(b"x"),
        };
        store.call(Request::Send(req), Box::new(move |r| tx.send(r.is_ok()).unwrap()));
    }
    for _ in 0..N {
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    let fsyncs = store.metrics().fsyncs.load(Ordering::Relaxed) - fsyncs_before;
    assert!((1..N).contains(&fsyncs), "{fsyncs} fsyncs for {N} sends");
    assert!(store.metrics().commit_ns.load(Ordering::Relaxed) > 0, "commits are timed");
    assert_eq!(inbox_all(&store, B, 1).len() as u64, N);
    let mut text = String::new();
    store.metrics().render(&mut text);
    assert!(text.contains("# TYPE store_fsyncs_total counter"));
    assert!(text.contains("store_requests_total{kind=\"send\"}"));
}

fn set_visibility(visibility: protocol::Visibility) -> Request {
    Request::SetVisibility { user: UserId(A), visibility }
}

/// Holds the committer inside the `done` of a write until the returned
/// sender sends (or is dropped), then runs `after` there.
fn hold_the_committer(store: &Store, after: fn()) -> mpsc::Sender<()> {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    store.call(
        set_visibility(protocol::Visibility::Nobody),
        Box::new(move |_| {
            entered_tx.send(()).unwrap();
            let _ = release_rx.recv();
            after();
        }),
    );
    entered_rx.recv().unwrap();
    release_tx
}

#[test]
fn full_queue_is_overloaded_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.queue = 2;
    cfg.max_batch = 1;
    let store = Store::open(cfg).unwrap();
    connect(&store, A, 1);
    let release = hold_the_committer(&store, || {});
    // The writer goes on without the committer for one batch in flight and
    // one built (a request each), then waits: the queue's 2 fill behind
    // them, so the fifth call at the latest is refused. Nothing accepted is
    // answered while the committer is held: a result is a refusal.
    let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut refused = None;
    for i in 0..5 {
        let results_of_call = results.clone();
        store.call(
            set_visibility(protocol::Visibility::Everyone),
            Box::new(move |r| results_of_call.lock().unwrap().push((i, r.map(|_| ())))),
        );
        if !results.lock().unwrap().is_empty() {
            refused = Some(i);
            break;
        }
    }
    let refused = refused.expect("four writes waiting and a fifth was not refused");
    assert_eq!(
        results.lock().unwrap().clone(),
        vec![(refused, Err(StoreError::Overloaded))],
        "the refused call alone is answered, before it returns"
    );
    assert_eq!(store.metrics().overloaded.load(Ordering::Relaxed), 1);
    release.send(()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while results.lock().unwrap().len() <= refused {
        assert!(std::time::Instant::now() < deadline, "the accepted writes were not answered");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(results.lock().unwrap()[1..].iter().all(|(_, r)| r.is_ok()));
    match call(&store, Request::GetVisibility { user: UserId(A) }) {
        Ok(Response::Visibility(v)) => assert_eq!(v, protocol::Visibility::Everyone),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_continuation_that_panics_on_the_committer_does_not_hang_the_stores_drop() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_batch = 1;
    let store = Store::open(cfg).unwrap();
    let release = hold_the_committer(&store, || panic!("a continuation's bug, on the committer thread"));
    // One batch handed over behind the held continuation, and one the
    // writer builds and then waits for the first one's outcome with.
    for _ in 0..2 {
        store.call(set_visibility(protocol::Visibility::Everyone), Box::new(|_| {}));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (dropped_tx, dropped_rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(store);
        dropped_tx.send(()).unwrap();
    });
    // The drop rings the writer while the committer still lives, so the
    // writer goes back to sleep; the committer dies only after that.
    std::thread::sleep(Duration::from_millis(200));
    release.send(()).unwrap();
    assert!(
        dropped_rx.recv_timeout(Duration::from_secs(30)).is_ok(),
        "the writer slept on after the committer died, and the store's drop waits for it"
    );
}

#[test]
fn visibility_defaults_to_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    match call(&store, Request::GetVisibility { user: UserId(5) }) {
        Ok(Response::Visibility(v)) => assert_eq!(v, protocol::Visibility::Everyone),
        other => panic!("{other:?}"),
    }
    call(&store, Request::SetVisibility { user: UserId(5), visibility: protocol::Visibility::Nobody })
        .unwrap();
    match call(&store, Request::GetVisibility { user: UserId(5) }) {
        Ok(Response::Visibility(v)) => assert_eq!(v, protocol::Visibility::Nobody),
        other => panic!("{other:?}"),
    }
    let _ = Conversation::Group(protocol::GroupId(1));
}
