//! The key and value codec's properties, for the `store_codec` fuzz target
//! (`fuzz/`). Built only with `--cfg fuzzing` (cargo fuzz sets it): the codec
//! is crate-private, so the checks live here and the target feeds bytes.
//!
//! The first input byte picks what the rest is decoded as. Whatever the
//! bytes, decoding does not panic, and what decodes re-encodes to exactly
//! the bytes it read (every record has one spelling). Keys also keep the
//! promise of `codec.rs`: byte order is the order of their fields.

// Fuzzing code: a panic is a finding, so unwrap and indexing are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::cmp::Ordering;

use protocol::{Conversation, DeviceId, UserId};

use crate::codec::{convlog_key, inbox_key, inbox_key_seq, prefix_end, ConvKey, Dec, DeviceState, Entry};
use crate::cursors::{mailbox_key, mailbox_note};

/// Runs the check the first byte of `data` picks on the rest.
pub fn codec(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else { return };
    match kind % 6 {
        0 => inbox_keys(rest),
        1 => conversation_keys(rest),
        2 => {
            if let Ok(entry) = Entry::decode(rest) {
                assert_prefix(&entry.encode(), rest);
                // A body after the header re-encodes to exactly what was read.
                if let Ok(Some((device, payload))) = Entry::inline_body(rest) {
                    assert!(entry.inline, "a body without the tag");
                    assert_eq!(entry.encode_with_body(device, payload), rest, "re-encoding differs");
                }
            }
        }
        3 => {
            if let Ok(state) = DeviceState::decode(rest) {
                assert_prefix(&state.encode(), rest);
            }
        }
        4 => mailbox(rest),
        _ => prefix_ends(rest),
    }
}

/// `encoded` is what was read: the front of `input`.
fn assert_prefix(encoded: &[u8], input: &[u8]) {
    assert_eq!(encoded, &input[..encoded.len().min(input.len())], "re-encoding differs");
}

/// Inbox keys (`user device seq`): round trip, and order by their fields.
fn inbox_keys(rest: &[u8]) {
    let decode = |key: &[u8]| {
        let seq = inbox_key_seq(key).ok()?;
        let mut dec = Dec::new(key);
        let (user, device) = (UserId(dec.u64().ok()?), DeviceId(dec.u32().ok()?));
        assert_prefix(&inbox_key(user, device, seq), key);
        Some((user.0, device.0, seq))
    };
    let (a, b) = rest.split_at(rest.len().min(20));
    if let (Some(x), Some(y)) = (decode(a), decode(b)) {
        assert_eq!(a.cmp(&b[..20]), x.cmp(&y), "inbox key order");
    }
}

/// Conversation keys and conversation-log keys (`conv conv_seq`): round
/// trip, and order by (pair before group, ids, conv_seq).
fn conversation_keys(rest: &[u8]) {
    let decode = |key: &[u8]| {
        let mut dec = Dec::new(key);
        let conv = ConvKey::get(&mut dec).ok()?;
        let seq = dec.u64().ok()?;
        let encoded = convlog_key(conv, seq);
        assert_prefix(&encoded, key);
        let fields = match conv {
            ConvKey::Pair(a, b) => (1, a.0, b.0, seq),
            ConvKey::Group(group) => (2, group.0, 0, seq),
        };
        Some((encoded, fields))
    };
    let Some((a, x)) = decode(rest) else { return };
    if let Some((b, y)) = decode(&rest[a.len()..]) {
        // Pair and group keys differ in length, but their first byte differs
        // too, so byte order is still field order.
        assert_eq!(a.cmp(&b), x.cmp(&y), "conversation-log key order");
    }
}

/// Mailbox pairs: a length byte, the key, then the value.
fn mailbox(rest: &[u8]) {
    let Some((&len, rest)) = rest.split_first() else { return };
    let (key, value) = rest.split_at(usize::from(len).min(rest.len()));
    if let Ok(note) = mailbox_note(key, value) {
        assert_prefix(&mailbox_key(&note), key);
        assert!(note.except.is_none());
        assert!(matches!(note.conversation, Conversation::Direct(_) | Conversation::Group(_)));
    }
}

/// `prefix_end`: a length byte, the prefix, then keys to place around it.
/// Every key with the prefix sorts below the end, every other key at or
/// above the prefix at or above it.
fn prefix_ends(rest: &[u8]) {
    let Some((&len, rest)) = rest.split_first() else { return };
    let (prefix, keys) = rest.split_at(usize::from(len).min(rest.len()));
    let end = prefix_end(prefix);
    if end.is_empty() {
        assert!(prefix.iter().all(|&b| b == u8::MAX), "no end for {prefix:?}");
        return;
    }
    assert_eq!(prefix.cmp(&end), Ordering::Less);
    for cut in 0..=keys.len() {
        let key = [prefix, &keys[..cut]].concat();
        assert_eq!(key.as_slice().cmp(&end), Ordering::Less, "a key with the prefix at or past its end");
        let other = &keys[..cut];
        if other >= prefix && !other.starts_with(prefix) {
            assert!(other >= end.as_slice(), "{other:?} between {prefix:?} and its end {end:?}");
        }
    }
}
