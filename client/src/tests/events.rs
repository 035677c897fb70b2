//! Typed events: each server frame kind becomes its own [`Event`] variant,
//! in order with the deliveries around it; system entries decode.

use bytes::Bytes;
use protocol::{
    AuthOk, Capabilities, ConvSeq, Conversation, Deliver, DeviceBundle, DeviceId, ErrorCode, Frame, GroupId,
    GroupInfo, GroupName, GroupOk, Key, List, Member, MessageId, Note, Payload, PrekeyBundles, PrekeyLow,
    PrekeyOk, Presence, PresenceStatus, Receipt, ReceiptKind, Role, Seq, Signature, SignedPrekey, Timestamp,
    Token, TypingNotify, UserId,
};

use crate::{system_group_info, Event, Session};

fn live() -> Session {
    let token = Token::new(Bytes::from_static(b"tok")).unwrap();
    let mut s = Session::new(DeviceId(1), token, Capabilities::ALL, Seq(0));
    s.handle_frame(Frame::AuthOk(AuthOk {
        version: 1,
        user: UserId(1),
        device: DeviceId(1),
        session: 1,
        server_time: Timestamp(1),
        heartbeat_ms: 0,
        inbox_head: Seq(0),
        max_payload: 65_536,
        capabilities: Capabilities::ALL,
    }))
    .unwrap();
    assert!(matches!(s.poll_event(), Some(Event::Authenticated(_))));
    s
}

/// Feeds `frame` to a live session and returns the one event it makes.
fn event_of(frame: Frame) -> Event {
    let mut s = live();
    s.handle_frame(frame).unwrap();
    let event = s.poll_event().unwrap();
    assert_eq!(s.poll_event(), None);
    event
}

fn group_info(request: u64) -> GroupInfo {
    let members =
        [Member { user: UserId(1), role: Role::Admin }, Member { user: UserId(2), role: Role::Member }];
    GroupInfo {
        request,
        group: GroupId(5),
        version: 2,
        name: GroupName::new("friends").unwrap(),
        members: List::from_items(&members).unwrap(),
    }
}

#[test]
fn receipt_presence_typing() {
    let receipt = Receipt {
        conversation: Conversation::Direct(UserId(2)),
        user: UserId(2),
        kind: ReceiptKind::Delivered,
        up_to: ConvSeq(4),
        at: Timestamp(10),
    };
    assert_eq!(event_of(Frame::Receipt(receipt.clone())), Event::Receipt(receipt));
    let presence = Presence { user: UserId(2), status: PresenceStatus::Offline, last_seen: Timestamp(99) };
    assert_eq!(event_of(Frame::Presence(presence.clone())), Event::Presence(presence));
    let typing =
        TypingNotify { conversation: Conversation::Group(GroupId(5)), user: UserId(3), active: true };
    assert_eq!(event_of(Frame::TypingNotify(typing.clone())), Event::Typing(typing));
}

#[test]
fn group_answers() {
    let ok = GroupOk { request: 3, group: GroupId(5), version: 1 };
    assert_eq!(event_of(Frame::GroupOk(ok.clone())), Event::GroupOk(ok));
    assert_eq!(event_of(Frame::GroupInfo(group_info(4))), Event::GroupInfo(group_info(4)));
}

#[test]
fn prekey_answers() {
    let bundle = DeviceBundle {
        device: DeviceId(1),
        identity_key: Key::new(Bytes::from_static(&[1; 32])).unwrap(),
        signed_prekey: SignedPrekey {
            id: 1,
            key: Key::new(Bytes::from_static(&[2; 32])).unwrap(),
            signature: Signature::new(Bytes::from_static(&[3; 64])).unwrap(),
        },
        one_time: None,
    };
    let bundles =
        PrekeyBundles { request: 8, user: UserId(2), bundles: List::from_items(&[bundle]).unwrap() };
    assert_eq!(event_of(Frame::PrekeyBundles(bundles.clone())), Event::PrekeyBundles(bundles));
    let ok = PrekeyOk { request: 9, stock: 100 };
    assert_eq!(event_of(Frame::PrekeyOk(ok.clone())), Event::PrekeyOk(ok));
    assert_eq!(event_of(Frame::PrekeyLow(PrekeyLow { stock: 3 })), Event::PrekeyLow { stock: 3 });
}

#[test]
fn error_answers_and_session_errors() {
    let error = protocol::Error {
        code: ErrorCode::NOT_ADMIN,
        retryable: false,
        retry_after_ms: 0,
        reference: 12,
        text: Note::truncated("admins only"),
    };
    assert_eq!(event_of(Frame::Error(error.clone())), Event::Error(error));
}

#[test]
fn typed_events_keep_their_place_among_deliveries() {
    let mut s = live();
    s.handle_frame(Frame::Deliver(deliver(1, DeviceId(4), payload(b"hi")))).unwrap();
    s.handle_frame(Frame::PrekeyLow(PrekeyLow { stock: 1 })).unwrap();
    s.handle_frame(Frame::Deliver(deliver(2, DeviceId(4), payload(b"yo")))).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    let [Event::Delivered(a), Event::PrekeyLow { stock: 1 }, Event::Delivered(b)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!((a.seq, b.seq), (Seq(1), Seq(2)));
}

fn payload(bytes: &'static [u8]) -> Payload {
    Payload::new(Bytes::from_static(bytes)).unwrap()
}

fn deliver(seq: u64, sender_device: DeviceId, payload: Payload) -> Deliver {
    Deliver {
        seq: Seq(seq),
        message_id: MessageId(seq),
        conversation: Conversation::Group(GroupId(5)),
        conv_seq: ConvSeq(seq),
        sender: UserId(1),
        sender_device,
        server_time: Timestamp(seq),
        payload,
    }
}

#[test]
fn system_entry_decodes_to_group_info() {
    let encoded = Frame::GroupInfo(group_info(0)).to_bytes().unwrap();
    let system = deliver(1, DeviceId(0), Payload::new(encoded.clone()).unwrap());
    assert_eq!(system_group_info(&system), Some(group_info(0)));
    // The same bytes from a real device are a message, not a system entry.
    assert_eq!(system_group_info(&deliver(1, DeviceId(2), Payload::new(encoded.clone()).unwrap())), None);
    // Not a GROUP_INFO, trailing bytes, or garbage: not understood.
    let ok = Frame::GroupOk(GroupOk { request: 0, group: GroupId(5), version: 1 }).to_bytes().unwrap();
    assert_eq!(system_group_info(&deliver(1, DeviceId(0), Payload::new(ok.clone()).unwrap())), None);
    let two = [encoded.as_ref(), ok.as_ref()].concat();
    assert_eq!(system_group_info(&deliver(1, DeviceId(0), Payload::new(two).unwrap())), None);
    assert_eq!(system_group_info(&deliver(1, DeviceId(0), payload(b"\xff\x00"))), None);
    assert_eq!(system_group_info(&deliver(1, DeviceId(0), payload(b""))), None);
}

#[test]
fn an_answer_is_taken_out_of_the_queue_and_the_other_events_keep_their_order() {
    use protocol::{MediaClass, MediaDownloadTicket, Text};
    let mut s = live();
    assert_eq!(s.granted(), Capabilities::ALL);
    let (request, _) = s.media_upload(5, 10, MediaClass::Image);
    let (other, _) = s.prekey_fetch(UserId(2), DeviceId(0));
    let ticket = MediaDownloadTicket {
        request: 99,
        size: 1,
        url: Text::truncated("http://s3/x"),
        expires_at: Timestamp(1),
    };
    let refusal = protocol::Error {
        code: ErrorCode::MEDIA_TOO_LARGE,
        retryable: false,
        retry_after_ms: 0,
        reference: request,
        text: Note::truncated("too large"),
    };
    let presence = Presence { user: UserId(3), status: PresenceStatus::Online, last_seen: Timestamp(0) };
    s.handle_frame(Frame::MediaDownloadTicket(ticket.clone())).unwrap();
    s.handle_frame(Frame::Presence(presence.clone())).unwrap();
    s.handle_frame(Frame::Error(refusal.clone())).unwrap();
    assert_eq!(s.take_answer(other), None, "nothing answers the prekey fetch yet");
    assert_eq!(s.take_answer(request), Some(Event::Error(refusal)));
    assert_eq!(s.take_answer(request), None, "taken once");
    assert_eq!(s.poll_event(), Some(Event::MediaDownloadTicket(ticket)));
    assert_eq!(s.poll_event(), Some(Event::Presence(presence)));
    assert_eq!(s.poll_event(), None);
}
