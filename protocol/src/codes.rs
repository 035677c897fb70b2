//! Error codes (in ERROR, AUTH_ERROR and SEND_ERROR frames) and WebSocket close
//! codes. `SPEC.md` has the same tables; a test checks they agree.
//!
//! Both are open sets: a newer server may send a code this crate does not know,
//! so they are newtypes with named constants rather than closed enums. Clients
//! treat an unknown error code by its `retryable` flag, an unknown close code in
//! 4000–4999 as terminal and any other unknown close code as resumable.

use std::fmt;

use bytes::BufMut;

use crate::error::DecodeError;
use crate::reader::Reader;
use crate::wire::Wire;

/// Why a request or a session failed (varint on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

/// Whether a code is worth retrying unchanged after a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The same request may succeed later (after `retry_after_ms` if given).
    Retryable,
    /// It will succeed only with a fresh token (reconnect with one).
    NewToken,
    /// It will fail the same way until something changes.
    Terminal,
}

macro_rules! codes {
    ($ty:ident, $kind:ident: $($(#[$meta:meta])* $name:ident = $value:literal, $flag:ident;)+) => {
        impl $ty {
            $($(#[$meta])* pub const $name: Self = Self($value);)+

            /// Every code this crate knows, with its SPEC name and class.
            pub const KNOWN: &'static [(Self, &'static str, $kind)] =
                &[$((Self::$name, stringify!($name), $kind::$flag)),+];

            /// SPEC name, if the code is known.
            pub fn name(self) -> Option<&'static str> {
                Self::KNOWN.iter().find(|(code, _, _)| *code == self).map(|(_, name, _)| *name)
            }

            /// The known code with this SPEC name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::KNOWN.iter().find(|(_, known, _)| *known == name).map(|(code, _, _)| *code)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{}({})", name, self.0),
                    None => write!(f, "{}({})", stringify!($ty), self.0),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

codes!(ErrorCode, Retry:
    /// A frame failed to decode.
    BAD_FRAME = 100, Terminal;
    /// A frame kind not valid here: wrong direction, or before AUTH_OK.
    UNEXPECTED_FRAME = 101, Terminal;
    /// No protocol version in common.
    UNSUPPORTED_VERSION = 102, Terminal;
    /// Too many frames or connections; wait `retry_after_ms`.
    RATE_LIMITED = 103, Retryable;
    /// The session already watches MAX_PRESENCE_SUBSCRIPTIONS users: a cap,
    /// not a rate, so waiting does not help; unsubscribe one first.
    TOO_MANY_SUBSCRIPTIONS = 104, Terminal;
    /// The token is malformed or its signature does not verify.
    AUTH_INVALID = 110, Terminal;
    /// The token has expired; get a new one and reconnect.
    AUTH_EXPIRED = 111, NewToken;
    /// The token is signed with a key this server does not accept.
    AUTH_UNKNOWN_KEY = 112, Terminal;
    /// HELLO names a device other than the token's.
    AUTH_DEVICE_MISMATCH = 113, Terminal;
    /// HELLO did not arrive before the auth deadline.
    AUTH_TIMEOUT = 114, Retryable;
    /// The user already has the maximum number of devices.
    TOO_MANY_DEVICES = 115, Terminal;
    /// The recipient user does not exist.
    UNKNOWN_RECIPIENT = 200, Terminal;
    /// The payload is over this server's limit (which may be below MAX_PAYLOAD).
    PAYLOAD_TOO_LARGE = 201, Terminal;
    /// The sender is not a member of the group.
    NOT_A_MEMBER = 202, Terminal;
    /// The group does not exist.
    UNKNOWN_GROUP = 300, Terminal;
    /// The change would take the group past MAX_GROUP_MEMBERS.
    GROUP_FULL = 301, Terminal;
    /// Only an admin may do this.
    NOT_ADMIN = 302, Terminal;
    /// The user or device has no prekey bundle.
    UNKNOWN_DEVICE = 400, Terminal;
    /// A server fault; retry.
    INTERNAL = 500, Retryable;
    /// The server is shedding load; retry after `retry_after_ms`.
    OVERLOADED = 501, Retryable;
    /// The store or push service is unreachable; retry.
    BACKEND_UNAVAILABLE = 502, Retryable;
    /// MEDIA_UPLOAD's size is over the server's largest blob.
    MEDIA_TOO_LARGE = 600, Terminal;
    /// The user's media quota for the day is spent; retry after
    /// `retry_after_ms` (when the day's window frees).
    MEDIA_QUOTA_EXCEEDED = 601, Retryable;
    /// The media id was not issued by this fleet, was altered, or is past
    /// the retention period.
    UNKNOWN_MEDIA = 602, Terminal;
);

impl ErrorCode {
    /// Default retry class of a known code; unknown codes are terminal.
    pub fn retry(self) -> Retry {
        Self::KNOWN.iter().find(|(code, _, _)| *code == self).map_or(Retry::Terminal, |(_, _, r)| *r)
    }
}

impl crate::wire::sealed::Sealed for ErrorCode {}

impl Wire for ErrorCode {
    fn wire_len(&self) -> usize {
        u32::from(self.0).wire_len()
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        u32::from(self.0).put(dst);
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        let value = r.varint(field)?;
        u16::try_from(value).map(Self).map_err(|_| DecodeError::InvalidValue { field, value })
    }
}

/// A WebSocket close code (RFC 6455 §7.4), carried in the close frame, not in
/// a protocol frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

/// What a client does after the server closes with a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Reconnect (with backoff and jitter) and resume from the last acked seq.
    Resumable,
    /// Reconnect and resume as for `Resumable`, but only with a fresh token.
    NewToken,
    /// Do not reconnect automatically: a user or a code change is needed.
    Terminal,
}

codes!(CloseCode, Resume:
    /// The session ended as asked.
    NORMAL = 1000, Terminal;
    /// The node is draining (after GOAWAY).
    GOING_AWAY = 1001, Resumable;
    /// WebSocket framing violated RFC 6455.
    PROTOCOL_ERROR = 1002, Terminal;
    /// A text message arrived; this protocol is binary only.
    UNSUPPORTED_DATA = 1003, Terminal;
    /// Invalid UTF-8 in a text or close frame.
    INVALID_PAYLOAD = 1007, Terminal;
    /// A policy was violated (generic).
    POLICY_VIOLATION = 1008, Terminal;
    /// A message exceeded MAX_CLIENT_MESSAGE_LEN.
    MESSAGE_TOO_BIG = 1009, Terminal;
    /// Reported locally, never sent: the peer closed without a status code.
    NO_STATUS = 1005, Resumable;
    /// Reported locally, never sent: the connection dropped without a close frame.
    ABNORMAL = 1006, Resumable;
    /// A server fault.
    INTERNAL_ERROR = 1011, Resumable;
    /// The server is overloaded; back off.
    TRY_AGAIN_LATER = 1013, Resumable;
    /// A frame inside a binary message failed to decode.
    BAD_FRAME = 4000, Terminal;
    /// A frame arrived where it is not allowed.
    UNEXPECTED_FRAME = 4001, Terminal;
    /// No protocol version in common.
    UNSUPPORTED_VERSION = 4002, Terminal;
    /// The token was refused (invalid, unknown key, device mismatch).
    AUTH_FAILED = 4003, Terminal;
    /// The token expired; reconnect with a fresh one.
    AUTH_EXPIRED = 4004, NewToken;
    /// HELLO did not arrive in time.
    AUTH_TIMEOUT = 4005, Resumable;
    /// No frame from the client within the heartbeat timeout.
    HEARTBEAT_TIMEOUT = 4006, Resumable;
    /// A newer connection of the same device replaced this one.
    REPLACED = 4007, Terminal;
    /// The client read too slowly and its outbound queue overflowed.
    SLOW_CONSUMER = 4008, Resumable;
    /// Too many frames; reconnect after a backoff.
    RATE_LIMITED = 4009, Resumable;
    /// The user has too many devices connected or registered.
    TOO_MANY_DEVICES = 4010, Terminal;
);

impl CloseCode {
    /// What a client does after this code. Unknown codes in 4000–4999 (this
    /// protocol's range) are terminal; other unknown codes are transient
    /// WebSocket conditions and resumable.
    pub fn resume(self) -> Resume {
        match Self::KNOWN.iter().find(|(code, _, _)| *code == self) {
            Some((_, _, resume)) => *resume,
            None if (4000..5000).contains(&self.0) => Resume::Terminal,
            None => Resume::Resumable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_spec_section_11() {
        assert_eq!(CloseCode::REPLACED.resume(), Resume::Terminal);
        assert_eq!(CloseCode::SLOW_CONSUMER.resume(), Resume::Resumable);
        assert_eq!(CloseCode::NO_STATUS.resume(), Resume::Resumable);
        assert_eq!(CloseCode::ABNORMAL.resume(), Resume::Resumable);
        // Unknown codes: ours (4000–4999) terminal, WebSocket ones (1012
        // service restart, 1014 bad gateway) resumable.
        assert_eq!(CloseCode(4999).resume(), Resume::Terminal);
        assert_eq!(CloseCode(1012).resume(), Resume::Resumable);
        assert_eq!(CloseCode(1014).resume(), Resume::Resumable);
    }

    #[test]
    fn unknown_error_codes_are_terminal_and_named_by_number() {
        assert_eq!(ErrorCode(999).retry(), Retry::Terminal);
        assert_eq!(ErrorCode::OVERLOADED.retry(), Retry::Retryable);
        assert_eq!(format!("{:?}", ErrorCode(999)), "ErrorCode(999)");
        assert_eq!(format!("{}", ErrorCode::NOT_ADMIN), "NOT_ADMIN(302)");
        assert_eq!(ErrorCode::from_name("NOT_ADMIN"), Some(ErrorCode::NOT_ADMIN));
    }
}
