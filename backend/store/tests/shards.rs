//! Several writers (`SHARDS.md`): a store of four shards, where a group's
//! messages cross from the group's shard to its members' in chains of
//! commits. Conversation order across shards under concurrent authors and
//! refused steps, and a crash between a chain's commits (a child process
//! aborted at a fault point, feature `faults`), after which a retry or the
//! conversation's next message completes the chain: every member device
//! has every message exactly once, in conv_seq order, with contiguous seqs.
// Tests unwrap and index: a panic there is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use backend_store::faults::{arm, Fault};
use backend_store::*;
use common::*;
use protocol::{Conversation, GroupId, UserId};

/// Four shards, whatever `STORE_TEST_WRITERS` says.
fn sharded(dir: &std::path::Path) -> StoreConfig {
    let mut config = config(dir);
    config.writers = 4;
    config
}

/// Checks every device of `users` (devices 1..=`devices`): contiguous
/// seqs, each of the group's messages at most once and in conv_seq order;
/// returns each device's conv_seqs in the group.
fn inboxes_in_order(
    store: &Store,
    users: &[u64],
    devices: u32,
    group: GroupId,
) -> BTreeMap<(u64, u32), Vec<u64>> {
    let mut seen = BTreeMap::new();
    for &user in users {
        for device in 1..=devices {
            let entries = inbox_all(store, user, device);
            for (i, entry) in entries.iter().enumerate() {
                assert_eq!(entry.seq.0, i as u64 + 1, "user {user} device {device}: contiguous seqs");
            }
            let seqs: Vec<u64> = entries
                .iter()
                .filter(|e| e.conversation == Conversation::Group(group))
                .map(|e| e.conv_seq.0)
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "user {user} device {device}: in conv_seq order, once each: {seqs:?}"
            );
            seen.insert((user, device), seqs);
        }
    }
    seen
}

/// Many authors in different shards send to one group at once, through
/// queues so short that Sends are refused (a refused Send is retried with
/// its client id, as a client does): every member device gets every
/// message of the others exactly once, in conv_seq order.
#[test]
fn conversation_order_across_shards() {
    const USERS: u64 = 16;
    const AUTHORS: u64 = 8;
    const EACH: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let mut config = sharded(dir.path());
    config.queue = 4;
    let store = Store::open(config).unwrap();
    let shards: HashSet<usize> = (1..=USERS).map(|u| store.shard_of(UserId(u))).collect();
    assert!(shards.len() >= 3, "the members spread over the shards: {shards:?}");
    for user in 1..=USERS {
        connect(&store, user, 1);
        connect(&store, user, 2);
    }
    let members: Vec<u64> = (2..=USERS).collect();
    let group = create(&store, 1, &members).info.group;
    let to = Conversation::Group(group);
    let sent: BTreeMap<u64, Vec<u64>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (1..=AUTHORS)
            .map(|author| {
                let store = &store;
                scope.spawn(move || {
                    let mut conv_seqs = Vec::new();
                    for client_id in 1..=EACH {
                        let body = format!("{author}/{client_id}");
                        let sent = loop {
                            match try_send(store, author, 1, client_id, to, body.as_bytes()) {
                                Ok(sent) => break sent,
                                Err(err) => assert!(matches!(err, StoreError::Overloaded), "{err:?}"),
                            }
                            std::thread::yield_now();
                        };
                        conv_seqs.push(sent.message.conv_seq.0);
                    }
                    (author, conv_seqs)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    // Sends were refused at their first step (the bounded queue) and
    // retried; the steps of chains under way have their own queue, so a
    // gap comes only from a crash or a shard reopening (the tests below).
    assert!(store.metrics().overloaded.load(Ordering::Relaxed) > 0, "sends were refused: the retries ran");
    let users: Vec<u64> = (1..=USERS).collect();
    let seen = inboxes_in_order(&store, &users, 2, group);
    let last = 1 + AUTHORS * EACH;
    for ((user, device), seqs) in seen {
        // Every message but those this very device sent.
        let own = if device == 1 { sent.get(&user).cloned().unwrap_or_default() } else { Vec::new() };
        let expected: Vec<u64> = (1..=last).filter(|s| !own.contains(s)).collect();
        assert_eq!(seqs, expected, "user {user} device {device}");
    }
}

const CHILD_DIR: &str = "BACKEND_STORE_SHARDS_CHILD_DIR";
const CHILD_FAULT: &str = "BACKEND_STORE_SHARDS_CHILD_FAULT";
const MEMBERS: u64 = 12;

/// Child mode (only when the parent sets `CHILD_DIR`): users 1..=12 with
/// one device each in a group of user 1's, one message sent and
/// acknowledged, then the fault point armed and a second message sent:
/// the process aborts inside its chain.
#[test]
fn child_of_a_crash() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let fault = match std::env::var(CHILD_FAULT).as_deref() {
        Ok("append" | "join") => Fault::AfterAppend,
        _ => Fault::AfterEnter,
    };
    let store = Store::open(sharded(std::path::Path::new(&dir))).unwrap();
    if std::env::var(CHILD_FAULT).as_deref() == Ok("join") {
        return join_then_crash(&store);
    }
    for user in 1..=MEMBERS {
        connect(&store, user, 1);
    }
    let members: Vec<u64> = (2..=MEMBERS).collect();
    let group = create(&store, 1, &members).info.group;
    send(&store, 1, 1, 1, Conversation::Group(group), b"first");
    let mut out = std::io::stdout().lock();
    writeln!(out, "GROUP {}", group.0).unwrap();
    out.flush().unwrap();
    drop(out);
    arm(fault);
    let _ = try_send(&store, 1, 1, 2, Conversation::Group(group), b"second");
    unreachable!("the fault point aborts the process");
}

/// Child mode "join": a user of another shard than the group's is added
/// to it after one message, and the process dies after the change's first
/// commit, before the new member's shard entered anything.
fn join_then_crash(store: &Store) {
    let joiner = (MEMBERS + 1..).find(|&u| store.shard_of(UserId(u)) != store.shard_of(UserId(1))).unwrap();
    for user in 1..=joiner {
        connect(store, user, 1);
    }
    let members: Vec<u64> = (2..=MEMBERS).collect();
    let group = create(store, 1, &members).info.group;
    send(store, 1, 1, 1, Conversation::Group(group), b"first");
    let mut out = std::io::stdout().lock();
    writeln!(out, "GROUP {} JOINER {joiner}", group.0).unwrap();
    out.flush().unwrap();
    drop(out);
    arm(Fault::AfterAppend);
    let _ = change(store, 1, GroupOp::Add { group, members: vec![UserId(joiner)] });
    unreachable!("the fault point aborts the process");
}

/// Runs a child to its fault; the group it made.
fn crash_at(dir: &std::path::Path, fault: &str) -> GroupId {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_of_a_crash", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_FAULT, fault)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "the child died at its fault point");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let group = stdout.lines().find_map(|line| {
        let (_, rest) = line.split_once("GROUP ")?;
        rest.split_whitespace().next().map(str::to_owned)
    });
    GroupId(group.expect("the child made its group").parse().unwrap())
}

/// Members whose inbox lacks conv_seq 3 (the message the crash cut).
fn lacking(store: &Store, group: GroupId) -> Vec<u64> {
    let users: Vec<u64> = (1..=MEMBERS).collect();
    inboxes_in_order(store, &users, 1, group)
        .into_iter()
        .filter(|((user, _), seqs)| *user != 1 && !seqs.contains(&3))
        .map(|((user, _), _)| user)
        .collect()
}

/// After the crash, every member but the author has conv_seqs 1..=`last`
/// exactly once, in order (the author has its joining and the others').
fn all_have(store: &Store, group: GroupId, last: u64, own: &[u64]) {
    let users: Vec<u64> = (1..=MEMBERS).collect();
    for ((user, _), seqs) in inboxes_in_order(store, &users, 1, group) {
        let expected: Vec<u64> = (1..=last).filter(|s| user != 1 || !own.contains(s)).collect();
        assert_eq!(seqs, expected, "user {user}");
    }
}

/// A crash after the group message's append and before any Enter: the
/// members outside the group's shard lack it; the client's retry (same
/// client id) enters it for them, once; a second retry enters nothing.
#[test]
fn a_crash_between_shard_commits_is_completed_by_the_retry() {
    for fault in ["append", "enter"] {
        let dir = tempfile::tempdir().unwrap();
        let group = crash_at(dir.path(), fault);
        let store = Store::open(sharded(dir.path())).unwrap();
        let missing = lacking(&store, group);
        assert!(!missing.is_empty(), "{fault}: the crash cut the chain: some members lack the message");
        let retry = send(&store, 1, 1, 2, Conversation::Group(group), b"second");
        assert!(retry.duplicate, "{fault}: the message was stored before the crash");
        assert_eq!(retry.message.conv_seq.0, 3);
        for user in &missing {
            assert!(
                retry.deliveries.iter().any(|d| d.user == UserId(*user)),
                "{fault}: the retry fans out user {user}'s new entry"
            );
        }
        all_have(&store, group, 3, &[2, 3]);
        let again = send(&store, 1, 1, 2, Conversation::Group(group), b"second");
        assert!(again.duplicate);
        all_have(&store, group, 3, &[2, 3]);
    }
}

/// The same crash, and no retry: the conversation's next message (another
/// author's) finds the gap in each member's shard and enters the lost one
/// first, from the conversation's log.
#[test]
fn a_crash_between_shard_commits_is_completed_by_the_next_message() {
    for fault in ["append", "enter"] {
        let dir = tempfile::tempdir().unwrap();
        let group = crash_at(dir.path(), fault);
        let store = Store::open(sharded(dir.path())).unwrap();
        assert!(!lacking(&store, group).is_empty(), "{fault}: the crash cut the chain");
        let next = send(&store, 2, 1, 1, Conversation::Group(group), b"third");
        assert_eq!(next.message.conv_seq.0, 4);
        let users: Vec<u64> = (1..=MEMBERS).collect();
        for ((user, _), seqs) in inboxes_in_order(&store, &users, 1, group) {
            let expected: Vec<u64> = match user {
                1 => vec![1, 4],
                2 => vec![1, 2, 3],
                _ => vec![1, 2, 3, 4],
            };
            assert_eq!(seqs, expected, "{fault}: user {user}");
        }
        assert!(store.metrics().caught_up.load(Ordering::Relaxed) > 0, "{fault}: entered from the log");
        // The author's retry now finds every entry made: none twice.
        assert!(send(&store, 1, 1, 2, Conversation::Group(group), b"second").duplicate);
        assert!(lacking(&store, group).is_empty());
    }
}

/// Two users of different shards (and the pair's shard one of theirs).
fn apart(store: &Store) -> (u64, u64) {
    let a = 1;
    let b = (2..100).find(|&b| store.shard_of(UserId(b)) != store.shard_of(UserId(a))).unwrap();
    (a, b)
}

/// A continuation that drops the last handle of the store, at the end of
/// a chain (a Send across shards) and of a Read whose receipt note goes to
/// another shard: the drop joins the store's threads without waiting on
/// itself, and the store's directory opens again.
#[test]
fn the_last_handle_dropped_by_a_continuation_closes_the_store() {
    let dir = tempfile::tempdir().unwrap();
    for step in ["send", "read"] {
        let store = Store::open(sharded(dir.path())).unwrap();
        let (a, b) = apart(&store);
        connect(&store, a, 1);
        connect(&store, b, 1);
        let sent = send(&store, a, 1, 1, direct(b), b"first");
        let request = match step {
            // From the higher user: the pair's shard is the other's, so the
            // chain ends with the author's Enter, whose cursor sends a note.
            "send" => Request::Send(SendMessage {
                user: UserId(b),
                device: protocol::DeviceId(1),
                client_id: 2,
                to: direct(a),
                payload: bytes::Bytes::from_static(b"second"),
            }),
            _ => Request::Read(ReadCursor {
                user: UserId(b),
                device: protocol::DeviceId(1),
                conversation: direct(a),
                up_to: sent.message.conv_seq,
            }),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let held = store.clone();
        store.call(
            request,
            Box::new(move |result| {
                drop(held);
                tx.send(result.is_ok()).unwrap();
            }),
        );
        drop(store);
        let answered = rx.recv_timeout(std::time::Duration::from_secs(20));
        assert_eq!(answered, Ok(true), "{step}: answered, and the store's drop returned");
    }
    Store::open(sharded(dir.path())).unwrap();
}

/// A user of another shard added to a group, the process dead after the
/// change's first commit: the group's next message enters the joining
/// entry before itself for the new member, and with it what the joining
/// does (its group index, so that its syncs read the group's cursors; its
/// cursors starting there, so that its first Ack tells only the authors of
/// what came after).
#[test]
fn a_joining_cut_by_a_crash_is_completed_by_the_next_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_of_a_crash", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_FAULT, "join")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "the child died at its fault point");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = stdout.lines().find(|line| line.contains("JOINER ")).expect("the child's group");
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "GROUP").unwrap();
    let (group, joiner) = (GroupId(words[at + 1].parse().unwrap()), words[at + 3].parse::<u64>().unwrap());
    let store = Store::open(sharded(dir.path())).unwrap();
    assert!(inbox_all(&store, joiner, 1).is_empty(), "the crash cut the joining");

    let next = send(&store, 2, 1, 1, Conversation::Group(group), b"after");
    assert_eq!(next.message.conv_seq.0, 4, "create, first, the joining, this");
    let got: Vec<u64> = inbox_all(&store, joiner, 1).iter().map(|e| e.conv_seq.0).collect();
    assert_eq!(got, [3, 4], "the joining entry first, then the message");
    // Only the message is told live (the answer names one message); a
    // session reads the joining entry from the store at the gap.
    let told: Vec<u64> =
        next.deliveries.iter().filter(|d| d.user == UserId(joiner)).map(|d| d.seq.0).collect();
    assert_eq!(told, [2], "the message's entry, after the joining's");
    let cursors = match call(&store, Request::Cursors { user: UserId(joiner), since: protocol::Timestamp(0) })
    {
        Ok(Response::Cursors(notes)) => notes,
        other => panic!("{other:?}"),
    };
    assert!(
        cursors.iter().any(|n| n.conversation == Conversation::Group(group) && n.user == UserId(joiner)),
        "the group is in the new member's index: {cursors:?}"
    );
    let receipts = ack(&store, joiner, 1, 2);
    let told: Vec<u64> = receipts.iter().filter(|n| n.user == UserId(joiner)).map(|n| n.to.0).collect();
    assert_eq!(told, [2], "only the author of what came after the joining");
}
