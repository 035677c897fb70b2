//! Integration tests of gateway-admin: the rendered exposition checked by a
//! small format checker, and the admin listener over real sockets on
//! 127.0.0.1 (one test binary: see `support`).

// Test code: a panic is a failed assertion. (clippy.toml's test allowances
// cover `#[test]` functions, not the helpers in `support`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod http;
mod metrics;
mod support;
