// Copyright (c) 2024-present, fjall-rs
// This source code is licensed under both the Apache 2.0 and MIT License
// (found in the LICENSE-* files in the repository)

use crate::{
    compaction::state::CompactionState,
    memtable::Memtable,
    tree::sealed::SealedMemtables,
    version::{persist_version, Version},
    SeqNo, SequenceNumberCounter,
};
use std::{collections::VecDeque, path::Path, sync::Arc, sync::MutexGuard};

/// A super version is a point-in-time snapshot of memtables and a [`Version`] (list of disk files)
#[derive(Clone)]
pub struct SuperVersion {
    /// Active memtable that is being written to
    #[doc(hidden)]
    pub active_memtable: Arc<Memtable>,

    /// Frozen memtables that are being flushed
    pub(crate) sealed_memtables: Arc<SealedMemtables>,

    /// Current tree version
    pub(crate) version: Version,

    pub(crate) seqno: SeqNo,
}

pub struct SuperVersions(VecDeque<SuperVersion>);

impl SuperVersions {
    pub fn new(version: Version) -> Self {
        Self(
            vec![SuperVersion {
                active_memtable: Arc::new(Memtable::new(0)),
                sealed_memtables: Arc::default(),
                version,
                seqno: 0,
            }]
            .into(),
        )
    }

    pub fn memtable_size_sum(&self) -> u64 {
        let mut set = crate::HashMap::default();

        for super_version in &self.0 {
            set.entry(super_version.active_memtable.id)
                .and_modify(|bytes| *bytes += super_version.active_memtable.size())
                .or_insert_with(|| super_version.active_memtable.size());

            for sealed in super_version.sealed_memtables.iter() {
                set.entry(sealed.id)
                    .and_modify(|bytes| *bytes += sealed.size())
                    .or_insert_with(|| sealed.size());
            }
        }

        set.into_values().sum()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn free_list_len(&self) -> usize {
        self.len().saturating_sub(1)
    }

    pub fn maintenance(&mut self, folder: &Path, gc_watermark: SeqNo) -> crate::Result<()> {
        if gc_watermark == 0 {
            return Ok(());
        }

        if self.free_list_len() < 1 {
            return Ok(());
        }

        log::trace!("Running manifest GC with watermark={gc_watermark}");

        if let Some(hi_idx) = self.0.iter().rposition(|x| x.seqno < gc_watermark) {
            for _ in 0..hi_idx {
                let Some(head) = self.0.front() else {
                    break;
                };

                log::trace!(
                    "Removing version #{} (seqno={})",
                    head.version.id(),
                    head.seqno,
                );

                let path = folder.join(format!("v{}", head.version.id()));
                if path.try_exists()? {
                    crate::file::retry_transient_io(|| std::fs::remove_file(&path))?;
                }

                self.0.pop_front();
            }
        }

        log::trace!("Manifest GC done, version length now {}", self.0.len());

        Ok(())
    }

    /// Modifies the level manifest atomically.
    ///
    /// The function accepts a transition function that receives the current version
    /// and returns a new version.
    ///
    /// The function takes care of persisting the version changes on disk.
    pub(crate) fn upgrade_version<F: FnOnce(&SuperVersion) -> crate::Result<SuperVersion>>(
        &mut self,
        tree_path: &Path,
        f: F,
        seqno: &SequenceNumberCounter,
        visible_seqno: &SequenceNumberCounter,
    ) -> crate::Result<()> {
        self.upgrade_version_with_seqno(tree_path, f, seqno.next(), visible_seqno)
    }

    /// Like `upgrade_version`, but takes an already-allocated sequence number.
    ///
    /// This is useful when the seqno must be coordinated with other operations
    /// (e.g., bulk ingestion where tables are recovered with the same seqno).
    pub(crate) fn upgrade_version_with_seqno<
        F: FnOnce(&SuperVersion) -> crate::Result<SuperVersion>,
    >(
        &mut self,
        tree_path: &Path,
        f: F,
        seqno: SeqNo,
        visible_seqno: &SequenceNumberCounter,
    ) -> crate::Result<()> {
        let mut next_version = f(&self.latest_version())?;
        next_version.seqno = seqno;
        log::trace!("Next version seqno={}", next_version.seqno);

        persist_version(tree_path, &next_version.version)?;
        self.append_version(next_version);

        visible_seqno.fetch_max(seqno + 1);

        Ok(())
    }

    /// Vendored change: installs `version`, already written to disk by
    /// [`persist_next`] from the latest version's tables, on the latest super
    /// version, with `memtables` applied to its memtables (which a rotation
    /// may have changed since).
    ///
    /// # Errors
    ///
    /// `Unrecoverable` if the latest tables are no longer those `version`
    /// was made from: a version change that did not hold the compaction
    /// state (see [`persist_next`]), a bug.
    pub(crate) fn install_persisted<F: FnOnce(&mut SuperVersion)>(
        &mut self,
        _held: &MutexGuard<'_, CompactionState>,
        version: Version,
        memtables: F,
        seqno: &SequenceNumberCounter,
        visible_seqno: &SequenceNumberCounter,
    ) -> crate::Result<()> {
        let mut next = self.latest_version();
        if next.version.id() + 1 != version.id() {
            log::error!(
                "version #{} was persisted from #{}, but the latest is #{}",
                version.id(),
                version.id().saturating_sub(1),
                next.version.id(),
            );
            return Err(crate::Error::Unrecoverable);
        }
        next.version = version;
        memtables(&mut next);
        next.seqno = seqno.next();
        visible_seqno.fetch_max(next.seqno + 1);
        self.append_version(next);
        Ok(())
    }

    pub fn append_version(&mut self, version: SuperVersion) {
        self.0.push_back(version);
    }

    pub fn replace_latest_version(&mut self, version: SuperVersion) {
        if self.0.pop_back().is_some() {
            self.0.push_back(version);
        }
    }

    pub fn latest_version(&self) -> SuperVersion {
        #[expect(clippy::expect_used, reason = "SuperVersion is expected to exist")]
        self.0
            .iter()
            .last()
            .cloned()
            .expect("should always have a SuperVersion")
    }

    pub fn get_version_for_snapshot(&self, seqno: SeqNo) -> SuperVersion {
        if seqno == 0 {
            #[expect(clippy::expect_used, reason = "SuperVersion is expected to exist")]
            return self
                .0
                .front()
                .cloned()
                .expect("should always find a SuperVersion");
        }

        let version = self
            .0
            .iter()
            .rev()
            .find(|version| version.seqno < seqno)
            .cloned();

        if version.is_none() {
            log::error!("Failed to find a SuperVersion for snapshot with seqno={seqno}");
            log::error!("SuperVersions:");

            for version in self.0.iter().rev() {
                log::error!("-> {}, seqno={}", version.version.id(), version.seqno);
            }
        }

        #[expect(clippy::expect_used, reason = "SuperVersion is expected to exist")]
        version.expect("should always find a SuperVersion")
    }
}

/// Vendored change: writes the version `f` makes of `base` to disk (the
/// version file and `current`, five fsyncs), to be installed with
/// [`SuperVersions::install_persisted`]. No lock is held here: every write
/// reads the version lock for its memtable, and upstream persisted under
/// its write side, so each flush stalled every writer of the tree for as
/// long as those fsyncs took.
///
/// The caller holds the tree's compaction state (`_held`, asked for so that
/// no caller can forget it) from before it read `base` until the install.
/// Every change of the tables, which are what a version file records, is
/// made under it, so none can come in between, and no two callers write a
/// version file at once.
pub(crate) fn persist_next<F: FnOnce(&Version) -> crate::Result<Version>>(
    _held: &MutexGuard<'_, CompactionState>,
    tree_path: &Path,
    base: &Version,
    f: F,
) -> crate::Result<Version> {
    let next = f(base)?;
    persist_version(tree_path, &next)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_log::test;

    /// Vendored change: runs `change` (a flush or a compaction) on a tree
    /// holding `tables` flushed tables and one key in its memtable, and
    /// holds it while it writes its version file. The version lock must be
    /// free then, so that writes (which read it) and a rotation (which
    /// writes it) go on; the rotation's memtable is still sealed after the
    /// change installs its version, and the installed version is the one
    /// on disk. Returns the table count after the change.
    fn writes_go_on_while_a_version_is_persisted(
        tables: u8,
        change: fn(&crate::Tree) -> crate::Result<()>,
    ) -> crate::Result<usize> {
        use crate::{AbstractTree, AnyTree, Config, SequenceNumberCounter};
        use std::sync::mpsc;

        let dir = tempfile::tempdir()?;
        let open = || {
            Config::new(
                dir.path(),
                SequenceNumberCounter::default(),
                SequenceNumberCounter::default(),
            )
            .open()
        };
        let AnyTree::Standard(tree) = open()? else {
            panic!("a standard tree was asked for");
        };
        for i in 0..tables {
            tree.insert([b'k', i], "v", 0);
            tree.flush_active_memtable(0)?;
        }
        tree.insert("before", "1", 0);

        let (persisting, persisting_rx) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<()>();
        let hook = Box::new(move || {
            persisting.send(()).expect("the test waits");
            let _ = go_rx.recv();
        });
        crate::version::persist::pause::before_next_persist(&tree.config.path, hook);
        let changer = {
            let tree = tree.clone();
            std::thread::spawn(move || change(&tree))
        };
        persisting_rx.recv().expect("the change persists a version");

        // Upstream holds the write side here: `try_write` fails, and an
        // insert would wait for the go that this thread would never give.
        let free = tree.version_history.try_write().is_ok();
        let rotated = free.then(|| {
            tree.insert("during", "2", 1);
            tree.rotate_memtable()
        });
        go.send(()).expect("the change waits");
        changer.join().expect("the change does not panic")?;
        assert!(free, "the version lock was held while the version file was written");
        assert!(rotated.flatten().is_some(), "a memtable was rotated during the persist");

        let latest = tree.version_history.read().expect("lock is poisoned").latest_version();
        assert!(
            latest.sealed_memtables.iter().any(|mt| mt.get(b"during", 2).is_some()),
            "the memtable rotated during the persist is still sealed",
        );
        assert!(tree.get("during", 2)?.is_some());
        for i in 0..tables {
            assert!(tree.get([b'k', i], 2)?.is_some());
        }
        let (installed, count) = (latest.version.id(), tree.table_count());
        drop(latest);
        drop(tree);

        // On disk is what was installed.
        let AnyTree::Standard(tree) = open()? else {
            panic!("a standard tree was asked for");
        };
        assert_eq!(installed, tree.current_version().id());
        assert_eq!(count, tree.table_count());
        for i in 0..tables {
            assert!(tree.get([b'k', i], 2)?.is_some());
        }
        Ok(count)
    }

    #[test]
    fn a_flush_writes_its_version_outside_the_version_lock() -> crate::Result<()> {
        let tables = writes_go_on_while_a_version_is_persisted(0, |tree| {
            crate::AbstractTree::flush_active_memtable(tree, 0)
        })?;
        assert_eq!(1, tables, "the flushed memtable is a table");
        Ok(())
    }

    #[test]
    fn a_compaction_writes_its_version_outside_the_version_lock() -> crate::Result<()> {
        let tables = writes_go_on_while_a_version_is_persisted(3, |tree| {
            crate::AbstractTree::major_compact(tree, u64::MAX, 0)
        })?;
        assert_eq!(1, tables, "three tables merged into one");
        Ok(())
    }

    #[test]
    fn super_version_gc_above_watermark() -> crate::Result<()> {
        let mut history = SuperVersions(
            vec![
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 0,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 1,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 2,
                },
            ]
            .into(),
        );

        history.maintenance(Path::new("."), 0)?;

        assert_eq!(history.free_list_len(), 2);

        Ok(())
    }

    #[test]
    fn super_version_gc_below_watermark_simple() -> crate::Result<()> {
        let mut history = SuperVersions(
            vec![
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 0,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 1,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 2,
                },
            ]
            .into(),
        );

        history.maintenance(Path::new("."), 3)?;

        assert_eq!(history.len(), 1);

        Ok(())
    }

    #[test]
    fn super_version_gc_below_watermark_simple_2() -> crate::Result<()> {
        let mut history = SuperVersions(
            vec![
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 0,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 1,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 2,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 8,
                },
            ]
            .into(),
        );

        history.maintenance(Path::new("."), 3)?;

        assert_eq!(history.len(), 2);

        Ok(())
    }

    #[test]
    fn super_version_gc_below_watermark_keep() -> crate::Result<()> {
        let mut history = SuperVersions(
            vec![
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 0,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 8,
                },
            ]
            .into(),
        );

        history.maintenance(Path::new("."), 3)?;

        assert_eq!(history.len(), 2);

        Ok(())
    }

    #[test]
    fn super_version_gc_below_watermark_shadowed() -> crate::Result<()> {
        let mut history = SuperVersions(
            vec![
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 0,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 2,
                },
            ]
            .into(),
        );

        history.maintenance(Path::new("."), 3)?;

        assert_eq!(history.len(), 1);

        Ok(())
    }
}
