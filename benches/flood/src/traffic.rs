//! Message traffic of the `chat` and `sync` scenarios: what one connection
//! does once live ([`Flow`]), the counters and latency histograms the
//! threads of a process share ([`Counters`], [`Latencies`]), and the
//! summaries printed at the end ([`ChatSummary`], [`SyncSummary`]).
//!
//! Chat: sessions in pairs (user 2k ↔ 2k+1, device 1). Each sends SEND to
//! its peer, at most `window` unacknowledged at a time, either as fast as
//! SEND_ACKs come back or at a fixed rate. The payload starts with the send
//! time (nanoseconds since the run's start on flood's monotonic clock, 8
//! bytes little-endian): sender and receiver are threads of one process, so
//! the receiver computes the end-to-end latency (SEND written → DELIVER
//! read). The sender records SEND → SEND_ACK. Every session acks its inbox
//! cumulatively once per WebSocket message received.
//!
//! Ping: the same loop with PING instead of SEND (nonce = send time with the
//! top bit set, so the PONG carries it back), the round trip of a frame
//! through the gateway without the store: the baseline of `chat`.
//!
//! Sync: one device connects to a filled inbox and drains it (the server's
//! SYNC_BATCHes, acked once per WebSocket message) until SYNC_DONE.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use protocol::{Conversation, Frame, Payload, Ping, UserId};
use serde::{Deserialize, Serialize};

/// Marks the PINGs of the ping mode (their nonce is a send time); heartbeat
/// PINGs count up from 1 and never have it.
pub(crate) const TIMED_PING: u64 = 1 << 63;
/// Bytes of the send time at the start of a chat payload.
pub(crate) const STAMP_LEN: usize = 8;
/// Largest latency the histograms hold, microseconds (larger ones saturate).
const MAX_LATENCY_US: u64 = 120_000_000;

/// What the live sessions of a run do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// SEND to the peer (chat).
    Send,
    /// PING round trips (the chat baseline).
    Ping,
    /// Nothing sent: drain the inbox (sync).
    Sync,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Send => "chat",
            Self::Ping => "ping",
            Self::Sync => "sync",
        }
    }
}

/// The traffic settings every connection of a run shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) mode: Mode,
    /// Most sends (or PINGs) in flight per session.
    pub(crate) window: u32,
    /// Time between two sends of one session; `None`: as fast as the window
    /// allows.
    pub(crate) interval: Option<Duration>,
    /// SEND payload size, bytes (at least [`STAMP_LEN`]).
    pub(crate) payload_len: usize,
    /// Zero of the send times.
    pub(crate) origin: Instant,
}

impl Spec {
    /// Nanoseconds from the origin to `now`.
    pub(crate) fn stamp(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One connection's traffic state.
#[derive(Debug)]
pub(crate) struct Flow {
    pub(crate) spec: Spec,
    /// Recipient of this session's SENDs.
    pub(crate) peer: UserId,
    /// Whether sending began (at the start of the hold, or at AUTH_OK after it).
    pub(crate) started: bool,
    /// Sends (or timed PINGs) not answered yet.
    pub(crate) inflight: u32,
    /// Rate mode: when the next send is due.
    pub(crate) next_send: Option<Instant>,
    /// Client id and send time of the sends in flight, oldest first.
    sends: VecDeque<(u64, u64)>,
}

impl Flow {
    pub(crate) fn new(spec: Spec, peer: UserId) -> Self {
        Self { spec, peer, started: false, inflight: 0, next_send: None, sends: VecDeque::new() }
    }

    /// Whether another send fits the window.
    pub(crate) fn has_room(&self) -> bool {
        self.spec.mode != Mode::Sync && self.inflight < self.spec.window
    }

    /// The payload of a send made at `stamp`.
    pub(crate) fn payload(&self, stamp: u64) -> Option<Payload> {
        let mut bytes = vec![0u8; self.spec.payload_len.max(STAMP_LEN)];
        bytes.get_mut(..STAMP_LEN)?.copy_from_slice(&stamp.to_le_bytes());
        Payload::new(Bytes::from(bytes)).ok()
    }

    /// The recipient conversation.
    pub(crate) fn to(&self) -> Conversation {
        Conversation::Direct(self.peer)
    }

    /// Records a SEND of `client_id` at `stamp`.
    pub(crate) fn sent(&mut self, client_id: u64, stamp: u64) {
        self.inflight += 1;
        self.sends.push_back((client_id, stamp));
    }

    /// A timed PING at `stamp`.
    pub(crate) fn ping(&mut self, stamp: u64) -> Frame {
        self.inflight += 1;
        Frame::Ping(Ping { nonce: TIMED_PING | stamp })
    }

    /// SEND_ACK or SEND_ERROR for `client_id`: its send time, if it was in
    /// flight.
    pub(crate) fn answered(&mut self, client_id: u64) -> Option<u64> {
        let index = self.sends.iter().position(|&(id, _)| id == client_id)?;
        let (_, stamp) = self.sends.remove(index)?;
        self.inflight = self.inflight.saturating_sub(1);
        Some(stamp)
    }

    /// A PONG: the send time of a timed PING, `None` for a heartbeat.
    pub(crate) fn pong(&mut self, nonce: u64) -> Option<u64> {
        if nonce & TIMED_PING == 0 {
            return None;
        }
        self.inflight = self.inflight.saturating_sub(1);
        Some(nonce & !TIMED_PING)
    }
}

/// The send time a chat payload starts with.
pub(crate) fn payload_stamp(payload: &[u8]) -> Option<u64> {
    let stamp: [u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
    Some(u64::from_le_bytes(stamp))
}

/// Latency histograms, microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Latencies {
    /// SEND → SEND_ACK (ping mode: PING → PONG).
    pub(crate) ack: Histogram<u64>,
    /// SEND written → DELIVER read.
    pub(crate) e2e: Histogram<u64>,
}

impl Latencies {
    /// Empty histograms of 1 µs to 120 s, 3 significant figures.
    pub(crate) fn new() -> Result<Self, String> {
        let histogram = || {
            Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| format!("latency histogram: {e}"))
        };
        Ok(Self { ack: histogram()?, e2e: histogram()? })
    }

    /// Adds another thread's histograms.
    pub(crate) fn add(&mut self, other: &Self) {
        let _ = self.ack.add(&other.ack);
        let _ = self.e2e.add(&other.e2e);
    }
}

/// Records `from_ns` → `to_ns` in `histogram`, in microseconds.
pub(crate) fn record(histogram: &mut Histogram<u64>, from_ns: u64, to_ns: u64) {
    let us = to_ns.saturating_sub(from_ns) / 1000;
    histogram.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

/// Traffic counters of one process (relaxed atomics, each read on its own).
#[derive(Debug)]
pub(crate) struct Counters {
    /// SENDs (ping mode: timed PINGs) written.
    pub(crate) sent: AtomicU64,
    /// SEND_ACKs (ping mode: PONGs of timed PINGs).
    pub(crate) acked: AtomicU64,
    /// SEND_ERRORs.
    pub(crate) send_errors: AtomicU64,
    /// Entries delivered (live DELIVER and SYNC_BATCH entries alike).
    pub(crate) delivered: AtomicU64,
    /// ACK frames sent.
    pub(crate) acks_sent: AtomicU64,
    /// SYNC_DONEs received.
    pub(crate) synced: AtomicU64,
    /// Highest SYNC_DONE head seen.
    pub(crate) synced_head: AtomicU64,
    /// Earliest AUTH_OK, ns since the origin (`u64::MAX`: none).
    pub(crate) first_auth_ns: AtomicU64,
    /// Latest SYNC_DONE, ns since the origin.
    pub(crate) last_synced_ns: AtomicU64,
    /// Histograms merged by each thread as it ends.
    pub(crate) latencies: Mutex<Option<Latencies>>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            acks_sent: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            synced_head: AtomicU64::new(0),
            first_auth_ns: AtomicU64::new(u64::MAX),
            last_synced_ns: AtomicU64::new(0),
            latencies: Mutex::new(None),
        }
    }
}

impl Counters {
    /// Adds a thread's histograms.
    pub(crate) fn merge(&self, latencies: &Latencies) {
        if let Ok(mut total) = self.latencies.lock() {
            match total.as_mut() {
                Some(total) => total.add(latencies),
                None => *total = Some(latencies.clone()),
            }
        }
    }

    /// The merged histograms (`None` if no thread merged any).
    pub(crate) fn latencies(&self) -> Option<Latencies> {
        self.latencies.lock().ok().and_then(|l| l.clone())
    }

    /// `(sent, acked, send_errors, delivered)` now.
    pub(crate) fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.sent.load(Relaxed),
            self.acked.load(Relaxed),
            self.send_errors.load(Relaxed),
            self.delivered.load(Relaxed),
        )
    }
}

/// Percentiles of one histogram, microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) mean_us: f64,
    pub(crate) p50_us: u64,
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
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }

    fn row(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "{:.3} / {:.3} / {:.3} / {:.3}  (n = {})",
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            self.count
        )
    }
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

fn render(mut rows: Vec<(&str, String)>, errors: &BTreeMap<String, u64>) -> String {
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

    fn spec(mode: Mode) -> Spec {
        Spec { mode, window: 2, interval: None, payload_len: 16, origin: Instant::now() }
    }

    #[test]
    fn payload_carries_the_stamp() {
        let flow = Flow::new(spec(Mode::Send), UserId(3));
        let payload = flow.payload(123_456_789).unwrap();
        assert_eq!(payload.bytes().len(), 16);
        assert_eq!(payload_stamp(payload.bytes()), Some(123_456_789));
        assert_eq!(payload_stamp(&[1, 2, 3]), None);
    }

    #[test]
    fn window_and_answers() {
        let mut flow = Flow::new(spec(Mode::Send), UserId(3));
        assert!(flow.has_room());
        flow.sent(1, 10);
        flow.sent(2, 20);
        assert!(!flow.has_room());
        assert_eq!(flow.answered(2), Some(20));
        assert_eq!(flow.answered(2), None);
        assert_eq!(flow.answered(1), Some(10));
        assert_eq!(flow.inflight, 0);

        let mut pings = Flow::new(spec(Mode::Ping), UserId(3));
        let Frame::Ping(Ping { nonce }) = pings.ping(77) else { panic!() };
        assert_eq!(pings.pong(5), None, "a heartbeat PONG");
        assert_eq!(pings.inflight, 1);
        assert_eq!(pings.pong(nonce), Some(77));
        assert_eq!(pings.inflight, 0);
        assert!(!Flow::new(spec(Mode::Sync), UserId(3)).has_room());
    }

    #[test]
    fn histograms_merge() {
        let mut a = Latencies::new().unwrap();
        let mut b = Latencies::new().unwrap();
        record(&mut a.ack, 0, 1_000_000);
        record(&mut b.ack, 0, 3_000_000);
        record(&mut b.e2e, 5, 0);
        a.add(&b);
        let p = Percentiles::of(&a.ack);
        assert_eq!(p.count, 2);
        assert!((999..=1001).contains(&p.p50_us), "{p:?}");
        assert!((2990..=3010).contains(&p.max_us), "{p:?}");
        assert_eq!(Percentiles::of(&a.e2e).max_us, 1, "negative spans clamp to 1 µs");
    }
}
