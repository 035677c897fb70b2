//! The io_uring driver: one ring per worker thread around its hub, the
//! same [`Core`] as the epoll driver, fewer system calls. Everything a turn
//! asks of the kernel (writes, receives re-armed, cancellations) goes in
//! with the one `io_uring_enter` that also waits for the next completions or
//! the next deadline.
//!
//! - Multishot accept on the worker's own `SO_REUSEPORT` listeners, single
//!   accepts near the connection limit; at most `listen.accepts_per_turn`
//!   accepted connections per listener become sessions per turn
//!   (`accept.rs`).
//! - One multishot receive per connection into the worker's provided
//!   buffers (`node.uring_buffers` of `node.uring_buffer_size`), each handed
//!   back as soon as its bytes are in the session (or decrypted): an idle
//!   session holds none. When they run out a receive ends with `ENOBUFS`
//!   and is armed again at the end of the turn, once buffers are back: the
//!   connection slows down, nothing is lost (`gateway_uring_buffers_dry_total`).
//! - At most one write per session in flight, owning its buffers
//!   (`io.rs`): the front of the session's output as reference-counted
//!   chunks (no copy), or TLS records; the next goes when it completes.
//! - A closed session's operations are cancelled; it waits in `closing`
//!   for their completions, then gets its last write (close frame, alert,
//!   `close_notify`) and its socket closes.
//! - Deadlines: the shared heap, as the wait's timeout.
//!
//! The ring is made on the worker's own thread (a single-issuer ring with
//! task work deferred to the waits belongs to the thread that submits).

mod accept;
mod conn;
mod io;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use gateway_hub::{Closed, Now};
use gateway_uring::{Event, Ring, Sizes};

use super::worker::{clock, Core};
use super::Listen;
pub(crate) use conn::Conn;
use conn::{Piece, Spare};

/// How long a stopping worker waits for its writes in flight (the close
/// frames of a stop among them) and the last writes of closed sessions.
const STOP_FLUSH: Duration = Duration::from_millis(200);

/// A worker, before its thread starts.
#[derive(Debug)]
pub(crate) struct Worker {
    core: Core<Conn>,
    listeners: accept::Listeners,
    waker: RawFd,
    sizes: Sizes,
}

/// A worker on its thread, with its ring.
#[derive(Debug)]
struct Running {
    core: Core<Conn>,
    ring: Ring<Piece>,
    listeners: accept::Listeners,
    waker: RawFd,
    spare: Spare,
    /// Sessions whose receive ended (buffers ran out, or a multishot
    /// receive stopped): armed again at the end of the turn.
    rearm: Vec<usize>,
    /// Closed sessions waiting for their operations' completions, by tag.
    closing: HashMap<u64, Closed<Conn>>,
    /// Writes in flight.
    writes: usize,
    /// TLS records of a last write.
    last_out: Vec<u8>,
    /// The next connection's generation.
    generation: u16,
    /// The worker is stopping: connections still accepted are refused.
    stopping: bool,
}

impl Worker {
    /// Binds the worker's listeners (as the epoll driver does); the ring is
    /// made when the thread starts.
    pub(crate) fn new(core: Core<Conn>, listen: Listen, waker: RawFd, sizes: Sizes) -> std::io::Result<Self> {
        let listeners = accept::Listeners::bind(listen, core.shared.tls.is_some())?;
        Ok(Self { core, listeners, waker, sizes })
    }

    /// The address the listener is bound to (its port, when 0 was asked).
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners.ws_addr()
    }

    /// The address the wss listener is bound to, if there is one.
    pub(crate) fn wss_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.listeners.wss_addr()
    }

    /// Makes the ring, then runs the loop until the worker is stopped or has
    /// drained.
    pub(crate) fn run(self) -> std::io::Result<()> {
        let ring = Ring::new(self.sizes).map_err(std::io::Error::other)?;
        let mut running = Running {
            core: self.core,
            ring,
            listeners: self.listeners,
            waker: self.waker,
            spare: Spare::default(),
            rearm: Vec::new(),
            closing: HashMap::new(),
            writes: 0,
            last_out: Vec::new(),
            generation: 0,
            stopping: false,
        };
        running.ring.read_wake(running.waker, conn::WAKE)?;
        running.arm_accepts();
        running.run()
    }
}

impl Running {
    fn run(&mut self) -> std::io::Result<()> {
        // The end of the last turn: its length, and the time the next
        // wait's timeouts count from (one clock read for both).
        let mut turn_end = Instant::now();
        loop {
            // A failed accept is retried only while the worker takes
            // connections (paused or draining, nothing is armed).
            let retry = self.core.listening.then(|| self.listeners.retry_in(turn_end)).flatten();
            // Accepted connections still queued, and room for them: the
            // next turn comes at once.
            let busy = self.core.listening && self.listeners.queued();
            let timeout = [self.core.poll_timeout(turn_end, busy), retry].into_iter().flatten().min();
            self.ring.wait(timeout)?;
            let now = clock();
            self.completions(now)?;
            self.core.run_deadlines(now);
            self.core.drain_replies(now);
            let inboxed = self.core.drain_inbox(now);
            if inboxed.drain_started {
                self.listeners.close(&mut self.ring);
            }
            if inboxed.reconfigured {
                self.check_capacity();
            }
            if inboxed.stop || self.core.past_drain_deadline(now) {
                self.stopping = true;
                self.core.hub.close_all(now);
                self.end_turn(now);
                self.flush();
                return Ok(());
            }
            self.core.hub_timers(now);
            self.end_turn(now);
            turn_end = Instant::now();
            self.core.metrics.loop_turn.observe(turn_end.saturating_duration_since(now.at));
            if self.core.drained() && self.closing.is_empty() {
                return Ok(());
            }
        }
    }

    /// Handles every completion that has arrived. A session the hub closes
    /// meanwhile moves to `closing` at once, before the next completion,
    /// which may be its own last one.
    fn completions(&mut self, now: Now) -> std::io::Result<()> {
        while let Some(event) = self.ring.completion() {
            self.on_event(now, event)?;
            self.reap_closed();
        }
        Ok(())
    }

    fn on_event(&mut self, now: Now, event: Event<Piece>) -> std::io::Result<()> {
        match event {
            Event::Woken { .. } => self.ring.read_wake(self.waker, conn::WAKE).map(drop)?,
            Event::Accepted { tag, socket, ended } => self.on_accept(now, tag, socket, ended),
            Event::Received { tag, result, ended } => self.on_receive(now, tag, result, ended),
            Event::Written { tag, result, buffers } => self.on_written(now, tag, result, buffers),
        }
        Ok(())
    }

    /// The end of a turn: the hub's own batch, batches to other workers,
    /// writes, store and push work, closed sessions, receives armed again,
    /// accepted connections made sessions, accepts armed again.
    fn end_turn(&mut self, now: Now) {
        self.core.end_hub_turn(now);
        self.write_dirty(now);
        self.core.send_work();
        self.reap_closed();
        self.rearm_receives(now);
        self.admit_queued(now);
        self.arm_accepts();
    }

    /// A stopping worker gives its writes a moment to go out: the close
    /// frames `close_all` queued are writes submitted with the next wait
    /// (the epoll driver writes them at once), and sessions closed with a
    /// write in flight make their last write when it ends.
    fn flush(&mut self) {
        let deadline = Instant::now() + STOP_FLUSH;
        while (self.writes > 0 || !self.closing.is_empty()) && Instant::now() < deadline {
            if self.ring.wait(Some(Duration::from_millis(10))).is_err() {
                return;
            }
            let now = clock();
            if self.completions(now).is_err() {
                return;
            }
            self.write_dirty(now);
            self.reap_closed();
        }
    }
}
