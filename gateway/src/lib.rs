//! The connection gateway node: one process holding client WebSocket sessions
//! on one mio event loop per core.
//!
//! - [`config`]: the TOML configuration, its CLI and environment overrides.
//! - [`node`]: starts the workers and the admin listener, handles signals.
//! - `worker`: one thread's event loop (accept, read, timers, flush).
//! - [`directory`]: which worker holds each (user, device), presence.
//! - [`fds`]: the descriptor budget (connections vs. the reserve) and the umask.
//! - [`backend`]: the store and push services (embedded or remote) and the
//!   channel their answers come back on.
//!
//! The protocol logic lives in the sans-IO crates beside this one:
//! `gateway-core` (session state machine), `gateway-ws` (RFC 6455),
//! `gateway-auth` (tokens), `gateway-admin` (metrics and admin HTTP).

pub mod backend;
pub mod config;
pub mod directory;
pub mod fds;
pub mod node;
mod watchdog;
mod worker;

pub use node::Node;
