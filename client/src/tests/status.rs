//! [`StatusTracker`]: pending → ✓ → ✓✓ → read, from SEND_ACK and RECEIPT
//! cursors, in direct conversations and in groups.

use bytes::Bytes;
use protocol::{
    ConvSeq, Conversation, Deliver, DeviceId, ErrorCode, Frame, GroupId, GroupInfo, GroupName, List, Member,
    MessageId, Note, Payload, Receipt, ReceiptKind, Role, Seq, Timestamp, UserId,
};

use crate::{Event, MessageStatus, StatusChange, StatusTracker};

const ME: UserId = UserId(1);
const PEER: UserId = UserId(2);
const DIRECT: Conversation = Conversation::Direct(PEER);

fn sent(client_id: u64, conv_seq: u64) -> Event {
    Event::Sent {
        client_id,
        message_id: MessageId(client_id),
        conv_seq: ConvSeq(conv_seq),
        server_time: Timestamp(1),
        duplicate: false,
    }
}

fn receipt(conversation: Conversation, user: UserId, kind: ReceiptKind, up_to: u64) -> Event {
    Event::Receipt(Receipt { conversation, user, kind, up_to: ConvSeq(up_to), at: Timestamp(2) })
}

/// The (client id, status) pairs `event` changes.
fn feed(tracker: &mut StatusTracker, event: Event) -> Vec<(u64, MessageStatus)> {
    let mut changes = Vec::new();
    tracker.handle_event(&event, &mut changes);
    changes.into_iter().map(|StatusChange { client_id, status, .. }| (client_id, status)).collect()
}

#[test]
fn direct_message_goes_stored_delivered_read() {
    let mut t = StatusTracker::new(ME);
    t.track(10, DIRECT);
    t.track(11, DIRECT);
    assert_eq!(t.status(10), Some(MessageStatus::Pending));
    assert_eq!(feed(&mut t, sent(10, 5)), [(10, MessageStatus::Stored)]);
    assert_eq!(feed(&mut t, sent(11, 6)), [(11, MessageStatus::Stored)]);
    // Delivered up to 5 covers the first message only.
    assert_eq!(
        feed(&mut t, receipt(DIRECT, PEER, ReceiptKind::Delivered, 5)),
        [(10, MessageStatus::Delivered)]
    );
    assert_eq!(feed(&mut t, receipt(DIRECT, PEER, ReceiptKind::Delivered, 5)), [], "no move, no change");
    // Read up to 6: both read (read implies delivered), then forgotten.
    assert_eq!(
        feed(&mut t, receipt(DIRECT, PEER, ReceiptKind::Read, 6)),
        [(10, MessageStatus::Read), (11, MessageStatus::Read)]
    );
    assert!(t.is_empty());
}

#[test]
fn receipts_before_send_ack_count_and_own_receipts_do_not() {
    let mut t = StatusTracker::new(ME);
    t.track(1, DIRECT);
    // This user's other device read the conversation: says nothing of sends.
    assert_eq!(feed(&mut t, receipt(DIRECT, ME, ReceiptKind::Read, 9)), []);
    // The peer's delivered cursor overtakes our SEND_ACK.
    assert_eq!(feed(&mut t, receipt(DIRECT, PEER, ReceiptKind::Delivered, 3)), []);
    assert_eq!(feed(&mut t, sent(1, 3)), [(1, MessageStatus::Delivered)]);
    // A receipt in another conversation changes nothing here.
    let other = Conversation::Direct(UserId(3));
    assert_eq!(feed(&mut t, receipt(other, UserId(3), ReceiptKind::Read, 9)), []);
    assert_eq!(t.status(1), Some(MessageStatus::Delivered));
}

#[test]
fn terminal_failure_is_reported_retryable_is_not() {
    let mut t = StatusTracker::new(ME);
    t.track(1, DIRECT);
    t.track(2, DIRECT);
    let failed = |client_id, code: ErrorCode, retryable| Event::SendFailed {
        client_id,
        code,
        retryable,
        retry_after_ms: 0,
        text: Note::default(),
    };
    assert_eq!(feed(&mut t, failed(1, ErrorCode::OVERLOADED, true)), []);
    assert_eq!(t.status(1), Some(MessageStatus::Pending));
    let code = ErrorCode::UNKNOWN_RECIPIENT;
    assert_eq!(feed(&mut t, failed(2, code, false)), [(2, MessageStatus::Failed(code))]);
    assert_eq!(t.status(2), None);
}

fn info(group: GroupId, members: &[u64]) -> GroupInfo {
    let members: Vec<Member> =
        members.iter().map(|&user| Member { user: UserId(user), role: Role::Member }).collect();
    GroupInfo {
        request: 0,
        group,
        version: 1,
        name: GroupName::new("g").unwrap(),
        members: List::from_items(&members).unwrap(),
    }
}

#[test]
fn group_message_needs_every_other_member() {
    let g = GroupId(7);
    let conv = Conversation::Group(g);
    let mut t = StatusTracker::new(ME);
    t.track(1, conv);
    assert_eq!(feed(&mut t, sent(1, 4)), [(1, MessageStatus::Stored)]);
    // Membership unknown: receipts are kept, the status stays at ✓.
    assert_eq!(feed(&mut t, receipt(conv, UserId(2), ReceiptKind::Read, 4)), []);
    // Learnt from a system entry: 2 has read, 3 has nothing yet.
    let system = Deliver {
        seq: Seq(1),
        message_id: MessageId(1),
        conversation: conv,
        conv_seq: ConvSeq(5),
        sender: ME,
        sender_device: DeviceId(0),
        server_time: Timestamp(1),
        payload: Payload::new(Frame::GroupInfo(info(g, &[1, 2, 3])).to_bytes().unwrap()).unwrap(),
    };
    assert_eq!(feed(&mut t, Event::Delivered(system)), []);
    assert_eq!(
        feed(&mut t, receipt(conv, UserId(3), ReceiptKind::Delivered, 4)),
        [(1, MessageStatus::Delivered)]
    );
    // 3 leaves (GROUP_INFO answer without it): everyone left has read.
    assert_eq!(feed(&mut t, Event::GroupInfo(info(g, &[1, 2]))), [(1, MessageStatus::Read)]);
    assert!(t.is_empty());
}

#[test]
fn unrelated_events_change_nothing() {
    let mut t = StatusTracker::new(ME);
    t.track(1, DIRECT);
    let message = Deliver {
        seq: Seq(1),
        message_id: MessageId(1),
        conversation: DIRECT,
        conv_seq: ConvSeq(1),
        sender: PEER,
        sender_device: DeviceId(1),
        server_time: Timestamp(1),
        payload: Payload::new(Bytes::from_static(b"hi")).unwrap(),
    };
    assert_eq!(feed(&mut t, Event::Delivered(message)), []);
    assert_eq!(feed(&mut t, sent(99, 1)), [], "not tracked");
    t.forget(1);
    assert!(t.is_empty());
}
