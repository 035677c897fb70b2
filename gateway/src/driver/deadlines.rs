//! When to wake which session: a min-heap of (deadline, session key).
//!
//! Deadlines are rounded up to 10 ms slots (as pingora-timeout does) so that
//! sessions with nearby deadlines wake in one loop turn. An entry is pushed only
//! when a session's deadline moves earlier than the one already scheduled; a
//! stale entry wakes the worker early, which then reschedules. So each session
//! has one or two entries, and liveness never costs a heap operation per frame
//! (the session core checks silence only when its heartbeat deadline fires).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Granularity of deadlines.
const SLOT: Duration = Duration::from_millis(10);

/// Scheduled wake-ups of one worker's sessions.
#[derive(Debug)]
pub(crate) struct Deadlines {
    epoch: Instant,
    heap: BinaryHeap<Reverse<(u32, usize)>>,
}

impl Deadlines {
    pub(crate) fn new(epoch: Instant) -> Self {
        Self { epoch, heap: BinaryHeap::new() }
    }

    /// The slot `at` falls in, rounded up.
    /// (`u32` slots of 10 ms span 497 days: longer than a worker runs.)
    fn slot(&self, at: Instant) -> u32 {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        let slot = SLOT.as_nanos();
        u32::try_from(since.div_ceil(slot)).unwrap_or(u32::MAX)
    }

    /// Schedules `key` at `at` unless `scheduled` (what the session already has
    /// in the heap) is no later. Returns the slot now scheduled.
    pub(crate) fn schedule(&mut self, key: usize, at: Instant, scheduled: Option<u32>) -> u32 {
        let slot = self.slot(at);
        match scheduled {
            Some(current) if current <= slot => current,
            _ => {
                self.heap.push(Reverse((slot, key)));
                slot
            }
        }
    }

    /// The end of the earliest scheduled slot (the poll sleeps until then).
    pub(crate) fn next(&self) -> Option<Instant> {
        let Reverse((slot, _)) = self.heap.peek()?;
        Some(self.epoch + SLOT.saturating_mul(*slot))
    }

    /// Moves every session whose slot has ended by `now` into `due` (with its
    /// slot). A slot ends at or after every deadline rounded into it, so each
    /// session popped has a deadline that has passed; entries pushed while the
    /// caller handles `due` wait for the next call, so a turn always ends.
    pub(crate) fn take_due(&mut self, now: Instant, due: &mut Vec<(usize, u32)>) {
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let ended = u32::try_from(since / SLOT.as_nanos()).unwrap_or(u32::MAX);
        while let Some(Reverse((slot, _))) = self.heap.peek() {
            if *slot > ended {
                return;
            }
            if let Some(Reverse((slot, key))) = self.heap.pop() {
                due.push((key, slot));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_deadlines_replace_later_ones_and_due_ones_pop() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0);
        let mut due = Vec::new();
        let a = d.schedule(1, t0 + Duration::from_secs(5), None);
        // A later deadline for the same session adds nothing.
        assert_eq!(d.schedule(1, t0 + Duration::from_secs(9), Some(a)), a);
        let b = d.schedule(2, t0 + Duration::from_millis(15), None);
        assert!(b < a);
        assert!(d.next().unwrap() <= t0 + Duration::from_millis(20));
        d.take_due(t0, &mut due);
        assert!(due.is_empty());
        d.take_due(t0 + Duration::from_millis(20), &mut due);
        assert_eq!(due, vec![(2, b)]);
        due.clear();
        d.take_due(t0 + Duration::from_secs(6), &mut due);
        assert_eq!(due, vec![(1, a)]);
    }

    /// The livelock this module once had: a deadline a few ms ahead of `now`,
    /// in the slot `now` is in, must not be due yet.
    #[test]
    fn a_deadline_later_in_the_current_slot_is_not_due() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0);
        let now = t0 + Duration::from_millis(101);
        d.schedule(1, now + Duration::from_millis(5), None);
        let mut due = Vec::new();
        d.take_due(now, &mut due);
        assert!(due.is_empty(), "due before its deadline");
        d.take_due(now + Duration::from_millis(9), &mut due);
        assert_eq!(due.len(), 1);
    }
}
