//! The engine against a real 3-master Redis Cluster (started by the test):
//! devices, 1:1 sends, inbox windows, acks, dedup, and the chain's
//! roll-forward and order check.

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::mpsc;
use std::time::Duration;

use backend_store::{
    Ack, Connect, Connected, InboxPage, InboxQuery, Request, Response, SendMessage, Sent, StoreApi,
    StoreError,
};
use bytes::Bytes;
use protocol::{Conversation, DeviceId, Seq, UserId};
use routing_registry::testing::RedisCluster;

use crate::{RedisConfig, RedisStore};

fn store(cluster: &RedisCluster) -> RedisStore {
    let mut config = RedisConfig::new(cluster.urls());
    config.max_devices = 3;
    RedisStore::connect(config).unwrap()
}

fn call(store: &RedisStore, request: Request) -> Result<Response, StoreError> {
    let (tx, rx) = mpsc::channel();
    store.call(request, Box::new(move |result| tx.send(result).unwrap()));
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

fn connect(store: &RedisStore, user: u64, device: u32) -> Result<Connected, StoreError> {
    match call(store, Request::Connect(Connect { user: UserId(user), device: DeviceId(device) }))? {
        Response::Connected(connected) => Ok(connected),
        other => panic!("{other:?}"),
    }
}

fn message(user: u64, device: u32, client_id: u64, to: u64, body: &str) -> SendMessage {
    SendMessage {
        user: UserId(user),
        device: DeviceId(device),
        client_id,
        to: Conversation::Direct(UserId(to)),
        payload: Bytes::from(body.to_owned()),
    }
}

fn send(store: &RedisStore, req: SendMessage) -> Result<Sent, StoreError> {
    match call(store, Request::Send(req))? {
        Response::Sent(sent) => Ok(sent),
        other => panic!("{other:?}"),
    }
}

fn inbox(store: &RedisStore, user: u64, device: u32, after: u64) -> InboxPage {
    let query = InboxQuery {
        user: UserId(user),
        device: DeviceId(device),
        after: Seq(after),
        limit: 100,
        max_bytes: 1 << 20,
    };
    match call(store, Request::Inbox(query)).unwrap() {
        Response::Inbox(page) => page,
        other => panic!("{other:?}"),
    }
}

/// (seq, body) of a device's inbox after `after`.
fn bodies(store: &RedisStore, user: u64, device: u32, after: u64) -> Vec<(u64, String)> {
    inbox(store, user, device, after)
        .entries
        .iter()
        .map(|e| (e.seq.0, String::from_utf8_lossy(e.payload.bytes()).into_owned()))
        .collect()
}

fn sorted(sent: &Sent) -> Vec<(u64, u32, u64)> {
    let mut all: Vec<_> = sent.deliveries.iter().map(|d| (d.user.0, d.device.0, d.seq.0)).collect();
    all.sort_unstable();
    all
}

#[test]
fn devices_register_up_to_the_limit_and_remember_the_last_connect() {
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    let first = connect(&store, 1, 1).unwrap();
    assert_eq!((first.inbox_head, first.acked, first.previous_connect.0), (Seq(0), Seq(0), 0));
    let again = connect(&store, 1, 1).unwrap();
    assert!(again.previous_connect.0 > 0, "the first connect's time");
    connect(&store, 1, 2).unwrap();
    connect(&store, 1, 3).unwrap();
    assert_eq!(connect(&store, 1, 4).unwrap_err(), StoreError::TooManyDevices(UserId(1)));
    connect(&store, 1, 3).expect("a registered device always connects");
}

#[test]
fn one_to_one_sends_enter_every_device_in_order_and_acks_remove_them() {
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    for (user, device) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
        connect(&store, user, device).unwrap();
    }
    for i in 1..=3 {
        let sent = send(&store, message(1, 1, i, 2, &format!("m{i}"))).unwrap();
        assert!(!sent.duplicate);
        assert_eq!(sent.message.conv_seq.0, i);
        assert_eq!(sorted(&sent), [(1, 2, i), (2, 1, i), (2, 2, i)], "every device but the sending one");
    }
    let expected: Vec<(u64, String)> = (1..=3).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(bodies(&store, 2, 1, 0), expected);
    assert_eq!(bodies(&store, 2, 2, 0), expected);
    assert_eq!(bodies(&store, 1, 2, 0), expected, "the sender's other device has a copy");
    assert!(bodies(&store, 1, 1, 0).is_empty(), "the sending device has none");
    let page = inbox(&store, 2, 1, 0);
    assert!(page.entries.iter().all(|e| e.conversation == Conversation::Direct(UserId(1))));
    assert_eq!(inbox(&store, 1, 2, 0).entries[0].conversation, Conversation::Direct(UserId(2)));
    assert_eq!(page.head, Seq(3));
    // B answers: the conversation's conv_seq goes on.
    assert_eq!(send(&store, message(2, 1, 1, 1, "yo")).unwrap().message.conv_seq.0, 4);
    // Acks remove entries; the window starts after them.
    call(&store, Request::Ack(Ack { user: UserId(2), device: DeviceId(1), up_to: Seq(2) })).unwrap();
    assert_eq!(bodies(&store, 2, 1, 0), [(3, "m3".to_owned())]);
    assert_eq!(connect(&store, 2, 1).unwrap().acked, Seq(2));
    let after_two = [(3, "m3".to_owned()), (4, "yo".to_owned())];
    assert_eq!(bodies(&store, 2, 2, 2), after_two, "a window after `after`, with B1's own message");
    // An unknown recipient is refused before anything is stored.
    assert_eq!(
        send(&store, message(1, 1, 9, 77, "x")).unwrap_err(),
        StoreError::UnknownRecipient(UserId(77))
    );
}

#[test]
fn a_retry_is_a_duplicate_carrying_the_original_entries_not_acked() {
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    for (user, device) in [(1, 1), (2, 1), (2, 2)] {
        connect(&store, user, device).unwrap();
    }
    let first = send(&store, message(1, 1, 42, 2, "original")).unwrap();
    let again = send(&store, message(1, 1, 42, 2, "different")).unwrap();
    assert!(again.duplicate);
    assert_eq!((again.message.id, again.message.conv_seq), (first.message.id, first.message.conv_seq));
    assert_eq!(again.message.payload.as_ref(), b"original");
    assert_eq!(sorted(&again), sorted(&first));
    call(&store, Request::Ack(Ack { user: UserId(2), device: DeviceId(2), up_to: Seq(1) })).unwrap();
    let later = send(&store, message(1, 1, 42, 2, "third")).unwrap();
    assert_eq!(sorted(&later), [(2, 1, 1)], "the acked entry is left out");
    assert_eq!(bodies(&store, 2, 1, 0).len(), 1, "stored once");
}

#[test]
fn a_chain_interrupted_after_the_append_is_rolled_forward_by_the_retry() {
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    for (user, device) in [(1, 1), (2, 1)] {
        connect(&store, user, device).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let conv_seq = runtime.block_on(store.send_interrupted(&message(1, 1, 5, 2, "halfway"), 0));
    assert!(bodies(&store, 2, 1, 0).is_empty(), "stored, entered nowhere");
    let retried = send(&store, message(1, 1, 5, 2, "halfway")).unwrap();
    assert_eq!(retried.message.conv_seq.0, conv_seq, "the same message, not a second one");
    assert_eq!(sorted(&retried), [(2, 1, 1)]);
    assert_eq!(bodies(&store, 2, 1, 0), [(1, "halfway".to_owned())]);
}

#[test]
fn a_later_message_that_arrives_first_brings_the_earlier_one_in_order() {
    // Two senders through two store instances: the first stops after its
    // append (conv_seq 1), the second's message (conv_seq 2) reaches the
    // recipient first. The order check makes it enter conv_seq 1 first.
    let cluster = RedisCluster::start();
    let (first, second) = (store(&cluster), store(&cluster));
    for (user, device) in [(1, 1), (1, 2), (2, 1)] {
        connect(&first, user, device).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(runtime.block_on(first.send_interrupted(&message(1, 1, 1, 2, "one"), 0)), 1);
    let sent = send(&second, message(1, 2, 1, 2, "two")).unwrap();
    assert_eq!(sent.message.conv_seq.0, 2);
    assert_eq!(bodies(&second, 2, 1, 0), [(1, "one".to_owned()), (2, "two".to_owned())]);
    assert_eq!(bodies(&second, 1, 2, 0), [(1, "one".to_owned())], "device 2 sent 'two': it has only 'one'");
    assert_eq!(bodies(&second, 1, 1, 0), [(1, "two".to_owned())], "device 1 sent 'one'");
    // The first sender's retry finds everything entered: the same seqs.
    let retried = send(&first, message(1, 1, 1, 2, "one")).unwrap();
    assert_eq!(retried.message.conv_seq.0, 1);
    assert_eq!(sorted(&retried), [(1, 2, 1), (2, 1, 1)]);
    assert_eq!(bodies(&first, 2, 1, 0).len(), 2, "nothing entered twice");
}

fn receipts(response: Result<Response, StoreError>) -> Vec<backend_store::ReceiptNote> {
    match response.unwrap() {
        Response::Receipts(notes) | Response::Cursors(notes) => notes,
        other => panic!("{other:?}"),
    }
}

#[test]
fn acks_and_reads_move_cursors_whose_receipts_reach_the_mailbox() {
    use protocol::{ReceiptKind, Timestamp, Visibility};
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    for (user, device) in [(1, 1), (2, 1), (2, 2)] {
        connect(&store, user, device).unwrap();
    }
    let sent = send(&store, message(1, 1, 1, 2, "a")).unwrap();
    // Sending moves the author's read cursor: the peer and the author's
    // other devices hear of it, as from the fjall engine.
    let own: Vec<_> = sent.receipts.iter().map(|n| (n.to.0, n.except, n.kind, n.up_to.0)).collect();
    assert_eq!(own, [(2, None, ReceiptKind::Read, 1), (1, Some(DeviceId(1)), ReceiptKind::Read, 1)]);
    send(&store, message(1, 1, 2, 2, "b")).unwrap();
    // B's device acks both: A hears "delivered up to 2".
    let acked =
        receipts(call(&store, Request::Ack(Ack { user: UserId(2), device: DeviceId(1), up_to: Seq(2) })));
    let got: Vec<_> = acked.iter().map(|n| (n.to.0, n.user.0, n.kind, n.up_to.0, n.conversation)).collect();
    assert_eq!(got, [(1, 2, ReceiptKind::Delivered, 2, Conversation::Direct(UserId(2)))]);
    // The other device's ack moves nothing more.
    let again = call(&store, Request::Ack(Ack { user: UserId(2), device: DeviceId(2), up_to: Seq(2) }));
    assert!(receipts(again).is_empty());
    // READ beyond the conversation is clamped to its last conv_seq.
    let read = backend_store::ReadCursor {
        user: UserId(2),
        device: DeviceId(2),
        conversation: Conversation::Direct(UserId(1)),
        up_to: protocol::ConvSeq(99),
    };
    let notes = receipts(call(&store, Request::Read(read)));
    let got: Vec<_> = notes.iter().map(|n| (n.to.0, n.except, n.kind, n.up_to.0)).collect();
    assert_eq!(got, [(1, None, ReceiptKind::Read, 2), (2, Some(DeviceId(2)), ReceiptKind::Read, 2)]);
    // A, connecting later, reads both cursors of B from its mailbox.
    let cursors = receipts(call(&store, Request::Cursors { user: UserId(1), since: Timestamp(0) }));
    let mut got: Vec<_> =
        cursors.iter().filter(|n| n.user == UserId(2)).map(|n| (n.kind, n.up_to.0)).collect();
    got.sort_unstable_by_key(|(kind, _)| *kind as u8);
    assert_eq!(got, [(ReceiptKind::Delivered, 2), (ReceiptKind::Read, 2)]);
    let later = Timestamp(cursors.iter().map(|n| n.at.0).max().unwrap());
    assert!(receipts(call(&store, Request::Cursors { user: UserId(1), since: later })).is_empty());
    // Visibility: everyone until set.
    let get = || call(&store, Request::GetVisibility { user: UserId(2) }).unwrap();
    assert!(matches!(get(), Response::Visibility(Visibility::Everyone)));
    call(&store, Request::SetVisibility { user: UserId(2), visibility: Visibility::Nobody }).unwrap();
    assert!(matches!(get(), Response::Visibility(Visibility::Nobody)));
}

#[test]
fn prekeys_are_uploaded_and_fetched_lowest_one_time_key_first() {
    use backend_store::{PrekeyFetch, PrekeyUpload};
    use protocol::{Key, OneTimePrekey, Signature, SignedPrekey};
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    connect(&store, 1, 1).unwrap();
    connect(&store, 1, 2).unwrap();
    assert_eq!(connect(&store, 1, 1).unwrap().prekey_stock, None, "no keys yet");
    let key = |b: u8| Key::new(vec![b; 32]).unwrap();
    let upload = |ids: &[u32]| PrekeyUpload {
        user: UserId(1),
        device: DeviceId(1),
        identity_key: key(1),
        signed_prekey: SignedPrekey { id: 7, key: key(9), signature: Signature::new(vec![1; 64]).unwrap() },
        one_time: ids.iter().map(|&id| OneTimePrekey { id, key: key(id as u8) }).collect(),
    };
    let stock = |response: Response| match response {
        Response::PrekeyStock(stock) => stock,
        other => panic!("{other:?}"),
    };
    assert_eq!(stock(call(&store, Request::PrekeyUpload(upload(&[5, 2, 9]))).unwrap()), 3);
    assert_eq!(
        stock(call(&store, Request::PrekeyUpload(upload(&[5]))).unwrap()),
        3,
        "an id stored is replaced"
    );
    assert_eq!(connect(&store, 1, 1).unwrap().prekey_stock, Some(3));
    let fetch = |device: u32| {
        call(&store, Request::PrekeyFetch(PrekeyFetch { user: UserId(1), device: DeviceId(device) }))
    };
    let Response::PrekeyFetched(fetched) = fetch(0).unwrap() else { panic!() };
    assert_eq!(fetched.bundles.len(), 1, "only device 1 has keys");
    let bundle = &fetched.bundles[0];
    assert_eq!((bundle.device, bundle.signed_prekey.id), (DeviceId(1), 7));
    assert_eq!(bundle.one_time.as_ref().map(|o| (o.id, o.key.clone())), Some((2, key(2))), "lowest id first");
    assert_eq!(fetched.low, [(DeviceId(1), 2)], "at or below the low mark");
    for expected in [Some(5), Some(9), None] {
        let Response::PrekeyFetched(fetched) = fetch(1).unwrap() else { panic!() };
        assert_eq!(fetched.bundles[0].one_time.as_ref().map(|o| o.id), expected);
    }
    assert_eq!(fetch(2).unwrap_err(), StoreError::UnknownDevice(UserId(1)));
}

fn change(
    store: &RedisStore,
    user: u64,
    op: backend_store::GroupOp,
) -> Result<backend_store::GroupChanged, StoreError> {
    let request = backend_store::GroupChange { user: UserId(user), device: DeviceId(1), op };
    match call(store, Request::Group(request))? {
        Response::GroupChanged(changed) => Ok(changed),
        other => panic!("{other:?}"),
    }
}

fn to_group(user: u64, device: u32, client_id: u64, group: protocol::GroupId, body: &str) -> SendMessage {
    SendMessage { to: Conversation::Group(group), ..message(user, device, client_id, 0, body) }
}

#[test]
fn groups_take_members_in_order_and_each_gets_only_its_membership() {
    use backend_store::GroupOp;
    use protocol::{GroupName, ReceiptKind, Role};
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    for (user, device) in [(1, 1), (2, 1), (2, 2), (3, 1), (4, 1)] {
        connect(&store, user, device).unwrap();
    }
    let created = change(
        &store,
        1,
        GroupOp::Create { name: GroupName::new("team").unwrap(), members: vec![UserId(2)] },
    )
    .unwrap();
    let g = created.info.group;
    assert_eq!(created.info.version, 1);
    assert_eq!(created.message.sender_device, DeviceId(0));
    let members: Vec<_> = created.info.members.iter().map(|m| (m.user.0, m.role)).collect();
    assert_eq!(members, [(1, Role::Admin), (2, Role::Member)]);
    assert_eq!(
        sorted_of(&created.deliveries),
        [(1, 1, 1), (2, 1, 1), (2, 2, 1)],
        "the acting device included"
    );
    // A non-member can neither send nor read the group.
    assert_eq!(send(&store, to_group(3, 1, 1, g, "x")).unwrap_err(), StoreError::NotAMember(g));
    let get = |user: u64| call(&store, Request::GroupGet { user: UserId(user), group: g });
    assert_eq!(get(3).unwrap_err(), StoreError::NotAMember(g));
    assert!(matches!(get(2).unwrap(), Response::Group(info) if info.version == 1));
    let sent = send(&store, to_group(1, 1, 1, g, "hello")).unwrap();
    assert_eq!(sent.message.conv_seq.0, 2);
    assert_eq!(sorted(&sent), [(2, 1, 2), (2, 2, 2)]);
    // 3 joins: it gets its joining entry and what follows, nothing before.
    let added = change(&store, 1, GroupOp::Add { group: g, members: vec![UserId(3)] }).unwrap();
    assert_eq!(added.message.conv_seq.0, 3);
    send(&store, to_group(2, 1, 1, g, "welcome")).unwrap();
    let seen: Vec<u64> = inbox(&store, 3, 1, 0).entries.iter().map(|e| e.conv_seq.0).collect();
    assert_eq!(seen, [3, 4]);
    // 2 is removed: it gets the removal, then nothing.
    change(&store, 1, GroupOp::Remove { group: g, members: vec![UserId(2)] }).unwrap();
    send(&store, to_group(3, 1, 2, g, "after")).unwrap();
    let seen: Vec<u64> = inbox(&store, 2, 2, 0).entries.iter().map(|e| e.conv_seq.0).collect();
    assert_eq!(seen, [1, 2, 3, 4, 5], "up to its removal (5), not 'after' (6)");
    assert!(inbox(&store, 2, 2, 0).entries.iter().all(|e| e.conversation == Conversation::Group(g)));
    // The last admin leaves: the oldest member left becomes one.
    let left = change(&store, 1, GroupOp::Leave { group: g }).unwrap();
    assert_eq!(left.info.members.iter().map(|m| (m.user.0, m.role)).collect::<Vec<_>>(), [(3, Role::Admin)]);
    // 3's ack of everything tells only the senders of what it covers (1
    // and 2), not itself and not for system entries.
    let acked =
        receipts(call(&store, Request::Ack(Ack { user: UserId(3), device: DeviceId(1), up_to: Seq(99) })));
    let told: Vec<_> = acked.iter().map(|n| (n.to.0, n.kind)).collect();
    assert_eq!(told, [(2, ReceiptKind::Delivered)], "1's only message was before 3 joined");
}

fn sorted_of(deliveries: &[backend_store::Delivery]) -> Vec<(u64, u32, u64)> {
    let mut all: Vec<_> = deliveries.iter().map(|d| (d.user.0, d.device.0, d.seq.0)).collect();
    all.sort_unstable();
    all
}

#[test]
fn two_instances_sending_to_one_group_at_once_leave_every_inbox_in_conversation_order() {
    use backend_store::GroupOp;
    use protocol::GroupName;
    let cluster = RedisCluster::start();
    let stores = [store(&cluster), store(&cluster)];
    let members: Vec<u64> = (1..=20).collect();
    for &user in &members {
        connect(&stores[0], user, 1).unwrap();
    }
    let others = members[1..].iter().map(|&u| UserId(u)).collect();
    let g = change(&stores[0], 1, GroupOp::Create { name: GroupName::new("race").unwrap(), members: others })
        .unwrap()
        .info
        .group;
    // Every member sends 5 messages, half of them through each instance,
    // all at once.
    let senders: Vec<_> = members
        .iter()
        .map(|&user| {
            let stores = stores.clone();
            std::thread::spawn(move || {
                for i in 0..5u64 {
                    let store = &stores[((user + i) % 2) as usize];
                    send(store, to_group(user, 1, i + 1, g, &format!("{user}-{i}"))).unwrap();
                }
            })
        })
        .collect();
    senders.into_iter().for_each(|t| t.join().unwrap());
    for &user in &members {
        let entries = inbox(&stores[1], user, 1, 0).entries;
        let conv_seqs: Vec<u64> = entries.iter().map(|e| e.conv_seq.0).collect();
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq.0).collect();
        assert!(conv_seqs.windows(2).all(|w| w[0] < w[1]), "user {user}: {conv_seqs:?}");
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "contiguous seqs");
        // Everything but its own 5 messages, and the creation entry.
        assert_eq!(entries.len(), 1 + 19 * 5, "user {user}");
    }
}

#[test]
fn with_redis_gone_a_send_gets_a_retryable_error_never_an_ack() {
    let cluster = RedisCluster::start();
    let mut config = RedisConfig::new(cluster.urls());
    config.timeout = Duration::from_millis(500);
    let store = RedisStore::connect(config).unwrap();
    for (user, device) in [(1, 1), (2, 1)] {
        connect(&store, user, device).unwrap();
    }
    send(&store, message(1, 1, 1, 2, "before")).unwrap();
    assert!(store.writable());
    drop(cluster);
    let err = send(&store, message(1, 1, 2, 2, "while down")).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code().retry(), protocol::Retry::Retryable);
    assert!(!store.writable(), "readiness follows: {err:?}");
}

#[test]
fn a_window_of_expired_entries_is_read_past_not_reported_as_more() {
    let cluster = RedisCluster::start();
    let mut config = RedisConfig::new(cluster.urls());
    config.retention = Duration::from_secs(2);
    let store = RedisStore::connect(config).unwrap();
    for (user, device) in [(1, 1), (2, 1)] {
        connect(&store, user, device).unwrap();
    }
    for i in 1..=6 {
        send(&store, message(1, 1, i, 2, "old")).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1_200));
    send(&store, message(1, 1, 7, 2, "mid")).unwrap();
    std::thread::sleep(Duration::from_millis(1_200));
    send(&store, message(1, 1, 8, 2, "new")).unwrap();
    // That append trimmed four expired entries from the front (the list
    // lives on: "mid" renewed its TTL); two are left for the reader to step
    // over.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut len = redis::cmd("LLEN");
    len.arg(crate::keys::inbox(UserId(2), DeviceId(1)));
    assert_eq!(runtime.block_on(store.query::<u64>(&len)).unwrap(), 4);
    let query =
        InboxQuery { user: UserId(2), device: DeviceId(1), after: Seq(0), limit: 2, max_bytes: 1 << 20 };
    let Response::Inbox(page) = call(&store, Request::Inbox(query)).unwrap() else { panic!() };
    let got: Vec<_> = page.entries.iter().map(|e| (e.seq.0, e.payload.bytes().to_vec())).collect();
    assert_eq!(got, [(7, b"mid".to_vec()), (8, b"new".to_vec())], "the expired ones are skipped");
    assert_eq!(page.remaining, 0);
    // Past everything (even a nonsense cursor): an empty page, nothing more.
    let query = InboxQuery { after: Seq(u64::MAX), ..query };
    let Response::Inbox(page) = call(&store, Request::Inbox(query)).unwrap() else { panic!() };
    assert!(page.entries.is_empty() && page.remaining == 0);
}

#[test]
fn a_group_send_retried_after_its_sender_left_is_answered_not_refused() {
    use backend_store::GroupOp;
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    for user in [1, 2] {
        connect(&store, user, 1).unwrap();
    }
    let name = protocol::GroupName::new("g").unwrap();
    let g = change(&store, 1, GroupOp::Create { name, members: vec![UserId(2)] }).unwrap().info.group;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let conv_seq = runtime.block_on(store.send_interrupted(&to_group(2, 1, 9, g, "last words"), 0));
    change(&store, 2, GroupOp::Leave { group: g }).unwrap();
    let retried = send(&store, to_group(2, 1, 9, g, "last words")).unwrap();
    assert_eq!(retried.message.conv_seq.0, conv_seq, "the stored message, not a refusal");
    // A new message from the former member is refused.
    assert_eq!(send(&store, to_group(2, 1, 10, g, "x")).unwrap_err(), StoreError::NotAMember(g));
}

#[test]
fn a_1024_member_group_send_stopped_halfway_is_finished_once_by_its_retry() {
    use backend_store::GroupOp;
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    for user in 1..=1024 {
        connect(&store, user, 1).unwrap();
    }
    let name = protocol::GroupName::new("all").unwrap();
    let members = (2..=1024).map(UserId).collect();
    let g = change(&store, 1, GroupOp::Create { name, members }).unwrap().info.group;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The instance dies after entering half of the members.
    let conv_seq = runtime.block_on(store.send_interrupted(&to_group(1, 1, 7, g, "half"), 512));
    let conv_seqs =
        |user: u64| -> Vec<u64> { inbox(&store, user, 1, 0).entries.iter().map(|e| e.conv_seq.0).collect() };
    assert_eq!(conv_seqs(300), [1, conv_seq], "entered before the instance died");
    assert_eq!(conv_seqs(900), [1], "not reached");
    let retried = send(&store, to_group(1, 1, 7, g, "half")).unwrap();
    assert!(retried.duplicate && retried.message.conv_seq.0 == conv_seq);
    assert_eq!(retried.deliveries.len(), 1023, "every member's entry, whether entered now or before");
    for user in 2..=1024 {
        assert_eq!(conv_seqs(user), [1, conv_seq], "member {user}: once, in order");
    }
    // Retried again: a duplicate carrying the entries not acked yet.
    let ack = Ack { user: UserId(2), device: DeviceId(1), up_to: Seq(2) };
    call(&store, Request::Ack(ack)).unwrap();
    let again = send(&store, to_group(1, 1, 7, g, "half")).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.deliveries.len(), 1022, "member 2 acked it");
    assert!(again.deliveries.iter().all(|d| d.user != UserId(2)));
}

#[test]
fn a_conversation_whose_seq_went_back_is_refused_not_acknowledged() {
    // A master that lost its last writes (AOF `everysec`, machine lost)
    // hands out a conv_seq a recipient already has: the enter step sees
    // another message's record there and refuses, rather than answering
    // "entered before" and acknowledging a message nobody gets.
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    for user in [1, 2] {
        connect(&store, user, 1).unwrap();
    }
    send(&store, message(1, 1, 1, 2, "first")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut back = redis::cmd("SET");
    back.arg(crate::keys::conv_seq("{p:1:2}:")).arg(0);
    runtime.block_on(store.query::<()>(&back)).unwrap();
    let refused = send(&store, message(1, 1, 2, 2, "second")).unwrap_err();
    assert!(matches!(refused, StoreError::Engine(_)), "{refused:?}");
    let mut len = redis::cmd("LLEN");
    len.arg(crate::keys::inbox(UserId(2), DeviceId(1)));
    assert_eq!(runtime.block_on(store.query::<u64>(&len)).unwrap(), 1, "nothing entered");
    // "second" took conv_seq 1's body key: the first entry is not sent with
    // another message's payload.
    assert!(bodies(&store, 2, 1, 0).is_empty());
}

#[test]
fn instances_lease_distinct_numbers_and_one_whose_lease_was_taken_moves_on() {
    let cluster = RedisCluster::start();
    let (a, b) = (store(&cluster), store(&cluster));
    let (ids_a, ids_b) = (&a.inner.ids, &b.inner.ids);
    assert_ne!(ids_a.number(), ids_b.number());
    // A was cut off past its lease and another instance took its number.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut taken = redis::cmd("SET");
    taken.arg(ids_a.key()).arg("someone else");
    runtime.block_on(a.query::<()>(&taken)).unwrap();
    let before = ids_a.number();
    let mut conn = a.inner.conn.clone();
    runtime.block_on(ids_a.renew(&mut conn)).unwrap();
    assert_ne!(ids_a.number(), before, "the taken number is given up");
    assert_ne!(ids_a.number(), ids_b.number());
    connect(&a, 1, 1).unwrap();
    connect(&a, 2, 1).unwrap();
    let sent = send(&a, message(1, 1, 1, 2, "x")).unwrap();
    assert_eq!((sent.message.id.0 >> 12) & 0x3ff, ids_a.number(), "ids carry the new number");
}

#[test]
fn the_engine_refuses_a_cluster_that_does_not_persist_as_asked() {
    let cluster = RedisCluster::start();
    // The test cluster runs `appendonly yes`, `appendfsync everysec`.
    let mut fsync = RedisConfig::new(cluster.urls());
    fsync.durability = crate::Durability::Fsync;
    let refused = RedisStore::connect(fsync).unwrap_err();
    assert!(refused.to_string().contains("appendfsync everysec"), "{refused}");
    for node in 0..3 {
        assert_eq!(cluster.cli(node, &["CONFIG", "SET", "appendonly", "no"]).trim(), "OK");
    }
    let refused = RedisStore::connect(RedisConfig::new(cluster.urls())).unwrap_err();
    assert!(refused.to_string().contains("appendonly no"), "{refused}");
}

#[test]
fn a_window_whose_bodies_are_gone_is_read_past_not_answered_as_the_end() {
    let cluster = RedisCluster::start();
    let store = store(&cluster);
    for (user, device) in [(1, 1), (2, 1)] {
        connect(&store, user, device).unwrap();
    }
    for i in 1..=3 {
        send(&store, message(1, 1, i, 2, &format!("m{i}"))).unwrap();
    }
    // The first two bodies are gone (a master lost them).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut del = redis::cmd("DEL");
    del.arg(crate::keys::message("{p:1:2}:", 1)).arg(crate::keys::message("{p:1:2}:", 2));
    runtime.block_on(store.query::<()>(&del)).unwrap();
    let query =
        InboxQuery { user: UserId(2), device: DeviceId(1), after: Seq(0), limit: 2, max_bytes: 1 << 20 };
    let Response::Inbox(page) = call(&store, Request::Inbox(query)).unwrap() else { panic!() };
    let got: Vec<_> = page.entries.iter().map(|e| (e.seq.0, e.payload.bytes().to_vec())).collect();
    assert_eq!(got, [(3, b"m3".to_vec())], "read past the window of lost bodies");
}
