//! Property tests: any sequence of messages, fragmented anyhow, masked anyhow,
//! with control frames between fragments and cut anywhere into reads, reads back
//! as the same events; and on arbitrary bytes the outcome does not depend on how
//! they are cut.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::client::{read_all, read_chunked, RawFrame};
use super::frame::decode_server_frame;
use crate::frame::{server_header, write_frame, OpCode};
use crate::WsEvent;

/// A message the client sends, and how.
#[derive(Debug, Clone)]
enum Msg {
    Data { text: bool, payload: Vec<u8>, cuts: Vec<usize>, pings: Vec<usize> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn msg() -> impl Strategy<Value = Msg> {
    let cuts = || vec(0..400usize, 0..5);
    prop_oneof![
        4 => (vec(any::<u8>(), 0..400), cuts(), vec(0..6usize, 0..3))
            .prop_map(|(payload, cuts, pings)| Msg::Data { text: false, payload, cuts, pings }),
        4 => (".{0,120}", cuts(), vec(0..6usize, 0..3))
            .prop_map(|(s, cuts, pings): (String, _, _)| Msg::Data { text: true, payload: s.into_bytes(), cuts, pings }),
        1 => vec(any::<u8>(), 0..=125).prop_map(Msg::Ping),
        1 => vec(any::<u8>(), 0..=125).prop_map(Msg::Pong),
    ]
}

/// Encodes `msgs` with masks from `masks` (cycled); returns the stream and the
/// events a reader must produce.
fn encode(msgs: &[Msg], masks: &[[u8; 4]]) -> (Vec<u8>, Vec<WsEvent>) {
    let mut masks = masks.iter().copied().cycle();
    let mut frame = |fin: bool, opcode: u8, payload: &[u8]| {
        RawFrame { mask: Some(masks.next().unwrap_or_default()), ..RawFrame::new(fin, opcode, payload) }
            .encode()
    };
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for m in msgs {
        match m {
            Msg::Ping(p) => {
                stream.extend(frame(true, 0x9, p));
                expected.push(WsEvent::Ping(Bytes::copy_from_slice(p)));
            }
            Msg::Pong(p) => {
                stream.extend(frame(true, 0xA, p));
                expected.push(WsEvent::Pong(Bytes::copy_from_slice(p)));
            }
            Msg::Data { text, payload, cuts, pings } => {
                let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(payload.len())).collect();
                cuts.sort_unstable();
                let bounds: Vec<usize> = std::iter::once(0).chain(cuts).chain([payload.len()]).collect();
                let fragments = bounds.len() - 1;
                for (k, w) in bounds.windows(2).enumerate() {
                    let opcode = if k > 0 {
                        0x0
                    } else if *text {
                        0x1
                    } else {
                        0x2
                    };
                    stream.extend(frame(k + 1 == fragments, opcode, &payload[w[0]..w[1]]));
                    // Pings between fragments arrive before the message.
                    if k + 1 < fragments {
                        for _ in pings.iter().filter(|&&p| p == k) {
                            stream.extend(frame(true, 0x9, b"between"));
                            expected.push(WsEvent::Ping(Bytes::from_static(b"between")));
                        }
                    }
                }
                let payload = Bytes::copy_from_slice(payload);
                expected.push(if *text { WsEvent::Text(payload) } else { WsEvent::Binary(payload) });
            }
        }
    }
    (stream, expected)
}

proptest! {
    #[test]
    fn messages_round_trip(
        msgs in vec(msg(), 0..8),
        masks in vec(any::<[u8; 4]>(), 1..4),
        splits in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let (stream, expected) = encode(&msgs, &masks);
        let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let (events, result) = read_chunked(1 << 16, &stream, &cuts);
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(events, expected);
    }

    #[test]
    fn outcome_does_not_depend_on_cuts(
        data in vec(any::<u8>(), 0..300),
        masked in any::<bool>(),
        max in 0usize..200,
        splits in vec(any::<prop::sample::Index>(), 0..6),
    ) {
        // Setting every mask bit lets random bytes get past the first check.
        let mut data = data;
        if masked && data.len() > 1 {
            data[1] |= 0x80;
        }
        let ((whole, result), _) = read_all(max, &data);
        let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(data.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(read_chunked(max, &data, &cuts), (whole, result));
    }

    #[test]
    fn server_frames_round_trip(payload in vec(any::<u8>(), 0..70_000), op in 0usize..6) {
        let opcode = [OpCode::Continuation, OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong][op];
        let mut out = Vec::new();
        write_frame(&mut out, opcode, &payload);
        let (first, body, total) = decode_server_frame(&out);
        prop_assert_eq!(first, 0x80 | opcode as u8);
        prop_assert_eq!(body, &payload[..]);
        prop_assert_eq!(total, out.len());
        let (_, header_len) = server_header(opcode, payload.len());
        prop_assert_eq!(header_len + payload.len(), out.len());
    }
}
