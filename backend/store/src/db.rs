//! The fjall database and the writer's transaction view of it.
//!
//! [`Db`] owns the keyspaces. [`Tx`] is what write requests work on: an
//! overlay of this batch's writes over committed data (so a request sees the
//! requests before it in the same group commit), a per-request undo log (a
//! refused request leaves nothing behind), and the writer's cache of the
//! `meta` keyspace. The cache only ever holds committed values: overlay
//! entries enter it after their batch committed, so a failed commit cannot
//! leave it ahead of disk.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::api::StoreError;

/// Entries of the meta cache above which it is cleared (the store is the truth;
/// this only bounds memory).
const META_CACHE_MAX: usize = 200_000;

/// A keyspace of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Ks {
    /// Counters, devices, conv_seqs, groups, cursors, visibility.
    Meta,
    /// Message bodies by id.
    Messages,
    /// Inbox entries pointing to each message.
    Refs,
    /// Per-device inboxes.
    Inbox,
    /// Dedup records.
    Dedup,
    /// Per-conversation log.
    ConvLog,
    /// Per-user receipt mailbox (cursor states to tell).
    Mailbox,
    /// Prekeys.
    Prekeys,
    /// Time-ordered expiry index.
    Expiry,
}

/// Maps a fjall error to the store's.
pub(crate) fn engine(err: fjall::Error) -> StoreError {
    StoreError::Engine(err.to_string())
}

/// Key-value pairs read by a scan, in key order.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The database and its keyspaces.
pub(crate) struct Db {
    /// The database (for batches and persist).
    pub(crate) db: Database,
    meta: Keyspace,
    messages: Keyspace,
    refs: Keyspace,
    inbox: Keyspace,
    dedup: Keyspace,
    convlog: Keyspace,
    mailbox: Keyspace,
    prekeys: Keyspace,
    expiry: Keyspace,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (or creates) the database in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Engine(format!("{}: {e}", dir.display())))?;
        let db = Database::builder(dir).open().map_err(engine)?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(engine);
        Ok(Self {
            meta: ks("meta")?,
            messages: ks("messages")?,
            refs: ks("refs")?,
            inbox: ks("inbox")?,
            dedup: ks("dedup")?,
            convlog: ks("convlog")?,
            mailbox: ks("mailbox")?,
            prekeys: ks("prekeys")?,
            expiry: ks("expiry")?,
            db,
        })
    }

    /// The keyspace handle.
    pub(crate) fn ks(&self, ks: Ks) -> &Keyspace {
        match ks {
            Ks::Meta => &self.meta,
            Ks::Messages => &self.messages,
            Ks::Refs => &self.refs,
            Ks::Inbox => &self.inbox,
            Ks::Dedup => &self.dedup,
            Ks::ConvLog => &self.convlog,
            Ks::Mailbox => &self.mailbox,
            Ks::Prekeys => &self.prekeys,
            Ks::Expiry => &self.expiry,
        }
    }

    /// Committed value of `key`.
    pub(crate) fn get(&self, ks: Ks, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.ks(ks).get(key).map_err(engine)?.map(|v| v.to_vec()))
    }

    /// Committed pairs with `start <= key < end` (no end bound if `end` is
    /// empty), at most `limit`, in key order.
    pub(crate) fn scan(&self, ks: Ks, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StoreError> {
        let iter = if end.is_empty() {
            self.ks(ks).range(start.to_vec()..)
        } else {
            self.ks(ks).range(start.to_vec()..end.to_vec())
        };
        let mut out = Vec::new();
        for guard in iter.take(limit) {
            let (k, v) = guard.into_inner().map_err(engine)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

/// The writer's cache of committed meta records (`None`: known absent).
pub(crate) type MetaCache = HashMap<Vec<u8>, Option<Vec<u8>>>;

type Slot = (Ks, Vec<u8>);

/// One group commit being built; see the module doc.
pub(crate) struct Tx<'a> {
    db: &'a Db,
    cache: &'a mut MetaCache,
    overlay: BTreeMap<Slot, Option<Vec<u8>>>,
    /// Previous overlay state of each slot the current request touched.
    undo: Vec<(Slot, Option<Option<Vec<u8>>>)>,
    /// The batch's clock (ms since the Unix epoch).
    pub(crate) now: u64,
    /// Message bodies this batch deletes (for metrics).
    pub(crate) deleted: u64,
    /// Inbox entries this batch expires (for metrics).
    pub(crate) expired: u64,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("writes", &self.overlay.len()).finish_non_exhaustive()
    }
}

impl<'a> Tx<'a> {
    /// Starts a batch at time `now`.
    pub(crate) fn new(db: &'a Db, cache: &'a mut MetaCache, now: u64) -> Self {
        Self { db, cache, overlay: BTreeMap::new(), undo: Vec::new(), now, deleted: 0, expired: 0 }
    }

    /// Starts a request: its writes can be undone until the next `begin`.
    pub(crate) fn begin(&mut self) {
        self.undo.clear();
    }

    /// Undoes the current request's writes.
    pub(crate) fn rollback(&mut self) {
        while let Some((slot, previous)) = self.undo.pop() {
            match previous {
                Some(value) => self.overlay.insert(slot, value),
                None => self.overlay.remove(&slot),
            };
        }
    }

    /// The value of `key` as this batch sees it.
    pub(crate) fn get(&mut self, ks: Ks, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.overlay.get(&(ks, key.to_vec())) {
            return Ok(value.clone());
        }
        if ks == Ks::Meta {
            if let Some(value) = self.cache.get(key) {
                return Ok(value.clone());
            }
            let value = self.db.get(ks, key)?;
            if self.cache.len() >= META_CACHE_MAX {
                self.cache.clear();
            }
            self.cache.insert(key.to_vec(), value.clone());
            return Ok(value);
        }
        self.db.get(ks, key)
    }

    fn write(&mut self, ks: Ks, key: Vec<u8>, value: Option<Vec<u8>>) {
        let slot = (ks, key);
        let previous = self.overlay.insert(slot.clone(), value);
        self.undo.push((slot, previous));
    }

    /// Sets `key`.
    pub(crate) fn put(&mut self, ks: Ks, key: Vec<u8>, value: Vec<u8>) {
        self.write(ks, key, Some(value));
    }

    /// Deletes `key`.
    pub(crate) fn del(&mut self, ks: Ks, key: Vec<u8>) {
        self.write(ks, key, None);
    }

    /// Pairs with `start <= key < end` as this batch sees them, at most `limit`.
    pub(crate) fn range(&self, ks: Ks, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StoreError> {
        let lo = (ks, start.to_vec());
        let pending: Vec<(&Slot, &Option<Vec<u8>>)> = self
            .overlay
            .range(lo..)
            .take_while(|((k, key), _)| *k == ks && (end.is_empty() || key.as_slice() < end))
            .collect();
        // Each overlay delete can hide at most one committed pair: read that many more.
        let committed = self.db.scan(ks, start, end, limit.saturating_add(pending.len()))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = committed.into_iter().collect();
        for ((_, key), value) in pending {
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    /// Writes the batch atomically with `mode`; on success the meta writes
    /// enter the cache, on failure the cache is cleared.
    pub(crate) fn commit(self, mode: PersistMode) -> Result<(), StoreError> {
        let mut batch = self.db.db.batch().durability(Some(mode));
        for ((ks, key), value) in &self.overlay {
            match value {
                Some(v) => batch.insert(self.db.ks(*ks), key.as_slice(), v.as_slice()),
                None => batch.remove(self.db.ks(*ks), key.as_slice()),
            }
        }
        match batch.commit() {
            Ok(()) => {
                if self.cache.len() >= META_CACHE_MAX {
                    self.cache.clear();
                }
                for ((ks, key), value) in self.overlay {
                    if ks == Ks::Meta {
                        self.cache.insert(key, value);
                    }
                }
                Ok(())
            }
            Err(err) => {
                self.cache.clear();
                Err(engine(err))
            }
        }
    }

    /// Whether the batch writes anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.overlay.is_empty()
    }
}
