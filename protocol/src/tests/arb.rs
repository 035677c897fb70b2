//! Proptest strategies for every field type; `record!` composes them per frame.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::codes::ErrorCode;
use crate::limits::{MAX_FRAME_LEN, MAX_PAYLOAD};
use crate::types::{
    Blob, Capabilities, ConvSeq, Conversation, DeviceId, GoAwayReason, GroupId, HttpMethod, List, MediaClass,
    MessageId, PresenceStatus, ReceiptKind, Role, Seq, Text, Timestamp, UserId, Visibility,
};
use crate::wire::Wire;

/// A strategy that covers a type's whole value space, edges included.
pub(crate) trait Arb: Sized + std::fmt::Debug {
    fn strategy() -> BoxedStrategy<Self>;
}

/// Varint-sized numbers: small, byte-boundary and full-width values all occur.
fn varint() -> BoxedStrategy<u64> {
    prop_oneof![0..300u64, any::<u64>(), (0..64u32).prop_map(|bits| 1u64 << bits)].boxed()
}

impl Arb for u8 {
    fn strategy() -> BoxedStrategy<Self> {
        // Small values often, so version fields land in the spoken range.
        prop_oneof![0..=3u8, any::<u8>()].boxed()
    }
}

/// Whether a generated frame is one a decoder accepts: everything the encoder
/// produces is, except a HELLO offering no version this crate speaks.
pub(crate) fn is_decodable(frame: &crate::Frame) -> bool {
    use crate::limits::{VERSION_MAX, VERSION_MIN};
    match frame {
        crate::Frame::Hello(h) => {
            h.min_version <= h.max_version && h.min_version <= VERSION_MAX && h.max_version >= VERSION_MIN
        }
        _ => true,
    }
}

impl Arb for bool {
    fn strategy() -> BoxedStrategy<Self> {
        any::<bool>().boxed()
    }
}

impl Arb for u64 {
    fn strategy() -> BoxedStrategy<Self> {
        varint()
    }
}

impl Arb for u32 {
    fn strategy() -> BoxedStrategy<Self> {
        prop_oneof![0..300u32, any::<u32>()].boxed()
    }
}

macro_rules! arb_newtype {
    ($($name:ident),+) => {$(
        impl Arb for $name {
            fn strategy() -> BoxedStrategy<Self> {
                Arb::strategy().prop_map(Self).boxed()
            }
        }
    )+};
}

arb_newtype!(UserId, DeviceId, GroupId, MessageId, Seq, ConvSeq, Timestamp, Capabilities);

macro_rules! arb_enum {
    ($($name:ident),+) => {$(
        impl Arb for $name {
            fn strategy() -> BoxedStrategy<Self> {
                proptest::sample::select($name::ALL).boxed()
            }
        }
    )+};
}

arb_enum!(PresenceStatus, Visibility, ReceiptKind, Role, GoAwayReason, MediaClass, HttpMethod);

impl Arb for ErrorCode {
    fn strategy() -> BoxedStrategy<Self> {
        any::<u16>().prop_map(ErrorCode).boxed()
    }
}

impl Arb for Conversation {
    fn strategy() -> BoxedStrategy<Self> {
        prop_oneof![
            UserId::strategy().prop_map(Conversation::Direct),
            GroupId::strategy().prop_map(Conversation::Group),
        ]
        .boxed()
    }
}

impl<const MAX: usize> Arb for Blob<MAX> {
    fn strategy() -> BoxedStrategy<Self> {
        // Mostly short, sometimes exactly at the limit. A field bounded only
        // by the frame (SEND's payload) cannot reach its limit beside the
        // other fields: its edge is one byte over MAX_PAYLOAD instead.
        let edge = if MAX >= MAX_FRAME_LEN { MAX_PAYLOAD + 1 } else { MAX };
        prop_oneof![
            4 => vec(any::<u8>(), 0..=MAX.min(80)),
            1 => vec(any::<u8>(), edge..=edge),
        ]
        .prop_map(|bytes| Blob::new(bytes).unwrap())
        .boxed()
    }
}

impl<const MAX: usize> Arb for Text<MAX> {
    fn strategy() -> BoxedStrategy<Self> {
        "\\PC{0,80}".prop_map(|text| Text::truncated(&text)).boxed()
    }
}

impl<T: Arb + Wire + 'static, const MAX: usize> Arb for List<T, MAX> {
    fn strategy() -> BoxedStrategy<Self> {
        vec(T::strategy(), 0..=MAX.min(6)).prop_map(|items| List::from_items(&items).unwrap()).boxed()
    }
}

impl<T: Arb + 'static> Arb for Option<T> {
    fn strategy() -> BoxedStrategy<Self> {
        proptest::option::of(T::strategy()).boxed()
    }
}
