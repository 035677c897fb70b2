//! The tagged-payload check: how a receiver proves every tagged message
//! arrived once and in order.
//!
//! A sender starts each payload with a [`Tag`]: send time, stream, sender,
//! and the sender's sequence number in that stream, counted from 1. A
//! receiver keeps one [`StreamCheck`] per stream and sender and sees each
//! arrival ([`Seen`]) as the next in its stream, as new but after a gap (an
//! earlier one is still missing), or as a repeat. The `group`, `storm` and
//! `group --hub` scenarios count these; comparing the new ones with what
//! the senders got acknowledged (the hub has no acks: what they sent)
//! gives the losses. `echo` uses the [`Tag`] alone: its sender checks the
//! sequence numbers that come back.

use std::collections::BTreeSet;

/// Bytes of a [`Tag`] at the start of a group, storm, echo or hub payload.
pub(crate) const TAG_LEN: usize = 24;

/// The header of a checked payload: send time, stream (group index; 0 for
/// pairs), sender (member or session index), and the sender's sequence
/// number in that stream (from 1). Little-endian, [`TAG_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tag {
    pub(crate) stamp: u64,
    pub(crate) stream: u32,
    pub(crate) from: u32,
    pub(crate) seq: u64,
}

impl Tag {
    /// Writes the tag at the start of `buf` (false if it is too short).
    pub(crate) fn write(&self, buf: &mut [u8]) -> bool {
        let Some(head) = buf.get_mut(..TAG_LEN) else { return false };
        let (stamp, rest) = head.split_at_mut(8);
        let (stream, rest) = rest.split_at_mut(4);
        let (from, seq) = rest.split_at_mut(4);
        stamp.copy_from_slice(&self.stamp.to_le_bytes());
        stream.copy_from_slice(&self.stream.to_le_bytes());
        from.copy_from_slice(&self.from.to_le_bytes());
        seq.copy_from_slice(&self.seq.to_le_bytes());
        true
    }

    /// The tag at the start of `buf`.
    pub(crate) fn read(buf: &[u8]) -> Option<Self> {
        let u64_at =
            |at: usize| -> Option<u64> { Some(u64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?)) };
        let u32_at =
            |at: usize| -> Option<u32> { Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?)) };
        Some(Self { stamp: u64_at(0)?, stream: u32_at(8)?, from: u32_at(12)?, seq: u64_at(16)? })
    }
}

/// What a receiver made of one tagged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The next in its stream.
    InOrder,
    /// New, but after a gap (an earlier one is missing so far).
    OutOfOrder,
    /// Seen before.
    Duplicate,
}

/// One sender's stream as a receiver sees it: every seq below `next` has
/// arrived, and the ones in `ahead` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamCheck {
    next: u64,
    ahead: BTreeSet<u64>,
}

impl Default for StreamCheck {
    fn default() -> Self {
        Self { next: 1, ahead: BTreeSet::new() }
    }
}

impl StreamCheck {
    /// Whether `seq` was seen.
    pub(crate) fn contains(&self, seq: u64) -> bool {
        (1..self.next).contains(&seq) || self.ahead.contains(&seq)
    }

    /// Every seq seen, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (1..self.next).chain(self.ahead.iter().copied())
    }

    pub(crate) fn see(&mut self, seq: u64) -> Seen {
        if seq < self.next || self.ahead.contains(&seq) {
            return Seen::Duplicate;
        }
        if seq != self.next {
            self.ahead.insert(seq);
            return Seen::OutOfOrder;
        }
        self.next += 1;
        while self.ahead.remove(&self.next) {
            self.next += 1;
        }
        Seen::InOrder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let tag = Tag { stamp: 1 << 40, stream: 7, from: 3, seq: 99 };
        let mut buf = [0u8; TAG_LEN + 4];
        assert!(tag.write(&mut buf));
        assert_eq!(Tag::read(&buf), Some(tag));
        assert!(!tag.write(&mut [0u8; 10]));
        assert_eq!(Tag::read(&buf[..20]), None);
    }

    #[test]
    fn streams_count_gaps_and_repeats() {
        let mut check = StreamCheck::default();
        assert_eq!(check.see(1), Seen::InOrder);
        assert_eq!(check.see(3), Seen::OutOfOrder);
        assert_eq!(check.see(3), Seen::Duplicate);
        assert_eq!(check.see(2), Seen::InOrder);
        assert_eq!(check.see(4), Seen::InOrder, "3 was seen: 4 is next");
        assert_eq!(check.see(1), Seen::Duplicate);
        assert_eq!(check.see(7), Seen::OutOfOrder);
        assert!(check.contains(4) && check.contains(7) && !check.contains(5) && !check.contains(0));
        assert_eq!(check.iter().collect::<Vec<_>>(), vec![1, 2, 3, 4, 7]);
    }
}
