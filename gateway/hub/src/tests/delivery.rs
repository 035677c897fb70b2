//! A device's side of delivery as the hub runs it: ACKs coalesced into one
//! store Ack in flight, and sync windows racing live entries.

use backend_store::{Request, Response};
use gateway_core::testing::{entry, Out};
use protocol::{Ack, DeviceId, Frame, Seq, UserId};

use super::harness::TestNode;

fn store_acks(node: &TestNode) -> Vec<u64> {
    node.calls
        .iter()
        .filter_map(|(_, call)| match &call.request {
            Request::Ack(ack) => Some(ack.up_to.0),
            _ => None,
        })
        .collect()
}

#[test]
fn acks_coalesce_while_one_is_with_the_store() {
    let mut node = TestNode::new(1);
    let bob = node.connect(0, 2, 1, 0);
    node.output(bob);
    for seq in 1..=9 {
        node.deliver_live(bob, &entry(seq));
    }
    let seen = node.frames(bob).iter().filter(|f| matches!(f, Frame::Deliver(_))).count();
    assert_eq!(seen, 9);
    node.send(bob, &[Frame::Ack(Ack { up_to: Seq(3) })]);
    assert_eq!(store_acks(&node), [3], "the first ACK goes at once");
    node.send(bob, &[Frame::Ack(Ack { up_to: Seq(5) })]);
    node.send(bob, &[Frame::Ack(Ack { up_to: Seq(9) })]);
    assert_eq!(store_acks(&node), [3], "later ACKs wait for the store's answer");
    let first = node.take_call(|r| matches!(r, Request::Ack(_)));
    node.answer(first, Ok(Response::Receipts(Vec::new())));
    assert_eq!(store_acks(&node), [9], "one Ack carries both waiting ACKs");
    let second = node.take_call(|r| matches!(r, Request::Ack(_)));
    node.answer(second, Ok(Response::Receipts(Vec::new())));
    assert!(store_acks(&node).is_empty());
}

#[test]
fn a_live_entry_racing_the_sync_reaches_the_device_once_and_in_order() {
    let mut node = TestNode::new(1);
    let bob = (UserId(2), DeviceId(1));
    node.inboxes.insert(bob, (1..=3).map(entry).collect());
    // Bob logs in with three entries waiting; its first window is asked for.
    let bob = node.connect(0, 2, 1, 3);
    assert!(node.has_call(|r| matches!(r, Request::Inbox(_))));
    // Meanwhile entry 4 is stored and delivered live, before the sync has
    // reached it.
    node.inboxes.get_mut(&(UserId(2), DeviceId(1))).unwrap().push(entry(4));
    node.deliver_live(bob, &entry(4));
    let seqs = node.sync_all(bob);
    assert_eq!(seqs, [1, 2, 3, 4], "every entry once, in seq order");
}

/// Takes the waiting inbox read and answers it with `err`.
fn refuse_inbox_read(node: &mut TestNode, err: backend_store::StoreError) {
    let call = node.take_call(|r| matches!(r, Request::Inbox(_)));
    node.answer(call, Err(err));
}

#[test]
fn a_sync_window_the_store_cannot_give_is_asked_for_again_not_the_session_closed() {
    let mut node = TestNode::new(1);
    node.inboxes.insert((UserId(2), DeviceId(1)), (1..=3).map(entry).collect());
    let bob = node.login(0, 2, 1, 3);
    node.frames(bob);
    refuse_inbox_read(&mut node, backend_store::StoreError::Overloaded);
    let out = node.output(bob);
    assert!(!out.iter().any(|o| matches!(o, Out::Close(_))), "not closed: {out:?}");
    assert!(!node.has_call(|r| matches!(r, Request::Inbox(_))), "not at once");
    node.advance(crate::retry::INBOX_RETRY);
    node.run_timers();
    assert!(node.has_call(|r| matches!(r, Request::Inbox(_))), "asked for again after the wait");
    assert_eq!(node.sync_all(bob), [1, 2, 3], "the sync goes on");
}

#[test]
fn a_session_whose_sync_window_keeps_failing_is_closed_resumably() {
    let mut node = TestNode::new(1);
    node.inboxes.insert((UserId(2), DeviceId(1)), (1..=3).map(entry).collect());
    let bob = node.login(0, 2, 1, 3);
    node.frames(bob);
    for _ in 1..crate::retry::INBOX_TRIES {
        refuse_inbox_read(&mut node, backend_store::StoreError::Recovering { retry_after_ms: 100 });
        node.advance(crate::retry::INBOX_RETRY);
        node.run_timers();
    }
    refuse_inbox_read(&mut node, backend_store::StoreError::Overloaded);
    let closes: Vec<_> = node.output(bob).into_iter().filter(|o| matches!(o, Out::Close(_))).collect();
    assert_eq!(closes, [Out::Close(protocol::CloseCode::INTERNAL_ERROR.0)], "closed after the last try");
}
