//! The connection gateway node. Placeholder: the session core, the mio driver,
//! workers, TLS and the admin listener arrive with the gateway issue (see
//! ARCHITECTURE.md for where each will live).

/// Protocol versions this build will speak, from the `protocol` crate.
pub const PROTOCOL_VERSIONS: std::ops::RangeInclusive<u8> =
    protocol::limits::VERSION_MIN..=protocol::limits::VERSION_MAX;
