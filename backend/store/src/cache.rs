//! The writer's caches of committed values ([`MetaCache`]): what lets most
//! requests of a batch be applied without reading the engine. Only the
//! writer uses them, through its transaction view (`db::Tx`), which reads
//! them under the batch's own writes and the batch in flight.

use std::collections::HashMap;

use crate::api::StoreError;
use crate::codec::{is_group_convlog_key, is_pair_cursor_home, Key, ENTRY_CACHED, LOG_CACHED};
use crate::db::{Ks, Writes};

/// Entries of each writer cache above which that cache is cleared (the store
/// is the truth; this only bounds memory).
const CACHE_MAX: usize = 200_000;

/// The writer's caches of committed values. Each only ever holds what the
/// last successful commit left on disk for a key (entered after the commit,
/// cleared on a failed one), so a hit answers exactly what the engine would.
///
/// - `meta`: meta records read or written (`None`: known absent).
/// - `refs`, `inbox`: reference counts and inbox entries this writer
///   committed and nobody has deleted yet (an entry's header only, without
///   a body it holds: see [`crate::db::Tx::get_entire`]). A delete drops the entry; a
///   miss reads the engine. They let an Ack find the entries it removes and the
///   counts it decrements without engine reads: the entries were written a
///   moment ago by the Send they answer.
/// - `dedup_max`: per sending device (`user device`, the first 12 bytes of
///   its dedup keys), the highest client id among its committed dedup
///   records (0: none). Records are only ever added by this writer or
///   deleted (expiry), so it stays an upper bound, and a Send with a higher
///   client id (clients count up) is known new without an engine read.
/// - `group_log`: group conversation-log entries this writer committed and
///   nobody has deleted yet. A member's ACK moves its delivered cursor over
///   entries the Send wrote a moment ago; their authors are found here
///   instead of by an engine range scan per member (a miss falls back to it).
/// - `pair_cursors`: the mailbox keys that are pair cursors' homes, read or
///   written (`None`: known absent), as `meta` holds group cursors.
#[derive(Debug, Default)]
pub(crate) struct MetaCache {
    meta: HashMap<Key, Option<Value>>,
    pair_cursors: HashMap<Key, Option<Value>>,
    refs: HashMap<Key, Value>,
    inbox: HashMap<Key, Value>,
    dedup_max: HashMap<[u8; DEDUP_DEVICE], u64>,
    group_log: HashMap<Key, Value>,
}

/// A cached value: exactly its bytes (a `Vec` would keep the spare capacity
/// it was built with), since a node keeps one or two per device it served.
type Value = Box<[u8]>;

/// Bytes of a dedup key that name the device (`user device`).
const DEDUP_DEVICE: usize = 12;

/// A dedup key's device prefix and client id.
pub(crate) fn dedup_parts(key: &[u8]) -> Option<([u8; DEDUP_DEVICE], u64)> {
    let (device, rest) = key.split_first_chunk::<DEDUP_DEVICE>()?;
    let client_id: &[u8; 8] = rest.try_into().ok()?;
    Some((*device, u64::from_be_bytes(*client_id)))
}

impl MetaCache {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.meta.len()
            + self.pair_cursors.len()
            + self.refs.len()
            + self.inbox.len()
            + self.dedup_max.len()
            + self.group_log.len()
    }

    /// Forgets everything (after a failed commit: the engine is the truth).
    pub(crate) fn clear(&mut self) {
        self.meta.clear();
        self.pair_cursors.clear();
        self.refs.clear();
        self.inbox.clear();
        self.dedup_max.clear();
        self.group_log.clear();
    }

    /// The committed value of `key`, if this cache knows it.
    pub(crate) fn get(&self, ks: Ks, key: &[u8]) -> Option<Option<&[u8]>> {
        match ks {
            Ks::Meta => self.meta.get(key).map(Option::as_deref),
            Ks::Mailbox if is_pair_cursor_home(key) => self.pair_cursors.get(key).map(Option::as_deref),
            Ks::Refs => self.refs.get(key).map(|v| Some(&**v)),
            Ks::Inbox => self.inbox.get(key).map(|v| Some(&**v)),
            Ks::ConvLog => self.group_log.get(key).map(|v| Some(&**v)),
            _ => None,
        }
    }

    /// Whether a keyspace has a cache here (the others' writes are not folded).
    pub(crate) fn caches(ks: Ks) -> bool {
        matches!(ks, Ks::Meta | Ks::Refs | Ks::Inbox | Ks::Dedup | Ks::ConvLog | Ks::Mailbox)
    }

    /// Enters a committed batch's writes.
    pub(crate) fn fold(&mut self, writes: Writes) {
        for (ks, key, value, keep) in writes.into_cached() {
            self.committed(ks, key, value, keep);
        }
    }

    /// The highest client id among `device`'s committed dedup records (0:
    /// none), read with `load` the first time it is asked for.
    pub(crate) fn dedup_max(
        &mut self,
        device: [u8; DEDUP_DEVICE],
        load: impl FnOnce() -> Result<u64, StoreError>,
    ) -> Result<u64, StoreError> {
        if let Some(max) = self.dedup_max.get(&device) {
            return Ok(*max);
        }
        let max = load()?;
        if self.dedup_max.len() >= CACHE_MAX {
            self.dedup_max.clear();
        }
        self.dedup_max.insert(device, max);
        Ok(max)
    }

    /// Whether this cache holds `key` (present or known absent).
    fn holds(&self, ks: Ks, key: &[u8]) -> bool {
        self.get(ks, key).is_some()
    }

    /// Records a committed write; one not to `keep` only refreshes an entry
    /// already held.
    pub(crate) fn committed(&mut self, ks: Ks, key: Key, value: Option<Vec<u8>>, keep: bool) {
        if !keep && !self.holds(ks, &key) {
            return;
        }
        let value = value.map(|mut value| {
            match ks {
                Ks::Inbox => value.truncate(ENTRY_CACHED),
                // A log entry's head; never the body it may carry for a
                // while with several writers (`fanout`).
                Ks::ConvLog => value.truncate(LOG_CACHED),
                _ => {}
            }
            value.into_boxed_slice()
        });
        let positive = match ks {
            Ks::Meta => {
                bounded_insert(&mut self.meta, key, value);
                return;
            }
            Ks::Mailbox => {
                if is_pair_cursor_home(&key) {
                    bounded_insert(&mut self.pair_cursors, key, value);
                }
                return;
            }
            Ks::Dedup => {
                // Only a device whose maximum is known can raise it: an
                // unknown one may have higher records on disk.
                if let (Some(_), Some((device, client_id))) = (value, dedup_parts(&key)) {
                    if let Some(max) = self.dedup_max.get_mut(&device) {
                        *max = (*max).max(client_id);
                    }
                }
                return;
            }
            Ks::Refs => &mut self.refs,
            Ks::Inbox => &mut self.inbox,
            Ks::ConvLog if is_group_convlog_key(&key) => &mut self.group_log,
            _ => return,
        };
        match value {
            Some(value) => bounded_insert(positive, key, value),
            None => {
                positive.remove(&key);
            }
        }
    }
}

fn bounded_insert<V>(map: &mut HashMap<Key, V>, key: Key, value: V) {
    if map.len() >= CACHE_MAX && !map.contains_key(&key) {
        map.clear();
    }
    map.insert(key, value);
}
