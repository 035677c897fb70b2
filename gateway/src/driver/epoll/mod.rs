//! The epoll driver: one worker thread's mio loop around its hub. It owns
//! the `Poll`, its own `SO_REUSEPORT` listeners (ws, and wss when
//! configured), the sockets and their TLS layers, the per-worker read
//! scratch, the deadline heap, the inbox and the clock. Sessions and all
//! messaging live in the hub ([`gateway_hub::Hub`]); each connection's
//! driver part ([`Conn`]) rides in its session's slot there.
//!
//! One loop turn: wait for events (or the next deadline) → read the clock →
//! accept → read and hand bytes to the hub → run due deadlines → store
//! answers → inbox → hub timers → end of turn: the hub's own batch, batches
//! to other workers, one vectored write per session with output, store and
//! push work sent, closed sessions' last writes.
//!
//! A drain (SIGTERM) closes the listeners at once, so new connections are
//! refused (RST) instead of waiting in an accept queue nobody reads, and the
//! worker returns at the drain deadline, closing what is left with 1001
//! without waiting out the close handshake.

mod accept;
mod admission;
mod conn;
mod deadlines;
mod write;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use crossbeam_channel::{Receiver, TryRecvError};
use gateway_admin::{HandshakeFailure, WorkerMetrics};
use gateway_hub::{Hub, Now, Ticket};
use mio::net::TcpListener;
use mio::{Events, Poll, Token};

use super::{Command, Listen, Reconfigure, Shared};
use crate::backend::{Outcome, Replies, ReplySink};
use admission::Admission;
use conn::Conn;
use deadlines::Deadlines;

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
/// How soon the loop turns again when another worker's inbox refused a
/// batch.
const RETRY_BATCHES: Duration = Duration::from_millis(1);

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
    /// The sessions and their messaging; each slot carries its [`Conn`].
    hub: Hub<Conn>,
    admission: Admission,
    deadlines: Deadlines,
    scratch: Vec<u8>,
    input: BytesMut,
    /// Records encrypted for one TLS write (shared by every connection).
    tls_out: Vec<u8>,
    /// Sessions to write this turn.
    dirty: Vec<usize>,
    due: Vec<(usize, u32)>,
    reread: Vec<usize>,
    draining: Option<Instant>,
    /// Store answers come back here.
    replies: Replies<Ticket>,
    /// Cloned into each store request's completion.
    sink: ReplySink<Ticket>,
    /// A batch was refused by a full inbox: poll again soon.
    retry_batches: bool,
}

impl Worker {
    /// Binds the worker's listeners (with `SO_REUSEPORT`, so every worker has
    /// its own accept queues): ws and, if given, wss (TLS with `shared.tls`).
    pub(crate) fn new(
        index: usize,
        listen: Listen,
        inbox: Receiver<Command>,
        poll: Poll,
        shared: Shared,
        metrics: Arc<WorkerMetrics>,
        (sink, replies): (ReplySink<Ticket>, Replies<Ticket>),
    ) -> io::Result<Self> {
        let (listener, wss) = accept::listeners(&poll, listen, shared.tls.is_some())?;
        let (per_sec, burst) = shared.connections_per_ip;
        let workers = shared.inboxes.len();
        let admission = Admission::new(per_sec, burst, workers, Instant::now());
        let hub = Hub::new(index, workers, shared.hub.clone(), metrics.clone());
        Ok(Self {
            index,
            poll,
            listener: Some(listener),
            wss,
            listening: true,
            inbox,
            shared,
            metrics,
            hub,
            admission,
            deadlines: Deadlines::new(Instant::now()),
            scratch: vec![0; READ_CHUNK],
            input: BytesMut::new(),
            tls_out: Vec::new(),
            dirty: Vec::new(),
            due: Vec::new(),
            reread: Vec::new(),
            draining: None,
            replies,
            sink,
            retry_batches: false,
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
            let timeout = self.poll_timeout(Instant::now());
            self.retry_batches = false;
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let now = clock();
            for key in std::mem::take(&mut self.reread) {
                self.read(now, key, false);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now, false),
                    WSS_LISTENER => self.accept(now, true),
                    WAKER => {}
                    Token(token) => {
                        let key = token - FIRST_SESSION;
                        if event.is_read_closed() || event.is_error() {
                            self.read(now, key, false);
                        } else if event.is_readable() {
                            self.read(now, key, true);
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            self.run_deadlines(now);
            self.drain_replies(now);
            // Past the drain deadline nothing is waited for: not even the
            // clients' answers to the close frames (the sessions' linger).
            if self.drain_inbox(now) || self.draining.is_some_and(|deadline| now.at >= deadline) {
                self.hub.close_all(now);
                self.end_turn(now);
                return Ok(());
            }
            if self.hub.poll_timeout().is_some_and(|at| at <= now.at) {
                self.hub.handle_timeout(now);
            }
            self.end_turn(now);
            self.metrics.loop_turn.observe(now.at.elapsed());
            if self.draining.is_some() && self.hub.is_empty() {
                return Ok(());
            }
        }
    }

    /// How long the next poll may sleep.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        // Sessions with input left over from the last turn, or hub work made
        // while writing: do not sleep.
        if !self.reread.is_empty() || self.hub.has_work() {
            return Some(Duration::ZERO);
        }
        // A batch for a full inbox: try again shortly.
        if self.retry_batches {
            return Some(RETRY_BATCHES);
        }
        [self.deadlines.next(), self.hub.poll_timeout(), self.draining]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Reads connection `key` (see [`Conn::read_into`] for `stop_short`) and
    /// hands what came to the hub.
    fn read(&mut self, now: Now, key: usize, stop_short: bool) {
        let Some(conn) = self.hub.conn_mut(key) else { return };
        let outcome = conn.read_into(&mut self.scratch, &mut self.input, READ_BUDGET, stop_short);
        if outcome.more {
            self.reread.push(key);
        }
        self.metrics.bytes_in.add(outcome.bytes as u64);
        if outcome.tls_failed {
            self.metrics.handshake_failures.inc(HandshakeFailure::Tls);
        }
        // A read may leave TLS records to write (the handshake) even when no
        // plaintext reached the session.
        self.mark_dirty(key);
        if !self.input.is_empty() {
            self.hub.handle_read(now, key, &mut self.input);
            if let Some(conn) = self.hub.conn_mut(key) {
                conn.keep_partial(&mut self.input);
            }
            if self.input.capacity() > INPUT_KEEP {
                self.input = BytesMut::new();
            }
        }
        if outcome.closed {
            // The peer is gone: nothing more to read or write.
            self.hub.handle_peer_gone(now, key);
        }
    }

    fn run_deadlines(&mut self, now: Now) {
        let mut due = std::mem::take(&mut self.due);
        self.deadlines.take_due(now.at, &mut due);
        for &(key, slot) in &due {
            let Some(conn) = self.hub.conn_mut(key) else { continue };
            if conn.scheduled == Some(slot) {
                conn.scheduled = None;
            }
            self.hub.handle_session_timeout(now, key);
        }
        due.clear();
        self.due = due;
    }

    /// Takes commands off the inbox; true when the worker must stop now.
    fn drain_inbox(&mut self, now: Now) -> bool {
        self.metrics.inbox_depth.set(i64::try_from(self.inbox.len()).unwrap_or(i64::MAX));
        loop {
            match self.inbox.try_recv() {
                Ok(Command::Drain { window, deadline }) => self.start_drain(now, window, deadline),
                Ok(Command::Reconfigure(new)) => self.reconfigure(*new),
                Ok(Command::Stop) => return true,
                Ok(Command::Remote(batch)) => self.hub.handle_batch(now, batch),
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Hands every store answer that arrived to the hub.
    fn drain_replies(&mut self, now: Now) {
        let hub = &mut self.hub;
        self.replies.drain(|reply| match reply.outcome {
            Outcome::Store(result) => hub.handle_answer(now, reply.ticket, result),
            Outcome::Registered => hub.handle_registered(now, reply.ticket),
        });
    }

    fn reconfigure(&mut self, new: Reconfigure) {
        let workers = self.shared.inboxes.len();
        self.hub.reconfigure(new.session);
        self.shared.max_connections = new.max_connections.div_ceil(workers.max(1));
        self.shared.connections_per_ip = new.connections_per_ip;
        let (per_sec, burst) = new.connections_per_ip;
        self.admission = Admission::new(per_sec, burst, workers, Instant::now());
        self.check_capacity();
    }

    /// SIGTERM: close the listeners and let the hub send each session its
    /// GOAWAY, spread over `window`.
    fn start_drain(&mut self, now: Now, window: Duration, deadline: Instant) {
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
        self.hub.drain(now, window, deadline);
    }

    /// The end of a turn: the hub's own batch, batches to other workers,
    /// writes, store and push work, closed sessions.
    fn end_turn(&mut self, now: Now) {
        self.hub.end_turn(now);
        self.retry_batches = self.hub.flush_batches(&self.shared.routes);
        self.write_dirty(now);
        while let Some(call) = self.hub.poll_store() {
            self.sink.call(self.shared.backend.store.as_ref(), call.request, call.ticket);
        }
        while let Some(call) = self.hub.poll_fleet() {
            if let Some(fleet) = &self.shared.fleet {
                fleet.call(call, &self.sink);
            }
        }
        while let Some(work) = self.hub.poll_push() {
            match work {
                gateway_hub::PushWork::Notify(note) => self.shared.backend.push.notify(note),
                gateway_hub::PushWork::Connected(user, device) => {
                    self.shared.backend.push.connected(user, device)
                }
            }
        }
        self.reap_closed();
    }

    /// Last writes for the sessions the hub has finished with; their sockets
    /// close.
    fn reap_closed(&mut self) {
        let mut reaped = false;
        while let Some(mut closed) = self.hub.poll_closed() {
            closed.session.flush();
            // Best effort: the close frame or HTTP answer (and under TLS an
            // alert or close_notify), if the socket takes it.
            closed.conn.write_last(closed.session.outbound(), &mut self.tls_out);
            let _ = self.poll.registry().deregister(&mut closed.conn.stream);
            self.metrics.sessions_open.dec();
            reaped = true;
        }
        if reaped {
            self.check_capacity();
        }
    }
}

/// The time of this turn: both clocks, read once.
fn clock() -> Now {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Now { at: Instant::now(), unix_ms: u64::try_from(unix.as_millis()).unwrap_or(u64::MAX) }
}
