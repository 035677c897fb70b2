//! The store's contract: requests, responses and errors, in the protocol's own
//! types. The embedded engine ([`crate::Store`]) and the gRPC client of a
//! separate store process (crate `backend-rpc`) both implement [`StoreApi`],
//! so the gateway holds one `Arc<dyn StoreApi>` and does not know which.

use std::time::Duration;

use bytes::Bytes;
use protocol::{
    ConvSeq, Conversation, Deliver, DeviceBundle, DeviceId, ErrorCode, GroupId, GroupName, Key, Member,
    MessageId, OneTimePrekey, ReceiptKind, Role, Seq, SignedPrekey, Timestamp, UserId, Visibility,
};

use crate::error::{EngineError, UnavailableError};

/// Called once with the outcome of a request, on a store thread (embedded) or
/// a runtime thread (remote). It must not block: hand the result on.
pub type Done = Box<dyn FnOnce(Result<Response, StoreError>) + Send>;

/// A store, embedded or remote.
pub trait StoreApi: Send + Sync + std::fmt::Debug + 'static {
    /// Starts `request`; `done` gets the outcome. Never blocks: a full
    /// request queue answers [`StoreError::Overloaded`] at once.
    fn call(&self, request: Request, done: Done);

    /// Whether writes can succeed now, as far as this side knows: false while
    /// an embedded engine recovers from a failure, or while a remote store's
    /// stream is down. Behind the gateway's `/readyz`.
    fn writable(&self) -> bool;
}

/// How durable a write is before its request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In the engine's journal, written to the operating system: survives
    /// `kill -9` of any process, not a power loss.
    Process,
    /// fsync'd: the writer batches requests and syncs at least every
    /// `interval` (group commit); answers wait for the sync.
    Fsync {
        /// Longest wait for a sync.
        interval: Duration,
    },
}

/// Everything the store does. Writes go through one writer thread (one
/// writer per inbox: seqs are contiguous and visible in order); reads run
/// beside it.
#[derive(Debug, Clone)]
pub enum Request {
    /// A device authenticated: register it (up to the device limit) and say
    /// where its inbox stands.
    Connect(Connect),
    /// Store a message (deduplicated) and fan it out to inboxes.
    Send(SendMessage),
    /// Cumulative ack of a device's inbox: entries `≤ up_to` leave it.
    Ack(Ack),
    /// Move the user's read cursor in a conversation.
    Read(ReadCursor),
    /// Create or change a group.
    Group(GroupChange),
    /// A device publishes its keys.
    PrekeyUpload(PrekeyUpload),
    /// Fetch (and consume) bundles of a user's devices.
    PrekeyFetch(PrekeyFetch),
    /// A user's presence visibility.
    SetVisibility {
        /// The user.
        user: UserId,
        /// Who may see the user's presence.
        visibility: Visibility,
    },
    /// Read a user's presence visibility (`Everyone` if never set).
    GetVisibility {
        /// The user.
        user: UserId,
    },
    /// Read a window of a device's inbox.
    Inbox(InboxQuery),
    /// Read a group (members only).
    GroupGet {
        /// Who asks.
        user: UserId,
        /// The group.
        group: GroupId,
    },
    /// Cursors about `user`'s conversations that moved after `since`.
    Cursors {
        /// Whose conversations.
        user: UserId,
        /// Moved strictly after this time.
        since: Timestamp,
    },
}

/// The answer to a [`Request`], variant by variant.
#[derive(Debug, Clone)]
pub enum Response {
    /// To [`Request::Connect`].
    Connected(Connected),
    /// To [`Request::Send`].
    Sent(Sent),
    /// To [`Request::Ack`] and [`Request::Read`]: the cursor moves to tell.
    Receipts(Vec<ReceiptNote>),
    /// To [`Request::Group`].
    GroupChanged(GroupChanged),
    /// To [`Request::PrekeyUpload`]: one-time prekeys now in stock.
    PrekeyStock(u32),
    /// To [`Request::PrekeyFetch`].
    PrekeyFetched(PrekeyFetched),
    /// To [`Request::SetVisibility`].
    Done,
    /// To [`Request::GetVisibility`].
    Visibility(Visibility),
    /// To [`Request::Inbox`].
    Inbox(InboxPage),
    /// To [`Request::GroupGet`].
    Group(GroupInfo),
    /// To [`Request::Cursors`].
    Cursors(Vec<ReceiptNote>),
}

/// See [`Request::Connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect {
    /// The user.
    pub user: UserId,
    /// The device; a new one is registered if the user has fewer than the
    /// device limit, refused with [`StoreError::TooManyDevices`] otherwise.
    pub device: DeviceId,
}

/// See [`Response::Connected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// Highest seq ever given in this device's inbox (0: none).
    pub inbox_head: Seq,
    /// Highest seq this device acked.
    pub acked: Seq,
    /// One-time prekeys in stock, if the device uploaded keys.
    pub prekey_stock: Option<u32>,
    /// When the device connected before this (0: never): cursors that moved
    /// since then are sent after its sync ([`Request::Cursors`]).
    pub previous_connect: Timestamp,
}

/// See [`Request::Send`].
#[derive(Debug, Clone)]
pub struct SendMessage {
    /// Author.
    pub user: UserId,
    /// Author's device.
    pub device: DeviceId,
    /// The SEND's client id (dedup key with the device).
    pub client_id: u64,
    /// Recipient user or group.
    pub to: Conversation,
    /// Ciphertext, never parsed.
    pub payload: Bytes,
}

/// A stored message, as every inbox entry pointing to it shows it (all but
/// the seq and the conversation, which depend on the device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Store-assigned id, unique in the store (increasing with time; with
    /// several writers, within each shard).
    pub id: MessageId,
    /// Position in the conversation.
    pub conv_seq: ConvSeq,
    /// Author (for a system entry: the user who changed the group).
    pub sender: UserId,
    /// Author's device; 0 for a system entry (group change).
    pub sender_device: DeviceId,
    /// When the store accepted it (ms since the Unix epoch).
    pub server_time: Timestamp,
    /// Ciphertext, or for a system entry one encoded GROUP_INFO frame.
    pub payload: Bytes,
}

/// One inbox entry created for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Recipient user.
    pub user: UserId,
    /// Recipient device.
    pub device: DeviceId,
    /// Its seq in that device's inbox.
    pub seq: Seq,
    /// The conversation as that device sees it (`Direct(other user)` or the group).
    pub conversation: Conversation,
}

impl Delivery {
    /// The DELIVER frame body for this entry.
    pub fn deliver(&self, message: &Message) -> Deliver {
        Deliver {
            seq: self.seq,
            message_id: message.id,
            conversation: self.conversation,
            conv_seq: message.conv_seq,
            sender: message.sender,
            sender_device: message.sender_device,
            server_time: message.server_time,
            // Payloads are checked against MAX_PAYLOAD before they are stored.
            payload: protocol::Payload::new(message.payload.clone()).unwrap_or_default(),
        }
    }
}

/// See [`Response::Sent`].
#[derive(Debug, Clone)]
pub struct Sent {
    /// The stored message (the original one for a duplicate).
    pub message: Message,
    /// True when (device, client id) was already stored: nothing new was
    /// written, `receipts` is empty, and `deliveries` are the original
    /// entries not acked yet (to be fanned out again: the first attempt's
    /// gateway may have died before it did).
    pub duplicate: bool,
    /// The inbox entries created: every device of the recipients and the
    /// author's other devices (for a duplicate, those still unacked).
    pub deliveries: Vec<Delivery>,
    /// Cursor moves the send caused (the author's read cursor).
    pub receipts: Vec<ReceiptNote>,
}

/// A cursor move someone must hear about (a RECEIPT frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptNote {
    /// Who hears: every device of this user ...
    pub to: UserId,
    /// ... except this one (the device that moved its own cursor).
    pub except: Option<DeviceId>,
    /// The conversation as `to` sees it.
    pub conversation: Conversation,
    /// Whose cursor moved.
    pub user: UserId,
    /// Which cursor.
    pub kind: ReceiptKind,
    /// Its new value.
    pub up_to: ConvSeq,
    /// When it moved.
    pub at: Timestamp,
}

/// See [`Request::Ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The user.
    pub user: UserId,
    /// The device whose inbox is acked.
    pub device: DeviceId,
    /// Every entry with seq ≤ this is processed (clamped to the head).
    pub up_to: Seq,
}

/// See [`Request::Read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCursor {
    /// The reader.
    pub user: UserId,
    /// The reader's device (its own copy of the receipt is not sent back).
    pub device: DeviceId,
    /// The conversation, as the reader sees it.
    pub conversation: Conversation,
    /// Read up to here (a lower value than the cursor is ignored).
    pub up_to: ConvSeq,
}

/// See [`Request::Group`].
#[derive(Debug, Clone)]
pub struct GroupChange {
    /// Who asks.
    pub user: UserId,
    /// From which device.
    pub device: DeviceId,
    /// What.
    pub op: GroupOp,
}

/// A group change.
#[derive(Debug, Clone)]
pub enum GroupOp {
    /// New group; the asking user is its admin.
    Create {
        /// Display name.
        name: GroupName,
        /// Members besides the creator.
        members: Vec<UserId>,
    },
    /// Add members (admins only).
    Add {
        /// The group.
        group: GroupId,
        /// Users to add.
        members: Vec<UserId>,
    },
    /// Remove members (admins only).
    Remove {
        /// The group.
        group: GroupId,
        /// Users to remove.
        members: Vec<UserId>,
    },
    /// The asking user leaves.
    Leave {
        /// The group.
        group: GroupId,
    },
    /// Change a member's role (admins only).
    SetRole {
        /// The group.
        group: GroupId,
        /// The member.
        member: UserId,
        /// The new role.
        role: Role,
    },
}

/// A group's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub group: GroupId,
    /// Membership version (1 at creation, +1 per change).
    pub version: u64,
    /// Display name.
    pub name: GroupName,
    /// Members and roles.
    pub members: Vec<Member>,
}

/// See [`Response::GroupChanged`].
#[derive(Debug, Clone)]
pub struct GroupChanged {
    /// The group after the change.
    pub info: GroupInfo,
    /// The system entry stored in the group's conversation (payload: one
    /// GROUP_INFO frame with request 0).
    pub message: Message,
    /// Its inbox entries: every member device after the change, and the
    /// devices of removed members.
    pub deliveries: Vec<Delivery>,
}

/// See [`Request::PrekeyUpload`].
#[derive(Debug, Clone)]
pub struct PrekeyUpload {
    /// The user.
    pub user: UserId,
    /// The device publishing.
    pub device: DeviceId,
    /// Long-term identity key (replaces the stored one).
    pub identity_key: Key,
    /// Current signed prekey (replaces the stored one).
    pub signed_prekey: SignedPrekey,
    /// One-time prekeys added to the stock (an id already stored is replaced).
    pub one_time: Vec<OneTimePrekey>,
}

/// See [`Request::PrekeyFetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrekeyFetch {
    /// Whose bundles.
    pub user: UserId,
    /// One device, or 0 for every device that uploaded keys.
    pub device: DeviceId,
}

/// See [`Response::PrekeyFetched`].
#[derive(Debug, Clone)]
pub struct PrekeyFetched {
    /// One bundle per device, each with one consumed one-time prekey when
    /// the stock had one.
    pub bundles: Vec<DeviceBundle>,
    /// Devices whose stock is now at or below the low mark, with what is left:
    /// they get PREKEY_LOW.
    pub low: Vec<(DeviceId, u32)>,
}

/// See [`Request::Inbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxQuery {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// Entries with seq strictly above this.
    pub after: Seq,
    /// At most this many entries (at least one is returned if any exists).
    pub limit: u32,
    /// At most this many bytes of DELIVER bodies (at least one entry is
    /// returned if any exists).
    pub max_bytes: u32,
}

/// See [`Response::Inbox`].
#[derive(Debug, Clone)]
pub struct InboxPage {
    /// The entries, in seq order; expired entries are skipped.
    pub entries: Vec<Deliver>,
    /// Entries left after these.
    pub remaining: u64,
    /// The inbox head when read.
    pub head: Seq,
}

/// Why a request failed. Each maps to the protocol's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The recipient user has no registered device.
    #[error("unknown recipient {0}")]
    UnknownRecipient(UserId),
    /// The sender is not a member of the group.
    #[error("not a member of group {0}")]
    NotAMember(GroupId),
    /// No such group.
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    /// The change would exceed the member limit.
    #[error("group {0} would exceed {max} members", max = protocol::limits::MAX_GROUP_MEMBERS)]
    GroupFull(GroupId),
    /// Only an admin may do this.
    #[error("only an admin of group {0} may do this")]
    NotAdmin(GroupId),
    /// No keys for that user or device.
    #[error("no prekey bundle for user {0}")]
    UnknownDevice(UserId),
    /// The user has the maximum number of devices.
    #[error("user {0} has the maximum number of devices")]
    TooManyDevices(UserId),
    /// The request queue is full.
    #[error("store overloaded")]
    Overloaded,
    /// The store process cannot be reached (remote mode).
    #[error("store unavailable: {0}")]
    Unavailable(UnavailableError),
    /// The engine failed (I/O, corruption).
    #[error("store engine: {0}")]
    Engine(EngineError),
    /// The engine failed and is being reopened (disk full, out of
    /// descriptors): nothing of the request was stored; retry after this.
    #[error("store unavailable: recovering, retry in {retry_after_ms} ms")]
    Recovering {
        /// When the store tries again (ms from now).
        retry_after_ms: u32,
    },
}

impl StoreError {
    /// The store answered a request with `response`, of another kind than
    /// the request's (a store bug).
    pub fn unexpected_response(response: &Response) -> Self {
        Self::Engine(EngineError::UnexpectedResponse { answer: format!("{response:?}") })
    }

    /// The protocol error code a client gets for this.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownRecipient(_) => ErrorCode::UNKNOWN_RECIPIENT,
            Self::NotAMember(_) => ErrorCode::NOT_A_MEMBER,
            Self::UnknownGroup(_) => ErrorCode::UNKNOWN_GROUP,
            Self::GroupFull(_) => ErrorCode::GROUP_FULL,
            Self::NotAdmin(_) => ErrorCode::NOT_ADMIN,
            Self::UnknownDevice(_) => ErrorCode::UNKNOWN_DEVICE,
            Self::TooManyDevices(_) => ErrorCode::TOO_MANY_DEVICES,
            Self::Overloaded => ErrorCode::OVERLOADED,
            Self::Unavailable(_) | Self::Recovering { .. } => ErrorCode::BACKEND_UNAVAILABLE,
            Self::Engine(_) => ErrorCode::INTERNAL,
        }
    }
}

// No `#[from]`: that would also make the cause the error's `source`, and
// reports that print the chain would show its text twice.
impl From<EngineError> for StoreError {
    fn from(cause: EngineError) -> Self {
        Self::Engine(cause)
    }
}

impl From<UnavailableError> for StoreError {
    fn from(cause: UnavailableError) -> Self {
        Self::Unavailable(cause)
    }
}
