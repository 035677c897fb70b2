//! Cluster mode: a session is placed in the registry before AUTH_OK and
//! removed at close; entries for devices not on this node go to the fleet
//! router (never straight to a push note); a session placed late (the
//! registry did not answer at login) reads its inbox again; a SEND_ACK
//! waits until the router confirms that the recipients' nodes took the
//! entries, or until `ack_wait` has passed.

use backend_store::{Delivery, Message, Request, Response, Sent};
use bytes::Bytes;
use protocol::{
    Blob, ConvSeq, Conversation, DeviceId, Frame, MessageId, SendMessage, Seq, Timestamp, UserId,
};

use super::harness::{hub_config, TestNode};
use crate::{Confirm, FleetCall, FleetItem, HubConfig, PushWork, Remote};

fn fleet_node() -> TestNode {
    TestNode::with_config(2, HubConfig { fleet: true, ..hub_config() })
}

#[test]
fn auth_ok_waits_for_the_placement_and_a_close_removes_it() {
    let mut node = fleet_node();
    let client = node.login(1, 4, 2, 3);
    // Stored, not yet placed: no AUTH_OK, no sync read.
    assert!(!node.frames(client).iter().any(|f| matches!(f, Frame::AuthOk(_))));
    assert!(!node.has_call(|r| matches!(r, Request::Inbox(_))));
    let me = node.hubs[1].session_ref(client.key).unwrap();
    let Some((1, FleetCall::Register { user, device, session, ticket })) = node.fleet_calls.pop_front()
    else {
        panic!("no placement asked: {:?}", node.fleet_calls);
    };
    assert_eq!((user, device, session), (client.user, client.device, me.placement_id()));
    // Placed: AUTH_OK and the sync go on.
    node.hubs[1].handle_registered(node.now, ticket);
    node.turn();
    assert!(node.frames(client).iter().any(|f| matches!(f, Frame::AuthOk(_))));
    assert!(node.has_call(|r| matches!(r, Request::Inbox(_))));
    // The close removes exactly this placement.
    node.disconnect(client);
    let removed = node.fleet_calls.iter().any(|(_, call)| {
        matches!(call, FleetCall::Unregister { user: UserId(4), device: DeviceId(2), session } if *session == me.placement_id())
    });
    assert!(removed, "{:?}", node.fleet_calls);
}

#[test]
fn an_entry_stored_between_login_and_placement_reaches_the_session() {
    let mut node = fleet_node();
    // The store said at login that nothing is new for this device.
    let client = node.login(0, 4, 2, 0);
    let Some((0, FleetCall::Register { ticket, .. })) = node.fleet_calls.pop_front() else { panic!() };
    // An entry is stored meanwhile and announced to nobody: no node could
    // find the session yet (not placed, not in the directory).
    node.inboxes.insert((UserId(4), DeviceId(2)), vec![gateway_core::testing::entry(1)]);
    node.hubs[0].handle_registered(node.now, ticket);
    node.turn();
    node.serve_inbox_reads();
    let synced: Vec<Seq> = node
        .frames(client)
        .iter()
        .flat_map(|frame| match frame {
            Frame::SyncBatch(batch) => batch.entries.iter().map(|d| d.seq).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(synced, [Seq(1)], "the sync read the store after the placement");
}

#[test]
fn a_session_placed_late_reads_its_inbox_again() {
    let mut node = fleet_node();
    let client = node.login(0, 5, 1, 0);
    let Some((0, FleetCall::Register { ticket, .. })) = node.fleet_calls.pop_front() else { panic!() };
    // The registry did not answer: the fleet thread is done with the call
    // all the same, and the session is served.
    node.hubs[0].handle_registered(node.now, ticket);
    node.turn();
    assert!(node.frames(client).iter().any(|f| matches!(f, Frame::AuthOk(_))), "served unplaced");
    node.serve_inbox_reads();
    node.output(client);
    assert!(!node.has_call(|r| matches!(r, Request::Inbox(_))));
    // Placed later by the fleet thread: it reads its inbox again.
    let me = node.session_ref(client);
    node.hubs[0].handle_batch(node.now, vec![Remote::Resync(me)]);
    node.turn();
    assert!(node.has_call(|r| matches!(r, Request::Inbox(q) if q.after == Seq(0))));
}

/// Alice (worker 0) sends to user 9, whose three devices the store names
/// (none of them on this node); returns her.
fn send_to_devices_elsewhere(node: &mut TestNode) -> super::harness::Client {
    let alice = node.connect(0, 1, 1, 0);
    node.output(alice);
    let send = SendMessage {
        client_id: 1,
        to: Conversation::Direct(UserId(9)),
        payload: Blob::new(Bytes::from_static(b"ciphertext")).unwrap(),
    };
    node.send(alice, &[Frame::SendMessage(send)]);
    let call = node.take_call(|r| matches!(r, Request::Send(_)));
    let message = Message {
        id: MessageId(1),
        conv_seq: ConvSeq(1),
        sender: UserId(1),
        sender_device: DeviceId(1),
        server_time: Timestamp(1_000),
        payload: Bytes::from_static(b"ciphertext"),
    };
    let deliveries: Vec<Delivery> = (1..=3)
        .map(|device| Delivery {
            user: UserId(9),
            device: DeviceId(device),
            seq: Seq(7),
            conversation: Conversation::Direct(UserId(1)),
        })
        .collect();
    let sent = Sent { message, duplicate: false, deliveries, receipts: Vec::new() };
    node.answer(call, Ok(Response::Sent(sent)));
    alice
}

/// The confirmation every fleet item of the message carries.
fn the_confirm(node: &TestNode) -> Option<Confirm> {
    let confirms: Vec<Option<Confirm>> = node
        .fleet_items
        .iter()
        .filter_map(|item| match item {
            Remote::Fleet(FleetItem::Live { confirm, .. }) => Some(*confirm),
            _ => None,
        })
        .collect();
    assert_eq!(confirms.len(), 3);
    assert!(confirms.iter().all(|c| *c == confirms[0]), "one per message: {confirms:?}");
    confirms[0]
}

fn acks(frames: &[Frame]) -> usize {
    frames.iter().filter(|frame| matches!(frame, Frame::SendAck(_))).count()
}

#[test]
fn entries_for_devices_not_here_go_to_the_fleet_router_encoded_once() {
    let mut node = fleet_node();
    let alice = send_to_devices_elsewhere(&mut node);
    // No push note from the hub: only the router knows the device is nowhere.
    assert!(!node.pushes.iter().any(|work| matches!(work, PushWork::Notify(_))));
    let lives: Vec<_> = node
        .fleet_items
        .iter()
        .filter_map(|item| match item {
            Remote::Fleet(FleetItem::Live { user, device, deliver, .. }) => {
                Some((*user, *device, deliver.tail().as_ptr()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(lives.len(), 3, "{:?}", node.fleet_items);
    assert!(lives.iter().all(|(user, _, tail)| *user == UserId(9) && *tail == lives[0].2), "one encoding");
    // With ack_wait 0 the SEND_ACK does not wait.
    assert_eq!(the_confirm(&node), None);
    assert_eq!(acks(&node.frames(alice)), 1);
}

fn waiting_node() -> TestNode {
    let config = HubConfig { fleet: true, ack_wait: std::time::Duration::from_millis(200), ..hub_config() };
    TestNode::with_config(2, config)
}

#[test]
fn the_send_ack_waits_until_the_router_confirms_the_entries_were_taken() {
    let mut node = waiting_node();
    let alice = send_to_devices_elsewhere(&mut node);
    let confirm = the_confirm(&node).expect("the fleet items carry a confirmation");
    assert_eq!(confirm.to, node.session_ref(alice));
    assert_eq!(acks(&node.frames(alice)), 0, "held until the recipients' nodes took the entries");
    assert_eq!(node.metrics[0].send_acks_held.get(), 1);
    // Confirmations of other acks (or of this one, twice) change nothing.
    let now = node.now;
    node.hubs[0].handle_batch(now, vec![Remote::Confirmed(Confirm { token: confirm.token + 1, ..confirm })]);
    node.turn();
    assert_eq!(acks(&node.frames(alice)), 0);
    node.hubs[0].handle_batch(now, vec![Remote::Confirmed(confirm)]);
    node.turn();
    assert_eq!(acks(&node.frames(alice)), 1, "sent once confirmed");
    node.hubs[0].handle_batch(now, vec![Remote::Confirmed(confirm)]);
    node.turn();
    assert_eq!(acks(&node.frames(alice)), 0, "and only once");
    // Nothing is due any more: the hub does not wake for it.
    assert_eq!(node.hubs[0].poll_timeout(), None);
    assert_eq!(node.metrics[0].send_acks_unconfirmed.get(), 0);
}

#[test]
fn an_unconfirmed_send_ack_goes_out_after_ack_wait() {
    let mut node = waiting_node();
    let alice = send_to_devices_elsewhere(&mut node);
    assert!(the_confirm(&node).is_some());
    let due = node.hubs[0].poll_timeout().expect("the hub wakes for the held ack");
    assert_eq!(due, node.now.at + std::time::Duration::from_millis(200));
    node.advance(std::time::Duration::from_millis(199));
    let now = node.now;
    node.hubs[0].handle_timeout(now);
    node.turn();
    assert_eq!(acks(&node.frames(alice)), 0, "not before ack_wait");
    node.advance(std::time::Duration::from_millis(1));
    let now = node.now;
    node.hubs[0].handle_timeout(now);
    node.turn();
    assert_eq!(acks(&node.frames(alice)), 1, "sent at ack_wait, unconfirmed");
    assert_eq!(node.metrics[0].send_acks_unconfirmed.get(), 1);
    // A late confirmation sends nothing more.
    let confirm = the_confirm(&node).unwrap();
    node.hubs[0].handle_batch(now, vec![Remote::Confirmed(confirm)]);
    node.turn();
    assert_eq!(acks(&node.frames(alice)), 0);
}

#[test]
fn a_send_ack_with_every_recipient_on_this_node_does_not_wait() {
    let mut node = waiting_node();
    let alice = node.connect(0, 1, 1, 0);
    let bob = node.connect(1, 2, 1, 0);
    node.output(alice);
    node.output(bob);
    let send = SendMessage {
        client_id: 5,
        to: Conversation::Direct(UserId(2)),
        payload: Blob::new(Bytes::from_static(b"hi")).unwrap(),
    };
    node.send(alice, &[Frame::SendMessage(send)]);
    let call = node.take_call(|r| matches!(r, Request::Send(_)));
    let message = Message {
        id: MessageId(2),
        conv_seq: ConvSeq(1),
        sender: UserId(1),
        sender_device: DeviceId(1),
        server_time: Timestamp(1_000),
        payload: Bytes::from_static(b"hi"),
    };
    let to_bob = Delivery {
        user: UserId(2),
        device: DeviceId(1),
        seq: Seq(1),
        conversation: Conversation::Direct(UserId(1)),
    };
    let sent = Sent { message, duplicate: false, deliveries: vec![to_bob], receipts: Vec::new() };
    node.answer(call, Ok(Response::Sent(sent)));
    assert_eq!(acks(&node.frames(alice)), 1);
    assert!(node.frames(bob).iter().any(|frame| matches!(frame, Frame::Deliver(_))));
    assert_eq!(node.metrics[0].send_acks_held.get(), 0);
    assert_eq!(node.hubs[0].poll_timeout(), None);
}
