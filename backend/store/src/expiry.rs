//! Retention, on the writer: a periodic sweep walks the time-ordered expiry
//! index (`expiry`: `time id` → dedup key, conversation-log key, inbox
//! entries) and deletes what is older than `retention`: the message's inbox
//! entries still unacked, its body, its dedup record and its conversation-log
//! entry. Work per pass is bounded; readers skip expired entries meanwhile.

use protocol::{Conversation, DeviceId, Seq, UserId};

use crate::api::{Delivery, StoreError};
use crate::codec::{convlog_key, corrupt, inbox_key, message_key, ConvKey, Dec, Enc, Entry, Key};
use crate::db::{Ks, Tx};

/// Most messages one sweep pass expires.
pub(crate) const SWEEP_LIMIT: usize = 1000;

/// Whether an entry stored at `time` is expired at `now`.
pub(crate) fn is_expired(time: u64, now: u64, retention_ms: u64) -> bool {
    time.saturating_add(retention_ms) <= now
}

/// One pass; returns whether more is due (the pass hit its limit).
pub(crate) fn sweep(tx: &mut Tx<'_>, retention_ms: u64) -> Result<bool, StoreError> {
    let cutoff = tx.now.saturating_sub(retention_ms);
    if cutoff == 0 {
        return Ok(false);
    }
    // Keys are `time id`: everything stored at or before `cutoff` is due.
    let end = Enc::default().u64(cutoff + 1).done();
    let due = tx.range(Ks::Expiry, &[], &end, SWEEP_LIMIT)?;
    for (key, value) in &due {
        let mut k = Dec::new(key);
        k.skip(8)?;
        let id = k.u64()?;
        let record = Record::decode(value)?;
        if let Some(dedup) = record.dedup {
            tx.del(Ks::Dedup, Key::from_slice(dedup));
        }
        if record.log_here() {
            tx.del(Ks::ConvLog, convlog_key(record.conv, record.conv_seq));
        }
        for (user, device, seq) in record.entries {
            let key = inbox_key(user, device, seq);
            if let Some(entry) = tx.get(Ks::Inbox, &key)? {
                // A body its only entry held leaves with it (only counted).
                if Entry::decode(&entry).is_ok_and(|entry| entry.inline) {
                    tx.deleted += 1;
                }
                tx.del(Ks::Inbox, key);
                tx.expired += 1;
            }
        }
        // A body whose entries were all acked is gone already; one with a
        // single entry left has no count, and one held by its entry has
        // neither (see `messages`).
        let id_key = message_key(id);
        if tx.get(Ks::Refs, &id_key)?.is_some() {
            tx.del(Ks::Refs, id_key.clone());
        }
        if tx.get(Ks::Messages, &id_key)?.is_some() {
            tx.del(Ks::Messages, id_key);
            tx.deleted += 1;
        }
        tx.del(Ks::Expiry, key.clone());
    }
    Ok(due.len() == SWEEP_LIMIT)
}

/// What of a message a shard holds besides its entries, for its expiry
/// record: the dedup record of the Send, and the conversation-log entry.
#[derive(Debug)]
pub(crate) struct Here {
    /// The dedup key of a client message stored here.
    pub(crate) dedup: Option<Key>,
    /// Whether the message's log entry is here.
    pub(crate) log: bool,
}

/// Record flag: a dedup key follows.
const DEDUP: u8 = 1;
/// Record flag: the message's log entry is in this shard.
const LOG: u8 = 2;
/// Record flag: [`LOG`] says where the log entry is. Without it (every
/// record of a single database), a group's message has its log entry here
/// and a pair's has none.
const EXPLICIT: u8 = 4;

/// A message's expiry record (written by `messages::enter`), decoded.
pub(crate) struct Record<'a> {
    /// Its flags.
    flags: u8,
    /// The dedup key of a client message.
    dedup: Option<&'a [u8]>,
    /// Its conversation.
    conv: ConvKey,
    /// Its position there.
    conv_seq: u64,
    /// Its inbox entries: device and seq.
    pub(crate) entries: Vec<(UserId, DeviceId, u64)>,
}

/// A dedup key's length: user, device, client id.
const DEDUP_KEY_LEN: usize = 8 + 4 + 8;

impl<'a> Record<'a> {
    /// The key of the record of message `id` stored at `time`.
    pub(crate) fn key(time: u64, id: u64) -> Key {
        Enc::default().u64(time).u64(id).key()
    }

    /// The record of a message of `conv` at `conv_seq` with `entries`.
    pub(crate) fn encode(
        here: &Here,
        conv: ConvKey,
        conv_seq: u64,
        entries: impl ExactSizeIterator<Item = (UserId, DeviceId, u64)>,
    ) -> Vec<u8> {
        let mut flags = if here.dedup.is_some() { DEDUP } else { 0 };
        if here.log != matches!(conv, ConvKey::Group(_)) {
            flags |= EXPLICIT | if here.log { LOG } else { 0 };
        }
        let mut enc = Enc::default().u8(flags);
        if let Some(key) = &here.dedup {
            enc = enc.raw(key);
        }
        let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        enc = enc.conv(conv).u64(conv_seq).u32(count);
        entries.fold(enc, |enc, (user, device, seq)| enc.user(user).device(device).u64(seq)).done()
    }

    /// This record with `entries` instead of its own.
    pub(crate) fn with_entries(&self, entries: &[(UserId, DeviceId, u64)]) -> Vec<u8> {
        let here = Here { dedup: self.dedup.map(Key::from_slice), log: self.log_here() };
        Self::encode(&here, self.conv, self.conv_seq, entries.iter().copied())
    }

    /// Whether the message's log entry is in this record's shard.
    pub(crate) fn log_here(&self) -> bool {
        if self.flags & EXPLICIT == 0 {
            matches!(self.conv, ConvKey::Group(_))
        } else {
            self.flags & LOG != 0
        }
    }

    pub(crate) fn decode(bytes: &'a [u8]) -> Result<Self, StoreError> {
        let mut dec = Dec::new(bytes);
        let flags = dec.u8()?;
        let dedup = match flags & DEDUP {
            DEDUP => {
                let key = bytes.get(1..1 + DEDUP_KEY_LEN).ok_or_else(|| corrupt("expiry record"))?;
                dec.skip(DEDUP_KEY_LEN)?;
                Some(key)
            }
            _ => None,
        };
        let conv = ConvKey::get(&mut dec)?;
        let conv_seq = dec.u64()?;
        let count = dec.u32()?;
        // Bounded by what the record holds, not by what its count claims.
        let mut entries = Vec::with_capacity((count as usize).min(bytes.len() / 20));
        for _ in 0..count {
            entries.push((UserId(dec.u64()?), DeviceId(dec.u32()?), dec.u64()?));
        }
        Ok(Self { flags, dedup, conv, conv_seq, entries })
    }

    /// The message's inbox entries not yet acked (nor expired), as
    /// deliveries: what a retried Send fans out again. The view follows from
    /// the conversation: a group's own id, or, in a pair, the other user.
    pub(crate) fn unacked(&self, tx: &mut Tx<'_>) -> Result<Vec<Delivery>, StoreError> {
        let mut deliveries = Vec::new();
        for &(user, device, seq) in &self.entries {
            if tx.get(Ks::Inbox, &inbox_key(user, device, seq))?.is_none() {
                continue;
            }
            let conversation = match self.conv {
                ConvKey::Group(group) => Conversation::Group(group),
                ConvKey::Pair(a, b) => Conversation::Direct(if user == a { b } else { a }),
            };
            deliveries.push(Delivery { user, device, seq: Seq(seq), conversation });
        }
        Ok(deliveries)
    }
}
