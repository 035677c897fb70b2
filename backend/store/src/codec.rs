//! Key layout and value encodings. Every integer in a key is big-endian and
//! fixed-width, so lexicographic key order is numeric order and a range scan
//! over a prefix walks an inbox or a conversation log in seq order.
//!
//! The layout table is in the crate README; the functions here are the only
//! place that builds or parses key and value bytes.

use protocol::{Conversation, DeviceId, GroupId, UserId};
use smallvec::SmallVec;

use crate::api::StoreError;
use crate::error::EngineError;

/// Meta keys (first byte): small, hot records the writer caches.
pub(crate) mod meta {
    /// Next message id counter.
    pub(crate) const NEXT_MESSAGE: &[u8] = b"M";
    /// Next group id counter.
    pub(crate) const NEXT_GROUP: &[u8] = b"N";
    /// When the database was last reopened after a failure (the write that
    /// shows it can write again).
    pub(crate) const REOPENED: &[u8] = b"R";
    /// `U user` → registered device ids.
    pub(crate) const DEVICES: u8 = b'U';
    /// `D user device` → device state (head, acked, connect time).
    pub(crate) const DEVICE: u8 = b'D';
    /// `S conv` → last conv_seq of the conversation.
    pub(crate) const CONV_SEQ: u8 = b'S';
    /// `G group` → group record.
    pub(crate) const GROUP: u8 = b'G';
    /// `V user` → visibility.
    pub(crate) const VISIBILITY: u8 = b'V';
    /// `C user conv kind` → a group cursor as databases written before
    /// `GROUP_CURSOR` keep it (read, never written; see `group_cursors`).
    pub(crate) const CURSOR: u8 = b'C';
    /// `K group user kind` → a member's cursor in a group, with its short
    /// histories (`group_cursors`).
    pub(crate) const GROUP_CURSOR: u8 = b'K';
    /// `J user group` → (nothing): the user is or was a member of the group.
    pub(crate) const MEMBERSHIP: u8 = b'J';
    /// `L user conv` → the last conv_seq entered for the user by an Enter
    /// step from another shard (`fanout`; several writers only).
    pub(crate) const ENTERED: u8 = b'L';
    /// `P user peer kind` → the user's cursor in the pair with a peer of
    /// another shard (`cursors`; several writers only: with one, the
    /// note in the peer's mailbox is the cursor's home).
    pub(crate) const PAIR_CURSOR: u8 = b'P';
}

/// Prekey keys (first byte).
pub(crate) mod prekey {
    /// `I user device` → identity key, signed prekey, stock.
    pub(crate) const IDENTITY: u8 = b'I';
    /// `O user device id` → one-time prekey.
    pub(crate) const ONE_TIME: u8 = b'O';
}

/// A conversation named independently of who looks at it: the unordered user
/// pair of a direct conversation, or the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ConvKey {
    /// Direct conversation between two users (lower id first).
    Pair(UserId, UserId),
    /// Group conversation.
    Group(GroupId),
}

/// `ConvKey`'s first byte: a pair, or a group.
const PAIR_TAG: u8 = 1;
const GROUP_TAG: u8 = 2;

impl ConvKey {
    /// The conversation `user` names `view`.
    pub(crate) fn of(user: UserId, view: Conversation) -> Self {
        match view {
            Conversation::Direct(other) => Self::Pair(user.min(other), user.max(other)),
            Conversation::Group(group) => Self::Group(group),
        }
    }

    /// Appends the key bytes (tag 1 + two users, or tag 2 + group).
    pub(crate) fn put(self, out: &mut Key) {
        match self {
            Self::Pair(a, b) => {
                out.push(PAIR_TAG);
                out.extend_from_slice(&a.0.to_be_bytes());
                out.extend_from_slice(&b.0.to_be_bytes());
            }
            Self::Group(group) => {
                out.push(GROUP_TAG);
                out.extend_from_slice(&group.0.to_be_bytes());
            }
        }
    }

    /// Reads a key written by [`ConvKey::put`].
    pub(crate) fn get(dec: &mut Dec<'_>) -> Result<Self, StoreError> {
        match dec.u8()? {
            PAIR_TAG => Ok(Self::Pair(UserId(dec.u64()?), UserId(dec.u64()?))),
            GROUP_TAG => Ok(Self::Group(GroupId(dec.u64()?))),
            _ => Err(corrupt("conversation key")),
        }
    }
}

/// Bytes a [`Key`] keeps inline: every key of the store fits (the longest,
/// a pair conversation's log entry and a mailbox note, are 25 and 26 bytes).
const KEY_INLINE: usize = 32;

/// A key, kept inline: building one, copying it into a batch's undo log and
/// keeping it in the writer's caches allocate nothing (a longer one would
/// move to the heap).
pub(crate) type Key = SmallVec<[u8; KEY_INLINE]>;

/// Builds a key ([`Enc::key`]) or a value ([`Enc::done`]). Up to
/// [`KEY_INLINE`] bytes it builds inline, so a short value is then allocated
/// once at its exact size (the writer's caches keep values as they are).
#[derive(Debug, Default)]
pub(crate) struct Enc(Key);

impl Enc {
    /// Starts with a one-byte tag.
    pub(crate) fn tag(tag: u8) -> Self {
        Self::default().u8(tag)
    }
    /// Appends a byte.
    pub(crate) fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    /// Appends a big-endian u32.
    pub(crate) fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian u64.
    pub(crate) fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a user id.
    pub(crate) fn user(self, user: UserId) -> Self {
        self.u64(user.0)
    }
    /// Appends a device id.
    pub(crate) fn device(self, device: DeviceId) -> Self {
        self.u32(device.0)
    }
    /// Appends a conversation key.
    pub(crate) fn conv(mut self, conv: ConvKey) -> Self {
        conv.put(&mut self.0);
        self
    }
    /// Appends a conversation as a device sees it (tag + id, 9 bytes).
    pub(crate) fn view(self, view: Conversation) -> Self {
        match view {
            Conversation::Direct(user) => self.u8(1).u64(user.0),
            Conversation::Group(group) => self.u8(2).u64(group.0),
        }
    }
    /// Appends bytes with a u32 length prefix.
    pub(crate) fn bytes(self, bytes: &[u8]) -> Self {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.u32(len).raw(bytes)
    }
    /// Appends raw bytes (the rest of a value). Room for exactly them is
    /// made first: `SmallVec` grows to the next power of two, which would
    /// hold up to twice a message body until its batch commits.
    pub(crate) fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.reserve_exact(bytes.len());
        self.0.extend_from_slice(bytes);
        self
    }
    /// The bytes, as a value.
    pub(crate) fn done(self) -> Vec<u8> {
        self.0.into_vec()
    }
    /// The bytes, as a key.
    pub(crate) fn key(self) -> Key {
        self.0
    }
}

/// Reads a key or value; a short or malformed one is [`StoreError::Engine`]
/// (only this crate writes these bytes, so it means corruption).
#[derive(Debug)]
pub(crate) struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    /// Reads `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }
    /// Skips `n` bytes.
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), StoreError> {
        self.take(n).map(|_| ())
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt("short record"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    /// Reads a byte.
    pub(crate) fn u8(&mut self) -> Result<u8, StoreError> {
        let (&first, rest) = self.0.split_first().ok_or_else(|| corrupt("short record"))?;
        self.0 = rest;
        Ok(first)
    }
    /// Reads a big-endian u32.
    pub(crate) fn u32(&mut self) -> Result<u32, StoreError> {
        let (head, rest) = self.0.split_first_chunk::<4>().ok_or_else(|| corrupt("short record"))?;
        self.0 = rest;
        Ok(u32::from_be_bytes(*head))
    }
    /// Reads a big-endian u64.
    pub(crate) fn u64(&mut self) -> Result<u64, StoreError> {
        let (head, rest) = self.0.split_first_chunk::<8>().ok_or_else(|| corrupt("short record"))?;
        self.0 = rest;
        Ok(u64::from_be_bytes(*head))
    }
    /// Reads a conversation as a device sees it.
    pub(crate) fn view(&mut self) -> Result<Conversation, StoreError> {
        match self.u8()? {
            1 => Ok(Conversation::Direct(UserId(self.u64()?))),
            2 => Ok(Conversation::Group(GroupId(self.u64()?))),
            _ => Err(corrupt("conversation")),
        }
    }
    /// Reads bytes written by [`Enc::bytes`].
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.u32()?;
        self.take(len as usize)
    }
    /// The unread rest.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.0
    }
    /// Whether everything was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A corruption error.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Engine(EngineError::corrupt(what))
}

/// Key of a device's inbox entry: `user device seq`.
pub(crate) fn inbox_key(user: UserId, device: DeviceId, seq: u64) -> Key {
    Enc::default().user(user).device(device).u64(seq).key()
}

/// Key of a message body (`Messages`) or of its reference count (`Refs`).
pub(crate) fn message_key(id: u64) -> Key {
    Enc::default().u64(id).key()
}

/// Key of a device record in meta.
pub(crate) fn device_key(user: UserId, device: DeviceId) -> Key {
    Enc::tag(meta::DEVICE).user(user).device(device).key()
}

/// Key of a user's device list in meta.
pub(crate) fn devices_key(user: UserId) -> Key {
    Enc::tag(meta::DEVICES).user(user).key()
}

/// Key of a group record in meta.
pub(crate) fn group_key(group: GroupId) -> Key {
    Enc::tag(meta::GROUP).u64(group.0).key()
}

/// Key of a conversation's last conv_seq in meta.
pub(crate) fn conv_seq_key(conv: ConvKey) -> Key {
    Enc::tag(meta::CONV_SEQ).conv(conv).key()
}

/// Key of a conversation log entry: `conv conv_seq`.
pub(crate) fn convlog_key(conv: ConvKey, conv_seq: u64) -> Key {
    Enc::default().conv(conv).u64(conv_seq).key()
}

/// Bytes of a conversation-log entry before the body it may carry
/// (message id, author, device): what the writer's cache keeps of one.
pub(crate) const LOG_CACHED: usize = 8 + 8 + 4;

/// Whether a conversation-log key is a group's (it starts with its `ConvKey`).
pub(crate) fn is_group_convlog_key(key: &[u8]) -> bool {
    key.first() == Some(&GROUP_TAG)
}

/// Whether a mailbox key (`to · view · owner · kind`) is the home of a pair
/// cursor: its view is the direct conversation with its owner (see
/// `cursors`).
pub(crate) fn is_pair_cursor_home(key: &[u8]) -> bool {
    key.len() == 26 && key.get(8) == Some(&1) && key.get(9..17) == key.get(17..25)
}

/// Key of a dedup record: `user device client_id`.
pub(crate) fn dedup_key(user: UserId, device: DeviceId, client_id: u64) -> Key {
    Enc::default().user(user).device(device).u64(client_id).key()
}

/// Key of a device's prekey identity record.
pub(crate) fn identity_key(user: UserId, device: DeviceId) -> Key {
    Enc::tag(prekey::IDENTITY).user(user).device(device).key()
}

/// Key of a one-time prekey.
pub(crate) fn one_time_key(user: UserId, device: DeviceId, id: u32) -> Key {
    Enc::tag(prekey::ONE_TIME).user(user).device(device).u32(id).key()
}

/// The smallest key above every key starting with `prefix` (for range ends).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xFF: no finite upper bound; an empty end means "unbounded" to callers.
    Vec::new()
}

/// A device's state record: inbox head, acked cursor, last connect time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DeviceState {
    /// Highest seq given.
    pub(crate) head: u64,
    /// Highest seq acked.
    pub(crate) acked: u64,
    /// Time of the last Connect (ms).
    pub(crate) connected: u64,
}

impl DeviceState {
    /// Encodes.
    pub(crate) fn encode(self) -> Vec<u8> {
        Enc::default().u64(self.head).u64(self.acked).u64(self.connected).done()
    }
    /// Decodes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut dec = Dec::new(bytes);
        Ok(Self { head: dec.u64()?, acked: dec.u64()?, connected: dec.u64()? })
    }
}

/// An inbox entry's value: a header (what an Ack and the caches need) and,
/// for a message with this entry as its only one, the body itself.
///
/// A body with one inbox entry lives in it (a 1:1 message to a user with one
/// device, most messages): its Send writes no `messages` key and its Ack
/// deletes none and reads no count. Entries written before bodies moved in
/// are the bare header; so is any entry of a message with several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The message it points to.
    pub(crate) message: u64,
    /// The conversation as the device sees it.
    pub(crate) view: Conversation,
    /// The message's conv_seq.
    pub(crate) conv_seq: u64,
    /// The message's author.
    pub(crate) sender: UserId,
    /// When stored (ms), for expiry; also the message's server time.
    pub(crate) time: u64,
    /// Whether the body follows the header ([`Entry::inline_body`]).
    pub(crate) inline: bool,
}

/// Bytes of an entry's header: message id, view, conv_seq, sender, time.
const ENTRY_HEADER: usize = 8 + 9 + 8 + 8 + 8;

/// The tag after the header of an entry that holds its body.
const INLINE_BODY: u8 = 1;

/// Bytes of an entry the writer's cache keeps: the header and the tag, never
/// a body (an offline device's entries would otherwise hold their payloads
/// in memory until it comes back).
pub(crate) const ENTRY_CACHED: usize = ENTRY_HEADER + 1;

impl Entry {
    /// Encodes the header (and the tag, if the body follows).
    pub(crate) fn encode(self) -> Vec<u8> {
        self.encoder().done()
    }

    fn encoder(self) -> Enc {
        let enc = Enc::default()
            .u64(self.message)
            .view(self.view)
            .u64(self.conv_seq)
            .user(self.sender)
            .u64(self.time);
        if self.inline {
            enc.u8(INLINE_BODY)
        } else {
            enc
        }
    }

    /// Encodes an entry holding its message's body.
    pub(crate) fn encode_with_body(self, sender_device: DeviceId, payload: &[u8]) -> Vec<u8> {
        Self { inline: true, ..self }.encoder().device(sender_device).raw(payload).done()
    }

    /// Decodes the header.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut dec = Dec::new(bytes);
        let mut entry = Self {
            message: dec.u64()?,
            view: dec.view()?,
            conv_seq: dec.u64()?,
            sender: UserId(dec.u64()?),
            time: dec.u64()?,
            inline: false,
        };
        if !dec.is_empty() {
            if dec.u8()? != INLINE_BODY {
                return Err(corrupt("inbox entry"));
            }
            entry.inline = true;
        }
        Ok(entry)
    }

    /// The body a stored entry holds: its author's device and the payload
    /// (`None`: the body is in `messages`). Never called on the writer's
    /// cached copy, which keeps the tag without the body: a tag with no body
    /// after it is corruption.
    pub(crate) fn inline_body(bytes: &[u8]) -> Result<Option<(DeviceId, &[u8])>, StoreError> {
        match bytes.get(ENTRY_CACHED..) {
            None => Ok(None),
            Some(rest) => {
                let mut dec = Dec::new(rest);
                Ok(Some((DeviceId(dec.u32()?), dec.rest())))
            }
        }
    }
}

/// Seq of an inbox key (its last 8 bytes).
pub(crate) fn inbox_key_seq(key: &[u8]) -> Result<u64, StoreError> {
    let mut dec = Dec::new(key);
    dec.skip(12)?;
    dec.u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_keys_sort_numerically() {
        let a = inbox_key(UserId(7), DeviceId(1), 255);
        let b = inbox_key(UserId(7), DeviceId(1), 256);
        let c = inbox_key(UserId(7), DeviceId(2), 1);
        assert!(a < b && b < c);
        assert_eq!(inbox_key_seq(&b).unwrap(), 256);
    }

    #[test]
    fn a_long_value_is_built_at_its_exact_size() {
        let payload = vec![7u8; 40_000];
        let value = Enc::default().u64(1).u64(2).raw(&payload).done();
        assert_eq!(value.len(), 16 + payload.len());
        assert_eq!(value.capacity(), value.len());
        let short = Enc::default().u64(1).done();
        assert_eq!((short.len(), short.capacity()), (8, 8));
    }

    #[test]
    fn pair_key_is_unordered() {
        let ab = ConvKey::of(UserId(1), Conversation::Direct(UserId(2)));
        let ba = ConvKey::of(UserId(2), Conversation::Direct(UserId(1)));
        assert_eq!(ab, ba);
        let mut bytes = Key::new();
        ab.put(&mut bytes);
        assert_eq!(ConvKey::get(&mut Dec::new(&bytes)).unwrap(), ab);
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(&[1, 0xFF]), vec![2]);
        assert!(prefix_end(&[0xFF]).is_empty());
        let p = [3u8, 4];
        assert!(p.as_slice() < prefix_end(&p).as_slice());
    }

    /// An entry with its body decodes to the same header as one without,
    /// flagged; the cached prefix keeps the flag and drops the body; an
    /// entry written before bodies moved in (the bare header) still reads.
    #[test]
    fn an_entry_carries_its_body_after_the_header() {
        let entry = Entry {
            message: 9,
            view: Conversation::Direct(UserId(3)),
            conv_seq: 4,
            sender: UserId(3),
            time: 77,
            inline: false,
        };
        let bare = entry.encode();
        assert_eq!(bare.len(), ENTRY_HEADER);
        assert_eq!(Entry::decode(&bare).unwrap(), entry);
        assert_eq!(Entry::inline_body(&bare).unwrap(), None);

        let full = entry.encode_with_body(DeviceId(2), b"hello");
        let decoded = Entry::decode(&full).unwrap();
        assert_eq!(decoded, Entry { inline: true, ..entry });
        assert_eq!(Entry::inline_body(&full).unwrap(), Some((DeviceId(2), &b"hello"[..])));
        let cached = full.get(..ENTRY_CACHED).unwrap();
        assert!(Entry::decode(cached).unwrap().inline, "the cache keeps the tag");
        assert!(Entry::inline_body(cached).is_err(), "a stored tag without its body is corruption");
        assert_eq!(
            Entry::inline_body(&entry.encode_with_body(DeviceId(2), b"")).unwrap(),
            Some((DeviceId(2), &b""[..]))
        );

        let mut bad = bare.clone();
        bad.push(7);
        assert!(Entry::decode(&bad).is_err(), "an unknown tag is corruption");
    }

    #[test]
    fn short_values_are_corruption_not_panics() {
        assert!(Entry::decode(&[1, 2, 3]).is_err());
        assert!(DeviceState::decode(&[]).is_err());
    }
}
