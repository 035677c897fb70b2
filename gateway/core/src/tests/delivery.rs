//! Inbox delivery on one connection (SPEC §6.3): sync windows with at most two
//! batches unacknowledged, the no-gap rule against live entries racing the
//! sync, gaps and pauses turning into syncs, ACK clamping and GOAWAY's cursor.

use std::time::Duration;

use bytes::Bytes;
use protocol::{
    Ack, AuthOk, Capabilities, Deliver, DeviceId, Frame, GoAway, GoAwayReason, Hello, Note, Seq, SyncRequest,
    Token,
};

use super::harness::{auth_ok, config, message, upgrade, Harness, Out};
use crate::testing::entry;
use crate::{Action, Limits, Mode, SharedDeliver};

/// A session authenticated with `resume_after` and an inbox `head`; when
/// the head says nothing is new, the sync's first read found nothing
/// either (SYNC_DONE is queued).
fn authed(harness: Harness, resume_after: u64, head: u64) -> Harness {
    let mut h = accepted(harness, resume_after, head);
    if head == resume_after {
        assert_eq!(reads(&mut h), vec![(resume_after, 2, 1)]);
        h.with(|s, ctx| s.handle_page(ctx, 1, &[], 0));
    }
    h
}

/// A session that has just been accepted with `resume_after` and an inbox
/// `head` (its first read not answered).
fn accepted(harness: Harness, resume_after: u64, head: u64) -> Harness {
    let mut h = harness;
    h.read(&upgrade("/ws"));
    let hello = Hello {
        min_version: 1,
        max_version: 1,
        device: DeviceId(2),
        resume_after: Seq(resume_after),
        capabilities: Capabilities::ALL,
        token: Token::new(&b"token"[..]).unwrap(),
    };
    h.read(&message(&[Frame::Hello(hello)]));
    h.take_actions();
    let auth_ok = AuthOk { inbox_head: Seq(head), ..auth_ok() };
    h.with(|s, ctx| s.accept(ctx, auth_ok, Seq(resume_after)));
    h
}

fn reads(h: &mut Harness) -> Vec<(u64, u32, u8)> {
    h.take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::ReadInbox { after, limit, epoch } => Some((after.0, limit, epoch)),
            _ => None,
        })
        .collect()
}

fn page(h: &mut Harness, epoch: u8, seqs: std::ops::RangeInclusive<u64>, remaining: u64) {
    let entries: Vec<Deliver> = seqs.map(entry).collect();
    h.with(|s, ctx| s.handle_page(ctx, epoch, &entries, remaining));
}

fn live(h: &mut Harness, seq: u64) {
    let shared = SharedDeliver::new(&entry(seq));
    h.with(|s, ctx| s.deliver_live(ctx, Seq(seq), &shared));
}

/// The seqs of DELIVER and SYNC_BATCH entries, and SYNC_DONE heads as `done:h`.
fn delivered(out: &[Out]) -> Vec<String> {
    let mut seen = Vec::new();
    for out in out {
        match out {
            Out::Frame(Frame::Deliver(d)) => seen.push(format!("live:{}", d.seq)),
            Out::Frame(Frame::SyncBatch(b)) => {
                let seqs: Vec<String> = b.entries.iter().map(|d| d.seq.to_string()).collect();
                seen.push(format!("batch:{}", seqs.join(",")));
            }
            Out::Frame(Frame::SyncDone(d)) => seen.push(format!("done:{}", d.head)),
            _ => {}
        }
    }
    seen
}

#[test]
fn backlog_is_synced_in_windows_with_two_unacked_at_most() {
    // The harness window is 2 entries per batch.
    let mut h = authed(Harness::new(), 0, 7);
    assert_eq!(reads(&mut h), vec![(0, 2, 1)]);
    page(&mut h, 1, 1..=2, 5);
    assert_eq!(reads(&mut h), vec![(2, 2, 1)], "a second window is read before any ACK");
    page(&mut h, 1, 3..=4, 3);
    assert!(reads(&mut h).is_empty(), "two batches unacked: wait for an ACK");
    let out = h.output();
    assert_eq!(delivered(&out), vec!["batch:1,2", "batch:3,4"]);
    // An ACK of the first batch frees one slot and is passed to the store.
    h.read(&message(&[Frame::Ack(Ack { up_to: Seq(2) })]));
    let actions = h.take_actions();
    assert!(matches!(actions.as_slice(), [Action::Acked(Seq(2)), Action::ReadInbox { after: Seq(4), .. }]));
    page(&mut h, 1, 5..=6, 1);
    // An ACK while output is unwritten frees its slot once the output is
    // written (a client cannot have read what is still queued).
    h.read(&message(&[Frame::Ack(Ack { up_to: Seq(4) })]));
    assert!(reads(&mut h).is_empty(), "batch 5,6 is still queued");
    assert_eq!(delivered(&h.output()), vec!["batch:5,6"]);
    assert_eq!(reads(&mut h), vec![(6, 2, 1)]);
    page(&mut h, 1, 7..=7, 0);
    let out = h.output();
    assert_eq!(delivered(&out), vec!["batch:7", "done:7"]);
    assert!(matches!(h.take_actions().as_slice(), [Action::Synced]));
    assert_eq!(h.session.delivery_mode(), Mode::Live);
    // Live entries continue right after the sync's head.
    live(&mut h, 8);
    assert_eq!(delivered(&h.output()), vec!["live:8"]);
}

#[test]
fn live_entry_racing_the_sync_is_read_from_the_store_before_sync_done() {
    let mut h = authed(Harness::new(), 0, 2);
    assert_eq!(reads(&mut h), vec![(0, 2, 1)]);
    // Seq 3 is stored and announced while the read of 1..2 is in flight.
    live(&mut h, 3);
    page(&mut h, 1, 1..=2, 0);
    // The page said nothing remains, but a live entry was dropped: read again.
    assert_eq!(reads(&mut h), vec![(2, 2, 1)]);
    page(&mut h, 1, 3..=3, 0);
    let out = h.output();
    assert_eq!(delivered(&out), vec!["batch:1,2", "batch:3", "done:3"], "in order, none missing");
    // The same entry arriving late is a repeat.
    live(&mut h, 3);
    live(&mut h, 4);
    assert_eq!(delivered(&h.output()), vec!["live:4"]);
}

#[test]
fn the_sync_reads_the_store_even_when_auth_ok_says_nothing_is_new() {
    // AUTH_OK's head was read at login, before live delivery could find
    // this session: seq 6 was stored in between and announced to nobody.
    let mut h = accepted(Harness::new(), 5, 5);
    assert_eq!(reads(&mut h), vec![(5, 2, 1)], "read although the head says nothing is new");
    assert!(delivered(&h.output()).is_empty(), "no SYNC_DONE before the read");
    page(&mut h, 1, 6..=6, 0);
    assert_eq!(delivered(&h.output()), vec!["batch:6", "done:6"]);
    live(&mut h, 7);
    assert_eq!(delivered(&h.output()), vec!["live:7"]);
}

#[test]
fn a_gap_in_live_entries_resyncs_from_the_last_sent() {
    let mut h = authed(Harness::new(), 5, 5);
    assert_eq!(delivered(&h.output()), vec!["done:5"]);
    h.take_actions();
    live(&mut h, 6);
    // 7 was lost on the way (a full worker inbox): 8 must not overtake it.
    live(&mut h, 8);
    assert_eq!(reads(&mut h), vec![(6, 2, 2)]);
    assert_eq!(h.session.delivery_mode(), Mode::Syncing);
    page(&mut h, 2, 7..=8, 0);
    assert_eq!(delivered(&h.output()), vec!["live:6", "batch:7,8", "done:8"]);
    assert!(h.take_actions().is_empty(), "Synced is reported once per connection");
}

#[test]
fn a_sync_the_server_starts_waits_for_the_batches_still_unacked() {
    // SYNC_DONE went out with two batches unacknowledged; a live gap, then a
    // catch-up, restart the sync: no third window until an ACK frees a slot
    // (SPEC §6.3, two at most). The session fuzzer found this one.
    let mut h = authed(Harness::new(), 0, 4);
    assert_eq!(reads(&mut h), vec![(0, 2, 1)]);
    page(&mut h, 1, 1..=2, 2);
    assert_eq!(reads(&mut h), vec![(2, 2, 1)]);
    page(&mut h, 1, 3..=4, 0);
    assert_eq!(delivered(&h.output()), vec!["batch:1,2", "batch:3,4", "done:4"]);
    h.take_actions();
    live(&mut h, 6);
    assert!(reads(&mut h).is_empty(), "a gap: but both batches are unacked");
    assert_eq!(h.session.delivery_mode(), Mode::Syncing);
    h.with(|s, ctx| s.resync(ctx));
    assert!(reads(&mut h).is_empty(), "a catch-up: still two unacked");
    h.read(&message(&[Frame::Ack(Ack { up_to: Seq(2) })]));
    let actions = h.take_actions();
    assert!(
        matches!(actions.as_slice(), [Action::Acked(Seq(2)), Action::ReadInbox { after: Seq(4), .. }]),
        "{actions:?}"
    );
}

#[test]
fn a_resync_reads_what_live_delivery_never_announced() {
    // Live at 5; entries 6 and 7 were stored while no node could find this
    // session (its placement was missing), so no live entry came.
    let mut h = authed(Harness::new(), 5, 5);
    assert_eq!(delivered(&h.output()), vec!["done:5"]);
    h.take_actions();
    h.with(|s, ctx| s.resync(ctx));
    assert_eq!(reads(&mut h), vec![(5, 2, 2)]);
    page(&mut h, 2, 6..=7, 0);
    assert_eq!(delivered(&h.output()), vec!["batch:6,7", "done:7"]);
    assert_eq!(h.session.delivery_mode(), Mode::Live);
    live(&mut h, 8);
    assert_eq!(delivered(&h.output()), vec!["live:8"]);
    // During a sync, a resync reads once more before SYNC_DONE.
    let mut h = authed(Harness::new(), 0, 2);
    assert_eq!(reads(&mut h), vec![(0, 2, 1)]);
    h.with(|s, ctx| s.resync(ctx));
    assert!(reads(&mut h).is_empty(), "one read at a time");
    page(&mut h, 1, 1..=2, 0);
    assert_eq!(reads(&mut h), vec![(2, 2, 1)], "read again: something may have come since");
    page(&mut h, 1, 3..=3, 0);
    assert_eq!(delivered(&h.output()), vec!["batch:1,2", "batch:3", "done:3"]);
}

#[test]
fn a_page_of_an_older_sync_is_ignored() {
    let mut h = authed(Harness::new(), 0, 4);
    assert_eq!(reads(&mut h), vec![(0, 2, 1)]);
    // The client restarts the sync from 0 with a window of 1.
    h.read(&message(&[Frame::SyncRequest(SyncRequest { after: Seq(0), window: 1 })]));
    assert_eq!(reads(&mut h), vec![(0, 1, 2)]);
    page(&mut h, 1, 1..=2, 2);
    assert!(delivered(&h.output()).is_empty(), "stale epoch");
    page(&mut h, 2, 1..=1, 3);
    assert_eq!(delivered(&h.output()), vec!["batch:1"]);
}

#[test]
fn ack_is_clamped_to_what_was_sent_and_only_forwarded_when_it_moves() {
    let mut h = authed(Harness::new(), 3, 3);
    h.output();
    h.take_actions();
    live(&mut h, 4);
    h.output();
    h.read(&message(&[Frame::Ack(Ack { up_to: Seq(100) })]));
    assert!(matches!(h.take_actions().as_slice(), [Action::Acked(Seq(4))]));
    h.read(&message(&[Frame::Ack(Ack { up_to: Seq(2) })]));
    assert!(h.take_actions().is_empty());
    assert_eq!(h.session.acked(), Seq(4));
    // GOAWAY carries the acked cursor whatever the worker put in it.
    let goaway = GoAway {
        reason: GoAwayReason::Drain,
        reconnect_after_ms: 0,
        resume_after: Seq(0),
        redirect: Note::default(),
    };
    h.with(|s, ctx| s.drain(ctx, goaway, Duration::from_secs(1)));
    let out = h.output();
    assert!(matches!(out.as_slice(), [Out::Frame(Frame::GoAway(g))] if g.resume_after == Seq(4)), "{out:?}");
}

#[test]
fn a_paused_session_resyncs_once_its_queue_drains() {
    let mut config = config();
    config.outbound = Limits { pause_bytes: 64, max_bytes: 1 << 20 };
    let mut h = authed(Harness::with_config(config), 0, 0);
    h.output();
    h.take_actions();
    // Without writing, the queue grows past the pause mark.
    for seq in 1..=4 {
        live(&mut h, seq);
    }
    assert_eq!(h.session.delivery_mode(), Mode::Paused);
    let sent = h.session.sent();
    assert!(sent.0 < 4, "some entries were refused");
    assert!(h.observed("dropped:live_paused"));
    // Live entries wait in the store while paused.
    live(&mut h, 5);
    // The client reads everything: the session syncs from what it sent.
    let out = h.output();
    let actions = h.take_actions();
    let epoch = actions
        .iter()
        .find_map(|a| match a {
            Action::ReadInbox { after, epoch, .. } if *after == sent => Some(*epoch),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no read after {sent}: {actions:?}"));
    let first = sent.0 + 1;
    page(&mut h, epoch, first..=5, 0);
    let mut seen = delivered(&out);
    seen.extend(delivered(&h.output()));
    let expected: Vec<String> = (1..=sent.0).map(|s| format!("live:{s}")).collect();
    assert_eq!(seen[..expected.len()], expected[..]);
    let rest: Vec<String> = (first..=5).map(|s| s.to_string()).collect();
    assert_eq!(seen[expected.len()..], [format!("batch:{}", rest.join(",")), "done:5".to_string()]);
}

#[test]
fn shared_deliver_decodes_to_the_same_frame_for_each_seq() {
    let original = entry(0);
    let shared = SharedDeliver::new(&original);
    for seq in [1u64, 127, 128, 1 << 40] {
        let (head, used) = shared.head(Seq(seq));
        let mut bytes = head[..used].to_vec();
        bytes.extend_from_slice(shared.tail());
        let frames: Vec<Frame> = protocol::Decoder::for_server_messages()
            .message(Bytes::from(bytes))
            .map(Result::unwrap)
            .collect();
        assert_eq!(frames, vec![Frame::Deliver(Deliver { seq: Seq(seq), ..original.clone() })]);
    }
}

#[test]
fn a_tail_from_another_node_is_checked_and_makes_the_same_frames() {
    let original = entry(0);
    let shared = SharedDeliver::new(&original);
    let (received, deliver) = SharedDeliver::from_tail(shared.tail().clone()).unwrap();
    assert_eq!(deliver, original);
    assert_eq!(received.tail(), shared.tail());
    assert_eq!(received.head(Seq(9)), shared.head(Seq(9)));
    // A truncated tail, one with a byte too many, and garbage are refused.
    let tail = shared.tail();
    for bad in
        [tail.slice(..tail.len() - 1), Bytes::from([&tail[..], &[0]].concat()), Bytes::from_static(b"\xff")]
    {
        assert!(SharedDeliver::from_tail(bad.clone()).is_err(), "{bad:?}");
    }
}

/// Found by the `session` fuzz target: SYNC_REQUEST freed both batch slots,
/// so a client repeating it without reading (or acking) had two more windows
/// read and queued each time, and one acking what it had not read had a
/// third. Batches keep their slots while output is unwritten.
#[test]
fn sync_requests_without_reading_keep_two_batches_queued_at_most() {
    let mut h = two_batches_unacked();
    for _ in 0..5 {
        h.read(&message(&[Frame::SyncRequest(SyncRequest { after: Seq(0), window: 2 })]));
        assert!(reads(&mut h).is_empty(), "nothing read: the slots stay taken");
    }
    // Nor does an ACK of what is still queued: the client cannot have read
    // it. Once written, the sync goes on after the acked cursor.
    h.read(&message(&[Frame::Ack(Ack { up_to: Seq(2) })]));
    assert!(matches!(h.take_actions().as_slice(), [Action::Acked(Seq(2))]));
    assert_eq!(delivered(&h.output()), vec!["batch:1,2", "batch:3,4"]);
    assert_eq!(reads(&mut h), vec![(2, 2, 6)]);

    // Unacked but written, the batches give their slots back.
    let mut h = two_batches_unacked();
    h.read(&message(&[Frame::SyncRequest(SyncRequest { after: Seq(0), window: 2 })]));
    assert!(reads(&mut h).is_empty());
    assert_eq!(delivered(&h.output()), vec!["batch:1,2", "batch:3,4"]);
    assert_eq!(reads(&mut h), vec![(0, 2, 2)]);
}

/// With nothing unwritten, a SYNC_REQUEST restarts at once: the client may
/// have discarded the batches it read (what SYNC_REQUEST is for).
#[test]
fn a_sync_request_after_everything_was_written_replays_at_once() {
    let mut h = two_batches_unacked();
    h.output();
    h.read(&message(&[Frame::SyncRequest(SyncRequest { after: Seq(0), window: 2 })]));
    assert_eq!(reads(&mut h), vec![(0, 2, 2)]);
}

/// Authenticated with 100 entries waiting, and two batches of 2 sent (not
/// written, not acked).
fn two_batches_unacked() -> Harness {
    let mut h = authed(Harness::new(), 0, 100);
    assert_eq!(reads(&mut h), vec![(0, 2, 1)]);
    page(&mut h, 1, 1..=2, 98);
    assert_eq!(reads(&mut h), vec![(2, 2, 1)]);
    page(&mut h, 1, 3..=4, 96);
    assert!(reads(&mut h).is_empty(), "two batches unacked");
    h
}
