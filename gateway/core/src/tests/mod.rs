//! Session core tests: a virtual clock, in-memory bytes, no sockets.

mod harness;
mod lifecycle;
mod outbound;
