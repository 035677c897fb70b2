//! Drives one `Session` by hand: client bytes in (masked as a browser would
//! send them), server output parsed back into HTTP text, WebSocket frames and
//! protocol frames.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use protocol::{AuthOk, Capabilities, DeviceId, Frame, FrameKind, Hello, Seq, Timestamp, Token, UserId};

use crate::testing::parse_server_output;
pub(crate) use crate::testing::{client_frame, close_frame, config, message, upgrade, Out};
use crate::{Action, Config, Ctx, Observer, Session};

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
    // The sync reads the store once even when AUTH_OK's head says there is
    // nothing: an empty inbox ends it.
    let actions = h.take_actions();
    let [Action::ReadInbox { after: Seq(0), epoch, .. }] = actions.as_slice() else { panic!("{actions:?}") };
    let epoch = *epoch;
    h.with(|s, ctx| s.handle_page(ctx, epoch, &[], 0));
    let out = h.output();
    assert!(
        matches!(out.as_slice(), [Out::Http(_), Out::Frame(Frame::AuthOk(_)), Out::Frame(Frame::SyncDone(d))] if d.head == Seq(0)),
        "{out:?}"
    );
    assert!(matches!(h.take_actions().as_slice(), [Action::Synced]));
    h
}
