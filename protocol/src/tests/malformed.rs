//! Each malformed input gets its own typed error; limits hold on both sides.

use bytes::{Bytes, BytesMut};

use crate::limits::{MAX_FRAMES_PER_MESSAGE, MAX_FRAME_LEN, MAX_GROUP_MEMBERS, MAX_PAYLOAD};
use crate::*;

fn decode_stream(bytes: &[u8]) -> Result<Option<Frame>, DecodeError> {
    Decoder::new().decode(&mut BytesMut::from(bytes))
}

fn decode_message(bytes: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    Decoder::new().message(Bytes::copy_from_slice(bytes)).collect()
}

#[test]
fn unknown_kind_fails_on_the_first_byte() {
    assert_eq!(decode_stream(&[0x00]), Err(DecodeError::UnknownKind(0x00)));
    assert_eq!(decode_stream(&[0xff]), Err(DecodeError::UnknownKind(0xff)));
    for tag in 0..=u8::MAX {
        let result = decode_stream(&[tag]);
        match FrameKind::from_tag(tag) {
            Some(_) => assert_eq!(result, Ok(None), "tag {tag:#04x}"),
            None => assert_eq!(result, Err(DecodeError::UnknownKind(tag))),
        }
    }
}

#[test]
fn oversized_length_fails_before_the_body_arrives() {
    let mut header = vec![FrameKind::SendMessage.tag()];
    put_varint(&mut header, MAX_FRAME_LEN as u64 + 1);
    assert_eq!(
        decode_stream(&header),
        Err(DecodeError::FrameTooLarge { len: MAX_FRAME_LEN as u64 + 1, max: MAX_FRAME_LEN })
    );
    // A lowered limit applies too.
    let small = Decoder::new().with_max_frame_len(16);
    assert_eq!(
        small.decode(&mut BytesMut::from(&[0x04, 0x11][..])),
        Err(DecodeError::FrameTooLarge { len: 17, max: 16 })
    );
}

#[test]
fn body_shorter_than_its_fields() {
    // ACK whose body is empty.
    assert_eq!(decode_stream(&[0x14, 0x00]), Err(DecodeError::Truncated { field: "up_to" }));
    // SEND whose payload length runs past the body.
    assert_eq!(
        decode_stream(&[0x10, 0x05, 0x01, 0x01, 0x07, 0x03, 0xaa]),
        Err(DecodeError::Truncated { field: "payload" })
    );
}

#[test]
fn trailing_bytes_after_the_last_field() {
    assert_eq!(
        decode_stream(&[0x04, 0x02, 0x01, 0x00]),
        Err(DecodeError::TrailingBytes { kind: "PING", extra: 1 })
    );
}

#[test]
fn non_canonical_and_overflowing_varints() {
    assert_eq!(
        decode_stream(&[0x04, 0x02, 0x81, 0x00]),
        Err(DecodeError::NonCanonicalVarint { field: "nonce" })
    );
    assert_eq!(decode_stream(&[0x04, 0x81, 0x00]), Err(DecodeError::NonCanonicalVarint { field: "length" }));
    let mut overflow = vec![0x04, 0x0a];
    overflow.extend_from_slice(&[0xff; 9]);
    overflow.push(0x02);
    assert_eq!(decode_stream(&overflow), Err(DecodeError::VarintOverflow { field: "nonce" }));
}

#[test]
fn u32_fields_reject_wider_values() {
    // PREKEY_LOW { stock: 2^32 }.
    let mut frame = vec![0x54, 0x05];
    put_varint(&mut frame, 1 << 32);
    assert_eq!(decode_stream(&frame), Err(DecodeError::InvalidValue { field: "stock", value: 1 << 32 }));
}

#[test]
fn undefined_enum_and_bool_values() {
    // READ with conversation tag 3.
    assert_eq!(
        decode_stream(&[0x15, 0x03, 0x03, 0x01, 0x01]),
        Err(DecodeError::InvalidValue { field: "conversation", value: 3 })
    );
    // TYPING with active = 2.
    assert_eq!(
        decode_stream(&[0x24, 0x03, 0x01, 0x01, 0x02]),
        Err(DecodeError::InvalidValue { field: "active", value: 2 })
    );
    // PRESENCE_SET with visibility 9.
    assert_eq!(
        decode_stream(&[0x22, 0x01, 0x09]),
        Err(DecodeError::InvalidValue { field: "visibility", value: 9 })
    );
}

#[test]
fn text_must_be_utf8_and_fields_respect_limits() {
    // ERROR with text bytes ff fe.
    assert_eq!(
        decode_stream(&[0x07, 0x07, 0x64, 0x00, 0x00, 0x00, 0x02, 0xff, 0xfe]),
        Err(DecodeError::InvalidUtf8 { field: "text" })
    );
    // DELIVER announcing a payload one byte over MAX_PAYLOAD.
    let mut body = vec![0x01, 0x01, 0x01, 0x07, 0x01, 0x01, 0x01, 0x01];
    put_varint(&mut body, MAX_PAYLOAD as u64 + 1);
    body.resize(body.len() + MAX_PAYLOAD + 1, 0);
    let mut frame = vec![0x13];
    put_varint(&mut frame, body.len() as u64);
    frame.extend_from_slice(&body);
    assert_eq!(
        decode_stream(&frame),
        Err(DecodeError::FieldTooLong { field: "payload", len: MAX_PAYLOAD as u64 + 1, max: MAX_PAYLOAD })
    );
}

#[test]
fn a_send_payload_is_bounded_by_the_frame_not_by_max_payload() {
    // SPEC §6.1: over the server's limit is SEND_ERROR PAYLOAD_TOO_LARGE, so
    // the SEND must decode; only the frame's own limit makes it malformed.
    let mut body = vec![0x01, 0x01, 0x07];
    put_varint(&mut body, MAX_PAYLOAD as u64 + 1);
    body.resize(body.len() + MAX_PAYLOAD + 1, 0);
    let mut frame = vec![0x10];
    put_varint(&mut frame, body.len() as u64);
    frame.extend_from_slice(&body);
    assert!(
        matches!(decode_stream(&frame), Ok(Some(Frame::SendMessage(s))) if s.payload.bytes().len() == MAX_PAYLOAD + 1)
    );
    // A payload length over MAX_FRAME_LEN inside a small frame.
    let mut body = vec![0x01, 0x01, 0x07];
    put_varint(&mut body, MAX_FRAME_LEN as u64 + 1);
    let mut frame = vec![0x10];
    put_varint(&mut frame, body.len() as u64);
    frame.extend_from_slice(&body);
    assert_eq!(
        decode_stream(&frame),
        Err(DecodeError::FieldTooLong {
            field: "payload",
            len: MAX_FRAME_LEN as u64 + 1,
            max: MAX_FRAME_LEN
        })
    );
}

#[test]
fn list_counts_respect_limits() {
    // GROUP_INFO announcing 1025 members.
    let mut body = vec![0x01, 0x01, 0x01, 0x00];
    put_varint(&mut body, MAX_GROUP_MEMBERS as u64 + 1);
    let mut frame = vec![0x47];
    put_varint(&mut frame, body.len() as u64);
    frame.extend_from_slice(&body);
    assert_eq!(
        decode_stream(&frame),
        Err(DecodeError::TooManyItems { field: "members", count: 1025, max: MAX_GROUP_MEMBERS })
    );
}

#[test]
fn a_full_group_round_trips() {
    let members: Vec<Member> = (1..=MAX_GROUP_MEMBERS as u64)
        .map(|id| Member { user: UserId(id), role: if id == 1 { Role::Admin } else { Role::Member } })
        .collect();
    let frame = Frame::from(GroupInfo {
        request: 7,
        group: GroupId(9),
        version: 3,
        name: Text::new("everyone").unwrap(),
        members: List::from_items(&members).unwrap(),
    });
    let decoded = Decoder::new().message(frame.to_bytes().unwrap()).next().unwrap().unwrap();
    let Frame::GroupInfo(info) = decoded else { panic!("wrong kind") };
    assert_eq!(info.members.to_vec(), members);
    // One more member cannot even be built.
    let too_many: Vec<UserId> = (0..=MAX_GROUP_MEMBERS as u64).map(UserId).collect();
    assert!(matches!(
        List::<UserId, MAX_GROUP_MEMBERS>::from_items(&too_many),
        Err(EncodeError::TooManyItems { .. })
    ));
}

#[test]
fn encoder_refuses_what_the_decoder_would_reject() {
    assert!(matches!(Payload::new(vec![0; MAX_PAYLOAD + 1]), Err(EncodeError::FieldTooLong { .. })));
    assert!(matches!(Note::new(&"x".repeat(257)), Err(EncodeError::FieldTooLong { .. })));
    // A sync batch of full-size payloads exceeds MAX_FRAME_LEN as a whole.
    let deliver = Deliver {
        seq: Seq(1),
        message_id: MessageId(1),
        conversation: Conversation::Direct(UserId(1)),
        conv_seq: ConvSeq(1),
        sender: UserId(1),
        sender_device: DeviceId(1),
        server_time: Timestamp(1),
        payload: Payload::new(vec![0; MAX_PAYLOAD]).unwrap(),
    };
    let entries = List::from_items(std::iter::repeat_n(&deliver, 5)).unwrap();
    let frame = Frame::from(SyncBatch { remaining: 0, entries });
    let mut out = BytesMut::new();
    assert!(matches!(frame.encode(&mut out), Err(EncodeError::FrameTooLarge { .. })));
    assert!(out.is_empty(), "a refused frame wrote bytes");
}

#[test]
fn text_truncation_keeps_characters_whole() {
    let text = Note::truncated(&"é".repeat(200)); // 400 bytes of 2-byte characters
    assert_eq!(text.as_str().len(), 256);
    assert!(text.as_str().chars().all(|c| c == 'é'));
}

#[test]
fn message_level_errors() {
    assert_eq!(decode_message(&[]), vec![Err(DecodeError::EmptyMessage)]);
    // A PING then half a PING.
    assert_eq!(
        decode_message(&[0x04, 0x01, 0x01, 0x04, 0x01]),
        vec![Ok(Frame::Ping(Ping { nonce: 1 })), Err(DecodeError::PartialFrame)]
    );
    // One frame over the limit: the iterator stops after the error.
    let ping = [0x04, 0x01, 0x00];
    let bytes: Vec<u8> = ping.iter().copied().cycle().take(3 * (MAX_FRAMES_PER_MESSAGE + 2)).collect();
    let results = decode_message(&bytes);
    assert_eq!(results.len(), MAX_FRAMES_PER_MESSAGE + 1);
    assert_eq!(results.last(), Some(&Err(DecodeError::TooManyFrames { max: MAX_FRAMES_PER_MESSAGE })));
}

#[test]
fn error_names_are_listed() {
    let samples = [
        DecodeError::UnknownKind(0),
        DecodeError::VarintOverflow { field: "" },
        DecodeError::NonCanonicalVarint { field: "" },
        DecodeError::FrameTooLarge { len: 0, max: 0 },
        DecodeError::Truncated { field: "" },
        DecodeError::TrailingBytes { kind: "", extra: 0 },
        DecodeError::FieldTooLong { field: "", len: 0, max: 0 },
        DecodeError::TooManyItems { field: "", count: 0, max: 0 },
        DecodeError::InvalidUtf8 { field: "" },
        DecodeError::InvalidValue { field: "", value: 0 },
        DecodeError::UnsupportedVersion { min: 0, max: 0 },
        DecodeError::PartialFrame,
        DecodeError::TooManyFrames { max: 0 },
        DecodeError::EmptyMessage,
    ];
    let names: Vec<&str> = samples.iter().map(DecodeError::name).collect();
    assert_eq!(names, DecodeError::NAMES);
}

#[test]
fn encode_into_a_small_fixed_buffer_fails_without_writing() {
    let frame = Frame::from(Ack { up_to: Seq(300) });
    let mut small = [0u8; 3];
    let mut dst = &mut small[..];
    assert_eq!(frame.encode(&mut dst), Err(EncodeError::BufferTooSmall { needed: 4, available: 3 }));
    assert_eq!(small, [0; 3], "a refused frame wrote bytes");
    let mut exact = [0u8; 4];
    assert_eq!(frame.encode(&mut &mut exact[..]), Ok(4));
    assert_eq!(exact, [0x14, 0x02, 0xac, 0x02]);
}

#[test]
fn a_bare_header_does_not_make_the_decoder_allocate_its_body() {
    let mut header = vec![FrameKind::SendMessage.tag()];
    put_varint(&mut header, 200_000);
    let mut buf = BytesMut::from(&header[..]);
    let before = buf.capacity();
    assert_eq!(Decoder::new().decode(&mut buf), Ok(None));
    assert_eq!(buf.capacity(), before, "decoder reserved space for an unsent body");
}

#[test]
fn hello_versions_are_checked_before_the_rest() {
    // Versions 2..=3, then a body that is not a v1 HELLO at all.
    assert_eq!(
        decode_stream(&[0x01, 0x03, 0x02, 0x03, 0xff]),
        Err(DecodeError::UnsupportedVersion { min: 2, max: 3 })
    );
    // An inverted range speaks nothing.
    assert_eq!(
        decode_stream(&[0x01, 0x02, 0x01, 0x00]),
        Err(DecodeError::UnsupportedVersion { min: 1, max: 0 })
    );
    // A range that includes v1 goes on to decode the v1 fields.
    assert_eq!(decode_stream(&[0x01, 0x02, 0x01, 0x05]), Err(DecodeError::Truncated { field: "device" }));
}
