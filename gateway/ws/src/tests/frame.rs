//! The server-side writer: header forms at each length boundary, whole frames,
//! close truncation, and opcode helpers.

use crate::frame::{
    is_valid_close_code, server_header, write_close, write_frame, OpCode, MAX_CONTROL_PAYLOAD,
};

/// Decodes one unmasked server frame: (first byte, payload, total length).
pub(super) fn decode_server_frame(buf: &[u8]) -> (u8, &[u8], usize) {
    assert_eq!(buf[1] & 0x80, 0, "server frames are never masked");
    let (len, at) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
        n => (n as usize, 2),
    };
    (buf[0], &buf[at..at + len], at + len)
}

#[test]
fn header_forms() {
    let cases: [(usize, &[u8]); 8] = [
        (0, &[0x82, 0]),
        (125, &[0x82, 125]),
        (126, &[0x82, 126, 0, 126]),
        (0xffff, &[0x82, 126, 0xff, 0xff]),
        (0x1_0000, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        (266_240, &[0x82, 127, 0, 0, 0, 0, 0, 4, 16, 0]),
        (usize::MAX, &[0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        (300, &[0x82, 126, 1, 44]),
    ];
    for (len, expected) in cases {
        let (header, n) = server_header(OpCode::Binary, len);
        assert_eq!(&header[..n], expected, "{len}");
    }
    for (opcode, byte) in [
        (OpCode::Continuation, 0x80),
        (OpCode::Text, 0x81),
        (OpCode::Binary, 0x82),
        (OpCode::Close, 0x88),
        (OpCode::Ping, 0x89),
        (OpCode::Pong, 0x8a),
    ] {
        assert_eq!(server_header(opcode, 3).0[0], byte);
    }
}

#[test]
fn whole_frames_round_trip() {
    for n in [0, 1, 125, 126, 0xffff, 0x1_0000] {
        let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        write_frame(&mut out, OpCode::Binary, &payload);
        let (first, body, total) = decode_server_frame(&out);
        assert_eq!((first, body, total), (0x82, &payload[..], out.len()));
    }
}

#[test]
fn close_frames_and_reason_truncation() {
    let mut out = Vec::new();
    write_close(&mut out, 1000, "");
    assert_eq!(out, [0x88, 2, 0x03, 0xe8]);

    for (reason, kept) in [
        ("x".repeat(123), 123),
        ("x".repeat(124), 123),
        ("é".repeat(100), 122),                  // 2-byte chars: 61 fit
        ("€".repeat(50), 123),                   // 3-byte chars: 41 fit exactly
        (format!("{}😀", "x".repeat(120)), 120), // the emoji does not fit
    ] {
        let mut out = Vec::new();
        write_close(&mut out, 4008, &reason);
        let (first, body, total) = decode_server_frame(&out);
        assert_eq!((first, total), (0x88, out.len()));
        assert!(body.len() <= MAX_CONTROL_PAYLOAD);
        assert_eq!(u16::from_be_bytes([body[0], body[1]]), 4008);
        assert_eq!(&body[2..], &reason.as_bytes()[..kept], "{reason}");
        std::str::from_utf8(&body[2..]).unwrap();
    }
}

#[test]
fn opcodes_and_close_codes() {
    for bits in 0..=0xff {
        match OpCode::from_bits(bits) {
            Some(op) => {
                assert_eq!(op as u8, bits);
                assert_eq!(op.is_control(), bits >= 8);
            }
            None => assert!(!matches!(bits, 0 | 1 | 2 | 8 | 9 | 10)),
        }
    }
    let valid: Vec<u16> = (0..=u16::MAX).filter(|&c| is_valid_close_code(c)).collect();
    assert_eq!(valid.len(), 4 + 8 + 2000);
}
