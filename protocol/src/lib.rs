//! Wire protocol v1 of the gateway: a sans-IO codec for the binary frames that
//! travel inside WebSocket binary messages. `SPEC.md` beside this crate is the
//! contract; this crate is its reference implementation.
//!
//! No sockets, no clocks, no threads: bytes in, frames out, and frames into a
//! caller's buffer.
//!
//! # Decoding
//!
//! ```
//! use bytes::BytesMut;
//! use protocol::{Decoder, Frame};
//!
//! // PING with nonce 42, arriving in two reads.
//! let decoder = Decoder::new();
//! let mut input = BytesMut::from(&[0x04, 0x01][..]);
//! assert_eq!(decoder.decode(&mut input), Ok(None)); // body still missing
//! input.extend_from_slice(&[0x2a]);
//! let frame = decoder.decode(&mut input).unwrap().unwrap();
//! assert!(matches!(frame, Frame::Ping(ping) if ping.nonce == 42));
//! ```
//!
//! A complete WebSocket message is read with [`Decoder::message`], which also
//! enforces the frames-per-message limit and rejects a message that ends inside
//! a frame.
//!
//! # Encoding
//!
//! ```
//! use bytes::BytesMut;
//! use protocol::{Ack, Frame, Seq};
//!
//! let mut out = BytesMut::new();
//! let written = Frame::from(Ack { up_to: Seq(300) }).encode(&mut out).unwrap();
//! assert_eq!(&out[..], &[0x14, 0x02, 0xac, 0x02]);
//! assert_eq!(written, 4);
//! ```
//!
//! Several frames may be encoded back to back into one buffer and sent as one
//! WebSocket message (batching).
//!
//! # Errors
//!
//! Malformed input is a [`DecodeError`] naming the field where decoding stopped;
//! no input makes the decoder panic (a fuzz target checks it). Values that cannot
//! be encoded are refused when built, with an [`EncodeError`].

#[macro_use]
mod macros;

mod codec;
mod codes;
mod error;
mod frames;
mod reader;
mod types;
mod varint;
mod wire;

#[cfg(any(test, feature = "json"))]
pub mod json;
pub mod limits;

pub use codec::{Decoder, MessageFrames};
pub use codes::{CloseCode, ErrorCode, Resume, Retry};
pub use error::{DecodeError, EncodeError};
pub use frames::*;
pub use reader::Reader;
pub use types::{
    Blob, Capabilities, ConvSeq, Conversation, DeviceId, GoAwayReason, GroupId, HttpMethod, List, ListIter,
    MediaClass, MessageId, PresenceStatus, ReceiptKind, Role, Seq, Text, Timestamp, UserId, Visibility,
};
pub use varint::{put_varint, read_varint, varint_len, MAX_VARINT_LEN};
pub use wire::Wire;

#[cfg(test)]
mod tests;
