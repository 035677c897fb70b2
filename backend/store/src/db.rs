//! The fjall database and the writer's transaction view of it.
//!
//! [`Db`] owns the keyspaces. [`Tx`] is what write requests work on: an
//! overlay of this batch's writes ([`Writes`]) over the batch still being
//! committed, if any, and committed data (so a request sees the requests
//! before it, in this group commit and in the one in flight), a per-request
//! undo log (a refused request leaves nothing behind), and the writer's
//! caches. The caches only ever hold committed values: a batch's writes
//! enter them after its commit returned ([`MetaCache::fold`]), so a failed
//! commit cannot leave them ahead of disk.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::api::{ReceiptNote, StoreError};
use crate::cache::{dedup_parts, MetaCache};
use crate::codec::{is_pair_cursor_home, Key};
use crate::error::EngineError;
use crate::shards::{Layout, Peers};

/// Mode of the database directory.
const PRIVATE_DIR: u32 = 0o700;

/// Table files fjall keeps open at most (its default is 900); the gateway
/// reserves descriptors for them beside its connections.
pub const MAX_CACHED_FILES: usize = 256;

/// Size at which a keyspace's memtable is sealed and flushed (fjall's
/// default is 64 MiB). Every write is a skiplist insert into the active
/// memtable, and the search down a 64 MiB skiplist misses the CPU caches at
/// every level: it was ~37 % of the writer. At 4 MiB the writer spends 1.6x
/// less CPU per 1:1 message and the whole store (flushes and compactions
/// included) 1.3x less (`cargo bench -p backend-store --bench writer`,
/// benches/RESULTS.md). fjall keeps the size with each keyspace when it is
/// created: a database created before keeps its own.
const MEMTABLE_SIZE: u64 = 4 << 20;

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

/// Maps a fjall error to the store's: an I/O error (fjall's own, or its
/// LSM tree's) keeps its kind.
pub(crate) fn engine(err: fjall::Error) -> StoreError {
    let kind = std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| e.source())
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    let message = err.to_string();
    StoreError::Engine(match kind {
        Some(kind) => EngineError::Io { kind, message },
        None => EngineError::Database { message },
    })
}

/// Key-value pairs read by a scan, in key order.
pub(crate) type Pairs = Vec<(Key, Vec<u8>)>;

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
    /// Whether group cursors are kept the legacy way (`meta::CURSOR` keys,
    /// written before `group_cursors`): only then do syncs look among them
    /// for a user's groups. Nothing writes them any more, so it never
    /// turns true while open.
    pub(crate) legacy_group_cursors: bool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (or creates) the database in `dir`, which is made private
    /// (0700): the files inside follow the umask, the directory does not let
    /// anyone else reach them whatever it is.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        private_dir(dir)?;
        let db = Database::builder(dir).max_cached_files(Some(MAX_CACHED_FILES)).open().map_err(engine)?;
        let options = || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_SIZE);
        let ks = |name: &str| db.keyspace(name, options).map_err(engine);
        let meta = ks("meta")?;
        let legacy_group_cursors = meta.prefix([crate::codec::meta::CURSOR]).next().is_some();
        Ok(Self {
            meta,
            messages: ks("messages")?,
            refs: ks("refs")?,
            inbox: ks("inbox")?,
            dedup: ks("dedup")?,
            convlog: ks("convlog")?,
            mailbox: ks("mailbox")?,
            prekeys: ks("prekeys")?,
            expiry: ks("expiry")?,
            legacy_group_cursors,
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

    /// The last committed key starting with `prefix`.
    pub(crate) fn last_key(&self, ks: Ks, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.ks(ks).prefix(prefix).next_back() {
            Some(guard) => Ok(Some(guard.key().map_err(engine)?.to_vec())),
            None => Ok(None),
        }
    }

    /// Walks the committed pairs with `start <= key < end` (no end bound if
    /// `end` is empty) in key order, one at a time, while `each` returns true:
    /// nothing past the pair it stops at is read.
    pub(crate) fn walk(
        &self,
        ks: Ks,
        start: &[u8],
        end: &[u8],
        mut each: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let iter = if end.is_empty() {
            self.ks(ks).range(start.to_vec()..)
        } else {
            self.ks(ks).range(start.to_vec()..end.to_vec())
        };
        for guard in iter {
            let (key, value) = guard.into_inner().map_err(engine)?;
            if !each(&key, &value)? {
                break;
            }
        }
        Ok(())
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
            out.push((Key::from_slice(&k), v.to_vec()));
        }
        Ok(out)
    }
}

/// Creates `dir` if missing and makes it private (0700).
pub(crate) fn private_dir(dir: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Engine(EngineError::io(&e, format!("{}: {e}", dir.display())));
    std::fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR)).map_err(io)
}

/// Keyspaces, in [`Ks`] order (the overlay's index).
const KEYSPACES: usize = 9;

type Overlay = BTreeMap<Key, Write>;

/// The item of `items` (one per keyspace, in [`ALL`] order) for `ks`.
fn by_keyspace<T>(ks: Ks, items: [T; KEYSPACES]) -> T {
    let [meta, messages, refs, inbox, dedup, convlog, mailbox, prekeys, expiry] = items;
    match ks {
        Ks::Meta => meta,
        Ks::Messages => messages,
        Ks::Refs => refs,
        Ks::Inbox => inbox,
        Ks::Dedup => dedup,
        Ks::ConvLog => convlog,
        Ks::Mailbox => mailbox,
        Ks::Prekeys => prekeys,
        Ks::Expiry => expiry,
    }
}

/// One batch's writes, one map per keyspace (in [`ALL`] order): built by a
/// [`Tx`], then committed, then folded into the writer's caches.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    overlay: [Overlay; KEYSPACES],
}

impl Writes {
    fn overlay(&self, ks: Ks) -> &Overlay {
        by_keyspace(ks, self.overlay.each_ref())
    }

    fn overlay_mut(&mut self, ks: Ks) -> &mut Overlay {
        by_keyspace(ks, self.overlay.each_mut())
    }

    /// The batch's writes of the keyspaces the writer caches, to enter once
    /// committed: keyspace, key, new value (`None`: deleted), whether to keep.
    pub(crate) fn into_cached(self) -> impl Iterator<Item = (Ks, Key, Option<Vec<u8>>, bool)> {
        ALL.into_iter().zip(self.overlay).filter(|(ks, _)| MetaCache::caches(*ks)).flat_map(
            |(ks, overlay)| overlay.into_iter().map(move |(key, write)| (ks, key, write.value, write.keep)),
        )
    }

    /// This batch's write of `key` (`Some(None)`: deleted).
    fn get(&self, ks: Ks, key: &[u8]) -> Option<Option<&[u8]>> {
        self.overlay(ks).get(key).map(|write| write.value.as_deref())
    }

    /// Keys written.
    pub(crate) fn len(&self) -> usize {
        self.overlay.iter().map(BTreeMap::len).sum()
    }

    /// Whether the batch writes anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.overlay.iter().all(BTreeMap::is_empty)
    }

    /// Writes the batch to `db` atomically with `mode`. The caches are the
    /// caller's: [`MetaCache::fold`] on success, [`MetaCache::clear`] on failure.
    pub(crate) fn commit(&self, db: &Db, mode: PersistMode) -> Result<(), StoreError> {
        let mut batch =
            fjall::OwnedWriteBatch::with_capacity(db.db.clone(), self.len()).durability(Some(mode));
        for (ks, overlay) in ALL.into_iter().zip(&self.overlay) {
            let handle = db.ks(ks);
            for (key, write) in overlay {
                match &write.value {
                    Some(v) => batch.insert(handle, key.as_slice(), v.as_slice()),
                    None => batch.remove(handle, key.as_slice()),
                }
            }
        }
        batch.commit().map_err(engine)
    }
}

/// One key's write in a batch.
#[derive(Debug)]
struct Write {
    /// The new value (`None`: deleted).
    value: Option<Vec<u8>>,
    /// Whether the committed value enters the writer's cache; if not, it
    /// only refreshes an entry the cache already holds (see [`Tx::put_uncached`]).
    keep: bool,
}

/// A slot's overlay state before the current request wrote it (`None`: not in
/// the overlay).
type Undo = (Ks, Key, Option<Write>);

/// One group commit being built; see the module doc.
pub(crate) struct Tx<'a> {
    db: &'a Db,
    cache: &'a mut MetaCache,
    /// This batch's writes.
    writes: Writes,
    /// The batch before, still being committed: it is read under this one's
    /// writes (this batch is answered after it committed, or refused if it failed).
    pending: Option<&'a Writes>,
    /// Previous overlay state of each slot the current request touched.
    undo: Vec<Undo>,
    /// The batch's clock (ms since the Unix epoch).
    pub(crate) now: u64,
    /// Message bodies this batch deletes (for metrics).
    pub(crate) deleted: u64,
    /// Inbox entries this batch expires (for metrics).
    pub(crate) expired: u64,
    /// Messages this batch enters from a conversation's log (for metrics).
    pub(crate) caught_up: u64,
    /// The other shards and this one's index, with several writers.
    peers: Option<(&'a Peers, usize)>,
    /// The current request's receipt notes for mailboxes of other shards,
    /// sent there once this batch committed (`chain`).
    pub(crate) notes: Vec<(usize, ReceiptNote)>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("writes", &self.writes.len()).finish_non_exhaustive()
    }
}

const ALL: [Ks; KEYSPACES] = [
    Ks::Meta,
    Ks::Messages,
    Ks::Refs,
    Ks::Inbox,
    Ks::Dedup,
    Ks::ConvLog,
    Ks::Mailbox,
    Ks::Prekeys,
    Ks::Expiry,
];

impl<'a> Tx<'a> {
    /// Starts a batch at time `now` over committed data.
    pub(crate) fn new(db: &'a Db, cache: &'a mut MetaCache, now: u64) -> Self {
        Self::after(db, cache, None, now)
    }

    /// Starts a batch at time `now` over `pending`, the batch being committed.
    pub(crate) fn after(db: &'a Db, cache: &'a mut MetaCache, pending: Option<&'a Writes>, now: u64) -> Self {
        Self {
            db,
            cache,
            writes: Writes::default(),
            pending,
            undo: Vec::new(),
            now,
            deleted: 0,
            expired: 0,
            caught_up: 0,
            peers: None,
            notes: Vec::new(),
        }
    }

    /// The batch of shard `this` among `peers`.
    pub(crate) fn on(mut self, peers: &'a Peers, this: usize) -> Self {
        self.peers = Some((peers, this));
        self
    }

    /// The store's shard layout.
    pub(crate) fn layout(&self) -> Layout {
        self.peers.map_or_else(Layout::single, |(peers, _)| peers.layout)
    }

    /// This batch's shard.
    pub(crate) fn shard(&self) -> usize {
        self.peers.map_or(0, |(_, this)| this)
    }

    /// Whether shard `shard` is this batch's.
    pub(crate) fn is_local(&self, shard: usize) -> bool {
        shard == self.shard()
    }

    /// The database of another shard (committed data only: what its writer
    /// has not committed yet is not seen).
    fn remote(&self, shard: usize) -> Result<Arc<Db>, StoreError> {
        match self.peers {
            Some((peers, _)) => peers.db(shard),
            None => Err(EngineError::ThreadStopped.into()),
        }
    }

    /// The value of `key` of shard `shard`: as this batch sees it if the
    /// shard is this one, else as committed there.
    pub(crate) fn get_in(&mut self, shard: usize, ks: Ks, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.is_local(shard) {
            self.get(ks, key)
        } else {
            self.remote(shard)?.get(ks, key)
        }
    }

    /// [`Tx::range`] over shard `shard`'s keys (committed, if another's).
    pub(crate) fn range_in(
        &self,
        shard: usize,
        ks: Ks,
        span: (&[u8], &[u8]),
        limit: usize,
    ) -> Result<Pairs, StoreError> {
        if self.is_local(shard) {
            self.range(ks, span.0, span.1, limit)
        } else {
            self.remote(shard)?.scan(ks, span.0, span.1, limit)
        }
    }

    fn overlay_mut(&mut self, ks: Ks) -> &mut Overlay {
        self.writes.overlay_mut(ks)
    }

    /// Starts a request: its writes can be undone until the next `begin`.
    pub(crate) fn begin(&mut self) {
        self.undo.clear();
        self.notes.clear();
    }

    /// Undoes the current request's writes.
    pub(crate) fn rollback(&mut self) {
        self.notes.clear();
        while let Some((ks, key, previous)) = self.undo.pop() {
            match previous {
                Some(value) => self.overlay_mut(ks).insert(key, value),
                None => self.overlay_mut(ks).remove(&key),
            };
        }
    }

    /// The value of `key` as this batch sees it, if known without reading the
    /// engine (this batch's writes, the pending batch's, then the writer's cache).
    pub(crate) fn known(&self, ks: Ks, key: &[u8]) -> Option<Option<&[u8]>> {
        if let Some(value) = self.writes.get(ks, key) {
            return Some(value);
        }
        if let Some(value) = self.pending.and_then(|pending| pending.get(ks, key)) {
            return Some(value);
        }
        self.cache.get(ks, key)
    }

    /// The value of `key` as this batch sees it.
    pub(crate) fn get(&mut self, ks: Ks, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(ks, key, true)
    }

    /// As [`Tx::get`], but a value read from the engine does not enter the
    /// writer's cache: for what a device reads at connect, which an idle
    /// device would otherwise hold there (built lazily, at its first message).
    pub(crate) fn get_uncached(&mut self, ks: Ks, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(ks, key, false)
    }

    /// As [`Tx::get`], but never from the writer's cache, which keeps an
    /// inbox entry without the body it may hold (`codec::Entry`).
    pub(crate) fn get_entire(&self, ks: Ks, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let overlay =
            self.writes.get(ks, key).or_else(|| self.pending.and_then(|pending| pending.get(ks, key)));
        match overlay {
            Some(value) => Ok(value.map(<[u8]>::to_vec)),
            None => self.db.get(ks, key),
        }
    }

    fn read(&mut self, ks: Ks, key: &[u8], keep: bool) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.known(ks, key) {
            return Ok(value.map(<[u8]>::to_vec));
        }
        let value = self.db.get(ks, key)?;
        if keep && (ks == Ks::Meta || (ks == Ks::Mailbox && is_pair_cursor_home(key))) {
            self.cache.committed(ks, Key::from_slice(key), value.clone(), true);
        }
        Ok(value)
    }

    /// Whether the dedup record `key` (`user device client_id`) is certainly
    /// absent as this batch sees it, without reading it: its client id is
    /// above every committed record of the device and this batch has not
    /// written it. `false` means "maybe present": read it.
    pub(crate) fn dedup_absent(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        let Some((device, client_id)) = dedup_parts(key) else {
            return Ok(false);
        };
        if self.known(Ks::Dedup, key).is_some() {
            return Ok(false);
        }
        let db = self.db;
        let max = self.cache.dedup_max(device, || {
            let last = db.last_key(Ks::Dedup, &device)?;
            Ok(last.as_deref().and_then(dedup_parts).map_or(0, |(_, id)| id))
        })?;
        Ok(client_id > max)
    }

    fn write(&mut self, ks: Ks, key: Key, write: Write) {
        let previous = self.overlay_mut(ks).insert(key.clone(), write);
        self.undo.push((ks, key, previous));
    }

    /// Sets `key`.
    pub(crate) fn put(&mut self, ks: Ks, key: Key, value: Vec<u8>) {
        self.write(ks, key, Write { value: Some(value), keep: true });
    }

    /// As [`Tx::put`], but once committed the value only refreshes a cache
    /// entry the writer already holds for `key` (see [`Tx::get_uncached`]).
    pub(crate) fn put_uncached(&mut self, ks: Ks, key: Key, value: Vec<u8>) {
        self.write(ks, key, Write { value: Some(value), keep: false });
    }

    /// Deletes `key`.
    pub(crate) fn del(&mut self, ks: Ks, key: Key) {
        self.write(ks, key, Write { value: None, keep: true });
    }

    /// Pairs with `start <= key < end` as this batch sees them, at most `limit`.
    pub(crate) fn range(&self, ks: Ks, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StoreError> {
        // Older writes first, so that this batch's own override them.
        let mut writes: Vec<(&Key, &Write)> = Vec::new();
        for batch in self.pending.into_iter().chain([&self.writes]) {
            writes.extend(
                batch
                    .overlay(ks)
                    .range::<[u8], _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
                    .take_while(|(key, _)| end.is_empty() || key.as_slice() < end),
            );
        }
        // Each overlay delete can hide at most one committed pair: read that many more.
        let committed = self.db.scan(ks, start, end, limit.saturating_add(writes.len()))?;
        let mut merged: BTreeMap<Key, Vec<u8>> = committed.into_iter().collect();
        for (key, write) in writes {
            match &write.value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    /// The batch's writes, to commit; [`Tx::commit`] when nothing is pending.
    pub(crate) fn into_writes(self) -> Writes {
        self.writes
    }

    /// Writes the batch atomically with `mode`; on success the writes enter
    /// the cache, on failure the cache is cleared.
    pub(crate) fn commit(self, mode: PersistMode) -> Result<(), StoreError> {
        let (db, cache, writes) = (self.db, self.cache, self.writes);
        match writes.commit(db, mode) {
            Ok(()) => {
                cache.fold(writes);
                Ok(())
            }
            Err(err) => {
                cache.clear();
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(bytes: &[u8]) -> Key {
        Key::from_slice(bytes)
    }

    /// A batch built while the one before is being committed sees that one's
    /// writes (point reads, ranges, dedup) under its own, and they enter the
    /// cache only when folded after their commit.
    #[test]
    fn a_batch_reads_the_batch_in_flight_under_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut cache = MetaCache::new();
        let mut tx = Tx::new(&db, &mut cache, 1);
        for k in [b"a1", b"a2", b"a3"] {
            tx.put(Ks::Inbox, key(k), k.to_vec());
        }
        tx.commit(PersistMode::Buffer).unwrap();
        cache.clear();

        // Batch N: deletes a1, rewrites a2, adds a4 and a dedup record.
        let mut tx = Tx::new(&db, &mut cache, 2);
        tx.del(Ks::Inbox, key(b"a1"));
        tx.put(Ks::Inbox, key(b"a2"), b"n".to_vec());
        tx.put(Ks::Inbox, key(b"a4"), b"n".to_vec());
        let mut dedup = [0u8; 20];
        dedup[19] = 9;
        tx.put(Ks::Dedup, key(&dedup), b"d".to_vec());
        let pending = tx.into_writes();

        // Batch N+1, over N (not committed yet): rewrites a4, deletes a3.
        let mut next = Tx::after(&db, &mut cache, Some(&pending), 3);
        assert_eq!(next.get(Ks::Inbox, b"a1").unwrap(), None);
        assert_eq!(next.get(Ks::Inbox, b"a2").unwrap().as_deref(), Some(&b"n"[..]));
        assert!(!next.dedup_absent(&dedup).unwrap(), "N's dedup record is seen");
        next.put(Ks::Inbox, key(b"a4"), b"m".to_vec());
        next.del(Ks::Inbox, key(b"a3"));
        let seen: Vec<(Key, Vec<u8>)> = next.range(Ks::Inbox, b"a", b"b", 10).unwrap();
        assert_eq!(seen, [(key(b"a2"), b"n".to_vec()), (key(b"a4"), b"m".to_vec())]);
        assert_eq!(next.range(Ks::Inbox, b"a", b"b", 1).unwrap().len(), 1, "the limit holds");
        let following = next.into_writes();

        // N commits and is folded, then N+1: the engine ends as both say.
        pending.commit(&db, PersistMode::Buffer).unwrap();
        cache.fold(pending);
        assert_eq!(cache.get(Ks::Inbox, b"a2"), Some(Some(&b"n"[..])), "folded after its commit");
        following.commit(&db, PersistMode::Buffer).unwrap();
        cache.fold(following);
        let on_disk: Vec<Key> =
            db.scan(Ks::Inbox, b"a", b"b", 10).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(on_disk, [key(b"a2"), key(b"a4")]);
        assert_eq!(db.get(Ks::Inbox, b"a4").unwrap().as_deref(), Some(&b"m"[..]));
        assert_eq!(cache.get(Ks::Inbox, b"a3"), None, "a delete leaves no entry");
    }
}
