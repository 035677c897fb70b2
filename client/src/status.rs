//! [`StatusTracker`]: the status of this device's sent messages, as a chat
//! shows it: pending, ✓ stored (SEND_ACK), ✓✓ delivered and read (RECEIPT
//! cursors, SPEC §6.4). Sans-IO: it reads [`Event`]s and reports changes.

use std::collections::{BTreeMap, HashMap};

use protocol::{ConvSeq, Conversation, ErrorCode, GroupId, GroupInfo, ReceiptKind, UserId};

use crate::event::Event;
use crate::system::system_group_info;

/// How far a sent message got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    /// Sent or queued (offline), no SEND_ACK yet: it will be resent with the
    /// same client id until stored.
    Pending,
    /// ✓: SEND_ACK, durably stored.
    Stored,
    /// ✓✓: a device of the recipient acked it (in a group: of every other
    /// member).
    Delivered,
    /// The recipient read it (in a group: every other member).
    Read,
    /// SEND_ERROR with a terminal code: not stored, not retried.
    Failed(ErrorCode),
}

/// One message's status moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The id [`Session::send`](crate::Session::send) returned.
    pub client_id: u64,
    /// Where it was sent.
    pub to: Conversation,
    /// Its position in the conversation, once stored.
    pub conv_seq: Option<ConvSeq>,
    /// Its new status.
    pub status: MessageStatus,
}

#[derive(Debug)]
struct Tracked {
    to: Conversation,
    conv_seq: Option<ConvSeq>,
    status: MessageStatus,
}

/// One user's delivered and read cursors in one conversation.
#[derive(Debug, Clone, Copy, Default)]
struct Cursors {
    delivered: ConvSeq,
    read: ConvSeq,
}

/// Tracks the status of sent messages from the events of a session.
///
/// Call [`StatusTracker::track`] after each send, and feed every event to
/// [`StatusTracker::handle_event`], which appends the changes it causes. A
/// message is forgotten once read or failed. Receipts are cursors, so a
/// receipt that arrives before the SEND_ACK still counts. In a group, ✓✓ and
/// read need the membership: the tracker learns it from GROUP_INFO answers
/// and membership system entries, or from [`StatusTracker::set_group_members`];
/// until then group messages stay at ✓.
#[derive(Debug)]
pub struct StatusTracker {
    me: UserId,
    messages: BTreeMap<u64, Tracked>,
    cursors: HashMap<(Conversation, UserId), Cursors>,
    /// Other members of each group, as last learnt.
    members: HashMap<GroupId, Vec<UserId>>,
}

impl StatusTracker {
    /// A tracker for the messages of user `me` (receipts naming `me` come from
    /// this user's other devices and say nothing about its sends).
    pub fn new(me: UserId) -> Self {
        Self { me, messages: BTreeMap::new(), cursors: HashMap::new(), members: HashMap::new() }
    }

    /// Starts tracking a send to `to` as [`MessageStatus::Pending`] (a client
    /// id already tracked is left as it is).
    pub fn track(&mut self, client_id: u64, to: Conversation) {
        self.messages.entry(client_id).or_insert(Tracked {
            to,
            conv_seq: None,
            status: MessageStatus::Pending,
        });
    }

    /// The status of a tracked message (`None` once read or failed, or if
    /// never tracked).
    pub fn status(&self, client_id: u64) -> Option<MessageStatus> {
        self.messages.get(&client_id).map(|tracked| tracked.status)
    }

    /// Stops tracking a message.
    pub fn forget(&mut self, client_id: u64) {
        self.messages.remove(&client_id);
    }

    /// Messages tracked (not yet read or failed).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether no message is tracked.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Takes in one event: SEND_ACK, terminal SEND_ERROR, RECEIPT, and group
    /// membership (GROUP_INFO answers, system entries). Appends to `changes`
    /// each message whose status moved; other events change nothing.
    pub fn handle_event(&mut self, event: &Event, changes: &mut Vec<StatusChange>) {
        match event {
            Event::Sent { client_id, conv_seq, .. } => {
                if let Some(tracked) = self.messages.get_mut(client_id) {
                    tracked.conv_seq = Some(*conv_seq);
                }
                self.refresh(|id, _| id == *client_id, changes);
            }
            Event::SendFailed { client_id, code, retryable: false, .. } => {
                if let Some(tracked) = self.messages.remove(client_id) {
                    let status = MessageStatus::Failed(*code);
                    changes.push(StatusChange {
                        client_id: *client_id,
                        to: tracked.to,
                        conv_seq: None,
                        status,
                    });
                }
            }
            Event::Receipt(receipt) if receipt.user != self.me => {
                let cursors = self.cursors.entry((receipt.conversation, receipt.user)).or_default();
                cursors.delivered = cursors.delivered.max(receipt.up_to);
                if receipt.kind == ReceiptKind::Read {
                    cursors.read = cursors.read.max(receipt.up_to);
                }
                let conversation = receipt.conversation;
                self.refresh(|_, to| to == conversation, changes);
            }
            Event::GroupInfo(info) => self.learn(info, changes),
            Event::Delivered(deliver) => {
                if let Some(info) = system_group_info(deliver) {
                    self.learn(&info, changes);
                }
            }
            _ => {}
        }
    }

    /// Sets the members of `group` (this user may be among them), and
    /// appends the status changes that follow.
    pub fn set_group_members(
        &mut self,
        group: GroupId,
        members: impl IntoIterator<Item = UserId>,
        changes: &mut Vec<StatusChange>,
    ) {
        let others = members.into_iter().filter(|&user| user != self.me).collect();
        self.members.insert(group, others);
        self.refresh(|_, to| to == Conversation::Group(group), changes);
    }

    fn learn(&mut self, info: &GroupInfo, changes: &mut Vec<StatusChange>) {
        self.set_group_members(info.group, info.members.iter().map(|member| member.user), changes);
    }

    /// Recomputes the status of the stored messages `which` selects, reports
    /// the ones that moved forward, and forgets the read ones.
    fn refresh(&mut self, which: impl Fn(u64, Conversation) -> bool, changes: &mut Vec<StatusChange>) {
        let mut read = Vec::new();
        for (&client_id, tracked) in &mut self.messages {
            let Some(conv_seq) = tracked.conv_seq.filter(|_| which(client_id, tracked.to)) else {
                continue;
            };
            let reached = reached(&self.cursors, &self.members, tracked.to, conv_seq);
            if rank(reached) > rank(tracked.status) {
                tracked.status = reached;
                changes.push(StatusChange {
                    client_id,
                    to: tracked.to,
                    conv_seq: Some(conv_seq),
                    status: reached,
                });
                if reached == MessageStatus::Read {
                    read.push(client_id);
                }
            }
        }
        for client_id in read {
            self.messages.remove(&client_id);
        }
    }
}

/// The status a stored message at `conv_seq` in `to` has reached: the lowest
/// over its recipients ([`MessageStatus::Stored`] if they are not known).
fn reached(
    cursors: &HashMap<(Conversation, UserId), Cursors>,
    members: &HashMap<GroupId, Vec<UserId>>,
    to: Conversation,
    conv_seq: ConvSeq,
) -> MessageStatus {
    let recipients: &[UserId] = match &to {
        Conversation::Direct(user) => std::slice::from_ref(user),
        Conversation::Group(group) => members.get(group).map_or(&[][..], Vec::as_slice),
    };
    if recipients.is_empty() {
        return MessageStatus::Stored;
    }
    let mut lowest = MessageStatus::Read;
    for &user in recipients {
        // No receipt from this user yet: nothing delivered or read (zero cursors).
        let at = cursors.get(&(to, user)).copied().unwrap_or_default();
        let status = if at.read >= conv_seq {
            MessageStatus::Read
        } else if at.delivered >= conv_seq {
            MessageStatus::Delivered
        } else {
            MessageStatus::Stored
        };
        if rank(status) < rank(lowest) {
            lowest = status;
        }
    }
    lowest
}

/// Progress order; a failure is final and never overtaken.
fn rank(status: MessageStatus) -> u8 {
    match status {
        MessageStatus::Pending => 0,
        MessageStatus::Stored => 1,
        MessageStatus::Delivered => 2,
        MessageStatus::Read => 3,
        MessageStatus::Failed(_) => 4,
    }
}
