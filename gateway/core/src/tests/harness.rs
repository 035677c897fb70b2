//! Drives one `Session` by hand: client bytes in (masked as a browser would
//! send them), server output parsed back into HTTP text, WebSocket frames and
//! protocol frames.

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use gateway_ws::HandshakeConfig;
use protocol::{
    AuthOk, Capabilities, Decoder, DeviceId, Frame, FrameKind, Hello, Seq, Timestamp, Token, UserId,
};

use crate::{Action, Config, Ctx, Limits, Observer, Session};

/// Records every observation as a string, for assertions.
#[derive(Debug, Default)]
pub(crate) struct Recorder(pub(crate) Vec<String>);

impl Observer for Recorder {
    fn handshake_failed(&mut self, reason: &'static str) {
        self.0.push(format!("handshake_failed:{reason}"));
    }
    fn auth_failed(&mut self, reason: &'static str) {
        self.0.push(format!("auth_failed:{reason}"));
    }
    fn frame_in(&mut self, kind: FrameKind) {
        self.0.push(format!("in:{}", kind.name()));
    }
    fn dropped(&mut self, reason: &'static str) {
        self.0.push(format!("dropped:{reason}"));
    }
    fn closed(&mut self, code: u16) {
        self.0.push(format!("closed:{code}"));
    }
}

pub(crate) fn config() -> Config {
    Config {
        handshake: HandshakeConfig { echo: true, ..HandshakeConfig::default() },
        handshake_timeout: Duration::from_secs(5),
        auth_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_secs(30),
        heartbeat_misses: 3,
        max_message: protocol::limits::MAX_CLIENT_MESSAGE_LEN,
        outbound: Limits { pause_bytes: 4096, max_bytes: 16_384 },
        outbound_preauth: 1024,
        echo_max_message: 1 << 20,
        write_stall: Duration::from_secs(30),
        linger: Duration::from_secs(2),
        decoder: Decoder::new(),
        rate: Some(crate::RateLimit { per_sec: 100, burst: 20 }),
        sync_window: 2,
    }
}

/// What the session wrote, parsed.
#[derive(Debug, PartialEq)]
pub(crate) enum Out {
    Http(String),
    Frame(Frame),
    Text(String),
    Ping,
    Pong,
    Close(u16),
}

pub(crate) struct Harness {
    pub(crate) config: Config,
    pub(crate) now: Instant,
    pub(crate) observer: Recorder,
    pub(crate) actions: Vec<Action>,
    pub(crate) session: Session,
    /// Server output not parsed yet (a frame may span writes).
    pending: BytesMut,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_config(config())
    }

    pub(crate) fn with_config(config: Config) -> Self {
        let now = Instant::now();
        let mut observer = Recorder::default();
        let mut actions = Vec::new();
        let session =
            Session::new(&mut Ctx { now, config: &config, observer: &mut observer, actions: &mut actions });
        Self { config, now, observer, actions, session, pending: BytesMut::new() }
    }

    /// Runs `f` with a context at the current virtual time.
    pub(crate) fn with<R>(&mut self, f: impl FnOnce(&mut Session, &mut Ctx<'_, Recorder>) -> R) -> R {
        let mut ctx = Ctx {
            now: self.now,
            config: &self.config,
            observer: &mut self.observer,
            actions: &mut self.actions,
        };
        f(&mut self.session, &mut ctx)
    }

    pub(crate) fn read(&mut self, bytes: &[u8]) -> BytesMut {
        let mut buf = BytesMut::from(bytes);
        self.with(|s, ctx| s.handle_read(ctx, &mut buf));
        buf
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.with(|s, ctx| s.handle_timeout(ctx));
    }

    /// Writes everything out (as if the socket took it all) and parses it.
    pub(crate) fn output(&mut self) -> Vec<Out> {
        self.session.flush();
        let mut written = 0;
        for chunk in self.session.outbound().chunks() {
            self.pending.extend_from_slice(chunk);
            written += chunk.len();
        }
        self.with(|s, ctx| s.handle_written(ctx, written));
        parse_server_output(&mut self.pending)
    }

    pub(crate) fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub(crate) fn observed(&self, what: &str) -> bool {
        self.observer.0.iter().any(|o| o == what)
    }
}

pub(crate) fn hello(min: u8, max: u8) -> Frame {
    Frame::Hello(Hello {
        min_version: min,
        max_version: max,
        device: DeviceId(2),
        resume_after: Seq(0),
        capabilities: Capabilities::ALL,
        token: Token::new(&b"token"[..]).unwrap(),
    })
}

pub(crate) fn auth_ok() -> AuthOk {
    AuthOk {
        version: 1,
        user: UserId(7),
        device: DeviceId(2),
        session: 1,
        server_time: Timestamp(0),
        heartbeat_ms: 30_000,
        inbox_head: Seq(0),
        max_payload: 65_536,
        capabilities: Capabilities::ALL,
    }
}

/// A session that completed the upgrade and HELLO, with its output consumed.
pub(crate) fn live() -> Harness {
    live_with(config())
}

/// As [`live`], with `config`.
pub(crate) fn live_with(config: Config) -> Harness {
    let mut h = Harness::with_config(config);
    h.read(&upgrade("/ws"));
    h.read(&message(&[hello(1, 1)]));
    assert!(matches!(h.take_actions().as_slice(), [Action::Verify(_)]));
    h.with(|s, ctx| s.accept(ctx, auth_ok(), Seq(0)));
    let out = h.output();
    // An empty inbox: the sync is over at once.
    assert!(
        matches!(out.as_slice(), [Out::Http(_), Out::Frame(Frame::AuthOk(_)), Out::Frame(Frame::SyncDone(d))] if d.head == Seq(0)),
        "{out:?}"
    );
    assert!(matches!(h.take_actions().as_slice(), [Action::Synced]));
    h
}

pub(crate) fn upgrade(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A masked client WebSocket frame (FIN set).
pub(crate) fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A binary message carrying `frames`.
pub(crate) fn message(frames: &[Frame]) -> Vec<u8> {
    let mut payload = BytesMut::new();
    for frame in frames {
        frame.encode(&mut payload).unwrap();
    }
    client_frame(0x2, &payload)
}

pub(crate) fn close_frame(code: u16) -> Vec<u8> {
    client_frame(0x8, &code.to_be_bytes())
}

fn parse_server_output(buf: &mut BytesMut) -> Vec<Out> {
    let mut out = Vec::new();
    loop {
        if buf.starts_with(b"HTTP/1.1") {
            let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("complete response") + 4;
            out.push(Out::Http(String::from_utf8(buf.split_to(end).to_vec()).unwrap()));
            continue;
        }
        if buf.len() < 2 {
            return out;
        }
        assert_eq!(buf[1] & 0x80, 0, "server frames are never masked");
        let (len, header) = match buf[1] & 0x7f {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        if buf.len() < header + len {
            return out;
        }
        let opcode = buf[0] & 0x0f;
        buf.advance(header);
        let payload = buf.split_to(len).freeze();
        match opcode {
            0x1 => out.push(Out::Text(String::from_utf8(payload.to_vec()).unwrap())),
            0x2 => {
                for frame in Decoder::for_server_messages().message(payload) {
                    out.push(Out::Frame(frame.unwrap()));
                }
            }
            0x8 => out.push(Out::Close(u16::from_be_bytes([payload[0], payload[1]]))),
            0x9 => out.push(Out::Ping),
            0xa => out.push(Out::Pong),
            other => panic!("unexpected opcode {other}"),
        }
    }
}
