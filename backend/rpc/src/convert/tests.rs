//! Round trips native → proto → native for every request, response, fault and
//! push note (the store's also through pipeline envelopes, encoded and
//! decoded), and refusals of malformed proto input.
//!
//! `Request` and `Response` have no `PartialEq`, and `Blob`'s `Debug` shows
//! only a length; so each round trip compares both the `Debug` text and the
//! proto forms of the two natives. The native → proto direction copies every
//! field into its own proto field, so equal protos mean equal natives.

use backend_push::PushNote;
use backend_store::{
    Ack, Connect, Connected, Delivery, GroupChange, GroupChanged, GroupInfo, GroupOp, InboxPage, InboxQuery,
    Message, PrekeyFetch, PrekeyFetched, PrekeyUpload, ReadCursor, ReceiptNote, Request, Response,
    SendMessage, Sent, StoreError,
};
use backend_store::{EngineError, GrpcCode, UnavailableError};
use bytes::Bytes;
use protocol::{
    ConvSeq, Conversation, Deliver, DeviceBundle, DeviceId, GroupId, GroupName, Key, Member, MessageId,
    OneTimePrekey, Payload, ReceiptKind, Role, Seq, Signature, SignedPrekey, Timestamp, UserId, Visibility,
};

use super::fault::{fault_from_proto, fault_to_proto};
use super::request::Kind;
use super::response::{outcome, reply, Answer};
use super::{pipeline, push, request, response, Bad};
use crate::pb::store as pb;

fn key(byte: u8) -> Key {
    Key::new(vec![byte; 32]).unwrap()
}

fn signed(id: u32) -> SignedPrekey {
    SignedPrekey { id, key: key(7), signature: Signature::new(vec![9u8; 64]).unwrap() }
}

fn message() -> Message {
    Message {
        id: MessageId(77),
        conv_seq: ConvSeq(5),
        sender: UserId(1),
        sender_device: DeviceId(2),
        server_time: Timestamp(1_700_000_000_000),
        payload: Bytes::from_static(b"ciphertext"),
    }
}

fn delivery(device: u32) -> Delivery {
    Delivery {
        user: UserId(2),
        device: DeviceId(device),
        seq: Seq(40),
        conversation: Conversation::Direct(UserId(1)),
    }
}

fn receipt(except: Option<DeviceId>, kind: ReceiptKind) -> ReceiptNote {
    ReceiptNote {
        to: UserId(1),
        except,
        conversation: Conversation::Group(GroupId(9)),
        user: UserId(2),
        kind,
        up_to: ConvSeq(12),
        at: Timestamp(1_700_000_000_123),
    }
}

fn group_info() -> GroupInfo {
    GroupInfo {
        group: GroupId(9),
        version: 3,
        name: GroupName::new("friends ✓").unwrap(),
        members: vec![
            Member { user: UserId(1), role: Role::Admin },
            Member { user: UserId(2), role: Role::Member },
        ],
    }
}

fn every_request() -> Vec<Request> {
    let group = |op| Request::Group(GroupChange { user: UserId(1), device: DeviceId(2), op });
    vec![
        Request::Connect(Connect { user: UserId(1), device: DeviceId(2) }),
        Request::Send(SendMessage {
            user: UserId(1),
            device: DeviceId(2),
            client_id: 99,
            to: Conversation::Direct(UserId(3)),
            payload: Bytes::from_static(b"hello"),
        }),
        Request::Send(SendMessage {
            user: UserId(1),
            device: DeviceId(2),
            client_id: 100,
            to: Conversation::Group(GroupId(9)),
            payload: Bytes::new(),
        }),
        Request::Ack(Ack { user: UserId(1), device: DeviceId(2), up_to: Seq(30) }),
        Request::Read(ReadCursor {
            user: UserId(1),
            device: DeviceId(2),
            conversation: Conversation::Direct(UserId(4)),
            up_to: ConvSeq(8),
        }),
        group(GroupOp::Create { name: GroupName::new("g").unwrap(), members: vec![UserId(2), UserId(3)] }),
        group(GroupOp::Add { group: GroupId(9), members: vec![UserId(5)] }),
        group(GroupOp::Remove { group: GroupId(9), members: vec![UserId(5), UserId(6)] }),
        group(GroupOp::Leave { group: GroupId(9) }),
        group(GroupOp::SetRole { group: GroupId(9), member: UserId(2), role: Role::Admin }),
        Request::PrekeyUpload(PrekeyUpload {
            user: UserId(1),
            device: DeviceId(2),
            identity_key: key(1),
            signed_prekey: signed(4),
            one_time: vec![OneTimePrekey { id: 1, key: key(2) }, OneTimePrekey { id: 2, key: key(3) }],
        }),
        Request::PrekeyFetch(PrekeyFetch { user: UserId(1), device: DeviceId(0) }),
        Request::SetVisibility { user: UserId(1), visibility: Visibility::Nobody },
        Request::SetVisibility { user: UserId(1), visibility: Visibility::Everyone },
        Request::GetVisibility { user: UserId(1) },
        Request::Inbox(InboxQuery {
            user: UserId(1),
            device: DeviceId(2),
            after: Seq(10),
            limit: 100,
            max_bytes: 1 << 20,
        }),
        Request::GroupGet { user: UserId(1), group: GroupId(9) },
        Request::Cursors { user: UserId(1), since: Timestamp(5) },
    ]
}

fn every_response() -> Vec<Response> {
    vec![
        Response::Connected(Connected {
            inbox_head: Seq(10),
            acked: Seq(7),
            prekey_stock: Some(20),
            previous_connect: Timestamp(3),
        }),
        Response::Connected(Connected {
            inbox_head: Seq(0),
            acked: Seq(0),
            prekey_stock: None,
            previous_connect: Timestamp(0),
        }),
        Response::Sent(Sent {
            message: message(),
            duplicate: false,
            deliveries: vec![delivery(1), delivery(2)],
            receipts: vec![receipt(Some(DeviceId(2)), ReceiptKind::Read)],
        }),
        Response::Sent(Sent { message: message(), duplicate: true, deliveries: vec![], receipts: vec![] }),
        Response::Receipts(vec![
            receipt(None, ReceiptKind::Delivered),
            receipt(Some(DeviceId(1)), ReceiptKind::Read),
        ]),
        Response::GroupChanged(GroupChanged {
            info: group_info(),
            message: message(),
            deliveries: vec![delivery(3)],
        }),
        Response::PrekeyStock(42),
        Response::PrekeyFetched(PrekeyFetched {
            bundles: vec![
                DeviceBundle {
                    device: DeviceId(1),
                    identity_key: key(1),
                    signed_prekey: signed(1),
                    one_time: Some(OneTimePrekey { id: 5, key: key(5) }),
                },
                DeviceBundle {
                    device: DeviceId(2),
                    identity_key: key(2),
                    signed_prekey: signed(2),
                    one_time: None,
                },
            ],
            low: vec![(DeviceId(1), 3)],
        }),
        Response::Done,
        Response::Visibility(Visibility::Nobody),
        Response::Visibility(Visibility::Everyone),
        Response::Inbox(InboxPage {
            entries: vec![Deliver {
                seq: Seq(11),
                message_id: MessageId(77),
                conversation: Conversation::Group(GroupId(9)),
                conv_seq: ConvSeq(5),
                sender: UserId(1),
                sender_device: DeviceId(2),
                server_time: Timestamp(1_700_000_000_000),
                payload: Payload::new(Bytes::from_static(b"ciphertext")).unwrap(),
            }],
            remaining: 4,
            head: Seq(15),
        }),
        Response::Group(group_info()),
        Response::Cursors(vec![receipt(None, ReceiptKind::Read)]),
    ]
}

#[test]
fn every_request_round_trips() {
    let requests = every_request();
    // Every variant is covered (the match fails to compile when one is added).
    for r in &requests {
        match r {
            Request::Connect(_)
            | Request::Send(_)
            | Request::Ack(_)
            | Request::Read(_)
            | Request::Group(_)
            | Request::PrekeyUpload(_)
            | Request::PrekeyFetch(_)
            | Request::SetVisibility { .. }
            | Request::GetVisibility { .. }
            | Request::Inbox(_)
            | Request::GroupGet { .. }
            | Request::Cursors { .. } => {}
        }
    }
    for native in requests {
        let proto = request::to_proto(native.clone());
        let back = request::from_proto(proto.clone()).unwrap();
        assert_eq!(format!("{native:?}"), format!("{back:?}"));
        assert_eq!(proto, request::to_proto(back));
    }
}

#[test]
fn every_response_round_trips() {
    for native in every_response() {
        let proto = response::to_proto(native.clone());
        let back = response::from_proto(proto.clone()).unwrap();
        assert_eq!(format!("{native:?}"), format!("{back:?}"));
        assert_eq!(proto, response::to_proto(back));
    }
}

fn every_error() -> Vec<StoreError> {
    vec![
        StoreError::UnknownRecipient(UserId(3)),
        StoreError::NotAMember(GroupId(4)),
        StoreError::UnknownGroup(GroupId(5)),
        StoreError::GroupFull(GroupId(6)),
        StoreError::NotAdmin(GroupId(7)),
        StoreError::UnknownDevice(UserId(8)),
        StoreError::TooManyDevices(UserId(9)),
        StoreError::Overloaded,
        StoreError::Recovering { retry_after_ms: 400 },
    ]
    .into_iter()
    .chain(every_engine_error().into_iter().map(StoreError::Engine))
    .chain(every_unavailable_error().into_iter().map(StoreError::Unavailable))
    .collect()
}

fn every_engine_error() -> Vec<EngineError> {
    let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
    vec![
        EngineError::io(&full, format!("./data/store: {full}")),
        EngineError::Database { message: "FjallError: Poisoned".into() },
        EngineError::corrupt("group name"),
        EngineError::PayloadTooLarge,
        EngineError::StoredPayloadTooLarge,
        EngineError::Encode { message: "list too long".into() },
        EngineError::WriteOnReader,
        EngineError::ReadOnWriter,
        EngineError::Closed,
        EngineError::ThreadStopped,
        EngineError::Config { what: "queue must be at least 1".into() },
        EngineError::UnexpectedResponse { answer: "Done".into() },
        EngineError::Reported { message: "disk full".into() },
    ]
}

fn every_unavailable_error() -> Vec<UnavailableError> {
    vec![
        UnavailableError::Status { code: GrpcCode::Internal, message: "the store dropped it".into() },
        UnavailableError::Timeout { timeout_ms: 5_000 },
        UnavailableError::Unreachable { why: "connection refused".into(), retry_in_ms: 40 },
        UnavailableError::StreamFailed { why: "reset".into() },
        UnavailableError::StreamClosed,
        UnavailableError::RequestTooLarge { len: 20 << 20, max: 16 << 20 },
        UnavailableError::BadReply { why: "field `Sent.id`: required, absent".into() },
        UnavailableError::ShuttingDown,
        UnavailableError::Reported { message: "relay down".into() },
    ]
}

#[test]
fn every_error_round_trips_as_the_same_variant() {
    for error in every_error() {
        let fault = fault_to_proto(error.clone());
        assert_eq!(fault_from_proto(over_the_wire(&fault)), Ok(error.clone()));
        // And through a whole reply, as the client sees it.
        let sent: pb::SendReply = reply(Err(error.clone()), |_| Err("unused")).unwrap();
        assert_eq!(outcome(sent, Answer::Sent).unwrap_err(), error);
    }
}

#[test]
fn replies_carry_the_answer_of_their_rpc() {
    let ok: pb::ReceiptsReply = reply(Ok(Response::Cursors(vec![])), |a| match a {
        Answer::Cursors(r) => Ok(r),
        other => Err(other.name()),
    })
    .unwrap();
    assert!(matches!(outcome(ok, Answer::Cursors), Ok(Response::Cursors(v)) if v.is_empty()));
    // The store answering with the wrong kind is reported, not mislabelled.
    let wrong = reply::<pb::ReceiptsReply>(Ok(Response::Done), |a| match a {
        Answer::Cursors(r) => Ok(r),
        other => Err(other.name()),
    });
    assert_eq!(wrong, Err("Done"));
}

#[test]
fn malformed_requests_are_refused_with_the_field() {
    let missing_to = request::Call::Send(pb::SendRequest { to: None, ..Default::default() });
    assert_eq!(request::from_proto(missing_to).unwrap_err(), Bad::missing("SendRequest.to"));

    let empty_conversation = request::Call::Read(pb::ReadRequest {
        conversation: Some(pb::Conversation { kind: None }),
        ..Default::default()
    });
    assert_eq!(request::from_proto(empty_conversation).unwrap_err().field, "ReadRequest.conversation");

    let no_op = request::Call::Group(pb::GroupRequest { op: None, ..Default::default() });
    assert_eq!(request::from_proto(no_op).unwrap_err(), Bad::missing("GroupRequest.op"));

    let long_name = request::Call::Group(pb::GroupRequest {
        op: Some(pb::group_request::Op::Create(pb::GroupCreate { name: "x".repeat(129), members: vec![] })),
        ..Default::default()
    });
    assert_eq!(request::from_proto(long_name).unwrap_err().field, "GroupCreate.name");

    let unspecified = request::Call::SetVisibility(pb::SetVisibilityRequest { user: 1, visibility: 0 });
    assert_eq!(request::from_proto(unspecified).unwrap_err().field, "SetVisibilityRequest.visibility");
    let unknown = request::Call::SetVisibility(pb::SetVisibilityRequest { user: 1, visibility: 17 });
    assert!(request::from_proto(unknown).is_err());

    let long_key = request::Call::PrekeyUpload(pb::PrekeyUploadRequest {
        identity_key: Bytes::from(vec![0u8; 65]),
        signed_prekey: Some(pb::SignedPrekey::default()),
        ..Default::default()
    });
    assert_eq!(request::from_proto(long_key).unwrap_err().field, "PrekeyUploadRequest.identity_key");

    let no_signed = request::Call::PrekeyUpload(pb::PrekeyUploadRequest::default());
    assert_eq!(
        request::from_proto(no_signed).unwrap_err(),
        Bad::missing("PrekeyUploadRequest.signed_prekey")
    );
}

#[test]
fn malformed_replies_are_unavailable() {
    bad_reply(outcome(pb::SendReply { result: None }, Answer::Sent));
    bad_reply(outcome(
        pb::ConnectReply {
            result: Some(pb::connect_reply::Result::Fault(pb::Fault { kind: None, cause: None })),
        },
        Answer::Connected,
    ));
    bad_reply(outcome(
        pb::SendReply { result: Some(pb::send_reply::Result::Ok(pb::Sent::default())) },
        Answer::Sent,
    ));
    let big_payload = pb::InboxPage {
        entries: vec![pb::Deliver {
            conversation: Some(pb::Conversation { kind: Some(pb::conversation::Kind::Direct(1)) }),
            payload: Bytes::from(vec![0u8; protocol::limits::MAX_PAYLOAD + 1]),
            ..Default::default()
        }],
        ..Default::default()
    };
    bad_reply(outcome(
        pb::InboxReply { result: Some(pb::inbox_reply::Result::Ok(big_payload)) },
        Answer::Inbox,
    ));
    let bad_role = pb::GroupInfo { members: vec![pb::Member { user: 1, role: 9 }], ..Default::default() };
    bad_reply(outcome(
        pb::GroupGetReply { result: Some(pb::group_get_reply::Result::Ok(bad_role)) },
        Answer::Group,
    ));
}

#[test]
fn payloads_are_not_copied() {
    // `.bytes(["."])` in build.rs: the proto payload is the same buffer.
    let payload = Bytes::from(vec![1u8; 1000]);
    let call = request::to_proto(Request::Send(SendMessage {
        user: UserId(1),
        device: DeviceId(1),
        client_id: 1,
        to: Conversation::Direct(UserId(2)),
        payload: payload.clone(),
    }));
    let request::Call::Send(send) = call else { panic!("not a send") };
    assert_eq!(send.payload.as_ptr(), payload.as_ptr());
}

#[test]
fn push_notes_round_trip() {
    for conversation in [Conversation::Direct(UserId(5)), Conversation::Group(GroupId(6))] {
        let note =
            PushNote { user: UserId(1), device: DeviceId(2), seq: Seq(3), conversation, sender: UserId(4) };
        assert_eq!(push::note_from_proto(push::note_to_proto(note)), Ok(note));
    }
    let device = push::device_to_proto(UserId(1), DeviceId(2));
    assert_eq!(push::device_from_proto(device), (UserId(1), DeviceId(2)));
    let missing = crate::pb::push::PushNote::default();
    assert_eq!(push::note_from_proto(missing).unwrap_err(), Bad::missing("PushNote.conversation"));
}

/// The request kinds a response answers.
fn kinds_answered_by(response: &Response) -> Vec<Kind> {
    match response {
        Response::Connected(_) => vec![Kind::Connect],
        Response::Sent(_) => vec![Kind::Send],
        Response::Receipts(_) => vec![Kind::Ack, Kind::Read],
        Response::GroupChanged(_) => vec![Kind::Group],
        Response::PrekeyStock(_) => vec![Kind::PrekeyUpload],
        Response::PrekeyFetched(_) => vec![Kind::PrekeyFetch],
        Response::Done => vec![Kind::SetVisibility],
        Response::Visibility(_) => vec![Kind::GetVisibility],
        Response::Inbox(_) => vec![Kind::Inbox],
        Response::Group(_) => vec![Kind::GroupGet],
        Response::Cursors(_) => vec![Kind::Cursors],
    }
}

/// Encoded and decoded, as the stream carries it.
fn over_the_wire<M: prost::Message + Default>(message: &M) -> M {
    M::decode(message.encode_to_vec().as_slice()).unwrap()
}

#[test]
fn every_request_round_trips_through_an_envelope() {
    for native in every_request() {
        let envelope = pb::Envelope { id: 3, request: Some(request::to_proto(native.clone())) };
        let arrived = over_the_wire(&envelope);
        assert_eq!(arrived, envelope);
        let back = request::from_proto(arrived.request.unwrap()).unwrap();
        assert_eq!(format!("{native:?}"), format!("{back:?}"));
    }
}

#[test]
fn every_outcome_round_trips_through_an_envelope_reply() {
    let mut kinds = std::collections::HashSet::new();
    for native in every_response() {
        for kind in kinds_answered_by(&native) {
            kinds.insert(kind.name());
            let field = pipeline::reply_to_proto(kind, Ok(native.clone())).unwrap();
            let arrived = over_the_wire(&pb::EnvelopeReply { id: 9, reply: Some(field) });
            assert_eq!(arrived.id, 9);
            let back = pipeline::reply_from_proto(kind, arrived.reply).unwrap();
            assert_eq!(format!("{native:?}"), format!("{back:?}"));
            // A domain error in the same reply field comes back as the same variant.
            for error in every_error() {
                let field = pipeline::reply_to_proto(kind, Err(error.clone())).unwrap();
                assert_eq!(pipeline::reply_from_proto(kind, Some(field)).unwrap_err(), error);
            }
        }
    }
    assert_eq!(kinds.len(), 12, "every request kind is covered");
}

#[test]
fn envelope_replies_must_match_their_request() {
    // The store answering with the wrong kind is reported by the server.
    assert_eq!(pipeline::reply_to_proto(Kind::Send, Ok(Response::Done)), Err("Done"));
    // A reply of another kind, or none, is a bad reply at the client.
    let ack = pipeline::reply_to_proto(Kind::Ack, Ok(Response::Receipts(vec![]))).unwrap();
    bad_reply(pipeline::reply_from_proto(Kind::Read, Some(ack)));
    bad_reply(pipeline::reply_from_proto(Kind::Send, None));
    // A failed call: the store's shedding stays Overloaded, the rest is Unavailable.
    let shed = pipeline::failure(tonic::Code::ResourceExhausted, "queue full");
    assert_eq!(pipeline::reply_from_proto(Kind::Send, Some(shed)).unwrap_err(), StoreError::Overloaded);
    let refused = pipeline::failure(tonic::Code::InvalidArgument, "field `SendRequest.to`: required, absent");
    match pipeline::reply_from_proto(Kind::Send, Some(refused)) {
        Err(StoreError::Unavailable(why)) => {
            assert_eq!(why.to_string(), "InvalidArgument: field `SendRequest.to`: required, absent");
            assert!(matches!(why, UnavailableError::Status { code: GrpcCode::InvalidArgument, .. }));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Asserts that `result` is a reply the client could not read.
fn bad_reply(result: Result<Response, StoreError>) {
    match result {
        Err(StoreError::Unavailable(UnavailableError::BadReply { why })) => assert!(!why.is_empty()),
        other => panic!("expected a bad reply, got {other:?}"),
    }
}

#[test]
fn a_fault_keeps_its_text_for_stores_that_predate_causes() {
    for error in every_error() {
        let fault = fault_to_proto(error.clone());
        let cause = match &error {
            StoreError::Engine(cause) => Some(cause.to_string()),
            StoreError::Unavailable(cause) => Some(cause.to_string()),
            _ => None,
        };
        match (cause, &fault.kind) {
            (Some(cause), Some(pb::fault::Kind::Engine(text) | pb::fault::Kind::Unavailable(text))) => {
                assert_eq!(*text, cause);
                // A store that sends the text alone: it reads back as reported text.
                let old = fault_from_proto(pb::Fault { cause: None, ..fault.clone() }).unwrap();
                assert_eq!(old.to_string(), error.to_string());
            }
            (_, Some(_)) => assert!(fault.cause.is_none(), "{error:?}"),
            (_, None) => panic!("no kind for {error:?}"),
        }
    }
    let old = pb::Fault { kind: Some(pb::fault::Kind::Engine("disk full".into())), cause: None };
    assert_eq!(
        fault_from_proto(old),
        Ok(StoreError::Engine(EngineError::Reported { message: "disk full".into() }))
    );
}

#[test]
fn a_cause_of_the_other_family_is_a_bad_fault() {
    let engine = fault_to_proto(StoreError::Engine(EngineError::Closed));
    let outage = fault_to_proto(StoreError::Unavailable(UnavailableError::ShuttingDown));
    let swapped = pb::Fault { kind: engine.kind.clone(), cause: outage.cause.clone() };
    assert_eq!(fault_from_proto(swapped).unwrap_err().field, "Fault.cause");
    let swapped = pb::Fault { kind: outage.kind, cause: engine.cause };
    assert_eq!(fault_from_proto(swapped).unwrap_err().field, "Fault.cause");
}

#[test]
fn io_kinds_and_grpc_codes_round_trip() {
    for kind in super::fault::IO_KINDS {
        let error = StoreError::Engine(EngineError::Io { kind, message: "x".into() });
        assert_eq!(fault_from_proto(fault_to_proto(error.clone())), Ok(error));
    }
    // A kind this side cannot name reads as `Other`, with its text.
    let cause = pb::Cause {
        kind: Some(pb::cause::Kind::Io(pb::IoCause { kind: "Martian".into(), message: "m".into() })),
    };
    let fault = pb::Fault { kind: Some(pb::fault::Kind::Engine("m".into())), cause: Some(cause) };
    assert_eq!(
        fault_from_proto(fault),
        Ok(StoreError::Engine(EngineError::Io { kind: std::io::ErrorKind::Other, message: "m".into() }))
    );
    // The store's codes are gRPC's, by number and name.
    for code in GrpcCode::ALL {
        assert_eq!(GrpcCode::from_number(code as i32), code);
        assert_eq!(format!("{:?}", tonic::Code::from(code as i32)), format!("{code:?}"));
    }
    assert_eq!(GrpcCode::from_number(99), GrpcCode::Unknown);
}
