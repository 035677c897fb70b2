//! The two macros that turn a field list into a type with its wire encoding.
//!
//! `record!` defines a struct whose encoding is its fields in order, and
//! `frames!` defines every frame kind from one table (tag, SPEC name,
//! direction, fields), generating [`crate::FrameKind`], [`crate::Frame`] and the
//! dispatch between them. Keeping the table in one place is what lets the tests
//! check SPEC.md against the code.

/// A struct encoded as its fields in declaration order.
macro_rules! record {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $crate::wire::sealed::Sealed for $name {}

        impl $crate::wire::Wire for $name {
            fn wire_len(&self) -> usize {
                0 $(+ $crate::wire::Wire::wire_len(&self.$field))*
            }
            fn put<B: bytes::BufMut + ?Sized>(&self, _dst: &mut B) {
                $($crate::wire::Wire::put(&self.$field, _dst);)*
            }
            fn get(
                _r: &mut $crate::reader::Reader,
                _field: &'static str,
            ) -> Result<Self, $crate::error::DecodeError> {
                Ok(Self { $($field: $crate::wire::Wire::get(_r, stringify!($field))?,)* })
            }
        }

        #[cfg(any(test, feature = "json"))]
        impl $crate::json::Json for $name {
            fn to_json(&self) -> serde_json::Value {
                #[allow(unused_mut)]
                let mut map = serde_json::Map::new();
                $(map.insert(stringify!($field).into(), self.$field.to_json());)*
                serde_json::Value::Object(map)
            }
            fn from_json(_value: &serde_json::Value) -> Result<Self, String> {
                Ok(Self {
                    $($field: $crate::json::Json::from_json(
                        _value.get(stringify!($field)).ok_or(concat!("missing field `", stringify!($field), "`"))?,
                    ).map_err(|e| format!("{}: {}", stringify!($field), e))?,)*
                })
            }
        }

        #[cfg(test)]
        impl $crate::tests::arb::Arb for $name {
            fn strategy() -> proptest::strategy::BoxedStrategy<Self> {
                use proptest::strategy::Strategy;
                ($(<$ty as $crate::tests::arb::Arb>::strategy(),)*)
                    .prop_map(|($($field,)*)| Self { $($field,)* })
                    .boxed()
            }
        }
    };
}

/// Every frame kind: `Name = tag, "SPEC_NAME", Direction { fields }`.
macro_rules! frames {
    ($($(#[$meta:meta])* $name:ident = $tag:literal, $spec:literal, $dir:ident {
        $($(#[$fmeta:meta])* $field:ident : $ty:ty,)*
    })+) => {
        $(record!($(#[$meta])* $name { $($(#[$fmeta])* $field: $ty,)* });)+

        /// The one-byte tag that starts every frame.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum FrameKind {
            $(#[doc = $spec] $name = $tag,)+
        }

        impl FrameKind {
            /// Every kind, in tag order.
            pub const ALL: &'static [FrameKind] = &[$(FrameKind::$name),+];

            /// The kind with this tag.
            pub fn from_tag(tag: u8) -> Option<Self> {
                match tag {
                    $($tag => Some(Self::$name),)+
                    _ => None,
                }
            }

            /// The tag byte.
            pub fn tag(self) -> u8 {
                self as u8
            }

            /// The SPEC name (`SEND`, `SYNC_BATCH`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$name => $spec,)+
                }
            }

            /// The kind with this SPEC name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($spec => Some(Self::$name),)+
                    _ => None,
                }
            }

            /// Field names in wire order, as in SPEC.md.
            pub fn fields(self) -> &'static [&'static str] {
                match self {
                    $(Self::$name => &[$(stringify!($field)),*],)+
                }
            }

            /// Who may send it.
            pub fn direction(self) -> Direction {
                match self {
                    $(Self::$name => Direction::$dir,)+
                }
            }
        }

        /// One decoded frame. Byte, text and list fields share the buffer the
        /// frame was decoded from.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Frame {
            $($(#[$meta])* $name($name),)+
        }

        impl Frame {
            /// Its kind.
            pub fn kind(&self) -> FrameKind {
                match self {
                    $(Self::$name(_) => FrameKind::$name,)+
                }
            }

            pub(crate) fn body_len(&self) -> usize {
                match self {
                    $(Self::$name(body) => $crate::wire::Wire::wire_len(body),)+
                }
            }

            pub(crate) fn put_body<B: bytes::BufMut + ?Sized>(&self, dst: &mut B) {
                match self {
                    $(Self::$name(body) => $crate::wire::Wire::put(body, dst),)+
                }
            }

            pub(crate) fn get_body(
                kind: FrameKind,
                r: &mut $crate::reader::Reader,
            ) -> Result<Self, $crate::error::DecodeError> {
                let frame = match kind {
                    $(FrameKind::$name => Self::$name($crate::wire::Wire::get(r, $spec)?),)+
                };
                r.finish(kind.name())?;
                Ok(frame)
            }

            /// A proptest strategy for encodable frames of one kind.
            #[cfg(test)]
            pub(crate) fn strategy(kind: FrameKind) -> proptest::strategy::BoxedStrategy<Self> {
                use proptest::strategy::Strategy;
                match kind {
                    $(FrameKind::$name => <$name as $crate::tests::arb::Arb>::strategy()
                        .prop_map(Self::$name)
                        .prop_filter("body over MAX_FRAME_LEN", |f| {
                            f.body_len() <= $crate::limits::MAX_FRAME_LEN
                        })
                        .prop_filter("HELLO without a spoken version", $crate::tests::arb::is_decodable)
                        .boxed(),)+
                }
            }

            #[cfg(any(test, feature = "json"))]
            pub(crate) fn body_to_json(&self) -> serde_json::Value {
                match self {
                    $(Self::$name(body) => $crate::json::Json::to_json(body),)+
                }
            }

            #[cfg(any(test, feature = "json"))]
            pub(crate) fn body_from_json(
                kind: FrameKind,
                value: &serde_json::Value,
            ) -> Result<Self, String> {
                Ok(match kind {
                    $(FrameKind::$name => Self::$name($crate::json::Json::from_json(value)?),)+
                })
            }
        }

        $(impl From<$name> for Frame {
            fn from(body: $name) -> Self {
                Self::$name(body)
            }
        })+
    };
}
