//! Typed errors of the codec.
//!
//! [`DecodeError`] is malformed input from the peer: every variant names the
//! field where decoding stopped, and [`DecodeError::name`] is the stable name used
//! by `testdata/vectors.json` and `SPEC.md`. An incomplete frame is not an error:
//! the decoder returns `Ok(None)` and waits for more bytes.
//!
//! [`EncodeError`] is a local mistake: a value that would produce a frame the
//! peer must reject. Constructors of bounded fields return it, so a frame that
//! exists can be encoded (only its total length is checked at encode time).

/// Defines [`DecodeError`] and, from the same list, [`DecodeError::name`] and
/// [`DecodeError::NAMES`], so the stable names cannot drift from the variants.
macro_rules! decode_errors {
    ($($(#[$meta:meta])* $name:ident $({ $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* })? $(($tuple:ty))?,)+) => {
        /// The peer sent bytes that are not a valid v1 frame.
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum DecodeError {
            $($(#[$meta])* $name $({ $($(#[$fmeta])* $field: $ty,)* })? $(($tuple))?,)+
        }

        impl DecodeError {
            /// Every error name, in SPEC order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),+];

            /// Stable name of the error, as used in `SPEC.md` and the golden vectors.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$name { .. } => stringify!($name),)+
                }
            }
        }
    };
}

decode_errors! {
    /// The first byte of a frame is not a defined frame kind.
    #[error("frame kind 0x{0:02x} is not defined in protocol v1")]
    UnknownKind(u8),
    /// A varint has more than 10 bytes or a value above `u64::MAX`.
    #[error("varint in `{field}` overflows 64 bits")]
    VarintOverflow {
        /// Field being read.
        field: &'static str,
    },
    /// A varint is longer than the minimal encoding of its value.
    #[error("varint in `{field}` is not minimally encoded")]
    NonCanonicalVarint {
        /// Field being read.
        field: &'static str,
    },
    /// The frame header announces a body longer than the limit.
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced body length.
        len: u64,
        /// Limit in force.
        max: usize,
    },
    /// The frame body ended inside a field.
    #[error("frame body ends inside `{field}`")]
    Truncated {
        /// Field being read.
        field: &'static str,
    },
    /// Bytes are left in the body after the last field of the frame.
    #[error("{extra} bytes follow the last field of {kind}")]
    TrailingBytes {
        /// Frame kind (SPEC name).
        kind: &'static str,
        /// Number of unread bytes.
        extra: usize,
    },
    /// A length-prefixed field is longer than its limit.
    #[error("`{field}` is {len} bytes, limit {max}")]
    FieldTooLong {
        /// Field being read.
        field: &'static str,
        /// Announced length.
        len: u64,
        /// Limit of the field.
        max: usize,
    },
    /// A list holds more items than its limit.
    #[error("`{field}` holds {count} items, limit {max}")]
    TooManyItems {
        /// Field being read.
        field: &'static str,
        /// Announced count.
        count: u64,
        /// Limit of the list.
        max: usize,
    },
    /// A text field is not UTF-8.
    #[error("`{field}` is not valid UTF-8")]
    InvalidUtf8 {
        /// Field being read.
        field: &'static str,
    },
    /// A field holds a value outside its defined set (an enum tag, a boolean
    /// other than 0 or 1, an id wider than its type).
    #[error("`{field}` has undefined value {value}")]
    InvalidValue {
        /// Field being read.
        field: &'static str,
        /// The value read.
        value: u64,
    },
    /// A HELLO offers no protocol version this crate speaks (checked before the
    /// rest of the HELLO, whose layout may differ in other versions).
    #[error("HELLO offers versions {min}..={max}, none of which is spoken here")]
    UnsupportedVersion {
        /// The HELLO's `min_version`.
        min: u8,
        /// The HELLO's `max_version`.
        max: u8,
    },
    /// A WebSocket message ended in the middle of a frame (a frame never spans
    /// two messages).
    #[error("message ends inside a frame")]
    PartialFrame,
    /// A WebSocket message carries more frames than the limit.
    #[error("message holds more than {max} frames")]
    TooManyFrames {
        /// Limit in force.
        max: usize,
    },
    /// A WebSocket message carries no frame at all.
    #[error("message holds no frame")]
    EmptyMessage,
}

/// A value that cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A bounded field is longer than its limit.
    #[error("`{field}` is {len} bytes, limit {max}")]
    FieldTooLong {
        /// Field type being built.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Its limit.
        max: usize,
    },
    /// A list has more items than its limit.
    #[error("`{field}` has {count} items, limit {max}")]
    TooManyItems {
        /// List type being built.
        field: &'static str,
        /// Its length.
        count: usize,
        /// Its limit.
        max: usize,
    },
    /// The caller's buffer has no room for the whole frame.
    #[error("frame needs {needed} bytes, buffer has {available}")]
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer can take.
        available: usize,
    },
    /// The whole frame body would exceed the frame limit.
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Body length.
        len: usize,
        /// Limit.
        max: usize,
    },
}
