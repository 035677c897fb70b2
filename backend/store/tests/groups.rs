//! Groups: membership rules, errors, system entries and group receipts,
//! against a real fjall store.
// Tests unwrap and index: a panic there is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use backend_store::*;
use common::*;
use protocol::{Conversation, DeviceId, Frame, GroupId, GroupName, ReceiptKind, Role, UserId};

fn users(ids: &[u64]) -> Vec<UserId> {
    ids.iter().map(|&u| UserId(u)).collect()
}

/// A fresh store with users 1..=`users` connected (one device each) and a
/// group user 1 created with the others: its directory, the store, the group.
fn store_with_group(users: u64) -> (tempfile::TempDir, Store, GroupId) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    for u in 1..=users {
        connect(&store, u, 1);
    }
    let others: Vec<u64> = (2..=users).collect();
    let group = create(&store, 1, &others).info.group;
    (dir, store, group)
}

fn decode_info(payload: &bytes::Bytes) -> protocol::GroupInfo {
    let mut frames = protocol::Decoder::for_server_messages().message(payload.clone());
    match frames.next() {
        Some(Ok(Frame::GroupInfo(info))) => {
            assert!(frames.next().is_none(), "exactly one frame");
            info
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lifecycle_errors_and_system_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    for (u, d) in [(1, 1), (1, 2), (2, 1), (3, 1), (4, 1)] {
        connect(&store, u, d);
    }
    let created = create(&store, 1, &[2, 2, 1]);
    let g = created.info.group;
    assert_eq!(created.info.version, 1);
    assert_eq!(
        created.info.members.iter().map(|m| (m.user.0, m.role)).collect::<Vec<_>>(),
        vec![(1, Role::Admin), (2, Role::Member)]
    );
    assert_eq!(created.message.sender_device, DeviceId(0));
    let info = decode_info(&created.message.payload);
    assert_eq!((info.request, info.group, info.version, info.members.len()), (0, g, 1, 2));
    let mut targets: Vec<_> = created.deliveries.iter().map(|d| (d.user.0, d.device.0)).collect();
    targets.sort_unstable();
    assert_eq!(targets, vec![(1, 1), (1, 2), (2, 1)], "acting device included");
    assert!(created.deliveries.iter().all(|d| d.conversation == Conversation::Group(g)));

    // Errors.
    let add = |user, m: &[u64]| change(&store, user, GroupOp::Add { group: g, members: users(m) });
    assert_eq!(add(2, &[3]).unwrap_err(), StoreError::NotAdmin(g));
    assert_eq!(add(3, &[3]).unwrap_err(), StoreError::NotAMember(g));
    assert_eq!(
        change(&store, 1, GroupOp::Add { group: GroupId(999), members: vec![] }).unwrap_err(),
        StoreError::UnknownGroup(GroupId(999))
    );
    assert_eq!(
        call(&store, Request::GroupGet { user: UserId(3), group: g }).unwrap_err(),
        StoreError::NotAMember(g)
    );
    assert_eq!(
        try_send(&store, 3, 1, 1, Conversation::Group(g), b"x").unwrap_err(),
        StoreError::NotAMember(g)
    );
    assert_eq!(
        try_send(&store, 1, 1, 1, Conversation::Group(GroupId(999)), b"x").unwrap_err(),
        StoreError::UnknownGroup(GroupId(999))
    );

    let added = add(1, &[3, 2]).unwrap();
    assert_eq!(added.info.version, 2);
    assert_eq!(added.info.members.len(), 3, "existing member is a no-op");
    let role =
        change(&store, 1, GroupOp::SetRole { group: g, member: UserId(3), role: Role::Admin }).unwrap();
    assert_eq!(role.info.version, 3);
    // A message reaches every member device but the sending one.
    let msg = send(&store, 2, 1, 1, Conversation::Group(g), b"hello");
    let mut got: Vec<_> = msg.deliveries.iter().map(|d| (d.user.0, d.device.0)).collect();
    got.sort_unstable();
    assert_eq!(got, vec![(1, 1), (1, 2), (3, 1)]);

    let removed = change(&store, 3, GroupOp::Remove { group: g, members: users(&[2, 4]) }).unwrap();
    assert_eq!(removed.info.members.len(), 2);
    assert!(removed.deliveries.iter().any(|d| d.user == UserId(2)), "removed member gets the entry");
    let after = send(&store, 1, 1, 2, Conversation::Group(g), b"after");
    assert!(after.deliveries.iter().all(|d| d.user != UserId(2)), "and nothing after it");
    let last_for_2 = inbox_all(&store, 2, 1).pop().unwrap();
    assert_eq!(last_for_2.sender_device, DeviceId(0));
    let info = decode_info(last_for_2.payload.bytes());
    assert!(info.members.iter().all(|m| m.user != UserId(2)));

    // The admins leave: the oldest remaining member is promoted.
    change(&store, 1, GroupOp::Leave { group: g }).unwrap();
    let left = change(&store, 3, GroupOp::Leave { group: g });
    assert!(left.is_ok());
    assert_eq!(change(&store, 3, GroupOp::Leave { group: g }).unwrap_err(), StoreError::NotAMember(g));
    let created2 = create(&store, 1, &[2, 3]);
    change(&store, 1, GroupOp::Leave { group: created2.info.group }).unwrap();
    match call(&store, Request::GroupGet { user: UserId(2), group: created2.info.group }).unwrap() {
        Response::Group(info) => {
            assert_eq!(info.members[0], protocol::Member { user: UserId(2), role: Role::Admin });
            assert_eq!(info.version, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn group_full_at_1025() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let many: Vec<u64> = (2..=1024).collect();
    let created = create(&store, 1, &many);
    assert_eq!(created.info.members.len(), 1024);
    let g = created.info.group;
    let err = change(&store, 1, GroupOp::Add { group: g, members: users(&[5000]) }).unwrap_err();
    assert_eq!(err, StoreError::GroupFull(g));
    let too_many: Vec<u64> = (2..=1025).collect();
    let op = GroupOp::Create { name: GroupName::new("x").unwrap(), members: users(&too_many) };
    assert!(matches!(change(&store, 1, op), Err(StoreError::GroupFull(_))));
    match call(&store, Request::GroupGet { user: UserId(1024), group: g }).unwrap() {
        Response::Group(info) => assert_eq!((info.members.len(), info.version), (1024, 1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn group_receipts_go_only_to_covered_senders() {
    let (_dir, store, g) = store_with_group(4);
    let view = Conversation::Group(g);
    // conv_seq 1 is the system entry; 2 from user 1, 3 from user 2.
    send(&store, 1, 1, 1, view, b"a");
    let sent = send(&store, 2, 1, 1, view, b"b");
    // User 2's read cursor jumps over user 1's message: user 1 hears, and
    // user 2's other devices.
    let mut to: Vec<_> = sent.receipts.iter().map(|r| (r.to.0, r.except)).collect();
    to.sort_unstable();
    assert_eq!(to, vec![(1, None), (2, Some(DeviceId(1)))]);

    // User 4 acks everything (system entry + 2 messages): senders 1 and 2 hear.
    let head = inbox_all(&store, 4, 1).last().unwrap().seq.0;
    let notes = ack(&store, 4, 1, head);
    let mut to: Vec<_> = notes.iter().map(|r| r.to.0).collect();
    to.sort_unstable();
    assert_eq!(to, vec![1, 2]);
    assert!(notes.iter().all(|r| r.kind == ReceiptKind::Delivered
        && r.user == UserId(4)
        && r.conversation == view
        && r.up_to.0 == 3));

    // User 3 reads only up to user 1's message: only user 1 (and user 3's
    // own other devices) hear.
    let notes = read(&store, 3, 1, view, 2).unwrap();
    let mut to: Vec<_> = notes.iter().map(|r| r.to.0).collect();
    to.sort_unstable();
    assert_eq!(to, vec![1, 3]);
    // A new member starts with its cursors at its join: reading old
    // messages moves nothing.
    connect(&store, 5, 1);
    change(&store, 1, GroupOp::Add { group: g, members: users(&[5]) }).unwrap();
    assert!(read(&store, 5, 1, view, 3).unwrap().is_empty());
}

/// A group cursor move finds the authors it covers in the writer's cache
/// when the entries are recent and few, and in the engine otherwise (a long
/// jump, or a store reopened with an empty cache): the receipts are the same.
#[test]
fn group_receipts_from_the_writer_cache_and_from_disk_agree() {
    let (dir, store, g) = store_with_group(4);
    let view = Conversation::Group(g);
    // Acks all of `user`'s inbox: who hears of it.
    let acked_to = |store: &Store, user: u64| {
        let head = inbox_all(store, user, 1).last().unwrap().seq.0;
        let notes = ack(store, user, 1, head);
        let mut to: Vec<_> = notes.iter().map(|r| r.to.0).collect();
        to.sort_unstable();
        to
    };
    // Recent and few (cache): one message from each of users 1 and 2.
    send(&store, 1, 1, 1, view, b"a");
    send(&store, 2, 1, 1, view, b"b");
    assert_eq!(acked_to(&store, 3), vec![1, 2]);
    // A jump longer than the cached lookup (70 messages from user 1, then
    // one from user 4): read from the engine.
    for id in 2..72 {
        send(&store, 1, 1, id, view, b"c");
    }
    send(&store, 4, 1, 1, view, b"d");
    assert_eq!(acked_to(&store, 3), vec![1, 4]);
    // After a reopen the cache is empty: user 2 covers everything so far, and
    // user 3 covers only a new message from user 4.
    send(&store, 4, 1, 2, view, b"e");
    drop(store);
    let store = Store::open(config(dir.path())).unwrap();
    assert_eq!(acked_to(&store, 2), vec![1, 4]);
    assert_eq!(acked_to(&store, 3), vec![4]);
}

#[test]
fn a_retried_group_send_fans_the_original_entries_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    for (u, d) in [(1, 1), (1, 2), (2, 1), (3, 1), (3, 2)] {
        connect(&store, u, d);
    }
    let g = create(&store, 1, &[2, 3]).info.group;
    let first = send(&store, 1, 1, 7, Conversation::Group(g), b"hello");
    let again = send(&store, 1, 1, 7, Conversation::Group(g), b"hello");
    assert!(again.duplicate);
    let entries = |sent: &Sent| {
        let mut all: Vec<_> =
            sent.deliveries.iter().map(|d| (d.user.0, d.device.0, d.seq, d.conversation)).collect();
        all.sort_unstable_by_key(|e| (e.0, e.1));
        all
    };
    assert_eq!(entries(&again), entries(&first));
    assert_eq!(entries(&again).len(), 4, "every device of the group but the sending one");
    assert!(again.deliveries.iter().all(|d| d.conversation == Conversation::Group(g)));
}

/// The store's clock now, between two pauses: a `since` that no move shares.
fn instant_between_moves() -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(5));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    u64::try_from(now.as_millis()).unwrap()
}

/// What a sync (`Cursors{user, since}`) tells `user` of group cursors:
/// (whose, kind, up_to), sorted.
fn told(store: &Store, user: u64, since: u64) -> Vec<(u64, ReceiptKind, u64)> {
    let Response::Cursors(notes) =
        call(store, Request::Cursors { user: UserId(user), since: protocol::Timestamp(since) }).unwrap()
    else {
        panic!("not a cursors answer")
    };
    let mut told: Vec<_> = notes
        .iter()
        .filter(|n| matches!(n.conversation, Conversation::Group(_)))
        .map(|n| (n.user.0, n.kind, n.up_to.0))
        .collect();
    told.sort_unstable_by_key(|&(user, kind, up_to)| (user, kind as u8, up_to));
    told
}

/// A sync tells an author of the members' cursor moves after `since` that
/// covered its messages, with their values now, and of its own read cursor;
/// not of a move over other authors' messages only. The cursors are read
/// from disk (a reopen changes nothing).
#[test]
fn a_sync_tells_an_author_of_the_group_moves_that_covered_its_messages() {
    use ReceiptKind::{Delivered, Read};
    let (dir, store, g) = store_with_group(4);
    let view = Conversation::Group(g);
    // conv_seq 1: the system entry; 2: user 1's message, read by user 4.
    send(&store, 1, 1, 1, view, b"a");
    read(&store, 4, 1, view, 2).unwrap();
    let since = instant_between_moves();
    // 3: user 2's message (its read cursor jumps over user 1's), read by
    // user 4 (over user 2's only); user 3 acks both.
    send(&store, 2, 1, 1, view, b"b");
    read(&store, 4, 1, view, 3).unwrap();
    let head = inbox_all(&store, 3, 1).last().unwrap().seq.0;
    ack(&store, 3, 1, head);

    let for_1 = vec![(2, Read, 3), (3, Delivered, 3)];
    let for_2 = vec![(2, Read, 3), (3, Delivered, 3), (4, Read, 3)];
    assert_eq!(told(&store, 1, since), for_1, "user 4's move after `since` covered only user 2's message");
    assert_eq!(told(&store, 2, since), for_2, "its own read cursor, and every move over its message");
    // Since the start, user 4's moves covered user 1's message too.
    assert_eq!(told(&store, 1, 0), vec![(1, Read, 2), (2, Read, 3), (3, Delivered, 3), (4, Read, 3)]);

    drop(store);
    let store = Store::open(config(dir.path())).unwrap();
    assert_eq!(told(&store, 1, since), for_1);
    assert_eq!(told(&store, 2, since), for_2);
}

/// Leaving and coming back loses no receipt: a member's moves before it
/// left still count when it is back (its cursors are moved up to its
/// return, not begun again), and an author that left is still told of the
/// moves over the messages it left behind.
#[test]
fn leaving_and_coming_back_loses_no_receipt() {
    use ReceiptKind::{Delivered, Read};
    let (_dir, store, g) = store_with_group(4);
    let view = Conversation::Group(g);
    let since = instant_between_moves();
    // conv_seq 2: user 1's message; user 3 reads it, leaves (3) and is
    // added back (4).
    send(&store, 1, 1, 1, view, b"a");
    read(&store, 3, 1, view, 2).unwrap();
    change(&store, 3, GroupOp::Leave { group: g }).unwrap();
    change(&store, 1, GroupOp::Add { group: g, members: users(&[3]) }).unwrap();
    assert!(
        told(&store, 1, since).contains(&(3, Read, 4)),
        "user 3's read before it left: {:?}",
        told(&store, 1, since)
    );

    // 5: user 2's message; user 2 leaves (6); user 4 acks over its message.
    send(&store, 2, 1, 1, view, b"b");
    change(&store, 2, GroupOp::Leave { group: g }).unwrap();
    let head = inbox_all(&store, 4, 1).last().unwrap().seq.0;
    ack(&store, 4, 1, head);
    let for_2 = told(&store, 2, since);
    assert!(for_2.contains(&(4, Delivered, 6)), "user 2 left, its message is still there: {for_2:?}");
    assert!(for_2.contains(&(2, Read, 5)), "its own read cursor, moved by its Send");
}

/// Past the moves a cursor's history holds, a sync errs towards telling: a
/// member's moves over other authors' messages only are told once there
/// were more of them after `since` than the history keeps (4).
#[test]
fn past_its_history_a_sync_tells_too_much_never_too_little() {
    let (_dir, store, g) = store_with_group(3);
    let view = Conversation::Group(g);
    send(&store, 1, 1, 1, view, b"a");
    let mut acked = 0;
    let mut ack_all = |store: &Store| {
        let head = inbox_all(store, 3, 1).last().unwrap().seq.0;
        if head > acked {
            ack(store, 3, 1, head);
            acked = head;
        }
    };
    ack_all(&store);
    let since = instant_between_moves();
    let user_3_told_to_1 = |store: &Store| told(store, 1, since).iter().any(|&(user, _, _)| user == 3);
    for client_id in 1..=4 {
        send(&store, 2, 1, client_id, view, b"b");
        ack_all(&store);
        assert!(!user_3_told_to_1(&store), "{client_id} moves over user 2's messages only");
    }
    send(&store, 2, 1, 5, view, b"b");
    ack_all(&store);
    assert!(user_3_told_to_1(&store), "five moves since: the start is unknown, so told");
}
