//! One session's slot in the hub's slab: the session core, the messaging
//! state the hub keeps for it, and the driver's part of the connection (its
//! socket and buffers, opaque to the hub). One slot per session keeps an
//! idle session to one slab entry; its size is a published figure
//! (`benches/RESULTS.md`, idle sessions) and the driver's test guards it.

use std::time::Instant;

use gateway_auth::Fingerprint;
use gateway_core::Session;
use protocol::{Capabilities, Conversation, DeviceId, UserId};

use crate::acks::AckRelay;

/// A session, its messaging state and the driver's connection `C`.
#[derive(Debug)]
pub(crate) struct Slot<C> {
    pub(crate) session: Session,
    /// Distinguishes this session from earlier ones with the same slab key.
    pub(crate) generation: u64,
    /// Who the session is ([`Slot::identity`]): kept as plain fields, not
    /// an `Option` of a pair, so that the flag shares the slot's padding
    /// (8 bytes less per session).
    user: UserId,
    device: DeviceId,
    identified: bool,
    /// The fingerprint of the token that identified the session, remembered
    /// when it closes so that its return skips the signature check
    /// (`gateway_auth::RecentTokens`; 16 bytes per session). Meaningful
    /// only while identified.
    pub(crate) token: Fingerprint,
    /// Whether the session holds one of the worker's login slots (from
    /// HELLO to the store's answer to its Connect, see `logins`).
    pub(crate) logging_in: bool,
    /// What the metrics last counted for this session: its state label and
    /// its queued output bytes (gauges move by differences).
    pub(crate) reported: (Option<gateway_admin::SessionState>, u32),
    /// Optional traffic granted at AUTH_OK (receipts, presence, typing).
    pub(crate) capabilities: u8,
    /// When the device connected before this session, in whole seconds since
    /// the epoch (rounded down, so a receipt at the edge is sent again rather
    /// than missed; 4 bytes fit the slot's padding): cursors that moved since
    /// then are sent after the first sync.
    pub(crate) previous_connect_secs: u32,
    /// Messaging state most sessions never need (boxed, created on first
    /// use).
    pub(crate) extras: Option<Box<Extras>>,
    /// The device's ACKs on their way to the store (8 bytes: the slot's
    /// padding has 5 to spare and the highest waiting seq needs 8).
    pub(crate) acks: AckRelay,
    /// The driver's part.
    pub(crate) conn: C,
}

/// Per-session messaging state beyond delivery.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// Users whose presence this session watches (at most
    /// MAX_PRESENCE_SUBSCRIPTIONS).
    pub(crate) watching: Vec<UserId>,
    /// Last TYPING forwarded per conversation (a few, most recent).
    pub(crate) typing: Vec<(Conversation, Instant)>,
}

impl<C> Slot<C> {
    pub(crate) fn new(session: Session, generation: u64, conn: C) -> Self {
        Self {
            session,
            generation,
            user: UserId(0),
            device: DeviceId(0),
            identified: false,
            token: Fingerprint::default(),
            logging_in: false,
            reported: (None, 0),
            capabilities: 0,
            previous_connect_secs: 0,
            extras: None,
            acks: AckRelay::default(),
            conn,
        }
    }

    /// Who the session is: set once its token is verified; cleared when a
    /// newer connection of the device replaces it (that one owns the
    /// directory entry) or the store refuses the login.
    pub(crate) fn identity(&self) -> Option<(UserId, DeviceId)> {
        self.identified.then_some((self.user, self.device))
    }

    pub(crate) fn set_identity(&mut self, identity: Option<(UserId, DeviceId)>) {
        self.identified = identity.is_some();
        if let Some((user, device)) = identity {
            (self.user, self.device) = (user, device);
        }
    }

    /// The session's extras, created on first use.
    pub(crate) fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// Whether the client asked for (and was granted) `capability`.
    pub(crate) fn wants(&self, capability: Capabilities) -> bool {
        Capabilities(u64::from(self.capabilities)).contains(capability)
    }
}
