//! The client side, for tests: masked frame encoding and a driver that feeds a
//! byte stream to a reader in chunks.

use bytes::BytesMut;

use crate::{MessageReader, WsError, WsEvent};

/// The mask of the RFC 6455 §5.7 examples.
pub(super) const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// How the payload length is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Len {
    /// The shortest form, as RFC 6455 requires of senders.
    Minimal,
    /// Always the 16-bit form (non-minimal for short payloads).
    Ext16,
    /// Always the 64-bit form.
    Ext64,
}

/// A frame as a client writes it, with every field controllable.
#[derive(Debug, Clone)]
pub(super) struct RawFrame {
    pub(super) fin: bool,
    pub(super) rsv: u8,
    pub(super) opcode: u8,
    pub(super) mask: Option<[u8; 4]>,
    pub(super) len: Len,
    pub(super) payload: Vec<u8>,
}

impl RawFrame {
    pub(super) fn new(fin: bool, opcode: u8, payload: &[u8]) -> Self {
        Self { fin, rsv: 0, opcode, mask: Some(MASK), len: Len::Minimal, payload: payload.to_vec() }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + self.payload.len());
        out.push(u8::from(self.fin) << 7 | (self.rsv & 7) << 4 | (self.opcode & 0xf));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let n = self.payload.len();
        match self.len {
            Len::Minimal if n <= 125 => out.push(mask_bit | n as u8),
            Len::Minimal if n <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            Len::Ext16 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            Len::Minimal | Len::Ext64 => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match self.mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(self.payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// A masked client frame (mask [`MASK`], minimal length).
pub(super) fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    RawFrame::new(fin, opcode, payload).encode()
}

/// A masked client frame with the given mask.
pub(super) fn frame_masked(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    RawFrame { mask: Some(mask), ..RawFrame::new(fin, opcode, payload) }.encode()
}

/// A close frame from the client.
pub(super) fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(true, 0x8, &payload)
}

/// Everything a reader said about a byte stream: its events, then `Err` if it failed.
pub(super) type Outcome = (Vec<WsEvent>, Result<(), WsError>);

/// Feeds `stream` to a fresh reader in one piece. Returns the outcome and the
/// bytes left in the buffer.
pub(super) fn read_all(max: usize, stream: &[u8]) -> (Outcome, BytesMut) {
    let mut reader = MessageReader::new(max);
    let mut buf = BytesMut::from(stream);
    let mut events = Vec::new();
    let result = reader.read(&mut buf, |e| events.push(e));
    ((events, result), buf)
}

/// Feeds `stream` to a fresh reader cut at `cuts` (sorted offsets), stopping at
/// the first error.
pub(super) fn read_chunked(max: usize, stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut reader = MessageReader::new(max);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
        let end = end.clamp(start, stream.len());
        buf.extend_from_slice(&stream[start..end]);
        start = end;
        if let Err(e) = reader.read(&mut buf, |e| events.push(e)) {
            return (events, Err(e));
        }
    }
    (events, Ok(()))
}

/// The events of a stream that must read without error.
pub(super) fn events(max: usize, stream: &[u8]) -> Vec<WsEvent> {
    let ((events, result), _) = read_all(max, stream);
    result.unwrap();
    events
}

/// The error a stream must end in.
pub(super) fn error(max: usize, stream: &[u8]) -> WsError {
    let ((_, result), _) = read_all(max, stream);
    result.unwrap_err()
}
