//! What crosses the hub's edge: the time it is given, the work it hands its
//! driver (store calls, push work, registry calls, closed sessions) and the
//! items it batches for other workers and, in a fleet, for other nodes.

use std::time::Instant;

use backend_push::PushNote;
use backend_store::{Connected, Request};
use gateway_core::{Class, Session, SharedDeliver};
use protocol::{Capabilities, Conversation, DeviceId, Frame, GroupId, Seq, UserId};
use routing::SessionRef;

/// The time of a call, read once per loop turn by the driver: the monotonic
/// clock for deadlines and throttles, the wall clock for what clients see
/// (token expiry, presence times, AUTH_OK's server time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub at: Instant,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

/// A store request for the driver to send ([`backend_store::StoreApi::call`]);
/// its answer comes back with the same ticket to [`crate::Hub::handle_answer`].
#[derive(Debug)]
pub struct StoreCall {
    /// The request.
    pub request: Request,
    /// Opaque to the driver: what to finish when the answer comes.
    pub ticket: Ticket,
}

/// Who asked the store and what it was doing.
#[derive(Debug)]
pub struct Ticket {
    pub(crate) to: SessionRef,
    pub(crate) pending: Pending,
}

/// What the hub was doing when it called the store.
#[derive(Debug)]
pub(crate) enum Pending {
    /// HELLO verified; the device is being registered.
    Connect { resume_after: Seq, capabilities: Capabilities, version: u8 },
    /// A SEND.
    Send { client_id: u64 },
    /// A READ: the answer is receipts to fan out.
    Receipts,
    /// An Ack up to `up_to` (see `acks`): receipts to fan out, then the
    /// next Ack.
    Ack { up_to: Seq },
    /// A group change.
    Group { request: u64 },
    /// GROUP_GET.
    GroupGet { request: u64 },
    /// TYPING in a group: the members are being read.
    Typing { user: UserId, group: GroupId, active: bool },
    /// PREKEY_UPLOAD.
    PrekeyUpload { request: u64 },
    /// PREKEY_FETCH of `user`'s bundles.
    PrekeyFetch { request: u64, user: UserId },
    /// A sync window: what was asked, and the tries so far (`retry`).
    Inbox { epoch: u8, query: backend_store::InboxQuery, tries: u8 },
    /// Cursors that moved while the device was away.
    Cursors,
    /// The user's visibility, read when it connected.
    Visibility { user: UserId, came_online: bool },
    /// PRESENCE_SET being stored.
    VisibilitySet,
    /// The store registered the device; the fleet registry is placing it
    /// (the sync starts only once that call is over: see `sessions`).
    Register { resume_after: Seq, capabilities: Capabilities, version: u8, connected: Connected },
}

/// A call to the fleet's session registry (cluster mode), made by the
/// node's fleet thread, never by a worker.
#[derive(Debug)]
pub enum FleetCall {
    /// Place the device's session on this node. The answer comes back to
    /// [`crate::Hub::handle_registered`] with the ticket; the registry's
    /// previous placement of the device, if on another node, is closed
    /// there with 4007 by the fleet thread.
    Register {
        /// The user.
        user: UserId,
        /// Its device.
        device: DeviceId,
        /// The session's id on this node ([`routing::SessionRef::placement_id`]).
        session: u64,
        /// What to finish when the answer comes.
        ticket: Ticket,
    },
    /// The session closed: remove the placement if it is still this one.
    Unregister {
        /// The user.
        user: UserId,
        /// Its device.
        device: DeviceId,
        /// The session's id on this node.
        session: u64,
    },
}

/// Work for the push service.
#[derive(Debug)]
pub enum PushWork {
    /// A device that is not connected has a new inbox entry.
    Notify(PushNote),
    /// A device connected: its pending notes are cancelled.
    Connected(UserId, DeviceId),
}

/// A session the hub has finished with. The driver writes what it has left
/// (a close frame, an HTTP answer), best effort, then closes its socket.
#[derive(Debug)]
pub struct Closed<C> {
    /// The slot it had (free again: a new session may take it).
    pub key: usize,
    /// The session, for its last output.
    pub session: Session,
    /// The driver's part of the connection.
    pub conn: C,
}

/// Output for one session, possibly on another worker, batched per worker
/// (see `routing::outbox`).
#[derive(Debug)]
pub enum Remote {
    /// A live inbox entry.
    Live {
        /// The recipient session.
        to: SessionRef,
        /// The entry's seq in that device's inbox.
        seq: Seq,
        /// The DELIVER, encoded once for every recipient.
        deliver: SharedDeliver,
    },
    /// Any other frame.
    Frame {
        /// The recipient session.
        to: SessionRef,
        /// The frame.
        frame: Frame,
        /// Its outbound class (ephemeral frames go first under pressure).
        class: Class,
    },
    /// Close a session replaced by a newer connection of its device (4007).
    Replace(SessionRef),
    /// Read the session's inbox again: entries may have been stored that no
    /// other node could announce to it (it was placed in the fleet's
    /// registry late: the registry was down, or this node was fenced).
    Resync(SessionRef),
    /// The fleet router: the nodes of a message's recipients took its
    /// entries; the SEND_ACK held for it goes out.
    Confirmed(Confirm),
    /// For devices not on this node (cluster mode): the node's fleet router
    /// finds where they are.
    Fleet(FleetItem),
}

impl Remote {
    /// The outbox destination of this item: its session's worker, or
    /// `fleet` (the index after the workers) for the fleet router.
    pub fn destination(&self, fleet: usize) -> usize {
        match self {
            Self::Live { to, .. } | Self::Frame { to, .. } | Self::Replace(to) | Self::Resync(to) => {
                to.worker
            }
            Self::Confirmed(confirm) => confirm.to.worker,
            Self::Fleet(_) => fleet,
        }
    }
}

/// A SEND_ACK held until the nodes of the message's recipients took its
/// entries (cluster mode): whom the fleet router tells when they have
/// ([`Remote::Confirmed`]). Every [`FleetItem::Live`] of the message
/// carries the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm {
    /// The sending session (its worker holds the SEND_ACK).
    pub to: SessionRef,
    /// The worker's number for the held SEND_ACK.
    pub token: u64,
}

/// Output for a device or user that this node does not hold, for the
/// node's fleet router: it looks up where the registry places the device
/// and sends the item over the link to that node, batched per node.
#[derive(Debug)]
pub enum FleetItem {
    /// A live inbox entry for a device not connected here: delivered where
    /// it is connected, else a push note (the entry stays in the store).
    Live {
        /// The recipient.
        user: UserId,
        /// Its device.
        device: DeviceId,
        /// The entry's seq in that device's inbox.
        seq: Seq,
        /// The DELIVER, encoded once (and sent once per node).
        deliver: SharedDeliver,
        /// The conversation as the recipient sees it (for a push note).
        conversation: Conversation,
        /// The author (for a push note).
        sender: UserId,
        /// The SEND_ACK waiting for the entry to be taken by the device's
        /// node, if any.
        confirm: Option<Confirm>,
    },
    /// A session here watches `user`'s presence: this node is recorded as
    /// a watcher of `user` in the registry, and when `answer` names a
    /// session (the user is not on this node), the user's state is asked of
    /// a node that holds it and sent to that session (offline if none).
    Watch {
        /// The user watched.
        user: UserId,
        /// The subscriber to answer, if this node could not.
        answer: Option<SessionRef>,
    },
    /// No session here watches `user` any more.
    Unwatch(UserId),
    /// `user`'s presence changed on this node: `frame` goes to the watchers
    /// on other nodes. An `offline` one goes nowhere while the user is still
    /// placed on another node, and in that case not to this node's watchers
    /// either (the router tells them, not the hub).
    Presence {
        /// The user.
        user: UserId,
        /// The PRESENCE frame.
        frame: Frame,
        /// Whether it announces offline.
        offline: bool,
    },
    /// A frame for every device of `user` on other nodes but `except`.
    ToUser {
        /// The user.
        user: UserId,
        /// The device that caused it, if it must not get it.
        except: Option<DeviceId>,
        /// The frame.
        frame: Frame,
        /// Its outbound class.
        class: Class,
    },
}
