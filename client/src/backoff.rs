//! Reconnect delays (SPEC §11: exponential backoff with jitter, starting near
//! 1 s, capped near 60 s, honouring `retry_after_ms` and GOAWAY delays) and the
//! jitter source of the heartbeat. Sans-IO: it computes delays, the caller
//! sleeps.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Exponential backoff with jitter between reconnect attempts.
///
/// Attempt *n* (from 0) waits a uniformly random time in `[d/2, d]`, where
/// `d = min(cap, base · 2ⁿ)`, and never less than the floor the server asked
/// for. Call [`Backoff::reset`] once a connection authenticated.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    /// SPEC defaults: 1 s doubling up to 60 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    /// Delays from `base` doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap: cap.max(base), attempt: 0 }
    }

    /// The delay before the next attempt, and counts it.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_at_least(Duration::ZERO)
    }

    /// [`Backoff::next_delay`], but at least `floor` (a `retry_after_ms`, or a
    /// GOAWAY's `reconnect_after_ms`, to which jitter of up to 10 % is added).
    pub fn next_delay_at_least(&mut self, floor: Duration) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let backoff = ceiling / 2 + ceiling.mul_f64(random_unit() / 2.0);
        let floor = floor + floor.mul_f64(random_unit() / 10.0);
        backoff.max(floor)
    }

    /// Attempts counted since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Back to the first delay (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `period` scaled by a random factor in `[0.9, 1.1]` (heartbeat jitter).
pub(crate) fn jittered(period: Duration) -> Duration {
    period.mul_f64(0.9 + random_unit() / 5.0)
}

/// A random number in `[0, 1)`, from std's randomly keyed hasher (jitter
/// needs spread, not cryptographic quality).
fn random_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    // 53 random bits, the precision of an f64 mantissa.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
