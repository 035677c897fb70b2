//! Unit tests of the sans-IO session core (no sockets).

mod session;
