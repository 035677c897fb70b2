//! Per-session deadlines: one slot per [`Timer`], no allocation.
//!
//! The worker keeps its own coarse wheel of sessions to wake; the session only
//! answers "what is my next deadline" ([`Timers::next`]) and "which ones have
//! passed" ([`Timers::expired`]). Liveness does not re-arm a timer per frame:
//! the session stores the time of its last input and checks it when the
//! heartbeat deadline fires (quinn's idle timer works the same way).

use std::time::Instant;

/// A deadline a session can be waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The HTTP upgrade must complete by then.
    Handshake = 0,
    /// HELLO must arrive by then.
    Auth = 1,
    /// Check that the client spoke within the heartbeat timeout.
    Heartbeat = 2,
    /// Unsent output must make progress by then.
    WriteStall = 3,
    /// Draining: close the session then (GOAWAY was sent).
    Drain = 4,
    /// Closing: stop waiting for the peer's close frame then.
    Linger = 5,
}

const COUNT: usize = 6;
const ALL: [Timer; COUNT] =
    [Timer::Handshake, Timer::Auth, Timer::Heartbeat, Timer::WriteStall, Timer::Drain, Timer::Linger];

/// Deadlines of one session, indexed by [`Timer`].
#[derive(Debug, Default, Clone)]
pub struct Timers {
    slots: [Option<Instant>; COUNT],
}

impl Timers {
    /// Arms `timer` for `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(slot) = self.slots.get_mut(timer as usize) {
            *slot = Some(at);
        }
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        if let Some(slot) = self.slots.get_mut(timer as usize) {
            *slot = None;
        }
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots.get(timer as usize).copied().flatten()
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// Disarms and returns the first timer due at `now`, if any (call in a loop).
    pub fn expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = ALL.into_iter().find(|&t| self.get(t).is_some_and(|at| at <= now))?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_and_expired() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None);
        timers.set(Timer::Auth, t0 + Duration::from_secs(10));
        timers.set(Timer::Heartbeat, t0 + Duration::from_secs(5));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(timers.expired(t0 + Duration::from_secs(4)), None);
        assert_eq!(timers.expired(t0 + Duration::from_secs(11)), Some(Timer::Auth));
        assert_eq!(timers.expired(t0 + Duration::from_secs(11)), Some(Timer::Heartbeat));
        assert_eq!(timers.expired(t0 + Duration::from_secs(11)), None);
        assert_eq!(timers.next(), None);
    }
}
