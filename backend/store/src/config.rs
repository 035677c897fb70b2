//! The store's configuration: one struct, a documented default per field, and
//! [`StoreConfig::validate`].

use std::path::PathBuf;
use std::time::Duration;

use crate::api::{Durability, StoreError};
use crate::error::EngineError;

/// Most writers (shards) a store runs.
pub const MAX_WRITERS: usize = 64;

/// Store settings. Build with [`StoreConfig::new`] and change fields as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// fjall database directory, created if missing. No default.
    pub dir: PathBuf,
    /// How durable a write is before it is answered. Default `Process`.
    pub durability: Durability,
    /// Most devices per user. Default 5 (protocol maximum 16).
    pub max_devices: u32,
    /// How long undelivered inbox entries, messages and dedup records live.
    /// Default 30 days.
    pub retention: Duration,
    /// Bound of each request queue (writer, readers); a full queue answers
    /// `Overloaded` at once. Default 65 536.
    pub queue: usize,
    /// Most write requests in one group commit. Default 1024.
    pub max_batch: usize,
    /// Reader threads. Default 1.
    pub readers: usize,
    /// Writer threads, each with its own shard of the data (its own
    /// database under `dir`, and a committer thread): `SHARDS.md`. A
    /// database opens only with the count it was written with; 0 takes
    /// that count, or for a new database a quarter of the machine's cores
    /// (at least 1). Default 1 (one database, in `dir` itself).
    pub writers: usize,
    /// One-time prekey stock at or below which a device is told to upload
    /// more (PREKEY_LOW). Default 10.
    pub prekey_low: u32,
}

impl StoreConfig {
    /// Defaults, with the database in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            durability: Durability::Process,
            max_devices: 5,
            retention: Duration::from_secs(30 * 24 * 3600),
            queue: 65_536,
            max_batch: 1024,
            readers: 1,
            writers: 1,
            prekey_low: 10,
        }
    }

    /// Checks the values: every count at least 1, devices within the protocol
    /// maximum, a non-zero retention. (An fsync interval of zero syncs each
    /// batch of what is already queued.)
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |what: &str| Err(StoreError::Engine(EngineError::Config { what: what.to_owned() }));
        if self.max_devices == 0 || self.max_devices as usize > protocol::limits::MAX_DEVICES_PER_USER {
            return bad("max_devices must be 1..=16");
        }
        if self.retention.is_zero() {
            return bad("retention must be above zero");
        }
        if self.queue == 0 || self.max_batch == 0 || self.readers == 0 {
            return bad("queue, max_batch and readers must be at least 1");
        }
        if self.writers > MAX_WRITERS {
            return bad("writers must be 0..=64 (0: sized to the machine)");
        }
        Ok(())
    }
}
