//! Per-device coalescing windows, sans IO: the caller passes the time in
//! (`handle_*`), asks when the next window closes (`poll_timeout`) and takes
//! the closed windows out as notifications (`poll_due`).
//!
//! Call order, as the push thread does it: for each queued event call
//! `handle_note` or `handle_connected`; then `poll_due(now)` until `None`;
//! then sleep until `poll_timeout()` or the next event.

use std::collections::hash_map::{Entry, HashMap};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use protocol::{DeviceId, UserId};

use crate::api::PushNote;
use crate::notification::Notification;

/// A device: the unit of coalescing and cancelling.
pub(crate) type Key = (UserId, DeviceId);

/// What `handle_note` did with a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// It opened a new window.
    Opened,
    /// It joined the device's open window.
    Coalesced,
}

#[derive(Debug)]
struct Open {
    notification: Notification,
    /// Tells this window apart from a later one of the same device in `deadlines`.
    generation: u64,
}

/// The open windows.
#[derive(Debug)]
pub(crate) struct Coalescer {
    window: Duration,
    open: HashMap<Key, Open>,
    /// Close times in opening order. Every window is equally long, so this is
    /// also deadline order. Entries of cancelled windows stay until they come
    /// due and are skipped then (their generation no longer matches).
    deadlines: VecDeque<(Instant, Key, u64)>,
    next_generation: u64,
}

impl Coalescer {
    pub(crate) fn new(window: Duration) -> Self {
        Self { window, open: HashMap::new(), deadlines: VecDeque::new(), next_generation: 0 }
    }

    /// Open windows.
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether the device has an open window.
    pub(crate) fn is_open(&self, key: &Key) -> bool {
        self.open.contains_key(key)
    }

    /// A note arrived at `now` (`wall_ms`: the wall clock, for `first_at_ms`).
    pub(crate) fn handle_note(&mut self, now: Instant, wall_ms: u64, note: PushNote) -> Accepted {
        match self.open.entry((note.user, note.device)) {
            Entry::Occupied(mut entry) => {
                let n = &mut entry.get_mut().notification;
                n.count = n.count.saturating_add(1);
                // The newest inbox entry names the conversation; ties go to the
                // later arrival.
                if note.seq >= n.seq {
                    n.seq = note.seq;
                    n.conversation = note.conversation;
                    n.sender = note.sender;
                }
                Accepted::Coalesced
            }
            Entry::Vacant(entry) => {
                let generation = self.next_generation;
                self.next_generation = self.next_generation.wrapping_add(1);
                entry.insert(Open {
                    notification: Notification {
                        user: note.user,
                        device: note.device,
                        count: 1,
                        seq: note.seq,
                        conversation: note.conversation,
                        sender: note.sender,
                        first_at_ms: wall_ms,
                        sent_at_ms: wall_ms,
                    },
                    generation,
                });
                self.deadlines.push_back((now + self.window, (note.user, note.device), generation));
                Accepted::Opened
            }
        }
    }

    /// The device connected: its open window, if any, is discarded. Returns
    /// whether there was one.
    pub(crate) fn handle_connected(&mut self, key: Key) -> bool {
        self.open.remove(&key).is_some()
    }

    /// When the next window closes (possibly a cancelled one: waking for it
    /// is harmless, `poll_due` skips it).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.front().map(|(at, _, _)| *at)
    }

    /// The next window closed at `now`, if any.
    pub(crate) fn poll_due(&mut self, now: Instant) -> Option<Notification> {
        while let Some(&(at, key, generation)) = self.deadlines.front() {
            if at > now {
                return None;
            }
            self.deadlines.pop_front();
            if self.open.get(&key).is_some_and(|open| open.generation == generation) {
                return self.open.remove(&key).map(|open| open.notification);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use protocol::{Conversation, GroupId, Seq};

    use super::*;

    const WINDOW: Duration = Duration::from_millis(100);

    fn note(user: u64, device: u32, seq: u64, conversation: Conversation) -> PushNote {
        PushNote {
            user: UserId(user),
            device: DeviceId(device),
            seq: Seq(seq),
            conversation,
            sender: UserId(user + 100),
        }
    }

    #[test]
    fn notes_in_window_coalesce() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(WINDOW);
        let direct = Conversation::Direct(UserId(3));
        assert_eq!(c.handle_note(t0, 1, note(1, 1, 10, direct)), Accepted::Opened);
        for seq in [12, 11] {
            assert_eq!(c.handle_note(t0 + WINDOW / 2, 2, note(1, 1, seq, direct)), Accepted::Coalesced);
        }
        let group = Conversation::Group(GroupId(4));
        // The highest seq names the conversation, even if an older entry arrives later.
        c.handle_note(t0, 3, note(1, 1, 13, group));
        c.handle_note(t0, 3, note(1, 1, 5, direct));
        assert_eq!(c.poll_timeout(), Some(t0 + WINDOW));
        assert_eq!(c.poll_due(t0 + WINDOW - Duration::from_millis(1)), None);
        let n = c.poll_due(t0 + WINDOW).unwrap();
        assert_eq!((n.count, n.seq, n.conversation, n.first_at_ms), (5, Seq(13), group, 1));
        assert_eq!(c.poll_due(t0 + WINDOW), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn connected_cancels_and_a_new_window_follows() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(WINDOW);
        let conv = Conversation::Direct(UserId(3));
        c.handle_note(t0, 0, note(1, 1, 1, conv));
        c.handle_note(t0, 0, note(1, 2, 1, conv));
        assert!(c.handle_connected((UserId(1), DeviceId(1))));
        assert!(!c.handle_connected((UserId(1), DeviceId(1))));
        // A note after the cancel opens a new window, closing later.
        let t1 = t0 + WINDOW / 2;
        assert_eq!(c.handle_note(t1, 0, note(1, 1, 2, conv)), Accepted::Opened);
        let first = c.poll_due(t0 + WINDOW).unwrap();
        assert_eq!(first.device, DeviceId(2));
        assert_eq!(c.poll_due(t0 + WINDOW), None, "the cancelled window's deadline is skipped");
        assert!(c.is_open(&(UserId(1), DeviceId(1))));
        let second = c.poll_due(t1 + WINDOW).unwrap();
        assert_eq!((second.device, second.seq, second.count), (DeviceId(1), Seq(2), 1));
    }
}
