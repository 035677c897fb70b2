//! [`WsError`]: how a client's frames broke RFC 6455, with the close code the
//! server answers each fault with. (A refused upgrade is not an error of this
//! kind but a [`Rejection`](crate::handshake::Rejection), answered in HTTP.)

/// A fault in the client's frames. Every one of them ends the connection: the
/// server sends a close frame with [`close_code`](Self::close_code) and then
/// closes (RFC 6455 §7.1.7 "fail the WebSocket connection").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// A client frame without the mask bit (RFC 6455 §5.1).
    #[error("client frame is not masked")]
    Unmasked,
    /// RSV1–3 set, but no extension was negotiated; holds the three bits.
    #[error("reserved bits {0:#05b} set")]
    ReservedBits(u8),
    /// An opcode that RFC 6455 reserves (3–7, 0xB–0xF).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame with more than 125 payload bytes.
    #[error("control frame longer than 125 bytes")]
    ControlTooLong,
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A continuation frame with no fragmented message in flight.
    #[error("continuation frame outside a fragmented message")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is in flight.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A 64-bit length with its most significant bit set.
    #[error("frame length over 2^63 - 1")]
    LengthOverflow,
    /// A close frame with a 1-byte payload (a code takes 2).
    #[error("close frame payload of 1 byte")]
    CloseTooShort,
    /// A close code that may not be sent (see [`is_valid_close_code`](crate::frame::is_valid_close_code)).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A text message that is not UTF-8 (found as early as the bytes allow, even
    /// before the last fragment).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A close reason that is not UTF-8.
    #[error("invalid UTF-8 in a close reason")]
    InvalidCloseReason,
    /// A message over the reader's limit, found from a frame header before its
    /// payload is buffered. `len` is the size announced so far (bytes already
    /// assembled plus this frame's length, saturating).
    #[error("message of {len} bytes or more, over the limit of {limit}")]
    MessageTooBig {
        /// Bytes the message has at least.
        len: u64,
        /// The reader's `max_message`.
        limit: usize,
    },
}

impl WsError {
    /// The close code to send: 1002 protocol error, 1007 invalid payload data,
    /// 1009 message too big (RFC 6455 §7.4.1, SPEC §11).
    pub const fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason => 1007,
            Self::MessageTooBig { .. } => 1009,
            Self::Unmasked
            | Self::ReservedBits(_)
            | Self::ReservedOpcode(_)
            | Self::ControlTooLong
            | Self::FragmentedControl
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::LengthOverflow
            | Self::CloseTooShort
            | Self::InvalidCloseCode(_) => 1002,
        }
    }

    /// A stable snake_case label, for metrics and logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Unmasked => "unmasked",
            Self::ReservedBits(_) => "reserved_bits",
            Self::ReservedOpcode(_) => "reserved_opcode",
            Self::ControlTooLong => "control_too_long",
            Self::FragmentedControl => "fragmented_control",
            Self::UnexpectedContinuation => "unexpected_continuation",
            Self::ExpectedContinuation => "expected_continuation",
            Self::LengthOverflow => "length_overflow",
            Self::CloseTooShort => "close_too_short",
            Self::InvalidCloseCode(_) => "invalid_close_code",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidCloseReason => "invalid_close_reason",
            Self::MessageTooBig { .. } => "message_too_big",
        }
    }
}
