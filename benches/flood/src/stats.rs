//! Counters shared by the worker threads of one process, the once-a-second
//! progress snapshot, the final summary (also the JSON that `--json` prints and
//! that `--processes` sums), and the process's own CPU time and RSS from
//! `/proc/self`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::traffic::Counters;

/// Where the run is; the main thread moves it forward, workers follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Opening connections on schedule.
    Ramp = 0,
    /// Every session resolved (authenticated or failed): holding (chat:
    /// sending).
    Hold = 1,
    /// Chat: the measured window is over; no new sends, waiting for what is
    /// in flight.
    Drain = 2,
    /// Hold over: close every session (WebSocket close 1000) and exit.
    Close = 3,
    /// Group: every session resolved; the creators send GROUP_CREATE (the
    /// hold follows once the groups exist).
    Setup = 4,
    /// Mix: the traffic settled; every live session asks for its inbox once
    /// more (SYNC_REQUEST) before the check.
    Sync = 5,
}

/// Counters of one process, updated by its workers (relaxed atomics: each
/// is read on its own, once a second).
#[derive(Debug)]
pub(crate) struct Shared {
    phase: AtomicU8,
    /// Zero of the raw scenarios' send times (when the counters were made).
    pub(crate) origin: std::time::Instant,
    /// Sockets created and connecting.
    pub(crate) attempted: AtomicU64,
    /// TCP connections established.
    pub(crate) connected: AtomicU64,
    /// `101 Switching Protocols` received.
    pub(crate) upgraded: AtomicU64,
    /// AUTH_OK received.
    pub(crate) authenticated: AtomicU64,
    /// Sessions authenticated and not yet ended.
    pub(crate) live: AtomicU64,
    /// Sessions that ended before AUTH_OK (each counted in `errors`).
    pub(crate) failed: AtomicU64,
    /// Authenticated sessions that ended before flood closed them (each
    /// counted in `errors`, as `dropped_<kind>`).
    pub(crate) dropped: AtomicU64,
    /// Sessions flood closed whose close the server answered with its own.
    pub(crate) closed_clean: AtomicU64,
    /// Sessions flood closed that ended without the server's close frame.
    pub(crate) closed_unclean: AtomicU64,
    /// App-level PINGs sent.
    pub(crate) pings_sent: AtomicU64,
    /// PONGs received.
    pub(crate) pongs: AtomicU64,
    /// PINGs the server sent (answered).
    pub(crate) server_pings: AtomicU64,
    /// GOAWAYs received.
    pub(crate) goaways: AtomicU64,
    /// Sum of connect-to-AUTH_OK times, microseconds.
    pub(crate) auth_latency_sum_us: AtomicU64,
    /// Largest connect-to-AUTH_OK time, microseconds.
    pub(crate) auth_latency_max_us: AtomicU64,
    /// Chat and sync traffic.
    pub(crate) traffic: Counters,
    /// Failures and drops by kind.
    errors: Mutex<BTreeMap<String, u64>>,
    /// The first detailed message seen for some kinds (TLS errors).
    details: Mutex<BTreeMap<String, String>>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            phase: AtomicU8::new(Phase::Ramp as u8),
            origin: std::time::Instant::now(),
            attempted: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            upgraded: AtomicU64::new(0),
            authenticated: AtomicU64::new(0),
            live: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            closed_clean: AtomicU64::new(0),
            closed_unclean: AtomicU64::new(0),
            pings_sent: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
            server_pings: AtomicU64::new(0),
            goaways: AtomicU64::new(0),
            auth_latency_sum_us: AtomicU64::new(0),
            auth_latency_max_us: AtomicU64::new(0),
            traffic: Counters::default(),
            errors: Mutex::new(BTreeMap::new()),
            details: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Relaxed) {
            0 => Phase::Ramp,
            1 => Phase::Hold,
            2 => Phase::Drain,
            4 => Phase::Setup,
            5 => Phase::Sync,
            _ => Phase::Close,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }

    /// Counts one error of `kind`.
    pub(crate) fn error(&self, kind: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(kind.to_owned()).or_insert(0) += 1;
        }
    }

    /// Keeps `text` as the detail of `kind` if it is the first.
    pub(crate) fn detail(&self, kind: &str, text: &str) {
        if let Ok(mut details) = self.details.lock() {
            details.entry(kind.to_owned()).or_insert_with(|| text.to_owned());
        }
    }

    /// The first detail of each kind that has one.
    pub(crate) fn details(&self) -> BTreeMap<String, String> {
        self.details.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// A session authenticated `latency_us` after its connect began.
    pub(crate) fn authenticated(&self, latency_us: u64) {
        self.authenticated.fetch_add(1, Relaxed);
        self.live.fetch_add(1, Relaxed);
        self.auth_latency_sum_us.fetch_add(latency_us, Relaxed);
        self.auth_latency_max_us.fetch_max(latency_us, Relaxed);
    }

    /// Sessions resolved: authenticated or failed.
    pub(crate) fn resolved(&self) -> u64 {
        self.authenticated.load(Relaxed) + self.failed.load(Relaxed)
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress {
            attempted: self.attempted.load(Relaxed),
            connected: self.connected.load(Relaxed),
            authenticated: self.authenticated.load(Relaxed),
            live: self.live.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            pongs: self.pongs.load(Relaxed),
            errors: self.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        }
    }
}

/// A snapshot of the counters, once a second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub(crate) attempted: u64,
    pub(crate) connected: u64,
    pub(crate) authenticated: u64,
    pub(crate) live: u64,
    pub(crate) failed: u64,
    pub(crate) dropped: u64,
    pub(crate) pongs: u64,
    pub(crate) errors: BTreeMap<String, u64>,
}

impl Progress {
    /// Adds another process's snapshot.
    pub(crate) fn add(&mut self, other: &Self) {
        self.attempted += other.attempted;
        self.connected += other.connected;
        self.authenticated += other.authenticated;
        self.live += other.live;
        self.failed += other.failed;
        self.dropped += other.dropped;
        self.pongs += other.pongs;
        merge_errors(&mut self.errors, &other.errors);
    }

    /// The progress line: `[  12s] ramp  connected 5000/19000 ...`.
    pub(crate) fn line(&self, elapsed_secs: f64, phase: &str, sessions: u64, pongs_per_sec: f64) -> String {
        let mut line = format!(
            "[{elapsed_secs:5.0}s] {phase:<5} connected {}/{sessions}  authenticated {}  live {}  failed {}  dropped {}  pongs/s {pongs_per_sec:.0}",
            self.connected, self.authenticated, self.live, self.failed, self.dropped,
        );
        if !self.errors.is_empty() {
            line.push_str("  errors:");
            for (kind, n) in &self.errors {
                let _ = write!(line, " {kind}={n}");
            }
        }
        line
    }
}

fn merge_errors(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (kind, n) in from {
        *into.entry(kind.clone()).or_insert(0) += n;
    }
}

/// What a run did: printed as a table, or as JSON with `--json`. With
/// `--processes` the parent sums its children's summaries (counts, CPU and
/// RSS add up; times are the slowest child's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// `connect`.
    pub(crate) scenario: String,
    /// Processes that ran sessions.
    pub(crate) processes: u64,
    /// Worker threads per process.
    pub(crate) threads: u64,
    /// Sessions asked for.
    pub(crate) sessions: u64,
    /// Gateway listeners, round-robin.
    pub(crate) targets: Vec<String>,
    /// wss:// instead of ws://.
    pub(crate) tls: bool,
    /// Connections per second asked for (all processes).
    pub(crate) rate: f64,
    /// Sockets created.
    pub(crate) attempted: u64,
    /// TCP connections established.
    pub(crate) connected: u64,
    /// WebSocket upgrades completed.
    pub(crate) upgraded: u64,
    /// Sessions that got AUTH_OK.
    pub(crate) authenticated: u64,
    /// Sessions that ended before AUTH_OK.
    pub(crate) failed: u64,
    /// Authenticated sessions lost before the end of the hold.
    pub(crate) dropped: u64,
    /// Sessions live when the hold ended.
    pub(crate) live_at_hold_end: u64,
    /// Sessions closed by flood with the server's close answered.
    pub(crate) closed_clean: u64,
    /// Sessions closed by flood that ended without the server's close.
    pub(crate) closed_unclean: u64,
    /// Failures and drops by kind (`connect_refused`, `http_429`,
    /// `auth_AUTH_INVALID`, `dropped_closed_4006`, ...).
    pub(crate) errors: BTreeMap<String, u64>,
    /// The first message seen for some error kinds (TLS).
    #[serde(default)]
    pub(crate) error_details: BTreeMap<String, String>,
    /// From the first connect until every session resolved, seconds.
    pub(crate) ramp_secs: f64,
    /// Whether every session resolved before the ramp deadline.
    pub(crate) ramp_complete: bool,
    /// How long the sessions were held, seconds.
    pub(crate) hold_secs: f64,
    /// Whole run, seconds.
    pub(crate) wall_secs: f64,
    /// App-level PINGs sent.
    pub(crate) pings_sent: u64,
    /// PONGs received.
    pub(crate) pongs: u64,
    /// PINGs from the server, answered.
    pub(crate) server_pings: u64,
    /// GOAWAYs received.
    pub(crate) goaways: u64,
    /// Mean connect-to-AUTH_OK time, ms.
    pub(crate) auth_latency_mean_ms: f64,
    /// Largest connect-to-AUTH_OK time, ms.
    pub(crate) auth_latency_max_ms: f64,
    /// flood's own CPU time (user + system), seconds.
    pub(crate) cpu_secs: f64,
    /// flood's resident memory at the end of the hold, bytes.
    pub(crate) rss_bytes: u64,
    /// flood's peak resident memory, bytes.
    pub(crate) peak_rss_bytes: u64,
}

impl Summary {
    /// Adds a child's summary (see the type's doc).
    pub(crate) fn add(&mut self, other: &Self) {
        let (na, nb) = (self.authenticated, other.authenticated);
        if na + nb > 0 {
            self.auth_latency_mean_ms = (self.auth_latency_mean_ms * na as f64
                + other.auth_latency_mean_ms * nb as f64)
                / (na + nb) as f64;
        }
        self.processes += other.processes;
        self.sessions += other.sessions;
        self.attempted += other.attempted;
        self.connected += other.connected;
        self.upgraded += other.upgraded;
        self.authenticated += other.authenticated;
        self.failed += other.failed;
        self.dropped += other.dropped;
        self.live_at_hold_end += other.live_at_hold_end;
        self.closed_clean += other.closed_clean;
        self.closed_unclean += other.closed_unclean;
        merge_errors(&mut self.errors, &other.errors);
        for (kind, text) in &other.error_details {
            self.error_details.entry(kind.clone()).or_insert_with(|| text.clone());
        }
        self.ramp_secs = self.ramp_secs.max(other.ramp_secs);
        self.ramp_complete = self.ramp_complete && other.ramp_complete;
        self.hold_secs = self.hold_secs.max(other.hold_secs);
        self.wall_secs = self.wall_secs.max(other.wall_secs);
        self.pings_sent += other.pings_sent;
        self.pongs += other.pongs;
        self.server_pings += other.server_pings;
        self.goaways += other.goaways;
        self.auth_latency_max_ms = self.auth_latency_max_ms.max(other.auth_latency_max_ms);
        self.cpu_secs += other.cpu_secs;
        self.rss_bytes += other.rss_bytes;
        self.peak_rss_bytes += other.peak_rss_bytes;
    }

    /// The human-readable table.
    pub(crate) fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("scenario", self.scenario.clone()),
            ("targets", self.targets.join(" ")),
            ("transport", if self.tls { "wss (TLS)" } else { "ws" }.to_owned()),
            ("processes x threads", format!("{} x {}", self.processes, self.threads)),
            ("sessions asked", self.sessions.to_string()),
            ("rate asked", format!("{:.0}/s", self.rate)),
            ("connected", self.connected.to_string()),
            ("upgraded", self.upgraded.to_string()),
            ("authenticated", self.authenticated.to_string()),
            ("failed", self.failed.to_string()),
            ("dropped during hold", self.dropped.to_string()),
            ("live at hold end", self.live_at_hold_end.to_string()),
            ("closed clean / unclean", format!("{} / {}", self.closed_clean, self.closed_unclean)),
            (
                "ramp (s)",
                format!("{:.2}{}", self.ramp_secs, if self.ramp_complete { "" } else { " (incomplete)" }),
            ),
            ("achieved rate (auth/s)", format!("{:.0}", per_sec(self.authenticated, self.ramp_secs))),
            ("hold (s)", format!("{:.2}", self.hold_secs)),
            (
                "auth latency mean / max (ms)",
                format!("{:.2} / {:.2}", self.auth_latency_mean_ms, self.auth_latency_max_ms),
            ),
            ("pings sent / pongs", format!("{} / {}", self.pings_sent, self.pongs)),
            ("server pings / goaways", format!("{} / {}", self.server_pings, self.goaways)),
            ("flood CPU (s)", format!("{:.2}", self.cpu_secs)),
            (
                "flood RSS / peak (MiB)",
                format!("{:.1} / {:.1}", mib(self.rss_bytes), mib(self.peak_rss_bytes)),
            ),
            ("wall (s)", format!("{:.2}", self.wall_secs)),
        ];
        for (kind, n) in &self.errors {
            rows.push(("error", format!("{kind}: {n}")));
        }
        for (kind, text) in &self.error_details {
            rows.push(("error detail", format!("{kind}: {text}")));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in rows {
            let _ = writeln!(out, "{key:<width$}  {value}");
        }
        out
    }
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// This process's CPU time (user + system, all threads) in seconds, from
/// `/proc/self/stat` (fields 14 and 15, in clock ticks).
pub(crate) fn self_cpu_secs() -> f64 {
    cpu_secs("/proc/self/stat").unwrap_or(0.0)
}

/// CPU time (user + system, all threads) of process `pid`, seconds; `None`
/// if its `/proc/PID/stat` cannot be read (no such process).
pub(crate) fn pid_cpu_secs(pid: u32) -> Option<f64> {
    cpu_secs(&format!("/proc/{pid}/stat"))
}

fn cpu_secs(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces: fields are counted after
    // its closing parenthesis, where field 3 (state) is the first.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Some((ticks(11) + ticks(12)) as f64 / hz as f64)
}

/// This process's resident memory now and at its peak, bytes
/// (`/proc/self/status` VmRSS and VmHWM).
pub(crate) fn self_rss_bytes() -> (u64, u64) {
    rss_bytes("/proc/self/status").unwrap_or((0, 0))
}

/// Resident memory of process `pid` now and at its peak, bytes; `None` if
/// its `/proc/PID/status` cannot be read.
pub(crate) fn pid_rss_bytes(pid: u32) -> Option<(u64, u64)> {
    rss_bytes(&format!("/proc/{pid}/status"))
}

fn rss_bytes(path: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(path).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Some((kib("VmRSS:"), kib("VmHWM:")))
}

/// The soft limit on open files (`/proc/self/limits`), if it can be read.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.strip_prefix("Max open files")?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn proc_self_readings_are_sane() {
        let (rss, peak) = self_rss_bytes();
        assert!(rss > 0 && peak >= rss, "{rss} {peak}");
        assert!(self_cpu_secs() >= 0.0);
        assert!(pid_cpu_secs(std::process::id()).unwrap() >= 0.0);
        assert_eq!(pid_cpu_secs(u32::MAX), None);
        assert!(open_files_limit().unwrap() > 0);
    }

    #[test]
    fn summaries_add_up() {
        let mut a = Summary {
            processes: 1,
            authenticated: 10,
            auth_latency_mean_ms: 2.0,
            ramp_secs: 3.0,
            ramp_complete: true,
            ..Default::default()
        };
        a.errors.insert("http_429".into(), 1);
        let mut b = Summary {
            processes: 1,
            authenticated: 30,
            auth_latency_mean_ms: 4.0,
            ramp_secs: 5.0,
            ramp_complete: true,
            ..Default::default()
        };
        b.errors.insert("http_429".into(), 2);
        b.errors.insert("connect_refused".into(), 1);
        a.add(&b);
        assert_eq!(a.processes, 2);
        assert_eq!(a.authenticated, 40);
        assert!((a.auth_latency_mean_ms - 3.5).abs() < 1e-9);
        assert!((a.ramp_secs - 5.0).abs() < 1e-9);
        assert_eq!(a.errors["http_429"], 3);
        assert_eq!(a.errors["connect_refused"], 1);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), a);
    }
}
