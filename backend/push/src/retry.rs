//! Retry timing: exponential backoff with jitter, capped, and `Retry-After`
//! when the provider gave one. Pure functions of their inputs.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// Delay before try `tries + 1`, after `tries` (>= 1) failed ones.
///
/// Without `retry_after`: `base * 2^(tries-1)`, capped at `cap`, of which a
/// random half is taken off ("equal jitter"), so that devices that failed
/// together do not retry together, yet every wait is at least half the step.
/// With `retry_after` (the provider asked): that, capped at `cap`.
pub(crate) fn backoff(
    tries: u32,
    base: Duration,
    cap: Duration,
    retry_after: Option<Duration>,
    jitter: &mut Jitter,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(cap);
    }
    let factor = 1u32.checked_shl(tries.saturating_sub(1)).unwrap_or(u32::MAX);
    let step = base.saturating_mul(factor).min(cap);
    let half = step / 2;
    half + half.mul_f64(jitter.unit())
}

/// A small per-task random source for jitter (splitmix64); not for secrets.
#[derive(Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    /// Seeded from std's per-process random hasher keys.
    pub(crate) fn new() -> Self {
        Self(RandomState::new().hash_one(0u8))
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits fill an f64 mantissa exactly.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(500);
    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn doubles_with_jitter_and_caps() {
        let mut jitter = Jitter::new();
        for _ in 0..100 {
            for (tries, step) in [(1, 500), (2, 1000), (3, 2000), (7, 30_000), (40, 30_000)] {
                let step = Duration::from_millis(step);
                let d = backoff(tries, BASE, CAP, None, &mut jitter);
                assert!(d >= step / 2 && d <= step, "try {tries}: {d:?}");
            }
        }
    }

    #[test]
    fn jitter_varies() {
        let mut jitter = Jitter::new();
        let a: Vec<_> = (0..10).map(|_| backoff(3, BASE, CAP, None, &mut jitter)).collect();
        assert!(a.iter().any(|d| *d != a[0]));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let mut jitter = Jitter::new();
        let seven = Duration::from_secs(7);
        assert_eq!(backoff(1, BASE, CAP, Some(seven), &mut jitter), seven);
        assert_eq!(backoff(1, BASE, CAP, Some(Duration::from_secs(3600)), &mut jitter), CAP);
    }
}
