//! The registry's connection, and the way back after a Redis Cluster
//! failover. The cluster connection follows the slot map, but after a
//! master is killed and its replica promoted it may keep asking the dead
//! address and never learn the new map: in a 3-master cluster whose master
//! was killed, every later call of a node timed out for minutes (the fleet
//! benchmark, `scripts/bench-fleet --scenarios kill-redis`). So a registry
//! that sees [`RECONNECT_AFTER`] calls in a row fail without an answer from
//! Redis builds a fresh connection from its seed URLs (which reads the slot
//! map anew from a live seed) and uses it from then on. A single server's
//! `ConnectionManager` reconnects by itself and has no rebuild.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::RwLock;
use std::time::Duration;

use crate::RegistryError;

/// Calls in a row that fail without an answer (a timeout, a connection
/// error) before the connection is rebuilt.
pub(crate) const RECONNECT_AFTER: u32 = 3;

/// Builds a new connection.
pub(crate) type Connect<C> =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<C, RegistryError>> + Send>> + Send + Sync>;

/// The connection every call clones, and how to rebuild it.
pub(crate) struct Healing<C> {
    current: RwLock<C>,
    connect: Option<Connect<C>>,
    failures: AtomicU32,
    rebuilding: AtomicBool,
    rebuilt: AtomicU64,
}

impl<C: Clone> Healing<C> {
    pub(crate) fn new(conn: C, connect: Option<Connect<C>>) -> Self {
        Self {
            current: RwLock::new(conn),
            connect,
            failures: AtomicU32::new(0),
            rebuilding: AtomicBool::new(false),
            rebuilt: AtomicU64::new(0),
        }
    }

    /// The connection to make a call on (a cheap clone of a multiplexed
    /// connection).
    pub(crate) fn get(&self) -> C {
        match self.current.read() {
            Ok(conn) => conn.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Times the connection was rebuilt.
    pub(crate) fn rebuilt(&self) -> u64 {
        self.rebuilt.load(Relaxed)
    }

    /// Notes how a call ended; after [`RECONNECT_AFTER`] failures in a row
    /// without an answer, rebuilds the connection (one caller at a time,
    /// bounded by `limit`; the failed call returns once that is done).
    pub(crate) async fn observe<T>(&self, result: &Result<T, RegistryError>, limit: Duration) {
        if !unanswered(result) {
            self.failures.store(0, Relaxed);
            return;
        }
        let Some(connect) = &self.connect else { return };
        if self.failures.fetch_add(1, Relaxed) + 1 < RECONNECT_AFTER || self.rebuilding.swap(true, Relaxed) {
            return;
        }
        // Cleared however this ends: a caller may drop its call (and this
        // rebuild with it) half way.
        let _rebuilding = Rebuilding(&self.rebuilding);
        if let Ok(Ok(conn)) = tokio::time::timeout(limit, connect()).await {
            if let Ok(mut current) = self.current.write() {
                *current = conn;
            }
            self.failures.store(0, Relaxed);
            self.rebuilt.fetch_add(1, Relaxed);
        }
    }
}

/// Marks a rebuild in progress until dropped.
struct Rebuilding<'a>(&'a AtomicBool);

impl Drop for Rebuilding<'_> {
    fn drop(&mut self) {
        self.0.store(false, Relaxed);
    }
}

/// Whether a call failed without an answer from Redis (a timeout, or the
/// connection failed), as opposed to an answer (even an error one).
fn unanswered<T>(result: &Result<T, RegistryError>) -> bool {
    match result {
        Ok(_) | Err(RegistryError::Corrupt(_)) => false,
        Err(RegistryError::Timeout(_)) => true,
        Err(RegistryError::Redis(err)) => {
            err.is_io_error()
                || err.is_connection_dropped()
                || err.is_connection_refusal()
                || err.is_timeout()
                || err.is_cluster_error()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn timeout() -> Result<(), RegistryError> {
        Err(RegistryError::Timeout(Duration::from_millis(1)))
    }

    #[tokio::test]
    async fn a_connection_failing_three_times_in_a_row_is_rebuilt() {
        let made = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&made);
        let connect: Connect<u32> = Box::new(move || {
            let n = counter.fetch_add(1, Relaxed) + 1;
            Box::pin(async move { Ok(100 + n) })
        });
        let healing = Healing::new(7u32, Some(connect));
        let limit = Duration::from_secs(1);
        healing.observe(&timeout(), limit).await;
        healing.observe(&timeout(), limit).await;
        healing.observe(&Ok(()), limit).await;
        healing.observe(&timeout(), limit).await;
        healing.observe(&timeout(), limit).await;
        assert_eq!((healing.get(), healing.rebuilt()), (7, 0), "an answer in between resets the count");
        let refused: Result<(), _> = Err(RegistryError::Corrupt("x".into()));
        healing.observe(&refused, limit).await;
        healing.observe(&timeout(), limit).await;
        healing.observe(&timeout(), limit).await;
        healing.observe(&timeout(), limit).await;
        assert_eq!((healing.get(), healing.rebuilt(), made.load(Relaxed)), (101, 1, 1));
    }

    #[tokio::test]
    async fn a_rebuild_dropped_half_way_does_not_block_the_next() {
        let connect: Connect<u32> = Box::new(|| Box::pin(std::future::pending()));
        let healing = Healing::new(7u32, Some(connect));
        let limit = Duration::from_secs(60);
        for _ in 0..RECONNECT_AFTER - 1 {
            healing.observe(&timeout(), limit).await;
        }
        // The third failure starts a rebuild that never ends; its caller
        // gives up on it.
        let dropped =
            tokio::time::timeout(Duration::from_millis(20), healing.observe(&timeout(), limit)).await;
        assert!(dropped.is_err(), "the rebuild was still waiting");
        assert!(!healing.rebuilding.load(Relaxed), "a later failure may rebuild again");
    }

    #[tokio::test]
    async fn a_single_server_is_never_rebuilt() {
        let healing = Healing::new(7u32, None);
        for _ in 0..5 {
            healing.observe(&timeout(), Duration::from_secs(1)).await;
        }
        assert_eq!((healing.get(), healing.rebuilt()), (7, 0));
    }
}
