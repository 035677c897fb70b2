//! The session state machine: HTTP upgrade, HELLO, live, draining, closing.
//! See `LIFECYCLE.md` beside this crate for the states and their transitions.
//! Client input (the upgrade, WebSocket events, protocol frames) is handled
//! in `input`; the one transition function and its debug invariants are in
//! `lifecycle`; what the frame-rate limit refuses, and how, is in
//! `refusals`.

mod input;
mod lifecycle;
mod refusals;

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use gateway_ws::frame::write_close;
use gateway_ws::{MessageReader, OpCode};
use protocol::{
    AuthError, AuthOk, CloseCode, Deliver, ErrorCode, Frame, GoAway, List, Note, Seq, SyncBatch, SyncDone,
    UserId,
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
        self.send_control(ctx, &Frame::AuthOk(auth_ok));
        let step = self.delivery.start(resume_after, ctx.config.sync_window);
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

    /// Reads the inbox again after what was sent: entries stored while live
    /// delivery could not reach this session (in a fleet: its node was
    /// fenced, or the registry was down when it connected) are sent now, as
    /// SYNC_BATCH then SYNC_DONE (SPEC §6.3). A paused session syncs anyway
    /// once its queue drains.
    pub fn resync<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>) {
        if self.is_authenticated() {
            let step = self.delivery.catch_up();
            self.step(ctx, step);
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
                    // Logged in and caught up: most sessions idle from here.
                    self.out.release_when_drained();
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
