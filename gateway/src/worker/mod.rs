//! One worker thread: a mio `Poll`, its own `SO_REUSEPORT` listeners (ws, and
//! wss when configured), a slab of connections, the deadline heap and an inbox
//! for commands from other threads. Sessions live on the worker that accepted
//! them for their whole life.
//!
//! A connection from the wss listener gets a TLS layer (`gateway_tls`) with
//! the configuration current at accept: bytes are decrypted before the session
//! reads them and its output encrypted at flush. The session's handshake
//! deadline, started at accept, covers the TLS handshake too.
//!
//! One loop turn: wait for events (or the next deadline) → accept → read and
//! feed sessions → run due deadlines → drain the inbox (one batch per turn) →
//! flush every session that has output, one vectored write each.
//!
//! A drain (SIGTERM) closes the listeners at once, so new connections are
//! refused (RST) instead of waiting in an accept queue nobody reads, and the
//! worker returns at the drain deadline, closing what is left with 1001
//! without waiting out the close handshake.

mod acks;
mod admission;
mod conn;
mod deadlines;
mod fanout;
mod messaging;
mod observe;
mod presence;
mod replies;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use gateway_admin::{HandshakeFailure, WorkerMetrics};
use gateway_auth::Verifier;
use gateway_core::{Action, Config as SessionConfig, Ctx, Session};
use gateway_tls::{Reloadable, TlsConn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use protocol::{Capabilities, CloseCode, DeviceId, ErrorCode, GoAway, GoAwayReason, Note, Seq, UserId};
use slab::Slab;

use crate::backend::{Backend, Replies, ReplySink};
use crate::directory::{Directory, SessionRef};
use admission::Admission;
use conn::Conn;
use deadlines::Deadlines;
pub(crate) use fanout::Remote;
pub(crate) use messaging::Pending;
use observe::MetricsObserver;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const WSS_LISTENER: Token = Token(2);
const FIRST_SESSION: usize = 3;
/// Bytes one read takes from a socket.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes one session may read per loop turn before the others get a turn.
const READ_BUDGET: usize = 4 * READ_CHUNK;
/// Capacity above which the worker's input buffer is released after a read
/// instead of kept for the next one: a large partial frame (an `/echo`
/// message of up to 16 MiB) grows it once, and kept it would stay that size
/// for the life of the worker.
const INPUT_KEEP: usize = 2 * READ_BUDGET;

/// A command from another thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// Close a session replaced by a newer connection of its device (4007).
    Replace(SessionRef),
    /// New session settings and limits (SIGHUP): they apply to every session
    /// from its next call on, except the WebSocket message limit, which each
    /// session fixed at its upgrade.
    Reconfigure(Box<Reconfigure>),
    /// Start draining: stop accepting, GOAWAY every live session within
    /// `window`, close what is left at `deadline`.
    Drain {
        /// Spread GOAWAYs over this long.
        window: Duration,
        /// Close every session by then.
        deadline: Instant,
    },
    /// Stop now (SIGINT): close every session with 1001 and exit.
    Stop,
    /// Output for sessions of this worker, batched by another worker.
    Remote(Vec<Remote>),
}

/// Messaging settings of a worker (from `[store]` and `[messaging]`).
#[derive(Debug, Clone)]
pub(crate) struct Messaging {
    /// Store requests outstanding at most.
    pub(crate) max_inflight: usize,
    /// Presence grace period.
    pub(crate) grace: Duration,
    /// The same, in ms.
    pub(crate) grace_ms: u64,
    /// TYPING throttle per conversation.
    pub(crate) typing_interval: Duration,
    /// PREKEY_FETCH budget per user and minute.
    pub(crate) prekey_fetches_per_min: u32,
    /// PREKEY_LOW mark.
    pub(crate) prekey_low: u32,
    /// AUTH_OK.max_payload.
    pub(crate) max_payload: u32,
}

/// The reloadable part of a worker's settings.
#[derive(Debug)]
pub(crate) struct Reconfigure {
    /// Session settings.
    pub(crate) session: SessionConfig,
    /// The node's connection limit (0: none).
    pub(crate) max_connections: usize,
    /// New connections per client IP: per second and burst, for the node.
    pub(crate) connections_per_ip: (u32, u32),
}

/// What a worker shares with the node.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// Session settings.
    pub(crate) session: SessionConfig,
    /// Token verification keys (and the clock skew allowed); SIGHUP swaps
    /// them. Read once per HELLO, never per frame.
    pub(crate) verifier: Arc<RwLock<Arc<Verifier>>>,
    /// The wss listener's TLS configuration, when there is one; SIGHUP
    /// reloads it. Read once per accepted wss connection.
    pub(crate) tls: Option<Reloadable>,
    /// Node directory.
    pub(crate) directory: Arc<Directory>,
    /// Every worker's inbox, by worker index.
    pub(crate) inboxes: Arc<Vec<(Sender<Command>, Arc<Waker>)>>,
    /// Stop accepting above this many sessions (0: no limit); resume below
    /// `max_connections * resume_ratio`.
    pub(crate) max_connections: usize,
    /// See `max_connections`.
    pub(crate) resume_ratio: f64,
    /// New connections per client IP: per second and burst, for the node
    /// (each worker enforces its share).
    pub(crate) connections_per_ip: (u32, u32),
    /// The store and push services.
    pub(crate) backend: Backend,
    /// Messaging settings.
    pub(crate) messaging: Messaging,
}

/// Where a worker listens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listen {
    /// Plain WebSocket (ws://).
    pub(crate) ws: SocketAddr,
    /// WebSocket over TLS (wss://), if configured.
    pub(crate) wss: Option<SocketAddr>,
    /// listen(2) backlog of each.
    pub(crate) backlog: i32,
}

/// A worker, before its thread starts.
#[derive(Debug)]
pub(crate) struct Worker {
    index: usize,
    poll: Poll,
    /// The ws listener; `None` once draining (closed).
    listener: Option<TcpListener>,
    /// The wss listener (with `Shared::tls`); `None` without one or once
    /// draining.
    wss: Option<TcpListener>,
    listening: bool,
    inbox: Receiver<Command>,
    shared: Shared,
    metrics: Arc<WorkerMetrics>,
    conns: Slab<Conn>,
    admission: Admission,
    deadlines: Deadlines,
    scratch: Vec<u8>,
    input: BytesMut,
    /// Records encrypted for one TLS write (shared by every connection).
    tls_out: Vec<u8>,
    actions: Vec<Action>,
    /// The second action buffer `after` swaps with `actions`.
    spare: Vec<Action>,
    dirty: Vec<usize>,
    due: Vec<(usize, u32)>,
    reread: Vec<usize>,
    next_generation: u64,
    draining: Option<Instant>,
    /// Store answers come back here.
    replies: Replies<Pending>,
    /// Cloned into each store request's completion.
    sink: ReplySink<Pending>,
    /// Store requests outstanding.
    inflight: usize,
    /// Output for other sessions, by worker index (see `fanout`).
    outgoing: Vec<Vec<Remote>>,
    /// A batch was refused by a full inbox: poll again soon.
    retry_outgoing: bool,
    /// Scratch for directory lookups.
    devices: Vec<(DeviceId, SessionRef)>,
    /// Scratch for presence watchers.
    watchers: Vec<SessionRef>,
    /// Users who left: (announce offline at, user, left at ms), in time order.
    presence_due: VecDeque<(Instant, UserId, u64)>,
    messaging: Messaging,
}

impl Worker {
    /// Binds the worker's listeners (with `SO_REUSEPORT`, so every worker has
    /// its own accept queues): ws and, if given, wss (TLS with `shared.tls`).
    /// Creates its poll and inbox.
    pub(crate) fn new(
        index: usize,
        listen: Listen,
        inbox: Receiver<Command>,
        poll: Poll,
        shared: Shared,
        metrics: Arc<WorkerMetrics>,
        (sink, replies): (ReplySink<Pending>, Replies<Pending>),
    ) -> io::Result<Self> {
        let mut listener = TcpListener::from_std(reuseport_listener(listen.ws, listen.backlog)?);
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let wss = match (listen.wss, &shared.tls) {
            (Some(addr), Some(_)) => {
                let mut wss = TcpListener::from_std(reuseport_listener(addr, listen.backlog)?);
                poll.registry().register(&mut wss, WSS_LISTENER, Interest::READABLE)?;
                Some(wss)
            }
            (Some(_), None) => return Err(io::Error::other("a wss listener needs a TLS configuration")),
            (None, _) => None,
        };
        let (per_sec, burst) = shared.connections_per_ip;
        let admission = Admission::new(per_sec, burst, shared.inboxes.len(), Instant::now());
        let messaging = shared.messaging.clone();
        let outgoing = (0..shared.inboxes.len()).map(|_| Vec::new()).collect();
        Ok(Self {
            index,
            poll,
            listener: Some(listener),
            wss,
            listening: true,
            inbox,
            shared,
            metrics,
            conns: Slab::new(),
            admission,
            deadlines: Deadlines::new(Instant::now()),
            scratch: vec![0; READ_CHUNK],
            input: BytesMut::new(),
            tls_out: Vec::new(),
            actions: Vec::new(),
            spare: Vec::new(),
            dirty: Vec::new(),
            due: Vec::new(),
            reread: Vec::new(),
            next_generation: 1,
            draining: None,
            replies,
            sink,
            inflight: 0,
            outgoing,
            retry_outgoing: false,
            devices: Vec::new(),
            watchers: Vec::new(),
            presence_due: VecDeque::new(),
            messaging,
        })
    }

    /// The address the listener is bound to (its port, when 0 was asked).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.as_ref().ok_or_else(|| io::Error::other("the listener is closed"))?.local_addr()
    }

    /// The address the wss listener is bound to, if there is one.
    pub(crate) fn wss_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.wss.as_ref().map(TcpListener::local_addr).transpose()
    }

    /// The token of the waker other threads use to wake this worker.
    pub(crate) fn waker_token() -> Token {
        WAKER
    }

    /// Runs the loop until the worker is stopped or has drained.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            // Sessions with input left over from the last turn: do not sleep.
            let now = Instant::now();
            let timeout = match (self.reread.is_empty(), self.retry_outgoing) {
                (false, _) => Some(Duration::ZERO),
                // A batch for a full inbox: try again shortly.
                (true, true) => Some(Duration::from_millis(1)),
                (true, false) => earliest(
                    earliest(self.deadlines.timeout(now), self.presence_timeout(now)),
                    self.draining.map(|deadline| deadline.saturating_duration_since(now)),
                ),
            };
            self.retry_outgoing = false;
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let turn = Instant::now();
            for key in std::mem::take(&mut self.reread) {
                self.read(turn, key, false);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(turn, false),
                    WSS_LISTENER => self.accept(turn, true),
                    WAKER => {}
                    Token(token) => {
                        let key = token - FIRST_SESSION;
                        if event.is_read_closed() || event.is_error() {
                            self.read(turn, key, false);
                        } else if event.is_readable() {
                            self.read(turn, key, true);
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            self.run_deadlines(turn);
            self.drain_replies(turn);
            // Past the drain deadline nothing is waited for: not even the
            // clients' answers to the close frames (the sessions' linger).
            if self.drain_inbox(turn) || self.draining.is_some_and(|deadline| turn >= deadline) {
                self.close_all(turn);
                self.flush(turn);
                return Ok(());
            }
            self.expire_presence(turn);
            self.flush_outgoing(turn);
            self.flush(turn);
            self.metrics.loop_turn.observe(turn.elapsed());
            if self.draining.is_some() && self.conns.is_empty() {
                return Ok(());
            }
        }
    }

    /// Accepts from the ws listener, or with `tls` from the wss one.
    fn accept(&mut self, now: Instant, tls: bool) {
        while self.listening {
            let listener = if tls { &self.wss } else { &self.listener };
            let Some(listener) = listener else { return };
            let accepted = listener.accept();
            match accepted {
                Ok((mut stream, peer)) => {
                    if !self.admission.admit(peer.ip(), now) {
                        // Best effort: the answer fits any socket buffer. On
                        // the wss listener plain HTTP would be a garbage TLS
                        // record, so that connection is just closed.
                        if !tls {
                            use std::io::Write;
                            let _ = stream.write(admission::TOO_MANY);
                        }
                        self.metrics.drops.inc(gateway_admin::DropReason::RateLimited);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    // The configuration current now; a reload applies to
                    // later connections.
                    let tls = match (tls, &self.shared.tls) {
                        (true, Some(config)) => match TlsConn::new(config.current()) {
                            Ok(tls) => Some(tls),
                            Err(err) => {
                                tracing::warn!(%err, "TLS connection");
                                continue;
                            }
                        },
                        _ => None,
                    };
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    let token = Token(key + FIRST_SESSION);
                    if let Err(err) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                        tracing::warn!(%err, "register accepted socket");
                        continue;
                    }
                    let mut observer = MetricsObserver(&self.metrics);
                    let session = Session::new(&mut Ctx {
                        now,
                        config: &self.shared.session,
                        observer: &mut observer,
                        actions: &mut self.actions,
                    });
                    let generation = self.next_generation;
                    self.next_generation += 1;
                    entry.insert(Conn::new(stream, session, generation, tls));
                    self.metrics.accepts.inc();
                    self.metrics.sessions_open.inc();
                    self.reschedule(key);
                    self.account(key);
                    self.check_capacity();
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    // EMFILE and friends: stop for this turn; the backlog keeps them.
                    tracing::warn!(%err, "accept");
                    return;
                }
            }
        }
    }

    /// Stops accepting at `max_connections`; resumes below the resume ratio
    /// (sozu's hysteresis, so the listener does not flap at the limit).
    fn check_capacity(&mut self) {
        let max = self.shared.max_connections;
        if max == 0 || self.draining.is_some() {
            return;
        }
        let open = self.conns.len();
        if self.listening && open >= max {
            self.set_listening(false);
        } else if !self.listening && (open as f64) < max as f64 * self.shared.resume_ratio {
            self.set_listening(true);
        }
    }

    /// Registers or deregisters every listener.
    fn set_listening(&mut self, on: bool) {
        self.listening = on;
        let registry = self.poll.registry();
        let listeners = self
            .listener
            .as_mut()
            .map(|ws| (ws, LISTENER))
            .into_iter()
            .chain(self.wss.as_mut().map(|wss| (wss, WSS_LISTENER)));
        for (listener, token) in listeners {
            let _ = match on {
                true => registry.register(listener, token, Interest::READABLE),
                false => registry.deregister(listener),
            };
        }
    }

    /// Reads connection `key` (see [`Conn::read_into`] for `stop_short`) and
    /// hands what came to its session.
    fn read(&mut self, now: Instant, key: usize, stop_short: bool) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let outcome = conn.read_into(&mut self.scratch, &mut self.input, READ_BUDGET, stop_short);
        if outcome.more {
            self.reread.push(key);
        }
        self.metrics.bytes_in.add(outcome.bytes as u64);
        if outcome.tls_failed {
            self.metrics.handshake_failures.inc(HandshakeFailure::Tls);
        }
        if !self.input.is_empty() {
            let mut observer = MetricsObserver(&self.metrics);
            let mut ctx = Ctx {
                now,
                config: &self.shared.session,
                observer: &mut observer,
                actions: &mut self.actions,
            };
            conn.session.handle_read(&mut ctx, &mut self.input);
            conn.keep_partial(&mut self.input);
            if self.input.capacity() > INPUT_KEEP {
                self.input = BytesMut::new();
            }
        }
        if outcome.closed {
            // The peer is gone: nothing more to read or write.
            self.actions.push(Action::Close);
        }
        self.after(now, key);
    }

    /// Handles the actions a session call produced (and any that handling
    /// them produces, until none is left), then schedules its deadline.
    fn after(&mut self, now: Instant, key: usize) {
        let mut close = false;
        while !self.actions.is_empty() {
            // Two buffers swap so that no call allocates in steady state.
            let mut batch = std::mem::replace(&mut self.actions, std::mem::take(&mut self.spare));
            for action in batch.drain(..) {
                match action {
                    Action::Verify(hello) => self.verify(now, key, &hello),
                    Action::Frame(frame) => self.route(now, key, frame),
                    action @ (Action::ReadInbox { .. } | Action::Acked(_) | Action::Synced) => {
                        self.delivery_action(now, key, action);
                    }
                    Action::LivePaused | Action::LiveResumed => {}
                    Action::Close => close = true,
                }
            }
            self.spare = batch;
        }
        if close {
            self.remove(key);
            return;
        }
        self.mark_dirty(key);
        self.reschedule(key);
        self.account(key);
    }

    /// Runs `f` on connection `key` with a context for this call; `None` if
    /// the connection is gone.
    fn call<R>(
        &mut self,
        now: Instant,
        key: usize,
        f: impl FnOnce(&mut Conn, &mut Ctx<'_, MetricsObserver<'_>>) -> R,
    ) -> Option<R> {
        let conn = self.conns.get_mut(key)?;
        let mut observer = MetricsObserver(&self.metrics);
        let mut ctx =
            Ctx { now, config: &self.shared.session, observer: &mut observer, actions: &mut self.actions };
        Some(f(conn, &mut ctx))
    }

    /// Moves the state and queue gauges by what changed for this connection.
    fn account(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let state = state_label(conn.session.state());
        let queued = u32::try_from(conn.session.outbound().len()).unwrap_or(u32::MAX);
        let (old_state, old_queued) = conn.reported;
        if state != old_state {
            self.metrics.sessions.transition(old_state, state);
        }
        if queued != old_queued {
            self.metrics.outbound_queue_bytes.add(i64::from(queued) - i64::from(old_queued));
        }
        conn.reported = (state, queued);
    }

    fn verify(&mut self, now: Instant, key: usize, hello: &protocol::Hello) {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let verifier = match self.shared.verifier.read() {
            Ok(verifier) => Arc::clone(&verifier),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        let result = verifier.verify_for_device(hello.token.bytes(), hello.device, unix.as_secs());
        let Some(conn) = self.conns.get_mut(key) else { return };
        let mut observer = MetricsObserver(&self.metrics);
        let mut ctx =
            Ctx { now, config: &self.shared.session, observer: &mut observer, actions: &mut self.actions };
        let claims = match result {
            Ok(claims) => claims,
            Err(err) => {
                let code = err.error_code();
                let close = if code == ErrorCode::AUTH_EXPIRED {
                    CloseCode::AUTH_EXPIRED
                } else {
                    CloseCode::AUTH_FAILED
                };
                conn.session.reject(&mut ctx, code, close, err.reason(), &err.to_string());
                return;
            }
        };
        let pending = Pending::Connect {
            resume_after: hello.resume_after,
            capabilities: hello.capabilities.intersection(Capabilities::ALL),
            version: protocol::limits::VERSION_MAX.min(hello.max_version),
        };
        self.connect(now, key, claims.user, claims.device, pending);
    }

    /// Closes a session replaced by a newer connection of the same device.
    fn replace(&mut self, now: Instant, old: SessionRef) {
        if old.worker != self.index {
            if let Some((sender, waker)) = self.shared.inboxes.get(old.worker) {
                // Never block this loop on another worker's full inbox: the old
                // session then lives until its own heartbeat or close, and the
                // shed command is counted.
                match sender.try_send(Command::Replace(old)) {
                    Ok(()) => {
                        let _ = waker.wake();
                    }
                    Err(_) => self.metrics.drops.inc(gateway_admin::DropReason::InboxFull),
                }
            }
            return;
        }
        if self.conns.get(old.key).is_none_or(|c| c.generation != old.generation) {
            return;
        }
        // This may run while another session's actions are being handled:
        // keep the old session's own actions apart from them.
        let mark = self.actions.len();
        self.call(now, old.key, |conn, ctx| {
            // The replacement owns the directory entry now.
            conn.identity = None;
            conn.session.close_with(ctx, CloseCode::REPLACED, "replaced by a newer connection");
        });
        let closed = self.actions.drain(mark..).any(|a| matches!(a, Action::Close));
        if closed {
            self.remove(old.key);
        } else {
            self.mark_dirty(old.key);
            self.reschedule(old.key);
            self.account(old.key);
        }
    }

    fn run_deadlines(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        self.deadlines.take_due(now, &mut due);
        for &(key, slot) in &due {
            let ran = self.call(now, key, |conn, ctx| {
                if conn.scheduled == Some(slot) {
                    conn.scheduled = None;
                }
                conn.session.handle_timeout(ctx);
            });
            if ran.is_some() {
                self.after(now, key);
            }
        }
        due.clear();
        self.due = due;
    }

    /// Takes commands off the inbox; true when the worker must stop now.
    fn drain_inbox(&mut self, now: Instant) -> bool {
        self.metrics.inbox_depth.set(i64::try_from(self.inbox.len()).unwrap_or(i64::MAX));
        loop {
            match self.inbox.try_recv() {
                Ok(Command::Replace(old)) => self.replace(now, old),
                Ok(Command::Drain { window, deadline }) => self.start_drain(now, window, deadline),
                Ok(Command::Reconfigure(new)) => self.reconfigure(*new),
                Ok(Command::Stop) => return true,
                Ok(Command::Remote(batch)) => self.apply(now, batch),
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Handles every store answer that arrived.
    fn drain_replies(&mut self, now: Instant) {
        let mut replies = Vec::new();
        self.replies.drain(|reply| replies.push(reply));
        for reply in replies {
            self.on_reply(now, reply.to, reply.pending, reply.result);
        }
    }

    fn reconfigure(&mut self, new: Reconfigure) {
        let workers = self.shared.inboxes.len();
        self.shared.session = new.session;
        self.shared.max_connections = new.max_connections.div_ceil(workers.max(1));
        self.shared.connections_per_ip = new.connections_per_ip;
        let (per_sec, burst) = new.connections_per_ip;
        self.admission = Admission::new(per_sec, burst, workers, Instant::now());
        self.check_capacity();
    }

    /// SIGTERM: close the listeners and send GOAWAY to each session, spread
    /// over `window` so that clients do not all reconnect in the same instant.
    fn start_drain(&mut self, now: Instant, window: Duration, deadline: Instant) {
        if self.draining.is_some() {
            return;
        }
        self.draining = Some(deadline);
        if self.listening {
            self.set_listening(false);
        }
        // Closed rather than only left unpolled: connections queued or still
        // arriving are reset (a load balancer's "connection refused": try
        // another node) instead of hanging until the process exits. With
        // SO_REUSEPORT the port stays open while any worker still listens.
        self.listener = None;
        self.wss = None;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        let count = keys.len().max(1) as u32;
        for (i, key) in keys.into_iter().enumerate() {
            // Session i reconnects after i/count of the window.
            let delay = window.saturating_mul(i as u32) / count;
            let grace = deadline.saturating_duration_since(now).saturating_sub(delay);
            let goaway = GoAway {
                reason: GoAwayReason::Drain,
                reconnect_after_ms: u32::try_from(delay.as_millis()).unwrap_or(u32::MAX),
                resume_after: Seq(0),
                redirect: Note::default(),
            };
            if self.call(now, key, |conn, ctx| conn.session.drain(ctx, goaway, grace)).is_some() {
                self.after(now, key);
            }
        }
    }

    fn close_all(&mut self, now: Instant) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let closing = self.call(now, key, |conn, ctx| {
                conn.session.close_with(ctx, CloseCode::GOING_AWAY, "shutting down");
            });
            if closing.is_some() {
                self.after(now, key);
            }
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Writes every session that has output (vectored, or through TLS; again
    /// while the socket takes all it is given), then updates write interest.
    fn flush(&mut self, now: Instant) {
        let dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(conn) = self.conns.get_mut(key) else { continue };
            conn.dirty = false;
            conn.session.flush();
            let mut observer = MetricsObserver(&self.metrics);
            let mut ctx = Ctx {
                now,
                config: &self.shared.session,
                observer: &mut observer,
                actions: &mut self.actions,
            };
            loop {
                let written = conn.write_once(&mut self.tls_out);
                self.metrics.bytes_out.add(written.wire as u64);
                conn.session.handle_written(&mut ctx, written.bytes);
                if written.failed {
                    ctx.actions.push(Action::Close);
                    break;
                }
                let progress = written.bytes > 0 || written.wire > 0;
                if written.blocked || !progress || !conn.wants_write() {
                    break;
                }
            }
            let wants_write = conn.wants_write();
            conn.set_writable_interest(self.poll.registry(), Token(key + FIRST_SESSION), wants_write);
            if self.actions.is_empty() {
                self.reschedule(key);
                self.account(key);
            } else {
                self.after(now, key);
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    fn reschedule(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        if let Some(at) = conn.session.poll_timeout() {
            conn.scheduled = Some(self.deadlines.schedule(key, at, conn.scheduled));
        }
    }

    /// Forgets a finished session: last best-effort write, deregister, close.
    fn remove(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        self.flush_ack(key);
        let mut conn = self.conns.remove(key);
        let (state, queued) = conn.reported;
        self.metrics.sessions.transition(state, None);
        self.metrics.outbound_queue_bytes.add(-i64::from(queued));
        conn.session.flush();
        // Best effort: the close frame or HTTP answer (and under TLS an alert
        // or close_notify), if the socket takes it.
        conn.write_last(&mut self.tls_out);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let me = SessionRef { worker: self.index, key, generation: conn.generation };
        if let Some((user, device)) = conn.identity {
            let left_at = messaging::unix_ms();
            if self.shared.directory.remove(user, device, me, left_at) {
                self.left(Instant::now(), user, left_at.max(1));
            }
        }
        if let Some(extras) = conn.extras.take() {
            for user in extras.watching {
                self.shared.directory.unwatch(user, me);
            }
        }
        self.metrics.sessions_open.dec();
        self.check_capacity();
    }
}

/// The `gateway_sessions{state}` label of a session state (closing sessions
/// are not counted: they are on their way out).
fn state_label(state: gateway_core::State) -> Option<gateway_admin::SessionState> {
    use gateway_admin::SessionState as Label;
    use gateway_core::State;
    match state {
        State::Handshake => Some(Label::Handshake),
        State::AwaitHello | State::Verifying => Some(Label::Auth),
        State::Live(_) | State::Echo => Some(Label::Live),
        State::Draining(_) => Some(Label::Draining),
        State::Closing | State::Closed => None,
    }
}

/// The earlier of two optional timeouts.
fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A listener with `SO_REUSEPORT`: every worker binds the same address and the
/// kernel spreads new connections across their accept queues.
fn reuseport_listener(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}
