//! The store's second engine, for fleets: [`backend_store::StoreApi`] on a
//! Redis Cluster, one Lua script per atomic step on one slot, and chains of
//! idempotent steps for what spans users (`backend/store/REDIS.md`).
//!
//! Built so far (issue 15, in progress): Connect, 1:1 Send (the claim,
//! append, enter and finish chain, with the order check and its catch-up,
//! and the dedup answer with the original's unacked entries), Inbox, Ack,
//! Read and `Cursors` for 1:1 conversations (delivered and read receipts,
//! the mailbox), prekeys and visibility. Group requests are answered
//! `StoreError::Engine` saying they are not built yet; nothing selects this
//! engine in a gateway or store process yet.

mod cursors;
mod entry;
mod keys;
mod prekeys;
mod scripts;
mod send;
mod store;
#[cfg(test)]
mod tests;

pub use store::{RedisConfig, RedisStore};
