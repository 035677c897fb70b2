//! The frame reader: each RFC 6455 rule, the autobahn-style fragmentation cases,
//! early limits, split invariance, zero copy and the reader's size.

use bytes::{Bytes, BytesMut};

use super::client::{close, error, events, frame, frame_masked, read_all, read_chunked, Len, RawFrame};
use crate::{MessageReader, WsError, WsEvent};

const MAX: usize = 1 << 16;

fn bin(data: &[u8]) -> WsEvent {
    WsEvent::Binary(Bytes::copy_from_slice(data))
}

fn text(data: &str) -> WsEvent {
    WsEvent::Text(Bytes::copy_from_slice(data.as_bytes()))
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn single_frames() {
    let stream = cat(&[
        frame(true, 0x2, b"\x00\x01binary"),
        frame(true, 0x1, "héllo ✓ 😀".as_bytes()),
        frame(true, 0x9, b"ping"),
        frame(true, 0xA, b"pong"),
        frame(true, 0x2, b""),
        frame(true, 0x1, b""),
        frame(true, 0x9, b""),
    ]);
    assert_eq!(
        events(MAX, &stream),
        [
            bin(b"\x00\x01binary"),
            text("héllo ✓ 😀"),
            WsEvent::Ping("ping".into()),
            WsEvent::Pong("pong".into()),
            bin(b""),
            text(""),
            WsEvent::Ping(Bytes::new()),
        ]
    );
}

#[test]
fn rfc_6455_section_5_7_examples() {
    // A single-frame masked text message "Hello".
    assert_eq!(
        events(MAX, &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]),
        [text("Hello")]
    );
    // A masked ping "Hello".
    assert_eq!(
        events(MAX, &[0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]),
        [WsEvent::Ping("Hello".into())]
    );
}

#[test]
fn every_length_form() {
    for n in [0, 1, 125, 126, 127, 0xffff, 0x1_0000, 0x1_0001] {
        let payload: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
        for len in [Len::Minimal, Len::Ext16, Len::Ext64] {
            if len == Len::Ext16 && n > 0xffff {
                continue;
            }
            let f = RawFrame { len, ..RawFrame::new(true, 0x2, &payload) }.encode();
            // Non-minimal lengths are tolerated (RFC 6455 asks it of senders only).
            assert_eq!(events(0x1_0001, &f), [bin(&payload)], "{n} bytes as {len:?}");
        }
    }
}

#[test]
fn every_mask() {
    let payload: Vec<u8> = (0..=255).collect();
    for mask in [[0, 0, 0, 0], [0xff; 4], [1, 2, 3, 4], [0x80, 0, 0, 0x01]] {
        for n in 0..20 {
            assert_eq!(events(MAX, &frame_masked(true, 0x2, &payload[..n], mask)), [bin(&payload[..n])]);
        }
    }
}

#[test]
fn protocol_errors_are_1002() {
    let cases: Vec<(&str, Vec<u8>, WsError)> = vec![
        ("unmasked", RawFrame { mask: None, ..RawFrame::new(true, 0x2, b"x") }.encode(), WsError::Unmasked),
        ("rsv1", RawFrame { rsv: 4, ..RawFrame::new(true, 0x2, b"x") }.encode(), WsError::ReservedBits(4)),
        ("rsv3", RawFrame { rsv: 1, ..RawFrame::new(true, 0x9, b"") }.encode(), WsError::ReservedBits(1)),
        ("ping 126", frame(true, 0x9, &[0; 126]), WsError::ControlTooLong),
        ("close 126", frame(true, 0x8, &[0x03, 0xe8].repeat(63)), WsError::ControlTooLong),
        ("fragmented ping", frame(false, 0x9, b""), WsError::FragmentedControl),
        ("fragmented close", frame(false, 0x8, b""), WsError::FragmentedControl),
        ("lone continuation", frame(true, 0x0, b"x"), WsError::UnexpectedContinuation),
        ("lone unfinished continuation", frame(false, 0x0, b"x"), WsError::UnexpectedContinuation),
        (
            "text inside fragmented",
            cat(&[frame(false, 0x2, b"a"), frame(true, 0x1, b"b")]),
            WsError::ExpectedContinuation,
        ),
        (
            "binary inside fragmented",
            cat(&[frame(false, 0x1, b"a"), frame(false, 0x2, b"b")]),
            WsError::ExpectedContinuation,
        ),
        ("close of 1 byte", frame(true, 0x8, &[0x03]), WsError::CloseTooShort),
        (
            "length msb",
            [&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0][..], &[1, 2, 3, 4]].concat(),
            WsError::LengthOverflow,
        ),
    ];
    for (name, stream, expected) in cases {
        let e = error(usize::MAX, &stream);
        assert_eq!(e, expected, "{name}");
        assert_eq!(e.close_code(), 1002, "{name}");
    }
    for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let e = error(MAX, &frame(true, opcode, b""));
        assert_eq!((e, e.close_code()), (WsError::ReservedOpcode(opcode), 1002));
    }
}

#[test]
fn header_faults_need_only_two_bytes() {
    for (two, expected) in [
        ([0x82, 0x05], WsError::Unmasked),
        ([0xc2, 0x85], WsError::ReservedBits(4)),
        ([0x83, 0x85], WsError::ReservedOpcode(3)),
        ([0x89, 0xfe], WsError::ControlTooLong),
        ([0x09, 0x80], WsError::FragmentedControl),
        ([0x80, 0x80], WsError::UnexpectedContinuation),
    ] {
        assert_eq!(error(MAX, &two), expected);
    }
    // One byte is never enough to judge.
    let ((events, result), rest) = read_all(MAX, &[0xff]);
    assert!(events.is_empty() && result.is_ok() && rest.len() == 1);
}

#[test]
fn close_frames() {
    assert_eq!(events(MAX, &frame(true, 0x8, b"")), [WsEvent::Close { code: None, reason: Bytes::new() }]);
    assert_eq!(events(MAX, &close(1000, b"")), [WsEvent::Close { code: Some(1000), reason: Bytes::new() }]);
    assert_eq!(
        events(MAX, &close(4999, "bye ✓".as_bytes())),
        [WsEvent::Close { code: Some(4999), reason: Bytes::from("bye ✓") }]
    );
    let valid =
        [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
    for code in valid {
        assert_eq!(
            events(MAX, &close(code, b"")),
            [WsEvent::Close { code: Some(code), reason: Bytes::new() }]
        );
    }
    let invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
    for code in invalid {
        let e = error(MAX, &close(code, b""));
        assert_eq!((e, e.close_code()), (WsError::InvalidCloseCode(code), 1002));
    }
    let e = error(MAX, &close(1000, b"\xce"));
    assert_eq!((e, e.close_code()), (WsError::InvalidCloseReason, 1007));
    let e = error(MAX, &close(1000, b"ok\xff"));
    assert_eq!(e, WsError::InvalidCloseReason);
}

#[test]
fn nothing_is_read_after_close() {
    let mut reader = MessageReader::new(MAX);
    let mut buf = BytesMut::from(&cat(&[close(1000, b""), frame(true, 0x2, b"late"), vec![0xff, 0xff]])[..]);
    let mut seen = Vec::new();
    reader.read(&mut buf, |e| seen.push(e)).unwrap();
    assert_eq!(seen, [WsEvent::Close { code: Some(1000), reason: Bytes::new() }]);
    assert!(buf.is_empty() && reader.is_closed());
    buf.extend_from_slice(&frame(true, 0x2, b"later"));
    reader.read(&mut buf, |e| seen.push(e)).unwrap();
    assert_eq!(seen.len(), 1);
    assert!(buf.is_empty());
}

#[test]
fn close_drops_a_fragmented_message() {
    let mut reader = MessageReader::new(MAX);
    let mut buf = BytesMut::from(&frame(false, 0x2, b"part")[..]);
    reader.read(&mut buf, |_| {}).unwrap();
    assert_eq!(reader.buffered(), 4);
    buf.extend_from_slice(&close(1001, b""));
    reader.read(&mut buf, |_| {}).unwrap();
    assert!(reader.is_idle() && reader.is_closed() && reader.buffered() == 0);
}

#[test]
fn invalid_utf8_is_1007() {
    for bad in [&b"\xff"[..], b"\xc0\xaf", b"\xed\xa0\x80", b"ok\xce", b"\xf4\x90\x80\x80"] {
        let e = error(MAX, &frame(true, 0x1, bad));
        assert_eq!((e, e.close_code()), (WsError::InvalidUtf8, 1007), "{bad:?}");
    }
    // Binary is not checked.
    assert_eq!(events(MAX, &frame(true, 0x2, b"\xff")), [bin(b"\xff")]);
}

#[test]
fn fragmented_text_with_a_code_point_across_fragments() {
    let s = "a😀b€c";
    let bytes = s.as_bytes();
    // Cut at every pair of points, even inside the 4-byte and 3-byte code points.
    for i in 0..=bytes.len() {
        for j in i..=bytes.len() {
            let stream = cat(&[
                frame(false, 0x1, &bytes[..i]),
                frame(false, 0x0, &bytes[i..j]),
                frame(true, 0x0, &bytes[j..]),
            ]);
            assert_eq!(events(MAX, &stream), [text(s)], "cuts {i} {j}");
        }
    }
    // One byte per fragment.
    let mut stream = frame(false, 0x1, &bytes[..1]);
    for (k, b) in bytes.iter().enumerate().skip(1) {
        stream.extend(frame(k + 1 == bytes.len(), 0x0, &[*b]));
    }
    assert_eq!(events(MAX, &stream), [text(s)]);
}

#[test]
fn invalid_utf8_fails_fast_in_fragments() {
    // The first fragment is already invalid: the error comes before the rest.
    let e = error(MAX, &frame(false, 0x1, b"ab\xff"));
    assert_eq!(e, WsError::InvalidUtf8);
    // A truncated code point is fine until the message ends...
    let ((events, result), _) = read_all(MAX, &frame(false, 0x1, "x😀".as_bytes().split_at(3).0));
    assert!(events.is_empty() && result.is_ok());
    // ...but not at the end.
    let stream = cat(&[frame(false, 0x1, b"x\xf0\x9f"), frame(true, 0x0, b"\x98")]);
    assert_eq!(error(MAX, &stream), WsError::InvalidUtf8);
    // A continuation byte that cannot follow the cut code point.
    let stream = cat(&[frame(false, 0x1, b"x\xf0\x9f"), frame(false, 0x0, b"A")]);
    assert_eq!(error(MAX, &stream), WsError::InvalidUtf8);
}

/// Feeds `stream` one byte per read; the number of bytes fed when the reader
/// failed, and its error.
fn fail_point(stream: &[u8]) -> Option<(usize, WsError)> {
    let mut reader = MessageReader::new(MAX);
    let mut buf = BytesMut::new();
    for (fed, byte) in stream.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        if let Err(e) = reader.read(&mut buf, |_| {}) {
            return Some((fed + 1, e));
        }
    }
    None
}

#[test]
fn invalid_utf8_fails_fast_inside_a_partial_frame() {
    // A 100-byte text frame whose 6th byte is invalid fails when that byte
    // arrives, not when the frame is complete (Autobahn 6.4.3, 6.4.4).
    let payload = [&b"hello\xffworld"[..], &[b'x'; 89]].concat();
    let whole = frame(true, 0x1, &payload);
    let header = whole.len() - payload.len();
    assert_eq!(fail_point(&whole), Some((header + 6, WsError::InvalidUtf8)));
    let ((events, result), _) = read_all(MAX, &whole[..header + 5]);
    assert!(events.is_empty() && result.is_ok());
    // In a continuation frame of a fragmented text message, and with a
    // code point that cannot continue ("\xf4\x90" is above U+10FFFF).
    let first = frame(false, 0x1, b"ok");
    let stream = cat(&[first.clone(), frame(true, 0x0, &payload)]);
    assert_eq!(fail_point(&stream), Some((first.len() + header + 6, WsError::InvalidUtf8)));
    let stream = cat(&[first.clone(), frame(true, 0x0, b"ab\xf4\x90\x80\x80cd")]);
    assert_eq!(fail_point(&stream), Some((first.len() + header + 4, WsError::InvalidUtf8)));
    // A cut code point left at the end of the frame fails at its last byte.
    let cut = frame(true, 0x1, b"ab\xe2\x82");
    assert_eq!(fail_point(&cut), Some((cut.len(), WsError::InvalidUtf8)));
    // Binary is never checked.
    assert_eq!(fail_point(&frame(true, 0x2, &payload)), None);
}

#[test]
fn text_cut_anywhere_inside_one_frame_reads_whole() {
    let s = "a\u{1F600}b\u{20AC}c";
    let stream =
        cat(&[frame(true, 0x1, s.as_bytes()), frame(false, 0x1, s.as_bytes()), frame(true, 0x0, b"!")]);
    let expected = vec![text(s), text(&format!("{s}!"))];
    for i in 0..=stream.len() {
        for j in i..=stream.len() {
            assert_eq!(read_chunked(MAX, &stream, &[i, j]), (expected.clone(), Ok(())), "cuts {i} {j}");
        }
    }
    let every_byte: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(read_chunked(MAX, &stream, &every_byte), (expected, Ok(())));
    // Every mask offset: the part unmasked early and the rest agree.
    for mask in [[0, 0, 0, 0], [0xff, 1, 0x80, 7]] {
        let f = frame_masked(true, 0x1, s.as_bytes(), mask);
        for cut in 0..=f.len() {
            assert_eq!(read_chunked(MAX, &f, &[cut]), (vec![text(s)], Ok(())), "{mask:?} cut {cut}");
        }
    }
}

#[test]
fn control_frames_inside_a_fragmented_message() {
    let stream = cat(&[
        frame(false, 0x1, "frag".as_bytes()),
        frame(true, 0x9, b"p1"),
        frame(false, 0x0, "men\u{e9}".as_bytes().split_at(4).0),
        frame(true, 0xA, b"q"),
        frame(true, 0x9, b"p2"),
        frame(true, 0x0, "men\u{e9}".as_bytes().split_at(4).1),
        frame(true, 0x2, b"next"),
    ]);
    assert_eq!(
        events(MAX, &stream),
        [
            WsEvent::Ping("p1".into()),
            WsEvent::Pong("q".into()),
            WsEvent::Ping("p2".into()),
            text("fragmen\u{e9}"),
            bin(b"next"),
        ]
    );
}

#[test]
fn fragmented_binary_and_empty_fragments() {
    let stream = cat(&[
        frame(false, 0x2, b""),
        frame(false, 0x0, b"ab"),
        frame(false, 0x0, b""),
        frame(true, 0x0, b"c"),
    ]);
    assert_eq!(events(MAX, &stream), [bin(b"abc")]);
    let stream = cat(&[frame(false, 0x1, b""), frame(true, 0x0, b"")]);
    assert_eq!(events(MAX, &stream), [text("")]);
}

#[test]
fn too_big_is_found_from_a_64_bit_header() {
    // Only the 10-byte header is there: no mask, no payload.
    let header = [0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0];
    let e = error(MAX, &header);
    assert_eq!(e, WsError::MessageTooBig { len: 1 << 32, limit: MAX });
    assert_eq!(e.close_code(), 1009);
    // The 16-bit form, too, with just its 4 header bytes.
    let e = error(100, &[0x82, 0xfe, 0x00, 101]);
    assert_eq!(e, WsError::MessageTooBig { len: 101, limit: 100 });
    // And a 7-bit length, from 2 bytes.
    assert_eq!(error(10, &[0x81, 0x80 | 11]), WsError::MessageTooBig { len: 11, limit: 10 });
}

#[test]
fn too_big_counts_the_fragments_so_far() {
    // 60 bytes assembled; a 41-byte fragment goes over 100 from its header alone.
    let stream = cat(&[frame(false, 0x2, &[1; 60]), frame(false, 0x0, &[]), vec![0x80, 0x80 | 41]]);
    assert_eq!(error(100, &stream), WsError::MessageTooBig { len: 101, limit: 100 });
}

#[test]
fn exactly_max_message_is_accepted() {
    let payload = vec![7u8; 300];
    assert_eq!(events(300, &frame(true, 0x2, &payload)), [bin(&payload)]);
    let stream = cat(&[
        frame(false, 0x2, &payload[..100]),
        frame(false, 0x0, &payload[100..299]),
        frame(true, 0x0, &payload[299..]),
    ]);
    assert_eq!(events(300, &stream), [bin(&payload)]);
    assert!(matches!(
        error(299, &frame(true, 0x2, &payload)),
        WsError::MessageTooBig { len: 300, limit: 299 }
    ));
    // Control frames do not count against the message limit... but 125 is theirs.
    assert_eq!(events(0, &frame(true, 0x9, &[1; 125])), [WsEvent::Ping(vec![1; 125].into())]);
    assert_eq!(events(0, &frame(true, 0x2, b"")), [bin(b"")]);
}

/// A stream exercising most paths, for the split tests.
fn mixed_stream() -> Vec<u8> {
    let big: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    cat(&[
        frame(true, 0x2, b"one"),
        frame(false, 0x1, "a\u{1F600}".as_bytes().split_at(3).0),
        frame(true, 0x9, b"ping"),
        frame(true, 0x0, "a\u{1F600}".as_bytes().split_at(3).1),
        frame(true, 0x2, &big),
        RawFrame { len: Len::Ext64, ..RawFrame::new(true, 0x2, b"long form") }.encode(),
        frame(true, 0xA, b""),
        close(1000, b"done"),
    ])
}

#[test]
fn every_split_point_gives_the_same_events() {
    let stream = mixed_stream();
    let ((whole, result), rest) = read_all(MAX, &stream);
    result.unwrap();
    assert!(rest.is_empty());
    assert_eq!(whole.len(), 7);
    for cut in 0..=stream.len() {
        assert_eq!(read_chunked(MAX, &stream, &[cut]), (whole.clone(), Ok(())), "cut at {cut}");
    }
    let every_byte: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(read_chunked(MAX, &stream, &every_byte), (whole, Ok(())));
}

#[test]
fn every_split_point_gives_the_same_error() {
    let mut stream = mixed_stream();
    stream.truncate(stream.len() - close(1000, b"done").len());
    stream.extend(frame(true, 0x1, b"bad \xff utf8"));
    let ((whole, result), _) = read_all(MAX, &stream);
    assert_eq!(result, Err(WsError::InvalidUtf8));
    for cut in 0..=stream.len() {
        assert_eq!(
            read_chunked(MAX, &stream, &[cut]),
            (whole.clone(), Err(WsError::InvalidUtf8)),
            "cut at {cut}"
        );
    }
}

#[test]
fn partial_frames_stay_in_the_buffer() {
    let f = frame(true, 0x2, b"payload");
    for end in 0..f.len() {
        let ((events, result), rest) = read_all(MAX, &f[..end]);
        assert!(events.is_empty() && result.is_ok());
        assert_eq!(&rest[..], &f[..end], "nothing consumed of a partial frame");
    }
}

#[test]
fn single_frame_payloads_are_zero_copy() {
    let stream = cat(&[frame(true, 0x2, b"zero copy"), frame(true, 0x1, b"text too")]);
    let mut buf = BytesMut::from(&stream[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let mut reader = MessageReader::new(MAX);
    let mut seen = Vec::new();
    reader.read(&mut buf, |e| seen.push(e)).unwrap();
    for event in seen {
        let (WsEvent::Binary(b) | WsEvent::Text(b)) = event else { panic!("{event:?}") };
        assert!(range.contains(&(b.as_ptr() as usize)), "payload copied");
    }
}

#[test]
fn idle_reader_is_small_and_owns_nothing() {
    assert_eq!(std::mem::size_of::<MessageReader>(), 16);
    let mut reader = MessageReader::new(MAX);
    assert!(reader.is_idle() && reader.buffered() == 0 && !reader.is_closed());
    assert_eq!(reader.max_message(), MAX);
    let mut buf = BytesMut::from(&frame(false, 0x2, b"abc")[..]);
    reader.read(&mut buf, |_| {}).unwrap();
    assert!(!reader.is_idle());
    assert_eq!(reader.buffered(), 3);
    buf.extend_from_slice(&frame(true, 0x0, b"d"));
    let mut seen = Vec::new();
    reader.read(&mut buf, |e| seen.push(e)).unwrap();
    assert_eq!(seen, [bin(b"abcd")]);
    assert!(reader.is_idle() && reader.buffered() == 0);
    // Limits beyond u32 saturate.
    assert_eq!(MessageReader::new(usize::MAX).max_message(), u32::MAX as usize);
}

#[test]
fn error_labels_and_codes() {
    let all = [
        WsError::Unmasked,
        WsError::ReservedBits(1),
        WsError::ReservedOpcode(3),
        WsError::ControlTooLong,
        WsError::FragmentedControl,
        WsError::UnexpectedContinuation,
        WsError::ExpectedContinuation,
        WsError::LengthOverflow,
        WsError::CloseTooShort,
        WsError::InvalidCloseCode(5),
        WsError::InvalidUtf8,
        WsError::InvalidCloseReason,
        WsError::MessageTooBig { len: 2, limit: 1 },
    ];
    let labels: std::collections::HashSet<_> = all.iter().map(WsError::as_str).collect();
    assert_eq!(labels.len(), all.len());
    for e in all {
        assert!([1002, 1007, 1009].contains(&e.close_code()));
        assert!(!e.to_string().is_empty());
    }
}
