//! Store metrics: lock-free counters the threads bump, rendered in the
//! Prometheus text format with names prefixed `store_`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    /// Messages entered for a user from a conversation's log after a gap:
    /// an earlier chain step was refused or cut by a crash (several writers
    /// only).
    pub caught_up: AtomicU64,
    /// Group changes answered while a shard refused their entries (its
    /// members get them from the group's log with the next message;
    /// several writers only).
    pub steps_refused: AtomicU64,
    /// Receipt notes for another shard's mailboxes not stored (its queue
    /// full or the shard reopening; several writers only).
    pub notes_dropped: AtomicU64,
    /// Group commits.
    pub write_batches: AtomicU64,
    /// Sum of requests over all group commits (with `write_batches`: mean size).
    pub batch_requests: AtomicU64,
    /// Successful commits that wrote something.
    pub commits: AtomicU64,
    /// Commits that failed (every request of the batch got an engine error).
    pub commit_errors: AtomicU64,
    /// Time spent in commits, nanoseconds (rendered in seconds, as the sum
    /// of the `store_commit_seconds` histogram).
    pub commit_ns: AtomicU64,
    /// Commits by duration: commits that took at most `COMMIT_BOUNDS_US[i]`
    /// and more than the bound before (not cumulative; rendered cumulative).
    commit_buckets: [AtomicU64; COMMIT_BOUNDS_US.len()],
    /// Commits timed (the histogram's count).
    commit_count: AtomicU64,
    /// Commits that took 50 ms or more: fjall's write halts (its
    /// committing thread sleeps while flushes lag behind), a slow disk.
    pub slow_commits: AtomicU64,
    /// fsyncs of the journal (Fsync durability).
    pub fsyncs: AtomicU64,
    /// Requests waiting in the queues.
    pub queue_depth: AtomicU64,
    /// Inbox entries removed by retention.
    pub expired_entries: AtomicU64,
    /// Message bodies deleted (last inbox entry acked, or expired).
    pub messages_deleted: AtomicU64,
    /// Shards (1 with one writer) whose database is closed, from a failed
    /// commit until it is reopened: the store is writable at 0.
    pub closed: AtomicU64,
    /// Failed commits that closed the database for reopening.
    pub failures: AtomicU64,
    /// Reopenings of the database after a failure.
    pub reopens: AtomicU64,
}

/// A commit this long or longer counts as slow: every write of the node
/// waited for it.
pub(crate) const SLOW_COMMIT: Duration = Duration::from_millis(50);

/// Upper bounds of the commit-time histogram, µs. A commit takes tens of
/// µs; fjall's workers hold locks its commit path needs for 4–23 ms at a
/// time (`benches/RESULTS.md`, "Where the p99 comes from"), and its write
/// halts sleep in 10 and 100 ms steps: the buckets tell these apart.
const COMMIT_BOUNDS_US: [u64; 10] =
    [500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

impl StoreMetrics {
    /// Counts one commit that took `took`.
    pub(crate) fn committed(&self, took: Duration) {
        self.commit_ns.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        if let Some(bucket) = COMMIT_BOUNDS_US.iter().position(|&bound| took <= Duration::from_micros(bound))
        {
            if let Some(counter) = self.commit_buckets.get(bucket) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        if took >= SLOW_COMMIT {
            self.slow_commits.fetch_add(1, Ordering::Relaxed);
        }
    }

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
        let rows: [(&str, &str, &str, &AtomicU64); 15] = [
            (
                "store_steps_refused_total",
                "counter",
                "Group changes answered while a shard refused their entries (filled in from the log later).",
                &self.steps_refused,
            ),
            (
                "store_caught_up_total",
                "counter",
                "Messages entered from a conversation's log after a gap in a chain between shards.",
                &self.caught_up,
            ),
            ("store_overloaded_total", "counter", "Requests refused with a full queue.", &self.overloaded),
            (
                "store_notes_dropped_total",
                "counter",
                "Receipt notes for another shard not stored (carried by the next move).",
                &self.notes_dropped,
            ),
            ("store_write_batches_total", "counter", "Group commits.", &self.write_batches),
            (
                "store_batch_requests_total",
                "counter",
                "Requests over all group commits.",
                &self.batch_requests,
            ),
            ("store_commits_total", "counter", "Successful commits.", &self.commits),
            ("store_commit_errors_total", "counter", "Failed commits.", &self.commit_errors),
            (
                "store_slow_commits_total",
                "counter",
                "Commits that took 50 ms or more (fjall's write halts, a slow disk).",
                &self.slow_commits,
            ),
            ("store_fsyncs_total", "counter", "Journal fsyncs.", &self.fsyncs),
            ("store_queue_depth", "gauge", "Requests waiting in the queues.", &self.queue_depth),
            ("store_expired_entries_total", "counter", "Inbox entries expired.", &self.expired_entries),
            ("store_messages_deleted_total", "counter", "Message bodies deleted.", &self.messages_deleted),
            ("store_failures_total", "counter", "Failed commits that closed the database.", &self.failures),
            ("store_reopens_total", "counter", "Reopenings of the database after a failure.", &self.reopens),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP store_writable 1 while every shard's database accepts writes, 0 while one recovers."
        );
        let _ = writeln!(out, "# TYPE store_writable gauge");
        let _ = writeln!(out, "store_writable {}", u8::from(self.closed.load(Ordering::Relaxed) == 0));
        let _ = writeln!(
            out,
            "# HELP store_commit_seconds Time of each commit: fjall's journal write and memtable inserts, and its waits for locks fjall's workers hold."
        );
        let _ = writeln!(out, "# TYPE store_commit_seconds histogram");
        let mut below = 0;
        for (bound, counter) in COMMIT_BOUNDS_US.iter().zip(&self.commit_buckets) {
            below += counter.load(Ordering::Relaxed);
            let le = Duration::from_micros(*bound).as_secs_f64();
            let _ = writeln!(out, "store_commit_seconds_bucket{{le=\"{le}\"}} {below}");
        }
        let count = self.commit_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "store_commit_seconds_bucket{{le=\"+Inf\"}} {count}");
        let seconds = Duration::from_nanos(self.commit_ns.load(Ordering::Relaxed)).as_secs_f64();
        let _ = writeln!(out, "store_commit_seconds_sum {seconds}");
        let _ = writeln!(out, "store_commit_seconds_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_add_up_and_the_slow_ones_are_counted() {
        let metrics = StoreMetrics::default();
        metrics.committed(Duration::from_millis(2));
        metrics.committed(SLOW_COMMIT - Duration::from_nanos(1));
        metrics.committed(SLOW_COMMIT);
        metrics.committed(Duration::from_millis(100));
        assert_eq!(metrics.slow_commits.load(Ordering::Relaxed), 2);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("store_slow_commits_total 2\n"), "{out}");
        let histogram = [
            "# TYPE store_commit_seconds histogram",
            "store_commit_seconds_bucket{le=\"0.0005\"} 0",
            "store_commit_seconds_bucket{le=\"0.001\"} 0",
            "store_commit_seconds_bucket{le=\"0.0025\"} 1",
            "store_commit_seconds_bucket{le=\"0.005\"} 1",
            "store_commit_seconds_bucket{le=\"0.01\"} 1",
            "store_commit_seconds_bucket{le=\"0.025\"} 1",
            "store_commit_seconds_bucket{le=\"0.05\"} 3",
            "store_commit_seconds_bucket{le=\"0.1\"} 4",
            "store_commit_seconds_bucket{le=\"0.25\"} 4",
            "store_commit_seconds_bucket{le=\"1\"} 4",
            "store_commit_seconds_bucket{le=\"+Inf\"} 4",
            "store_commit_seconds_sum 0.201999999",
            "store_commit_seconds_count 4\n",
        ]
        .join("\n");
        assert!(out.contains(&histogram), "{out}");
    }
}
