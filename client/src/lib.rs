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
//! use std::time::Duration;
//! use client::{Backoff, Client, ClientConfig, Event};
//! use protocol::{Conversation, DeviceId, Payload, UserId};
//!
//! let config = ClientConfig::new("ws://127.0.0.1:7700/ws", &b"token"[..], DeviceId(1));
//! let mut client = Client::connect(config).await?;
//! client.send(Conversation::Direct(UserId(7)), Payload::new(&b"ciphertext"[..])?).await?;
//! let (mut backoff, mut redirect, mut floor) = (Backoff::default(), String::new(), Duration::ZERO);
//! loop {
//!     match client.next_event().await {
//!         // Store the message, then ack (batching acks is better).
//!         Ok(Event::Delivered(message)) => client.ack(message.seq).await?,
//!         // Every sync batch must be acked, or the sync stalls.
//!         Ok(Event::SyncProgress { up_to, .. }) => client.ack(up_to).await?,
//!         Ok(Event::GoAway(goaway)) => {
//!             redirect = goaway.redirect.as_str().to_owned();
//!             floor = Duration::from_millis(goaway.reconnect_after_ms.into());
//!         }
//!         Ok(_) => {}
//!         Err(err) if err.is_resumable() => loop {
//!             let floor = std::mem::take(&mut floor).max(err.retry_after().unwrap_or_default());
//!             tokio::time::sleep(backoff.next_delay_at_least(floor)).await;
//!             match client.reconnect_to(&std::mem::take(&mut redirect)).await {
//!                 Ok(()) => break backoff.reset(),
//!                 Err(err) if err.is_resumable() => continue,
//!                 Err(err) => return Err(err),
//!             }
//!         },
//!         Err(err) => return Err(err),
//!     }
//! }
//! # }
//! ```
//!
//! Other modules: `config` ([`ClientConfig`]), `error` ([`ClientError`]),
//! `event` ([`Event`]), `backoff` ([`Backoff`], sans-IO reconnect delays),
//! `transport` (URL, TCP, TLS and WebSocket upgrade) and `link` (one
//! WebSocket connection: batching, reading, heartbeat).

mod backoff;
mod config;
mod connection;
mod error;
mod event;
mod link;
mod session;
mod transport;

pub use backoff::Backoff;
pub use config::ClientConfig;
pub use connection::Client;
pub use error::{ClientError, UnexpectedFrame};
pub use event::Event;
pub use session::{PendingSend, Session};
pub use transport::{default_tls_config, tls_config};

/// The protocol crate, for its frame and id types.
pub use protocol;

#[cfg(test)]
mod tests;
