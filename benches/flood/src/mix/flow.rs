//! One session's part of the mix: its group, its group sends, and what it
//! checks beyond the tag streams (conversation order, reads due, the final
//! sync).

use std::time::{Duration, Instant};

use protocol::{ConvSeq, Conversation, Payload, UserId};

use super::layout::{self, Block};
use crate::tag::{StreamCheck, Tag};
use crate::traffic::GroupRole;

/// The mix's settings beyond the pairs' (`Spec::interval` paces the pairs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MixSpec {
    /// Sessions of this process: the group layout follows from it.
    pub(crate) sessions: u64,
    /// Time between two sends of one group sender (`None`: no group sends).
    pub(crate) group_interval: Option<Duration>,
    /// Senders per group (members `0..senders`).
    pub(crate) senders: u64,
    /// Share of the pair sends preceded by a TYPING.
    pub(crate) typing_share: f64,
    /// Share of group deliveries a member marks read (READ); every pair
    /// delivery is marked read.
    pub(crate) group_read_share: f64,
    /// Final syncs per second (this process): they are spread like the
    /// connects, not asked all at once.
    pub(crate) sync_rate: f64,
}

/// Where a session is in the final sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinalSync {
    NotYet,
    /// To be asked at this time.
    Due(Instant),
    /// SYNC_REQUEST sent (or the session was down: its resume counts).
    Asked,
    /// SYNC_DONE came.
    Done,
}

/// A session's mix state (boxed in its `Flow`).
#[derive(Debug)]
pub(crate) struct MixFlow {
    /// The session's group, if any, and its member index in it.
    pub(crate) block: Option<Block>,
    pub(crate) member: u32,
    pub(crate) group_sender: bool,
    /// The group, once the creator's GROUP_OK named it.
    pub(crate) group_to: Option<Conversation>,
    pub(crate) next_group_send: Option<Instant>,
    group_seq: u64,
    /// Seqs the server acknowledged, per own stream: to the peer, to the group.
    pub(crate) acked: [StreamCheck; 2],
    /// Highest conv_seq surfaced per conversation (a pair and a group).
    last_conv: Vec<(Conversation, u64)>,
    /// Conversations to mark read once this message is handled.
    pub(crate) read_due: Vec<(Conversation, ConvSeq)>,
    /// The peer's presence is watched (subscribed once; resubscribed after
    /// every reconnect).
    pub(crate) subscribed: bool,
    pub(crate) final_sync: FinalSync,
}

impl MixFlow {
    /// Session `i`'s state and its part in its group's creation.
    pub(crate) fn for_session(spec: &MixSpec, i: u64, first_user: u64) -> (Option<GroupRole>, Self) {
        let block = layout::block_of(spec.sessions, i);
        let member = block.map_or(0, |b| i - b.first);
        let role = block.map(|b| GroupRole {
            index: b.index,
            members: if member == 0 {
                (1..b.size).map(|m| UserId(first_user + b.first + m)).collect()
            } else {
                Vec::new()
            },
            request: None,
            retry_at: None,
        });
        let state = Self {
            block,
            member: u32::try_from(member).unwrap_or(u32::MAX),
            group_sender: block.is_some() && spec.group_interval.is_some() && member < spec.senders,
            group_to: None,
            next_group_send: None,
            group_seq: 1,
            acked: [StreamCheck::default(), StreamCheck::default()],
            last_conv: Vec::new(),
            read_due: Vec::new(),
            subscribed: false,
            final_sync: FinalSync::NotYet,
        };
        (role, state)
    }

    /// The tag stream of the session's group messages (0 is the pairs').
    pub(crate) fn group_stream(&self) -> Option<u32> {
        self.block.map(|b| b.index.saturating_add(1))
    }

    /// The payload of the next group message, sent at `stamp`, and its seq.
    pub(crate) fn group_payload(&mut self, len: usize, stamp: u64) -> Option<(Payload, u64)> {
        let seq = self.group_seq;
        let tag = Tag { stamp, stream: self.group_stream()?, from: self.member, seq };
        let payload = crate::traffic::tagged_payload(len, tag)?;
        self.group_seq += 1;
        Some((payload, seq))
    }

    /// A message of `conversation` at `conv_seq` surfaced: false if the
    /// conversation went back (its order is broken). Notes the read due.
    pub(crate) fn surfaced(&mut self, conversation: Conversation, conv_seq: ConvSeq) -> bool {
        let in_order = match self.last_conv.iter_mut().find(|(c, _)| *c == conversation) {
            Some((_, last)) => {
                let ok = conv_seq.0 > *last;
                *last = (*last).max(conv_seq.0);
                ok
            }
            None => {
                self.last_conv.push((conversation, conv_seq.0));
                true
            }
        };
        match self.read_due.iter_mut().find(|(c, _)| *c == conversation) {
            Some((_, up_to)) => *up_to = (*up_to).max(conv_seq),
            None => self.read_due.push((conversation, conv_seq)),
        }
        in_order
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use protocol::GroupId;

    fn spec() -> MixSpec {
        MixSpec {
            sessions: 20,
            group_interval: Some(Duration::from_secs(1)),
            senders: 2,
            typing_share: 0.5,
            group_read_share: 0.1,
            sync_rate: 1000.0,
        }
    }

    #[test]
    fn members_creators_and_senders() {
        // 20 sessions: groups of 5, 5, 8 and 2.
        let (role, creator) = MixFlow::for_session(&spec(), 10, 100);
        let role = role.unwrap();
        assert_eq!((role.index, creator.member, creator.group_sender), (2, 0, true));
        assert_eq!(role.members, (111..118).map(UserId).collect::<Vec<_>>());
        let (role, member) = MixFlow::for_session(&spec(), 13, 100);
        assert!(role.unwrap().members.is_empty());
        assert_eq!((member.member, member.group_sender, member.group_stream()), (3, false, Some(3)));
        let quiet = MixSpec { group_interval: None, ..spec() };
        assert!(!MixFlow::for_session(&quiet, 10, 100).1.group_sender);
    }

    #[test]
    fn conversation_order_and_reads() {
        let (_, mut flow) = MixFlow::for_session(&spec(), 0, 100);
        let pair = Conversation::Direct(UserId(101));
        let group = Conversation::Group(GroupId(9));
        assert!(flow.surfaced(pair, ConvSeq(1)));
        assert!(flow.surfaced(group, ConvSeq(7)));
        assert!(flow.surfaced(pair, ConvSeq(3)), "gaps are fine");
        assert!(!flow.surfaced(pair, ConvSeq(2)), "going back is not");
        assert_eq!(flow.read_due, vec![(pair, ConvSeq(3)), (group, ConvSeq(7))]);
        let (payload, seq) = flow.group_payload(64, 5).unwrap();
        let tag = Tag::read(payload.bytes()).unwrap();
        assert_eq!((tag.stream, tag.from, tag.seq, seq), (1, 0, 1, 1));
    }
}
