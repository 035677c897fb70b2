//! The store's second engine, for fleets: [`backend_store::StoreApi`] on a
//! Redis Cluster, one Lua script per atomic step on one slot, and chains of
//! idempotent steps for what spans users (`backend/store/REDIS.md`).
//!
//! Every request of `StoreApi` is served, with the durability settings
//! (the masters' AOF checked at start, `WAIT` for `replicas = N`). What is
//! not built (deleting a body at its last ack, fewer commands per message)
//! is listed at the end of REDIS.md, with the benchmark's figures.

mod cursors;
mod durability;
mod entry;
mod groups;
mod ids;
mod keys;
mod prekeys;
mod scripts;
mod send;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(test)]
mod tests;

pub use durability::Durability;
pub use store::{RedisConfig, RedisStore};
