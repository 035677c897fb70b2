//! Rust client of the gateway (wire protocol v1 over WebSocket).
//!
//! Two layers:
//!
//! - [`Session`] (module `session`): the sans-IO core. It builds HELLO, takes
//!   in decoded server frames, and hands back [`Event`]s and frames to send.
//!   It holds the delivery contract: deliveries surfaced once and in seq
//!   order, cumulative acks, the resume cursor, pending sends resent with the
//!   same client ids after a reconnect, PONG answers. No socket, clock or
//!   runtime, so an event loop of any kind (a mio load tool) can drive it.
//! - [`Client`] (module `connection`): a tokio driver over `ws://` or `wss://`
//!   (rustls, ring provider), with connect and auth deadlines, heartbeat
//!   PINGs, reconnect and resume.
//!
//! ```no_run
//! # async fn run() -> Result<(), client::ClientError> {
//! use client::{Client, ClientConfig, Event};
//! use protocol::{Conversation, DeviceId, Payload, UserId};
//!
//! let config = ClientConfig::new("ws://127.0.0.1:7700/ws", &b"token"[..], DeviceId(1));
//! let mut client = Client::connect(config).await?;
//! client.send(Conversation::Direct(UserId(7)), Payload::new(&b"ciphertext"[..])?).await?;
//! loop {
//!     match client.next_event().await {
//!         Ok(Event::Delivered(message)) => client.ack(message.seq).await?,
//!         Ok(_) => {}
//!         Err(err) if err.is_resumable() => client.reconnect().await?,
//!         Err(err) => return Err(err),
//!     }
//! }
//! # }
//! ```
//!
//! Other modules: `config` ([`ClientConfig`]), `error` ([`ClientError`]),
//! `event` ([`Event`]), `transport` (URL, TCP, TLS and WebSocket upgrade) and
//! `link` (one WebSocket connection: batching, reading, heartbeat).

mod config;
mod connection;
mod error;
mod event;
mod link;
mod session;
mod transport;

pub use config::ClientConfig;
pub use connection::Client;
pub use error::ClientError;
pub use event::Event;
pub use session::{PendingSend, Session, Unexpected};
pub use transport::{default_tls_config, tls_config};

/// The protocol crate, for its frame and id types.
pub use protocol;

#[cfg(test)]
mod tests;
