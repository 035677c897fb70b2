//! Field types: ids, conversations, small enums, and bounded byte, text and list
//! fields.
//!
//! Bounded types check their limit when built ([`Blob::new`], [`Text::new`],
//! [`List::from_items`]) and when decoded, so a frame that exists is a frame the
//! peer accepts. Byte, text and list fields are views into the received frame
//! ([`Bytes`]): decoding copies nothing and allocates nothing.

use std::fmt;
use std::marker::PhantomData;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::reader::Reader;
use crate::varint::{put_varint, varint_len};
use crate::wire::{sealed, Wire};

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl sealed::Sealed for $name {}

        impl Wire for $name {
            fn wire_len(&self) -> usize {
                self.0.wire_len()
            }
            fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
                self.0.put(dst);
            }
            fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
                <$inner>::get(r, field).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user account (varint).
    UserId(u64)
);
id_type!(
    /// One device of a user, numbered from 1; 0 means "every device" where a
    /// frame says so (PREKEY_FETCH) (`u32` varint).
    DeviceId(u32)
);
id_type!(
    /// A group conversation (varint).
    GroupId(u64)
);
id_type!(
    /// A stored message, assigned by the store, unique in the fleet (varint).
    MessageId(u64)
);
id_type!(
    /// Position in one device's inbox; strictly increasing per device (varint).
    Seq(u64)
);
id_type!(
    /// Position of a message in its conversation, assigned by the store; receipts
    /// and read cursors count in it (varint).
    ConvSeq(u64)
);
id_type!(
    /// Milliseconds since the Unix epoch, UTC (varint).
    Timestamp(u64)
);

/// Optional server-to-client traffic a client asks for in HELLO (varint bit set).
/// Unknown bits are ignored by servers, so new ones can be added in v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u64);

impl Capabilities {
    /// RECEIPT frames for messages this user sent.
    pub const RECEIPTS: Self = Self(1 << 0);
    /// PRESENCE frames for subscribed users.
    pub const PRESENCE: Self = Self(1 << 1);
    /// TYPING_NOTIFY frames.
    pub const TYPING: Self = Self(1 << 2);
    /// Media tickets: the client may send MEDIA_UPLOAD and MEDIA_DOWNLOAD, and
    /// gets their tickets (granted only by a server with an object store).
    pub const MEDIA: Self = Self(1 << 3);
    /// All capabilities defined by this crate.
    pub const ALL: Self = Self(0b1111);

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Bits set in both.
    #[must_use]
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
}

impl sealed::Sealed for Capabilities {}

impl Wire for Capabilities {
    fn wire_len(&self) -> usize {
        self.0.wire_len()
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        self.0.put(dst);
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        u64::get(r, field).map(Self)
    }
}

/// Who a message is addressed to, and the conversation it belongs to: one byte
/// tag (`0x01` direct, `0x02` group) followed by the id as a varint.
///
/// Seen from the device reading it: a direct conversation is named by the other
/// user, so a message from A to B arrives at B in `Direct(A)` and at A's other
/// devices in `Direct(B)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conversation {
    /// One-to-one with this user.
    Direct(UserId),
    /// This group.
    Group(GroupId),
}

impl sealed::Sealed for Conversation {}

impl Wire for Conversation {
    fn wire_len(&self) -> usize {
        1 + match self {
            Self::Direct(user) => user.wire_len(),
            Self::Group(group) => group.wire_len(),
        }
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        match self {
            Self::Direct(user) => {
                dst.put_u8(0x01);
                user.put(dst);
            }
            Self::Group(group) => {
                dst.put_u8(0x02);
                group.put(dst);
            }
        }
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        match r.u8(field)? {
            0x01 => UserId::get(r, field).map(Self::Direct),
            0x02 => GroupId::get(r, field).map(Self::Group),
            other => Err(DecodeError::InvalidValue { field, value: other.into() }),
        }
    }
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal => $json:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// Lower-case name used in JSON and SPEC.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $json,)+
                }
            }

            /// The value with this name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($json => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl sealed::Sealed for $name {}

        impl Wire for $name {
            fn wire_len(&self) -> usize {
                1
            }
            fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
                dst.put_u8(*self as u8);
            }
            fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
                match r.u8(field)? {
                    $($value => Ok(Self::$variant),)+
                    other => Err(DecodeError::InvalidValue { field, value: other.into() }),
                }
            }
        }
    };
}

wire_enum!(
    /// Whether a user is connected (one byte).
    PresenceStatus {
        /// No device connected; `last_seen` says since when.
        Offline = 0 => "offline",
        /// At least one device connected.
        Online = 1 => "online",
    }
);

wire_enum!(
    /// Who may see this user's presence (one byte).
    Visibility {
        /// Nobody: subscribers always see `offline` with no last-seen time.
        Nobody = 0 => "nobody",
        /// Every subscriber.
        Everyone = 1 => "everyone",
    }
);

wire_enum!(
    /// What a receipt reports (one byte).
    ReceiptKind {
        /// The reader's device acknowledged the messages (✓✓).
        Delivered = 1 => "delivered",
        /// The reader reported them read.
        Read = 2 => "read",
    }
);

wire_enum!(
    /// A member's role in a group (one byte).
    Role {
        /// May send and leave.
        Member = 0 => "member",
        /// May also add, remove and change roles.
        Admin = 1 => "admin",
    }
);

wire_enum!(
    /// Why a server sends GOAWAY (one byte).
    GoAwayReason {
        /// The node is shutting down or restarting.
        Drain = 1 => "drain",
        /// Sessions are being moved to balance the fleet.
        Rebalance = 2 => "rebalance",
        /// The node sheds load.
        Overload = 3 => "overload",
    }
);

wire_enum!(
    /// What kind of content an uploaded blob holds (one byte). The blob is
    /// encrypted, so the class is the client's word: it names the object's
    /// key prefix, for lifecycle rules and quotas per class.
    MediaClass {
        /// A photo or a sticker.
        Image = 1 => "image",
        /// A video.
        Video = 2 => "video",
        /// A voice note or audio file.
        Audio = 3 => "audio",
        /// Any other file.
        Document = 4 => "document",
    }
);

wire_enum!(
    /// The HTTP method a media ticket is used with (one byte).
    HttpMethod {
        /// `GET`: a download.
        Get = 1 => "GET",
        /// `PUT`: an upload of the whole blob, its length in `Content-Length`.
        Put = 2 => "PUT",
    }
);

/// Length-prefixed opaque bytes of at most `MAX` bytes: a varint length then the
/// bytes. The server never interprets a payload.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Blob<const MAX: usize>(Bytes);

impl<const MAX: usize> Blob<MAX> {
    /// Wraps `bytes`, refusing more than `MAX`.
    pub fn new(bytes: impl Into<Bytes>) -> Result<Self, EncodeError> {
        let bytes = bytes.into();
        if bytes.len() > MAX {
            return Err(EncodeError::FieldTooLong { field: "blob", len: bytes.len(), max: MAX });
        }
        Ok(Self(bytes))
    }

    /// The bytes (shared with the frame they came from).
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Takes the bytes out.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl<const MAX: usize> fmt::Debug for Blob<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl<const MAX: usize> sealed::Sealed for Blob<MAX> {}

impl<const MAX: usize> Wire for Blob<MAX> {
    fn wire_len(&self) -> usize {
        varint_len(self.0.len() as u64) + self.0.len()
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        put_varint(dst, self.0.len() as u64);
        dst.put_slice(&self.0);
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        r.len_prefixed(MAX, field).map(Self)
    }
}

/// Length-prefixed UTF-8 text of at most `MAX` bytes.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text<const MAX: usize>(Bytes);

impl<const MAX: usize> Text<MAX> {
    /// Copies `text`, refusing more than `MAX` bytes.
    pub fn new(text: &str) -> Result<Self, EncodeError> {
        if text.len() > MAX {
            return Err(EncodeError::FieldTooLong { field: "text", len: text.len(), max: MAX });
        }
        Ok(Self(Bytes::copy_from_slice(text.as_bytes())))
    }

    /// Like [`Text::new`], cutting `text` at a character boundary at most `MAX`
    /// bytes long instead of refusing it (for human-readable messages).
    pub fn truncated(text: &str) -> Self {
        let mut end = text.len().min(MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // The loop stopped at a char boundary within `text`.
        debug_assert!(text.is_char_boundary(end));
        Self(Bytes::copy_from_slice(text.as_bytes().get(..end).unwrap_or_default()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Validated when built or decoded; the fallback is unreachable.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const MAX: usize> fmt::Debug for Text<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const MAX: usize> sealed::Sealed for Text<MAX> {}

impl<const MAX: usize> Wire for Text<MAX> {
    fn wire_len(&self) -> usize {
        varint_len(self.0.len() as u64) + self.0.len()
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        put_varint(dst, self.0.len() as u64);
        dst.put_slice(&self.0);
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        let bytes = r.len_prefixed(MAX, field)?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(DecodeError::InvalidUtf8 { field });
        }
        Ok(Self(bytes))
    }
}

/// A varint count followed by that many `T`, at most `MAX`.
///
/// Kept encoded: decoding validates every item once and keeps a view of the
/// bytes; [`List::iter`] decodes items on demand. This keeps a 1024-member list
/// or a 512-delivery sync batch free of allocation on receipt.
pub struct List<T, const MAX: usize> {
    count: usize,
    items: Bytes,
    _item: PhantomData<fn() -> T>,
}

impl<T: Wire, const MAX: usize> List<T, MAX> {
    /// Encodes `items`, refusing more than `MAX`.
    pub fn from_items<'a>(items: impl IntoIterator<Item = &'a T>) -> Result<Self, EncodeError>
    where
        T: 'a,
    {
        let mut buf = BytesMut::new();
        let mut count = 0;
        for item in items {
            count += 1;
            if count > MAX {
                return Err(EncodeError::TooManyItems { field: "list", count, max: MAX });
            }
            buf.reserve(item.wire_len());
            item.put(&mut buf);
        }
        Ok(Self { count, items: buf.freeze(), _item: PhantomData })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The items, decoded one by one.
    pub fn iter(&self) -> ListIter<T> {
        ListIter { reader: Reader::new(self.items.clone()), left: self.count, _item: PhantomData }
    }

    /// The items, decoded into a vector.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }
}

impl<T, const MAX: usize> Default for List<T, MAX> {
    fn default() -> Self {
        Self { count: 0, items: Bytes::new(), _item: PhantomData }
    }
}

impl<T, const MAX: usize> Clone for List<T, MAX> {
    fn clone(&self) -> Self {
        Self { count: self.count, items: self.items.clone(), _item: PhantomData }
    }
}

/// Encodings are canonical, so equal bytes mean equal items.
impl<T, const MAX: usize> PartialEq for List<T, MAX> {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.items == other.items
    }
}

impl<T, const MAX: usize> Eq for List<T, MAX> {}

impl<T: Wire + fmt::Debug, const MAX: usize> fmt::Debug for List<T, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Wire, const MAX: usize> sealed::Sealed for List<T, MAX> {}

impl<T: Wire, const MAX: usize> Wire for List<T, MAX> {
    fn wire_len(&self) -> usize {
        varint_len(self.count as u64) + self.items.len()
    }
    fn put<B: BufMut + ?Sized>(&self, dst: &mut B) {
        put_varint(dst, self.count as u64);
        dst.put_slice(&self.items);
    }
    fn get(r: &mut Reader, field: &'static str) -> Result<Self, DecodeError> {
        let count = r.varint(field)?;
        if count > MAX as u64 {
            return Err(DecodeError::TooManyItems { field, count, max: MAX });
        }
        // Validate every item now so that iteration cannot fail later; each item
        // is at least one byte, so `count` cannot make this loop outrun the body.
        let start = r.remaining();
        let mut probe = Reader::new(r.peek_rest());
        for _ in 0..count {
            T::get(&mut probe, field)?;
        }
        let used = start - probe.remaining();
        let items = r.bytes(used, field)?;
        Ok(Self { count: count as usize, items, _item: PhantomData })
    }
}

/// Iterator over a [`List`].
#[derive(Debug)]
pub struct ListIter<T> {
    reader: Reader,
    left: usize,
    _item: PhantomData<fn() -> T>,
}

impl<T: Wire> Iterator for ListIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Items were validated when the list was built or decoded, so this
        // cannot fail; if it ever did, stop rather than yield garbage.
        let item = T::get(&mut self.reader, "list");
        debug_assert!(item.is_ok(), "validated list item failed to decode: {:?}", item.as_ref().err());
        if item.is_err() {
            self.left = 0;
        }
        item.ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}
