//! The crate's one error enum: what can go wrong when the push service starts.
//! Failures after start (a webhook that keeps failing) are not errors of the
//! caller: they end in the dead-letter file and the metrics.

use std::path::PathBuf;

/// Why the push service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// A configuration value is out of range; names the field.
    #[error("invalid push config: {field}: {reason}")]
    Config {
        /// The offending field of [`crate::PushConfig`].
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The dead-letter file cannot be opened for appending.
    #[error("cannot open dead-letter file {path}: {source}")]
    DeadLetter {
        /// The configured path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The push thread or its runtime could not be created.
    #[error("cannot start the push thread: {0}")]
    Thread(#[source] std::io::Error),
}
