//! Tests of the whole crate. `client` is the other side: a client-side frame
//! encoder (masking, any length form) used by the reader tests and proptests.

mod client;
mod frame;
mod handshake;
mod props;
mod reader;
