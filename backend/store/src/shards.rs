//! Several writers (`SHARDS.md`): which shard owns what, where each shard's
//! database lives, and the committed reads one shard's writer makes of
//! another's.
//!
//! A user's keys (devices, device state, inbox, mailbox, prekeys,
//! visibility, its group cursors and group index, its order checks) belong
//! to the user's shard; a conversation's (conv_seq, log, dedup records of
//! the Sends to it, the group record) to the conversation's: a group's own,
//! a pair's its lower user's. Ids (messages, groups) are minted by a shard
//! from its own counter so that they never collide and a group's id names
//! its shard. With one shard every function here is the identity of
//! today's single database: the same directory, the same ids.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::{GroupId, UserId};

use crate::api::StoreError;
use crate::codec::ConvKey;
use crate::db::Db;
use crate::engine::Engine;
use crate::error::EngineError;

/// How many shards, and the owner of each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    count: usize,
}

impl Layout {
    /// `count` shards (at least 1).
    pub(crate) fn new(count: usize) -> Self {
        Self { count: count.max(1) }
    }

    /// One shard: today's single database.
    pub(crate) fn single() -> Self {
        Self::new(1)
    }

    /// The number of shards.
    pub(crate) fn count(self) -> usize {
        self.count
    }

    fn of(self, value: u64) -> usize {
        // Bounded by `count`, which is a usize.
        (value % self.count as u64) as usize
    }

    /// The shard of `user`'s keys. User ids are mixed first: a fleet hands
    /// them out in runs, and a run must spread over the shards.
    pub(crate) fn user(self, user: UserId) -> usize {
        self.of(user.0.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(32))
    }

    /// The shard of a group: the one that minted its id.
    pub(crate) fn group(self, group: GroupId) -> usize {
        self.of(group.0)
    }

    /// The shard of a conversation's keys.
    pub(crate) fn conv(self, conv: ConvKey) -> usize {
        match conv {
            ConvKey::Pair(low, _) => self.user(low),
            ConvKey::Group(group) => self.group(group),
        }
    }

    /// The id shard `shard` mints from its counter's value `n` (1, 2, …):
    /// `n` itself with one shard, and always `≡ shard` modulo the count.
    pub(crate) fn mint(self, n: u64, shard: usize) -> u64 {
        n.saturating_mul(self.count as u64).saturating_add(shard as u64)
    }

    /// The directory of shard `shard` under the store's `dir`: `dir` itself
    /// with one shard (today's layout), `dir/shard-<i>` with several.
    pub(crate) fn dir(self, dir: &Path, shard: usize) -> PathBuf {
        if self.count == 1 {
            dir.to_path_buf()
        } else {
            dir.join(format!("shard-{shard}"))
        }
    }

    /// The layout to open `dir` with, for `writers` asked (0: the count the
    /// directory was written with, or for a new one a quarter of the
    /// machine's cores, at least 1). A directory opens only with its own
    /// count: every key would be looked for in the wrong shard.
    pub(crate) fn resolve(dir: &Path, writers: usize) -> Result<Self, StoreError> {
        let refuse = |what: String| Err(StoreError::Engine(EngineError::Config { what }));
        let count = match (writers, Self::written(dir)?) {
            (0, Written::Count(found)) => found,
            (0, Written::Unmarked) => {
                return refuse(format!(
                    "{} holds shards but no `{MARKER}` file (a first opening cut short?): set writers to their count",
                    dir.display()
                ));
            }
            (0, Written::Nothing) => {
                std::thread::available_parallelism().map_or(1, |cores| cores.get() / 4).max(1)
            }
            (asked, Written::Count(found)) if asked != found => {
                return refuse(format!(
                    "{} was written with {found} writer(s); it opens only with writers = {found} or 0 (asked: {asked})",
                    dir.display()
                ));
            }
            (asked, _) => asked,
        };
        Ok(Self::new(count))
    }

    /// What `dir` holds: a store written with a count (the count in its
    /// marker, written once every shard opened, or 1 for a single database:
    /// fjall's `version` file in the directory itself), shards without a
    /// marker (a first opening that failed before it), or no store (an
    /// empty directory, `lost+found`). A marker that does not hold a count
    /// is an error, not "no store".
    fn written(dir: &Path) -> Result<Written, StoreError> {
        match std::fs::read_to_string(dir.join(MARKER)) {
            Ok(text) => match text.trim().parse::<usize>() {
                Ok(count) if (1..=crate::config::MAX_WRITERS).contains(&count) => Ok(Written::Count(count)),
                _ => Err(StoreError::Engine(EngineError::Config {
                    what: format!("{}: `{MARKER}` holds no writer count: {text:?}", dir.display()),
                })),
            },
            Err(_) if dir.join("version").exists() => Ok(Written::Count(1)),
            Err(_) if dir.join("shard-0").exists() => Ok(Written::Unmarked),
            Err(_) => Ok(Written::Nothing),
        }
    }

    /// Marks `dir` as written with this count, once every shard opened
    /// (a single database needs no marker: it is the directory itself).
    pub(crate) fn mark(self, dir: &Path) -> Result<(), StoreError> {
        if self.count == 1 || matches!(Self::written(dir)?, Written::Count(count) if count == self.count) {
            return Ok(());
        }
        let io =
            |e: std::io::Error| StoreError::Engine(EngineError::io(&e, format!("{}: {e}", dir.display())));
        let (marker, temporary) = (dir.join(MARKER), dir.join(format!("{MARKER}.new")));
        // The count is on disk before its name is, and the name before the
        // opening goes on: a power cut leaves no marker, or a whole one.
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        std::io::Write::write_all(&mut file, format!("{}\n", self.count).as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, &marker).map_err(io)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
    }
}

/// What a store directory holds (see [`Layout::written`]).
enum Written {
    /// A store written with this count.
    Count(usize),
    /// Shards without a marker.
    Unmarked,
    /// No store.
    Nothing,
}

/// The file in a sharded store's directory that holds its shard count.
const MARKER: &str = "writers";

/// Every shard's engine, for the committed reads a writer makes of other
/// shards (a conversation's log, a group record) and the readers' reads.
#[derive(Debug)]
pub(crate) struct Peers {
    /// The layout.
    pub(crate) layout: Layout,
    /// Each shard's engine, by shard.
    pub(crate) engines: Vec<Arc<Engine>>,
}

impl Peers {
    /// Shard `shard`'s open database (`Recovering` while it reopens).
    pub(crate) fn db(&self, shard: usize) -> Result<Arc<Db>, StoreError> {
        self.engines.get(shard).ok_or_else(|| StoreError::from(EngineError::ThreadStopped))?.db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One shard is today's store: ids as counted, the directory itself,
    /// everything in shard 0. With four, ids never collide and name the
    /// shard that minted them, and users spread evenly.
    #[test]
    fn one_shard_is_the_single_database_and_four_spread() {
        let one = Layout::single();
        assert_eq!((one.mint(1, 0), one.mint(7, 0)), (1, 7));
        assert_eq!(one.dir(Path::new("/s"), 0), Path::new("/s"));
        assert_eq!(one.user(UserId(123)), 0);

        let four = Layout::new(4);
        let mut ids = std::collections::HashSet::new();
        for shard in 0..4 {
            for n in 1..=100 {
                let id = four.mint(n, shard);
                assert!(ids.insert(id), "id {id} minted twice");
                assert_eq!(four.group(GroupId(id)), shard);
            }
        }
        assert_eq!(four.dir(Path::new("/s"), 2), Path::new("/s/shard-2"));
        let mut counts = [0usize; 4];
        for user in 1..=4_000 {
            if let Some(count) = counts.get_mut(four.user(UserId(user))) {
                *count += 1;
            }
        }
        assert!(counts.iter().all(|&c| (800..1_200).contains(&c)), "a run of ids spreads: {counts:?}");
        let pair = ConvKey::Pair(UserId(5), UserId(9));
        assert_eq!(four.conv(pair), four.user(UserId(5)), "a pair lives with its lower user");
    }

    /// A directory opens only with the shard count it was written with; 0
    /// takes that count, or sizes a new store to the machine.
    #[test]
    fn a_directory_refuses_another_count_and_zero_takes_its_own() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Layout::resolve(dir.path(), 3).unwrap().count(), 3, "empty: any count");
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        assert_eq!(Layout::resolve(dir.path(), 0).unwrap().count(), (cores / 4).max(1));
        for shard in 0..2 {
            std::fs::create_dir(dir.path().join(format!("shard-{shard}"))).unwrap();
        }
        assert_eq!(
            Layout::resolve(dir.path(), 4).unwrap().count(),
            4,
            "a first opening cut short: no store yet"
        );
        Layout::new(4).mark(dir.path()).unwrap();
        assert_eq!(Layout::resolve(dir.path(), 4).unwrap().count(), 4);
        assert_eq!(Layout::resolve(dir.path(), 0).unwrap().count(), 4);
        for count in [1, 2, 8] {
            let err = Layout::resolve(dir.path(), count).unwrap_err();
            assert!(err.to_string().contains("written with 4 writer(s)"), "{err}");
        }
        let single = tempfile::tempdir().unwrap();
        std::fs::create_dir(single.path().join("lost+found")).unwrap();
        assert_eq!(Layout::resolve(single.path(), 2).unwrap().count(), 2, "not a store: any count");
        std::fs::write(single.path().join("version"), b"").unwrap();
        assert_eq!(Layout::resolve(single.path(), 1).unwrap().count(), 1);
        assert_eq!(Layout::resolve(single.path(), 0).unwrap().count(), 1);
        assert!(Layout::resolve(single.path(), 2).is_err());

        let garbled = tempfile::tempdir().unwrap();
        std::fs::write(garbled.path().join(MARKER), b"").unwrap();
        assert!(Layout::resolve(garbled.path(), 4).is_err(), "an empty marker is an error");
    }
}
