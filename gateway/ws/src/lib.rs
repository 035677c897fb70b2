//! Sans-IO WebSocket (RFC 6455) server side for the gateway: the HTTP upgrade
//! and the frame reader and writer. No sockets, no clock, no threads: bytes in,
//! decisions and events out, answers written into caller buffers.
//!
//! A connection goes through two phases:
//!
//! 1. **Upgrade** ([`handshake`]): call [`parse_request`] on the bytes read so
//!    far until it returns `Ok(Some(accepted))` (write [`write_accept`], drop
//!    `accepted.consumed` bytes, keep any rest: it is frames) or `Err(rejection)`
//!    (write [`write_rejection`], flush, close).
//! 2. **Frames**: feed reads to a [`MessageReader`] (one per connection, 16 bytes
//!    when idle), which yields [`WsEvent`]s or a [`WsError`] carrying the close
//!    code to send. Write server frames with [`frame::server_header`] (header
//!    only, for a vectored write of a shared payload), [`frame::write_frame`] and
//!    [`frame::write_close`].
//!
//! The close handshake, pong replies and the choice of when to read are the
//! session core's: this crate only says what arrived.
//!
//! Extensions and subprotocols are never negotiated (SPEC §1: no
//! `permessage-deflate`), so RSV bits are always an error. No input makes
//! anything here panic; the fuzz target in `fuzz/` checks it.

pub mod error;
pub mod frame;
pub mod handshake;
pub mod reader;

pub use error::WsError;
pub use frame::OpCode;
pub use handshake::{
    parse_request, write_accept, write_rejection, Accepted, HandshakeConfig, RejectReason, Rejection, Route,
};
pub use reader::{MessageReader, WsEvent};

#[cfg(test)]
mod tests;
