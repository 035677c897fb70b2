//! Every frame of protocol v1 and the records nested in them.
//!
//! The table below is the code form of the frame tables in `SPEC.md`: tag, SPEC
//! name, direction and fields in wire order. A frame is `tag (1 byte) · body
//! length (varint) · body`, and the body is the fields in the order listed.

use crate::codes::ErrorCode;
use crate::limits::{
    MAX_DEVICES_PER_USER, MAX_FRAME_LEN, MAX_GROUP_MEMBERS, MAX_GROUP_NAME, MAX_KEY, MAX_MEDIA_ID,
    MAX_MEMBERS_PER_CHANGE, MAX_ONE_TIME_PREKEYS, MAX_PAYLOAD, MAX_SIGNATURE, MAX_SYNC_BATCH, MAX_TEXT,
    MAX_TICKET_HEADERS, MAX_TOKEN, MAX_URL,
};
use crate::types::{
    Blob, Capabilities, ConvSeq, Conversation, DeviceId, GoAwayReason, GroupId, HttpMethod, List, MediaClass,
    MessageId, PresenceStatus, ReceiptKind, Role, Seq, Text, Timestamp, UserId, Visibility,
};

/// Opaque message ciphertext, as stored and delivered.
pub type Payload = Blob<MAX_PAYLOAD>;
/// A SEND's ciphertext on the wire: bounded only by the frame, so that a
/// payload over the server's limit is a refused request (SEND_ERROR
/// `PAYLOAD_TOO_LARGE`, the session lives), not a malformed frame (SPEC §6.1).
pub type SendPayload = Blob<MAX_FRAME_LEN>;

const _: () = assert!(MAX_PAYLOAD < MAX_FRAME_LEN);

impl From<Payload> for SendPayload {
    fn from(payload: Payload) -> Self {
        // Cannot fail: MAX_PAYLOAD < MAX_FRAME_LEN (asserted above).
        Self::new(payload.into_bytes()).unwrap_or_default()
    }
}
/// Signed auth token (format defined by the server, opaque to the codec).
pub type Token = Blob<MAX_TOKEN>;
/// A public key.
pub type Key = Blob<MAX_KEY>;
/// A signature.
pub type Signature = Blob<MAX_SIGNATURE>;
/// Human-readable text (errors, hints).
pub type Note = Text<MAX_TEXT>;
/// A group's display name.
pub type GroupName = Text<MAX_GROUP_NAME>;
/// A media id: opaque bytes the server issued (SPEC §6.8).
pub type MediaId = Blob<MAX_MEDIA_ID>;
/// The URL of a media ticket.
pub type Url = Text<MAX_URL>;

/// Who may send a frame kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server only.
    ClientToServer,
    /// Server to client only.
    ServerToClient,
    /// Either side.
    Both,
}

impl Direction {
    /// The SPEC notation: `C→S`, `S→C` or `both`.
    pub fn spec(self) -> &'static str {
        match self {
            Self::ClientToServer => "C→S",
            Self::ServerToClient => "S→C",
            Self::Both => "both",
        }
    }
}

record!(
    /// A group member and its role.
    Member {
        /// The member.
        user: UserId,
        /// Its role.
        role: Role,
    }
);

record!(
    /// A medium-term prekey signed by the device's identity key.
    SignedPrekey {
        /// Key id chosen by the device.
        id: u32,
        /// Public key.
        key: Key,
        /// Signature of `key` by the identity key.
        signature: Signature,
    }
);

record!(
    /// A single-use prekey.
    OneTimePrekey {
        /// Key id chosen by the device.
        id: u32,
        /// Public key.
        key: Key,
    }
);

record!(
    /// What a peer needs to start an end-to-end session with one device.
    DeviceBundle {
        /// The device.
        device: DeviceId,
        /// Its long-term identity key.
        identity_key: Key,
        /// Its current signed prekey.
        signed_prekey: SignedPrekey,
        /// One one-time prekey, consumed by this fetch; absent when the stock is
        /// empty.
        one_time: Option<OneTimePrekey>,
    }
);

record!(
    /// An HTTP header a ticket's request must carry, exactly.
    Header {
        /// Header name.
        name: Note,
        /// Its value.
        value: Note,
    }
);

frames! {
    /// First frame of a session: versions, credentials and the resume cursor.
    Hello = 0x01, "HELLO", ClientToServer {
        /// Lowest protocol version the client speaks. Always the first body byte.
        min_version: u8,
        /// Highest protocol version the client speaks. Always the second body byte.
        max_version: u8,
        /// This device; must match the token.
        device: DeviceId,
        /// Last inbox seq this device acknowledged (0: none); sync resumes after it.
        resume_after: Seq,
        /// Optional traffic the client wants.
        capabilities: Capabilities,
        /// Signed token binding user, device, expiry and key id.
        token: Token,
    }

    /// The session is authenticated and live.
    AuthOk = 0x02, "AUTH_OK", ServerToClient {
        /// Version chosen: the highest both sides speak.
        version: u8,
        /// The authenticated user.
        user: UserId,
        /// The authenticated device.
        device: DeviceId,
        /// Session id, unique on this node (for logs and support).
        session: u64,
        /// Server clock, to estimate skew.
        server_time: Timestamp,
        /// Send PING at this interval (ms); silence for 3 intervals closes.
        heartbeat_ms: u32,
        /// Highest seq ever assigned in this device's inbox (acked and expired
        /// entries included); sync ends at or after it.
        inbox_head: Seq,
        /// This server's payload limit (at most `MAX_PAYLOAD`).
        max_payload: u32,
        /// Capabilities granted (a subset of those asked).
        capabilities: Capabilities,
    }

    /// Authentication failed; a close follows.
    AuthError = 0x03, "AUTH_ERROR", ServerToClient {
        /// Why.
        code: ErrorCode,
        /// Wait at least this long before reconnecting (ms, 0: no advice).
        retry_after_ms: u32,
        /// Human-readable detail.
        text: Note,
    }

    /// Heartbeat and round-trip probe.
    Ping = 0x04, "PING", Both {
        /// Echoed in PONG.
        nonce: u64,
    }

    /// Answer to PING.
    Pong = 0x05, "PONG", Both {
        /// The PING's nonce.
        nonce: u64,
    }

    /// The node is going away: reconnect elsewhere and resume.
    GoAway = 0x06, "GOAWAY", ServerToClient {
        /// Why.
        reason: GoAwayReason,
        /// Reconnect after this delay (ms; spreads the herd).
        reconnect_after_ms: u32,
        /// The server's record of the last acked seq; resume after it.
        resume_after: Seq,
        /// Where to reconnect (`host:port`), or empty for the usual address.
        redirect: Note,
    }

    /// A request failed, or the session is about to close.
    Error = 0x07, "ERROR", ServerToClient {
        /// Why.
        code: ErrorCode,
        /// Whether the same request may succeed later.
        retryable: bool,
        /// Retry after this delay (ms), 0 for no advice.
        retry_after_ms: u32,
        /// The `request` it answers (group and prekey requests), 0 for the
        /// session. A SEND is never answered with ERROR, only with SEND_ERROR.
        reference: u64,
        /// Human-readable detail.
        text: Note,
    }

    /// A message to a user or a group.
    SendMessage = 0x10, "SEND", ClientToServer {
        /// Chosen by the client, unique per device; retries reuse it.
        client_id: u64,
        /// Recipient.
        to: Conversation,
        /// Ciphertext, never read by the server; the server stores at most
        /// `AUTH_OK.max_payload` bytes.
        payload: SendPayload,
    }

    /// The message is durably stored (✓).
    SendAck = 0x11, "SEND_ACK", ServerToClient {
        /// The SEND's client id.
        client_id: u64,
        /// Id the store assigned.
        message_id: MessageId,
        /// Position in the conversation.
        conv_seq: ConvSeq,
        /// When the store accepted it.
        server_time: Timestamp,
        /// True when this client id was already stored (a retry).
        duplicate: bool,
    }

    /// The message was not stored.
    SendError = 0x12, "SEND_ERROR", ServerToClient {
        /// The SEND's client id.
        client_id: u64,
        /// Why.
        code: ErrorCode,
        /// Retry after this delay (ms), 0 for no advice or terminal codes.
        retry_after_ms: u32,
        /// Human-readable detail.
        text: Note,
    }

    /// A message in this device's inbox.
    Deliver = 0x13, "DELIVER", ServerToClient {
        /// Inbox position; acknowledged with ACK.
        seq: Seq,
        /// The stored message.
        message_id: MessageId,
        /// Conversation, seen from this device.
        conversation: Conversation,
        /// Position in the conversation.
        conv_seq: ConvSeq,
        /// Author.
        sender: UserId,
        /// Author's device.
        sender_device: DeviceId,
        /// When the store accepted it.
        server_time: Timestamp,
        /// Ciphertext.
        payload: Payload,
    }

    /// Cumulative acknowledgement of this device's inbox.
    Ack = 0x14, "ACK", ClientToServer {
        /// Every seq up to and including this one is processed.
        up_to: Seq,
    }

    /// Read cursor of one conversation.
    Read = 0x15, "READ", ClientToServer {
        /// Conversation.
        conversation: Conversation,
        /// Read up to and including this position.
        up_to: ConvSeq,
    }

    /// Another user's delivered or read cursor moved.
    Receipt = 0x16, "RECEIPT", ServerToClient {
        /// Conversation, seen from this device.
        conversation: Conversation,
        /// Whose cursor.
        user: UserId,
        /// Which cursor.
        kind: ReceiptKind,
        /// New cursor (inclusive).
        up_to: ConvSeq,
        /// When it moved.
        at: Timestamp,
    }

    /// Start receiving PRESENCE for a user.
    PresenceSubscribe = 0x20, "PRESENCE_SUBSCRIBE", ClientToServer {
        /// User to watch.
        user: UserId,
    }

    /// Stop receiving PRESENCE for a user.
    PresenceUnsubscribe = 0x21, "PRESENCE_UNSUBSCRIBE", ClientToServer {
        /// User to stop watching.
        user: UserId,
    }

    /// Set who may see this user's presence.
    PresenceSet = 0x22, "PRESENCE_SET", ClientToServer {
        /// New visibility (applies to all the user's devices).
        visibility: Visibility,
    }

    /// A watched user's presence.
    Presence = 0x23, "PRESENCE", ServerToClient {
        /// The user.
        user: UserId,
        /// Online or offline.
        status: PresenceStatus,
        /// Last time a device was connected (ms, 0: hidden or never).
        last_seen: Timestamp,
    }

    /// This user is (or stopped) typing in a conversation.
    Typing = 0x24, "TYPING", ClientToServer {
        /// Conversation.
        conversation: Conversation,
        /// Typing now.
        active: bool,
    }

    /// Someone is (or stopped) typing in a conversation.
    TypingNotify = 0x25, "TYPING_NOTIFY", ServerToClient {
        /// Conversation, seen from this device.
        conversation: Conversation,
        /// Who.
        user: UserId,
        /// Typing now.
        active: bool,
    }

    /// Replay the inbox after a seq.
    SyncRequest = 0x30, "SYNC_REQUEST", ClientToServer {
        /// Replay entries after this seq.
        after: Seq,
        /// Entries per window (0: server default).
        window: u32,
    }

    /// One window of backlog, in seq order.
    SyncBatch = 0x31, "SYNC_BATCH", ServerToClient {
        /// Entries still pending after this window (an estimate).
        remaining: u64,
        /// The deliveries, each a DELIVER body.
        entries: List<Deliver, MAX_SYNC_BATCH>,
    }

    /// Backlog replayed; live delivery follows.
    SyncDone = 0x32, "SYNC_DONE", ServerToClient {
        /// Highest seq sent by the sync.
        head: Seq,
    }

    /// Create a group with the sender as admin.
    GroupCreate = 0x40, "GROUP_CREATE", ClientToServer {
        /// Echoed in the answer.
        request: u64,
        /// Display name.
        name: GroupName,
        /// Other members.
        members: List<UserId, MAX_MEMBERS_PER_CHANGE>,
    }

    /// Add members (admin only).
    GroupAdd = 0x41, "GROUP_ADD", ClientToServer {
        /// Echoed in the answer.
        request: u64,
        /// Group.
        group: GroupId,
        /// Users to add.
        members: List<UserId, MAX_MEMBERS_PER_CHANGE>,
    }

    /// Remove members (admin only).
    GroupRemove = 0x42, "GROUP_REMOVE", ClientToServer {
        /// Echoed in the answer.
        request: u64,
        /// Group.
        group: GroupId,
        /// Users to remove.
        members: List<UserId, MAX_MEMBERS_PER_CHANGE>,
    }

    /// Leave a group.
    GroupLeave = 0x43, "GROUP_LEAVE", ClientToServer {
        /// Echoed in the answer.
        request: u64,
        /// Group.
        group: GroupId,
    }

    /// Change a member's role (admin only).
    GroupSetRole = 0x44, "GROUP_SET_ROLE", ClientToServer {
        /// Echoed in the answer.
        request: u64,
        /// Group.
        group: GroupId,
        /// Member.
        user: UserId,
        /// New role.
        role: Role,
    }

    /// Ask for a group's name and members.
    GroupGet = 0x45, "GROUP_GET", ClientToServer {
        /// Echoed in the answer.
        request: u64,
        /// Group.
        group: GroupId,
    }

    /// A group change succeeded.
    GroupOk = 0x46, "GROUP_OK", ServerToClient {
        /// The request answered.
        request: u64,
        /// Group (new id for a create).
        group: GroupId,
        /// Membership version after the change.
        version: u64,
    }

    /// A group's name and members.
    GroupInfo = 0x47, "GROUP_INFO", ServerToClient {
        /// The request answered.
        request: u64,
        /// Group.
        group: GroupId,
        /// Membership version.
        version: u64,
        /// Display name.
        name: GroupName,
        /// Members and roles.
        members: List<Member, MAX_GROUP_MEMBERS>,
    }

    /// Publish this device's keys (replaces identity and signed prekey, adds
    /// one-time prekeys).
    PrekeyUpload = 0x50, "PREKEY_UPLOAD", ClientToServer {
        /// Echoed in the answer.
        request: u64,
        /// Long-term identity key.
        identity_key: Key,
        /// Current signed prekey.
        signed_prekey: SignedPrekey,
        /// One-time prekeys to add.
        one_time: List<OneTimePrekey, MAX_ONE_TIME_PREKEYS>,
    }

    /// Ask for a user's prekey bundles.
    PrekeyFetch = 0x51, "PREKEY_FETCH", ClientToServer {
        /// Echoed in the answer.
        request: u64,
        /// Whose.
        user: UserId,
        /// One device, or 0 for every device of the user.
        device: DeviceId,
    }

    /// Bundles for one user's devices; each consumed one one-time prekey.
    PrekeyBundles = 0x52, "PREKEY_BUNDLES", ServerToClient {
        /// The request answered.
        request: u64,
        /// Whose.
        user: UserId,
        /// One per device.
        bundles: List<DeviceBundle, MAX_DEVICES_PER_USER>,
    }

    /// The upload was stored.
    PrekeyOk = 0x53, "PREKEY_OK", ServerToClient {
        /// The request answered.
        request: u64,
        /// One-time prekeys now in stock for this device.
        stock: u32,
    }

    /// This device's one-time prekey stock is low; upload more.
    PrekeyLow = 0x54, "PREKEY_LOW", ServerToClient {
        /// One-time prekeys left.
        stock: u32,
    }

    /// Ask for a ticket to upload one encrypted blob (needs the MEDIA
    /// capability).
    MediaUpload = 0x60, "MEDIA_UPLOAD", ClientToServer {
        /// Echoed in the answer.
        request: u64,
        /// The client's id for the blob, echoed in the ticket.
        client_blob: u64,
        /// Exact size of the encrypted blob, bytes.
        size: u64,
        /// What the blob holds.
        class: MediaClass,
    }

    /// Where and how to upload the blob, and the id it will be known by.
    MediaUploadTicket = 0x61, "MEDIA_UPLOAD_TICKET", ServerToClient {
        /// The request answered.
        request: u64,
        /// The MEDIA_UPLOAD's client blob id.
        client_blob: u64,
        /// The blob's id, to put in the message that refers to it.
        media_id: MediaId,
        /// HTTP method of the upload.
        method: HttpMethod,
        /// Presigned URL of the upload.
        url: Url,
        /// Headers the upload must carry, exactly.
        headers: List<Header, MAX_TICKET_HEADERS>,
        /// The URL is refused from this time on.
        expires_at: Timestamp,
    }

    /// Ask for a ticket to download a blob (needs the MEDIA capability).
    MediaDownload = 0x62, "MEDIA_DOWNLOAD", ClientToServer {
        /// Echoed in the answer.
        request: u64,
        /// The blob's id, from the message that refers to it.
        media_id: MediaId,
    }

    /// Where to download the blob.
    MediaDownloadTicket = 0x63, "MEDIA_DOWNLOAD_TICKET", ServerToClient {
        /// The request answered.
        request: u64,
        /// The blob's size, bytes, as its uploader announced it.
        size: u64,
        /// Presigned URL of the download (`GET`, no headers required).
        url: Url,
        /// The URL is refused from this time on.
        expires_at: Timestamp,
    }
}
