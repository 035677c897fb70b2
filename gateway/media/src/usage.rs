//! What each user has asked for: a token bucket of tickets per minute (both
//! kinds) and the bytes of the upload tickets granted in the current UTC day.
//!
//! Shared by the node's workers (a user's devices may sit on different
//! workers): sharded maps behind mutexes, held for a few arithmetic steps per
//! ticket, never on the message path. The count is per node: a user whose
//! devices are on several nodes can be granted up to that many quotas a day
//! (the fleet has no shared counter for it; README "Media").

use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 16;
const DAY_MS: u64 = 86_400_000;

/// Why a ticket is refused by the user's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverBudget {
    /// Too many tickets this minute: wait this long, ms.
    Rate(u64),
    /// Today's bytes are spent: wait until the day ends, ms.
    Quota(u64),
}

/// One user's budget today.
#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    tokens: f64,
    refilled_ms: u64,
}

/// The users of one shard that asked today (all of them go at the first
/// ticket of the next day: a map never holds more than one day's users, and
/// no ticket pays for a sweep).
#[derive(Debug, Default)]
struct Shard {
    day: u64,
    users: HashMap<u64, Entry>,
}

/// Per-user budgets.
#[derive(Debug)]
pub(crate) struct Usage {
    shards: Vec<Mutex<Shard>>,
    per_min: u32,
    quota: u64,
}

impl Usage {
    pub(crate) fn new(per_min: u32, quota: u64) -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), per_min, quota }
    }

    /// Takes one ticket of `user`'s rate and, for an upload, `bytes` of its
    /// day's quota (nothing is taken when refused).
    pub(crate) fn take(&self, user: u64, bytes: Option<u64>, now_ms: u64) -> Result<(), OverBudget> {
        #[allow(clippy::indexing_slicing)] // below SHARDS, the vector's length
        let shard = &self.shards[(user % SHARDS as u64) as usize];
        // A poisoned lock only means a panic elsewhere mid-update of plain
        // numbers: the map is still usable.
        let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let day = now_ms / DAY_MS;
        // Workers' clocks are read at their turns and may straddle
        // midnight: only a later day resets.
        if day > shard.day {
            // A new day: yesterday's users go (their rate buckets refill
            // whole, a minute's burst at most).
            shard.day = day;
            shard.users = HashMap::new();
        }
        let burst = f64::from(self.per_min);
        let entry = shard.users.entry(user).or_insert(Entry { bytes: 0, tokens: burst, refilled_ms: now_ms });
        let elapsed = now_ms.saturating_sub(entry.refilled_ms) as f64;
        entry.tokens = (entry.tokens + elapsed * burst / 60_000.0).min(burst);
        entry.refilled_ms = now_ms;
        if entry.tokens < 1.0 {
            let wait = ((1.0 - entry.tokens) * 60_000.0 / burst.max(1.0)).ceil() as u64;
            return Err(OverBudget::Rate(wait.max(1)));
        }
        if let Some(bytes) = bytes {
            if entry.bytes.saturating_add(bytes) > self.quota {
                return Err(OverBudget::Quota((day + 1) * DAY_MS - now_ms));
            }
            entry.bytes += bytes;
        }
        entry.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: u64 = 20_000 * DAY_MS + DAY_MS / 2;

    #[test]
    fn the_rate_refills_over_a_minute() {
        let usage = Usage::new(2, u64::MAX);
        assert_eq!(usage.take(1, None, NOON), Ok(()));
        assert_eq!(usage.take(1, None, NOON), Ok(()));
        assert_eq!(usage.take(1, None, NOON), Err(OverBudget::Rate(30_000)));
        assert_eq!(usage.take(2, None, NOON), Ok(()), "another user has its own bucket");
        assert_eq!(usage.take(1, None, NOON + 30_000), Ok(()));
    }

    #[test]
    fn the_quota_counts_bytes_per_utc_day() {
        let usage = Usage::new(100, 1_000);
        assert_eq!(usage.take(1, Some(600), NOON), Ok(()));
        assert_eq!(usage.take(1, Some(500), NOON), Err(OverBudget::Quota(DAY_MS / 2)));
        assert_eq!(usage.take(1, Some(400), NOON), Ok(()), "a refused upload took nothing");
        assert_eq!(usage.take(1, Some(1), NOON), Err(OverBudget::Quota(DAY_MS / 2)));
        assert_eq!(usage.take(1, None, NOON), Ok(()), "downloads take no quota");
        assert_eq!(usage.take(1, Some(1_000), NOON + DAY_MS / 2), Ok(()), "a new day, a new quota");
    }
}
