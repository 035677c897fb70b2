use std::collections::HashSet;
use std::time::Duration;

use crate::Backoff;

#[test]
fn backoff_grows_is_capped_jittered_and_honours_the_floor() {
    let (base, cap) = (Duration::from_millis(100), Duration::from_millis(1_000));
    let mut backoff = Backoff::new(base, cap);
    for attempt in 0..8u32 {
        let ceiling = (base * 2u32.pow(attempt)).min(cap);
        let delay = backoff.next_delay();
        assert!(delay >= ceiling / 2 && delay <= ceiling, "attempt {attempt}: {delay:?}");
    }
    assert_eq!(backoff.attempt(), 8);
    let floor = Duration::from_secs(5);
    let delay = backoff.next_delay_at_least(floor);
    assert!(delay >= floor && delay <= floor + floor / 10, "{delay:?}");
    backoff.reset();
    assert!(backoff.next_delay() <= base);
    // Jitter spreads: 20 draws are not all equal.
    let draws: HashSet<Duration> = (0..20).map(|_| Backoff::new(base, cap).next_delay()).collect();
    assert!(draws.len() > 1);
}
