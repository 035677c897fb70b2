//! The request builders: each frame decodes back to what was asked, request
//! ids are non-zero and distinct, limits are refused before an id is spent.

use std::collections::HashSet;

use bytes::Bytes;
use protocol::limits::{
    MAX_GROUP_NAME, MAX_MEMBERS_PER_CHANGE, MAX_ONE_TIME_PREKEYS, MAX_PRESENCE_SUBSCRIPTIONS,
};
use protocol::{
    Capabilities, ConvSeq, Conversation, Decoder, DeviceId, EncodeError, Frame, FrameKind, GroupAdd,
    GroupCreate, GroupGet, GroupId, GroupLeave, GroupOk, GroupRemove, GroupSetRole, Key, Note, OneTimePrekey,
    PrekeyFetch, PrekeyOk, PrekeyUpload, PresenceSet, PresenceSubscribe, PresenceUnsubscribe, Read, Role,
    Seq, Signature, SignedPrekey, Token, Typing, UserId, Visibility,
};

use crate::{Event, Session};

fn session() -> Session {
    let token = Token::new(Bytes::from_static(b"tok")).unwrap();
    Session::new(DeviceId(1), token, Capabilities::ALL, Seq(0))
}

/// Encodes `frame` and decodes it back: what the server will read.
fn wire(frame: &Frame) -> Frame {
    let mut frames = Decoder::new().message(frame.to_bytes().unwrap());
    let decoded = frames.next().unwrap().unwrap();
    assert!(frames.next().is_none());
    decoded
}

fn auth_ok() -> Frame {
    Frame::AuthOk(protocol::AuthOk {
        version: 1,
        user: UserId(1),
        device: DeviceId(1),
        session: 1,
        server_time: protocol::Timestamp(1),
        heartbeat_ms: 0,
        inbox_head: Seq(0),
        max_payload: 65_536,
        capabilities: Capabilities::ALL,
    })
}

fn users(ids: &[u64]) -> Vec<UserId> {
    ids.iter().copied().map(UserId).collect()
}

fn signed_prekey() -> SignedPrekey {
    SignedPrekey {
        id: 7,
        key: Key::new(Bytes::from_static(&[2; 32])).unwrap(),
        signature: Signature::new(Bytes::from_static(&[3; 64])).unwrap(),
    }
}

fn one_time(id: u32) -> OneTimePrekey {
    OneTimePrekey { id, key: Key::new(Bytes::from(vec![id as u8; 32])).unwrap() }
}

#[test]
fn fire_and_forget_builders_decode_back() {
    let mut s = session();
    let conv = Conversation::Direct(UserId(2));
    assert_eq!(
        wire(&s.read(conv, ConvSeq(41))),
        Frame::Read(Read { conversation: conv, up_to: ConvSeq(41) })
    );
    let group = Conversation::Group(GroupId(5));
    assert_eq!(wire(&s.typing(group, true)), Frame::Typing(Typing { conversation: group, active: true }));
    assert_eq!(wire(&s.typing(group, false)), Frame::Typing(Typing { conversation: group, active: false }));
    assert_eq!(
        wire(&s.presence_subscribe(UserId(2)).unwrap()),
        Frame::PresenceSubscribe(PresenceSubscribe { user: UserId(2) })
    );
    assert_eq!(
        wire(&s.presence_unsubscribe(UserId(2))),
        Frame::PresenceUnsubscribe(PresenceUnsubscribe { user: UserId(2) })
    );
    assert_eq!(
        wire(&s.presence_set(Visibility::Nobody)),
        Frame::PresenceSet(PresenceSet { visibility: Visibility::Nobody })
    );
    assert_eq!(s.outstanding_requests().len(), 0, "no request ids for these");
}

#[test]
fn group_builders_decode_back_with_distinct_nonzero_ids() {
    let mut s = session();
    let (create, frame) = s.group_create("friends", &users(&[2, 3])).unwrap();
    let Frame::GroupCreate(GroupCreate { request, name, members }) = wire(&frame) else {
        panic!("{frame:?}")
    };
    assert_eq!((request, name.as_str(), members.to_vec()), (create, "friends", users(&[2, 3])));

    let g = GroupId(9);
    let (add, frame) = s.group_add(g, &users(&[4])).unwrap();
    let Frame::GroupAdd(GroupAdd { request, group, members }) = wire(&frame) else { panic!("{frame:?}") };
    assert_eq!((request, group, members.to_vec()), (add, g, users(&[4])));

    let (remove, frame) = s.group_remove(g, &users(&[3, 4])).unwrap();
    let Frame::GroupRemove(GroupRemove { request, group, members }) = wire(&frame) else {
        panic!("{frame:?}")
    };
    assert_eq!((request, group, members.to_vec()), (remove, g, users(&[3, 4])));

    let (leave, frame) = s.group_leave(g);
    assert_eq!(wire(&frame), Frame::GroupLeave(GroupLeave { request: leave, group: g }));

    let (role, frame) = s.group_set_role(g, UserId(2), Role::Admin);
    assert_eq!(
        wire(&frame),
        Frame::GroupSetRole(GroupSetRole { request: role, group: g, user: UserId(2), role: Role::Admin })
    );

    let (get, frame) = s.group_get(g);
    assert_eq!(wire(&frame), Frame::GroupGet(GroupGet { request: get, group: g }));

    let ids = [create, add, remove, leave, role, get];
    assert!(ids.iter().all(|&id| id != 0));
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    assert_eq!(s.outstanding_request(create), Some(FrameKind::GroupCreate));
    assert_eq!(s.outstanding_request(get), Some(FrameKind::GroupGet));
    assert_eq!(s.outstanding_requests().len(), 6);
}

#[test]
fn prekey_builders_decode_back() {
    let mut s = session();
    let identity = Key::new(Bytes::from_static(&[1; 32])).unwrap();
    let keys = [one_time(1), one_time(2)];
    let (upload, frame) = s.prekey_upload(identity.clone(), signed_prekey(), &keys).unwrap();
    let Frame::PrekeyUpload(PrekeyUpload { request, identity_key, signed_prekey: spk, one_time: otk }) =
        wire(&frame)
    else {
        panic!("{frame:?}")
    };
    assert_eq!(
        (request, identity_key, spk, otk.to_vec()),
        (upload, identity, signed_prekey(), keys.to_vec())
    );

    let (fetch, frame) = s.prekey_fetch(UserId(2), DeviceId(0));
    assert_eq!(
        wire(&frame),
        Frame::PrekeyFetch(PrekeyFetch { request: fetch, user: UserId(2), device: DeviceId(0) })
    );
    assert!(upload != 0 && fetch != 0 && upload != fetch);
}

#[test]
fn limits_are_refused_without_spending_an_id() {
    let mut s = session();
    let long_name = "n".repeat(MAX_GROUP_NAME + 1);
    assert!(matches!(s.group_create(&long_name, &[]), Err(EncodeError::FieldTooLong { .. })));
    assert!(s.group_create(&"n".repeat(MAX_GROUP_NAME), &[]).is_ok(), "the limit itself is fine");
    let too_many: Vec<UserId> = (1..=MAX_MEMBERS_PER_CHANGE as u64 + 1).map(UserId).collect();
    assert!(matches!(s.group_create("g", &too_many), Err(EncodeError::TooManyItems { .. })));
    assert!(matches!(s.group_add(GroupId(1), &too_many), Err(EncodeError::TooManyItems { .. })));
    assert!(matches!(s.group_remove(GroupId(1), &too_many), Err(EncodeError::TooManyItems { .. })));
    let (_, frame) = s.group_add(GroupId(1), too_many.get(1..).unwrap()).unwrap();
    assert!(frame.encoded_len() <= protocol::limits::MAX_CLIENT_MESSAGE_LEN);
    let keys: Vec<OneTimePrekey> = (0..=MAX_ONE_TIME_PREKEYS as u32).map(one_time).collect();
    let identity = Key::new(Bytes::from_static(&[1; 32])).unwrap();
    assert!(matches!(
        s.prekey_upload(identity, signed_prekey(), &keys),
        Err(EncodeError::TooManyItems { .. })
    ));
    assert_eq!(s.outstanding_requests().len(), 2, "only the two that were built");
}

#[test]
fn presence_subscriptions_are_bounded_and_repeated_after_reconnect() {
    let mut s = session();
    for user in 1..=MAX_PRESENCE_SUBSCRIPTIONS as u64 {
        s.presence_subscribe(UserId(user)).unwrap();
    }
    assert!(matches!(
        s.presence_subscribe(UserId(9_999)),
        Err(EncodeError::TooManyItems { max: MAX_PRESENCE_SUBSCRIPTIONS, .. })
    ));
    assert!(s.presence_subscribe(UserId(1)).is_ok(), "again for a watched user");
    s.presence_unsubscribe(UserId(1));
    assert!(s.presence_subscribe(UserId(9_999)).is_ok(), "room after unsubscribing");
    s.on_disconnect();
    let again: Vec<Frame> = s.resubscribe_presence().collect();
    assert_eq!(again.len(), MAX_PRESENCE_SUBSCRIPTIONS);
    assert_eq!(again.first(), Some(&Frame::PresenceSubscribe(PresenceSubscribe { user: UserId(2) })));
    assert_eq!(again.last(), Some(&Frame::PresenceSubscribe(PresenceSubscribe { user: UserId(9_999) })));
}

#[test]
fn answers_end_requests_and_ids_skip_outstanding_ones() {
    let mut s = session();
    s.handle_frame(auth_ok()).unwrap();
    let (a, _) = s.group_get(GroupId(1));
    let (b, _) = s.prekey_fetch(UserId(2), DeviceId(1));
    let (c, _) = s.group_leave(GroupId(1));
    s.handle_frame(Frame::GroupOk(GroupOk { request: c, group: GroupId(1), version: 3 })).unwrap();
    s.handle_frame(Frame::Error(protocol::Error {
        code: protocol::ErrorCode::UNKNOWN_DEVICE,
        retryable: false,
        retry_after_ms: 0,
        reference: b,
        text: Note::default(),
    }))
    .unwrap();
    assert_eq!(s.outstanding_requests().collect::<Vec<_>>(), [(a, FrameKind::GroupGet)]);
    // An answer to nothing outstanding is still surfaced.
    s.handle_frame(Frame::PrekeyOk(PrekeyOk { request: 777, stock: 1 })).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(matches!(events.last(), Some(Event::PrekeyOk(PrekeyOk { request: 777, stock: 1 }))));
    // The connection ends: answers cannot come any more.
    s.on_disconnect();
    assert_eq!(s.outstanding_requests().len(), 0);
}

#[test]
fn request_ids_wrap_past_zero_and_skip_outstanding() {
    let mut s = session();
    let (first, _) = s.group_get(GroupId(1));
    assert_eq!(first, 1);
    // Near the end of the id space: u64::MAX, then 0 is skipped, then 1 is
    // still outstanding and skipped too.
    s.set_next_request_for_test(u64::MAX);
    let (last, _) = s.group_get(GroupId(1));
    let (wrapped, _) = s.group_get(GroupId(1));
    assert_eq!((last, wrapped), (u64::MAX, 2));
}
