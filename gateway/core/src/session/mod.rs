//! The session state machine: HTTP upgrade, HELLO, live, draining, closing.
//! See `LIFECYCLE.md` beside this crate for the states and their transitions.
//! What the frame-rate limit refuses, and how, is in `refusals`.

mod refusals;

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use gateway_ws::frame::write_close;
use gateway_ws::{parse_request, write_accept, write_rejection};
use gateway_ws::{MessageReader, OpCode, Route, WsEvent};
use protocol::{
    AuthError, AuthOk, CloseCode, DecodeError, Deliver, Direction, ErrorCode, Frame, GoAway, List, Note,
    Pong, Seq, SyncBatch, SyncDone, UserId,
};

use crate::context::{Action, Ctx, Observer};
use crate::delivery::{Delivery, Live, Mode, Step};
use crate::outbound::{Class, Limits, Outbound, Queued};
use crate::rate::{Bucket, RateLimit};
use crate::shared::SharedDeliver;
use crate::timers::{Timer, Timers};

/// Who an authenticated session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: protocol::DeviceId,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// WebSocket open on `/echo`: messages are echoed (conformance testing).
    Echo,
    /// WebSocket open, waiting for HELLO.
    AwaitHello,
    /// HELLO handed to the worker for verification.
    Verifying,
    /// Authenticated.
    Live(Identity),
    /// GOAWAY sent; closes at the drain deadline unless the client leaves first.
    Draining(Identity),
    /// Our close frame is queued; waiting for the client's (or the linger deadline).
    Closing,
    /// Over; the worker closes the socket.
    Closed,
}

impl State {
    /// Whether a session may move from `self` to `to`: the arrows of
    /// `LIFECYCLE.md`. States only move forward: nothing leaves `Closed`,
    /// `Closing` only ends, a session is `Live` only after `Verifying`, and
    /// keeps its identity when it drains.
    fn leads_to(self, to: State) -> bool {
        match (self, to) {
            (Self::Closed, _) => false,
            (_, Self::Closed) => true,
            (Self::Closing, _) => false,
            (Self::Handshake, to) => matches!(to, Self::Echo | Self::AwaitHello),
            // A close frame, from any WebSocket state.
            (_, Self::Closing) => true,
            (Self::AwaitHello, Self::Verifying) => true,
            (Self::Verifying, Self::Live(_)) => true,
            (Self::Live(live), Self::Draining(draining)) => live == draining,
            _ => false,
        }
    }

    /// Label for the `gateway_sessions{state}` gauge.
    pub fn label(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Echo => "echo",
            Self::AwaitHello | Self::Verifying => "auth",
            Self::Live(_) => "live",
            Self::Draining(_) => "draining",
            Self::Closing | Self::Closed => "closing",
        }
    }
}

/// One client connection's protocol state, without its socket.
///
/// # Call order
///
/// 1. [`Session::new`] when the worker accepts the connection.
/// 2. [`Session::handle_read`] with the bytes read (after TLS), as often as
///    bytes arrive; [`Session::handle_timeout`] when [`Session::poll_timeout`]
///    passes; [`Session::accept`] or [`Session::reject`] to answer an
///    [`Action::Verify`]; [`Session::send`] / [`Session::send_shared`] to queue
///    output for the client; [`Session::drain`] when the node drains.
/// 3. Once per loop turn: [`Session::flush`], then write
///    [`Session::outbound`]'s slices and report them with
///    [`Session::handle_written`].
/// 4. After every call, drain the context's actions; after [`Action::Close`]
///    write what is left if possible and drop the session.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// Taken out while it reads, so that its events can be handled on `self`
    /// as they come (no event buffer).
    reader: Option<MessageReader>,
    out: Outbound,
    timers: Timers,
    /// Last time the client sent anything (heartbeat checks).
    last_input: Instant,
    /// Frame-rate limit state.
    bucket: Bucket,
    /// Inbox sync and live delivery (SPEC §6.3).
    delivery: Delivery,
}

impl Session {
    /// A session for a connection accepted at `ctx.now`.
    pub fn new<O: Observer>(ctx: &mut Ctx<'_, O>) -> Self {
        let mut timers = Timers::new(ctx.now);
        timers.set(Timer::Handshake, ctx.now + ctx.config.handshake_timeout);
        Self {
            state: State::Handshake,
            reader: Some(MessageReader::new(ctx.config.max_message)),
            out: Outbound::default(),
            timers,
            last_input: ctx.now,
            bucket: ctx.config.rate.map_or(Bucket::full(RateLimit { per_sec: 0, burst: 0 }), Bucket::full),
            delivery: Delivery::new(),
        }
    }

    /// Where inbox delivery stands (syncing, live, paused).
    pub fn delivery_mode(&self) -> Mode {
        self.delivery.mode()
    }

    /// The highest seq the client acknowledged (or resumed after).
    pub fn acked(&self) -> Seq {
        self.delivery.acked()
    }

    /// The highest seq sent on this connection.
    pub fn sent(&self) -> Seq {
        self.delivery.sent()
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The next deadline the worker must call [`Session::handle_timeout`] at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Unsent output.
    pub fn outbound(&self) -> &Outbound {
        &self.out
    }

    /// Takes in bytes from the client. Complete input is consumed from `buf`; a
    /// partial frame is left in it for the next call.
    pub fn handle_read<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, buf: &mut BytesMut) {
        self.last_input = ctx.now;
        if self.state == State::Handshake && !self.read_upgrade(ctx, buf) {
            return;
        }
        if matches!(self.state, State::Closed | State::Handshake) {
            buf.clear();
            return;
        }
        let Some(mut reader) = self.reader.take() else { return };
        let result = reader.read(buf, |event| self.on_ws_event(ctx, event));
        self.reader = Some(reader);
        if let Err(err) = result {
            // RFC 6455 §7.1.7, failing the connection: the close frame, then
            // the TCP close at once, without waiting for the client's close
            // frame (which the reader could not find past a broken frame).
            let reason = err.to_string();
            self.close(ctx, err.close_code(), &reason);
            self.finish(ctx, 0);
        }
    }

    /// Fires every deadline that has passed.
    pub fn handle_timeout<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>) {
        while let Some(timer) = self.timers.expired(ctx.now) {
            match timer {
                Timer::Handshake => {
                    ctx.observer.handshake_failed("timeout");
                    self.finish(ctx, 0);
                }
                Timer::Auth => {
                    // `reject` counts the failure.
                    self.reject(ctx, ErrorCode::AUTH_TIMEOUT, CloseCode::AUTH_TIMEOUT, "timeout", "no HELLO");
                }
                Timer::Heartbeat => {
                    let silent_until = self.last_input + ctx.config.heartbeat_timeout();
                    if ctx.now >= silent_until {
                        self.close(ctx, CloseCode::HEARTBEAT_TIMEOUT.0, "heartbeat timeout");
                    } else {
                        self.timers.set(Timer::Heartbeat, silent_until);
                    }
                }
                Timer::WriteStall => {
                    ctx.observer.dropped("write_stall");
                    self.finish(ctx, CloseCode::SLOW_CONSUMER.0);
                }
                Timer::Drain => self.close(ctx, CloseCode::GOING_AWAY.0, "draining"),
                Timer::Linger => self.finish(ctx, 0),
            }
        }
    }

    /// Answers [`Action::Verify`] with success: the session goes live, AUTH_OK
    /// (built by the worker, with the store's inbox head) is queued and the
    /// inbox sync after `resume_after` (HELLO's) starts.
    pub fn accept<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, auth_ok: AuthOk, resume_after: Seq) {
        if self.state != State::Verifying {
            return;
        }
        let identity = Identity { user: auth_ok.user, device: auth_ok.device };
        self.timers.stop(Timer::Auth);
        self.timers.set(Timer::Heartbeat, ctx.now + ctx.config.heartbeat_timeout());
        self.transition(State::Live(identity));
        let head = auth_ok.inbox_head;
        self.send_control(ctx, &Frame::AuthOk(auth_ok));
        let step = self.delivery.start(resume_after, head, ctx.config.sync_window);
        self.step(ctx, step);
    }

    /// Answers [`Action::ReadInbox`]: the store's entries after the asked seq
    /// (in seq order) and how many remain after them. A page for an older
    /// sync (`epoch`) is ignored.
    pub fn handle_page<O: Observer>(
        &mut self,
        ctx: &mut Ctx<'_, O>,
        epoch: u8,
        entries: &[Deliver],
        remaining: u64,
    ) {
        if !self.is_authenticated() {
            return;
        }
        let last = entries.last().map(|entry| entry.seq);
        let (send, step) = self.delivery.page(epoch, last, remaining);
        if send {
            match List::from_items(entries) {
                Ok(entries) => {
                    // Sync output is flow-controlled by the client's acks (two
                    // windows at most), so it is not subject to the live pause.
                    self.send_control(ctx, &Frame::SyncBatch(SyncBatch { remaining, entries }));
                }
                Err(_) => ctx.observer.dropped("sync_batch_too_large"),
            }
        }
        self.step(ctx, step);
    }

    /// A live inbox entry `seq` for this device, encoded once for all its
    /// recipients. Sent only if it is the next seq on this connection
    /// (SPEC §6.3, the no-gap rule); otherwise dropped or turned into a sync.
    pub fn deliver_live<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, seq: Seq, deliver: &SharedDeliver) {
        if !self.is_authenticated() {
            return;
        }
        match self.delivery.live(seq) {
            Live::Drop => {}
            Live::Resync(step) => {
                ctx.observer.dropped("live_gap");
                self.step(ctx, step);
            }
            Live::Send => {
                let (head, used) = deliver.head(seq);
                let was_paused = self.out.live_paused();
                // `SharedDeliver::head` writes at most the array's length.
                debug_assert!(used <= head.len(), "DELIVER head of {used} bytes");
                let head = head.get(..used).unwrap_or_default();
                let queued =
                    self.out.push_shared_tail(head, deliver.tail().clone(), Class::Live, self.limits(ctx));
                self.after_queue(ctx, queued, was_paused, "DELIVER");
                match queued {
                    Queued::Accepted => {
                        ctx.observer.frame_out(protocol::FrameKind::Deliver);
                        self.delivery.sent_live(seq);
                    }
                    Queued::Paused => self.delivery.pause(),
                    Queued::Dropped | Queued::Overflow => {}
                }
            }
        }
    }

    fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Live(_) | State::Draining(_))
    }

    /// Carries out a delivery step.
    fn step<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, step: Step) {
        match step {
            Step::Idle => {}
            Step::Read { after, limit, epoch } => ctx.actions.push(Action::ReadInbox { after, limit, epoch }),
            Step::Done { head, first } => {
                self.send_control(ctx, &Frame::SyncDone(SyncDone { head }));
                if first {
                    ctx.actions.push(Action::Synced);
                }
            }
        }
    }

    /// Answers [`Action::Verify`] (or an auth deadline) with failure: AUTH_ERROR,
    /// then a close with `close`.
    pub fn reject<O: Observer>(
        &mut self,
        ctx: &mut Ctx<'_, O>,
        code: ErrorCode,
        close: CloseCode,
        reason: &'static str,
        text: &str,
    ) {
        self.reject_retry_after(ctx, code, close, reason, text, 0);
    }

    /// [`Session::reject`] advising the client to wait `retry_after_ms`
    /// before reconnecting (a store that is recovering, or overloaded).
    pub fn reject_retry_after<O: Observer>(
        &mut self,
        ctx: &mut Ctx<'_, O>,
        code: ErrorCode,
        close: CloseCode,
        reason: &'static str,
        text: &str,
        retry_after_ms: u32,
    ) {
        if !matches!(self.state, State::AwaitHello | State::Verifying) {
            return;
        }
        ctx.observer.auth_failed(reason);
        let error = AuthError { code, retry_after_ms, text: Note::truncated(text) };
        self.send_control(ctx, &Frame::AuthError(error));
        self.close(ctx, close.0, text);
    }

    /// Queues a frame for the client under the outbound policy. Returns what
    /// happened; an overflow has already started the close (4008).
    pub fn send<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, frame: &Frame, class: Class) -> Queued {
        if !self.accepts_output(class) {
            return Queued::Dropped;
        }
        let was_paused = self.out.live_paused();
        let queued = self.out.push_frame(frame, class, self.limits(ctx));
        self.after_queue(ctx, queued, was_paused, frame.kind().name());
        if queued == Queued::Accepted {
            ctx.observer.frame_out(frame.kind());
        }
        queued
    }

    /// Queues frames encoded once for many sessions (group fanout) as one
    /// message whose payload is shared, under the outbound policy.
    pub fn send_shared<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, message: Bytes, class: Class) -> Queued {
        self.send_data(ctx, OpCode::Binary, message, class)
    }

    /// Queues one WebSocket frame of `opcode` with a shared payload under the
    /// outbound policy.
    fn send_data<O: Observer>(
        &mut self,
        ctx: &mut Ctx<'_, O>,
        opcode: OpCode,
        payload: Bytes,
        class: Class,
    ) -> Queued {
        if !self.accepts_output(class) {
            return Queued::Dropped;
        }
        let was_paused = self.out.live_paused();
        let queued = self.out.push_data(opcode, payload, class, self.limits(ctx));
        self.after_queue(ctx, queued, was_paused, "shared");
        queued
    }

    /// The outbound bounds for this session's state: small before
    /// authentication (only pongs and AUTH_ERROR go out, so a client that
    /// pings without reading is cut early), one whole message more on `/echo`
    /// (whose messages may be far larger than `/ws`'s).
    fn limits<O: Observer>(&self, ctx: &Ctx<'_, O>) -> Limits {
        let config = ctx.config;
        match self.state {
            State::Handshake | State::AwaitHello | State::Verifying => {
                let max_bytes = config.outbound_preauth;
                Limits { pause_bytes: config.outbound.pause_bytes.min(max_bytes), max_bytes }
            }
            State::Echo => Limits {
                pause_bytes: config.outbound.pause_bytes.saturating_add(config.echo_max_message),
                max_bytes: config.outbound.max_bytes.saturating_add(config.echo_max_message),
            },
            State::Live(_) | State::Draining(_) | State::Closing | State::Closed => config.outbound,
        }
    }

    /// Starts draining: a live session gets GOAWAY and is closed with 1001 after
    /// `goaway.reconnect_after_ms` plus `grace`; any other session closes now.
    /// GOAWAY's `resume_after` is set here to the client's acked cursor.
    pub fn drain<O: Observer>(
        &mut self,
        ctx: &mut Ctx<'_, O>,
        mut goaway: GoAway,
        grace: std::time::Duration,
    ) {
        goaway.resume_after = self.delivery.acked();
        match self.state {
            State::Live(identity) => {
                let close_at =
                    ctx.now + std::time::Duration::from_millis(goaway.reconnect_after_ms.into()) + grace;
                self.send_control(ctx, &Frame::GoAway(goaway));
                self.timers.set(Timer::Drain, close_at);
                self.transition(State::Draining(identity));
            }
            State::Draining(_) | State::Closing | State::Closed => {}
            State::Handshake => self.finish(ctx, 0),
            State::Echo | State::AwaitHello | State::Verifying => {
                self.close(ctx, CloseCode::GOING_AWAY.0, "draining");
            }
        }
    }

    /// Closes the session with `code` (a close frame, then waiting for the
    /// client's): for the worker's own reasons (replaced device, shutdown).
    pub fn close_with<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, code: CloseCode, reason: &str) {
        self.close(ctx, code.0, reason);
    }

    /// Seals this turn's output into one WebSocket message.
    pub fn flush(&mut self) {
        self.out.flush();
    }

    /// Reports `written` bytes of [`Session::outbound`] as sent.
    pub fn handle_written<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, written: usize) {
        if self.out.consume(written, self.limits(ctx)) {
            ctx.actions.push(Action::LiveResumed);
            let step = self.delivery.resume();
            self.step(ctx, step);
        }
        if self.out.is_empty() {
            self.timers.stop(Timer::WriteStall);
            let step = self.delivery.written_out();
            self.step(ctx, step);
        } else if written > 0 || self.timers.get(Timer::WriteStall).is_none() {
            self.timers.set(Timer::WriteStall, ctx.now + ctx.config.write_stall);
        }
    }

    /// Reads the HTTP upgrade; true once the WebSocket is open.
    fn read_upgrade<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, buf: &mut BytesMut) -> bool {
        let mut response = BytesMut::new();
        match parse_request(buf, &ctx.config.handshake) {
            Ok(None) => false,
            Ok(Some(accepted)) => {
                buf.advance(accepted.consumed);
                write_accept(&accepted, &mut response);
                self.out.push_raw(response.freeze());
                self.timers.stop(Timer::Handshake);
                let open = match accepted.route {
                    Route::Echo => {
                        self.reader = Some(MessageReader::new(ctx.config.echo_max_message));
                        State::Echo
                    }
                    Route::Ws => {
                        self.timers.set(Timer::Auth, ctx.now + ctx.config.auth_timeout);
                        State::AwaitHello
                    }
                };
                self.transition(open);
                true
            }
            Err(rejection) => {
                ctx.observer.handshake_failed(rejection.reason.as_str());
                write_rejection(&rejection, &mut response);
                self.out.push_raw(response.freeze());
                self.finish(ctx, 0);
                false
            }
        }
    }

    fn on_ws_event<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, event: WsEvent) {
        match (self.state, event) {
            (State::Closed, _) => {}
            (State::Closing, WsEvent::Close { .. }) => self.finish(ctx, 0),
            (State::Closing, _) => {}
            (_, WsEvent::Close { code, .. }) => {
                // Answer the client's close with its code (RFC 6455 §5.5.1).
                let code = code.unwrap_or(CloseCode::NORMAL.0);
                self.push_ws_close(code, "");
                ctx.observer.closed(code);
                self.finish(ctx, 0);
            }
            // Control frames take tokens from the frame-rate bucket like
            // protocol frames, in every state; a refused ping gets no pong.
            // The pong's payload is copied (at most 125 bytes) so that it does
            // not pin the read buffer it was split from while it waits.
            (_, WsEvent::Ping(payload)) => {
                if self.check_rate(ctx).is_ok() {
                    // A refusal (overflow) has already started the close.
                    let _ = self.send_data(ctx, OpCode::Pong, Bytes::copy_from_slice(&payload), Class::Reply);
                }
            }
            (_, WsEvent::Pong(_)) => {
                let _ = self.check_rate(ctx);
            }
            // Echoes are live output: paused for a client that does not read
            // (SPEC §7's policy, with room for one whole echo more).
            (State::Echo, WsEvent::Binary(message)) => {
                let _ = self.send_data(ctx, OpCode::Binary, message, Class::Live);
            }
            (State::Echo, WsEvent::Text(message)) => {
                let _ = self.send_data(ctx, OpCode::Text, message, Class::Live);
            }
            (_, WsEvent::Text(_)) => {
                self.close(ctx, CloseCode::UNSUPPORTED_DATA.0, "binary messages only");
            }
            (_, WsEvent::Binary(message)) => self.on_message(ctx, message),
        }
    }

    /// One binary message of protocol frames.
    fn on_message<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, message: Bytes) {
        for item in ctx.config.decoder.message(message) {
            if matches!(self.state, State::Closing | State::Closed) {
                return;
            }
            match item {
                Ok(frame) => {
                    ctx.observer.frame_in(frame.kind());
                    self.on_frame(ctx, frame);
                }
                Err(DecodeError::UnsupportedVersion { .. }) if self.state == State::AwaitHello => {
                    let text = "no protocol version in common";
                    self.reject(
                        ctx,
                        ErrorCode::UNSUPPORTED_VERSION,
                        CloseCode::UNSUPPORTED_VERSION,
                        "version",
                        text,
                    );
                }
                Err(err) => {
                    let text = err.to_string();
                    self.error(ctx, ErrorCode::BAD_FRAME, &text);
                    self.close(ctx, CloseCode::BAD_FRAME.0, &text);
                }
            }
        }
    }

    fn on_frame<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, frame: Frame) {
        if matches!(self.state, State::Live(_) | State::Draining(_)) {
            if let Err(wait) = self.check_rate(ctx) {
                self.refuse(ctx, &frame, wait);
                return;
            }
        }
        match (self.state, frame) {
            (State::AwaitHello, Frame::Hello(hello)) => {
                self.transition(State::Verifying);
                ctx.actions.push(Action::Verify(Box::new(hello)));
            }
            (State::Live(_) | State::Draining(_), Frame::Ping(ping)) => {
                self.reply(ctx, &Frame::Pong(Pong { nonce: ping.nonce }));
            }
            (State::Live(_) | State::Draining(_), Frame::Pong(_)) => {}
            (State::Live(_) | State::Draining(_), Frame::Ack(ack)) => {
                let (moved, step) = self.delivery.ack(ack.up_to, !self.out.is_empty());
                if let Some(up_to) = moved {
                    ctx.actions.push(Action::Acked(up_to));
                }
                self.step(ctx, step);
            }
            (State::Live(_) | State::Draining(_), Frame::SyncRequest(request)) => {
                let unwritten = !self.out.is_empty();
                let step = self.delivery.sync_request(request.after, request.window, unwritten);
                self.step(ctx, step);
            }
            (State::Live(_) | State::Draining(_), frame)
                if frame.kind().direction() == Direction::ClientToServer
                    && !matches!(frame, Frame::Hello(_)) =>
            {
                ctx.actions.push(Action::Frame(frame));
            }
            (_, frame) => {
                let text = format!("{} is not allowed here", frame.kind().name());
                self.error(ctx, ErrorCode::UNEXPECTED_FRAME, &text);
                self.close(ctx, CloseCode::UNEXPECTED_FRAME.0, &text);
            }
        }
    }

    /// Queues session control output (AUTH_*, ERROR, GOAWAY, sync): the policy
    /// never refuses it; it is only skipped once the session is closing.
    fn send_control<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, frame: &Frame) {
        let _ = self.send(ctx, frame, Class::Control);
    }

    /// Queues an answer to client input (PONG, a refusal): counted toward the
    /// outbound bound; an overflow has already started the close.
    fn reply<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, frame: &Frame) {
        let _ = self.send(ctx, frame, Class::Reply);
    }

    /// `code` for an authenticated session; 1008 before authentication and on
    /// `/echo`, where the protocol's close codes do not apply yet.
    fn unless_authenticated(&self, code: CloseCode) -> CloseCode {
        match self.is_authenticated() {
            true => code,
            false => CloseCode::POLICY_VIOLATION,
        }
    }

    /// Queues ERROR about the session (`reference = 0`).
    fn error<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, code: ErrorCode, text: &str) {
        let retryable = code.retry() == protocol::Retry::Retryable;
        let frame =
            protocol::Error { code, retryable, retry_after_ms: 0, reference: 0, text: Note::truncated(text) };
        self.send_control(ctx, &Frame::Error(frame));
    }

    fn accepts_output(&self, class: Class) -> bool {
        match self.state {
            State::Closed => false,
            State::Closing => false,
            State::Live(_) | State::Draining(_) | State::Echo => true,
            State::Handshake | State::AwaitHello | State::Verifying => {
                matches!(class, Class::Control | Class::Reply)
            }
        }
    }

    fn after_queue<O: Observer>(
        &mut self,
        ctx: &mut Ctx<'_, O>,
        queued: Queued,
        was_paused: bool,
        what: &'static str,
    ) {
        match queued {
            Queued::Accepted => {
                if self.timers.get(Timer::WriteStall).is_none() {
                    self.timers.set(Timer::WriteStall, ctx.now + ctx.config.write_stall);
                }
            }
            Queued::Dropped => ctx.observer.dropped(ephemeral_reason(what)),
            Queued::Paused => {
                ctx.observer.dropped("live_paused");
                // Report the transition once, not per refused frame.
                if !was_paused {
                    ctx.actions.push(Action::LivePaused);
                }
            }
            Queued::Overflow => {
                ctx.observer.dropped("overflow");
                let code = self.unless_authenticated(CloseCode::SLOW_CONSUMER);
                self.close(ctx, code.0, "slow consumer");
            }
        }
    }

    /// Sends a WebSocket close frame and waits (up to the linger time) for the
    /// client's.
    fn close<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, code: u16, reason: &str) {
        if matches!(self.state, State::Closing | State::Closed) {
            return;
        }
        if self.state == State::Handshake {
            return self.finish(ctx, 0);
        }
        self.push_ws_close(code, reason);
        ctx.observer.closed(code);
        for timer in [Timer::Auth, Timer::Heartbeat, Timer::Drain] {
            self.timers.stop(timer);
        }
        self.timers.set(Timer::Linger, ctx.now + ctx.config.linger);
        self.transition(State::Closing);
    }

    /// Ends the session now; the worker writes what it can and closes.
    fn finish<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, code: u16) {
        if self.state == State::Closed {
            return;
        }
        if code != 0 {
            ctx.observer.closed(code);
        }
        self.timers.clear();
        self.transition(State::Closed);
        ctx.actions.push(Action::Close);
    }

    /// The one place the state changes. The caller has already armed the
    /// timers of `to`, so that the invariants hold when they are checked.
    /// A move `LIFECYCLE.md` does not allow is a bug: debug builds panic,
    /// release builds take it as before.
    fn transition(&mut self, to: State) {
        debug_assert!(
            self.state.leads_to(to),
            "session state {:?} -> {to:?} is not a lifecycle transition",
            self.state
        );
        self.state = to;
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    /// What must hold in the state just entered (`LIFECYCLE.md`).
    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        // The deadlines each state waits for ("Timers armed"). The
        // write-stall deadline follows unsent output, not the state: the
        // close frame is queued without arming it.
        let armed: &[Timer] = match self.state {
            State::Handshake => &[Timer::Handshake],
            State::Echo | State::Closed => &[],
            State::AwaitHello | State::Verifying => &[Timer::Auth],
            State::Live(_) => &[Timer::Heartbeat],
            State::Draining(_) => &[Timer::Heartbeat, Timer::Drain],
            State::Closing => &[Timer::Linger],
        };
        for timer in [Timer::Handshake, Timer::Auth, Timer::Heartbeat, Timer::Drain, Timer::Linger] {
            debug_assert_eq!(
                self.timers.get(timer).is_some(),
                armed.contains(&timer),
                "{timer:?} deadline in state {:?}",
                self.state
            );
        }
        if self.state == State::Closed {
            debug_assert!(self.timers.next().is_none(), "a closed session waits for nothing");
        }
        if matches!(self.state, State::Echo | State::AwaitHello | State::Verifying) {
            // Nothing of the inbox goes out before authentication, and only
            // `/echo` queues live output that could pause.
            debug_assert!(self.delivery.mode() == Mode::Off && self.delivery.sent() == Seq(0));
            debug_assert!(self.state == State::Echo || !self.out.live_paused());
        }
    }

    fn push_ws_close(&mut self, code: u16, reason: &str) {
        let mut frame = BytesMut::new();
        write_close(&mut frame, code, reason);
        self.out.push_raw(frame.freeze());
    }
}

fn ephemeral_reason(kind: &'static str) -> &'static str {
    match kind {
        "TYPING_NOTIFY" => "typing",
        "PRESENCE" => "presence",
        _ => "ephemeral",
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;
    use crate::tests::harness::{hello, live, message, upgrade, Harness};

    fn identity(user: u64) -> Identity {
        Identity { user: UserId(user), device: protocol::DeviceId(2) }
    }

    /// A session that sent HELLO and waits for its verification.
    fn verifying() -> Harness {
        let mut h = Harness::new();
        h.read(&upgrade("/ws"));
        h.read(&message(&[hello(1, 1)]));
        assert_eq!(h.session.state(), State::Verifying);
        h
    }

    #[test]
    #[should_panic(expected = "is not a lifecycle transition")]
    fn live_before_authentication_panics() {
        Harness::new().session.transition(State::Live(identity(7)));
    }

    #[test]
    #[should_panic(expected = "is not a lifecycle transition")]
    fn no_return_from_closing() {
        let mut h = live();
        h.with(|s, ctx| s.close_with(ctx, CloseCode::NORMAL, "bye"));
        assert_eq!(h.session.state(), State::Closing);
        h.session.transition(State::Live(identity(7)));
    }

    #[test]
    #[should_panic(expected = "deadline in state")]
    fn a_state_entered_without_its_deadlines_panics() {
        // Verifying → Live is allowed, but not without the heartbeat armed
        // (and with the auth deadline still running).
        verifying().session.transition(State::Live(identity(7)));
    }

    #[test]
    fn the_allowed_moves_are_the_lifecycle_arrows() {
        use State::*;
        let all = [
            Handshake,
            Echo,
            AwaitHello,
            Verifying,
            Live(identity(7)),
            Draining(identity(7)),
            Closing,
            Closed,
        ];
        let allowed = |from: State, to: State| {
            matches!(
                (from, to),
                (Handshake, Echo | AwaitHello | Closed)
                    | (AwaitHello, Verifying)
                    | (Verifying, Live(_))
                    | (Live(_), Draining(_))
                    | (Echo | AwaitHello | Verifying | Live(_) | Draining(_), Closing | Closed)
                    | (Closing, Closed)
            )
        };
        for from in all {
            for to in all {
                assert_eq!(from.leads_to(to), allowed(from, to), "{from:?} -> {to:?}");
            }
        }
        assert!(!Live(identity(7)).leads_to(Draining(identity(8))), "draining keeps the identity");
    }
}
