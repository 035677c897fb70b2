//! What a session call gets from its worker: the time, the worker's shared
//! configuration, the observer that counts, and the buffer actions go to.
//!
//! Sessions own none of these: keeping them per worker is what keeps an idle
//! session small (no config copy, no action queue, no metrics handle).

use std::time::{Duration, Instant};

use gateway_ws::HandshakeConfig;
use protocol::{Decoder, Frame, FrameKind};

use crate::outbound::Limits;
use crate::rate::RateLimit;

/// Session settings shared by every session of a worker.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP upgrade rules (path, `/echo`, request size).
    pub handshake: HandshakeConfig,
    /// Time allowed from accept to a complete upgrade request.
    pub handshake_timeout: Duration,
    /// Time allowed from the upgrade to HELLO.
    pub auth_timeout: Duration,
    /// Heartbeat interval announced in AUTH_OK.
    pub heartbeat: Duration,
    /// Silent heartbeat intervals before the session is closed (4006).
    pub heartbeat_misses: u32,
    /// Longest client WebSocket message (1009 above).
    pub max_message: usize,
    /// Outbound queue bounds of an authenticated session.
    pub outbound: Limits,
    /// Outbound bytes a session may have queued before it is authenticated
    /// (pongs, AUTH_ERROR): above, it is closed with 1008.
    pub outbound_preauth: usize,
    /// Longest client message on the `/echo` route; its outbound bound is
    /// `outbound.max_bytes` plus this, room for one whole echo.
    pub echo_max_message: usize,
    /// Time unsent output may make no progress before the session is cut.
    pub write_stall: Duration,
    /// Time to wait for the client's close frame after sending ours.
    pub linger: Duration,
    /// Decoder for client messages.
    pub decoder: Decoder,
    /// Frame-rate limit of a session (`None`: unlimited): every protocol frame
    /// of an authenticated session, and WebSocket pings and pongs in every
    /// state.
    pub rate: Option<RateLimit>,
    /// Entries per SYNC_BATCH when the client asks for the server default
    /// (at most `MAX_SYNC_BATCH`).
    pub sync_window: u32,
}

impl Config {
    /// Silence that ends a session.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat.saturating_mul(self.heartbeat_misses)
    }
}

/// What the session asks of its worker.
#[derive(Debug)]
pub enum Action {
    /// HELLO arrived: verify it, then call `Session::accept` or
    /// `Session::reject`. Nothing else is read meanwhile.
    Verify(Box<protocol::Hello>),
    /// An authenticated client frame for the worker to route (SEND, READ,
    /// TYPING, PRESENCE_*, GROUP_*, PREKEY_*). ACK and SYNC_REQUEST are the
    /// session's own (they become `Acked` and `ReadInbox`).
    Frame(Frame),
    /// Read the device's inbox after `after` (at most `limit` entries) and
    /// answer with `Session::handle_page` and the same `epoch`.
    ReadInbox {
        /// Entries with seq strictly above this.
        after: protocol::Seq,
        /// Most entries.
        limit: u32,
        /// Echo in `handle_page`.
        epoch: u8,
    },
    /// The client acknowledged its inbox up to here: tell the store.
    Acked(protocol::Seq),
    /// The first sync after authentication is done: send the cursors that
    /// moved while the device was away.
    Synced,
    /// Live delivery is paused for this session (slow reader).
    LivePaused,
    /// Live delivery may resume (the messaging layer resyncs from the store).
    LiveResumed,
    /// The session is over: write what is queued if the socket allows, then
    /// close it and forget the session.
    Close,
}

/// Counters a session reports; the worker maps them onto its metrics.
/// Every method has an empty default, so tests implement only what they check.
pub trait Observer {
    /// An upgrade was refused or timed out (`reason` is a stable label).
    fn handshake_failed(&mut self, _reason: &'static str) {}
    /// Authentication failed (`reason` is a stable label).
    fn auth_failed(&mut self, _reason: &'static str) {}
    /// A client frame was decoded.
    fn frame_in(&mut self, _kind: FrameKind) {}
    /// A frame was queued for the client.
    fn frame_out(&mut self, _kind: FrameKind) {}
    /// A frame was dropped or refused by the outbound policy.
    fn dropped(&mut self, _reason: &'static str) {}
    /// The session closed with this WebSocket close code (0: no close frame).
    fn closed(&mut self, _code: u16) {}
}

/// An observer that counts nothing.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// One call's context.
#[derive(Debug)]
pub struct Ctx<'a, O> {
    /// The time of this call.
    pub now: Instant,
    /// Worker-wide settings.
    pub config: &'a Config,
    /// Where counters go.
    pub observer: &'a mut O,
    /// Where actions go; the worker drains it after each call.
    pub actions: &'a mut Vec<Action>,
}
