//! Counters of the push service and their Prometheus text rendering. Every
//! metric name is a constant here, so the admin port and dashboards have one
//! place to look.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Notes passed to `notify`, dropped ones included.
pub const NOTES_TOTAL: &str = "push_notes_total";
/// Notes that joined an already open window instead of opening one.
pub const COALESCED_TOTAL: &str = "push_coalesced_total";
/// Notifications the provider accepted.
pub const SENT_TOTAL: &str = "push_sent_total";
/// Tries after a retryable failure (a notification sent on its third try adds 2).
pub const RETRIED_TOTAL: &str = "push_retried_total";
/// Notifications given up on: permanent failure or `max_tries` used.
pub const DEAD_LETTERED_TOTAL: &str = "push_dead_lettered_total";
/// Pending notifications cancelled because their device connected.
pub const CANCELLED_TOTAL: &str = "push_cancelled_total";
/// Notes dropped: queue full or too many notifications pending.
pub const DROPPED_TOTAL: &str = "push_dropped_total";
/// `connected` events dropped because the queue was full (a push may then
/// reach a device that is already online: harmless, it just syncs).
pub const CONNECT_DROPPED_TOTAL: &str = "push_connect_dropped_total";
/// Notifications pending now: windows open plus deliveries unfinished
/// (waiting for a slot, on the wire or backing off).
pub const PENDING: &str = "push_pending";

/// The push service's counters, shared between the caller's threads and the
/// push thread. Relaxed atomics: each is read on its own, for dashboards.
#[derive(Debug, Default)]
pub struct PushMetrics {
    pub(crate) notes: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) connect_dropped: AtomicU64,
    pub(crate) pending: AtomicU64,
}

/// A snapshot of [`PushMetrics`], for tests and for callers that want numbers
/// rather than text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// [`NOTES_TOTAL`].
    pub notes: u64,
    /// [`COALESCED_TOTAL`].
    pub coalesced: u64,
    /// [`SENT_TOTAL`].
    pub sent: u64,
    /// [`RETRIED_TOTAL`].
    pub retried: u64,
    /// [`DEAD_LETTERED_TOTAL`].
    pub dead_lettered: u64,
    /// [`CANCELLED_TOTAL`].
    pub cancelled: u64,
    /// [`DROPPED_TOTAL`].
    pub dropped: u64,
    /// [`CONNECT_DROPPED_TOTAL`].
    pub connect_dropped: u64,
    /// [`PENDING`].
    pub pending: u64,
}

impl PushMetrics {
    /// Current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            notes: get(&self.notes),
            coalesced: get(&self.coalesced),
            sent: get(&self.sent),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            cancelled: get(&self.cancelled),
            dropped: get(&self.dropped),
            connect_dropped: get(&self.connect_dropped),
            pending: get(&self.pending),
        }
    }

    /// Appends the metrics in Prometheus text format (`# HELP`, `# TYPE`, value).
    pub fn render(&self, out: &mut String) {
        let s = self.snapshot();
        let rows: [(&str, &str, &str, u64); 9] = [
            (NOTES_TOTAL, "counter", "Notes passed to notify, dropped ones included.", s.notes),
            (COALESCED_TOTAL, "counter", "Notes merged into an open coalescing window.", s.coalesced),
            (SENT_TOTAL, "counter", "Notifications accepted by the provider.", s.sent),
            (RETRIED_TOTAL, "counter", "Tries repeated after a retryable failure.", s.retried),
            (DEAD_LETTERED_TOTAL, "counter", "Notifications given up on.", s.dead_lettered),
            (CANCELLED_TOTAL, "counter", "Pending notifications cancelled by a connect.", s.cancelled),
            (DROPPED_TOTAL, "counter", "Notes dropped: queue full or too many pending.", s.dropped),
            (CONNECT_DROPPED_TOTAL, "counter", "Connect events dropped: queue full.", s.connect_dropped),
            (PENDING, "gauge", "Windows open plus deliveries unfinished.", s.pending),
        ];
        for (name, kind, help, value) in rows {
            // Writing to a String cannot fail.
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, n: usize) {
        gauge.store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_help_type_and_value() {
        let m = PushMetrics::default();
        PushMetrics::add(&m.sent, 3);
        PushMetrics::set(&m.pending, 7);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("# HELP push_sent_total "));
        assert!(out.contains("# TYPE push_sent_total counter\npush_sent_total 3\n"));
        assert!(out.contains("# TYPE push_pending gauge\npush_pending 7\n"));
        assert!(out.contains("\npush_dropped_total 0\n"));
    }
}
