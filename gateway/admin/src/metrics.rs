//! Metric cells and [`WorkerMetrics`], the per-worker set.
//!
//! Thread-per-core: each worker thread owns one [`WorkerMetrics`] (behind an
//! `Arc` shared with the [`crate::Registry`]) and is the only thread that writes
//! it, so the cells never bounce between cores. Writes are `Relaxed` atomic
//! read-modify-writes on the worker's own cache lines (uncontended, no fence);
//! the admin thread reads them with `Relaxed` loads when it renders. A render
//! may see one cell updated and a neighbour not yet: each value is exact, the
//! set is not a snapshot, which is what Prometheus expects of scraped counters.
//!
//! Nothing here allocates after construction, takes a lock or hashes: labelled
//! cells are fixed arrays indexed by [`Label::index`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use protocol::{CloseCode, FrameKind};

use crate::labels::{AuthFailure, DropReason, HandshakeFailure, Label, MediaResult, SessionState};

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A gauge: set, or moved up and down. Signed, so that a transient
/// decrement-before-increment across workers cannot wrap when summed.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// A gauge at zero.
    pub const fn new() -> Self {
        Self(AtomicI64::new(0))
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, value: i64) {
        self.0.store(value, Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.add(-1);
    }

    /// Adds `delta` (negative to subtract).
    #[inline]
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// One counter per value of the label `L` (`N` is always `L::COUNT`).
pub struct Counters<L, const N: usize> {
    cells: [AtomicU64; N],
    label: PhantomData<fn(L)>,
}

impl<L: Label, const N: usize> Counters<L, N> {
    /// Every counter at zero.
    pub const fn new() -> Self {
        const { assert!(N == L::COUNT, "Counters<L, N> needs N == L::COUNT") };
        Self { cells: [const { AtomicU64::new(0) }; N], label: PhantomData }
    }

    /// Adds one to `label`'s counter.
    #[inline]
    pub fn inc(&self, label: L) {
        self.add(label, 1);
    }

    /// Adds `n` to `label`'s counter.
    #[inline]
    pub fn add(&self, label: L, n: u64) {
        if let Some(cell) = self.cells.get(label.index()) {
            cell.fetch_add(n, Relaxed);
        }
    }

    /// `label`'s counter.
    pub fn get(&self, label: L) -> u64 {
        self.at(label.index())
    }

    /// The counter in slot `index` (0 past the end).
    pub(crate) fn at(&self, index: usize) -> u64 {
        self.cells.get(index).map_or(0, |cell| cell.load(Relaxed))
    }
}

impl<L: Label, const N: usize> Default for Counters<L, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L, const N: usize> fmt::Debug for Counters<L, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.cells.iter().map(|cell| cell.load(Relaxed))).finish()
    }
}

/// One gauge per value of the label `L` (`N` is always `L::COUNT`).
pub struct Gauges<L, const N: usize> {
    cells: [Gauge; N],
    label: PhantomData<fn(L)>,
}

impl<L: Label, const N: usize> Gauges<L, N> {
    /// Every gauge at zero.
    pub const fn new() -> Self {
        const { assert!(N == L::COUNT, "Gauges<L, N> needs N == L::COUNT") };
        Self { cells: [const { Gauge::new() }; N], label: PhantomData }
    }

    /// `label`'s gauge.
    #[inline]
    pub fn gauge(&self, label: L) -> Option<&Gauge> {
        self.cells.get(label.index())
    }

    /// Adds one to `label`'s gauge.
    #[inline]
    pub fn inc(&self, label: L) {
        if let Some(gauge) = self.gauge(label) {
            gauge.inc();
        }
    }

    /// Subtracts one from `label`'s gauge.
    #[inline]
    pub fn dec(&self, label: L) {
        if let Some(gauge) = self.gauge(label) {
            gauge.dec();
        }
    }

    /// Moves one unit from `from` to `to` (a state transition); `None` is
    /// outside the set (not yet counted, or gone).
    #[inline]
    pub fn transition(&self, from: Option<L>, to: Option<L>) {
        if let Some(from) = from {
            self.dec(from);
        }
        if let Some(to) = to {
            self.inc(to);
        }
    }

    /// Sets `label`'s gauge.
    #[inline]
    pub fn set(&self, label: L, value: i64) {
        if let Some(gauge) = self.gauge(label) {
            gauge.set(value);
        }
    }

    /// `label`'s gauge value.
    pub fn get(&self, label: L) -> i64 {
        self.at(label.index())
    }

    /// The gauge in slot `index` (0 past the end).
    pub(crate) fn at(&self, index: usize) -> i64 {
        self.cells.get(index).map_or(0, Gauge::get)
    }
}

impl<L: Label, const N: usize> Default for Gauges<L, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L, const N: usize> fmt::Debug for Gauges<L, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.cells.iter().map(Gauge::get)).finish()
    }
}

/// 10 µs to 10 s in 1-2.5-5 steps: the bounds of the latency histograms.
const STEPS_NS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Upper bounds (nanoseconds) of the store-request histogram buckets: 50 µs
/// to 10 s (a remote store's deadline is 5 s by default).
pub(crate) const STORE_REQUEST_BOUNDS_NS: &[u64] = STEPS_NS.split_at(2).1;

/// Upper bounds (nanoseconds) of the loop-turn histogram buckets: 10 µs to
/// 1 s; slower turns land in `+Inf`.
pub const LOOP_TURN_BOUNDS_NS: &[u64] = STEPS_NS.split_at(16).0;

/// A fixed-bucket histogram of durations.
///
/// Buckets are stored per bucket (not cumulative) so an observation touches one
/// cell; the renderer makes them cumulative and derives `_count` from their
/// total, so `le="+Inf"` and `_count` always agree. The sum is kept in
/// nanoseconds (an integer add; 584 years before it wraps) and rendered in
/// seconds.
pub struct Histogram {
    bounds_ns: &'static [u64],
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// A histogram with these strictly increasing upper bounds (ns), plus the
    /// implicit `+Inf` bucket. Allocates its buckets once, here.
    pub fn new(bounds_ns: &'static [u64]) -> Self {
        debug_assert!(bounds_ns.windows(2).all(|w| w.first() < w.last()), "bounds must increase");
        Self {
            bounds_ns,
            buckets: (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    #[inline]
    pub fn observe(&self, duration: Duration) {
        self.observe_ns(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one duration given in nanoseconds. A value equal to a bound
    /// counts in that bound's bucket (`le` is inclusive).
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        let bucket = self.bounds_ns.partition_point(|&bound| bound < ns);
        if let Some(cell) = self.buckets.get(bucket) {
            cell.fetch_add(1, Relaxed);
        }
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// The upper bounds in nanoseconds (without `+Inf`).
    pub fn bounds_ns(&self) -> &'static [u64] {
        self.bounds_ns
    }

    /// Observations per bucket, not cumulative; the last is `+Inf` only.
    pub fn bucket_counts(&self) -> impl Iterator<Item = u64> + '_ {
        self.buckets.iter().map(|cell| cell.load(Relaxed))
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.bucket_counts().fold(0, u64::wrapping_add)
    }

    /// Sum of the observations in nanoseconds.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns.load(Relaxed)
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("bounds_ns", &self.bounds_ns)
            .field("buckets", &self.bucket_counts().collect::<Vec<_>>())
            .field("sum_ns", &self.sum_ns())
            .finish()
    }
}

/// Counters of one label set, sized by it.
macro_rules! counters {
    ($label:ty) => { Counters<$label, { <$label as Label>::COUNT }> };
}

/// Every metric one worker thread writes. Create them through
/// [`crate::Registry::new`], hand each worker its `Arc`, and let only that
/// worker write it. Field names follow [`crate::names`].
///
/// Aligned to 128 bytes so two workers' sets never share a cache line (or an
/// adjacent-line prefetch pair).
#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerMetrics {
    worker: usize,
    /// `gateway_sessions_open`: +1 at accept, -1 at close.
    pub sessions_open: Gauge,
    /// `gateway_sessions{state}`: move with [`Gauges::transition`].
    pub sessions: Gauges<SessionState, { SessionState::COUNT }>,
    /// `gateway_accepts_total`.
    pub accepts: Counter,
    /// `gateway_accept_paused{worker}`: 1 while this worker does not accept.
    pub accept_paused: Gauge,
    /// `gateway_accept_pauses_total`.
    pub accept_pauses: Counter,
    /// `gateway_handshake_failures_total{reason}`.
    pub handshake_failures: counters!(HandshakeFailure),
    /// `gateway_auth_failures_total{reason}`.
    pub auth_failures: counters!(AuthFailure),
    /// `gateway_frames_in_total{kind}`.
    pub frames_in: counters!(FrameKind),
    /// `gateway_frames_out_total{kind}`.
    pub frames_out: counters!(FrameKind),
    /// `gateway_bytes_in_total`.
    pub bytes_in: Counter,
    /// `gateway_bytes_out_total`.
    pub bytes_out: Counter,
    /// `gateway_outbound_queue_bytes`: this worker's sessions' queued bytes.
    pub outbound_queue_bytes: Gauge,
    /// `gateway_logins_in_flight`: this worker's logins between HELLO and
    /// the store's answer to the device's Connect.
    pub logins_in_flight: Gauge,
    /// `gateway_logins_queued`: HELLOs waiting for one of this worker's
    /// login slots.
    pub logins_queued: Gauge,
    /// `gateway_recent_tokens_total`: tokens this worker accepted without
    /// their signature check (a recently closed session's token).
    pub recent_tokens: Counter,
    /// `gateway_send_acks_held_total`.
    pub send_acks_held: Counter,
    /// `gateway_send_acks_unconfirmed_total`.
    pub send_acks_unconfirmed: Counter,
    /// `gateway_inbox_depth{worker}`: batches in this worker's inbox.
    pub inbox_depth: Gauge,
    /// `gateway_drops_total{reason}`.
    pub drops: counters!(DropReason),
    /// `gateway_media_tickets_total{result}`.
    pub media_tickets: counters!(MediaResult),
    /// `gateway_closes_total{code}`.
    pub closes: counters!(CloseCode),
    /// `gateway_uring_buffers_dry_total` (io_uring driver).
    pub uring_buffers_dry: Counter,
    /// `gateway_loop_turn_seconds{worker}`.
    pub loop_turn: Histogram,
    /// `gateway_store_request_seconds` (observed on the store's thread:
    /// the cells are atomics).
    pub store_request: Histogram,
}

impl WorkerMetrics {
    /// A zeroed set for worker number `worker` (its `worker="N"` label).
    pub fn new(worker: usize) -> Self {
        Self {
            worker,
            sessions_open: Gauge::new(),
            sessions: Gauges::new(),
            accepts: Counter::new(),
            accept_paused: Gauge::new(),
            accept_pauses: Counter::new(),
            handshake_failures: Counters::new(),
            auth_failures: Counters::new(),
            frames_in: Counters::new(),
            frames_out: Counters::new(),
            bytes_in: Counter::new(),
            bytes_out: Counter::new(),
            outbound_queue_bytes: Gauge::new(),
            logins_in_flight: Gauge::new(),
            logins_queued: Gauge::new(),
            recent_tokens: Counter::new(),
            send_acks_held: Counter::new(),
            send_acks_unconfirmed: Counter::new(),
            inbox_depth: Gauge::new(),
            drops: Counters::new(),
            media_tickets: Counters::new(),
            closes: Counters::new(),
            uring_buffers_dry: Counter::new(),
            loop_turn: Histogram::new(LOOP_TURN_BOUNDS_NS),
            store_request: Histogram::new(STORE_REQUEST_BOUNDS_NS),
        }
    }

    /// The worker number.
    pub fn worker(&self) -> usize {
        self.worker
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bounds_are_inclusive() {
        let h = Histogram::new(&[10, 20]);
        for ns in [0, 10, 11, 20, 21, u64::MAX / 2] {
            h.observe_ns(ns);
        }
        assert_eq!(h.bucket_counts().collect::<Vec<_>>(), [2, 2, 2]);
        assert_eq!(h.count(), 6);
        assert_eq!(h.sum_ns(), 10 + 11 + 20 + 21 + u64::MAX / 2);
    }

    #[test]
    fn loop_turn_bounds_span_10us_to_1s() {
        assert_eq!(LOOP_TURN_BOUNDS_NS.first(), Some(&10_000));
        assert_eq!(LOOP_TURN_BOUNDS_NS.last(), Some(&1_000_000_000));
        assert!(LOOP_TURN_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn labelled_cells_move_independently() {
        let m = WorkerMetrics::new(3);
        m.frames_in.inc(FrameKind::Ping);
        m.frames_in.add(FrameKind::SendMessage, 5);
        m.closes.inc(CloseCode(4999));
        m.sessions.transition(None, Some(SessionState::Handshake));
        m.sessions.transition(Some(SessionState::Handshake), Some(SessionState::Live));
        assert_eq!(m.frames_in.get(FrameKind::Ping), 1);
        assert_eq!(m.frames_in.get(FrameKind::SendMessage), 5);
        assert_eq!(m.frames_in.get(FrameKind::Ack), 0);
        assert_eq!(m.closes.get(CloseCode(4998)), 1, "unknown codes share the other slot");
        assert_eq!(m.sessions.get(SessionState::Handshake), 0);
        assert_eq!(m.sessions.get(SessionState::Live), 1);
        assert_eq!(m.worker(), 3);
        assert_eq!(std::mem::align_of::<WorkerMetrics>(), 128);
    }
}
