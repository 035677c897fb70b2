//! Listening and accepting on the ring: the worker's own `SO_REUSEPORT`
//! listeners.
//!
//! Far from the connection limit a listener has a multishot accept armed.
//! That accept takes every connection the backlog holds at each wake-up, so
//! within twice the backlog of the limit it is cancelled and single accepts
//! take over, never more in flight than there is room: at the limit the
//! rest wait in the backlog, as with epoll. At the limit and at a drain the
//! accepts are cancelled; a drained listener is closed once they have ended,
//! so new connections are refused.
//!
//! At most `listen.accepts_per_turn` accepted connections per listener
//! become sessions per turn, as the epoll driver takes them from the
//! backlog; the rest wait in the listener's queue, with no session and no
//! deadline of the node yet, for the end of the turn and the next turns. While
//! connections wait there the listener's accepts are cancelled and not
//! armed again, so the queue holds at most what one wake-up took (about
//! one backlog) and the rest wait in the kernel's.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use gateway_hub::Now;
use gateway_uring::{OpId, Ring};

use super::conn::{self, Conn, Piece};
use super::Running;
use crate::driver::{reuseport_listener, tls_layer, Listen};

/// How long after a failed accept (out of descriptors, say) the worker
/// arms it again; the backlog keeps the connections meanwhile.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
/// Most single accepts in flight per listener.
const SINGLE_ACCEPTS: usize = 16;

#[derive(Debug)]
struct Listener {
    /// `None` once closed (drained).
    socket: Option<TcpListener>,
    /// The multishot accept, while armed (until its last completion, even
    /// once cancelled).
    multishot: Option<OpId>,
    /// Single accepts in flight.
    singles: usize,
    /// Close the socket once its accepts have ended.
    closing: bool,
    /// The tags of its multishot and its single accepts.
    tags: (u64, u64),
    /// Accepted, not yet sessions (see the module's comment).
    queued: VecDeque<TcpStream>,
    /// Connections made sessions this turn.
    taken: usize,
}

impl Listener {
    fn new(socket: TcpListener, tags: (u64, u64)) -> Self {
        Self {
            socket: Some(socket),
            multishot: None,
            singles: 0,
            closing: false,
            tags,
            queued: VecDeque::new(),
            taken: 0,
        }
    }

    fn addr(&self) -> io::Result<SocketAddr> {
        self.socket.as_ref().ok_or_else(|| io::Error::other("the listener is closed"))?.local_addr()
    }

    /// Cancels every accept in flight (each still completes, as cancelled
    /// or with a connection).
    fn cancel(&mut self, ring: &mut Ring<Piece>) {
        if let Some(socket) = &self.socket {
            if self.multishot.is_some() || self.singles > 0 {
                let _ = ring.cancel_fd(socket.as_raw_fd());
            }
        }
    }

    /// Closes a drained listener once nothing of it is in flight.
    fn close_if_done(&mut self) {
        if self.closing && self.multishot.is_none() && self.singles == 0 {
            self.socket = None;
        }
    }

    /// Arms what `room` (connections the worker may still take) calls for.
    fn arm(&mut self, ring: &mut Ring<Piece>, room: usize, backlog: usize) {
        let Some(socket) = &self.socket else { return };
        if self.closing {
            return;
        }
        if !self.queued.is_empty() {
            // The queue is served first: nothing more is taken meanwhile
            // (single accepts in flight, at most 16, may still bring one
            // each). Cancelled by its id: a cancellation by descriptor walks
            // every armed receive of the ring.
            if let Some(id) = self.multishot {
                let _ = ring.cancel(id);
            }
            return;
        }
        let fd = socket.as_raw_fd();
        if room > 2 * backlog {
            if self.multishot.is_none() {
                match ring.accept_multi(fd, self.tags.0) {
                    Ok(id) => self.multishot = Some(id),
                    Err(err) => tracing::warn!(%err, "arming an accept"),
                }
            }
            return;
        }
        if let Some(id) = self.multishot {
            // Near the limit: no more whole backlogs at once.
            let _ = ring.cancel(id);
        }
        while self.singles < SINGLE_ACCEPTS.min(room) {
            match ring.accept(fd, self.tags.1) {
                Ok(_) => self.singles += 1,
                Err(err) => {
                    tracing::warn!(%err, "arming an accept");
                    return;
                }
            }
        }
    }
}

/// A worker's listeners.
#[derive(Debug)]
pub(super) struct Listeners {
    ws: Listener,
    wss: Option<Listener>,
    /// The listen(2) backlog.
    backlog: usize,
    /// Connections each listener makes sessions of per turn.
    per_turn: usize,
    /// When to arm an accept that failed again.
    retry_at: Option<Instant>,
}

impl Listeners {
    /// Binds the ws listener and, if `listen.wss` is set, the wss one (which
    /// needs a TLS configuration: `with_tls`).
    pub(super) fn bind(listen: Listen, with_tls: bool) -> io::Result<Self> {
        let ws = Listener::new(reuseport_listener(listen.ws, listen.backlog)?, conn::ACCEPT_WS);
        let wss = match (listen.wss, with_tls) {
            (Some(addr), true) => {
                Some(Listener::new(reuseport_listener(addr, listen.backlog)?, conn::ACCEPT_WSS))
            }
            (Some(_), false) => return Err(io::Error::other("a wss listener needs a TLS configuration")),
            (None, _) => None,
        };
        let backlog = usize::try_from(listen.backlog).unwrap_or(0);
        Ok(Self { ws, wss, backlog, per_turn: listen.accepts_per_turn.max(1), retry_at: None })
    }

    pub(super) fn ws_addr(&self) -> io::Result<SocketAddr> {
        self.ws.addr()
    }

    pub(super) fn wss_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.wss.as_ref().map(Listener::addr).transpose()
    }

    /// How long until a failed accept is armed again.
    pub(super) fn retry_in(&self, now: Instant) -> Option<Duration> {
        self.retry_at.map(|at| at.saturating_duration_since(now))
    }

    /// Whether accepted connections wait to become sessions.
    pub(super) fn queued(&self) -> bool {
        self.queued_len() > 0
    }

    fn queued_len(&self) -> usize {
        self.ws.queued.len() + self.wss.as_ref().map_or(0, |wss| wss.queued.len())
    }

    fn all(&mut self) -> impl Iterator<Item = &mut Listener> {
        std::iter::once(&mut self.ws).chain(self.wss.as_mut())
    }

    fn by_tag(&mut self, tag: u64) -> Option<&mut Listener> {
        self.all().find(|listener| listener.tags.0 == tag || listener.tags.1 == tag)
    }

    /// A drain: cancels the accepts and closes the listeners (once their
    /// accepts have ended), so new connections are refused (RST) instead of
    /// waiting in an accept queue nobody reads. With `SO_REUSEPORT` the port
    /// stays open while any worker still listens.
    pub(super) fn close(&mut self, ring: &mut Ring<Piece>) {
        for listener in self.all() {
            listener.closing = true;
            listener.cancel(ring);
            listener.close_if_done();
            // Never sessions: refused like the backlog's.
            listener.queued.clear();
        }
    }
}

impl Running {
    /// Arms the accepts the open listeners need, while the worker takes
    /// connections.
    pub(super) fn arm_accepts(&mut self) {
        if !self.core.listening || self.listeners.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.listeners.retry_at = None;
        let max = self.core.shared.max_connections;
        let taken = self.core.hub.len() + self.listeners.queued_len();
        let room = if max == 0 { usize::MAX } else { max.saturating_sub(taken) };
        let backlog = self.listeners.backlog;
        let ring = &mut self.ring;
        for listener in self.listeners.all() {
            listener.arm(ring, room, backlog);
        }
    }

    /// Stops accepting at the connection limit (the accepts are cancelled;
    /// the backlog keeps what arrives), and starts again below it.
    pub(super) fn check_capacity(&mut self) {
        match self.core.capacity_change() {
            Some(false) => self.listeners.all().for_each(|listener| listener.cancel(&mut self.ring)),
            Some(true) => self.arm_accepts(),
            None => {}
        }
    }

    /// A connection (or an error) from a listener's accept: a session now
    /// while the listener's share of this turn lasts, else queued.
    pub(super) fn on_accept(&mut self, now: Now, tag: u64, socket: io::Result<OwnedFd>, ended: bool) {
        // Taken between a drain's (or a stop's) cancellation and its
        // completion: refused (closed here).
        let refused = self.core.draining.is_some() || self.stopping;
        // Paused at the connection limit (or by a reload that lowered it
        // while this accept was armed): queued until there is room.
        let listening = self.core.listening;
        let per_turn = self.listeners.per_turn;
        let Some(listener) = self.listeners.by_tag(tag) else { return };
        let from_wss = listener.tags == conn::ACCEPT_WSS;
        if tag == listener.tags.1 {
            listener.singles = listener.singles.saturating_sub(1);
        } else if ended {
            listener.multishot = None;
        }
        listener.close_if_done();
        match socket {
            // Within this turn's share: a session now, as its bytes may
            // already be here.
            Ok(socket)
                if !refused && listening && listener.queued.is_empty() && listener.taken < per_turn =>
            {
                listener.taken += 1;
                self.admit(now, TcpStream::from(socket), from_wss);
            }
            Ok(socket) if !refused => listener.queued.push_back(TcpStream::from(socket)),
            Ok(_) => {}
            Err(err) if gateway_uring::cancelled(&err) => {}
            Err(err) => {
                // EMFILE and friends: the backlog keeps them; try again soon.
                tracing::warn!(%err, "accept");
                self.listeners.retry_at = Some(now.at + ACCEPT_RETRY);
            }
        }
    }

    /// Makes sessions of queued connections, up to `listen.accepts_per_turn`
    /// per listener this turn with those its completions made, while the
    /// worker takes connections (none at the connection limit: they wait
    /// for room; none once the worker is stopping: they close with it); the
    /// next turn's share starts.
    pub(super) fn admit_queued(&mut self, now: Now) {
        for from_wss in [false, true] {
            loop {
                let per_turn = self.listeners.per_turn;
                // Re-read per connection: the one before may have reached the limit.
                let closed = self.stopping || !self.core.listening;
                let listener =
                    if from_wss { self.listeners.wss.as_mut() } else { Some(&mut self.listeners.ws) };
                let Some(listener) = listener else { break };
                if closed || listener.taken >= per_turn {
                    listener.taken = 0;
                    break;
                }
                let Some(socket) = listener.queued.pop_front() else {
                    listener.taken = 0;
                    break;
                };
                listener.taken += 1;
                self.admit(now, socket, from_wss);
            }
        }
    }

    fn admit(&mut self, now: Now, mut socket: TcpStream, from_wss: bool) {
        let Ok(peer) = socket.peer_addr() else { return };
        if !self.core.admit(peer.ip(), now.at, &mut socket, from_wss) {
            return;
        }
        let _ = socket.set_nodelay(true);
        let Some(layer) = tls_layer(&self.core.shared, from_wss) else { return };
        let key = self.core.hub.vacant_key();
        let generation = self.next_generation(key);
        let fd = socket.as_raw_fd();
        if let Err(err) = self.ring.recv_multi(fd, conn::tag(key, generation)) {
            tracing::warn!(%err, "arming a receive");
            return;
        }
        let mut connection = Conn::new(socket, generation, layer);
        connection.set_receiving(true);
        let inserted = self.core.hub.insert(now, connection);
        debug_assert_eq!(inserted, key);
        self.core.metrics.accepts.inc();
        self.core.metrics.sessions_open.inc();
        self.check_capacity();
    }

    /// A generation for a connection in slot `key` that no closed
    /// connection still waiting in that slot has.
    fn next_generation(&mut self, key: usize) -> u16 {
        loop {
            let generation = self.generation;
            self.generation = self.generation.wrapping_add(1);
            if !self.closing.contains_key(&conn::tag(key, generation)) {
                return generation;
            }
        }
    }
}
