//! One flood connection: a non-blocking socket bound to a source address, the
//! optional TLS layer, the WebSocket upgrade, and a [`client::Session`] driven
//! through HELLO, AUTH_OK and heartbeats until flood closes it.
//!
//! Stages: `Connecting` (TCP) → `Upgrading` (TLS handshake and HTTP upgrade)
//! → `Authenticating` (HELLO sent) → `Live` (PING every heartbeat ±10 %) →
//! `Closing` (WebSocket close 1000 sent, waiting for the server's). Every
//! stage has a deadline, so a connection always ends.
//!
//! In the `chat` and `sync` scenarios a live connection also carries a
//! [`Flow`]: its sends (or timed PINGs) go out while the run is in its hold
//! phase, and every WebSocket message received is answered by one message
//! holding the cumulative ACK, the PONGs and the sends the window has room
//! for.

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, BytesMut};
use client::{Event, Session};
use mio::net::TcpStream;
use protocol::limits::MAX_SERVER_MESSAGE_LEN;
use protocol::{Capabilities, Decoder, DeviceId, ErrorCode, Frame, Seq, Token};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use socket2::{Domain, Protocol, Socket, Type};

use crate::stats::{Phase, Shared};
use crate::traffic::{self, Flow, Latencies, Mode};
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

    /// `period` scaled by a uniform factor in [0.9, 1.1) (SPEC §5: ±10 %).
    pub(crate) fn jitter(&mut self, period: Duration) -> Duration {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        period.mul_f64(0.9 + 0.2 * unit)
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
    /// This thread's latency histograms (chat).
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
    fn error(kind: impl Into<String>) -> Self {
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
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Self::Connecting => "connect",
            Self::Upgrading => "upgrade",
            Self::Authenticating => "auth",
            Self::Live => "live",
            Self::Closing => "close",
        }
    }
}

/// What [`Conn::open`] needs besides the session.
#[derive(Debug)]
pub(crate) struct OpenParams<'a> {
    pub(crate) target: SocketAddr,
    pub(crate) source: Option<IpAddr>,
    /// TLS settings and the name to verify, for wss.
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub(crate) path: &'a str,
    /// Deadline from the connect to AUTH_OK.
    pub(crate) handshake_timeout: Duration,
}

/// One connection and its session.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    tls: Option<Box<ClientConnection>>,
    stage: Stage,
    session: Session,
    /// Bytes received and not yet parsed (plaintext).
    inbuf: BytesMut,
    /// Plaintext bytes the socket did not take yet (plain ws only; rustls
    /// buffers its own records).
    outbuf: Vec<u8>,
    reader: ws::MessageReader,
    /// The upgrade request, sent once TCP is up.
    request: Vec<u8>,
    started: Instant,
    /// When [`Conn::on_timer`] must run next: the handshake deadline before
    /// AUTH_OK, the next PING (or rate-mode send) while live, the close
    /// deadline while closing.
    pub(crate) deadline: Instant,
    heartbeat: Duration,
    /// When the next heartbeat PING is due (live).
    next_ping: Instant,
    /// Chat and sync traffic.
    flow: Option<Box<Flow>>,
    /// Whether AUTH_OK arrived (the session counts as live until it ends).
    pub(crate) authenticated: bool,
}

impl Conn {
    /// Creates a socket bound to `source`, starts a non-blocking connect to
    /// `target` and prepares the session (HELLO with `token`, device 1).
    /// Fails with an error kind if the socket cannot be made or connected.
    /// `flow`: the chat or sync traffic of this session, if any.
    pub(crate) fn open(
        params: &OpenParams<'_>,
        token: Token,
        flow: Option<Flow>,
        now: Instant,
    ) -> Result<Self, String> {
        let stream = connect(params.target, params.source).map_err(|e| io_kind("connect", &e))?;
        let tls = match &params.tls {
            Some((config, name)) => Some(Box::new(
                ClientConnection::new(Arc::clone(config), name.clone()).map_err(|e| tls_kind(&e))?,
            )),
            None => None,
        };
        // Client ids from the wall clock in microseconds: unique for the
        // device across runs against the same node (a reused id would be
        // answered as a duplicate and not delivered).
        let first_client_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(1));
        let session =
            Session::new(DeviceId(1), token, Capabilities(0), Seq(0)).with_first_client_id(first_client_id);
        Ok(Self {
            stream,
            tls,
            stage: Stage::Connecting,
            session,
            inbuf: BytesMut::new(),
            outbuf: Vec::new(),
            reader: ws::MessageReader::default(),
            request: ws::upgrade_request(&params.target.to_string(), params.path, ws::UPGRADE_KEY),
            started: now,
            deadline: now + params.handshake_timeout,
            heartbeat: Duration::ZERO,
            next_ping: now,
            flow: flow.map(Box::new),
            authenticated: false,
        })
    }

    /// The socket is readable or writable (or both): make what progress there is.
    pub(crate) fn on_ready(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        if self.stage == Stage::Connecting && !self.check_connected(ctx)? {
            return Ok(());
        }
        let eof = self.read(ctx)?;
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
                if !frames.is_empty() {
                    self.send_frames(frames.into_iter(), ctx)?;
                }
                self.reschedule();
                self.flush()
            }
            Stage::Closing => Err(End::Closed { clean: false }),
        }
    }

    /// The hold began (chat): start sending if live.
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

    /// Live: the next timer is the next PING or the next rate-mode send.
    fn reschedule(&mut self) {
        let next_send = self.flow.as_ref().and_then(|flow| flow.next_send);
        self.deadline = next_send.map_or(self.next_ping, |send| send.min(self.next_ping));
    }

    /// Appends the sends (or timed PINGs) due now to `frames`: while the
    /// run is in its hold, as many as the window has room for (rate mode:
    /// those whose time has come).
    fn traffic_frames(&mut self, ctx: &mut Ctx<'_>, frames: &mut Vec<Frame>) {
        let Some(flow) = self.flow.as_deref_mut() else { return };
        if flow.spec.mode == Mode::Sync || ctx.shared.phase() != Phase::Hold {
            flow.next_send = None;
            return;
        }
        let now = Instant::now();
        if !flow.started {
            flow.started = true;
            if let Some(interval) = flow.spec.interval {
                // Spread the sessions over one interval.
                let unit = (ctx.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                flow.next_send = Some(now + interval.mul_f64(unit));
                return;
            }
        }
        let stamp = flow.spec.stamp(now);
        let shared: &Shared = ctx.shared;
        let counters = &shared.traffic;
        loop {
            if !flow.has_room() {
                break;
            }
            if let (Some(interval), Some(due)) = (flow.spec.interval, flow.next_send) {
                if due > now {
                    break;
                }
                // More than a second behind: skip ahead rather than burst.
                let next = due + interval;
                flow.next_send =
                    Some(if next + Duration::from_secs(1) < now { now + interval } else { next });
            }
            match flow.spec.mode {
                Mode::Send => {
                    let Some(payload) = flow.payload(stamp) else { break };
                    let (client_id, frame) = self.session.send(flow.to(), payload);
                    flow.sent(client_id, stamp);
                    frames.push(frame);
                }
                Mode::Ping => frames.push(flow.ping(stamp)),
                Mode::Sync => break,
            }
            counters.sent.fetch_add(1, Relaxed);
        }
    }

    /// The hold is over: close a live session with 1000 and wait for the
    /// server's close; end a session still in its handshake at once.
    pub(crate) fn start_close(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        if self.stage != Stage::Live {
            return Err(End::error(format!("unfinished_{}_at_close", self.stage.name())));
        }
        self.send_control(ws::OP_CLOSE, &ws::close_payload(ws::CLOSE_NORMAL), ctx);
        self.stage = Stage::Closing;
        self.deadline = ctx.now + CLOSE_TIMEOUT;
        self.flush()
    }

    /// Whether the non-blocking connect completed (mio's recipe: a pending
    /// error fails it, `NotConnected` from `peer_addr` means not yet).
    fn check_connected(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, End> {
        if let Some(err) = self.stream.take_error().map_err(|e| End::error(io_kind("connect", &e)))? {
            return Err(End::error(io_kind("connect", &err)));
        }
        match self.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(End::error(io_kind("connect", &e))),
        }
        ctx.shared.connected.fetch_add(1, Relaxed);
        self.stage = Stage::Upgrading;
        let request = std::mem::take(&mut self.request);
        self.write_plaintext(&request)?;
        Ok(true)
    }

    /// Reads everything the socket has into `inbuf` (through TLS for wss).
    /// Returns whether the peer closed its side.
    fn read(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, End> {
        match self.tls.as_deref_mut() {
            None => loop {
                match self.stream.read(ctx.scratch) {
                    Ok(0) => return Ok(true),
                    Ok(n) => self.inbuf.extend_from_slice(ctx.scratch.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(End::error(io_kind("read", &e))),
                }
            },
            Some(tls) => loop {
                match tls.read_tls(&mut self.stream) {
                    Ok(0) => {
                        drain_plaintext(tls, &mut self.inbuf, ctx.scratch)?;
                        return Ok(true);
                    }
                    Ok(_) => {
                        tls.process_new_packets().map_err(|e| {
                            // Send the alert rustls queued, for the server's log.
                            let _ = tls.write_tls(&mut self.stream);
                            let kind = tls_kind(&e);
                            ctx.shared.detail(&kind, &e.to_string());
                            End::error(kind)
                        })?;
                        if drain_plaintext(tls, &mut self.inbuf, ctx.scratch)? {
                            return Ok(true);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(End::error(io_kind("read", &e))),
                }
            },
        }
    }

    /// Parses what `inbuf` holds: the upgrade answer, then WebSocket messages.
    fn process(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        loop {
            match self.stage {
                Stage::Connecting => break,
                Stage::Upgrading => {
                    if self.tls.as_ref().is_some_and(|tls| tls.is_handshaking()) {
                        break;
                    }
                    match ws::parse_upgrade_response(&self.inbuf, ctx.accept) {
                        Ok(None) => break,
                        Ok(Some(head)) => {
                            self.inbuf.advance(head);
                            ctx.shared.upgraded.fetch_add(1, Relaxed);
                            self.stage = Stage::Authenticating;
                            let hello = self.session.hello();
                            self.send_frames(std::iter::once(hello), ctx)?;
                        }
                        Err(e) => return Err(End::error(e.kind())),
                    }
                }
                Stage::Authenticating | Stage::Live | Stage::Closing => {
                    match self.reader.next(&mut self.inbuf, MAX_SERVER_MESSAGE_LEN) {
                        Ok(None) => break,
                        Ok(Some(message)) => self.on_message(message, ctx)?,
                        Err(e) => return Err(End::error(e.kind())),
                    }
                }
            }
        }
        // An idle session keeps no read buffer.
        if self.inbuf.is_empty() && self.inbuf.capacity() > 0 {
            self.inbuf = BytesMut::new();
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

    /// Takes the session's events (counting them, timing the traffic's),
    /// then sends one message with the PONGs, the cumulative ACK of what was
    /// delivered and the sends the window has room for.
    fn drain_session(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        let now = Instant::now();
        let shared: &Shared = ctx.shared;
        let counters = &shared.traffic;
        let stamp = self.flow.as_ref().map_or(0, |flow| flow.spec.stamp(now));
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Authenticated(ok) => {
                    self.stage = Stage::Live;
                    self.authenticated = true;
                    self.heartbeat = Duration::from_millis(u64::from(ok.heartbeat_ms).max(100));
                    self.next_ping = ctx.now + ctx.rng.jitter(self.heartbeat);
                    self.deadline = self.next_ping;
                    let latency = ctx.now.saturating_duration_since(self.started);
                    ctx.shared.authenticated(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
                    if self.flow.is_some() {
                        counters.first_auth_ns.fetch_min(stamp, Relaxed);
                    }
                }
                Event::Delivered(deliver) => {
                    counters.delivered.fetch_add(1, Relaxed);
                    if self.flow.as_ref().is_some_and(|flow| flow.spec.mode == Mode::Send) {
                        if let Some(sent) = traffic::payload_stamp(deliver.payload.bytes()) {
                            traffic::record(&mut ctx.latencies.e2e, sent, stamp);
                        }
                    }
                }
                Event::Sent { client_id, .. } => {
                    if let Some(sent) = self.flow.as_deref_mut().and_then(|flow| flow.answered(client_id)) {
                        counters.acked.fetch_add(1, Relaxed);
                        traffic::record(&mut ctx.latencies.ack, sent, stamp);
                    }
                }
                Event::SendFailed { client_id, code, .. } => {
                    if let Some(flow) = self.flow.as_deref_mut() {
                        flow.answered(client_id);
                    }
                    counters.send_errors.fetch_add(1, Relaxed);
                    ctx.shared.error(&format!("send_error_{}", code_name(code)));
                }
                Event::Pong { nonce } => match self.flow.as_deref_mut().and_then(|flow| flow.pong(nonce)) {
                    Some(sent) => {
                        counters.acked.fetch_add(1, Relaxed);
                        traffic::record(&mut ctx.latencies.ack, sent, stamp);
                    }
                    None => {
                        ctx.shared.pongs.fetch_add(1, Relaxed);
                    }
                },
                Event::Synced { head } => {
                    counters.synced.fetch_add(1, Relaxed);
                    counters.synced_head.fetch_max(head.0, Relaxed);
                    counters.last_synced_ns.fetch_max(stamp, Relaxed);
                }
                Event::Error(error) => {
                    ctx.shared.error(&format!("error_{}", code_name(error.code)));
                }
                Event::AuthRejected { code, .. } => {
                    let name = code.name().map_or_else(|| code.0.to_string(), str::to_owned);
                    return Err(End::error(format!("auth_{name}")));
                }
                Event::Ping { .. } => {
                    ctx.shared.server_pings.fetch_add(1, Relaxed);
                }
                Event::GoAway(_) => {
                    ctx.shared.goaways.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
        let mut frames = Vec::new();
        while let Some(frame) = self.session.poll_transmit() {
            frames.push(frame);
        }
        if self.stage == Stage::Live {
            if let Some(ack) = self.session.ack_surfaced() {
                frames.push(ack);
                counters.acks_sent.fetch_add(1, Relaxed);
            }
            self.traffic_frames(ctx, &mut frames);
            self.reschedule();
        }
        if frames.is_empty() {
            Ok(())
        } else {
            self.send_frames(frames.into_iter(), ctx)
        }
    }

    /// Sends `frames` batched in one binary message.
    fn send_frames(&mut self, frames: impl Iterator<Item = Frame>, ctx: &mut Ctx<'_>) -> Result<(), End> {
        let mut message = Vec::new();
        for frame in frames {
            frame.encode(&mut message).map_err(|_| End::error("encode"))?;
        }
        ctx.out.clear();
        ws::encode_client_frame(ctx.out, ws::OP_BINARY, &message, ctx.rng.mask());
        let out = std::mem::take(ctx.out);
        let written = self.write_plaintext(&out);
        *ctx.out = out;
        written
    }

    /// Sends a control frame (best effort: a failure shows on the next read).
    fn send_control(&mut self, opcode: u8, payload: &[u8], ctx: &mut Ctx<'_>) {
        ctx.out.clear();
        ws::encode_client_frame(ctx.out, opcode, payload, ctx.rng.mask());
        let out = std::mem::take(ctx.out);
        let _ = self.write_plaintext(&out);
        *ctx.out = out;
    }

    /// Queues plaintext: into rustls for wss; for ws straight to the socket
    /// when nothing is queued, the rest into `outbuf`.
    fn write_plaintext(&mut self, bytes: &[u8]) -> Result<(), End> {
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.writer().write_all(bytes).map_err(|e| End::error(io_kind("tls_write", &e)));
        }
        let mut rest = bytes;
        if self.outbuf.is_empty() {
            while !rest.is_empty() {
                match self.stream.write(rest) {
                    Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(End::error(io_kind("write", &e))),
                }
            }
        }
        self.outbuf.extend_from_slice(rest);
        Ok(())
    }

    /// Writes what is queued until the socket is full.
    fn flush(&mut self) -> Result<(), End> {
        if let Some(tls) = self.tls.as_deref_mut() {
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(End::error(io_kind("write", &e))),
                }
            }
            return Ok(());
        }
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(n) => {
                    self.outbuf.drain(..n.min(self.outbuf.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(End::error(io_kind("write", &e))),
            }
        }
        if self.outbuf.capacity() > 0 {
            self.outbuf = Vec::new();
        }
        Ok(())
    }
}

/// Moves the plaintext rustls decrypted into `inbuf`; true if the server sent
/// close_notify.
fn drain_plaintext(
    tls: &mut ClientConnection,
    inbuf: &mut BytesMut,
    scratch: &mut [u8],
) -> Result<bool, End> {
    loop {
        match tls.reader().read(scratch) {
            Ok(0) => return Ok(true),
            Ok(n) => inbuf.extend_from_slice(scratch.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
            Err(e) => return Err(End::error(io_kind("tls_read", &e))),
        }
    }
}

/// A non-blocking TCP socket bound to `source` (port chosen by the kernel),
/// connecting to `target`.
fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// An error code's name (`OVERLOADED`), or its number.
fn code_name(code: ErrorCode) -> String {
    code.name().map_or_else(|| code.0.to_string(), str::to_owned)
}

/// A short error kind for counters: `connect_refused`, `read_reset`, ...
pub(crate) fn io_kind(what: &str, err: &io::Error) -> String {
    let kind = match err.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::ConnectionReset => "reset",
        io::ErrorKind::ConnectionAborted => "aborted",
        io::ErrorKind::BrokenPipe => "broken_pipe",
        io::ErrorKind::AddrNotAvailable => "addr_not_available",
        io::ErrorKind::AddrInUse => "addr_in_use",
        io::ErrorKind::TimedOut => "timed_out",
        _ if err.raw_os_error() == Some(libc::EMFILE) => "too_many_open_files",
        _ => "other",
    };
    format!("{what}_{kind}")
}

fn tls_kind(err: &rustls::Error) -> String {
    let kind = match err {
        rustls::Error::InvalidCertificate(_) => "bad_certificate",
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::PeerIncompatible(_) => "peer_incompatible",
        rustls::Error::PeerMisbehaved(_) => "peer_misbehaved",
        _ => "other",
    };
    format!("tls_{kind}")
}
