//! The router's registry lookups, a bounded number out at once. A burst
//! of users the cache does not know (a node's first minute, a 1,024-member
//! group's first message, every node after a registry failover) used to
//! start one lookup each, all at once: tens of thousands of requests in
//! the Redis client's queues, most of them timing out and rebuilding its
//! connections (42,171 failed calls and 49 rebuilds in one 27-node run's
//! setup), and a heap peak of 37 MB on one node that the allocator kept
//! through the rest of the run. Now at most [`IN_FLIGHT`] are out; the
//! rest wait here in order, a user id each (their items wait in `parked`),
//! and a parked item's lookup goes before a background re-read of a stale
//! placement. (A relocation, `Router::resolve`, runs up to as many more of
//! its own, and stops at its first failure.) A failed lookup's retry waits
//! in one timer queue here, not in a task of its own.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use protocol::UserId;
use routing_registry::ConnectionLike;

use super::router::Router;

/// Lookups one node has out at once. At the 1–10 ms a lookup takes on a
/// loaded registry this is 25,000–250,000 lookups a second per node, far
/// above what a node routes, while the registry sees a bounded queue.
pub(super) const IN_FLIGHT: usize = 256;

/// What a lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Items are parked behind it ([`Router::looked_up`] answers).
    Parked,
    /// A stale placement is re-read in the background
    /// ([`Router::refreshed`] answers).
    Refresh,
}

/// Lookups out, those waiting for a slot, and those waiting out a delay
/// after a failure (sans IO: the caller passes the time).
#[derive(Debug, Default)]
pub(super) struct Lookups {
    in_flight: usize,
    parked: VecDeque<UserId>,
    refresh: VecDeque<UserId>,
    /// (due, user id): one timer for all of them, not a task each (a
    /// registry failover fails every lookup a node has out).
    later: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Lookups {
    /// A lookup of `user` is wanted: `true` when it may start now (it is
    /// counted out), `false` when it waits for [`Lookups::finished`].
    pub(super) fn want(&mut self, user: UserId, purpose: Purpose) -> bool {
        if self.in_flight < IN_FLIGHT {
            self.in_flight += 1;
            return true;
        }
        match purpose {
            Purpose::Parked => self.parked.push_back(user),
            Purpose::Refresh => self.refresh.push_back(user),
        }
        false
    }

    /// A lookup answered: the next waiting one, to start now (it is
    /// counted out), parked items' first.
    pub(super) fn finished(&mut self) -> Option<(UserId, Purpose)> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let next = match self.parked.pop_front() {
            Some(user) => (user, Purpose::Parked),
            None => (self.refresh.pop_front()?, Purpose::Refresh),
        };
        self.in_flight += 1;
        Some(next)
    }

    /// Lookups waiting for a slot.
    pub(super) fn waiting(&self) -> usize {
        self.parked.len() + self.refresh.len()
    }

    /// `user`'s lookup is to be made again at `at`.
    pub(super) fn later(&mut self, user: UserId, at: Instant) {
        self.later.push(Reverse((at, user.0)));
    }

    /// When the next delayed lookup is due, if any is.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.later.peek().map(|Reverse((at, _))| *at)
    }

    /// The delayed lookups due by `now`, earliest first.
    pub(super) fn due(&mut self, now: Instant) -> Vec<UserId> {
        let mut due = Vec::new();
        while let Some(Reverse((at, user))) = self.later.peek().copied() {
            if at > now {
                break;
            }
            self.later.pop();
            due.push(UserId(user));
        }
        due
    }

    /// Gives the queues' memory back once they are empty (a burst grew
    /// them).
    fn shrink(&mut self) {
        if self.parked.is_empty() {
            self.parked.shrink_to(IN_FLIGHT);
        }
        if self.refresh.is_empty() {
            self.refresh.shrink_to(IN_FLIGHT);
        }
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> Router<C> {
    /// Looks `user` up for `purpose` now, or once a slot is free.
    pub(super) fn look_up(&mut self, user: UserId, purpose: Purpose) {
        if self.lookups.want(user, purpose) {
            self.start_lookup(user, purpose);
        }
        self.metrics.lookups_waiting.store(self.lookups.waiting() as u64, Ordering::Relaxed);
    }

    /// Looks `user` up again after `after` (its last lookup failed; its
    /// items stay parked): the main loop calls [`Router::due`] at
    /// [`Router::next_due`].
    pub(super) fn look_up_later(&mut self, user: UserId, after: Duration) {
        self.lookups.later(user, Instant::now() + after);
    }

    /// When the main loop is to call [`Router::due`], if ever.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.lookups.next_due()
    }

    /// The delayed lookups that are due are made (or wait for a slot).
    pub(super) fn due(&mut self) {
        for user in self.lookups.due(Instant::now()) {
            self.look_up(user, Purpose::Parked);
        }
    }

    /// A lookup answered (whatever it said): the next waiting one starts.
    pub(super) fn lookup_finished(&mut self) {
        if let Some((user, purpose)) = self.lookups.finished() {
            self.start_lookup(user, purpose);
        }
        self.lookups.shrink();
        self.metrics.lookups_waiting.store(self.lookups.waiting() as u64, Ordering::Relaxed);
    }

    /// Starts a lookup of `user` on its own task; the answer comes back
    /// through the main loop.
    fn start_lookup(&self, user: UserId, purpose: Purpose) {
        let (registry, answer) = (self.registry.clone(), self.answers.lookups.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let _ = answer.send((purpose, (user, started, registry.lookup(user).await)));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delayed_lookups_come_due_in_time_order() {
        let mut lookups = Lookups::default();
        let t0 = Instant::now();
        assert_eq!(lookups.next_due(), None);
        lookups.later(UserId(1), t0 + Duration::from_millis(500));
        lookups.later(UserId(2), t0 + Duration::from_millis(250));
        lookups.later(UserId(3), t0 + Duration::from_millis(250));
        assert_eq!(lookups.next_due(), Some(t0 + Duration::from_millis(250)));
        assert!(lookups.due(t0).is_empty());
        assert_eq!(lookups.due(t0 + Duration::from_millis(300)), [UserId(2), UserId(3)]);
        assert_eq!(lookups.next_due(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(lookups.due(t0 + Duration::from_secs(1)), [UserId(1)]);
        assert_eq!(lookups.next_due(), None);
    }

    #[test]
    fn past_the_bound_lookups_wait_and_start_one_per_answer_parked_items_first() {
        let mut lookups = Lookups::default();
        for user in 0..IN_FLIGHT as u64 {
            assert!(lookups.want(UserId(user), Purpose::Refresh));
        }
        assert!(!lookups.want(UserId(1000), Purpose::Refresh));
        assert!(!lookups.want(UserId(1001), Purpose::Parked));
        assert!(!lookups.want(UserId(1002), Purpose::Parked));
        assert_eq!(lookups.waiting(), 3);
        // Each answer frees one slot for one waiting lookup: the parked
        // ones first, in order, then the re-read.
        assert_eq!(lookups.finished(), Some((UserId(1001), Purpose::Parked)));
        assert_eq!(lookups.finished(), Some((UserId(1002), Purpose::Parked)));
        assert_eq!(lookups.finished(), Some((UserId(1000), Purpose::Refresh)));
        assert_eq!(lookups.waiting(), 0);
        // Still IN_FLIGHT out: the next wanted one waits.
        assert!(!lookups.want(UserId(2000), Purpose::Parked));
        assert_eq!(lookups.finished(), Some((UserId(2000), Purpose::Parked)));
        // Answers with nothing waiting free slots.
        assert_eq!(lookups.finished(), None);
        assert!(lookups.want(UserId(3000), Purpose::Parked));
        assert!(!lookups.want(UserId(3001), Purpose::Parked));
    }
}
