//! The hub on a virtual clock, without sockets (quinn's habit): each test
//! names the feature it shows and fails if that feature is removed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod delivery;
mod fanout;
mod fleet;
mod harness;
mod logins;
mod media;
mod presence;
