// Copyright (c) 2024-present, fjall-rs
// This source code is licensed under both the Apache 2.0 and MIT License
// (found in the LICENSE-* files in the repository)

use lsm_tree::SequenceNumberCounter;

use crate::{
    db::Keyspaces,
    flush::manager::FlushManager,
    journal::{manager::JournalManager, Journal},
    snapshot_tracker::SnapshotTracker,
    write_buffer_manager::WriteBufferManager,
};
use std::sync::{Arc, Mutex, RwLock};

pub struct SupervisorInner {
    pub db_config: crate::Config,

    /// Dictionary of all keyspaces
    #[doc(hidden)]
    pub keyspaces: Arc<RwLock<Keyspaces>>,

    pub(crate) write_buffer_size: WriteBufferManager,
    pub(crate) flush_manager: FlushManager,

    pub seqno: SequenceNumberCounter,

    pub snapshot_tracker: SnapshotTracker,

    pub(crate) journal: Arc<Journal>,

    /// Tracks journal size and garbage collects sealed journals when possible
    pub(crate) journal_manager: Arc<RwLock<JournalManager>>,

    pub(crate) backpressure_lock: Mutex<()>,

    /// Vendored change (see vendor/README.md): the memtables this database
    /// sealed, each kept alive here until nothing else holds it, so that it
    /// is freed by [`Supervisor::free_retired_memtables`] outside every lock
    /// rather than by the last version dropped under a tree's version lock.
    pub(crate) retired_memtables: Mutex<Vec<Arc<lsm_tree::Memtable>>>,
}

#[derive(Clone)]
pub struct Supervisor(Arc<SupervisorInner>);

impl std::ops::Deref for Supervisor {
    type Target = SupervisorInner;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Supervisor {
    pub fn new(inner: SupervisorInner) -> Self {
        Self(Arc::new(inner))
    }

    /// Vendored change: keeps a sealed memtable until it can be freed here.
    pub(crate) fn retire_memtable(&self, memtable: Arc<lsm_tree::Memtable>) {
        #[expect(clippy::expect_used)]
        self.retired_memtables.lock().expect("lock is poisoned").push(memtable);
    }

    /// Vendored change: frees the retired memtables nothing else holds any
    /// more (flushed, and out of every version still kept). Freeing a
    /// memtable frees each of its skiplist's entries, several milliseconds
    /// for a few MiB; under a version lock, every write waits for it. Call
    /// with no lock of a tree or the journal held.
    pub(crate) fn free_retired_memtables(&self) {
        let freed: Vec<Arc<lsm_tree::Memtable>> = {
            #[expect(clippy::expect_used)]
            let mut retired = self.retired_memtables.lock().expect("lock is poisoned");
            let (freed, kept) = std::mem::take(&mut *retired)
                .into_iter()
                .partition(|memtable| Arc::strong_count(memtable) == 1);
            *retired = kept;
            freed
        };
        drop(freed);
    }

    pub fn build_seqno_map(
        &self,
        keyspaces: &Keyspaces,
    ) -> Vec<crate::journal::manager::EvictionWatermark> {
        use crate::AbstractTree;

        let mut seqnos = Vec::with_capacity(keyspaces.len());

        for keyspace in keyspaces.values() {
            if let Some(lsn) = keyspace.tree.get_highest_memtable_seqno() {
                seqnos.push(crate::journal::manager::EvictionWatermark {
                    lsn,
                    keyspace: keyspace.clone(),
                });
            }
        }

        seqnos
    }
}
