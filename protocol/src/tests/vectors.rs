//! The golden vectors in `testdata/vectors.json` (format in SPEC.md §15).
//!
//! Frame vectors whose `hex` is empty are filled in from the encoder when the
//! test runs with `PROTOCOL_BLESS_VECTORS=1` (to add a vector); a vector that has
//! a `hex` is never rewritten, and without that variable an empty one fails.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use crate::json::{from_hex, to_hex};
use crate::{Decoder, Frame};

pub(crate) const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors.json");

pub(crate) fn load() -> Value {
    let text = std::fs::read_to_string(PATH).expect("read vectors.json");
    serde_json::from_str(&text).expect("vectors.json is JSON")
}

fn name(vector: &Value) -> &str {
    vector["name"].as_str().expect("vector name")
}

/// Decodes a whole message, however many frames it holds.
pub(crate) fn decode_all(hex: &str) -> Result<Vec<Frame>, crate::DecodeError> {
    let bytes = from_hex(hex).expect("valid hex");
    Decoder::for_server_messages().message(bytes).collect()
}

fn encode_all(message: &Value) -> Bytes {
    let mut buf = BytesMut::new();
    for frame in message.as_array().expect("message is an array") {
        let frame = Frame::from_json(frame).unwrap_or_else(|e| panic!("{frame}: {e}"));
        frame.encode(&mut buf).expect("encodable");
    }
    buf.freeze()
}

#[test]
fn frame_vectors_encode_and_decode_exactly() {
    let mut vectors = load();
    let bless = std::env::var_os("PROTOCOL_BLESS_VECTORS").is_some();
    let mut blessed = 0;
    for vector in vectors["frames"].as_array_mut().expect("frames") {
        let encoded = encode_all(&vector["message"]);
        if vector["hex"].as_str() == Some("") {
            assert!(bless, "vector {} has no hex; run with PROTOCOL_BLESS_VECTORS=1", name(vector));
            vector["hex"] = to_hex(&encoded).into();
            blessed += 1;
        }
        let hex = vector["hex"].as_str().expect("hex").to_owned();
        assert_eq!(to_hex(&encoded), hex, "encoding of {}", name(vector));
        let decoded = decode_all(&hex).unwrap_or_else(|e| panic!("{}: {e}", name(vector)));
        let as_json: Vec<Value> = decoded.iter().map(Frame::to_json).collect();
        assert_eq!(Value::Array(as_json), vector["message"], "decoding of {}", name(vector));
    }
    if blessed > 0 {
        let text = serde_json::to_string_pretty(&vectors).expect("serialise");
        std::fs::write(PATH, text + "\n").expect("write vectors.json");
    }
}

#[test]
fn every_frame_kind_has_a_vector() {
    let vectors = load();
    let covered: Vec<&str> = vectors["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .flat_map(|v| v["message"].as_array().expect("message").iter())
        .map(|frame| frame["kind"].as_str().expect("kind"))
        .collect();
    for kind in crate::FrameKind::ALL {
        assert!(covered.contains(&kind.name()), "no vector for {}", kind.name());
    }
}

#[test]
fn malformed_vectors_fail_with_their_error() {
    let vectors = load();
    let mut seen = Vec::new();
    for vector in vectors["malformed"].as_array().expect("malformed") {
        let expected = vector["error"].as_str().expect("error");
        let bytes = from_hex(vector["hex"].as_str().expect("hex")).expect("valid hex");
        let error = Decoder::new()
            .message(bytes)
            .find_map(Result::err)
            .unwrap_or_else(|| panic!("{} decoded without error", name(vector)));
        assert_eq!(error.name(), expected, "{}: {error}", name(vector));
        seen.push(expected);
    }
    for error in crate::DecodeError::NAMES {
        assert!(seen.contains(error), "no malformed vector for {error}");
    }
}
