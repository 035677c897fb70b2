//! [`Engine`]: the open fjall database, shared by the writer and the readers,
//! and its reopening after a failure.
//!
//! fjall 3 "poisons" its database when a journal write or persist fails
//! (`Batch::commit`: ENOSPC, EIO) and when a background flush, compaction or
//! journal rotation fails (a worker thread's error, e.g. EMFILE opening the
//! next file): from then on every write answers `Poisoned`, whatever the
//! cause became. Only a new `Database` clears it. Dropping every handle joins
//! fjall's threads and releases its lock file, so the same directory can be
//! reopened in this process; the reopening replays the journal (a torn last
//! batch is dropped), so every answered write is found again.
//!
//! So the writer, on a failed commit, closes the database ([`Engine::close`]:
//! readers stop using it), answers [`StoreError::Recovering`] while it is
//! closed, and reopens it ([`Engine::open_again`]) with a growing backoff
//! until that works and a first write commits (a reopening on a disk that is
//! still full succeeds, since opening writes nothing); only then are readers
//! and writes let in again ([`Engine::publish`]). An answered write is never
//! lost: writes are answered only after their commit returned, and a commit
//! that failed was answered `Recovering` (if its batch reached the journal
//! anyway, the client's retry finds it by dedup).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::api::StoreError;
use crate::db::Db;

/// The wait before the first reopening after a failure; it doubles with each
/// failure in a row up to [`MAX_BACKOFF`], and is back to this after a
/// successful commit.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two reopenings: how long a node stays unwritable
/// after the cause is gone, at most.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The database, or nothing while the writer reopens it.
#[derive(Debug)]
pub(crate) struct Engine {
    dir: PathBuf,
    db: RwLock<Option<Arc<Db>>>,
    /// While closed: the wait the writer announced before its next attempt
    /// (what readers answer as `retry_after_ms`).
    retry_after_ms: AtomicU32,
}

impl Engine {
    /// Opens the database in `dir`.
    pub(crate) fn open(dir: PathBuf) -> Result<Self, StoreError> {
        let db = Db::open(&dir)?;
        Ok(Self { dir, db: RwLock::new(Some(Arc::new(db))), retry_after_ms: AtomicU32::new(0) })
    }

    /// The open database, or `Recovering` while it is closed.
    pub(crate) fn db(&self) -> Result<Arc<Db>, StoreError> {
        let slot = self.db.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.clone()
            .ok_or(StoreError::Recovering { retry_after_ms: self.retry_after_ms.load(Ordering::Relaxed) })
    }

    /// Whether the database is open.
    pub(crate) fn is_open(&self) -> bool {
        self.db.read().unwrap_or_else(std::sync::PoisonError::into_inner).is_some()
    }

    /// Closes the database (it is dropped when the last reader lets go of
    /// it); the next attempt is in `retry_after`.
    pub(crate) fn close(&self, retry_after: Duration) {
        self.announce(retry_after);
        self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }

    /// Tells readers when the next attempt is.
    pub(crate) fn announce(&self, retry_after: Duration) {
        let ms = u32::try_from(retry_after.as_millis()).unwrap_or(u32::MAX).max(1);
        self.retry_after_ms.store(ms, Ordering::Relaxed);
    }

    /// Opens the database again (fjall refuses while an old handle is alive:
    /// a reader still using it; the next attempt will do).
    pub(crate) fn open_again(&self) -> Result<Arc<Db>, StoreError> {
        Ok(Arc::new(Db::open(&self.dir)?))
    }

    /// Hands a reopened database to the readers.
    pub(crate) fn publish(&self, db: Arc<Db>) {
        *self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(db);
    }
}
