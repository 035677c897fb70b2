//! What can go wrong reading the model's inputs. Every input is a file a
//! person edits, so each error names the file and the field.

use std::path::PathBuf;

/// An input the model cannot use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A value parses but makes no sense (negative, not finite, out of range).
    #[error("{field}: {why}")]
    Invalid {
        /// The field, dotted (`gateway.us_per_heartbeat`).
        field: String,
        /// What is wrong with it.
        why: String,
    },
    /// No node count satisfies the load: a node's fixed memory (idle
    /// process, links, the OS reserve) leaves no room for sessions.
    #[error("no fleet fits: {0}")]
    NoFit(String),
}

impl ModelError {
    /// An [`ModelError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), why: why.into() }
    }
}

/// Fails unless `value` is finite and at least 0.
pub fn non_negative(field: &str, value: f64) -> Result<(), ModelError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ModelError::invalid(field, format!("{value} is not a finite number >= 0")))
    }
}

/// Fails unless `value` is finite and above 0.
pub fn positive(field: &str, value: f64) -> Result<(), ModelError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ModelError::invalid(field, format!("{value} is not a finite number > 0")))
    }
}

/// Fails unless `value` is a share: finite, from 0 to 1.
pub fn share(field: &str, value: f64) -> Result<(), ModelError> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(ModelError::invalid(field, format!("{value} is not a share from 0 to 1")))
    }
}

/// Reads a whole file, naming it in the error.
pub fn read(path: &std::path::Path) -> Result<String, ModelError> {
    std::fs::read_to_string(path).map_err(|source| ModelError::Read { path: path.to_owned(), source })
}
