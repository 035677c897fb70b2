//! The store's second engine, for fleets: [`backend_store::StoreApi`] on a
//! Redis Cluster, one Lua script per atomic step on one slot, and chains of
//! idempotent steps for what spans users (`backend/store/REDIS.md`).
//!
//! Every request of `StoreApi` is served (issue 15, in progress): what is
//! left (the body reference counts, the retention sweeper, `WAIT` for
//! replicas, selecting the engine in the store and gateway processes) is
//! listed at the end of REDIS.md.

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
