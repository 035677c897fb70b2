//! One raw WebSocket connection (no protocol above the upgrade, except the
//! HELLO of a protocol handshake): the `echo`, `group --hub` and `handshake`
//! scenarios, which must run unchanged against the gateway's `/echo` and the
//! baseline server.
//!
//! - Echo: keeps `window` binary messages of `size` bytes in flight; each
//!   starts with a [`Tag`] (send time, sequence number) and is filled with
//!   a pattern derived from its sequence number, so that an echo that comes
//!   back changed, truncated or out of order is caught.
//! - Hub: a member of a room (`PATH/ROOM`); senders send tagged messages
//!   at a rate, every member checks the streams it receives.
//! - Handshake: connect, upgrade (and with a token, HELLO → AUTH_OK), then
//!   close with 1000 at once and wait for the server's close.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::limits::{MAX_SERVER_MESSAGE_LEN, VERSION_MAX, VERSION_MIN};
use protocol::{Capabilities, Decoder, DeviceId, Frame, Hello, Seq, Token};

use crate::conn::{Ctx, End, OpenParams, CLOSE_TIMEOUT};
use crate::tag::{StreamCheck, Tag, TAG_LEN};
use crate::traffic;
use crate::transport::Transport;
use crate::ws::{self, Message};

/// When nothing is due on an open connection: look again after this long.
const IDLE: Duration = Duration::from_secs(3600);

/// What a raw connection does once upgraded.
#[derive(Debug)]
pub(crate) enum Role {
    Echo(EchoState),
    Hub(Box<HubState>),
    /// Close at once (after AUTH_OK if `hello` is set).
    Handshake {
        hello: Option<Token>,
    },
}

/// Echo: the window of messages in flight.
#[derive(Debug, Default)]
pub(crate) struct EchoState {
    pub(crate) window: u32,
    pub(crate) size: usize,
    /// A fixed offered rate: one message per interval.
    interval: Option<Duration>,
    next_send: Option<Instant>,
    next_seq: u64,
    /// Sequence numbers in flight, oldest first.
    inflight: VecDeque<u64>,
}

impl EchoState {
    pub(crate) fn new(window: u32, size: usize, interval: Option<Duration>) -> Self {
        Self { window, size, interval, next_send: None, next_seq: 1, inflight: VecDeque::new() }
    }

    /// Whether a message may go now (the window has room and, at a fixed
    /// rate, its time has come); moves the next time on when it may.
    fn may_send(&mut self, now: Instant, rng: &mut crate::conn::Rng) -> bool {
        if self.inflight.len() >= self.window as usize {
            return false;
        }
        let Some(interval) = self.interval else { return true };
        let due = *self.next_send.get_or_insert_with(|| now + interval.mul_f64(rng.unit()));
        if due > now {
            return false;
        }
        // More than a second behind (a full window held it back): skip
        // ahead rather than burst.
        let next = due + interval;
        self.next_send = Some(if next + Duration::from_secs(1) < now { now + interval } else { next });
        true
    }
}

/// Hub: this member's part in its room.
#[derive(Debug)]
pub(crate) struct HubState {
    /// Room (group) index and member index: the tag's stream and sender.
    pub(crate) room: u32,
    pub(crate) member: u32,
    pub(crate) sender: bool,
    pub(crate) interval: Duration,
    pub(crate) size: usize,
    next_seq: u64,
    next_send: Option<Instant>,
    checks: BTreeMap<(u32, u32), StreamCheck>,
}

impl HubState {
    pub(crate) fn new(room: u32, member: u32, sender: bool, interval: Duration, size: usize) -> Self {
        Self { room, member, sender, interval, size, next_seq: 1, next_send: None, checks: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Upgrading,
    Authenticating,
    Open,
    Closing,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Self::Connecting => "connect",
            Self::Upgrading => "upgrade",
            Self::Authenticating => "auth",
            Self::Open => "open",
            Self::Closing => "close",
        }
    }
}

/// The payload of echo message `seq`: its tag, then a pattern of `seq`.
pub(crate) fn echo_payload(seq: u64, stamp: u64, size: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..size.max(TAG_LEN)).map(|j| fill_byte(seq, j)).collect();
    Tag { stamp, stream: 0, from: 0, seq }.write(&mut bytes);
    bytes
}

fn fill_byte(seq: u64, j: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(j as u8)
}

/// Whether `bytes` is intact echo message `seq` of `size` bytes.
pub(crate) fn echo_intact(bytes: &[u8], seq: u64, size: usize) -> bool {
    bytes.len() == size.max(TAG_LEN)
        && bytes.iter().enumerate().skip(TAG_LEN).all(|(j, &b)| b == fill_byte(seq, j))
}

/// One raw connection.
#[derive(Debug)]
pub(crate) struct RawConn {
    t: Transport,
    stage: Stage,
    role: Role,
    request: Vec<u8>,
    started: Instant,
    pub(crate) deadline: Instant,
    /// Whether the upgrade (or AUTH_OK) completed: counted live until it ends.
    pub(crate) open: bool,
}

impl RawConn {
    pub(crate) fn open(params: &OpenParams<'_>, role: Role, now: Instant) -> Result<Self, String> {
        Ok(Self {
            t: Transport::open(params.target, params.source, params.tls.as_ref())?,
            stage: Stage::Connecting,
            role,
            request: ws::upgrade_request(&params.target.to_string(), params.path, ws::UPGRADE_KEY),
            started: now,
            deadline: now + params.handshake_timeout,
            open: false,
        })
    }

    pub(crate) fn transport(&mut self) -> &mut Transport {
        &mut self.t
    }

    /// The socket is ready: make what progress there is. `sending`: whether
    /// the run is in its hold (new messages may go out).
    pub(crate) fn on_ready(&mut self, ctx: &mut Ctx<'_>, sending: bool) -> Result<(), End> {
        if self.stage == Stage::Connecting {
            if !self.t.check_connected().map_err(End::Error)? {
                return Ok(());
            }
            ctx.shared.connected.fetch_add(1, Relaxed);
            self.stage = Stage::Upgrading;
            let request = std::mem::take(&mut self.request);
            self.t.write_plaintext(&request).map_err(End::Error)?;
        }
        let eof = self.t.read(ctx.scratch, ctx.shared).map_err(End::Error)?;
        self.process(ctx, sending)?;
        self.t.flush().map_err(End::Error)?;
        if eof {
            return Err(match self.stage {
                Stage::Closing => End::Closed { clean: false },
                stage => End::error(format!("eof_{}", stage.name())),
            });
        }
        Ok(())
    }

    /// The deadline passed: a handshake timeout, a close timeout, or a hub
    /// sender's next message.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>, sending: bool) -> Result<(), End> {
        if ctx.now < self.deadline {
            return Ok(());
        }
        match self.stage {
            Stage::Connecting | Stage::Upgrading | Stage::Authenticating => {
                Err(End::error(format!("timeout_{}", self.stage.name())))
            }
            Stage::Closing => Err(End::Closed { clean: false }),
            Stage::Open => {
                self.fill(ctx, sending)?;
                self.t.flush().map_err(End::Error)
            }
        }
    }

    /// The hold began (or ended: `sending` false): start or stop sending.
    pub(crate) fn start_traffic(&mut self, ctx: &mut Ctx<'_>, sending: bool) -> Result<(), End> {
        if self.stage != Stage::Open {
            return Ok(());
        }
        self.fill(ctx, sending)?;
        self.t.flush().map_err(End::Error)
    }

    /// The run is over: close with 1000 and wait for the server's close.
    pub(crate) fn start_close(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        if self.stage != Stage::Open {
            return Err(End::error(format!("unfinished_{}_at_close", self.stage.name())));
        }
        self.close(ctx)
    }

    fn close(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        let mask = ctx.rng.mask();
        self.t
            .send_frame(ws::OP_CLOSE, &ws::close_payload(ws::CLOSE_NORMAL), mask, ctx.out)
            .map_err(End::Error)?;
        self.stage = Stage::Closing;
        self.deadline = ctx.now + CLOSE_TIMEOUT;
        self.t.flush().map_err(End::Error)
    }

    /// The upgrade (or AUTH_OK) completed.
    fn opened(&mut self, ctx: &mut Ctx<'_>, sending: bool) -> Result<(), End> {
        self.stage = Stage::Open;
        self.open = true;
        let latency = ctx.now.saturating_duration_since(self.started);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        ctx.shared.authenticated(us);
        self.deadline = ctx.now + IDLE;
        match &mut self.role {
            Role::Handshake { .. } => {
                ctx.latencies.ack.saturating_record(us.max(1));
                self.close(ctx)
            }
            Role::Echo(_) | Role::Hub(_) => self.fill(ctx, sending),
        }
    }

    /// Sends what is due: echo messages up to the window, hub messages whose
    /// time came (none unless `sending`).
    fn fill(&mut self, ctx: &mut Ctx<'_>, sending: bool) -> Result<(), End> {
        let now = Instant::now();
        let stamp_now = |origin: Instant| u64::try_from(now.saturating_duration_since(origin).as_nanos());
        let origin = ctx.shared.origin;
        let counters = &ctx.shared.traffic;
        match &mut self.role {
            Role::Handshake { .. } => Ok(()),
            Role::Echo(echo) => {
                if !sending {
                    echo.next_send = None;
                }
                while sending && echo.may_send(now, ctx.rng) {
                    let seq = echo.next_seq;
                    echo.next_seq += 1;
                    let payload = echo_payload(seq, stamp_now(origin).unwrap_or(u64::MAX), echo.size);
                    self.t
                        .send_frame(ws::OP_BINARY, &payload, ctx.rng.mask(), ctx.out)
                        .map_err(End::Error)?;
                    echo.inflight.push_back(seq);
                    counters.sent.fetch_add(1, Relaxed);
                }
                // A full window waits for an echo, not a timer.
                let full = echo.inflight.len() >= echo.window as usize;
                self.deadline = if full { now + IDLE } else { echo.next_send.unwrap_or(now + IDLE) };
                Ok(())
            }
            Role::Hub(hub) => {
                if !sending || !hub.sender {
                    hub.next_send = None;
                    self.deadline = now + IDLE;
                    return Ok(());
                }
                let due = *hub.next_send.get_or_insert_with(|| now + hub.interval.mul_f64(ctx.rng.unit()));
                if due <= now {
                    let tag = Tag {
                        stamp: stamp_now(origin).unwrap_or(u64::MAX),
                        stream: hub.room,
                        from: hub.member,
                        seq: hub.next_seq,
                    };
                    hub.next_seq += 1;
                    let mut payload = vec![0u8; hub.size.max(TAG_LEN)];
                    tag.write(&mut payload);
                    self.t
                        .send_frame(ws::OP_BINARY, &payload, ctx.rng.mask(), ctx.out)
                        .map_err(End::Error)?;
                    counters.sent.fetch_add(1, Relaxed);
                    // More than a second behind: skip ahead rather than burst.
                    let next = due + hub.interval;
                    hub.next_send =
                        Some(if next + Duration::from_secs(1) < now { now + hub.interval } else { next });
                }
                self.deadline = hub.next_send.unwrap_or(now + IDLE);
                Ok(())
            }
        }
    }

    fn process(&mut self, ctx: &mut Ctx<'_>, sending: bool) -> Result<(), End> {
        loop {
            match self.stage {
                Stage::Connecting => break,
                Stage::Upgrading => {
                    if self.t.tls_handshaking() {
                        break;
                    }
                    match ws::parse_upgrade_response(&self.t.inbuf, ctx.accept) {
                        Ok(None) => break,
                        Ok(Some(head)) => {
                            bytes::Buf::advance(&mut self.t.inbuf, head);
                            ctx.shared.upgraded.fetch_add(1, Relaxed);
                            if let Role::Handshake { hello: Some(token) } = &self.role {
                                let hello = Frame::Hello(Hello {
                                    min_version: VERSION_MIN,
                                    max_version: VERSION_MAX,
                                    device: DeviceId(1),
                                    resume_after: Seq(0),
                                    capabilities: Capabilities(0),
                                    token: token.clone(),
                                });
                                let mut message = Vec::new();
                                hello.encode(&mut message).map_err(|_| End::error("encode"))?;
                                self.t
                                    .send_frame(ws::OP_BINARY, &message, ctx.rng.mask(), ctx.out)
                                    .map_err(End::Error)?;
                                self.stage = Stage::Authenticating;
                            } else {
                                self.opened(ctx, sending)?;
                            }
                        }
                        Err(e) => return Err(End::error(e.kind())),
                    }
                }
                Stage::Authenticating | Stage::Open | Stage::Closing => {
                    match self.t.next_message(MAX_SERVER_MESSAGE_LEN).map_err(End::Error)? {
                        None => break,
                        Some(message) => self.on_message(message, ctx, sending)?,
                    }
                }
            }
        }
        self.t.shrink();
        Ok(())
    }

    fn on_message(&mut self, message: Message, ctx: &mut Ctx<'_>, sending: bool) -> Result<(), End> {
        match message {
            Message::Binary(bytes) => match self.stage {
                Stage::Closing => Ok(()),
                Stage::Authenticating => self.on_auth_answer(bytes, ctx, sending),
                _ => self.on_binary(&bytes, ctx, sending),
            },
            Message::Text => Err(End::error("ws_text_message")),
            Message::Ping(payload) => {
                let _ = self.t.send_frame(ws::OP_PONG, &payload, ctx.rng.mask(), ctx.out);
                Ok(())
            }
            Message::Pong => Ok(()),
            Message::Close(code) => {
                if self.stage == Stage::Closing {
                    return Err(End::Closed { clean: true });
                }
                let echo = code.map(ws::close_payload);
                let payload = echo.as_ref().map_or(&[][..], |c| &c[..]);
                let _ = self.t.send_frame(ws::OP_CLOSE, payload, ctx.rng.mask(), ctx.out);
                let _ = self.t.flush();
                let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
                Err(End::error(format!("closed_{code}")))
            }
        }
    }

    /// The answer to a handshake's HELLO.
    fn on_auth_answer(&mut self, bytes: Bytes, ctx: &mut Ctx<'_>, sending: bool) -> Result<(), End> {
        for frame in Decoder::for_server_messages().message(bytes) {
            match frame.map_err(|_| End::error("protocol_decode"))? {
                Frame::AuthOk(_) => return self.opened(ctx, sending),
                Frame::AuthError(err) => {
                    let code = err.code.name().map_or_else(|| err.code.0.to_string(), str::to_owned);
                    return Err(End::error(format!("auth_{code}")));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// An echo or a hub message.
    fn on_binary(&mut self, bytes: &[u8], ctx: &mut Ctx<'_>, sending: bool) -> Result<(), End> {
        let now = Instant::now();
        let stamp =
            u64::try_from(now.saturating_duration_since(ctx.shared.origin).as_nanos()).unwrap_or(u64::MAX);
        let counters = &ctx.shared.traffic;
        match &mut self.role {
            Role::Handshake { .. } => Ok(()),
            Role::Echo(echo) => {
                let Some(expected) = echo.inflight.pop_front() else {
                    return Err(End::error("echo_unexpected"));
                };
                let tag = Tag::read(bytes);
                let kind = match tag {
                    None => Some("echo_truncated"),
                    Some(tag) if tag.seq != expected => Some("echo_out_of_order"),
                    Some(_) if !echo_intact(bytes, expected, echo.size) => Some("echo_corrupt"),
                    Some(tag) => {
                        counters.acked.fetch_add(1, Relaxed);
                        traffic::record(&mut ctx.latencies.ack, tag.stamp, stamp);
                        None
                    }
                };
                if let Some(kind) = kind {
                    counters.send_errors.fetch_add(1, Relaxed);
                    ctx.shared.error(kind);
                }
                self.fill(ctx, sending)
            }
            Role::Hub(hub) => {
                counters.delivered.fetch_add(1, Relaxed);
                match Tag::read(bytes) {
                    Some(tag) => {
                        traffic::record(&mut ctx.latencies.e2e, tag.stamp, stamp);
                        counters.seen(hub.checks.entry((tag.stream, tag.from)).or_default().see(tag.seq));
                    }
                    None => ctx.shared.error("untagged_payload"),
                }
                Ok(())
            }
        }
    }

    /// Echo: messages still in flight.
    pub(crate) fn inflight(&self) -> usize {
        match &self.role {
            Role::Echo(echo) => echo.inflight.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn echo_payloads_are_checked() {
        let payload = echo_payload(7, 12_345, 64);
        assert_eq!(payload.len(), 64);
        assert_eq!(Tag::read(&payload).unwrap().seq, 7);
        assert!(echo_intact(&payload, 7, 64));
        assert!(!echo_intact(&payload, 8, 64), "another message's pattern");
        assert!(!echo_intact(&payload[..63], 7, 64), "truncated");
        let mut flipped = payload.clone();
        flipped[40] ^= 1;
        assert!(!echo_intact(&flipped, 7, 64), "a flipped bit");
        assert_eq!(echo_payload(1, 0, 3).len(), TAG_LEN, "at least a tag");
    }
}
