//! The epoll driver: one worker thread's mio loop around its hub. It owns
//! the `Poll`, its own `SO_REUSEPORT` listeners (ws, and wss when
//! configured), the sockets and their TLS layers, and the per-worker read
//! scratch; the rest of the worker (hub, inbox, deadlines, admission, the
//! work a turn sends out) is the [`Core`] both drivers share. Each
//! connection's driver part ([`Conn`]) rides in its session's slot in the
//! hub.
//!
//! One loop turn: wait for events (or the next deadline) → read the clock →
//! read and hand bytes to the hub → accept (at most `listen.accepts_per_turn`
//! per listener) → run due deadlines → store
//! answers → inbox → hub timers → end of turn: the hub's own batch, batches
//! to other workers, one vectored write per session with output, store and
//! push work sent, closed sessions' last writes.
//!
//! A drain (SIGTERM) closes the listeners at once, so new connections are
//! refused (RST) instead of waiting in an accept queue nobody reads, and the
//! worker returns at the drain deadline, closing what is left with 1001
//! without waiting out the close handshake.

mod accept;
mod conn;
mod write;

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use gateway_admin::HandshakeFailure;
use gateway_hub::Now;
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::worker::{clock, Core};
use super::Listen;
pub(crate) use conn::Conn;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const WSS_LISTENER: Token = Token(2);
const FIRST_SESSION: usize = 3;
/// Bytes one read takes from a socket.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes one session may read per loop turn before the others get a turn.
const READ_BUDGET: usize = 4 * READ_CHUNK;

/// A worker, before its thread starts.
#[derive(Debug)]
pub(crate) struct Worker {
    core: Core<Conn>,
    poll: Poll,
    /// The ws listener; `None` once draining (closed).
    listener: Option<TcpListener>,
    /// The wss listener (with `Shared::tls`); `None` without one or once
    /// draining.
    wss: Option<TcpListener>,
    scratch: Vec<u8>,
    /// Records encrypted for one TLS write (shared by every connection).
    tls_out: Vec<u8>,
    /// Sessions with input left over from the last turn.
    reread: Vec<usize>,
    /// Connections taken from each listener per turn (`listen.accepts_per_turn`).
    accepts_per_turn: usize,
    /// The listeners (ws, wss) to take connections from this turn: those
    /// that signalled, and those that stopped at `accepts_per_turn` last
    /// turn (the poll is edge-triggered: what they left in the backlog
    /// signals nothing more).
    accept_from: [bool; 2],
}

impl Worker {
    /// Binds the worker's listeners (with `SO_REUSEPORT`, so every worker has
    /// its own accept queues): ws and, if given, wss (TLS with `shared.tls`);
    /// registers `waker` (the worker's eventfd) with its poll.
    pub(crate) fn new(core: Core<Conn>, listen: Listen, waker: RawFd) -> io::Result<Self> {
        let poll = Poll::new()?;
        poll.registry().register(&mut SourceFd(&waker), WAKER, Interest::READABLE)?;
        let (listener, wss) = accept::listeners(&poll, listen, core.shared.tls.is_some())?;
        Ok(Self {
            core,
            poll,
            listener: Some(listener),
            wss,
            scratch: vec![0; READ_CHUNK],
            tls_out: Vec::new(),
            reread: Vec::new(),
            accepts_per_turn: listen.accepts_per_turn.max(1),
            accept_from: [false; 2],
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

    /// Runs the loop until the worker is stopped or has drained.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        // The end of the last turn: its length, and the time the next
        // wait's timeout counts from (one clock read for both).
        let mut turn_end = std::time::Instant::now();
        loop {
            let busy = !self.reread.is_empty() || self.accept_from.contains(&true);
            let timeout = self.core.poll_timeout(turn_end, busy);
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    // The next wait's timeout counts from now, not from
                    // the turn before the signal.
                    turn_end = std::time::Instant::now();
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
                    LISTENER => self.accept_from[0] = true,
                    WSS_LISTENER => self.accept_from[1] = true,
                    WAKER => {}
                    Token(token) => {
                        let key = token - FIRST_SESSION;
                        if event.is_read_closed() || event.is_error() {
                            self.read(now, key, false);
                        } else if event.is_readable() {
                            self.read(now, key, true);
                        }
                        if event.is_writable() {
                            self.core.mark_dirty(key);
                        }
                    }
                }
            }
            // After the sessions' input: the sessions a turn takes in are
            // served before more are taken.
            let [ws, wss] = std::mem::take(&mut self.accept_from);
            if ws {
                self.accept(now, false);
            }
            if wss {
                self.accept(now, true);
            }
            self.core.run_deadlines(now);
            self.core.drain_replies(now);
            let inboxed = self.core.drain_inbox(now);
            if inboxed.drain_started {
                self.close_listeners();
            }
            if inboxed.reconfigured {
                self.check_capacity();
            }
            if inboxed.stop || self.core.past_drain_deadline(now) {
                self.core.hub.close_all(now);
                self.end_turn(now);
                return Ok(());
            }
            self.core.hub_timers(now);
            self.end_turn(now);
            turn_end = std::time::Instant::now();
            self.core.metrics.loop_turn.observe(turn_end.saturating_duration_since(now.at));
            if self.core.drained() {
                return Ok(());
            }
        }
    }

    /// Reads connection `key` (see [`Conn::read_into`] for `stop_short`) and
    /// hands what came to the hub.
    fn read(&mut self, now: Now, key: usize, stop_short: bool) {
        let core = &mut self.core;
        let Some(conn) = core.hub.conn_mut(key) else { return };
        let outcome = conn.read_into(&mut self.scratch, &mut core.input, READ_BUDGET, stop_short);
        if outcome.more {
            self.reread.push(key);
        }
        core.metrics.bytes_in.add(outcome.bytes as u64);
        if outcome.tls_failed {
            core.metrics.handshake_failures.inc(HandshakeFailure::Tls);
        }
        // A read may leave TLS records to write (the handshake) even when no
        // plaintext reached the session.
        core.mark_dirty(key);
        core.deliver_input(now, key);
        if outcome.closed {
            // The peer is gone: nothing more to read or write.
            core.hub.handle_peer_gone(now, key);
        }
    }

    /// SIGTERM: the listeners are closed rather than only left unpolled:
    /// connections queued or still arriving are reset (a load balancer's
    /// "connection refused": try another node) instead of hanging until the
    /// process exits. With SO_REUSEPORT the port stays open while any worker
    /// still listens.
    fn close_listeners(&mut self) {
        self.set_listening(false);
        self.listener = None;
        self.wss = None;
    }

    /// The end of a turn: the hub's own batch, batches to other workers,
    /// writes, store and push work, closed sessions.
    fn end_turn(&mut self, now: Now) {
        self.core.end_hub_turn(now);
        self.write_dirty(now);
        self.core.send_work();
        self.reap_closed();
    }

    /// Last writes for the sessions the hub has finished with; their sockets
    /// close.
    fn reap_closed(&mut self) {
        let mut reaped = false;
        while let Some(mut closed) = self.core.hub.poll_closed() {
            closed.session.flush();
            // Best effort: the close frame or HTTP answer (and under TLS an
            // alert or close_notify), if the socket takes it.
            closed.conn.write_last(closed.session.outbound(), &mut self.tls_out);
            let _ = self.poll.registry().deregister(&mut closed.conn.stream);
            self.core.metrics.sessions_open.dec();
            reaped = true;
        }
        if reaped {
            self.check_capacity();
        }
    }
}
