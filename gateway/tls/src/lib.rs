//! TLS for the gateway's `wss://` listener, in two parts:
//!
//! - **Configuration** ([`load_server_config`], [`Reloadable`]): the
//!   certificate chain and private key read from PEM files (`[tls] cert`,
//!   `key`) into a rustls [`ServerConfig`](rustls::ServerConfig) with the ring
//!   provider, TLS 1.3 and 1.2, ALPN `http/1.1`, stateless session tickets
//!   (`[tls] session_tickets`) and a small session cache. [`Reloadable`] holds
//!   the current one for every worker; SIGHUP calls [`Reloadable::reload`],
//!   and a reload that fails keeps the old configuration. Workers read it
//!   once per accepted connection, so open connections keep theirs.
//! - **Connections** ([`TlsConn`]): one connection's TLS without its socket,
//!   on rustls' unbuffered API. The worker reads the socket into its own
//!   buffer, [`TlsConn::handle_read`] decrypts into the buffer the session
//!   core reads, and [`TlsConn::encrypt`] turns the session's output into
//!   records in the worker's write buffer. See [`TlsConn`] for the call order.
//!
//! # Why the unbuffered API
//!
//! rustls' buffered `ServerConnection` keeps a read buffer per connection that
//! it never frees: after the first read it stays at 4 KiB or more, idle or
//! not, which for a node holding hundreds of thousands of mostly idle
//! sessions is the largest per-session cost. With the unbuffered API the
//! buffers are the caller's: the worker's read and write buffers are shared
//! by all its connections, and a [`TlsConn`] only holds bytes while a record
//! is incomplete or the socket has not taken everything (both released when
//! they empty). An idle connection costs rustls' own state only.
//!
//! # Errors
//!
//! [`TlsError`]: loading errors name the file at fault; connection errors
//! carry rustls' typed [`rustls::Error`].

mod config;
mod conn;
mod error;

pub use config::{load_server_config, Reloadable, Settings, ALPN_HTTP_1_1, SESSION_CACHE_ENTRIES};
pub use conn::{Received, TlsConn};
pub use error::TlsError;

#[cfg(test)]
mod tests;
