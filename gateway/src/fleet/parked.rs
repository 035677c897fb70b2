//! Fleet items waiting for their user's placements. The router never waits
//! for the registry: an item whose device the cache does not know is parked
//! behind one lookup of its user, and the items of every other user route at
//! once (before, a batch waited for all its lookups, and every batch behind
//! it too: a 1,024-member group's first message held up the node's 1:1
//! traffic for as long as its slowest lookup). A user with items parked gets
//! every later item parked too, whatever the cache says meanwhile, so a
//! device's entries leave in the order they came.
//!
//! A lookup that fails (the registry is slow, or failing over) is tried
//! again after [`RETRY_AFTER`]; only when every retry failed do the items
//! go without a placement (push notes: the device reads the entries at its
//! next sync). Before, one failed lookup sent the entries to push notes at
//! once, and a live device saw them only at its next sync, seconds later.

use std::collections::HashMap;
use std::time::Duration;

use protocol::UserId;

/// Items parked at most, over all users; beyond, an item goes without a
/// placement at once (bounded memory while the registry is down).
pub(super) const PARK_LIMIT: usize = 1 << 18;

/// Users' room the map keeps when it empties after a burst.
const KEPT_USERS: usize = 1024;

/// The waits before each new lookup of a user whose lookup failed: 3.75 s
/// in all (each lookup may also take up to `cluster.registry_timeout_ms`,
/// and wait for one of the node's lookup slots: `lookups`),
/// past a Redis Cluster failover on loopback (node timeout 2 s, then the
/// election) and well within a node's lease.
pub(super) const RETRY_AFTER: [Duration; 4] =
    [Duration::from_millis(250), Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)];

/// Items waiting, per user, in arrival order.
#[derive(Debug)]
pub(super) struct Parked<T> {
    users: HashMap<UserId, Waiting<T>>,
    items: usize,
}

#[derive(Debug)]
struct Waiting<T> {
    items: Vec<T>,
    failures: usize,
}

/// What became of a failed lookup's items.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failed<T> {
    /// Look the user up again after this long; the items stay.
    Retry(Duration),
    /// Every retry failed: the items, in order, to go without a placement.
    GaveUp(Vec<T>),
}

impl<T> Default for Parked<T> {
    fn default() -> Self {
        Self { users: HashMap::new(), items: 0 }
    }
}

impl<T> Parked<T> {
    /// Whether `user` has items waiting (a lookup is out).
    pub(super) fn holds(&self, user: UserId) -> bool {
        self.users.contains_key(&user)
    }

    /// Items waiting, over all users.
    pub(super) fn len(&self) -> usize {
        self.items
    }

    /// Parks `item` behind `user`'s lookup: `Ok(true)` when the user had
    /// nothing waiting (start a lookup), `Ok(false)` when one is out, and
    /// the item back when the limit is reached.
    pub(super) fn park(&mut self, user: UserId, item: T) -> Result<bool, T> {
        if self.items >= PARK_LIMIT {
            return Err(item);
        }
        self.items += 1;
        let mut first = false;
        self.users
            .entry(user)
            .or_insert_with(|| {
                first = true;
                Waiting { items: Vec::new(), failures: 0 }
            })
            .items
            .push(item);
        Ok(first)
    }

    /// `user`'s lookup answered: its items, in arrival order.
    pub(super) fn answered(&mut self, user: UserId) -> Vec<T> {
        let items = self.users.remove(&user).map(|waiting| waiting.items).unwrap_or_default();
        self.items -= items.len();
        // A burst (a cold node, a registry failover) grew the map: its
        // memory goes back once the burst is over, not at every empty
        // moment of steady traffic.
        if self.users.is_empty() && self.users.capacity() > KEPT_USERS {
            self.users.shrink_to(KEPT_USERS);
        }
        items
    }

    /// `user`'s lookup failed.
    pub(super) fn failed(&mut self, user: UserId) -> Failed<T> {
        let Some(waiting) = self.users.get_mut(&user) else { return Failed::GaveUp(Vec::new()) };
        match RETRY_AFTER.get(waiting.failures) {
            Some(&after) => {
                waiting.failures += 1;
                Failed::Retry(after)
            }
            None => Failed::GaveUp(self.answered(user)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_looked_up_once_and_its_items_come_back_in_order() {
        let mut parked = Parked::default();
        assert_eq!(parked.park(UserId(1), 10), Ok(true));
        assert_eq!(parked.park(UserId(2), 20), Ok(true));
        assert_eq!(parked.park(UserId(1), 11), Ok(false));
        assert!(parked.holds(UserId(1)));
        assert_eq!(parked.len(), 3);
        assert_eq!(parked.answered(UserId(1)), [10, 11]);
        assert!(!parked.holds(UserId(1)));
        assert_eq!(parked.len(), 1);
        assert_eq!(parked.answered(UserId(1)), Vec::<i32>::new(), "a late answer finds nothing");
    }

    #[test]
    fn a_failed_lookup_is_retried_with_growing_waits_then_its_items_go() {
        let mut parked = Parked::default();
        assert_eq!(parked.park(UserId(1), 10), Ok(true));
        for after in RETRY_AFTER {
            assert_eq!(parked.failed(UserId(1)), Failed::Retry(after));
            assert_eq!(parked.park(UserId(1), 11), Ok(false), "items keep parking behind the retry");
        }
        let mut rest = vec![10];
        rest.extend([11; RETRY_AFTER.len()]);
        assert_eq!(parked.failed(UserId(1)), Failed::GaveUp(rest));
        assert_eq!(parked.len(), 0);
        assert_eq!(parked.park(UserId(1), 12), Ok(true), "the next item starts afresh");
    }

    #[test]
    fn past_the_limit_an_item_is_handed_back() {
        let mut parked = Parked::default();
        for i in 0..PARK_LIMIT {
            assert!(parked.park(UserId(i as u64 % 7), i).is_ok());
        }
        assert_eq!(parked.park(UserId(1), 0), Err(0));
        parked.answered(UserId(1));
        assert_eq!(parked.park(UserId(1), 0), Ok(true), "room again");
    }
}
