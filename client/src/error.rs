//! [`ClientError`]: every way a [`Client`](crate::Client) call can fail, and
//! whether reconnecting may help.

use std::io;

use protocol::{CloseCode, DecodeError, EncodeError, ErrorCode, Resume, Retry};
use tokio_tungstenite::tungstenite;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `ws://host[:port]/path` or `wss://host[:port]/path`.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A socket error (connect, read, write), or the connection was lost
    /// without a close frame.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS error: {0}")]
    Tls(#[from] rustls::Error),
    /// The WebSocket upgrade or framing failed.
    #[error("WebSocket error: {0}")]
    WebSocket(#[source] Box<tungstenite::Error>),
    /// The server sent bytes that are not v1 frames.
    #[error("malformed frame from the server: {0}")]
    Decode(#[from] DecodeError),
    /// A frame could not be encoded (see [`EncodeError`]).
    #[error("frame cannot be encoded: {0}")]
    Encode(#[from] EncodeError),
    /// One frame is larger than a client WebSocket message may be.
    #[error("a {len}-byte frame exceeds the client message limit of {max}")]
    MessageTooLarge {
        /// Encoded frame length.
        len: usize,
        /// `MAX_CLIENT_MESSAGE_LEN`.
        max: usize,
    },
    /// The server refused the session: AUTH_ERROR, or an ERROR before AUTH_OK.
    #[error("authentication rejected: {code} ({text}), retry after {retry_after_ms} ms")]
    AuthRejected {
        /// Why.
        code: ErrorCode,
        /// Wait at least this long before reconnecting (ms, 0: no advice).
        retry_after_ms: u32,
        /// Human-readable detail.
        text: String,
    },
    /// The server closed the WebSocket. `1005` stands for a close frame
    /// without a code.
    #[error("connection closed by the server: {code} {reason:?}")]
    Closed {
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
    },
    /// A deadline passed: `"connect"`, `"auth"` or `"heartbeat"` (no server
    /// traffic for three heartbeat intervals).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The server broke the protocol (an unexpected frame, a text message).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// No connection: it ended earlier (the first error was returned then).
    /// Call [`Client::reconnect`](crate::Client::reconnect).
    #[error("not connected")]
    NotConnected,
}

impl From<tungstenite::Error> for ClientError {
    fn from(err: tungstenite::Error) -> Self {
        match err {
            tungstenite::Error::Io(err) => Self::Io(err),
            other => Self::WebSocket(Box::new(other)),
        }
    }
}

impl ClientError {
    /// Whether an automatic reconnect (with backoff) may succeed: lost
    /// connections, timeouts, retryable auth codes and resumable close codes.
    /// Malformed traffic, bad configuration and terminal codes are not.
    pub fn is_resumable(&self) -> bool {
        match self {
            Self::Io(_) | Self::WebSocket(_) | Self::Timeout(_) | Self::NotConnected => true,
            Self::AuthRejected { code, .. } => code.retry() == Retry::Retryable,
            Self::Closed { code, .. } => code.resume() == Resume::Resumable,
            Self::InvalidUrl(_)
            | Self::Tls(_)
            | Self::Decode(_)
            | Self::Encode(_)
            | Self::MessageTooLarge { .. }
            | Self::Protocol(_) => false,
        }
    }
}
