//! Per-session deadlines: one slot per [`Timer`], no allocation.
//!
//! The worker keeps its own coarse wheel of sessions to wake; the session only
//! answers "what is my next deadline" ([`Timers::next`]) and "which ones have
//! passed" ([`Timers::expired`]). Liveness does not re-arm a timer per frame:
//! the session stores the time of its last input and checks it when the
//! heartbeat deadline fires (quinn's idle timer works the same way).

use std::time::{Duration, Instant};

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

/// Resolution of stored deadlines; the worker wakes sessions in slots of the
/// same size, so nothing is lost.
const UNIT: Duration = Duration::from_millis(10);
/// An unarmed slot.
const UNSET: u32 = u32::MAX;

/// Deadlines of one session, indexed by [`Timer`], as 10 ms units after the
/// session's creation (40 bytes instead of 96 for six `Option<Instant>`; a
/// `u32` of 10 ms units spans 497 days, longer than any session lives).
#[derive(Debug, Clone)]
pub struct Timers {
    origin: Instant,
    slots: [u32; COUNT],
}

impl Timers {
    /// No deadline armed; `origin` is the session's creation.
    pub fn new(origin: Instant) -> Self {
        Self { origin, slots: [UNSET; COUNT] }
    }

    /// The session's creation time, the origin of every deadline.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Arms `timer` for `at`, rounded up to the next 10 ms.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        let units = u32::try_from(since.div_ceil(UNIT.as_nanos())).unwrap_or(UNSET - 1).min(UNSET - 1);
        if let Some(slot) = self.slots.get_mut(timer as usize) {
            *slot = units;
        }
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        if let Some(slot) = self.slots.get_mut(timer as usize) {
            *slot = UNSET;
        }
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots.get(timer as usize).copied().and_then(|units| self.instant(units))
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.slots.iter().copied().min().and_then(|units| self.instant(units))
    }

    /// Disarms and returns the first timer due at `now`, if any (call in a loop).
    pub fn expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = ALL.into_iter().find(|&t| self.get(t).is_some_and(|at| at <= now))?;
        self.stop(timer);
        Some(timer)
    }

    /// Disarms every timer.
    pub fn clear(&mut self) {
        self.slots = [UNSET; COUNT];
    }

    fn instant(&self, units: u32) -> Option<Instant> {
        (units != UNSET).then(|| self.origin + UNIT * units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_and_expired() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
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
