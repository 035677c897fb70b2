//! What the scenarios report: percentiles of the hdrhistograms
//! ([`Percentiles`]), histograms a `--processes` child hands its parent
//! ([`HistDump`]), the CPU and memory of target processes over the measured
//! window and of flood itself ([`PidWatch`], [`Cpu`]), the table renderer,
//! and the `chat` and `sync` summaries.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats;

/// Percentiles of one histogram, microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) mean_us: f64,
    pub(crate) p50_us: u64,
    #[serde(default)]
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
}

impl Percentiles {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.5),
            p90_us: histogram.value_at_quantile(0.9),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }

    /// `p50 / p99 / p99.9 / max (n = count)` in ms.
    pub(crate) fn row(&self) -> String {
        format!(
            "{:.3} / {:.3} / {:.3} / {:.3}  (n = {})",
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            self.count
        )
    }

    /// `p50 / p90 / p99 / p99.9 / max (n = count)` in ms.
    pub(crate) fn row5(&self) -> String {
        format!(
            "{:.3} / {:.3} / {:.3} / {:.3} / {:.3}  (n = {})",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            self.count
        )
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A histogram as its recorded (value, count) pairs: how a `--processes`
/// child hands its latencies to the parent, which merges them exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HistDump(pub(crate) Vec<(u64, u64)>);

impl HistDump {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        Self(histogram.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect())
    }

    /// Adds the dumped values to `histogram`.
    pub(crate) fn add_to(&self, histogram: &mut Histogram<u64>) {
        for &(value, count) in &self.0 {
            histogram.saturating_record_n(value, count);
        }
    }
}

/// CPU time of flood itself over a window: this process and (with
/// `--processes`) its children, user + system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cpu {
    /// flood's CPU seconds over the window (all its processes).
    pub(crate) secs: f64,
    /// `secs / window`: cores flood kept busy.
    pub(crate) cores: f64,
}

/// One target process (`--pid`) over the measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PidStat {
    pub(crate) pid: u32,
    /// CPU seconds (user + system, all threads) over the window; `None` if
    /// the process could not be read.
    pub(crate) cpu_secs: Option<f64>,
    /// `cpu_secs / window`.
    pub(crate) cores: Option<f64>,
    /// Resident memory at the end of the window, bytes.
    pub(crate) rss_bytes: Option<u64>,
    /// Peak resident memory (VmHWM), bytes.
    pub(crate) peak_rss_bytes: Option<u64>,
}

/// Reads the `--pid` processes at the start of a window and again at its end.
#[derive(Debug, Clone, Default)]
pub(crate) struct PidWatch {
    start: Vec<(u32, Option<f64>)>,
}

impl PidWatch {
    /// The window starts now.
    pub(crate) fn start(pids: &[u32]) -> Self {
        Self { start: pids.iter().map(|&pid| (pid, stats::pid_cpu_secs(pid))).collect() }
    }

    /// The window, `secs` long, ends now.
    pub(crate) fn finish(&self, secs: f64) -> Vec<PidStat> {
        self.start
            .iter()
            .map(|&(pid, cpu0)| {
                let cpu = cpu0.zip(stats::pid_cpu_secs(pid)).map(|(a, b)| (b - a).max(0.0));
                let (rss, peak) = stats::pid_rss_bytes(pid).unzip();
                PidStat {
                    pid,
                    cpu_secs: cpu,
                    cores: cpu.map(|cpu| if secs > 0.0 { cpu / secs } else { 0.0 }),
                    rss_bytes: rss,
                    peak_rss_bytes: peak,
                }
            })
            .collect()
    }
}

/// Table rows for the `--pid` processes and flood's own CPU.
pub(crate) fn cpu_rows(pids: &[PidStat], flood: &Cpu) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    for stat in pids {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let mib =
            |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{:.1}", v as f64 / 1048576.0));
        rows.push((
            "pid: CPU s / cores / RSS MiB / peak",
            format!(
                "{}: {} / {} / {} / {}",
                stat.pid,
                opt(stat.cpu_secs),
                opt(stat.cores),
                mib(stat.rss_bytes),
                mib(stat.peak_rss_bytes)
            ),
        ));
    }
    rows.push(("flood CPU s / cores (all processes)", format!("{:.2} / {:.2}", flood.secs, flood.cores)));
    rows
}

/// `n / secs`, 0 for an empty window.
pub(crate) fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Adds error counts.
pub(crate) fn merge_errors(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (kind, n) in from {
        *into.entry(kind.clone()).or_insert(0) += n;
    }
}

/// `  errors: kind=n ...` for a progress line (empty without errors).
pub(crate) fn errors_suffix(errors: &BTreeMap<String, u64>) -> String {
    let mut out = String::new();
    if !errors.is_empty() {
        out.push_str("  errors:");
        for (kind, n) in errors {
            let _ = write!(out, " {kind}={n}");
        }
    }
    out
}

/// What a `chat` run did (also the `--json` output).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChatSummary {
    /// `chat` or `ping`.
    pub(crate) scenario: String,
    pub(crate) targets: Vec<String>,
    pub(crate) threads: u64,
    pub(crate) sessions: u64,
    /// Most sends in flight per session.
    pub(crate) window: u32,
    /// Sends per second per session asked for (`None`: as fast as the window allows).
    pub(crate) rate_per_session: Option<f64>,
    pub(crate) payload_bytes: usize,
    pub(crate) authenticated: u64,
    pub(crate) failed: u64,
    pub(crate) dropped: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    /// Length of the measured window (the hold), seconds.
    pub(crate) duration_secs: f64,
    /// Wait after the window for what was in flight, seconds.
    pub(crate) drain_secs: f64,
    /// Whole run (ramp, window, drain, close), seconds.
    pub(crate) wall_secs: f64,
    /// SENDs written (ping: timed PINGs), whole run.
    pub(crate) sent: u64,
    /// SEND_ACKs received (ping: PONGs), whole run.
    pub(crate) acked: u64,
    pub(crate) send_errors: u64,
    /// Entries delivered to the receivers, whole run.
    pub(crate) delivered: u64,
    /// ACK frames sent by the receivers.
    pub(crate) acks_sent: u64,
    /// SEND_ACKs (ping: PONGs) received within the window.
    pub(crate) acked_in_window: u64,
    pub(crate) delivered_in_window: u64,
    /// `acked_in_window / duration_secs`: persisted messages (ping: round
    /// trips) per second.
    pub(crate) msgs_per_sec: f64,
    pub(crate) delivered_per_sec: f64,
    /// SEND → SEND_ACK (ping: PING → PONG), whole run.
    pub(crate) ack_latency: Percentiles,
    /// SEND written → DELIVER read, whole run.
    pub(crate) e2e_latency: Percentiles,
    /// The gateway's CPU time (user + system) over the window, seconds
    /// (`--gateway-pid`; `None` without it).
    pub(crate) gateway_cpu_secs: Option<f64>,
    /// `gateway_cpu_secs / duration_secs`: gateway cores busy.
    pub(crate) gateway_cores: Option<f64>,
    /// `acked_in_window / gateway_cpu_secs`.
    pub(crate) msgs_per_sec_per_gateway_core: Option<f64>,
    /// flood's CPU time over the window, seconds.
    pub(crate) flood_cpu_secs: f64,
}

impl ChatSummary {
    pub(crate) fn table(&self) -> String {
        let opt =
            |v: Option<f64>, digits: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"));
        let rows: Vec<(&str, String)> = vec![
            ("scenario", self.scenario.clone()),
            ("targets", self.targets.join(" ")),
            ("sessions / threads", format!("{} / {}", self.sessions, self.threads)),
            (
                "window / rate per session",
                format!(
                    "{} / {}",
                    self.window,
                    self.rate_per_session.map_or_else(|| "max".to_owned(), |r| format!("{r}/s"))
                ),
            ),
            ("payload (bytes)", self.payload_bytes.to_string()),
            (
                "authenticated / failed / dropped",
                format!("{} / {} / {}", self.authenticated, self.failed, self.dropped),
            ),
            ("window (s) / drain (s)", format!("{:.2} / {:.2}", self.duration_secs, self.drain_secs)),
            ("sent / acked / errors", format!("{} / {} / {}", self.sent, self.acked, self.send_errors)),
            ("delivered / ACKs sent", format!("{} / {}", self.delivered, self.acks_sent)),
            ("acked/s in window", format!("{:.0}", self.msgs_per_sec)),
            ("delivered/s in window", format!("{:.0}", self.delivered_per_sec)),
            ("ack latency p50/p99/p999/max (ms)", self.ack_latency.row()),
            ("end-to-end p50/p99/p999/max (ms)", self.e2e_latency.row()),
            (
                "gateway CPU (s) / cores",
                format!("{} / {}", opt(self.gateway_cpu_secs, 2), opt(self.gateway_cores, 2)),
            ),
            ("acked/s per gateway core", opt(self.msgs_per_sec_per_gateway_core, 0)),
            ("flood CPU in window (s)", format!("{:.2}", self.flood_cpu_secs)),
            ("wall (s)", format!("{:.2}", self.wall_secs)),
        ];
        render(rows, &self.errors)
    }
}

/// What a `sync` run did (also the `--json` output).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SyncSummary {
    pub(crate) scenario: String,
    pub(crate) targets: Vec<String>,
    /// The draining user (device 1).
    pub(crate) user: u64,
    /// Entries expected (`--messages`).
    pub(crate) expected: u64,
    pub(crate) authenticated: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    /// Entries received.
    pub(crate) delivered: u64,
    /// SYNC_DONE's head.
    pub(crate) head: u64,
    /// Whether SYNC_DONE arrived.
    pub(crate) synced: bool,
    /// ACK frames sent.
    pub(crate) acks_sent: u64,
    /// Connect to AUTH_OK, ms.
    pub(crate) auth_latency_ms: f64,
    /// AUTH_OK to SYNC_DONE, seconds.
    pub(crate) drain_secs: f64,
    /// `delivered / drain_secs`.
    pub(crate) msgs_per_sec: f64,
    /// Gateway CPU (user + system) from before the connect to SYNC_DONE, seconds.
    pub(crate) gateway_cpu_secs: Option<f64>,
    pub(crate) flood_cpu_secs: f64,
    pub(crate) wall_secs: f64,
}

impl SyncSummary {
    pub(crate) fn table(&self) -> String {
        let rows: Vec<(&str, String)> = vec![
            ("scenario", self.scenario.clone()),
            ("targets", self.targets.join(" ")),
            ("user (device 1)", self.user.to_string()),
            ("expected / delivered", format!("{} / {}", self.expected, self.delivered)),
            ("SYNC_DONE head", format!("{}{}", self.head, if self.synced { "" } else { " (no SYNC_DONE)" })),
            ("ACKs sent", self.acks_sent.to_string()),
            ("auth latency (ms)", format!("{:.2}", self.auth_latency_ms)),
            ("drain AUTH_OK → SYNC_DONE (s)", format!("{:.3}", self.drain_secs)),
            ("drained msgs/s", format!("{:.0}", self.msgs_per_sec)),
            ("gateway CPU (s)", self.gateway_cpu_secs.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))),
            ("flood CPU (s)", format!("{:.2}", self.flood_cpu_secs)),
            ("wall (s)", format!("{:.2}", self.wall_secs)),
        ];
        render(rows, &self.errors)
    }
}

/// Aligns `rows` (and one row per error kind) in two columns.
pub(crate) fn render(mut rows: Vec<(&str, String)>, errors: &BTreeMap<String, u64>) -> String {
    for (kind, n) in errors {
        rows.push(("error", format!("{kind}: {n}")));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in rows {
        let _ = writeln!(out, "{key:<width$}  {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn histograms_survive_a_dump() {
        let mut a = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
        for v in [5u64, 5, 17, 1000, 250_000] {
            a.record(v).unwrap();
        }
        let dump = HistDump::of(&a);
        let json = serde_json::to_string(&dump).unwrap();
        let mut b = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
        serde_json::from_str::<HistDump>(&json).unwrap().add_to(&mut b);
        assert_eq!(Percentiles::of(&a), Percentiles::of(&b));
        assert_eq!(b.len(), 5);
    }

    #[test]
    fn own_process_is_watched() {
        let watch = PidWatch::start(&[std::process::id(), u32::MAX]);
        let stats = watch.finish(1.0);
        assert!(stats[0].cpu_secs.is_some() && stats[0].rss_bytes.unwrap() > 0, "{stats:?}");
        assert_eq!(stats[1].cpu_secs, None);
    }
}
