//! Admission of logins: how many sessions a worker logs in at once, and
//! what happens to HELLOs beyond that.
//!
//! A login is a session's work from HELLO to the store's answer to its
//! Connect: the token check and the device's registration, a write through
//! the store's one writer (the first sync's reads run on the store's reader
//! threads, beside it). In a reconnect storm every session does it at once.
//! Without a bound, once the store falls behind, the Connects fill its
//! queue, each waits longer than the auth deadline, the sessions are closed
//! with AUTH_TIMEOUT after the store did their work, the clients come back
//! and the node works for nothing (a 10K/s storm on 2026-11-23 never
//! recovered: `benches/RESULTS.md`).
//!
//! So at most `max_in_flight` logins run per worker. A HELLO beyond that
//! waits in a FIFO queue, unless the queue is full (`max_queued`) or its
//! oldest HELLO has already waited longer than `max_wait` (half the auth
//! deadline: a newcomer would wait about as long, and its login could time
//! out after the store did its work). Then it is refused at once, before
//! its token is checked or the store is asked anything, with AUTH_ERROR
//! `OVERLOADED` and a `retry_after_ms` of about the queue's wait, spread at
//! random over twice that so that the refused clients do not come back
//! together (SPEC §4, admission). The wait is measured, not predicted (as
//! CoDel measures a packet queue's sojourn time): a storm the node keeps up
//! with is never refused.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::{Hello, Token};
use routing::SessionRef;

/// The shortest retry hint: below it a refused client would come back into
/// the same queue.
const MIN_HINT: Duration = Duration::from_secs(1);

/// The longest retry hint before its spread (the SPEC's backoff cap is
/// twice it).
const MAX_HINT: Duration = Duration::from_secs(30);

/// What became of a HELLO.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// Log it in now (it is counted in flight).
    Start(Box<Hello>),
    /// It waits its turn ([`LoginGate::next`]).
    Queued,
    /// Refused: the client should come back after this many ms.
    Refused {
        /// The retry hint.
        retry_after_ms: u32,
    },
}

/// One worker's login admission; see the module doc.
#[derive(Debug)]
pub(crate) struct LoginGate {
    max_in_flight: usize,
    max_queued: usize,
    max_wait: Duration,
    in_flight: usize,
    /// Waiting HELLOs and when each arrived, oldest first.
    queue: VecDeque<(Instant, SessionRef, Box<Hello>)>,
    /// xorshift64 state for the hints' spread (not for secrets).
    rng: u64,
}

impl LoginGate {
    /// A gate running at most `max_in_flight` logins and queueing at most
    /// `max_queued` HELLOs while the oldest has waited at most `max_wait`.
    pub(crate) fn new(max_in_flight: usize, max_queued: usize, max_wait: Duration, seed: u64) -> Self {
        Self {
            max_in_flight: max_in_flight.max(1),
            max_queued,
            max_wait,
            in_flight: 0,
            queue: VecDeque::new(),
            rng: seed | 1,
        }
    }

    /// Logins running.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// HELLOs waiting (some may belong to sessions closed since).
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether [`LoginGate::next`] has one to give.
    pub(crate) fn has_next(&self) -> bool {
        self.in_flight < self.max_in_flight && !self.queue.is_empty()
    }

    /// A HELLO of session `who` arrived at `now`.
    pub(crate) fn arrive(&mut self, now: Instant, who: SessionRef, hello: Box<Hello>) -> Arrival {
        if self.in_flight < self.max_in_flight && self.queue.is_empty() {
            self.in_flight += 1;
            return Arrival::Start(hello);
        }
        let waited =
            self.queue.front().map_or(Duration::ZERO, |(at, _, _)| now.saturating_duration_since(*at));
        if self.queue.len() < self.max_queued && waited <= self.max_wait {
            self.queue.push_back((now, who, detach(hello)));
            return Arrival::Queued;
        }
        Arrival::Refused { retry_after_ms: self.hint(waited) }
    }

    /// The next queued HELLO, if a login may start (it is counted in flight:
    /// if its session is gone, call [`LoginGate::finish`]).
    pub(crate) fn next(&mut self) -> Option<(SessionRef, Box<Hello>)> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        let (_, who, hello) = self.queue.pop_front()?;
        self.in_flight += 1;
        Some((who, hello))
    }

    /// A login in flight ended (the store answered, or its session left).
    pub(crate) fn finish(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The retry hint for a client refused while the oldest waiting HELLO
    /// has waited `waited`: uniformly in [w, 2w] for w = `waited` within
    /// [MIN_HINT, MAX_HINT].
    fn hint(&mut self, waited: Duration) -> u32 {
        let base = waited.clamp(MIN_HINT, MAX_HINT);
        let spread = base.mul_f64(self.unit());
        u32::try_from((base + spread).as_millis()).unwrap_or(u32::MAX)
    }

    /// A random number in [0, 1).
    fn unit(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A waiting HELLO with its own copy of the token: the decoded one shares
/// the connection's read buffer (up to 64 KiB), which the queue would
/// otherwise keep alive.
fn detach(mut hello: Box<Hello>) -> Box<Hello> {
    if let Ok(token) = Token::new(Bytes::copy_from_slice(hello.token.bytes())) {
        hello.token = token;
    }
    hello
}
