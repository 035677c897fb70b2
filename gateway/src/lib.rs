//! The connection gateway node: one process holding client WebSocket sessions
//! on one event loop per core (epoll through mio, or an io_uring ring).
//!
//! - [`config`]: the TOML configuration, its CLI and environment overrides.
//! - [`node`]: starts the workers and the admin listener, handles signals.
//! - `driver`: the IO around each worker's hub: the epoll (mio) loop or the
//!   io_uring ring (accept, read, timers, writes, wake-ups, the clock), around
//!   the part of a worker both share.
//! - [`fds`]: the descriptor budget (connections vs. the reserve) and the umask.
//! - [`backend`]: the store and push services (embedded or remote) and the
//!   channel their answers come back on.
//! - `fleet`: cluster mode: the node's lease and registry calls, the router
//!   to other nodes and the link listener, on one thread of its own.
//!
//! The logic lives in the sans-IO crates beside this one: `gateway-hub`
//! (messaging), `routing` (the directory, per-worker batches),
//! `gateway-core` (session state machine), `gateway-ws` (RFC 6455),
//! `gateway-auth` (tokens), `gateway-admin` (metrics and admin HTTP).

pub mod backend;
pub mod config;
mod driver;
pub mod fds;
mod fleet;
mod media;
pub mod node;
mod watchdog;

pub use node::Node;
