//! The fleet's session registry on Redis: which node holds each device's
//! session. A single `redis-server` for small fleets and development, a
//! Redis Cluster for large ones; every key is one hash slot, so each
//! operation is one atomic script on one shard.
//!
//! Liveness comes from **node leases with boot epochs**, not from a TTL
//! refreshed per session: a node [`Registry::join`]s with a new epoch and
//! [`Registry::renew`]s its lease every few seconds (a few hundred writes per
//! second for a 400-node fleet, whatever the number of sessions). A device's
//! [`Placement`] names the node and epoch that hold it; readers ignore
//! placements whose node no longer holds a lease of that epoch, and remove
//! them lazily. A node whose renewal finds another epoch (its lease expired
//! while it was paused or cut off) is fenced: it must join again and
//! re-register its sessions.
//!
//! Placements change only at connect and close, by compare-and-set:
//! [`Registry::register`] returns the placement it replaced (that session is
//! closed with 4007 where it lives), and [`Registry::unregister`] removes a
//! placement only if it is still exactly the one given, so a late close
//! never erases a newer connection.
//!
//! Every call is bounded by the configured timeout and runs on the caller's
//! async runtime (the node's backend thread), never on a worker.
//!
//! Key layout (`routing/README.md` has the reasoning):
//! - `reg:{u:<user>}`: hash, field `d:<device>` = `<node>:<epoch>:<session>`;
//!   a safety TTL (days) renewed at every register bounds what a user
//!   never looked up again leaves behind.
//! - `lease:{n:<node>}`: the node's current epoch, with the lease's expiry.
//! - `epoch:{n:<node>}`: the node's epoch counter (never expires).

mod conn;
mod keys;
mod registry;
#[cfg(feature = "testing")]
pub mod testing;

pub use redis::aio::ConnectionLike;
pub use registry::{Config, Placement, Registry, RegistryError, Renewal};

/// A gateway node of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// One boot (or re-join after fencing) of a node: increases every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(pub u64);
