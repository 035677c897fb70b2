//! The sans-IO session core of the gateway: one client connection's protocol
//! state (HTTP upgrade, HELLO, live, draining, closing) with no socket, clock
//! or thread. A driver (the mio worker, later io_uring) owns the socket and
//! feeds bytes and time in; the core hands back output bytes and [`Action`]s.
//!
//! See [`Session`] for the call order and `LIFECYCLE.md` for the states.

mod context;
mod delivery;
mod outbound;
mod rate;
mod session;
mod shared;
mod timers;

pub use context::{Action, Config, Ctx, NoObserver, Observer};
pub use delivery::Mode;
pub use outbound::{Class, Limits, Outbound, OwnedChunk, Queued, MAX_FRAME_HEAD};
pub use rate::RateLimit;
pub use session::{Identity, Session, State};
pub use shared::SharedDeliver;
pub use timers::{Timer, Timers};

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
