//! Message ids (REDIS.md, "Message ids"): `ms << 22 | instance << 12 |
//! counter`. Unique across store instances without a shared counter: each
//! instance holds one of 1,024 instance numbers by a lease in Redis, and
//! issues ids only while it knows the lease is its own.
//!
//! Within an instance the (ms, counter) pair only moves up: the counter
//! restarts at each new millisecond, and a burst of more than 4,096 ids in
//! one millisecond borrows the next one rather than wrapping, so ids stay
//! unique and increasing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backend_store::{StoreError, UnavailableError};
use redis::cluster_async::ClusterConnection;

/// Instance numbers: 10 bits.
const NUMBERS: u64 = 1 << 10;

/// How long a lease lasts, and how often it is renewed.
pub(crate) const LEASE: Duration = Duration::from_secs(30);
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Renews the lease if it is still this instance's.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// This instance's number and the ids it issued.
pub(crate) struct Ids {
    number: AtomicU64,
    /// The lease's token: a `store:instances` count mixed with this
    /// process's id and the time (a count a failover lost may be handed out
    /// twice).
    token: AtomicU64,
    /// `ms << 12 | counter` of the last id.
    last: AtomicU64,
    /// The monotonic clock the lease is timed on (a wall clock stepped back
    /// would stretch it).
    origin: Instant,
    /// Until when (ms since `origin`) the lease is known to be held: the
    /// last renewal that Redis answered, plus the lease, minus a margin.
    valid_until: AtomicU64,
}

impl Ids {
    /// Takes a free instance number (one whose lease key is unset).
    pub(crate) async fn acquire(conn: &mut ClusterConnection) -> redis::RedisResult<Self> {
        let count: u64 = redis::cmd("INCR").arg("store:instances").query_async(conn).await?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| u64::from(t.subsec_nanos()));
        let token = (count << 32) ^ (u64::from(std::process::id()) << 8) ^ nanos;
        for offset in 0..NUMBERS {
            let number = (count + offset) % NUMBERS;
            let taken: Option<String> = redis::cmd("SET")
                .arg(lease_key(number))
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis(LEASE))
                .query_async(conn)
                .await?;
            if taken.is_some() {
                let ids = Self {
                    number: AtomicU64::new(number),
                    token: AtomicU64::new(token),
                    last: AtomicU64::new(0),
                    origin: Instant::now(),
                    valid_until: AtomicU64::new(0),
                };
                ids.renewed();
                return Ok(ids);
            }
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "all 1,024 store instance numbers are leased",
        )))
    }

    /// Renews the lease (every [`RENEW_EVERY`]); if it was lost (this
    /// instance was cut off for longer than the lease), takes a new number.
    pub(crate) async fn renew(&self, conn: &mut ClusterConnection) -> redis::RedisResult<()> {
        let number = self.number.load(Ordering::Relaxed);
        let kept: u8 = redis::Script::new(RENEW)
            .key(lease_key(number))
            .arg(self.token.load(Ordering::Relaxed))
            .arg(millis(LEASE))
            .invoke_async(conn)
            .await?;
        if kept == 1 {
            self.renewed();
            return Ok(());
        }
        // Another instance may hold the number now: no ids until a new one.
        self.valid_until.store(0, Ordering::Relaxed);
        let fresh = Self::acquire(conn).await?;
        self.number.store(fresh.number.into_inner(), Ordering::Relaxed);
        self.token.store(fresh.token.into_inner(), Ordering::Relaxed);
        self.renewed();
        Ok(())
    }

    fn renewed(&self) {
        let margin = millis(RENEW_EVERY);
        self.valid_until.store(self.elapsed() + millis(LEASE) - margin, Ordering::Relaxed);
    }

    fn elapsed(&self) -> u64 {
        millis(self.origin.elapsed())
    }

    /// A new id at `now` (ms); `Unavailable` while the lease is not known
    /// to be held (a send retried later gets an id that no other instance
    /// can issue).
    pub(crate) fn next(&self, now: u64) -> Result<u64, StoreError> {
        if self.elapsed() >= self.valid_until.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable(UnavailableError::Unreachable {
                why: "the store instance's id lease is not renewed".to_owned(),
                retry_in_ms: 1_000,
            }));
        }
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = (now << 12).max(last + 1);
            match self.last.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(compose(next, self.number.load(Ordering::Relaxed))),
                Err(seen) => last = seen,
            }
        }
    }
}

/// `ms << 12 | counter` and an instance number as a message id.
fn compose(stamp: u64, number: u64) -> u64 {
    ((stamp >> 12) << 22) | (number << 12) | (stamp & 0xfff)
}

fn lease_key(number: u64) -> String {
    format!("store:instance:{number}")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
impl Ids {
    pub(crate) fn number(&self) -> u64 {
        self.number.load(Ordering::Relaxed)
    }

    pub(crate) fn key(&self) -> String {
        lease_key(self.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(number: u64) -> Ids {
        let ids = Ids {
            number: AtomicU64::new(number),
            token: AtomicU64::new(1),
            last: AtomicU64::new(0),
            origin: Instant::now(),
            valid_until: AtomicU64::new(0),
        };
        ids.renewed();
        ids
    }

    #[test]
    fn the_counter_restarts_each_millisecond_and_a_burst_borrows_the_next() {
        let ids = ids(5);
        let first = ids.next(1_000).unwrap();
        assert_eq!(first, (1_000 << 22) | (5 << 12));
        assert_eq!(ids.next(1_000).unwrap(), first + 1);
        assert_eq!(ids.next(1_001).unwrap(), (1_001 << 22) | (5 << 12), "a new ms starts at 0");
        // 4,096 more in ms 1,001: the last borrows ms 1,002, never wraps.
        let mut previous = 0;
        for _ in 0..4_096 {
            let id = ids.next(1_001).unwrap();
            assert!(id > previous);
            previous = id;
        }
        assert_eq!(previous >> 22, 1_002);
        assert_eq!((previous >> 12) & 0x3ff, 5, "the instance bits are intact");
        // The clock stepping back does not repeat an id.
        assert!(ids.next(900).unwrap() > previous);
    }

    #[test]
    fn no_id_once_the_lease_is_not_known_to_be_held() {
        let ids = ids(1);
        assert!(ids.next(1_000).is_ok(), "renewed just now");
        // The lease's time ran out on the monotonic clock (the wall clock
        // `next` is given plays no part).
        ids.valid_until.store(ids.elapsed(), Ordering::Relaxed);
        assert!(matches!(ids.next(1_000), Err(StoreError::Unavailable(_))));
    }
}
