//! RFC 6455 frame basics shared by both directions ([`OpCode`], close-code
//! validity) and the server-side writer: server frames are never masked and
//! never fragmented (FIN is always set), so a frame is a 2-, 4- or 10-byte header
//! followed by the payload.
//!
//! [`server_header`] returns the header alone, so that a payload shared by many
//! sessions (one `Bytes` encoded once for a group) is written with a vectored
//! write, header then payload, without being copied per session.
//! [`write_frame`] and [`write_close`] write a whole frame into a buffer.
//!
//! ```
//! use gateway_ws::frame::{server_header, write_frame, OpCode};
//!
//! let (header, len) = server_header(OpCode::Binary, 300);
//! assert_eq!(&header[..len], &[0x82, 126, 0x01, 0x2c]);
//! let mut out = Vec::new();
//! write_frame(&mut out, OpCode::Pong, b"hi");
//! assert_eq!(out, [0x8a, 2, b'h', b'i']);
//! ```

use bytes::BufMut;

/// Most payload bytes in a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Most bytes of a frame header: 2, plus 8 of extended length, plus 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame's opcode (RFC 6455 §5.2). The reserved opcodes have no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: a further fragment of a data message.
    Continuation = 0x0,
    /// 0x1: the first frame of a UTF-8 text message.
    Text = 0x1,
    /// 0x2: the first frame of a binary message.
    Binary = 0x2,
    /// 0x8: close (control).
    Close = 0x8,
    /// 0x9: ping (control).
    Ping = 0x9,
    /// 0xA: pong (control).
    Pong = 0xA,
}

impl OpCode {
    /// The opcode of the low nibble `bits`, or `None` for a reserved one.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub const fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4): 1000–1003,
/// 1007–1014 and 3000–4999. 1004–1006 and 1015 are reserved and never sent.
pub const fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The header of a server frame (FIN set, unmasked) carrying `len` payload
/// bytes: the header bytes and how many of them to send (2, 4 or 10).
///
/// The caller keeps control payloads within [`MAX_CONTROL_PAYLOAD`]; this
/// function encodes any length.
#[must_use]
pub fn server_header(opcode: OpCode, len: usize) -> ([u8; 10], usize) {
    let first = 0x80 | opcode as u8;
    if len <= MAX_CONTROL_PAYLOAD {
        ([first, len as u8, 0, 0, 0, 0, 0, 0, 0, 0], 2)
    } else if let Ok(len) = u16::try_from(len) {
        let [a, b] = len.to_be_bytes();
        ([first, 126, a, b, 0, 0, 0, 0, 0, 0], 4)
    } else {
        let [a, b, c, d, e, f, g, h] = (len as u64).to_be_bytes();
        ([first, 127, a, b, c, d, e, f, g, h], 10)
    }
}

/// Writes a whole server frame: header then `payload`.
///
/// `out` must be able to take it (a `BytesMut` or `Vec` grows; a fixed slice
/// that is too small panics, as `BufMut` does).
pub fn write_frame(out: &mut impl BufMut, opcode: OpCode, payload: &[u8]) {
    put_header(out, opcode, payload.len());
    out.put_slice(payload);
}

/// Writes the server header of a frame whose payload is `payload_len` bytes.
fn put_header(out: &mut impl BufMut, opcode: OpCode, payload_len: usize) {
    let (header, len) = server_header(opcode, payload_len);
    // `len` is 2, 4 or 10: never past the array.
    debug_assert!(len <= header.len(), "{len}-byte header");
    out.put_slice(header.get(..len).unwrap_or_default());
}

/// Writes a close frame with status `code` and `reason`, the reason cut at a
/// char boundary so that the payload fits in [`MAX_CONTROL_PAYLOAD`] bytes (at
/// most 123 bytes of reason).
pub fn write_close(out: &mut impl BufMut, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    // The loop stopped at a char boundary within `reason`.
    debug_assert!(reason.is_char_boundary(end));
    let reason = reason.get(..end).unwrap_or_default().as_bytes();
    put_header(out, OpCode::Close, 2 + reason.len());
    out.put_u16(code);
    out.put_slice(reason);
}
