//! Integration tests of the tokio client against a scripted peer over real
//! sockets on 127.0.0.1 (one test binary: see `support`).

// Test code: a panic is a failed assertion. (clippy.toml's test allowances
// cover `#[test]` functions, not the helpers in `support`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod auth;
mod delivery;
mod reconnect;
mod requests;
mod support;
mod tls;
