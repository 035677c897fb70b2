//! One protocol connection: a [`Transport`] (socket, TLS, buffers), the
//! WebSocket upgrade, and a [`client::Session`] driven through HELLO, AUTH_OK
//! and heartbeats until flood closes it.
//!
//! Stages: `Connecting` (TCP) → `Upgrading` (TLS handshake and HTTP upgrade)
//! → `Authenticating` (HELLO sent) → `Live` (PING every heartbeat ±10 %) →
//! `Closing` (WebSocket close 1000 sent, waiting for the server's). Every
//! stage has a deadline, so a connection always ends. `storm` adds `Down`:
//! the socket was dropped abruptly and the session waits for its reconnect
//! time; the [`Session`] (resume cursor, dedup cursor, pending sends) and the
//! traffic survive, and the next connection resumes after the last ack.
//!
//! In the message scenarios a live connection also carries a [`Flow`]: its
//! sends (or timed PINGs) go out while the run is in its hold phase, and
//! every WebSocket message received is answered by one message holding the
//! cumulative ACK, the PONGs and the sends the window has room for (see
//! `events`).

mod events;
mod mix;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use client::{Backoff, Session};
use mio::{Registry, Token as MioToken};
use protocol::limits::MAX_SERVER_MESSAGE_LEN;
use protocol::{Capabilities, Decoder, DeviceId, Frame, Seq, Token};

use crate::stats::{Phase, Shared};
use crate::traffic::{Flow, Latencies, Mode};
use crate::transport::{TlsParams, Transport};
use crate::ws::{self, Message};

/// How long flood waits for the server's answer to its close.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A small, fast generator for WebSocket masks and heartbeat jitter
/// (xorshift64*; not for secrets).
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A fresh masking key.
    pub(crate) fn mask(&mut self) -> [u8; 4] {
        ((self.next_u64() >> 32) as u32).to_le_bytes()
    }

    /// A uniform number in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `period` scaled by a uniform factor in [0.9, 1.1) (SPEC §5: ±10 %).
    pub(crate) fn jitter(&mut self, period: Duration) -> Duration {
        period.mul_f64(0.9 + 0.2 * self.unit())
    }
}

/// Per-thread state a connection borrows while it handles an event.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    /// Read buffer (plaintext and ciphertext alike).
    pub(crate) scratch: &'a mut [u8],
    /// Where outgoing frames are assembled before they go to the socket or TLS.
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) rng: &'a mut Rng,
    pub(crate) now: Instant,
    /// The `Sec-WebSocket-Accept` every upgrade must answer.
    pub(crate) accept: &'a str,
    /// This thread's latency histograms.
    pub(crate) latencies: &'a mut Latencies,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Failed or lost, with a short kind for the error counters.
    Error(String),
    /// Closed by flood at the end of the hold; `clean` if the server answered
    /// the close with its own.
    Closed { clean: bool },
}

impl End {
    pub(crate) fn error(kind: impl Into<String>) -> Self {
        Self::Error(kind.into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Upgrading,
    Authenticating,
    Live,
    Closing,
    /// Storm: dropped, waiting for the reconnect time (no socket).
    Down,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Self::Connecting => "connect",
            Self::Upgrading => "upgrade",
            Self::Authenticating => "auth",
            Self::Live => "live",
            Self::Closing => "close",
            Self::Down => "down",
        }
    }
}

/// Where and how a connection connects.
#[derive(Debug)]
pub(crate) struct OpenParams<'a> {
    pub(crate) target: SocketAddr,
    pub(crate) source: Option<IpAddr>,
    /// TLS settings and the name to verify, for wss.
    pub(crate) tls: Option<TlsParams>,
    pub(crate) path: &'a str,
    /// Deadline from the connect to AUTH_OK.
    pub(crate) handshake_timeout: Duration,
}

/// One connection and its session.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The socket (`None` while down).
    t: Option<Transport>,
    stage: Stage,
    session: Session,
    /// The upgrade request, sent once TCP is up.
    request: Vec<u8>,
    started: Instant,
    /// When [`Conn::on_timer`] must run next: the handshake deadline before
    /// AUTH_OK, the next PING (or rate-mode send) while live, the close
    /// deadline while closing, the reconnect time while down.
    pub(crate) deadline: Instant,
    heartbeat: Duration,
    /// When the next heartbeat PING is due (live).
    next_ping: Instant,
    /// Message traffic.
    flow: Option<Box<Flow>>,
    /// Whether the session is authenticated on this connection (it counts
    /// as live until it ends or drops).
    pub(crate) authenticated: bool,
    /// Index of the session in its process.
    pub(crate) index: u64,
    /// Storm: when the current reconnect began (until its SYNC_DONE).
    reconnect_started: Option<Instant>,
    /// Storm: the delays between failed reconnect attempts in a row, as a
    /// client spreads them (SPEC §11: from about 1 s, doubling to 60 s,
    /// jittered, never below the server's advice).
    backoff: Backoff,
    /// The server's advice after the last refused attempt (AUTH_ERROR's
    /// `retry_after_ms`).
    retry_after: Duration,
    /// Storm with `--fleet`: targets moved on from (each failed attempt or
    /// lost connection moves to the next one).
    pub(crate) hops: u32,
    /// Storm: the session's first connection was refused with a retry hint
    /// and is being tried again (not a storm reconnect).
    retrying_first: bool,
}

impl Conn {
    /// Starts a non-blocking connect for session `index` and prepares the
    /// session (HELLO with `token`, device 1). Fails with an error kind if
    /// the socket cannot be made or connected. `flow`: its traffic, if any.
    pub(crate) fn open(
        params: &OpenParams<'_>,
        token: Token,
        flow: Option<Flow>,
        index: u64,
        now: Instant,
    ) -> Result<Self, String> {
        let t = Transport::open(params.target, params.source, params.tls.as_ref())?;
        // Client ids from the wall clock in microseconds: unique for the
        // device across runs against the same node (a reused id would be
        // answered as a duplicate and not delivered).
        let first_client_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(1));
        let mixed = flow.as_ref().is_some_and(|flow| flow.mix.is_some());
        let capabilities = if mixed { mix::CAPABILITIES } else { Capabilities(0) };
        let session =
            Session::new(DeviceId(1), token, capabilities, Seq(0)).with_first_client_id(first_client_id);
        Ok(Self {
            t: Some(t),
            stage: Stage::Connecting,
            session,
            request: ws::upgrade_request(&params.target.to_string(), params.path, ws::UPGRADE_KEY),
            started: now,
            deadline: now + params.handshake_timeout,
            heartbeat: Duration::ZERO,
            next_ping: now,
            flow: flow.map(Box::new),
            authenticated: false,
            index,
            reconnect_started: None,
            hops: 0,
            backoff: Backoff::default(),
            retry_after: Duration::ZERO,
            retrying_first: false,
        })
    }

    /// Registers the socket with this thread's poll.
    pub(crate) fn register(&mut self, registry: &Registry, token: MioToken) -> Result<(), String> {
        match self.t.as_mut() {
            Some(t) => t.register(registry, token),
            None => Err("register_no_socket".to_owned()),
        }
    }

    /// Entries the session core dropped as replays so far.
    pub(crate) fn replays_dropped(&self) -> u64 {
        self.session.duplicates_dropped()
    }

    /// The socket is readable or writable (or both): make what progress there is.
    pub(crate) fn on_ready(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        if self.stage == Stage::Down {
            return Ok(());
        }
        if self.stage == Stage::Connecting && !self.check_connected(ctx)? {
            return Ok(());
        }
        let eof = self.io()?.read(ctx.scratch, ctx.shared).map_err(End::Error)?;
        self.process(ctx)?;
        self.flush()?;
        if eof {
            return Err(match self.stage {
                Stage::Closing => End::Closed { clean: false },
                stage => End::error(format!("eof_{}", stage.name())),
            });
        }
        Ok(())
    }

    /// The deadline passed (or a stale timer fired: nothing to do then).
    /// A session down for a storm is reconnected by the engine instead.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        if ctx.now < self.deadline {
            return Ok(());
        }
        match self.stage {
            Stage::Connecting | Stage::Upgrading | Stage::Authenticating => {
                Err(End::error(format!("timeout_{}", self.stage.name())))
            }
            Stage::Live => {
                let mut frames = Vec::new();
                if ctx.now >= self.next_ping {
                    let (_, ping) = self.session.ping();
                    frames.push(ping);
                    ctx.shared.pings_sent.fetch_add(1, Relaxed);
                    self.next_ping = ctx.now + ctx.rng.jitter(self.heartbeat);
                }
                self.traffic_frames(ctx, &mut frames);
                if let Some(flow) = self.flow.as_deref_mut() {
                    frames.extend(mix::final_sync_frame(flow, &mut self.session, ctx.now));
                    let role =
                        flow.group.as_mut().filter(|role| role.retry_at.is_some_and(|at| ctx.now >= at));
                    if let Some(role) = role {
                        role.retry_at = None;
                        self.setup(ctx)?;
                    }
                }
                if !frames.is_empty() {
                    self.send_frames(frames.into_iter(), ctx)?;
                }
                self.reschedule();
                self.flush()
            }
            Stage::Closing => Err(End::Closed { clean: false }),
            Stage::Down => Ok(()),
        }
    }

    /// The hold began: start sending if live.
    pub(crate) fn start_traffic(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        if self.stage != Stage::Live || self.flow.as_ref().is_none_or(|flow| flow.started) {
            return Ok(());
        }
        let mut frames = Vec::new();
        self.traffic_frames(ctx, &mut frames);
        if !frames.is_empty() {
            self.send_frames(frames.into_iter(), ctx)?;
        }
        self.reschedule();
        self.flush()
    }

    /// Group setup: a creator sends GROUP_CREATE naming the other members.
    pub(crate) fn setup(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        if self.stage != Stage::Live {
            return Ok(());
        }
        let Some(role) = self.flow.as_deref_mut().and_then(|flow| flow.group.as_mut()) else { return Ok(()) };
        if role.members.is_empty() || role.request.is_some() {
            return Ok(());
        }
        let name = format!("flood-{}", role.index);
        let (request, frame) =
            self.session.group_create(&name, &role.members).map_err(|_| End::error("group_create_encode"))?;
        role.request = Some(request);
        self.send_frames(std::iter::once(frame), ctx)?;
        self.flush()
    }

    /// Live: the next timer is the next PING, the next rate-mode send or
    /// a GROUP_CREATE to send again.
    fn reschedule(&mut self) {
        let flow = self.flow.as_deref();
        let next_send = flow.and_then(mix::next_send);
        let retry = flow.and_then(|flow| flow.group.as_ref()?.retry_at);
        self.deadline = [next_send, retry].into_iter().flatten().fold(self.next_ping, Instant::min);
    }

    /// The hold is over: close a live session with 1000 and wait for the
    /// server's close; end a session still in its handshake (or down) at once.
    pub(crate) fn start_close(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        if self.stage != Stage::Live {
            return Err(End::error(format!("unfinished_{}_at_close", self.stage.name())));
        }
        self.send_control(ws::OP_CLOSE, &ws::close_payload(ws::CLOSE_NORMAL), ctx);
        self.stage = Stage::Closing;
        self.deadline = ctx.now + CLOSE_TIMEOUT;
        self.flush()
    }

    /// Whether the session is down, waiting for its reconnect.
    pub(crate) fn is_down(&self) -> bool {
        self.stage == Stage::Down
    }

    /// Storm: drops a live session abruptly (no close frame, a TCP reset)
    /// and schedules its reconnect at `reconnect_at`. Returns whether it
    /// was live (and is now down).
    pub(crate) fn storm_drop(&mut self, shared: &Shared, reconnect_at: Instant) -> bool {
        if self.stage != Stage::Live {
            return false;
        }
        self.go_down(shared, reconnect_at);
        shared.traffic.storm_dropped.fetch_add(1, Relaxed);
        true
    }

    fn go_down(&mut self, shared: &Shared, reconnect_at: Instant) {
        if let Some(t) = self.t.take() {
            t.abort();
        }
        if self.authenticated {
            self.authenticated = false;
            shared.live.fetch_sub(1, Relaxed);
        }
        self.session.on_disconnect();
        self.stage = Stage::Down;
        self.deadline = reconnect_at;
    }

    /// Storm: the reconnect time came; opens a new connection (the same
    /// session, so HELLO resumes after the last ack). The caller registers it.
    pub(crate) fn reconnect(&mut self, params: &OpenParams<'_>, now: Instant) -> Result<(), String> {
        self.t = Some(Transport::open(params.target, params.source, params.tls.as_ref())?);
        self.stage = Stage::Connecting;
        self.request = ws::upgrade_request(&params.target.to_string(), params.path, ws::UPGRADE_KEY);
        self.started = now;
        self.deadline = now + params.handshake_timeout;
        if !self.retrying_first {
            self.reconnect_started.get_or_insert(now);
        }
        Ok(())
    }

    /// Storm: the session's first connection was refused before AUTH_OK
    /// with a retry hint (OVERLOADED: the node's login slots were full);
    /// go down and try again after the client's backoff, as the SPEC's
    /// clients do, until it is in (the ramp waits for it). Other failures
    /// of a first connection end it. Returns false if this is not such a
    /// refusal.
    pub(crate) fn retry_first_connect(&mut self, shared: &Shared, now: Instant) -> bool {
        let storm = self.flow.as_ref().is_some_and(|flow| flow.spec.mode == Mode::Storm);
        if !storm || self.reconnect_started.is_some() || self.authenticated || self.retry_after.is_zero() {
            return false;
        }
        self.retrying_first = true;
        let delay = self.backoff.next_delay_at_least(std::mem::take(&mut self.retry_after));
        self.go_down(shared, now + delay);
        true
    }

    /// Storm: a reconnect failed before AUTH_OK (or a reconnected session
    /// was lost before its sync): go down again and retry after the
    /// client's backoff, as often as it takes (the storm's timeout ends the
    /// run). Returns false if the session is not reconnecting.
    pub(crate) fn retry_reconnect(&mut self, shared: &Shared, now: Instant) -> bool {
        if self.reconnect_started.is_none() {
            return false;
        }
        shared.traffic.reconnect_retries.fetch_add(1, Relaxed);
        if self.in_fleet() {
            self.hops += 1;
        }
        let delay = self.backoff.next_delay_at_least(std::mem::take(&mut self.retry_after));
        self.go_down(shared, now + delay);
        true
    }

    /// Storm: the session is back (AUTH_OK): the next failure starts the
    /// backoff from its first delay.
    pub(crate) fn reset_backoff(&mut self) {
        self.backoff.reset();
    }

    /// Storm with `--fleet`: the connection of a live session was lost (its
    /// node died): it goes down and reconnects to the next target within a
    /// second (spread by session), as a client with a node list does, and
    /// counts as dropped until it is back and synced. False otherwise.
    pub(crate) fn lost_in_fleet(&mut self, shared: &Shared, now: Instant) -> bool {
        if !self.in_fleet() || !self.authenticated || self.reconnect_started.is_some() {
            return false;
        }
        shared.traffic.storm_dropped.fetch_add(1, Relaxed);
        shared.traffic.connections_lost.fetch_add(1, Relaxed);
        self.hops += 1;
        self.reconnect_started = Some(now);
        self.go_down(shared, now + Duration::from_millis(self.index % 1_000));
        true
    }

    fn in_fleet(&self) -> bool {
        self.flow.as_ref().is_some_and(|flow| flow.spec.fleet)
    }

    fn io(&mut self) -> Result<&mut Transport, End> {
        self.t.as_mut().ok_or_else(|| End::error("no_socket"))
    }

    /// Whether the non-blocking connect completed; sends the upgrade if so.
    fn check_connected(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, End> {
        if !self.io()?.check_connected().map_err(End::Error)? {
            return Ok(false);
        }
        ctx.shared.connected.fetch_add(1, Relaxed);
        self.stage = Stage::Upgrading;
        let request = std::mem::take(&mut self.request);
        self.io()?.write_plaintext(&request).map_err(End::Error)?;
        Ok(true)
    }

    /// Parses what the read buffer holds: the upgrade answer, then WebSocket
    /// messages.
    fn process(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        loop {
            match self.stage {
                Stage::Connecting | Stage::Down => break,
                Stage::Upgrading => {
                    let t = self.io()?;
                    if t.tls_handshaking() {
                        break;
                    }
                    match ws::parse_upgrade_response(&t.inbuf, ctx.accept) {
                        Ok(None) => break,
                        Ok(Some(head)) => {
                            bytes::Buf::advance(&mut t.inbuf, head);
                            ctx.shared.upgraded.fetch_add(1, Relaxed);
                            self.stage = Stage::Authenticating;
                            let hello = self.session.hello();
                            self.send_frames(std::iter::once(hello), ctx)?;
                        }
                        Err(e) => return Err(End::error(e.kind())),
                    }
                }
                Stage::Authenticating | Stage::Live | Stage::Closing => {
                    match self.io()?.next_message(MAX_SERVER_MESSAGE_LEN).map_err(End::Error)? {
                        None => break,
                        Some(message) => self.on_message(message, ctx)?,
                    }
                }
            }
        }
        if let Some(t) = self.t.as_mut() {
            t.shrink();
        }
        Ok(())
    }

    fn on_message(&mut self, message: Message, ctx: &mut Ctx<'_>) -> Result<(), End> {
        match message {
            Message::Binary(bytes) => {
                if self.stage == Stage::Closing {
                    return Ok(());
                }
                for frame in Decoder::for_server_messages().message(bytes) {
                    let frame = frame.map_err(|_| End::error("protocol_decode"))?;
                    self.session.handle_frame(frame).map_err(|_| End::error("protocol_unexpected_frame"))?;
                }
                self.drain_session(ctx)
            }
            Message::Text => Err(End::error("ws_text_message")),
            Message::Ping(payload) => {
                self.send_control(ws::OP_PONG, &payload, ctx);
                Ok(())
            }
            Message::Pong => Ok(()),
            Message::Close(code) => {
                if self.stage == Stage::Closing {
                    return Err(End::Closed { clean: true });
                }
                // Answer the close as RFC 6455 asks, then end.
                let echo = code.map(ws::close_payload);
                self.send_control(ws::OP_CLOSE, echo.as_ref().map_or(&[][..], |c| &c[..]), ctx);
                let _ = self.flush();
                let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
                Err(End::error(format!("closed_{code}")))
            }
        }
    }

    /// Sends `frames` batched in one binary message.
    fn send_frames(&mut self, frames: impl Iterator<Item = Frame>, ctx: &mut Ctx<'_>) -> Result<(), End> {
        let mut message = Vec::new();
        for frame in frames {
            frame.encode(&mut message).map_err(|_| End::error("encode"))?;
        }
        let mask = ctx.rng.mask();
        self.io()?.send_frame(ws::OP_BINARY, &message, mask, ctx.out).map_err(End::Error)
    }

    /// Sends a control frame (best effort: a failure shows on the next read).
    fn send_control(&mut self, opcode: u8, payload: &[u8], ctx: &mut Ctx<'_>) {
        let mask = ctx.rng.mask();
        if let Some(t) = self.t.as_mut() {
            let _ = t.send_frame(opcode, payload, mask, ctx.out);
        }
    }

    /// Writes what is queued until the socket is full.
    fn flush(&mut self) -> Result<(), End> {
        match self.t.as_mut() {
            Some(t) => t.flush().map_err(End::Error),
            None => Ok(()),
        }
    }

    /// Whether the run is in a phase where traffic flows.
    fn sending_phase(shared: &Shared) -> bool {
        shared.phase() == Phase::Hold
    }
}
