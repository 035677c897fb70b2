//! Store metrics: lock-free counters the threads bump, rendered in the
//! Prometheus text format with names prefixed `store_`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::Request;

/// Request kinds, in metric label order.
const KINDS: [&str; 12] = [
    "connect",
    "send",
    "ack",
    "read",
    "group",
    "prekey_upload",
    "prekey_fetch",
    "set_visibility",
    "get_visibility",
    "inbox",
    "group_get",
    "cursors",
];

/// The label index of a request.
fn kind_index(request: &Request) -> usize {
    match request {
        Request::Connect(_) => 0,
        Request::Send(_) => 1,
        Request::Ack(_) => 2,
        Request::Read(_) => 3,
        Request::Group(_) => 4,
        Request::PrekeyUpload(_) => 5,
        Request::PrekeyFetch(_) => 6,
        Request::SetVisibility { .. } => 7,
        Request::GetVisibility { .. } => 8,
        Request::Inbox(_) => 9,
        Request::GroupGet { .. } => 10,
        Request::Cursors { .. } => 11,
    }
}

/// Counters and gauges of one store.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    requests: [AtomicU64; 12],
    /// Requests refused because a queue was full.
    pub overloaded: AtomicU64,
    /// Group commits.
    pub write_batches: AtomicU64,
    /// Sum of requests over all group commits (with `write_batches`: mean size).
    pub batch_requests: AtomicU64,
    /// Successful commits that wrote something.
    pub commits: AtomicU64,
    /// Commits that failed (every request of the batch got an engine error).
    pub commit_errors: AtomicU64,
    /// fsyncs of the journal (Fsync durability).
    pub fsyncs: AtomicU64,
    /// Requests waiting in the queues.
    pub queue_depth: AtomicU64,
    /// Inbox entries removed by retention.
    pub expired_entries: AtomicU64,
    /// Message bodies deleted (last inbox entry acked, or expired).
    pub messages_deleted: AtomicU64,
    /// 1 while the database is open for writes, 0 from a failed commit until
    /// it is reopened.
    pub writable: AtomicU64,
    /// Failed commits that closed the database for reopening.
    pub failures: AtomicU64,
    /// Reopenings of the database after a failure.
    pub reopens: AtomicU64,
}

impl StoreMetrics {
    /// Counts one request.
    pub(crate) fn request(&self, request: &Request) {
        if let Some(counter) = self.requests.get(kind_index(request)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests received of one kind (`"send"`, `"inbox"`, ...; 0 if unknown).
    pub fn requests(&self, kind: &str) -> u64 {
        KINDS
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.requests.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Appends every metric in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP store_requests_total Requests received, by kind.");
        let _ = writeln!(out, "# TYPE store_requests_total counter");
        for (kind, counter) in KINDS.iter().zip(&self.requests) {
            let _ =
                writeln!(out, "store_requests_total{{kind=\"{kind}\"}} {}", counter.load(Ordering::Relaxed));
        }
        let rows: [(&str, &str, &str, &AtomicU64); 12] = [
            ("store_overloaded_total", "counter", "Requests refused with a full queue.", &self.overloaded),
            ("store_write_batches_total", "counter", "Group commits.", &self.write_batches),
            (
                "store_batch_requests_total",
                "counter",
                "Requests over all group commits.",
                &self.batch_requests,
            ),
            ("store_commits_total", "counter", "Successful commits.", &self.commits),
            ("store_commit_errors_total", "counter", "Failed commits.", &self.commit_errors),
            ("store_fsyncs_total", "counter", "Journal fsyncs.", &self.fsyncs),
            ("store_queue_depth", "gauge", "Requests waiting in the queues.", &self.queue_depth),
            ("store_expired_entries_total", "counter", "Inbox entries expired.", &self.expired_entries),
            ("store_messages_deleted_total", "counter", "Message bodies deleted.", &self.messages_deleted),
            (
                "store_writable",
                "gauge",
                "1 while the database accepts writes, 0 while it recovers.",
                &self.writable,
            ),
            ("store_failures_total", "counter", "Failed commits that closed the database.", &self.failures),
            ("store_reopens_total", "counter", "Reopenings of the database after a failure.", &self.reopens),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
    }
}
