//! What a [`Session`](crate::Session) tells its owner: the [`Event`] enum.
//!
//! Events borrow nothing: byte fields are [`bytes::Bytes`] views of the
//! received WebSocket message, so an event costs no copy of its payload.

use protocol::{
    AuthOk, ConvSeq, Deliver, ErrorCode, Frame, GoAway, GroupInfo, GroupOk, MediaDownloadTicket,
    MediaUploadTicket, MessageId, Note, PrekeyBundles, PrekeyOk, Presence, Receipt, Seq, Timestamp,
    TypingNotify,
};

/// Something that happened on the session, in the order the server said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// AUTH_OK: the session is live. Sync frames follow on their own.
    Authenticated(AuthOk),
    /// AUTH_ERROR: the server refused the session and is closing it.
    AuthRejected {
        /// Why.
        code: ErrorCode,
        /// Wait at least this long before reconnecting (ms, 0: no advice).
        retry_after_ms: u32,
        /// Human-readable detail.
        text: Note,
    },
    /// A message in this device's inbox, from a live DELIVER or a SYNC_BATCH
    /// entry. Never twice for one seq, always in increasing seq order.
    Delivered(Deliver),
    /// One SYNC_BATCH window was surfaced; about `remaining` entries follow.
    /// Ack `up_to` once the batch is processed: the server sends the batch
    /// after next only then (SPEC §6.3).
    SyncProgress {
        /// The server's estimate of entries still to come.
        remaining: u64,
        /// The batch's last seq, duplicates included (`Seq(0)` if empty).
        up_to: Seq,
    },
    /// SYNC_DONE: the backlog is replayed; live deliveries follow.
    Synced {
        /// Highest seq the sync sent.
        head: Seq,
    },
    /// SEND_ACK: a send is durably stored and no longer pending.
    Sent {
        /// The id [`Session::send`](crate::Session::send) returned.
        client_id: u64,
        /// Id the store assigned.
        message_id: MessageId,
        /// Position in the conversation.
        conv_seq: ConvSeq,
        /// When the store accepted it.
        server_time: Timestamp,
        /// The store already had this client id (a resend after reconnect).
        duplicate: bool,
    },
    /// SEND_ERROR: a send was refused. A terminal code removed it from the
    /// pending sends; a retryable one kept it there, to be resent with
    /// [`Session::resend`](crate::Session::resend) or on reconnect.
    SendFailed {
        /// The id [`Session::send`](crate::Session::send) returned.
        client_id: u64,
        /// Why.
        code: ErrorCode,
        /// Whether the send is still pending.
        retryable: bool,
        /// Retry after this delay (ms, 0: no advice).
        retry_after_ms: u32,
        /// Human-readable detail.
        text: Note,
    },
    /// GOAWAY: the node is draining and will close with 1001. Reconnect after
    /// `reconnect_after_ms` plus jitter, to `redirect` when it is not empty
    /// ([`Client::reconnect_to`](crate::Client::reconnect_to)). The session
    /// already raised its cursor to `resume_after` if that was higher.
    GoAway(GoAway),
    /// The server sent PING; the matching PONG is already queued for
    /// transmission ([`Session::poll_transmit`](crate::Session::poll_transmit)).
    Ping {
        /// The PING's nonce.
        nonce: u64,
    },
    /// The server answered a PING of this client.
    Pong {
        /// The nonce of the PING answered.
        nonce: u64,
    },
    /// RECEIPT: another user's delivered or read cursor moved in a
    /// conversation (or this user's read cursor, moved by another of its
    /// devices: `user` is then this user). Receipts are state: only the latest
    /// value matters ([`StatusTracker`](crate::StatusTracker) turns them into
    /// per-message ✓✓ and read).
    Receipt(Receipt),
    /// PRESENCE: a subscribed user's presence, once at subscription and then
    /// on each change (needs the `PRESENCE` capability).
    Presence(Presence),
    /// TYPING_NOTIFY: someone started or stopped typing (needs the `TYPING`
    /// capability). Clear the indicator after a few seconds without a
    /// refresh.
    Typing(TypingNotify),
    /// GROUP_OK: a group request succeeded; `request` names it (after a
    /// create, `group` is the new group).
    GroupOk(GroupOk),
    /// GROUP_INFO: the answer to a GROUP_GET. (Membership changes arrive as
    /// system entries instead, with `request = 0`: see
    /// [`system_group_info`](crate::system_group_info).)
    GroupInfo(GroupInfo),
    /// PREKEY_BUNDLES: the answer to a PREKEY_FETCH, one bundle per device.
    PrekeyBundles(PrekeyBundles),
    /// PREKEY_OK: a PREKEY_UPLOAD was stored.
    PrekeyOk(PrekeyOk),
    /// PREKEY_LOW: this device's one-time prekey stock is low; upload more.
    PrekeyLow {
        /// One-time prekeys left.
        stock: u32,
    },
    /// MEDIA_UPLOAD_TICKET: where and how to upload a blob, and its media id.
    MediaUploadTicket(MediaUploadTicket),
    /// MEDIA_DOWNLOAD_TICKET: where to download a blob.
    MediaDownloadTicket(MediaDownloadTicket),
    /// ERROR: a request failed (`reference` names it), or, with
    /// `reference = 0`, a request without an answer (ACK, READ, TYPING,
    /// PRESENCE_*) was refused or the session is about to close.
    Error(protocol::Error),
    /// Any other server frame (none in v1 today: kept for frame kinds added
    /// later with a capability bit).
    Other(Frame),
}

impl Event {
    /// The seq of a [`Event::Delivered`], if it is one.
    pub fn seq(&self) -> Option<Seq> {
        match self {
            Self::Delivered(deliver) => Some(deliver.seq),
            _ => None,
        }
    }
}
