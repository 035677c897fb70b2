//! Output for sessions that live elsewhere, batched per destination.
//!
//! A hub posts items (a live entry, a receipt, a presence change) for
//! sessions of other workers as it produces them, and its driver flushes
//! once per loop turn: one hand-over (one channel send and one wake-up) per
//! destination per turn, never one per message.
//!
//! Each destination's queue is bounded. A destination that does not take its
//! batch (its inbox is full) keeps it queued for the next turn, in front of
//! what is posted meanwhile; past the bound the oldest items are shed
//! (`Posted::Shed`, which the hub counts). Shedding is safe for what the hub
//! sends this way: a shed live entry stays in the store and its device reads
//! it at its next gap check or sync; presence and typing are ephemeral.
//!
//! A destination is a dense index. The node's workers are `0..workers`; in
//! a fleet, index `workers` is the node's fleet router, which sends items
//! for other nodes over their links, batched per node: to the hub, the rest
//! of the fleet is one more destination of the same batching.

use std::collections::VecDeque;

/// A way to one destination: a worker's inbox, or the node's fleet router.
pub trait Link<T> {
    /// Hands `batch` over without blocking, or gives it back when the
    /// destination cannot take it now (backpressure: it stays queued).
    fn offer(&self, batch: Vec<T>) -> Result<(), Vec<T>>;
}

/// What [`Outbox::post`] did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Posted {
    /// Queued for its destination.
    Queued,
    /// Queued, and the destination's oldest item was shed to make room.
    Shed,
    /// No such destination: the item was dropped (a bug of the caller).
    Unknown,
}

/// What one [`Outbox::flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Batches handed over.
    pub sent: usize,
    /// Batches refused by a full destination, kept for the next flush.
    pub refused: usize,
}

/// Per-destination bounded batches.
#[derive(Debug)]
pub struct Outbox<T> {
    queues: Vec<VecDeque<T>>,
    bound: usize,
}

impl<T> Outbox<T> {
    /// An outbox for `destinations` destinations, each holding at most
    /// `bound` items (at least one).
    pub fn new(destinations: usize, bound: usize) -> Self {
        Self { queues: (0..destinations).map(|_| VecDeque::new()).collect(), bound: bound.max(1) }
    }

    /// Number of destinations.
    pub fn destinations(&self) -> usize {
        self.queues.len()
    }

    /// Items waiting for `destination`.
    pub fn queued(&self, destination: usize) -> usize {
        self.queues.get(destination).map_or(0, VecDeque::len)
    }

    /// Queues `item` for `destination`, shedding that destination's oldest
    /// item when it is at its bound.
    pub fn post(&mut self, destination: usize, item: T) -> Posted {
        let Some(queue) = self.queues.get_mut(destination) else { return Posted::Unknown };
        let shed = queue.len() >= self.bound && queue.pop_front().is_some();
        queue.push_back(item);
        if shed {
            Posted::Shed
        } else {
            Posted::Queued
        }
    }

    /// Takes `destination`'s batch (the items posted for it, in order).
    pub fn take(&mut self, destination: usize) -> Vec<T> {
        self.queues.get_mut(destination).map(|queue| Vec::from(std::mem::take(queue))).unwrap_or_default()
    }

    /// Offers every destination but `local` its batch over `links` (indexed
    /// by destination). A refused batch stays queued, ahead of anything
    /// posted later.
    pub fn flush<L: Link<T>>(&mut self, local: usize, links: &[L]) -> Flushed {
        let mut flushed = Flushed::default();
        for (destination, (queue, link)) in self.queues.iter_mut().zip(links).enumerate() {
            if destination == local || queue.is_empty() {
                continue;
            }
            match link.offer(Vec::from(std::mem::take(queue))) {
                Ok(()) => flushed.sent += 1,
                Err(batch) => {
                    *queue = VecDeque::from(batch);
                    flushed.refused += 1;
                }
            }
        }
        flushed
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A destination that takes batches until it holds `room` of them.
    struct Inbox {
        room: usize,
        batches: RefCell<Vec<Vec<u32>>>,
    }

    impl Inbox {
        fn new(room: usize) -> Self {
            Self { room, batches: RefCell::default() }
        }
    }

    impl Link<u32> for Inbox {
        fn offer(&self, batch: Vec<u32>) -> Result<(), Vec<u32>> {
            let mut batches = self.batches.borrow_mut();
            if batches.len() >= self.room {
                return Err(batch);
            }
            batches.push(batch);
            Ok(())
        }
    }

    #[test]
    fn one_batch_per_destination_per_flush_and_none_for_the_local_one() {
        let mut outbox = Outbox::new(3, 100);
        for i in 0..5 {
            assert_eq!(outbox.post(i % 3, i as u32), Posted::Queued);
        }
        let links = [Inbox::new(9), Inbox::new(9), Inbox::new(9)];
        assert_eq!(outbox.flush(0, &links), Flushed { sent: 2, refused: 0 });
        assert!(links[0].batches.borrow().is_empty(), "the local share is not sent");
        assert_eq!(*links[1].batches.borrow(), vec![vec![1, 4]]);
        assert_eq!(*links[2].batches.borrow(), vec![vec![2]]);
        assert_eq!(outbox.take(0), vec![0, 3]);
        assert_eq!(outbox.flush(0, &links), Flushed::default(), "nothing left to send");
    }

    #[test]
    fn a_refused_batch_stays_in_front_and_the_oldest_are_shed_at_the_bound() {
        let mut outbox = Outbox::new(2, 4);
        let full = [Inbox::new(0), Inbox::new(0)];
        for i in 0..3 {
            assert_eq!(outbox.post(1, i), Posted::Queued);
        }
        assert_eq!(outbox.flush(0, &full), Flushed { sent: 0, refused: 1 });
        assert_eq!(outbox.post(1, 3), Posted::Queued);
        // At the bound: each new item sheds the oldest.
        assert_eq!(outbox.post(1, 4), Posted::Shed);
        assert_eq!(outbox.post(1, 5), Posted::Shed);
        assert_eq!(outbox.queued(1), 4);
        let open = [Inbox::new(1), Inbox::new(1)];
        assert_eq!(outbox.flush(0, &open), Flushed { sent: 1, refused: 0 });
        assert_eq!(*open[1].batches.borrow(), vec![vec![2, 3, 4, 5]], "order kept, oldest shed");
    }

    #[test]
    fn shedding_costs_the_same_at_any_depth() {
        // The bound is large in production (65,536 entries per worker): each
        // post at the bound must shed in O(1), not move the whole queue.
        let mut outbox = Outbox::new(1, 1 << 16);
        for i in 0..(1u32 << 17) {
            let _ = outbox.post(0, i);
        }
        let batch = outbox.take(0);
        assert_eq!(batch.len(), 1 << 16);
        assert_eq!(batch.first(), Some(&(1 << 16)));
    }
}
