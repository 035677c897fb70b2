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
//! # Beyond messages
//!
//! Every client frame has a builder on [`Session`] and an async method on
//! [`Client`]:
//!
//! | Frame | `Session` builder | `Client` method | Answer |
//! |-------|-------------------|-----------------|--------|
//! | READ | `read(conversation, up_to)` | `read` | none (others get [`Event::Receipt`]) |
//! | TYPING | `typing(conversation, active)` | `typing` | none (others get [`Event::Typing`]) |
//! | PRESENCE_SUBSCRIBE / _UNSUBSCRIBE | `presence_subscribe(user)`, `presence_unsubscribe(user)` | same | [`Event::Presence`] now and on changes |
//! | PRESENCE_SET | `presence_set(visibility)` | `presence_set` | none |
//! | GROUP_CREATE / ADD / REMOVE / LEAVE / SET_ROLE | `group_create(name, members)`, `group_add`, … → `(request, frame)` | same → request id | [`Event::GroupOk`] or [`Event::Error`] |
//! | GROUP_GET | `group_get(group)` | `group_get` | [`Event::GroupInfo`] or [`Event::Error`] |
//! | PREKEY_UPLOAD | `prekey_upload(identity_key, signed_prekey, one_time)` | `prekey_upload` | [`Event::PrekeyOk`] or [`Event::Error`] |
//! | PREKEY_FETCH | `prekey_fetch(user, device)` | `prekey_fetch` | [`Event::PrekeyBundles`] or [`Event::Error`] |
//! | MEDIA_UPLOAD | `media_upload(client_blob, size, class)` | `media_upload`; `upload(blob, class)` does the PUT too → [`MediaRef`] | [`Event::MediaUploadTicket`] or [`Event::Error`] |
//! | MEDIA_DOWNLOAD | `media_download(media_id)` | `media_download`; `download(&MediaRef)` does the GET too → bytes | [`Event::MediaDownloadTicket`] or [`Event::Error`] |
//!
//! Request ids come from the session (never 0, unique among outstanding
//! requests); builders whose lists or text can exceed a protocol limit return
//! [`protocol::EncodeError`]. Presence subscriptions are repeated on each
//! reconnect; requests are not. The server also sends [`Event::PrekeyLow`]
//! when the one-time prekey stock runs low. Membership changes arrive as
//! system entries in the group's conversation: [`system_group_info`] decodes
//! them. [`StatusTracker`] turns SEND_ACK and receipts into a per-message
//! status (pending, ✓ stored, ✓✓ delivered, read).
//!
//! # The chat example
//!
//! `examples/chat.rs` is a terminal chat (plaintext payloads, in-memory
//! cursor: a demo). With the quick-start gateway running
//! (`cargo run --release -p gateway`), in two terminals:
//!
//! ```text
//! cargo run -p client --example chat -- --user 1 --to 2
//! cargo run -p client --example chat -- --user 2 --to 1
//! ```
//!
//! It mints its token from the gateway's development key
//! (`./data/keys/dev-signing.pk8`, `--key PATH`) or takes `--token`; `--url`
//! and `--device` default to `ws://127.0.0.1:7700/ws` and 1.
//!
//! # Modules
//!
//! `config` ([`ClientConfig`]), `error` ([`ClientError`]), `event`
//! ([`Event`]), `status` ([`StatusTracker`]), `system`
//! ([`system_group_info`]), `backoff` ([`Backoff`], sans-IO reconnect
//! delays), `transport` (URL, TCP, TLS and WebSocket upgrade) and `link` (one
//! WebSocket connection: batching, reading, heartbeat). The request builders
//! live in `session/requests.rs`.

mod backoff;
mod config;
mod connection;
mod error;
mod event;
mod link;
mod media;
mod session;
mod status;
mod system;
mod transport;

pub use backoff::Backoff;
pub use config::ClientConfig;
pub use connection::Client;
pub use error::{ClientError, UnexpectedFrame};
pub use event::Event;
pub use media::MediaRef;
pub use session::{PendingSend, Session};
pub use status::{MessageStatus, StatusChange, StatusTracker};
pub use system::system_group_info;
pub use transport::{default_tls_config, tls_config};

/// The protocol crate, for its frame and id types.
pub use protocol;

#[cfg(test)]
mod tests;
