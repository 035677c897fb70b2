//! The push service's configuration: one struct, a default per field, and
//! [`PushConfig::validate`] to reject nonsense before the thread starts.

use std::path::PathBuf;
use std::time::Duration;

use hyper::Uri;

use crate::error::PushError;

/// Configuration of [`crate::Push`]. `PushConfig::default()` is a working
/// setup that logs notifications instead of sending them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// Where notifications go. Default [`ProviderConfig::Log`].
    pub provider: ProviderConfig,
    /// Coalescing window per device: the first note opens it, every note for
    /// the same device until it closes joins the same notification. Default 2 s.
    pub window: Duration,
    /// Tries of one notification (the first included) before it is
    /// dead-lettered. Default 5.
    pub max_tries: u32,
    /// Backoff before the second try; doubled per further try, with jitter.
    /// Default 500 ms.
    pub backoff_base: Duration,
    /// Upper bound of any backoff, `Retry-After` included. Default 30 s.
    pub backoff_cap: Duration,
    /// JSON-lines file that dead-lettered notifications are appended to.
    /// Default `None`: they are only logged (warn) and counted.
    pub dead_letter: Option<PathBuf>,
    /// Bound of the queue between `notify`/`connected` and the push thread;
    /// when it is full a note is dropped and counted. Default 65 536.
    pub queue: usize,
    /// Bound of pending notifications (windows open plus deliveries not
    /// finished); a note that would open one more window is dropped and
    /// counted. Default 65 536.
    pub max_pending: usize,
    /// Notifications being sent at the same time (requests on the wire).
    /// Default 64.
    pub in_flight: usize,
    /// Time limit of one try (one HTTP request, response body included).
    /// Default 5 s.
    pub timeout: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            provider: ProviderConfig::Log,
            window: Duration::from_secs(2),
            max_tries: 5,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            dead_letter: None,
            queue: 65_536,
            max_pending: 65_536,
            in_flight: 64,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Where notifications are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProviderConfig {
    /// Log each notification (info, target `push`) and count it sent: for
    /// development and for deployments without a push provider.
    #[default]
    Log,
    /// POST each notification as JSON to this URL. Plain `http://` only: a
    /// relay on the same host or network talks to APNs/FCM.
    Webhook {
        /// `http://host[:port]/path`.
        url: String,
    },
}

impl PushConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), PushError> {
        let bad = |field, reason: &str| Err(PushError::Config { field, reason: reason.to_owned() });
        if self.window.is_zero() {
            return bad("window", "must be > 0");
        }
        if self.max_tries == 0 {
            return bad("max_tries", "must be >= 1");
        }
        if self.backoff_base.is_zero() {
            return bad("backoff_base", "must be > 0");
        }
        if self.backoff_cap < self.backoff_base {
            return bad("backoff_cap", "must be >= backoff_base");
        }
        // tokio's channel and semaphore refuse more than MAX_PERMITS.
        let max = tokio::sync::Semaphore::MAX_PERMITS;
        if self.queue == 0 || self.queue > max {
            return bad("queue", "must be >= 1 and <= tokio Semaphore::MAX_PERMITS");
        }
        if self.max_pending == 0 {
            return bad("max_pending", "must be >= 1");
        }
        if self.in_flight == 0 || self.in_flight > max {
            return bad("in_flight", "must be >= 1 and <= tokio Semaphore::MAX_PERMITS");
        }
        if self.timeout.is_zero() {
            return bad("timeout", "must be > 0");
        }
        if let ProviderConfig::Webhook { url } = &self.provider {
            webhook_uri(url)?;
        }
        Ok(())
    }
}

/// Parses a webhook URL, accepting only `http://` with a host.
pub(crate) fn webhook_uri(url: &str) -> Result<Uri, PushError> {
    let reason = |reason: String| PushError::Config { field: "provider.url", reason };
    let uri: Uri = url.parse().map_err(|e| reason(format!("{url:?}: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(reason(format!("{url:?}: https is not supported, use a local http relay")));
        }
        _ => return Err(reason(format!("{url:?}: must start with http://"))),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(reason(format!("{url:?}: no host")));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        PushConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_bad_fields() {
        let cases: [(PushConfig, &str); 5] = [
            (PushConfig { window: Duration::ZERO, ..Default::default() }, "window"),
            (PushConfig { max_tries: 0, ..Default::default() }, "max_tries"),
            (PushConfig { backoff_cap: Duration::from_millis(1), ..Default::default() }, "backoff_cap"),
            (PushConfig { queue: 0, ..Default::default() }, "queue"),
            (PushConfig { in_flight: 0, ..Default::default() }, "in_flight"),
        ];
        for (config, field) in cases {
            match config.validate() {
                Err(PushError::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn webhook_urls() {
        assert!(webhook_uri("http://127.0.0.1:8080/push").is_ok());
        assert!(webhook_uri("http://relay/push").is_ok());
        assert!(webhook_uri("https://relay/push").is_err());
        assert!(webhook_uri("relay/push").is_err());
        assert!(webhook_uri("ftp://relay/push").is_err());
        assert!(webhook_uri("").is_err());
    }
}
