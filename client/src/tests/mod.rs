//! Unit tests: the sans-IO session core (events, request builders, status
//! tracking), backoff and URL handling (no sockets).

mod backoff;
mod events;
mod requests;
mod session;
mod status;
mod transport;
