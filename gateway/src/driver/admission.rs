//! New connections per client IP: a token bucket per address, per worker.
//!
//! Each worker enforces its share of the node's rate (the kernel spreads one
//! client's connections over the workers' `SO_REUSEPORT` queues), so no lock
//! is shared. Buckets that have refilled are pruned every few seconds, so the
//! table holds only recently active addresses.
//!
//! A refused connection gets `HTTP/1.1 429` with `Retry-After` and is closed
//! before any session state exists.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often full buckets are dropped from the table.
const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// The answer to a refused connection.
pub(crate) const TOO_MANY: &[u8] =
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-IP connection buckets of one worker.
#[derive(Debug)]
pub(crate) struct Admission {
    per_sec: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
    last_prune: Instant,
}

impl Admission {
    /// This worker's share of `per_sec` and `burst` (at least one connection).
    pub(crate) fn new(per_sec: u32, burst: u32, workers: usize, now: Instant) -> Self {
        let workers = workers.max(1) as f64;
        Self {
            per_sec: (f64::from(per_sec) / workers).max(f64::MIN_POSITIVE),
            burst: (f64::from(burst) / workers).max(1.0),
            buckets: HashMap::new(),
            last_prune: now,
        }
    }

    /// Whether `ip` may open a connection at `now`.
    pub(crate) fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.prune(now);
        let (per_sec, burst) = (self.per_sec, self.burst);
        let bucket = self.buckets.entry(ip).or_insert(Bucket { tokens: burst, last: now });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Addresses currently tracked.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn prune(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_prune) < PRUNE_EVERY {
            return;
        }
        self.last_prune = now;
        let (per_sec, burst) = (self.per_sec, self.burst);
        self.buckets
            .retain(|_, b| b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_sec < burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate_per_address_and_pruning() {
        let t0 = Instant::now();
        // 2 workers share 20/s with a burst of 10: 10/s and 5 each.
        let mut admission = Admission::new(20, 10, 2, t0);
        let a: IpAddr = "10.1.1.1".parse().unwrap();
        let b: IpAddr = "10.1.1.2".parse().unwrap();
        assert!((0..5).all(|_| admission.admit(a, t0)));
        assert!(!admission.admit(a, t0), "burst spent");
        assert!(admission.admit(b, t0), "another address has its own bucket");
        assert!(admission.admit(a, t0 + Duration::from_millis(100)), "one token per 100 ms");
        assert!(!admission.admit(a, t0 + Duration::from_millis(100)));
        // Long after, both buckets are full again and get pruned.
        let later = t0 + Duration::from_secs(60);
        assert!(admission.admit(a, later));
        assert_eq!(admission.tracked(), 1, "b was full and pruned; a was just used");
    }
}
