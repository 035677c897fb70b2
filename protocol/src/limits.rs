//! Protocol limits of v1. `SPEC.md` has the same table; a test checks they agree.
//!
//! These are the maxima of the protocol. A server may enforce lower values (it
//! says so in config), never higher ones.

/// Lowest protocol version this crate speaks.
pub const VERSION_MIN: u8 = 1;
/// Highest protocol version this crate speaks.
pub const VERSION_MAX: u8 = 1;

/// Longest frame body, in bytes (the header is not counted).
pub const MAX_FRAME_LEN: usize = 262_144;
/// Longest WebSocket message a client may send, in bytes (close 1009 above):
/// 256 KiB + 4 KiB, room for a frame of `MAX_FRAME_LEN`, its header and a few
/// small frames.
pub const MAX_CLIENT_MESSAGE_LEN: usize = 266_240;
/// Longest WebSocket message a server may send, in bytes.
pub const MAX_SERVER_MESSAGE_LEN: usize = 1_048_576;
/// Most frames in one client WebSocket message.
pub const MAX_FRAMES_PER_MESSAGE: usize = 256;
/// Longest message payload (opaque ciphertext), in bytes. Media travels by
/// reference inside the payload, never inline.
pub const MAX_PAYLOAD: usize = 65_536;
/// Longest auth token, in bytes.
pub const MAX_TOKEN: usize = 1_024;
/// Longest human-readable text (error text, redirect hint), in UTF-8 bytes.
pub const MAX_TEXT: usize = 256;
/// Longest group name, in UTF-8 bytes.
pub const MAX_GROUP_NAME: usize = 128;
/// Most members in a group, creator included.
pub const MAX_GROUP_MEMBERS: usize = 1_024;
/// Most members named in one group create/add/remove frame (the creator is
/// implied in a create).
pub const MAX_MEMBERS_PER_CHANGE: usize = MAX_GROUP_MEMBERS - 1;
/// Most devices one user may register (servers default to fewer).
pub const MAX_DEVICES_PER_USER: usize = 16;
/// Most deliveries in one SYNC_BATCH.
pub const MAX_SYNC_BATCH: usize = 512;
/// Most one-time prekeys in one upload.
pub const MAX_ONE_TIME_PREKEYS: usize = 100;
/// Most users one session may watch with PRESENCE_SUBSCRIBE.
pub const MAX_PRESENCE_SUBSCRIPTIONS: usize = 256;
/// Longest public key, in bytes.
pub const MAX_KEY: usize = 64;
/// Longest signature, in bytes.
pub const MAX_SIGNATURE: usize = 128;

/// Longest media id (opaque, issued by the server), in bytes.
pub const MAX_MEDIA_ID: usize = 96;
/// Longest URL in a media ticket, in UTF-8 bytes.
pub const MAX_URL: usize = 2_048;
/// Most headers an upload ticket requires.
pub const MAX_TICKET_HEADERS: usize = 8;

/// Every limit by its SPEC name, for the SPEC consistency test and for tools.
pub const ALL: [(&str, usize); 21] = [
    ("VERSION_MIN", VERSION_MIN as usize),
    ("VERSION_MAX", VERSION_MAX as usize),
    ("MAX_FRAME_LEN", MAX_FRAME_LEN),
    ("MAX_CLIENT_MESSAGE_LEN", MAX_CLIENT_MESSAGE_LEN),
    ("MAX_SERVER_MESSAGE_LEN", MAX_SERVER_MESSAGE_LEN),
    ("MAX_FRAMES_PER_MESSAGE", MAX_FRAMES_PER_MESSAGE),
    ("MAX_PAYLOAD", MAX_PAYLOAD),
    ("MAX_TOKEN", MAX_TOKEN),
    ("MAX_TEXT", MAX_TEXT),
    ("MAX_GROUP_NAME", MAX_GROUP_NAME),
    ("MAX_GROUP_MEMBERS", MAX_GROUP_MEMBERS),
    ("MAX_MEMBERS_PER_CHANGE", MAX_MEMBERS_PER_CHANGE),
    ("MAX_DEVICES_PER_USER", MAX_DEVICES_PER_USER),
    ("MAX_SYNC_BATCH", MAX_SYNC_BATCH),
    ("MAX_ONE_TIME_PREKEYS", MAX_ONE_TIME_PREKEYS),
    ("MAX_PRESENCE_SUBSCRIPTIONS", MAX_PRESENCE_SUBSCRIPTIONS),
    ("MAX_KEY", MAX_KEY),
    ("MAX_SIGNATURE", MAX_SIGNATURE),
    ("MAX_MEDIA_ID", MAX_MEDIA_ID),
    ("MAX_URL", MAX_URL),
    ("MAX_TICKET_HEADERS", MAX_TICKET_HEADERS),
];
