//! Label sets of the labelled families: each is a small closed set, so a
//! labelled metric is a fixed array indexed by [`Label::index`] (no map, no
//! lock, no allocation per increment).
//!
//! The gateway's own sets are enums here ([`HandshakeFailure`],
//! [`AuthFailure`], [`DropReason`], [`SessionState`]); frame kinds and close
//! codes come from the `protocol` crate ([`protocol::FrameKind::ALL`],
//! [`protocol::CloseCode::KNOWN`] plus one `other` slot for codes outside the
//! table).

use std::fmt::Write as _;

use protocol::{CloseCode, FrameKind};

/// A closed set of label values, each with a fixed slot.
pub trait Label: Copy {
    /// Number of slots; [`Label::index`] is always below it.
    const COUNT: usize;

    /// This value's slot.
    fn index(self) -> usize;

    /// Writes the label value of slot `index` (unescaped; the renderer escapes).
    /// Writes nothing for an index at or above [`Label::COUNT`].
    fn write_value(index: usize, out: &mut String);
}

/// Defines a label enum with `ALL`, `name()` and its [`Label`] impl.
macro_rules! label_enum {
    ($(#[$meta:meta])* $ty:ident { $($(#[$vmeta:meta])* $variant:ident = $name:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty {
            $($(#[$vmeta])* $variant,)+
        }

        impl $ty {
            /// Every value, in slot order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The label value in the exposition.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }

        impl Label for $ty {
            const COUNT: usize = Self::ALL.len();

            fn index(self) -> usize {
                self as usize
            }

            fn write_value(index: usize, out: &mut String) {
                if let Some(value) = Self::ALL.get(index) {
                    out.push_str(value.name());
                }
            }
        }
    };
}

label_enum! {
    /// Why a WebSocket upgrade failed (`gateway_handshake_failures_total{reason}`).
    /// Values are `gateway_ws::RejectReason::as_str()` plus `timeout` and
    /// `tls`; the gateway's tests check every reason it can emit has a slot.
    HandshakeFailure {
        /// The request head does not parse as HTTP.
        Malformed = "malformed",
        /// The request method is not GET.
        Method = "method",
        /// Not HTTP/1.1.
        HttpVersion = "http_version",
        /// The request path is not the WebSocket endpoint.
        Path = "path",
        /// No `Host` header.
        Host = "host",
        /// The request has a body.
        Body = "body",
        /// `Upgrade: websocket` / `Connection: Upgrade` missing or wrong.
        Upgrade = "upgrade",
        /// `Sec-WebSocket-Version` is not 13.
        WsVersion = "ws_version",
        /// `Sec-WebSocket-Key` is missing or malformed.
        Key = "key",
        /// Too many headers.
        TooManyHeaders = "too_many_headers",
        /// The request head exceeded its size limit.
        TooLarge = "too_large",
        /// The upgrade did not complete before the handshake deadline.
        Timeout = "timeout",
        /// The TLS handshake failed (wss listener).
        Tls = "tls",
    }
}

label_enum! {
    /// Why a HELLO was refused (`gateway_auth_failures_total{reason}`).
    AuthFailure {
        /// The token does not parse.
        Malformed = "malformed",
        /// The signature does not verify.
        BadSignature = "bad_signature",
        /// The token names a signing key this node does not accept.
        UnknownKey = "unknown_key",
        /// The token has expired (beyond the leeway).
        Expired = "expired",
        /// The token is not valid yet (beyond the leeway).
        NotYetValid = "not_yet_valid",
        /// HELLO names a device other than the token's.
        DeviceMismatch = "device_mismatch",
        /// HELLO did not arrive before the auth deadline.
        Timeout = "timeout",
        /// No protocol version in common.
        Version = "version",
        /// Too many logins at once: the HELLO was refused before its token
        /// was checked, with a retry hint (AUTH_ERROR OVERLOADED).
        Overloaded = "overloaded",
    }
}

label_enum! {
    /// Why something was shed instead of delivered (`gateway_drops_total{reason}`).
    DropReason {
        /// A typing notification dropped under back-pressure (best effort).
        Typing = "typing",
        /// A presence update dropped under back-pressure (best effort).
        Presence = "presence",
        /// Live delivery paused because the session's outbound queue is above
        /// the pause mark; the message stays in the store for sync.
        LivePaused = "live_paused",
        /// A worker's inbox was full.
        InboxFull = "inbox_full",
        /// A client exceeded its frame rate or a peer its connection rate.
        RateLimited = "rate_limited",
        /// Another best-effort frame dropped under back-pressure.
        Ephemeral = "ephemeral",
        /// A frame did not fit in the outbound queue: the session was closed
        /// as a slow consumer.
        Overflow = "overflow",
        /// A live entry arrived out of order (one was shed on the way): the
        /// session resyncs from the store.
        LiveGap = "live_gap",
        /// A store request was refused: too many in flight on the worker.
        Backend = "backend",
        /// Queued output made no progress for the write-stall time: the
        /// session was cut.
        WriteStall = "write_stall",
    }
}

label_enum! {
    /// What became of a media ticket request (`gateway_media_tickets_total{result}`).
    MediaResult {
        /// The ticket was issued.
        Granted = "granted",
        /// The blob is over media.max_blob_bytes.
        TooLarge = "too_large",
        /// The user's daily quota is spent.
        QuotaExceeded = "quota_exceeded",
        /// The user asked for too many tickets this minute.
        RateLimited = "rate_limited",
        /// A media id the fleet did not issue, altered or expired.
        UnknownMedia = "unknown_media",
        /// The object store failed its last check.
        StoreUnavailable = "store_unavailable",
    }
}

label_enum! {
    /// Session state of an open connection (`gateway_sessions{state}`).
    SessionState {
        /// TCP (and TLS) accepted, WebSocket upgrade in progress.
        Handshake = "handshake",
        /// Upgraded, waiting for HELLO and its verification.
        Auth = "auth",
        /// Authenticated and routed.
        Live = "live",
        /// GOAWAY sent, waiting for the client to leave.
        Draining = "draining",
    }
}

/// Slot of each frame tag in [`FrameKind::ALL`] (`u8::MAX`: not a frame kind).
const FRAME_SLOTS: [u8; 256] = {
    let mut slots = [u8::MAX; 256];
    let mut i = 0;
    while i < FrameKind::ALL.len() {
        // Const evaluation: an out-of-range index here fails the build, it
        // cannot panic at run time.
        #[allow(clippy::indexing_slicing)]
        {
            slots[FrameKind::ALL[i] as u8 as usize] = i as u8;
        }
        i += 1;
    }
    slots
};

// Every slot fits in the u8 table with u8::MAX left as "none".
const _: () = assert!(FrameKind::ALL.len() < u8::MAX as usize);

/// Frame kinds by SPEC name (`SEND`, `SYNC_BATCH`, ...), slot = position in
/// [`FrameKind::ALL`], found from the tag in O(1).
impl Label for FrameKind {
    const COUNT: usize = FrameKind::ALL.len();

    fn index(self) -> usize {
        // Every FrameKind has a slot (built from ALL above); the fallback only
        // keeps this total.
        FRAME_SLOTS.get(usize::from(self.tag())).map_or(Self::COUNT, |&slot| usize::from(slot))
    }

    fn write_value(index: usize, out: &mut String) {
        if let Some(kind) = FrameKind::ALL.get(index) {
            out.push_str(kind.name());
        }
    }
}

/// Close codes by number (`code="4008"`), slot = position in
/// [`CloseCode::KNOWN`]; codes outside the table share a last slot rendered as
/// `code="other"`. Lookup is a linear scan of the table: closes are rare
/// next to frames.
impl Label for CloseCode {
    const COUNT: usize = CloseCode::KNOWN.len() + 1;

    fn index(self) -> usize {
        CloseCode::KNOWN.iter().position(|(code, _, _)| *code == self).unwrap_or(CloseCode::KNOWN.len())
    }

    fn write_value(index: usize, out: &mut String) {
        match CloseCode::KNOWN.get(index) {
            Some((code, _, _)) => {
                let _ = write!(out, "{}", code.0);
            }
            None if index == CloseCode::KNOWN.len() => out.push_str("other"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<L: Label>(index: usize) -> String {
        let mut out = String::new();
        L::write_value(index, &mut out);
        out
    }

    #[test]
    fn frame_kind_slots_cover_all_kinds() {
        for (i, kind) in FrameKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(value::<FrameKind>(i), kind.name());
        }
        assert_eq!(value::<FrameKind>(FrameKind::COUNT), "");
    }

    #[test]
    fn close_codes_have_an_other_slot() {
        assert_eq!(
            CloseCode::SLOW_CONSUMER.index(),
            CloseCode::KNOWN.iter().position(|(c, _, _)| *c == CloseCode::SLOW_CONSUMER).unwrap()
        );
        assert_eq!(value::<CloseCode>(CloseCode::SLOW_CONSUMER.index()), "4008");
        assert_eq!(CloseCode(4999).index(), CloseCode::COUNT - 1);
        assert_eq!(value::<CloseCode>(CloseCode::COUNT - 1), "other");
        assert_eq!(value::<CloseCode>(CloseCode::COUNT), "");
    }

    #[test]
    fn enum_slots_are_positions() {
        for (i, reason) in HandshakeFailure::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        for (i, reason) in AuthFailure::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        for (i, state) in SessionState::ALL.iter().enumerate() {
            assert_eq!(state.index(), i);
        }
        assert_eq!(value::<DropReason>(DropReason::LivePaused.index()), "live_paused");
    }
}
