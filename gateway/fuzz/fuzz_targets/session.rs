//! Session core fuzz target: one `Session` on a virtual clock, driven by a
//! script the input spells. The first byte picks the settings (echo route,
//! rate limit, sync window, outbound bounds), the second the message limit;
//! then each operation is a byte and its arguments:
//!
//! - client bytes: a masked WebSocket frame (any first byte), raw bytes, a
//!   valid upgrade request, a binary message of arbitrary protocol bytes, or
//!   one well-formed frame (HELLO, PING, ACK, SYNC_REQUEST);
//! - the worker's side: time passing, accepting or rejecting a pending
//!   HELLO, answering a pending inbox read, a live entry, a frame to send,
//!   draining, closing, and the socket taking some of the output.
//!
//! After every operation it checks that:
//! - the state only moves forward (LIFECYCLE.md), and Close comes with the
//!   Closed state, nothing after it and no timer left;
//! - unsent output stays within the configured cap, plus the closing frames
//!   and the two sync windows that may be unacknowledged (SPEC §6.3);
//! - what is written is a valid server stream: one HTTP response, then
//!   unmasked final frames whose binary messages decode as server frames, and
//!   close codes from SPEC §11 (or a valid client code, echoed);
//! - the worker is asked for one HELLO verification at a time, inbox reads
//!   of at most MAX_SYNC_BATCH entries, and client-to-server frames only.
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use gateway_core::{
    Action, Class, Config, Ctx, Limits, NoObserver, RateLimit, Session, SharedDeliver, State,
};
use gateway_ws::frame::is_valid_close_code;
use gateway_ws::HandshakeConfig;
use libfuzzer_sys::fuzz_target;
use protocol::{
    Ack, AuthOk, Capabilities, CloseCode, ConvSeq, Conversation, Decoder, Deliver, DeviceId, ErrorCode,
    Frame, GoAway, GoAwayReason, Hello, List, MessageId, Note, Payload, Ping, Presence, PresenceStatus, Seq,
    SyncBatch, SyncRequest, Timestamp, Token, TypingNotify, UserId,
};

/// Room above `max_bytes` for what ends an overflowing session: one ERROR
/// (its text at most MAX_TEXT bytes) and the close frame (at most 127 bytes).
const CLOSING_SLACK: usize = 2 * protocol::limits::MAX_TEXT;

fuzz_target!(|data: &[u8]| {
    let [settings, message_limit, script @ ..] = data else { return };
    let mut driver = Driver::new(config(*settings, *message_limit));
    let mut input = Input(script);
    while let Some(op) = input.next() {
        driver.run(op, &mut input);
        driver.check();
        if driver.closed {
            // The worker writes what is left and drops the session.
            driver.write_rest();
            return;
        }
    }
});

fn config(settings: u8, message_limit: u8) -> Config {
    let pause_bytes = 128 * (1 + usize::from(settings >> 4));
    Config {
        handshake: HandshakeConfig { echo: settings & 1 != 0, ..HandshakeConfig::default() },
        handshake_timeout: Duration::from_secs(5),
        auth_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_secs(30),
        heartbeat_misses: 3,
        max_message: match message_limit {
            0 => protocol::limits::MAX_CLIENT_MESSAGE_LEN,
            n => usize::from(n) * 8,
        },
        outbound: Limits { pause_bytes, max_bytes: pause_bytes * 4 },
        outbound_preauth: pause_bytes,
        echo_max_message: 64 + usize::from(message_limit) * 8,
        write_stall: Duration::from_secs(30),
        linger: Duration::from_secs(2),
        decoder: Decoder::new(),
        rate: (settings & 2 != 0).then_some(RateLimit { per_sec: 20, burst: 10 }),
        sync_window: 1 + u32::from((settings >> 2) & 3),
    }
}

/// The session, its clock and what the worker knows about it.
struct Driver {
    config: Config,
    now: Instant,
    session: Session,
    actions: Vec<Action>,
    /// Client bytes not consumed yet (a partial frame).
    read_buf: BytesMut,
    /// HELLO waiting for accept or reject.
    hello: Option<Hello>,
    /// Inbox reads waiting for a page: after, limit, epoch.
    reads: VecDeque<(Seq, u32, u8)>,
    /// The state after the last operation, and whether Close was asked.
    state: State,
    closed: bool,
    /// Server output written so far and not parsed yet.
    written: BytesMut,
    /// The HTTP response has been parsed (frames follow).
    upgraded: bool,
    /// The session is on `/echo`: messages are the client's, not frames.
    echo: bool,
    /// The largest store page handed in, as a SYNC_BATCH frame: sync output
    /// is bounded by two unacknowledged windows, not by the cap.
    sync_batch_max: usize,
}

impl Driver {
    fn new(config: Config) -> Self {
        let now = Instant::now();
        let mut actions = Vec::new();
        let session =
            Session::new(&mut Ctx { now, config: &config, observer: &mut NoObserver, actions: &mut actions });
        Self {
            config,
            now,
            session,
            actions,
            read_buf: BytesMut::new(),
            hello: None,
            reads: VecDeque::new(),
            state: State::Handshake,
            closed: false,
            written: BytesMut::new(),
            upgraded: false,
            echo: false,
            sync_batch_max: 0,
        }
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut Session, &mut Ctx<'_, NoObserver>) -> R) -> R {
        let mut ctx = Ctx {
            now: self.now,
            config: &self.config,
            observer: &mut NoObserver,
            actions: &mut self.actions,
        };
        f(&mut self.session, &mut ctx)
    }

    fn run(&mut self, op: u8, input: &mut Input<'_>) {
        match op % 13 {
            0 => {
                let first = input.u8();
                let payload = input.bytes();
                self.client(&client_frame(first, payload));
            }
            1 => {
                let raw = input.bytes().to_vec();
                self.client(&raw);
            }
            2 => {
                let path = if input.u8() & 1 == 0 { "/ws" } else { "/echo" };
                self.client(&upgrade(path));
            }
            3 => {
                let payload = input.bytes();
                self.client(&client_frame(0x82, payload));
            }
            4 => {
                let frame = match input.u8() % 4 {
                    0 => Frame::Hello(Hello {
                        min_version: 1,
                        max_version: 1 + input.u8() % 2,
                        device: DeviceId(2),
                        resume_after: Seq(u64::from(input.u8())),
                        capabilities: Capabilities::ALL,
                        token: Token::new(&b"token"[..]).expect("a short token"),
                    }),
                    1 => Frame::Ping(Ping { nonce: u64::from(input.u8()) }),
                    2 => Frame::Ack(Ack { up_to: Seq(u64::from(input.u8())) }),
                    _ => Frame::SyncRequest(SyncRequest {
                        after: Seq(u64::from(input.u8())),
                        window: u32::from(input.u8() % 8),
                    }),
                };
                let mut payload = BytesMut::new();
                frame.encode(&mut payload).expect("a valid frame encodes");
                self.client(&client_frame(0x82, &payload));
            }
            5 => {
                let ms = match input.u8() {
                    255 => 120_000,
                    n => u64::from(n) * 250,
                };
                self.now += Duration::from_millis(ms);
                self.with(|s, ctx| s.handle_timeout(ctx));
            }
            6 => {
                let (accept, head) = (input.u8() & 1 == 0, input.u8());
                if let Some(hello) = self.hello.take() {
                    if accept {
                        let auth_ok = AuthOk {
                            version: 1,
                            user: UserId(7),
                            device: hello.device,
                            session: 1,
                            server_time: Timestamp(0),
                            heartbeat_ms: 30_000,
                            inbox_head: Seq(u64::from(head)),
                            max_payload: 65_536,
                            capabilities: Capabilities::ALL,
                        };
                        self.with(|s, ctx| s.accept(ctx, auth_ok, hello.resume_after));
                    } else {
                        self.with(|s, ctx| {
                            s.reject(
                                ctx,
                                ErrorCode::AUTH_INVALID,
                                CloseCode::AUTH_FAILED,
                                "invalid",
                                "bad token",
                            )
                        });
                    }
                }
            }
            7 => {
                let (count, remaining, stale) = (input.u8(), input.u8(), input.u8() == 0);
                if let Some((after, limit, epoch)) = self.reads.pop_front() {
                    let count = u64::from(count).min(u64::from(limit));
                    let entries: Vec<Deliver> = (1..=count).map(|i| entry(after.0 + i)).collect();
                    let batch = List::from_items(&entries).expect("within MAX_SYNC_BATCH");
                    let len = Frame::SyncBatch(SyncBatch { remaining: 0, entries: batch }).encoded_len();
                    // Plus the largest WebSocket header: a batch may start a message.
                    self.sync_batch_max = self.sync_batch_max.max(len + 10);
                    let epoch = if stale { epoch.wrapping_add(1) } else { epoch };
                    self.with(|s, ctx| s.handle_page(ctx, epoch, &entries, u64::from(remaining)));
                }
            }
            8 => {
                let seq = (self.session.sent().0 + u64::from(input.u8() % 4)).max(1);
                let shared = SharedDeliver::new(&entry(seq));
                self.with(|s, ctx| s.deliver_live(ctx, Seq(seq), &shared));
            }
            9 => {
                let share = input.u8();
                self.write(share);
            }
            10 => {
                let after = u32::from(input.u8()) * 10;
                let goaway = GoAway {
                    reason: GoAwayReason::Drain,
                    reconnect_after_ms: after,
                    resume_after: Seq(0),
                    redirect: Note::truncated(""),
                };
                self.with(|s, ctx| s.drain(ctx, goaway, Duration::from_secs(1)));
            }
            11 => {
                let (which, n) = (input.u8(), input.u8());
                let (frame, class) = match which % 3 {
                    0 => (
                        Frame::Presence(Presence {
                            user: UserId(u64::from(n)),
                            status: PresenceStatus::Online,
                            last_seen: Timestamp(0),
                        }),
                        Class::Ephemeral,
                    ),
                    1 => (
                        Frame::TypingNotify(TypingNotify {
                            conversation: Conversation::Direct(UserId(3)),
                            user: UserId(3),
                            active: n & 1 == 0,
                        }),
                        Class::Ephemeral,
                    ),
                    _ => (Frame::Deliver(entry(u64::from(n))), Class::Live),
                };
                if let Frame::Deliver(_) = frame {
                    // A live entry goes through deliver_live; this is a
                    // shared fanout message of the same size instead.
                    let mut message = BytesMut::new();
                    frame.encode(&mut message).expect("encodes");
                    let _ = self.with(|s, ctx| s.send_shared(ctx, message.freeze(), class));
                } else {
                    let _ = self.with(|s, ctx| s.send(ctx, &frame, class));
                }
            }
            _ => {
                let code = if input.u8() & 1 == 0 { CloseCode::REPLACED } else { CloseCode::TRY_AGAIN_LATER };
                self.with(|s, ctx| s.close_with(ctx, code, "closed by the worker"));
            }
        }
        self.take_actions();
    }

    /// Client bytes in, the way the worker feeds them (a partial frame stays).
    fn client(&mut self, bytes: &[u8]) {
        self.read_buf.extend_from_slice(bytes);
        let mut buf = std::mem::take(&mut self.read_buf);
        self.with(|s, ctx| s.handle_read(ctx, &mut buf));
        self.read_buf = buf;
    }

    /// The socket takes `share`/255 of the output (all of it at 255).
    fn write(&mut self, share: u8) {
        self.session.flush();
        let total = self.session.outbound().len();
        let mut budget = total * usize::from(share) / 255;
        let mut written = 0;
        for chunk in self.session.outbound().chunks() {
            let n = chunk.len().min(budget);
            self.written.extend_from_slice(&chunk[..n]);
            written += n;
            budget -= n;
        }
        self.with(|s, ctx| s.handle_written(ctx, written));
        self.parse_output();
    }

    /// After Close: everything queued goes out, and the session is dropped.
    fn write_rest(&mut self) {
        self.session.flush();
        for chunk in self.session.outbound().chunks() {
            self.written.extend_from_slice(chunk);
        }
        self.parse_output();
    }

    fn take_actions(&mut self) {
        for action in std::mem::take(&mut self.actions) {
            assert!(!self.closed, "{action:?} after Close");
            match action {
                Action::Verify(hello) => {
                    assert!(self.hello.is_none(), "a second HELLO handed over");
                    self.hello = Some(*hello);
                }
                Action::ReadInbox { after, limit, epoch } => {
                    assert!(limit >= 1 && limit as usize <= protocol::limits::MAX_SYNC_BATCH);
                    self.reads.push_back((after, limit, epoch));
                }
                Action::Close => self.closed = true,
                Action::Frame(frame) => {
                    assert!(matches!(
                        self.session.state(),
                        State::Live(_) | State::Draining(_) | State::Closing
                    ));
                    assert_eq!(frame.kind().direction(), protocol::Direction::ClientToServer);
                }
                Action::Acked(_) | Action::Synced | Action::LivePaused | Action::LiveResumed => {}
            }
        }
    }

    fn check(&mut self) {
        let state = self.session.state();
        assert!(rank(state) >= rank(self.state), "{:?} went back to {state:?}", self.state);
        if let (State::Live(a) | State::Draining(a), State::Live(b) | State::Draining(b)) =
            (self.state, state)
        {
            assert_eq!(a, b, "the identity changed");
        }
        assert_eq!(self.closed, state == State::Closed, "Close asked in {state:?}");
        self.state = state;
        self.echo |= state == State::Echo;
        let queued = self.session.outbound().len();
        // Before authentication the bound is smaller (outbound_preauth); on
        // /echo it has room for one more whole message.
        let echo_room = if self.echo { self.config.echo_max_message } else { 0 };
        let cap = self.config.outbound.max_bytes + 2 * self.sync_batch_max + echo_room + CLOSING_SLACK;
        assert!(queued <= cap, "{queued} bytes queued, cap {cap} ({state:?})");
        if self.closed {
            assert!(self.session.poll_timeout().is_none(), "a timer left on a closed session");
        }
    }

    /// Parses what the socket took: it must be a valid server stream.
    fn parse_output(&mut self) {
        if !self.upgraded {
            let Some(end) = self.written.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            assert!(self.written.starts_with(b"HTTP/1.1 "), "not an HTTP response");
            self.written.advance(end + 4);
            self.upgraded = true;
        }
        while self.written.len() >= 2 {
            let (first, second) = (self.written[0], self.written[1]);
            assert_eq!(first & 0xf0, 0x80, "server frames are final, no RSV bits");
            assert_eq!(second & 0x80, 0, "server frames are never masked");
            let (len, header) = match second & 0x7f {
                126 if self.written.len() >= 4 => {
                    (usize::from(u16::from_be_bytes([self.written[2], self.written[3]])), 4)
                }
                127 if self.written.len() >= 10 => {
                    let len = u64::from_be_bytes(self.written[2..10].try_into().expect("8 bytes"));
                    (usize::try_from(len).expect("a length that fits"), 10)
                }
                126 | 127 => return,
                n => (usize::from(n), 2),
            };
            if self.written.len() < header + len {
                return;
            }
            self.written.advance(header);
            let payload = self.written.split_to(len).freeze();
            match first & 0x0f {
                0x1 => assert!(self.echo && std::str::from_utf8(&payload).is_ok(), "text not echoed"),
                0x2 if self.echo => {}
                0x2 => self.check_message(payload),
                0x8 => {
                    assert!(payload.len() >= 2, "a close frame without a code");
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let known = CloseCode::KNOWN.iter().any(|(known, _, _)| known.0 == code)
                        && code != CloseCode::NO_STATUS.0
                        && code != CloseCode::ABNORMAL.0;
                    // Or the client's own code, echoed: one a client may send.
                    assert!(known || is_valid_close_code(code), "close code {code}");
                    assert!(std::str::from_utf8(&payload[2..]).is_ok());
                }
                0xa => assert!(payload.len() <= 125),
                other => panic!("server opcode {other}"),
            }
        }
    }

    /// A binary message: every frame decodes as a server frame.
    fn check_message(&mut self, payload: Bytes) {
        for frame in Decoder::for_server_messages().message(payload) {
            let frame = frame.expect("the server's own frames decode");
            assert_ne!(frame.kind().direction(), protocol::Direction::ClientToServer);
        }
    }
}

/// LIFECYCLE.md's order: a state never returns to an earlier rank.
fn rank(state: State) -> u8 {
    match state {
        State::Handshake => 0,
        State::Echo | State::AwaitHello => 1,
        State::Verifying => 2,
        State::Live(_) => 3,
        State::Draining(_) => 4,
        State::Closing => 5,
        State::Closed => 6,
    }
}

fn entry(seq: u64) -> Deliver {
    Deliver {
        seq: Seq(seq),
        message_id: MessageId(1000 + seq),
        conversation: Conversation::Direct(UserId(9)),
        conv_seq: ConvSeq(seq),
        sender: UserId(9),
        sender_device: DeviceId(1),
        server_time: Timestamp(1_700_000_000_000),
        payload: Payload::new(Bytes::from(vec![0xab; 24])).expect("a small payload"),
    }
}

fn upgrade(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame with `first` as its first byte (FIN, RSV, opcode).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// Reads operations and arguments off the front of the input, zeros once
/// it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }
    fn u8(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
    /// A length byte, then that many bytes (fewer at the end of the input).
    fn bytes(&mut self) -> &[u8] {
        let n = usize::from(self.u8()).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}
