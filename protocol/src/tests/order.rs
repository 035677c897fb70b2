//! Which error a malformed message reports when it has several faults: the
//! order SPEC §13 ("Order of checks") gives, one case per step. A client
//! written from the SPEC alone reports the same name for the same bytes.

use bytes::Bytes;

use crate::limits::{MAX_FRAMES_PER_MESSAGE, MAX_FRAME_LEN, MAX_TOKEN};
use crate::*;

/// The error a server reports for one client message, and how many frames
/// before it were decoded (and acted on).
fn first_error(bytes: &[u8]) -> (usize, Option<DecodeError>) {
    let mut good = 0;
    for item in Decoder::new().message(Bytes::copy_from_slice(bytes)) {
        match item {
            Ok(_) => good += 1,
            Err(err) => return (good, Some(err)),
        }
    }
    (good, None)
}

fn error(bytes: &[u8]) -> DecodeError {
    first_error(bytes).1.unwrap_or_else(|| panic!("{bytes:02x?} decodes"))
}

#[test]
fn step_1_an_empty_message() {
    assert_eq!(error(&[]), DecodeError::EmptyMessage);
}

#[test]
fn step_2_the_frame_count_before_the_frame_itself() {
    let ping = [0x04, 0x01, 0x00];
    let mut bytes: Vec<u8> = ping.iter().copied().cycle().take(3 * MAX_FRAMES_PER_MESSAGE).collect();
    assert_eq!(first_error(&bytes), (MAX_FRAMES_PER_MESSAGE, None), "256 frames are fine");
    // A 257th frame is TooManyFrames whatever it holds, even an undefined tag.
    bytes.push(0xff);
    assert_eq!(first_error(&bytes), (MAX_FRAMES_PER_MESSAGE, Some(DecodeError::TooManyFrames { max: 256 })));
}

#[test]
fn step_3_the_tag_before_the_length() {
    // The tag alone: UnknownKind, though the header is incomplete.
    assert_eq!(error(&[0xff]), DecodeError::UnknownKind(0xff));
    // The tag wins over a bad length.
    assert_eq!(error(&[0x00, 0x81, 0x00]), DecodeError::UnknownKind(0x00));
}

#[test]
fn step_4_the_length_varint_then_a_message_ending_inside_the_header() {
    assert_eq!(error(&[0x04, 0x81, 0x00, 0x00]), DecodeError::NonCanonicalVarint { field: "length" });
    assert_eq!(error(&[0x04, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), {
        DecodeError::VarintOverflow { field: "length" }
    });
    // The message ends after a known tag, or inside the length varint.
    assert_eq!(error(&[0x04]), DecodeError::PartialFrame);
    assert_eq!(error(&[0x04, 0x81]), DecodeError::PartialFrame);
    // ...also after good frames, which are decoded first.
    assert_eq!(first_error(&[0x04, 0x01, 0x01, 0x10]), (1, Some(DecodeError::PartialFrame)));
}

#[test]
fn step_5_the_announced_length_before_the_body_arrives() {
    let mut bytes = vec![0x10];
    put_varint(&mut bytes, MAX_FRAME_LEN as u64 + 1);
    assert_eq!(
        error(&bytes),
        DecodeError::FrameTooLarge { len: MAX_FRAME_LEN as u64 + 1, max: MAX_FRAME_LEN }
    );
}

#[test]
fn step_6_a_message_ending_inside_the_body() {
    // ACK announcing 2 body bytes, holding 1: PartialFrame, not Truncated.
    assert_eq!(error(&[0x14, 0x02, 0x81]), DecodeError::PartialFrame);
}

#[test]
fn step_7_hello_versions_before_its_other_fields() {
    // Versions 2..=3, then a device varint that is not canonical.
    assert_eq!(
        error(&[0x01, 0x04, 0x02, 0x03, 0x81, 0x00]),
        DecodeError::UnsupportedVersion { min: 2, max: 3 }
    );
}

#[test]
fn step_8_fields_in_wire_order_then_trailing_bytes() {
    // TYPING: conversation tag 3 (bad), active 2 (bad), a trailing byte: the
    // first field's error.
    assert_eq!(
        error(&[0x24, 0x04, 0x03, 0x01, 0x02, 0x00]),
        DecodeError::InvalidValue { field: "conversation", value: 3 }
    );
    // Conversation fine, active bad, a trailing byte: active.
    assert_eq!(
        error(&[0x24, 0x04, 0x01, 0x01, 0x02, 0x00]),
        DecodeError::InvalidValue { field: "active", value: 2 }
    );
    // Every field fine, a trailing byte.
    assert_eq!(
        error(&[0x24, 0x04, 0x01, 0x01, 0x01, 0x00]),
        DecodeError::TrailingBytes { kind: "TYPING", extra: 1 }
    );
    // A body that ends inside a field is Truncated (the header was honoured).
    assert_eq!(error(&[0x24, 0x02, 0x01, 0x01]), DecodeError::Truncated { field: "active" });
}

#[test]
fn step_8_within_a_field_its_length_limit_before_its_bytes() {
    // HELLO whose token announces MAX_TOKEN + 1 bytes and holds none:
    // FieldTooLong, not Truncated.
    let mut body = vec![0x01, 0x01, 0x02, 0x00, 0x07];
    put_varint(&mut body, MAX_TOKEN as u64 + 1);
    let mut bytes = vec![0x01];
    put_varint(&mut bytes, body.len() as u64);
    bytes.extend_from_slice(&body);
    assert_eq!(error(&bytes), DecodeError::FieldTooLong { field: "token", len: 1025, max: MAX_TOKEN });
    // A list's count before its items.
    assert_eq!(
        error(&[0x31, 0x03, 0x00, 0x81, 0x04]),
        DecodeError::TooManyItems { field: "entries", count: 513, max: 512 }
    );
}
