//! [`ClientError`]: every way a [`Client`](crate::Client) call can fail, and
//! whether reconnecting may help; [`UnexpectedFrame`], the session core's
//! only error.

use std::io;

use protocol::{Capabilities, CloseCode, DecodeError, EncodeError, ErrorCode, FrameKind, Resume, Retry};
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
    /// The server closed the WebSocket. `1005` ([`CloseCode::NO_STATUS`]) stands for a
    /// close frame without a code.
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
    /// The server refused a request with an ERROR naming it (a media ticket):
    /// `code.retry()` says whether the same request may succeed later. The
    /// session goes on.
    #[error("request refused: {code} ({text}), retry after {retry_after_ms} ms")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// Retry after this delay (ms), 0 for no advice.
        retry_after_ms: u32,
        /// Human-readable detail.
        text: String,
    },
    /// A media transfer failed: the object store refused it (its HTTP
    /// status: 403 for an expired or altered ticket, 404 for a blob it does
    /// not have), or gave no answer (status 0: connect, TLS, a cut transfer,
    /// `media_timeout`), or a blob's size disagrees with its message. The
    /// session is not at fault: reconnecting does not help.
    #[error("object store answered {status}: {text}")]
    ObjectStore {
        /// HTTP status.
        status: u16,
        /// The start of its answer.
        text: String,
    },
    /// The request needs a capability the server did not grant in AUTH_OK
    /// (not asked for in [`ClientConfig::capabilities`](crate::ClientConfig),
    /// or not offered: MEDIA needs a server with an object store). Nothing
    /// was sent.
    #[error("the server did not grant the capability {0:?} this request needs")]
    NotGranted(Capabilities),
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
    /// The wait the server asked for before reconnecting (AUTH_ERROR's
    /// `retry_after_ms`), if any: a floor for [`Backoff`](crate::Backoff).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::AuthRejected { retry_after_ms, .. } if *retry_after_ms > 0 => {
                Some(std::time::Duration::from_millis((*retry_after_ms).into()))
            }
            _ => None,
        }
    }

    /// Whether reconnecting needs a fresh token first (AUTH_EXPIRED, close
    /// 4004): call [`Client::set_token`](crate::Client::set_token), then
    /// reconnect.
    pub fn needs_new_token(&self) -> bool {
        match self {
            Self::AuthRejected { code, .. } => code.retry() == Retry::NewToken,
            Self::Closed { code, .. } => code.resume() == Resume::NewToken,
            _ => false,
        }
    }

    /// Whether an automatic reconnect (with backoff) may succeed as things
    /// are: lost connections, timeouts, server frames that failed to decode
    /// (SPEC §13: the server may have been upgraded under us), retryable auth
    /// codes and resumable close codes. Bad configuration, terminal codes and
    /// codes that need a fresh token ([`ClientError::needs_new_token`]) are not.
    pub fn is_resumable(&self) -> bool {
        match self {
            Self::Io(_) | Self::Timeout(_) | Self::NotConnected | Self::Decode(_) => true,
            Self::WebSocket(err) => match &**err {
                // The upgrade was refused: only server-side trouble may pass.
                tungstenite::Error::Http(response) => {
                    response.status().is_server_error() || response.status().as_u16() == 429
                }
                tungstenite::Error::Capacity(_)
                | tungstenite::Error::Utf8(_)
                | tungstenite::Error::Url(_)
                | tungstenite::Error::HttpFormat(_) => false,
                _ => true,
            },
            Self::AuthRejected { code, .. } => code.retry() == Retry::Retryable,
            Self::Closed { code, .. } => code.resume() == Resume::Resumable,
            Self::InvalidUrl(_)
            | Self::Tls(_)
            | Self::Encode(_)
            | Self::MessageTooLarge { .. }
            | Self::Protocol(_)
            | Self::Refused { .. }
            | Self::NotGranted(_)
            | Self::ObjectStore { .. } => false,
        }
    }
}

/// A frame the server may not send in the session's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected {kind:?} frame: {reason}")]
pub struct UnexpectedFrame {
    /// The frame's kind.
    pub kind: FrameKind,
    /// Why it is not allowed.
    pub reason: &'static str,
}
