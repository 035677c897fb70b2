//! Media ids: what the server issues with an upload ticket and accepts in a
//! download request. An id is signed with the fleet's media key, so a
//! download ticket is granted only for an id the fleet issued, unaltered; it
//! carries what the download needs (the object's name is derived from it,
//! the size is announced from it), so no lookup is made.
//!
//! Layout (at most 76 bytes, under the protocol's `MAX_MEDIA_ID`):
//! `01` (layout version) · class (1 byte) · user (varint) · issued at (unix
//! seconds, varint) · size (varint) · 12 random bytes · HMAC-SHA256 of all
//! that (32 bytes).

use protocol::{put_varint, read_varint, MediaClass, MAX_VARINT_LEN};
use ring::hmac;

/// Layout version of the ids this build issues.
const LAYOUT: u8 = 1;
/// Random bytes that make an object's name unguessable and unique.
pub(crate) const RANDOM_LEN: usize = 12;
const TAG_LEN: usize = 32;
/// Longest id of this layout.
pub(crate) const MAX_LEN: usize = 2 + 3 * MAX_VARINT_LEN + RANDOM_LEN + TAG_LEN;

const _: () = assert!(MAX_LEN <= protocol::limits::MAX_MEDIA_ID);

/// What a media id says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// What the blob holds.
    pub class: MediaClass,
    /// The uploader.
    pub user: u64,
    /// When the upload ticket was issued, unix seconds.
    pub issued_s: u64,
    /// The blob's size, bytes (binding: the upload URL is signed with it).
    pub size: u64,
    /// Makes the object's name unique and unguessable.
    pub random: [u8; RANDOM_LEN],
}

impl MediaRef {
    /// The id's bytes, signed with `key`.
    pub fn seal(&self, key: &hmac::Key) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_LEN);
        out.push(LAYOUT);
        out.push(self.class as u8);
        put_varint(&mut out, self.user);
        put_varint(&mut out, self.issued_s);
        put_varint(&mut out, self.size);
        out.extend_from_slice(&self.random);
        let tag = hmac::sign(key, &out);
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Reads an id this fleet issued with `key`; `None` for anything else (a
    /// forged or altered id, another layout, garbage).
    pub fn open(bytes: &[u8], key: &hmac::Key) -> Option<Self> {
        let (signed, tag) = bytes.split_at_checked(bytes.len().checked_sub(TAG_LEN)?)?;
        hmac::verify(key, signed, tag).ok()?;
        let (&layout, rest) = signed.split_first()?;
        let (&class, mut rest) = rest.split_first()?;
        if layout != LAYOUT {
            return None;
        }
        let class = *MediaClass::ALL.iter().find(|c| **c as u8 == class)?;
        let mut varint = || {
            let (value, len) = read_varint(rest, "media_id").ok()??;
            rest = rest.get(len..)?;
            Some(value)
        };
        let (user, issued_s, size) = (varint()?, varint()?, varint()?);
        let random = <[u8; RANDOM_LEN]>::try_from(rest).ok()?;
        Some(Self { class, user, issued_s, size, random })
    }

    /// The object's name in the bucket, under `prefix`: by class, then
    /// uploader, then issue time, so that lifecycle rules and audits can
    /// select by prefix.
    pub fn object_key(&self, prefix: &str) -> String {
        let mut key = format!("{prefix}{}/{}/{}-", self.class.name(), self.user, self.issued_s);
        for byte in self.random {
            key.push_str(&format!("{byte:02x}"));
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[byte; 32])
    }

    fn sample() -> MediaRef {
        MediaRef {
            class: MediaClass::Audio,
            user: u64::MAX,
            issued_s: 1_767_225_600,
            size: 5 << 30,
            random: [7; 12],
        }
    }

    #[test]
    fn an_id_opens_with_its_key_only() {
        let id = sample().seal(&key(1));
        assert!(id.len() <= MAX_LEN);
        assert_eq!(MediaRef::open(&id, &key(1)), Some(sample()));
        assert_eq!(MediaRef::open(&id, &key(2)), None);
    }

    #[test]
    fn every_altered_byte_and_every_truncation_is_refused() {
        let id = sample().seal(&key(1));
        for at in 0..id.len() {
            let mut altered = id.clone();
            altered[at] ^= 0x01;
            assert_eq!(MediaRef::open(&altered, &key(1)), None, "byte {at}");
            assert_eq!(MediaRef::open(&id[..at], &key(1)), None, "first {at} bytes");
        }
    }

    #[test]
    fn the_object_key_is_derived_from_the_id() {
        let key = sample().object_key("media/");
        assert_eq!(key, "media/audio/18446744073709551615/1767225600-070707070707070707070707");
    }
}
