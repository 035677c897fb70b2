//! Unit tests: the sans-IO session core, backoff and URL handling (no sockets).

mod backoff;
mod session;
mod transport;
