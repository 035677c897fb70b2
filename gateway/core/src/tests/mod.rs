//! Session core tests: a virtual clock, in-memory bytes, no sockets.

mod control;
mod delivery;
pub(crate) mod harness;
mod lifecycle;
mod outbound;
