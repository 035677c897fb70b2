//! The messaging hub of one gateway worker, sans IO: the sessions of the
//! worker (their [`gateway_core::Session`] cores and the messaging state
//! around them) and everything a frame causes beyond its session: store
//! requests, login admission, ACK coalescing, sync windows, fanout, receipts, presence,
//! typing, and the batches for other workers.
//!
//! No socket, no clock, no thread, no channel: the driver (the epoll loop
//! today, io_uring next) owns those, passes the time in ([`Now`]) and carries
//! the work out. `tests/purity.rs` keeps it that way.
//!
//! # Call order (one driver loop turn)
//!
//! Events in, each with the turn's [`Now`]:
//! - [`Hub::insert`] for an accepted connection (the driver's part `C` rides
//!   in the session's slot), then [`Hub::handle_read`] with its bytes,
//!   [`Hub::handle_peer_gone`] at end of stream;
//! - [`Hub::handle_session_timeout`] when a session's deadline
//!   ([`Hub::poll_session_timeout`]) has passed, [`Hub::handle_timeout`] when
//!   the hub's own has ([`Hub::poll_timeout`]: presence, held SEND_ACKs);
//! - [`Hub::handle_answer`] for a store answer, [`Hub::handle_registered`]
//!   for a registry answer (cluster mode), [`Hub::handle_batch`] for a batch
//!   another worker (or the node's fleet router) sent;
//! - [`Hub::drain`], [`Hub::close_all`], [`Hub::reconfigure`] from the node.
//!
//! Then, at the end of the turn:
//! 1. [`Hub::end_turn`]: this worker's own batch is applied;
//! 2. [`Hub::flush_batches`]: other workers' batches go over their links;
//! 3. for each session [`Hub::poll_touched`] names: [`Hub::seal`], write what
//!    [`Hub::output`] holds, report it with [`Hub::handle_written`];
//! 4. [`Hub::poll_store`], [`Hub::poll_push`] and (cluster mode)
//!    [`Hub::poll_fleet`] until empty: send them;
//! 5. [`Hub::poll_closed`] until empty: last write, close the socket.
//!
//! [`Hub::has_work`] says whether the driver must turn again without
//! sleeping.

mod acks;
mod answers;
mod config;
mod fanout;
mod frames;
mod held;
mod hub;
mod logins;
mod observe;
mod presence;
mod retry;
mod sessions;
mod slot;
mod work;

pub use config::HubConfig;
pub use hub::{Hub, Setup};
pub use work::{Closed, Confirm, FleetCall, FleetItem, Now, PushWork, Remote, StoreCall, Ticket};

#[cfg(test)]
mod tests;
