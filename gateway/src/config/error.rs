//! [`ConfigError`]: why a configuration could not be loaded.

use std::io;
use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    // The cause is in the message, not a `source`: printed with its chain
    // (`{:#}`, the binary's errors) it would show twice.
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        error: io::Error,
    },
    /// The file is not valid TOML, has a key this version does not know, or a
    /// value of the wrong type (the message names the key, line and column).
    #[error("invalid config {origin}: {error}")]
    Parse {
        /// The file's path, or `<string>`.
        origin: String,
        /// The TOML or type error.
        error: toml::de::Error,
    },
    /// A value is out of range or inconsistent with another one.
    #[error("invalid config: {key}: {reason}")]
    Invalid {
        /// The key at fault, as `section.key`.
        key: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

pub(super) fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}
