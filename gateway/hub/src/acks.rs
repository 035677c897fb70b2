//! A device's ACKs on their way to the store, coalesced.
//!
//! ACKs are cumulative (SPEC §6.2), so a connection keeps one store Ack in
//! flight and lets the newest ACK that arrives meanwhile stand for all of
//! them: it goes when the answer comes back. Each store Ack costs the single
//! writer a device-state write, the delivered cursor and a receipt-mailbox
//! write per conversation it covers; under fanout load a member device
//! answers every DELIVER, and the slower the store gets the more of those
//! ACKs one Ack carries (the writer's cost falls as its queue grows instead
//! of rising with it). The price is a delivered receipt late by at most one
//! store round trip. An Ack the store fails or the worker cannot send waits
//! for the next ACK; one waiting when the connection closes is sent then;
//! one the store never takes (a crash) is repeated by the client's
//! `resume_after` at its next HELLO, like any other.

use backend_store::{Ack as StoreAck, Request};
use protocol::Seq;

use crate::work::Pending;
use crate::Hub;

/// The store Ack state of one connection, packed into 8 bytes of its slab
/// slot (bytes per idle session are a published figure): the top bit says an
/// Ack is with the store, the rest is the highest ACK not yet sent (0: none;
/// acked seqs start at 1 and never reach 2^63).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckRelay(u64);

const IN_FLIGHT: u64 = 1 << 63;

/// `up_to` as stored beside the flag (a seq never reaches the top bit).
fn seq_bits(up_to: Seq) -> u64 {
    up_to.0 & !IN_FLIGHT
}

impl AckRelay {
    fn in_flight(self) -> bool {
        self.0 & IN_FLIGHT != 0
    }

    fn waiting(self) -> u64 {
        self.0 & !IN_FLIGHT
    }

    /// An ACK up to `up_to` arrived: the Ack to send now, if none is in flight.
    pub(crate) fn arrived(&mut self, up_to: Seq) -> Option<Seq> {
        let up_to = seq_bits(up_to).max(self.waiting());
        if self.in_flight() {
            self.0 = IN_FLIGHT | up_to;
            return None;
        }
        self.0 = IN_FLIGHT;
        Some(Seq(up_to))
    }

    /// The store answered the Ack in flight: the waiting one to send now, if
    /// any. A `failed` Ack waits again, unless a newer ACK covers it; it is
    /// not resent at once, so a failing store gets no retry loop, but goes
    /// with the next ACK or at close.
    pub(crate) fn answered(&mut self, failed: Option<Seq>) -> Option<Seq> {
        let waiting = self.waiting();
        match failed {
            Some(failed) if seq_bits(failed) >= waiting => {
                self.0 = seq_bits(failed);
                None
            }
            _ => {
                self.0 = 0;
                match waiting {
                    0 => None,
                    up_to => self.arrived(Seq(up_to)),
                }
            }
        }
    }

    /// The Ack up to `up_to` could not be sent (see `Hub::send_ack`): it
    /// waits for the next ACK, answer or close.
    pub(crate) fn refused(&mut self, up_to: Seq) {
        self.0 = self.waiting().max(seq_bits(up_to));
    }

    /// The ACK still waiting, taken (the connection is closing).
    pub(crate) fn take_waiting(&mut self) -> Option<Seq> {
        let waiting = self.waiting();
        self.0 &= IN_FLIGHT;
        match waiting {
            0 => None,
            up_to => Some(Seq(up_to)),
        }
    }
}

impl<C> Hub<C> {
    /// Session `key`'s device acknowledged up to `up_to` (an ACK frame, or
    /// HELLO's `resume_after`).
    pub(crate) fn ack_arrived(&mut self, key: usize, up_to: Seq) {
        let Some(slot) = self.slots.get_mut(key) else { return };
        if let Some(up_to) = slot.acks.arrived(up_to) {
            self.send_ack(key, up_to);
        }
    }

    /// The store answered session `key`'s Ack (`None`: the session is gone),
    /// or failed the one up to `failed`.
    pub(crate) fn ack_answered(&mut self, key: Option<usize>, failed: Option<Seq>) {
        let Some(key) = key else { return };
        let Some(slot) = self.slots.get_mut(key) else { return };
        if let Some(up_to) = slot.acks.answered(failed) {
            self.send_ack(key, up_to);
        }
    }

    /// Sends the Ack still waiting on connection `key`, which is closing.
    pub(crate) fn flush_ack(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else { return };
        if let Some(up_to) = slot.acks.take_waiting() {
            self.send_ack(key, up_to);
        }
    }

    /// Sends the Ack, or keeps it waiting if it cannot go: the worker's store
    /// requests are at their bound, or the connection was replaced by a newer
    /// one of its device (no identity: that one's HELLO carries the cursor).
    fn send_ack(&mut self, key: usize, up_to: Seq) {
        let sent = match self.identified(key) {
            Some((me, (user, device))) => {
                self.store_call(me, Request::Ack(StoreAck { user, device, up_to }), Pending::Ack { up_to })
            }
            None => false,
        };
        if !sent {
            if let Some(slot) = self.slots.get_mut(key) {
                slot.acks.refused(up_to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_ack_goes_at_once_and_later_ones_wait_for_its_answer() {
        let mut relay = AckRelay::default();
        assert_eq!(relay.arrived(Seq(3)), Some(Seq(3)));
        assert_eq!(relay.arrived(Seq(5)), None);
        assert_eq!(relay.arrived(Seq(9)), None);
        // One Ack carries both waiting ACKs.
        assert_eq!(relay.answered(None), Some(Seq(9)));
        assert_eq!(relay.answered(None), None);
        assert_eq!(relay, AckRelay::default());
    }

    #[test]
    fn a_waiting_ack_never_moves_backwards() {
        let mut relay = AckRelay::default();
        assert_eq!(relay.arrived(Seq(10)), Some(Seq(10)));
        assert_eq!(relay.arrived(Seq(12)), None);
        assert_eq!(relay.arrived(Seq(11)), None);
        assert_eq!(relay.answered(None), Some(Seq(12)));
    }

    #[test]
    fn a_refused_ack_goes_with_the_next_one_or_at_close() {
        let mut relay = AckRelay::default();
        let up_to = relay.arrived(Seq(4));
        assert_eq!(up_to, Some(Seq(4)));
        relay.refused(Seq(4));
        assert_eq!(relay.arrived(Seq(2)), Some(Seq(4)), "the cumulative maximum goes");
        relay.refused(Seq(4));
        assert_eq!(relay.take_waiting(), Some(Seq(4)));
        assert_eq!(relay.take_waiting(), None);
    }

    #[test]
    fn a_failed_ack_waits_unless_a_newer_one_covers_it() {
        let mut relay = AckRelay::default();
        assert_eq!(relay.arrived(Seq(5)), Some(Seq(5)));
        // Failed with nothing newer: kept, not resent at once.
        assert_eq!(relay.answered(Some(Seq(5))), None);
        assert_eq!(relay.arrived(Seq(3)), Some(Seq(5)), "the next ACK carries it");
        // Failed while a newer ACK waited: the newer one goes and covers it.
        assert_eq!(relay.arrived(Seq(8)), None);
        assert_eq!(relay.answered(Some(Seq(5))), Some(Seq(8)));
        // Failed, then the connection closes: it goes at close.
        assert_eq!(relay.answered(Some(Seq(8))), None);
        assert_eq!(relay.take_waiting(), Some(Seq(8)));
    }

    #[test]
    fn close_takes_only_what_was_not_sent() {
        let mut relay = AckRelay::default();
        assert_eq!(relay.arrived(Seq(1)), Some(Seq(1)));
        assert_eq!(relay.take_waiting(), None, "the one in flight is the store's");
        assert_eq!(relay.arrived(Seq(7)), None);
        assert_eq!(relay.take_waiting(), Some(Seq(7)));
    }
}
