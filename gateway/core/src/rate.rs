//! A session's frame-rate limit: a token bucket in fixed point, refilled from
//! the time of each check (no timer).
//!
//! Over the limit, the first refused frame gets ERROR `RATE_LIMITED` with the
//! time until a token is back; a client that keeps sending through another full
//! burst of refusals is closed with 4009 (SPEC §7).

use std::time::{Duration, Instant};

/// Frames per second and burst size.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_sec: u32,
    /// Bucket size.
    pub burst: u32,
}

/// Fixed-point scale: one token is `SCALE` units.
const SCALE: u64 = 1000;

/// What the bucket says about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit.
    Pass,
    /// Refused; tell the client to wait this long (first refusal of a run).
    Warn(Duration),
    /// Refused again (the client should wait this long).
    Refuse(Duration),
    /// Refused a whole burst in a row: close the session.
    Close,
}

/// Per-session bucket state (16 bytes with `last` kept as a `u32` of ms since
/// the session's creation, so an idle session stays small).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    /// Tokens, in `SCALE` units.
    units: u64,
    /// Refusals in a row.
    strikes: u32,
    /// Last refill, ms since `origin`.
    last_ms: u32,
}

impl Bucket {
    pub(crate) fn full(limit: RateLimit) -> Self {
        Self { units: u64::from(limit.burst) * SCALE, strikes: 0, last_ms: 0 }
    }

    /// Takes one token for a frame at `now` (`origin`: the session's creation).
    pub(crate) fn check(&mut self, limit: RateLimit, origin: Instant, now: Instant) -> Verdict {
        let now_ms = u32::try_from(now.saturating_duration_since(origin).as_millis()).unwrap_or(u32::MAX);
        let elapsed = u64::from(now_ms.saturating_sub(self.last_ms));
        self.last_ms = now_ms;
        let cap = u64::from(limit.burst) * SCALE;
        // per_sec tokens a second = per_sec units a millisecond.
        self.units = (self.units + elapsed * u64::from(limit.per_sec)).min(cap);
        if self.units >= SCALE {
            self.units -= SCALE;
            self.strikes = 0;
            return Verdict::Pass;
        }
        self.strikes += 1;
        let missing = SCALE - self.units;
        let wait = Duration::from_millis(missing.div_ceil(u64::from(limit.per_sec.max(1))));
        if self.strikes == 1 {
            return Verdict::Warn(wait);
        }
        if self.strikes > limit.burst.max(1) {
            return Verdict::Close;
        }
        Verdict::Refuse(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_then_close_after_a_burst_of_refusals() {
        let limit = RateLimit { per_sec: 10, burst: 3 };
        let t0 = Instant::now();
        let mut bucket = Bucket::full(limit);
        for _ in 0..3 {
            assert_eq!(bucket.check(limit, t0, t0), Verdict::Pass);
        }
        // Empty: one token comes back in 100 ms.
        assert_eq!(bucket.check(limit, t0, t0), Verdict::Warn(Duration::from_millis(100)));
        assert_eq!(bucket.check(limit, t0, t0), Verdict::Refuse(Duration::from_millis(100)));
        // 100 ms later a frame passes and the strikes reset.
        assert_eq!(bucket.check(limit, t0, t0 + Duration::from_millis(100)), Verdict::Pass);
        let t1 = t0 + Duration::from_millis(100);
        assert!(matches!(bucket.check(limit, t0, t1), Verdict::Warn(_)));
        assert!(matches!(bucket.check(limit, t0, t1), Verdict::Refuse(_)));
        assert!(matches!(bucket.check(limit, t0, t1), Verdict::Refuse(_)));
        assert_eq!(bucket.check(limit, t0, t1), Verdict::Close);
    }
}
