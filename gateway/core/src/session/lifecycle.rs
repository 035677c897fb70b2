//! The one place a session's state changes, the moves `LIFECYCLE.md`
//! allows, and what must hold in each state (checked after every move in
//! debug builds, as sozu does).

use super::{Session, State};
#[cfg(debug_assertions)]
use crate::delivery::Mode;
#[cfg(debug_assertions)]
use crate::timers::Timer;
#[cfg(debug_assertions)]
use protocol::Seq;

impl State {
    /// Whether a session may move from `self` to `to`: the arrows of
    /// `LIFECYCLE.md`. States only move forward: nothing leaves `Closed`,
    /// `Closing` only ends, a session is `Live` only after `Verifying`, and
    /// keeps its identity when it drains.
    pub(super) fn leads_to(self, to: State) -> bool {
        match (self, to) {
            (Self::Closed, _) => false,
            (_, Self::Closed) => true,
            (Self::Closing, _) => false,
            (Self::Handshake, to) => matches!(to, Self::Echo | Self::AwaitHello),
            // A close frame, from any WebSocket state.
            (_, Self::Closing) => true,
            (Self::AwaitHello, Self::Verifying) => true,
            (Self::Verifying, Self::Live(_)) => true,
            (Self::Live(live), Self::Draining(draining)) => live == draining,
            _ => false,
        }
    }
}

impl Session {
    /// The one place the state changes. The caller has already armed the
    /// timers of `to`, so that the invariants hold when they are checked.
    /// A move `LIFECYCLE.md` does not allow is a bug: debug builds panic,
    /// release builds take it as before.
    pub(super) fn transition(&mut self, to: State) {
        debug_assert!(
            self.state.leads_to(to),
            "session state {:?} -> {to:?} is not a lifecycle transition",
            self.state
        );
        self.state = to;
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    /// What must hold in the state just entered (`LIFECYCLE.md`).
    #[cfg(debug_assertions)]
    pub(super) fn check_invariants(&self) {
        // The deadlines each state waits for ("Timers armed"). The
        // write-stall deadline follows unsent output, not the state: the
        // close frame is queued without arming it.
        let armed: &[Timer] = match self.state {
            State::Handshake => &[Timer::Handshake],
            State::Echo | State::Closed => &[],
            State::AwaitHello | State::Verifying => &[Timer::Auth],
            State::Live(_) => &[Timer::Heartbeat],
            State::Draining(_) => &[Timer::Heartbeat, Timer::Drain],
            State::Closing => &[Timer::Linger],
        };
        for timer in [Timer::Handshake, Timer::Auth, Timer::Heartbeat, Timer::Drain, Timer::Linger] {
            debug_assert_eq!(
                self.timers.get(timer).is_some(),
                armed.contains(&timer),
                "{timer:?} deadline in state {:?}",
                self.state
            );
        }
        if self.state == State::Closed {
            debug_assert!(self.timers.next().is_none(), "a closed session waits for nothing");
        }
        if matches!(self.state, State::Echo | State::AwaitHello | State::Verifying) {
            // Nothing of the inbox goes out before authentication, and only
            // `/echo` queues live output that could pause.
            debug_assert!(self.delivery.mode() == Mode::Off && self.delivery.sent() == Seq(0));
            debug_assert!(self.state == State::Echo || !self.out.live_paused());
        }
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use protocol::{CloseCode, UserId};

    use super::super::Identity;
    use super::*;
    use crate::tests::harness::{hello, live, message, upgrade, Harness};

    fn identity(user: u64) -> Identity {
        Identity { user: UserId(user), device: protocol::DeviceId(2) }
    }

    /// A session that sent HELLO and waits for its verification.
    fn verifying() -> Harness {
        let mut h = Harness::new();
        h.read(&upgrade("/ws"));
        h.read(&message(&[hello(1, 1)]));
        assert_eq!(h.session.state(), State::Verifying);
        h
    }

    #[test]
    #[should_panic(expected = "is not a lifecycle transition")]
    fn live_before_authentication_panics() {
        Harness::new().session.transition(State::Live(identity(7)));
    }

    #[test]
    #[should_panic(expected = "is not a lifecycle transition")]
    fn no_return_from_closing() {
        let mut h = live();
        h.with(|s, ctx| s.close_with(ctx, CloseCode::NORMAL, "bye"));
        assert_eq!(h.session.state(), State::Closing);
        h.session.transition(State::Live(identity(7)));
    }

    #[test]
    #[should_panic(expected = "deadline in state")]
    fn a_state_entered_without_its_deadlines_panics() {
        // Verifying → Live is allowed, but not without the heartbeat armed
        // (and with the auth deadline still running).
        verifying().session.transition(State::Live(identity(7)));
    }

    #[test]
    fn the_allowed_moves_are_the_lifecycle_arrows() {
        use State::*;
        let all = [
            Handshake,
            Echo,
            AwaitHello,
            Verifying,
            Live(identity(7)),
            Draining(identity(7)),
            Closing,
            Closed,
        ];
        let allowed = |from: State, to: State| {
            matches!(
                (from, to),
                (Handshake, Echo | AwaitHello | Closed)
                    | (AwaitHello, Verifying)
                    | (Verifying, Live(_))
                    | (Live(_), Draining(_))
                    | (Echo | AwaitHello | Verifying | Live(_) | Draining(_), Closing | Closed)
                    | (Closing, Closed)
            )
        };
        for from in all {
            for to in all {
                assert_eq!(from.leads_to(to), allowed(from, to), "{from:?} -> {to:?}");
            }
        }
        assert!(!Live(identity(7)).leads_to(Draining(identity(8))), "draining keeps the identity");
    }
}
