//! Every frame kind survives encode → decode unchanged, in a stream split at any
//! point, and in a batched WebSocket message.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::{Decoder, Frame, FrameKind};

/// Runs `check` on generated frames of every kind, so no kind goes untested.
fn for_every_kind(cases: u32, check: impl Fn(Frame) -> Result<(), TestCaseError>) {
    for &kind in FrameKind::ALL {
        let mut runner = TestRunner::new(Config { cases, ..Config::default() });
        runner
            .run(&Frame::strategy(kind), |frame| {
                prop_assert_eq!(frame.kind(), kind);
                check(frame)
            })
            .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
    }
}

#[test]
fn encode_decode_round_trip() {
    for_every_kind(128, |frame| {
        let mut buf = BytesMut::new();
        let written = frame.encode(&mut buf).unwrap();
        prop_assert_eq!(written, buf.len());
        prop_assert_eq!(written, frame.encoded_len());
        let encoded = buf.clone().freeze();
        let decoded = Decoder::new().decode(&mut buf).unwrap().unwrap();
        prop_assert!(buf.is_empty(), "decode left {} bytes", buf.len());
        prop_assert_eq!(&decoded, &frame);
        // Canonical: re-encoding the decoded frame gives the same bytes.
        prop_assert_eq!(decoded.to_bytes().unwrap(), encoded);
        Ok(())
    });
}

#[test]
fn stream_split_anywhere() {
    for_every_kind(32, |frame| {
        let bytes = frame.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            prop_assert_eq!(Decoder::new().decode(&mut buf), Ok(None), "cut at {}", cut);
            prop_assert_eq!(buf.len(), cut, "incomplete decode consumed input");
            buf.extend_from_slice(&bytes[cut..]);
            prop_assert_eq!(Decoder::new().decode(&mut buf).unwrap(), Some(frame.clone()));
        }
        Ok(())
    });
}

#[test]
fn json_view_round_trips() {
    for_every_kind(32, |frame| {
        let json = frame.to_json();
        prop_assert_eq!(Frame::from_json(&json).unwrap(), frame);
        Ok(())
    });
}

fn any_frame() -> BoxedStrategy<Frame> {
    proptest::strategy::Union::new(FrameKind::ALL.iter().map(|&k| Frame::strategy(k))).boxed()
}

proptest! {
    /// Several frames batched in one WebSocket message come out in order, and a
    /// stream holding the same bytes yields the same frames.
    #[test]
    fn batched_message(frames in vec(any_frame(), 1..12)) {
        let mut buf = BytesMut::new();
        for frame in &frames {
            frame.encode(&mut buf).unwrap();
        }
        let message: Bytes = buf.clone().freeze();
        let from_message: Vec<Frame> =
            Decoder::new().message(message).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&from_message, &frames);

        let mut from_stream = Vec::new();
        while let Some(frame) = Decoder::new().decode(&mut buf).unwrap() {
            from_stream.push(frame);
        }
        prop_assert_eq!(&from_stream, &frames);
    }

    /// Arbitrary bytes never panic the decoder, and whatever decodes re-encodes
    /// to exactly the bytes consumed.
    #[test]
    fn arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&bytes[..]);
        let mut consumed = 0;
        while let Ok(Some(frame)) = Decoder::new().decode(&mut buf) {
            let encoded = frame.to_bytes().unwrap();
            prop_assert_eq!(&encoded[..], &bytes[consumed..consumed + encoded.len()]);
            consumed += encoded.len();
        }
        for item in Decoder::new().message(Bytes::from(bytes.clone())) {
            let _ = item;
        }
    }

    /// Decoded payloads are views of the input, not copies.
    #[test]
    fn payload_is_zero_copy(frame in Frame::strategy(FrameKind::SendMessage)) {
        let bytes = frame.to_bytes().unwrap();
        let range = bytes.as_ptr_range();
        let Frame::SendMessage(send) = Decoder::new().message(bytes.clone()).next().unwrap().unwrap() else {
            unreachable!()
        };
        let payload = send.payload.bytes();
        if !payload.is_empty() {
            prop_assert!(range.contains(&payload.as_ptr()), "payload was copied");
        }
    }
}
