//! The dead-letter file: one JSON line per notification given up on, for an
//! operator to inspect or replay. Every dead letter is also logged (warn) and
//! counted, with or without a file.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;

use crate::error::PushError;
use crate::metrics::PushMetrics;
use crate::notification::Notification;

/// Appends dead letters to an optional file.
#[derive(Debug)]
pub(crate) struct DeadLetter {
    path: Option<PathBuf>,
}

impl DeadLetter {
    /// Checks that the file can be opened for appending (creating it), so a
    /// bad path fails `Push::start` rather than the first dead letter.
    pub(crate) fn open(path: Option<PathBuf>) -> Result<Self, PushError> {
        if let Some(path) = &path {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| PushError::DeadLetter { path: path.clone(), source })?;
        }
        Ok(Self { path })
    }

    /// Records one dead letter. The file is opened per write (dead letters
    /// are rare) so that it can be rotated or removed underneath; a write
    /// error is logged, never fatal. One `write_all` with `O_APPEND` keeps
    /// each line whole.
    pub(crate) fn write(&self, metrics: &PushMetrics, n: &Notification, tries: u32, error: &str) {
        PushMetrics::add(&metrics.dead_lettered, 1);
        tracing::warn!(
            target: "push",
            user = n.user.0,
            device = n.device.0,
            seq = n.seq.0,
            tries,
            error,
            "push notification dead-lettered"
        );
        let Some(path) = &self.path else { return };
        let mut line = n.dead_letter_json(tries, error);
        line.push(b'\n');
        let written =
            OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| f.write_all(&line));
        if let Err(e) = written {
            tracing::error!(target: "push", path = %path.display(), error = %e, "cannot write dead letter");
        }
    }
}
