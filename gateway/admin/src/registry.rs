//! [`Registry`]: every worker's [`WorkerMetrics`] plus the process gauges, and
//! the Prometheus text renderer.

use std::fmt::{Display, Write as _};
use std::sync::Arc;

use crate::labels::Label;
use crate::metrics::{Counters, Gauges, Histogram, WorkerMetrics};
use crate::names::{self, Family, Kind, Scope};
use crate::process;

/// `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// All workers' metrics, created together at start-up; the admin listener
/// renders them.
///
/// Families are combined as [`names`] documents: counters and most gauges
/// summed over workers, [`names::INBOX_DEPTH`] and [`names::LOOP_TURN_SECONDS`]
/// per worker (`worker="N"`). Every label value of a labelled family is
/// rendered, zeros included, so `rate()` sees a series from the first scrape.
/// Appends complete metric families, in the text format, to a render.
pub type Render = dyn Fn(&mut String) + Send + Sync;

/// Whether the store accepts writes now (behind [`names::STORE_WRITABLE`]
/// and `/readyz`).
pub type Probe = dyn Fn() -> bool + Send + Sync;

pub struct Registry {
    workers: Box<[Arc<WorkerMetrics>]>,
    /// Families rendered by other components of the process (the embedded
    /// store and push services), appended after the gateway's own.
    extra: Option<Arc<Render>>,
    /// The store's writability; none: always writable.
    store: Option<Arc<Probe>>,
    /// The fleet registry's health (cluster mode); none: not in a fleet.
    fleet: Option<Arc<Probe>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("workers", &self.workers).finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry with `workers` zeroed worker sets, numbered from 0.
    pub fn new(workers: usize) -> Self {
        Self {
            workers: (0..workers).map(|worker| Arc::new(WorkerMetrics::new(worker))).collect(),
            extra: None,
            store: None,
            fleet: None,
        }
    }

    /// Reads the store's writability from `probe` (gauge and readiness).
    pub fn with_store_probe(mut self, probe: Arc<Probe>) -> Self {
        self.store = Some(probe);
        self
    }

    /// Whether the store accepts writes now: `/readyz` answers 503 while not.
    pub fn store_writable(&self) -> bool {
        self.store.as_ref().is_none_or(|probe| probe())
    }

    /// Reads the fleet registry's health from `probe` (readiness).
    pub fn with_fleet_probe(mut self, probe: Arc<Probe>) -> Self {
        self.fleet = Some(probe);
        self
    }

    /// Whether the fleet's registry answers (always true outside a fleet):
    /// `/readyz` answers 503 while not, since other nodes cannot reach
    /// this node's new sessions live.
    pub fn registry_healthy(&self) -> bool {
        self.fleet.as_ref().is_none_or(|probe| probe())
    }

    /// Also renders what `source` appends (complete families in the text
    /// format, names outside the `gateway_` prefix).
    pub fn with_source(mut self, source: Arc<Render>) -> Self {
        self.extra = Some(source);
        self
    }

    /// Every worker's set, by worker number.
    pub fn workers(&self) -> &[Arc<WorkerMetrics>] {
        &self.workers
    }

    /// Worker `index`'s set (clone the `Arc` into the worker thread).
    pub fn worker(&self, index: usize) -> Option<&Arc<WorkerMetrics>> {
        self.workers.get(index)
    }

    /// Appends every family of [`names::ALL`] to `out` in the Prometheus text
    /// exposition format 0.0.4: `# HELP`, `# TYPE`, then the samples.
    pub fn render(&self, out: &mut String) {
        for family in names::ALL {
            header(out, family);
            match family.name {
                names::SESSIONS_OPEN => self.gauge(out, family, |w| w.sessions_open.get()),
                names::SESSIONS => self.gauges(out, family, |w| &w.sessions),
                names::ACCEPTS_TOTAL => self.counter(out, family, |w| w.accepts.get()),
                names::ACCEPT_PAUSED => self.gauge(out, family, |w| w.accept_paused.get()),
                names::ACCEPT_PAUSES_TOTAL => self.counter(out, family, |w| w.accept_pauses.get()),
                names::HANDSHAKE_FAILURES_TOTAL => self.counters(out, family, |w| &w.handshake_failures),
                names::AUTH_FAILURES_TOTAL => self.counters(out, family, |w| &w.auth_failures),
                names::FRAMES_IN_TOTAL => self.counters(out, family, |w| &w.frames_in),
                names::FRAMES_OUT_TOTAL => self.counters(out, family, |w| &w.frames_out),
                names::BYTES_IN_TOTAL => self.counter(out, family, |w| w.bytes_in.get()),
                names::BYTES_OUT_TOTAL => self.counter(out, family, |w| w.bytes_out.get()),
                names::OUTBOUND_QUEUE_BYTES => self.gauge(out, family, |w| w.outbound_queue_bytes.get()),
                names::LOGINS_IN_FLIGHT => self.gauge(out, family, |w| w.logins_in_flight.get()),
                names::LOGINS_QUEUED => self.gauge(out, family, |w| w.logins_queued.get()),
                names::RECENT_TOKENS_TOTAL => self.counter(out, family, |w| w.recent_tokens.get()),
                names::SEND_ACKS_HELD_TOTAL => self.counter(out, family, |w| w.send_acks_held.get()),
                names::SEND_ACKS_UNCONFIRMED_TOTAL => {
                    self.counter(out, family, |w| w.send_acks_unconfirmed.get());
                }
                names::INBOX_DEPTH => self.gauge(out, family, |w| w.inbox_depth.get()),
                names::DROPS_TOTAL => self.counters(out, family, |w| &w.drops),
                names::MEDIA_TICKETS_TOTAL => self.counters(out, family, |w| &w.media_tickets),
                names::CLOSES_TOTAL => self.counters(out, family, |w| &w.closes),
                names::URING_BUFFERS_DRY_TOTAL => self.counter(out, family, |w| w.uring_buffers_dry.get()),
                names::LOOP_TURN_SECONDS => self.histograms(out, family, |w| &w.loop_turn),
                names::STORE_REQUEST_SECONDS => self.histograms(out, family, |w| &w.store_request),
                names::PROCESS_RESIDENT_MEMORY_BYTES => {
                    if let Some(rss) = process::resident_memory_bytes() {
                        Sample::new(out, family.name).value(rss);
                    }
                }
                names::STORE_WRITABLE => Sample::new(out, family.name).value(u8::from(self.store_writable())),
                // names::ALL and this match are kept in step by the tests.
                _ => {}
            }
        }
        if let Some(extra) = &self.extra {
            extra(out);
        }
    }

    /// The render as a new string.
    pub fn render_to_string(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render(&mut out);
        out
    }

    fn counter(&self, out: &mut String, family: &Family, get: impl Fn(&WorkerMetrics) -> u64) {
        self.scalar(out, family, |w| get(w), |a, b| a.wrapping_add(b));
    }

    fn gauge(&self, out: &mut String, family: &Family, get: impl Fn(&WorkerMetrics) -> i64) {
        self.scalar(out, family, |w| get(w), |a, b| a.wrapping_add(b));
    }

    /// An unlabelled family: one sample, or one per worker.
    fn scalar<T: Display + Default>(
        &self,
        out: &mut String,
        family: &Family,
        get: impl Fn(&WorkerMetrics) -> T,
        sum: impl Fn(T, T) -> T,
    ) {
        if family.scope == Scope::PerWorker {
            for w in self.workers.iter() {
                Sample::new(out, family.name).label_num("worker", w.worker()).value(get(w));
            }
        } else {
            let total = self.workers.iter().fold(T::default(), |acc, w| sum(acc, get(w)));
            Sample::new(out, family.name).value(total);
        }
    }

    /// A counter family labelled by `L`, summed over workers.
    fn counters<L: Label, const N: usize>(
        &self,
        out: &mut String,
        family: &Family,
        cells: impl Fn(&WorkerMetrics) -> &Counters<L, N>,
    ) {
        let key = family.label.unwrap_or("label");
        for index in 0..L::COUNT {
            let total = self.workers.iter().fold(0u64, |acc, w| acc.wrapping_add(cells(w).at(index)));
            Sample::new(out, family.name).label_with(key, |out| L::write_value(index, out)).value(total);
        }
    }

    /// A gauge family labelled by `L`, summed over workers.
    fn gauges<L: Label, const N: usize>(
        &self,
        out: &mut String,
        family: &Family,
        cells: impl Fn(&WorkerMetrics) -> &Gauges<L, N>,
    ) {
        let key = family.label.unwrap_or("label");
        for index in 0..L::COUNT {
            let total = self.workers.iter().fold(0i64, |acc, w| acc.wrapping_add(cells(w).at(index)));
            Sample::new(out, family.name).label_with(key, |out| L::write_value(index, out)).value(total);
        }
    }

    /// A histogram family, one histogram per worker.
    fn histograms(&self, out: &mut String, family: &Family, get: impl Fn(&WorkerMetrics) -> &Histogram) {
        let bucket = format!("{}_bucket", family.name);
        let sum = format!("{}_sum", family.name);
        let count = format!("{}_count", family.name);
        for w in self.workers.iter() {
            let histogram = get(w);
            let mut cumulative = 0u64;
            let mut bounds = histogram.bounds_ns().iter();
            for in_bucket in histogram.bucket_counts() {
                cumulative = cumulative.wrapping_add(in_bucket);
                let sample = Sample::new(out, &bucket).label_num("worker", w.worker());
                let sample = match bounds.next() {
                    Some(&bound) => sample.label_with("le", |out| write_seconds(out, bound)),
                    None => sample.label_with("le", |out| out.push_str("+Inf")),
                };
                sample.value(cumulative);
            }
            Sample::new(out, &sum).label_num("worker", w.worker()).value_with(|out| {
                write_seconds(out, histogram.sum_ns());
            });
            Sample::new(out, &count).label_num("worker", w.worker()).value(cumulative);
        }
    }
}

/// `# HELP` and `# TYPE` lines.
fn header(out: &mut String, family: &Family) {
    out.push_str("# HELP ");
    out.push_str(family.name);
    out.push(' ');
    for c in family.help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(family.name);
    out.push(' ');
    out.push_str(family.kind.as_str());
    out.push('\n');
    debug_assert!(family.kind != Kind::Histogram || family.label.is_none(), "histograms take no label");
}

/// Nanoseconds as decimal seconds (shortest form that reads back exactly).
fn write_seconds(out: &mut String, ns: u64) {
    // u64 ns → f64 loses precision only past 2^53 ns (104 days of loop time).
    let _ = write!(out, "{}", ns as f64 / 1e9);
}

/// One sample line, written straight into the output.
struct Sample<'a> {
    out: &'a mut String,
    labels: usize,
}

impl<'a> Sample<'a> {
    fn new(out: &'a mut String, name: &str) -> Self {
        out.push_str(name);
        Self { out, labels: 0 }
    }

    fn open_label(&mut self, key: &str) {
        self.out.push(if self.labels == 0 { '{' } else { ',' });
        self.labels += 1;
        self.out.push_str(key);
        self.out.push_str("=\"");
    }

    /// A label whose value `write` appends (escaped here).
    fn label_with(mut self, key: &str, write: impl FnOnce(&mut String)) -> Self {
        self.open_label(key);
        let start = self.out.len();
        write(self.out);
        if self.out.get(start..).is_some_and(|value| value.contains(['\\', '"', '\n'])) {
            let raw = self.out.split_off(start);
            for c in raw.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
        }
        self.out.push('"');
        self
    }

    fn label_num(mut self, key: &str, value: usize) -> Self {
        self.open_label(key);
        let _ = write!(self.out, "{value}\"");
        self
    }

    fn value(self, value: impl Display) {
        self.value_with(|out| {
            let _ = write!(out, "{value}");
        });
    }

    fn value_with(self, write: impl FnOnce(&mut String)) {
        if self.labels > 0 {
            self.out.push('}');
        }
        self.out.push(' ');
        write(self.out);
        self.out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_rendered() {
        let text = Registry::new(2).render_to_string();
        for family in names::ALL {
            let type_line = format!("# TYPE {} {}\n", family.name, family.kind.as_str());
            assert!(text.contains(&type_line), "{type_line}");
            let sample = text.lines().any(|line| {
                !line.starts_with('#')
                    && line.starts_with(family.name)
                    && line[family.name.len()..].starts_with([' ', '{', '_'])
            });
            let process_without_proc = family.scope == Scope::Process && !cfg!(target_os = "linux");
            assert!(sample || process_without_proc, "no sample for {}", family.name);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        Sample::new(&mut out, "m").label_with("k", |o| o.push_str("a\"b\\c\nd")).value(1);
        assert_eq!(out, "m{k=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn seconds_are_plain_decimals() {
        let mut out = String::new();
        for ns in [10_000, 2_500_000, 1_000_000_000, 0] {
            write_seconds(&mut out, ns);
            out.push(' ');
        }
        assert_eq!(out, "0.00001 0.0025 1 0 ");
    }

    #[test]
    fn label_sets_match_names() {
        fn key(name: &str) -> Option<&'static str> {
            names::family(name).and_then(|f| f.label)
        }
        assert_eq!(key(names::SESSIONS), Some("state"));
        assert_eq!(key(names::HANDSHAKE_FAILURES_TOTAL), Some("reason"));
        assert_eq!(key(names::AUTH_FAILURES_TOTAL), Some("reason"));
        assert_eq!(key(names::FRAMES_IN_TOTAL), Some("kind"));
        assert_eq!(key(names::DROPS_TOTAL), Some("reason"));
        assert_eq!(key(names::CLOSES_TOTAL), Some("code"));
    }
}
