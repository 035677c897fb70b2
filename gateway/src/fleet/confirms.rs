//! The router's side of held SEND_ACKs (`gateway_hub::held`): a message's
//! SEND_ACK waits until every LIVE frame that carries its entries to
//! another node was taken there. Each message the router routes gets a
//! link [`Tag`]; its frames carry it; the links report it back when the
//! peer took a frame (or shed it, or handed it back, then the router sent
//! its entries elsewhere), and once no frame of the message is
//! outstanding, its worker is told ([`Remote::Confirmed`]).

use std::collections::HashMap;

use gateway_hub::{Confirm, Remote};
use routing_links::Tag;

use super::PerWorker;
use crate::driver::Inbox;

/// The messages whose frames are out.
#[derive(Debug, Default)]
pub(super) struct Confirms {
    waits: HashMap<Tag, Wait>,
    last: Tag,
    /// Confirmations due, posted by [`Confirms::post`].
    ready: Vec<Confirm>,
}

#[derive(Debug)]
struct Wait {
    confirm: Confirm,
    /// Frames outstanding, plus one while the router is still routing.
    frames: u32,
}

impl Confirms {
    /// A tag for the message `confirm` names, open until [`Confirms::done`]
    /// is called once more than [`Confirms::sent`] was.
    pub(super) fn open(&mut self, confirm: Confirm) -> Tag {
        self.last += 1;
        self.waits.insert(self.last, Wait { confirm, frames: 1 });
        self.last
    }

    /// A frame carrying `tag` was queued on a link.
    pub(super) fn sent(&mut self, tag: Tag) {
        if let Some(wait) = self.waits.get_mut(&tag) {
            wait.frames += 1;
        }
    }

    /// A frame carrying `tag` is over (taken, shed, or its entries sent
    /// elsewhere), or the router is done routing it.
    pub(super) fn done(&mut self, tag: Tag) {
        let Some(wait) = self.waits.get_mut(&tag) else { return };
        wait.frames = wait.frames.saturating_sub(1);
        if wait.frames == 0 {
            let confirm = wait.confirm;
            self.waits.remove(&tag);
            self.ready.push(confirm);
        }
    }

    /// Messages still waiting.
    pub(super) fn waiting(&self) -> usize {
        self.waits.len()
    }

    /// Tells the workers of the messages whose frames are all over; returns
    /// how many confirmations a full inbox refused (those SEND_ACKs go at
    /// their bound).
    pub(super) fn post(&mut self, inboxes: &[Inbox]) -> u64 {
        post_confirms(self.ready.drain(..), inboxes)
    }
}

/// Tells each confirmation's worker at once (one batch per worker). Called
/// after every routed batch and link report: with nothing to tell, it
/// allocates nothing.
pub(super) fn post_confirms(confirms: impl Iterator<Item = Confirm>, inboxes: &[Inbox]) -> u64 {
    let mut confirms = confirms.peekable();
    if confirms.peek().is_none() {
        return 0;
    }
    let mut batches = PerWorker::new(inboxes);
    for confirm in confirms {
        batches.push(confirm.to, Remote::Confirmed(confirm));
    }
    batches.post(inboxes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirm(token: u64) -> Confirm {
        Confirm { to: routing::SessionRef { worker: 0, key: 0, generation: 1 }, token }
    }

    #[test]
    fn a_message_is_confirmed_once_its_last_frame_is_over_and_routing_is_done() {
        let mut confirms = Confirms::default();
        let tag = confirms.open(confirm(1));
        confirms.sent(tag);
        confirms.sent(tag);
        confirms.done(tag); // one frame taken
        confirms.done(tag); // routing over
        assert!(confirms.ready.is_empty(), "one frame is still out");
        confirms.done(tag);
        assert_eq!(confirms.ready, [confirm(1)]);
        assert_eq!(confirms.waiting(), 0);
        confirms.done(tag);
        assert_eq!(confirms.ready.len(), 1, "a late report changes nothing");
    }

    #[test]
    fn a_message_with_no_frame_is_confirmed_when_routing_is_done() {
        let mut confirms = Confirms::default();
        let tag = confirms.open(confirm(2));
        confirms.done(tag);
        assert_eq!(confirms.ready, [confirm(2)]);
    }
}
