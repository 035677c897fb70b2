//! A DELIVER encoded once for many devices.
//!
//! Only the first field of a DELIVER body, the inbox `seq`, differs between the
//! devices a message reaches (for a group, every member device; for a
//! one-to-one message, each side's view of the conversation). The rest of the
//! body, payload included, is encoded once into a shared `Bytes`; each device
//! gets a head of at most [`MAX_FRAME_HEAD`] bytes (tag, body length, seq)
//! written inline into its queue, and a reference to the shared tail.

use bytes::{BufMut, Bytes, BytesMut};
use protocol::{put_varint, varint_len, DecodeError, Decoder, Deliver, Frame, FrameKind, Seq, Wire};

use crate::outbound::MAX_FRAME_HEAD;

/// The seq-independent part of a DELIVER, shared by every recipient.
#[derive(Debug, Clone)]
pub struct SharedDeliver {
    tail: Bytes,
}

impl SharedDeliver {
    /// Encodes `deliver`'s body without its seq (which is ignored).
    pub fn new(deliver: &Deliver) -> Self {
        let without_seq = Deliver { seq: Seq(0), ..deliver.clone() };
        let mut body = BytesMut::with_capacity(without_seq.wire_len());
        without_seq.put(&mut body);
        // Seq 0 is the one byte 0x00 at the front.
        let tail = body.freeze().slice(varint_len(0)..);
        Self { tail }
    }

    /// A tail received from another node, checked to be a DELIVER body
    /// (after its seq) before any client sees it; also returns the DELIVER
    /// it makes (with seq 0), whose conversation and author a push note
    /// needs when the device turns out not to be here.
    pub fn from_tail(tail: Bytes) -> Result<(Self, Deliver), DecodeError> {
        let body_len = varint_len(0) + tail.len();
        let mut frame = BytesMut::with_capacity(1 + varint_len(body_len as u64) + body_len);
        frame.put_u8(FrameKind::Deliver.tag());
        put_varint(&mut frame, body_len as u64);
        put_varint(&mut frame, 0);
        frame.extend_from_slice(&tail);
        match Decoder::for_server_messages().decode(&mut frame)? {
            Some(Frame::Deliver(deliver)) if frame.is_empty() => Ok((Self { tail }, deliver)),
            _ => Err(DecodeError::PartialFrame),
        }
    }

    /// The shared tail (every field after the seq).
    pub fn tail(&self) -> &Bytes {
        &self.tail
    }

    /// The frame head for `seq`: tag, body length and seq; returns the bytes
    /// and how many of them are used.
    pub fn head(&self, seq: Seq) -> ([u8; MAX_FRAME_HEAD], usize) {
        let body_len = varint_len(seq.0) + self.tail.len();
        let mut head = [0u8; MAX_FRAME_HEAD];
        let mut out = head.as_mut_slice();
        out.put_u8(FrameKind::Deliver.tag());
        put_varint(&mut out, body_len as u64);
        put_varint(&mut out, seq.0);
        let used = MAX_FRAME_HEAD - out.len();
        (head, used)
    }
}
