//! SEND_ACKs held for the fleet (cluster mode).
//!
//! A message whose recipients include devices on other nodes is stored,
//! then its entries go to those nodes through this node's fleet router. If
//! this node died after SEND_ACK and before the links took the entries, the
//! recipients would learn of the message only at their next gap or sync,
//! and the client, acknowledged, would not resend it. So the SEND_ACK waits
//! until the router confirms that the recipients' nodes took the entries
//! (or that it sent them elsewhere: push notes, this node's own sessions),
//! at most `HubConfig::ack_wait`. A node that dies while it holds an ack
//! leaves the client to resend through another node, and the store's
//! answer to that deduplicated retry carries the entries not acked yet,
//! which that node fans out again.

use std::time::Instant;

use protocol::Frame;

use crate::work::{Confirm, Now};
use crate::Hub;

/// A held SEND_ACK.
#[derive(Debug)]
pub(crate) struct Held {
    /// The sending session.
    to: routing::SessionRef,
    /// The SEND_ACK.
    ack: Frame,
}

impl<C> Hub<C> {
    /// A confirmation for the SEND_ACK the fleet items of a message about
    /// to be fanned out carry, if the session is here and acks wait.
    pub(crate) fn next_confirm(&mut self, key: Option<usize>) -> Option<Confirm> {
        if !self.in_fleet() || self.config.ack_wait.is_zero() {
            return None;
        }
        let to = self.session_ref(key?)?;
        self.next_token += 1;
        Some(Confirm { to, token: self.next_token })
    }

    /// Holds `ack` until `confirm` comes back, or `ack_wait` has passed.
    pub(crate) fn hold(&mut self, now: Now, confirm: Confirm, ack: Frame) {
        self.metrics.send_acks_held.inc();
        self.held.insert(confirm.token, Held { to: confirm.to, ack });
        self.held_due.push_back((now.at + self.config.ack_wait, confirm.token));
    }

    /// The router confirmed `token`: its SEND_ACK goes out (if its session
    /// is still there; a closed one's client resends).
    pub(crate) fn confirmed(&mut self, now: Now, token: u64) {
        if let Some(Held { to, ack }) = self.held.remove(&token) {
            let key = self.live_key(to);
            self.reply_to(now, key, &ack);
        }
        // The front stays a held one, so that `held_due` never wakes the
        // driver for an ack already sent.
        while self.held_due.front().is_some_and(|(_, token)| !self.held.contains_key(token)) {
            self.held_due.pop_front();
        }
    }

    /// Sends the held SEND_ACKs whose wait is over, unconfirmed.
    pub(crate) fn expire_held(&mut self, now: Now) {
        while let Some(&(due, token)) = self.held_due.front() {
            if due > now.at {
                break;
            }
            self.held_due.pop_front();
            if let Some(Held { to, ack }) = self.held.remove(&token) {
                self.metrics.send_acks_unconfirmed.inc();
                let key = self.live_key(to);
                self.reply_to(now, key, &ack);
            }
        }
    }

    /// When the oldest held SEND_ACK is due.
    pub(crate) fn held_due(&self) -> Option<Instant> {
        self.held_due.front().map(|(due, _)| *due)
    }
}
