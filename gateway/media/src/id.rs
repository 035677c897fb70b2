//! Media ids: what the server issues with an upload ticket and accepts in a
//! download request. An id is sealed with the fleet's media key
//! (ChaCha20-Poly1305): a download ticket is granted only for an id the
//! fleet issued, unaltered, and the id carries what the download needs (the
//! object's name is derived from it, the size is announced from it), so no
//! lookup is made. Sealed, not only signed: who uploaded, when and how much
//! is readable by the fleet alone, not by whoever holds the id, and the
//! object's name in the bucket (in every URL and in the store's logs) is
//! the id's random part, which says nothing of the uploader.
//!
//! Layout (60 bytes at most, under the protocol's `MAX_MEDIA_ID`): `02`
//! (layout version) · 12 random bytes (the nonce, and the object's name) ·
//! sealed [class (1 byte) · user (varint) · issued at (unix seconds,
//! varint) · size (varint)] · 16-byte tag.

use protocol::{put_varint, read_varint, MediaClass, MAX_VARINT_LEN};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;

/// Layout version of the ids this build issues.
const LAYOUT: u8 = 2;
/// Random bytes that make an id's nonce and its object's name.
pub(crate) const RANDOM_LEN: usize = NONCE_LEN;
const TAG_LEN: usize = 16;
/// Longest id of this layout.
pub(crate) const MAX_LEN: usize = 1 + RANDOM_LEN + 1 + 3 * MAX_VARINT_LEN + TAG_LEN;

const _: () = assert!(MAX_LEN <= protocol::limits::MAX_MEDIA_ID);

/// The key media ids are sealed with, derived from the fleet's media id key
/// (never printed).
pub struct IdKey(LessSafeKey);

impl IdKey {
    /// The sealing key derived from `secret` (the `media.id_key_file`
    /// bytes).
    pub fn new(secret: &[u8]) -> Self {
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), b"gateway media id, layout 2");
        // A 32-byte key is what ChaCha20-Poly1305 takes: this cannot fail.
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, derived.as_ref()).unwrap_or_else(|_| unreachable!());
        Self(LessSafeKey::new(unbound))
    }
}

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdKey(<redacted>)")
    }
}

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
    /// The nonce of the id and the object's name.
    pub random: [u8; RANDOM_LEN],
}

impl MediaRef {
    /// The id's bytes, sealed with `key`.
    pub fn seal(&self, key: &IdKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_LEN);
        out.push(LAYOUT);
        out.extend_from_slice(&self.random);
        let mut fields = Vec::with_capacity(1 + 3 * MAX_VARINT_LEN + TAG_LEN);
        fields.push(self.class as u8);
        put_varint(&mut fields, self.user);
        put_varint(&mut fields, self.issued_s);
        put_varint(&mut fields, self.size);
        let nonce = Nonce::assume_unique_for_key(self.random);
        // Sealing fails only past ChaCha20's 256 GiB per nonce.
        if key.0.seal_in_place_append_tag(nonce, Aad::from([LAYOUT]), &mut fields).is_ok() {
            out.extend_from_slice(&fields);
        }
        out
    }

    /// Reads an id this fleet issued with `key`; `None` for anything else (a
    /// forged or altered id, another layout, garbage).
    pub fn open(bytes: &[u8], key: &IdKey) -> Option<Self> {
        let (&layout, rest) = bytes.split_first()?;
        if layout != LAYOUT || rest.len() > MAX_LEN {
            return None;
        }
        let (random, sealed) = rest.split_at_checked(RANDOM_LEN)?;
        let random = <[u8; RANDOM_LEN]>::try_from(random).ok()?;
        let mut sealed = sealed.to_vec();
        let nonce = Nonce::assume_unique_for_key(random);
        let fields = key.0.open_in_place(nonce, Aad::from([LAYOUT]), &mut sealed).ok()?;
        let (&class, mut fields) = fields.split_first()?;
        let class = *MediaClass::ALL.iter().find(|c| **c as u8 == class)?;
        let mut varint = || {
            let (value, len) = read_varint(fields, "media_id").ok()??;
            fields = fields.get(len..)?;
            Some(value)
        };
        let (user, issued_s, size) = (varint()?, varint()?, varint()?);
        fields.is_empty().then_some(Self { class, user, issued_s, size, random })
    }

    /// The object's name in the bucket, under `prefix`: the class (for
    /// lifecycle rules by prefix), then the random part in hex.
    pub fn object_key(&self, prefix: &str) -> String {
        let mut key = format!("{prefix}{}/", self.class.name());
        for byte in self.random {
            key.push_str(&format!("{byte:02x}"));
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> IdKey {
        IdKey::new(&[byte; 32])
    }

    fn sample() -> MediaRef {
        MediaRef {
            class: MediaClass::Audio,
            user: u64::MAX,
            issued_s: u64::MAX,
            size: u64::MAX,
            random: [7; 12],
        }
    }

    #[test]
    fn an_id_opens_with_its_key_only_and_fits_the_protocol() {
        let id = sample().seal(&key(1));
        assert_eq!(id.len(), MAX_LEN, "the largest fields make the longest id");
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
    fn the_uploader_is_not_readable_from_the_id_or_the_object_name() {
        let small = MediaRef { user: 4_242, ..sample() };
        let id = small.seal(&key(1));
        let needle = {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, 4_242);
            bytes
        };
        assert!(!id.windows(needle.len()).any(|w| w == needle.as_slice()), "user id in clear in {id:?}");
        let name = small.object_key("media/");
        assert_eq!(name, "media/audio/070707070707070707070707");
        assert!(!name.contains("4242"));
    }
}
