//! Routing: where each session lives, and how output for it gets there.
//!
//! - [`directory`]: user → connected devices → the session that holds each
//!   ([`SessionRef`]: worker, slab key and generation today; the fleet adds
//!   the node), presence watchers and state, the prekey-fetch budget. One per
//!   node, shared by its workers (sharded locks, touched per recipient user,
//!   never per frame).
//! - [`outbox`]: output for sessions that live elsewhere, batched per
//!   destination, bounded, shed oldest-first when a destination does not keep
//!   up. A destination is a dense index: the node's workers are
//!   `0..workers`, and in a fleet index `workers` is the node's fleet router
//!   ([`Link`] is what a batch goes over).
//! - [`link`]: the link protocol between nodes (`LINKS.md`): frames, encoding
//!   into a caller's buffer, decoding from a byte stream.
//!
//! No IO, no clock, no threads: the hub calls in with the time it was given
//! and its driver carries the batches ([`Link`] is what it carries them
//! over).

pub mod directory;
pub mod link;
pub mod outbox;

pub use directory::{Directory, PresenceView, SessionRef};
pub use outbox::{Flushed, Link, Outbox, Posted};
