//! The store service: messages, per-device inboxes, dedup, cursors, groups,
//! devices and prekeys, on fjall. See `README.md` for the key layout,
//! threading and durability; [`StoreApi`] and the request types for the contract.
//!
//! Construct with [`Store::open`]`(`[`StoreConfig::new`]`(dir))` and call
//! [`StoreApi::call`] with a [`Request`] and a `done` callback.

mod api;
mod bell;
mod cache;
mod chain;
mod codec;
mod committer;
mod config;
mod cursors;
mod db;
mod devices;
mod engine;
mod error;
mod expiry;
mod fanout;
#[cfg(feature = "faults")]
pub mod faults;
#[cfg(fuzzing)]
pub mod fuzzing;
mod group_cursors;
mod groups;
mod messages;
mod metrics;
mod prekeys;
mod reader;
mod records;
mod shards;
mod store;
mod writer;

pub use api::*;
pub use config::{StoreConfig, MAX_WRITERS};
pub use db::MAX_CACHED_FILES;
pub use error::{EngineError, GrpcCode, UnavailableError};
pub use metrics::StoreMetrics;
pub use store::Store;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
