//! A peer's send queue: bounded in bytes, three lanes so that overload sheds
//! the cheapest frames first. Sans IO.
//!
//! - control (REPLACE): never shed; tiny and rare (one per device that
//!   moves between nodes), so they cannot grow the queue by much;
//! - live (LIVE, and FRAMEs of class live: receipts, prekey notes): shed
//!   oldest first once no ephemeral frame is left; a shed live entry stays
//!   in the store and its device reads it at its next gap check or sync;
//! - ephemeral (presence, typing): shed first.
//!
//! Frames leave control first, then live, then ephemeral. A frame may carry
//! a [`Tag`] for the node to hear back once the peer took it.

use std::collections::VecDeque;

use bytes::Bytes;

/// Which lane a frame takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Never shed.
    Control,
    /// Shed after every ephemeral frame.
    Live,
    /// Shed first.
    Ephemeral,
}

/// The node's mark on a LIVE frame whose taking it waits for (the
/// SEND_ACK of the message it carries).
pub type Tag = u64;

/// What [`SendQueue::push`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct Pushed {
    /// Ephemeral frames shed to make room (the new one included, if it was
    /// one and could not fit).
    pub shed_ephemeral: u32,
    /// Live frames shed.
    pub shed_live: u32,
}

/// The frames waiting for a peer, encoded.
#[derive(Debug)]
pub struct SendQueue {
    lanes: [VecDeque<(Bytes, Option<Tag>)>; 3],
    bytes: usize,
    bound: usize,
    /// Tags of shed frames, until [`SendQueue::take_shed_tags`].
    shed_tags: Vec<Tag>,
}

impl SendQueue {
    /// A queue holding at most `bound` bytes (control frames aside).
    pub fn new(bound: usize) -> Self {
        Self { lanes: Default::default(), bytes: 0, bound, shed_tags: Vec::new() }
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Queues `frame`, shedding ephemeral, then live frames (oldest first)
    /// while it does not fit.
    pub fn push(&mut self, lane: Lane, frame: Bytes) -> Pushed {
        self.push_tagged(lane, frame, None)
    }

    /// [`SendQueue::push`] with the node's tag (the tags of frames shed,
    /// this one's included, are kept for [`SendQueue::take_shed_tags`]).
    pub fn push_tagged(&mut self, lane: Lane, frame: Bytes, tag: Option<Tag>) -> Pushed {
        let mut pushed = Pushed::default();
        while self.bytes + frame.len() > self.bound && lane != Lane::Control {
            if let Some((old, _)) = self.lane(Lane::Ephemeral).pop_front() {
                self.bytes -= old.len();
                pushed.shed_ephemeral += 1;
            } else if lane == Lane::Live {
                match self.lane(Lane::Live).pop_front() {
                    Some((old, old_tag)) => {
                        self.bytes -= old.len();
                        pushed.shed_live += 1;
                        self.shed_tags.extend(old_tag);
                    }
                    // Only control frames left, or the frame alone is over
                    // the bound: this one goes.
                    None => {
                        pushed.shed_live += 1;
                        self.shed_tags.extend(tag);
                        return pushed;
                    }
                }
            } else {
                // An ephemeral frame never sheds a live one.
                pushed.shed_ephemeral += 1;
                return pushed;
            }
        }
        self.bytes += frame.len();
        self.lane(lane).push_back((frame, tag));
        pushed
    }

    /// The next frame to send, with its lane and tag, if it takes at most
    /// `credit` bytes (control first, then live, then ephemeral); `None`
    /// when empty or when the next frame does not fit the credit.
    pub fn pop(&mut self, credit: u64) -> Option<(Lane, Bytes, Option<Tag>)> {
        let lane =
            [Lane::Control, Lane::Live, Lane::Ephemeral].into_iter().find(|&l| !self.lane(l).is_empty())?;
        let queue = self.lane(lane);
        if queue.front().is_some_and(|(frame, _)| frame.len() as u64 > credit) {
            return None;
        }
        let (frame, tag) = queue.pop_front()?;
        self.bytes -= frame.len();
        Some((lane, frame, tag))
    }

    /// The tags of the frames shed since the last call.
    pub fn take_shed_tags(&mut self) -> Vec<Tag> {
        std::mem::take(&mut self.shed_tags)
    }

    /// Takes the live lane's frames, oldest first (a link that failed hands
    /// them back to its node).
    pub fn take_live(&mut self) -> Vec<(Bytes, Option<Tag>)> {
        let frames: Vec<(Bytes, Option<Tag>)> = self.lane(Lane::Live).drain(..).collect();
        self.bytes -= frames.iter().map(|(frame, _)| frame.len()).sum::<usize>();
        frames
    }

    /// Drops everything (a peer that is gone for good); returns the live
    /// and ephemeral frames dropped.
    pub fn clear(&mut self) -> Pushed {
        let shed = Pushed {
            shed_ephemeral: self.lane(Lane::Ephemeral).len() as u32,
            shed_live: self.lane(Lane::Live).len() as u32,
        };
        self.lanes.iter_mut().for_each(VecDeque::clear);
        self.bytes = 0;
        shed
    }

    fn lane(&mut self, lane: Lane) -> &mut VecDeque<(Bytes, Option<Tag>)> {
        let [control, live, ephemeral] = &mut self.lanes;
        match lane {
            Lane::Control => control,
            Lane::Live => live,
            Lane::Ephemeral => ephemeral,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, len: usize) -> Bytes {
        Bytes::from(vec![tag; len])
    }

    #[test]
    fn ephemeral_frames_go_first_then_the_oldest_live_ones() {
        let mut queue = SendQueue::new(100);
        assert_eq!(queue.push(Lane::Live, frame(1, 40)), Pushed::default());
        assert_eq!(queue.push(Lane::Ephemeral, frame(2, 30)), Pushed::default());
        assert_eq!(queue.push(Lane::Live, frame(3, 30)), Pushed::default());
        // 100 bytes queued: a new live frame sheds the ephemeral one first...
        assert_eq!(queue.push(Lane::Live, frame(4, 20)), Pushed { shed_ephemeral: 1, shed_live: 0 });
        // ...then the oldest live one.
        assert_eq!(queue.push(Lane::Live, frame(5, 30)), Pushed { shed_ephemeral: 0, shed_live: 1 });
        assert_eq!(queue.bytes(), 80);
        // An ephemeral frame that does not fit is itself shed.
        assert_eq!(queue.push(Lane::Ephemeral, frame(6, 30)), Pushed { shed_ephemeral: 1, shed_live: 0 });
        // Control frames always get in, and leave first.
        assert_eq!(queue.push(Lane::Control, frame(7, 50)), Pushed::default());
        let order: Vec<(Lane, u8)> =
            std::iter::from_fn(|| queue.pop(u64::MAX)).map(|(l, f, _)| (l, f[0])).collect();
        assert_eq!(order, [(Lane::Control, 7), (Lane::Live, 3), (Lane::Live, 4), (Lane::Live, 5)]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_frame_waits_for_enough_credit() {
        let mut queue = SendQueue::new(1 << 20);
        let _ = queue.push(Lane::Live, frame(1, 100));
        assert_eq!(queue.pop(99), None);
        assert_eq!(queue.pop(100).map(|(_, f, _)| f.len()), Some(100));
        assert_eq!(queue.pop(100), None);
    }

    #[test]
    fn the_live_lane_can_be_taken_back_whole() {
        let mut queue = SendQueue::new(1 << 20);
        let _ = queue.push(Lane::Live, frame(1, 10));
        let _ = queue.push(Lane::Ephemeral, frame(2, 20));
        let _ = queue.push_tagged(Lane::Live, frame(3, 30), Some(33));
        let _ = queue.push(Lane::Control, frame(4, 40));
        let taken: Vec<(u8, Option<Tag>)> = queue.take_live().iter().map(|(f, tag)| (f[0], *tag)).collect();
        assert_eq!(taken, [(1, None), (3, Some(33))], "with their tags");
        assert_eq!(queue.bytes(), 60);
        let rest: Vec<u8> = std::iter::from_fn(|| queue.pop(u64::MAX)).map(|(_, f, _)| f[0]).collect();
        assert_eq!(rest, [4, 2]);
    }

    #[test]
    fn the_tags_of_shed_frames_are_kept_for_the_node() {
        let mut queue = SendQueue::new(100);
        let _ = queue.push_tagged(Lane::Live, frame(1, 60), Some(1));
        let _ = queue.push(Lane::Live, frame(2, 40));
        assert_eq!(queue.push_tagged(Lane::Live, frame(3, 60), Some(3)).shed_live, 1);
        assert_eq!(queue.take_shed_tags(), [1]);
        assert_eq!(
            queue.push_tagged(Lane::Live, frame(4, 200), Some(4)).shed_live,
            3,
            "over the bound alone"
        );
        assert_eq!(queue.take_shed_tags(), [3, 4], "an untagged frame leaves no tag");
        assert!(queue.take_shed_tags().is_empty());
    }

    #[test]
    fn memory_stays_bounded_under_any_flood() {
        let mut queue = SendQueue::new(10_000);
        let mut shed = 0;
        for i in 0..100_000u32 {
            let lane = if i % 3 == 0 { Lane::Ephemeral } else { Lane::Live };
            let pushed = queue.push(lane, frame(0, 100));
            shed += pushed.shed_ephemeral + pushed.shed_live;
            assert!(queue.bytes() <= 10_000);
        }
        assert_eq!(shed, 100_000 - 100, "everything beyond the bound is shed and counted");
    }
}
