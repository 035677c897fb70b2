//! What a worker does the same on either driver: its hub, inbox, store
//! answers, deadline heap, per-IP admission, connection limit, and the work
//! a turn sends out (store calls, registry calls, push work, batches to
//! other workers). A driver wraps a [`Core`] with its sockets and its way of
//! waiting, reading and writing.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use crossbeam_channel::{Receiver, TryRecvError};
use gateway_admin::WorkerMetrics;
use gateway_hub::{Hub, Now, Ticket};

use super::admission::Admission;
use super::deadlines::Deadlines;
use super::stream::Layer;
use super::{Command, Reconfigure, Shared};
use crate::backend::{Outcome, Replies, ReplySink};

/// Capacity above which the worker's input buffer is released after a read
/// instead of kept for the next one: a large partial frame (an `/echo`
/// message of up to 16 MiB) grows it once, and kept it would stay that size
/// for the life of the worker.
const INPUT_KEEP: usize = 512 * 1024;
/// How soon the loop turns again when another worker's inbox refused a
/// batch.
const RETRY_BATCHES: Duration = Duration::from_millis(1);

/// The driver's part of a connection, as the shared code needs it.
pub(crate) trait DriverConn {
    /// The deadline slot this connection has in the worker's heap.
    fn scheduled(&mut self) -> &mut Option<u32>;
    /// Whether it is queued for this turn's writes.
    fn dirty(&self) -> bool;
    /// Queues it for this turn's writes, or marks it written.
    fn set_dirty(&mut self, dirty: bool);
    /// Its bytes between the socket and the session.
    fn layer(&mut self) -> &mut Layer;
}

/// What the inbox asked for this turn.
#[derive(Debug, Default)]
pub(crate) struct Inboxed {
    /// Stop now (SIGINT, or the node is gone).
    pub(crate) stop: bool,
    /// A drain started: the driver closes its listeners.
    pub(crate) drain_started: bool,
    /// New limits: the driver checks the connection limit again.
    pub(crate) reconfigured: bool,
}

/// One worker's state beside its driver.
#[derive(Debug)]
pub(crate) struct Core<C> {
    pub(crate) index: usize,
    pub(crate) shared: Shared,
    pub(crate) metrics: Arc<WorkerMetrics>,
    /// The sessions and their messaging; each slot carries its driver's `C`.
    pub(crate) hub: Hub<C>,
    inbox: Receiver<Command>,
    admission: Admission,
    deadlines: Deadlines,
    /// The bytes of one read on their way to a session.
    pub(crate) input: BytesMut,
    /// Sessions to write this turn.
    pub(crate) dirty: Vec<usize>,
    due: Vec<(usize, u32)>,
    /// The drain deadline, once draining.
    pub(crate) draining: Option<Instant>,
    /// Whether the listeners accept (not past the connection limit).
    pub(crate) listening: bool,
    /// Store answers come back here.
    replies: Replies<Ticket>,
    /// Cloned into each store request's completion.
    sink: ReplySink<Ticket>,
    /// A batch was refused by a full inbox: poll again soon.
    retry_batches: bool,
}

impl<C: DriverConn> Core<C> {
    pub(crate) fn new(
        index: usize,
        inbox: Receiver<Command>,
        shared: Shared,
        metrics: Arc<WorkerMetrics>,
        (sink, replies): (ReplySink<Ticket>, Replies<Ticket>),
    ) -> Self {
        let (per_sec, burst) = shared.connections_per_ip;
        let workers = shared.inboxes.len();
        let admission = Admission::new(per_sec, burst, workers, Instant::now());
        let hub = Hub::new(index, workers, shared.hub.clone(), metrics.clone());
        Self {
            index,
            shared,
            metrics,
            hub,
            inbox,
            admission,
            deadlines: Deadlines::new(Instant::now()),
            input: BytesMut::new(),
            dirty: Vec::new(),
            due: Vec::new(),
            draining: None,
            listening: true,
            replies,
            sink,
            retry_batches: false,
        }
    }

    /// How long the driver may sleep; `busy`: it has input left over from
    /// the last turn.
    pub(crate) fn poll_timeout(&mut self, now: Instant, busy: bool) -> Option<Duration> {
        let retry = std::mem::take(&mut self.retry_batches);
        // Hub work made while writing: do not sleep.
        if busy || self.hub.has_work() {
            return Some(Duration::ZERO);
        }
        // A batch for a full inbox: try again shortly.
        if retry {
            return Some(RETRY_BATCHES);
        }
        [self.deadlines.next(), self.hub.poll_timeout(), self.draining]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Whether a new connection from `ip` is admitted. One refused is
    /// counted and, from the ws listener, answered 429 on `socket` (best
    /// effort: the answer fits any socket buffer; on the wss listener plain
    /// HTTP would be a garbage TLS record, so that connection is just
    /// closed by the caller).
    pub(crate) fn admit(
        &mut self,
        ip: std::net::IpAddr,
        now: Instant,
        socket: &mut impl std::io::Write,
        from_wss: bool,
    ) -> bool {
        if self.admission.admit(ip, now) {
            return true;
        }
        self.metrics.drops.inc(gateway_admin::DropReason::RateLimited);
        if !from_wss {
            let _ = socket.write(super::admission::TOO_MANY);
        }
        false
    }

    /// Hands what is in `input` to session `key`, keeps its partial frame.
    pub(crate) fn deliver_input(&mut self, now: Now, key: usize) {
        if self.input.is_empty() {
            return;
        }
        self.hub.handle_read(now, key, &mut self.input);
        if let Some(conn) = self.hub.conn_mut(key) {
            conn.layer().keep_partial(&mut self.input);
        }
        if self.input.capacity() > INPUT_KEEP {
            self.input = BytesMut::new();
        }
    }

    /// Queues session `key` for this turn's writes.
    pub(crate) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.hub.conn_mut(key) {
            if !conn.dirty() {
                conn.set_dirty(true);
                self.dirty.push(key);
            }
        }
    }

    /// Takes the sessions to write this turn: the ones the hub touched and
    /// the ones marked. Hand the vector back with [`Core::written`].
    pub(crate) fn take_dirty(&mut self) -> Vec<usize> {
        while let Some(key) = self.hub.poll_touched() {
            self.mark_dirty(key);
        }
        std::mem::take(&mut self.dirty)
    }

    /// Gives back the vector [`Core::take_dirty`] lent (its capacity is kept).
    pub(crate) fn written(&mut self, mut keys: Vec<usize>) {
        keys.clear();
        debug_assert!(self.dirty.is_empty(), "nothing marks sessions dirty while writing");
        self.dirty = keys;
    }

    /// Schedules session `key`'s next deadline.
    pub(crate) fn reschedule(&mut self, key: usize) {
        let Some(at) = self.hub.poll_session_timeout(key) else { return };
        let Some(conn) = self.hub.conn_mut(key) else { return };
        let scheduled = conn.scheduled();
        *scheduled = Some(self.deadlines.schedule(key, at, *scheduled));
    }

    /// Runs the deadlines that have passed, then the hub's own timers.
    pub(crate) fn run_deadlines(&mut self, now: Now) {
        let mut due = std::mem::take(&mut self.due);
        self.deadlines.take_due(now.at, &mut due);
        for &(key, slot) in &due {
            let Some(conn) = self.hub.conn_mut(key) else { continue };
            let scheduled = conn.scheduled();
            if *scheduled == Some(slot) {
                *scheduled = None;
            }
            self.hub.handle_session_timeout(now, key);
        }
        due.clear();
        self.due = due;
    }

    /// Runs the hub's timers, if one is due.
    pub(crate) fn hub_timers(&mut self, now: Now) {
        if self.hub.poll_timeout().is_some_and(|at| at <= now.at) {
            self.hub.handle_timeout(now);
        }
    }

    /// Hands every store answer that arrived to the hub.
    pub(crate) fn drain_replies(&mut self, now: Now) {
        let hub = &mut self.hub;
        self.replies.drain(|reply| match reply.outcome {
            Outcome::Store(result) => hub.handle_answer(now, reply.ticket, result),
            Outcome::Registered => hub.handle_registered(now, reply.ticket),
        });
    }

    /// Takes commands off the inbox.
    pub(crate) fn drain_inbox(&mut self, now: Now) -> Inboxed {
        self.metrics.inbox_depth.set(i64::try_from(self.inbox.len()).unwrap_or(i64::MAX));
        let mut inboxed = Inboxed::default();
        loop {
            match self.inbox.try_recv() {
                Ok(Command::Drain { window, deadline }) => {
                    if self.draining.is_none() {
                        self.draining = Some(deadline);
                        self.listening = false;
                        self.hub.drain(now, window, deadline);
                        inboxed.drain_started = true;
                    }
                }
                Ok(Command::Reconfigure(new)) => {
                    self.reconfigure(*new);
                    inboxed.reconfigured = true;
                }
                Ok(Command::Remote(batch)) => self.hub.handle_batch(now, batch),
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    inboxed.stop = true;
                    return inboxed;
                }
                Err(TryRecvError::Empty) => return inboxed,
            }
        }
    }

    fn reconfigure(&mut self, new: Reconfigure) {
        let workers = self.shared.inboxes.len();
        self.hub.reconfigure(new.session);
        self.shared.max_connections = new.max_connections.div_ceil(workers.max(1));
        self.shared.connections_per_ip = new.connections_per_ip;
        let (per_sec, burst) = new.connections_per_ip;
        self.admission = Admission::new(per_sec, burst, workers, Instant::now());
    }

    /// Past the drain deadline nothing is waited for: not even the clients'
    /// answers to the close frames (the sessions' linger).
    pub(crate) fn past_drain_deadline(&self, now: Now) -> bool {
        self.draining.is_some_and(|deadline| now.at >= deadline)
    }

    /// Whether a drained worker has nothing left.
    pub(crate) fn drained(&self) -> bool {
        self.draining.is_some() && self.hub.is_empty()
    }

    /// The start of a turn's end: the hub's own batch and batches to other
    /// workers (the driver writes next, then calls [`Core::send_work`]).
    pub(crate) fn end_hub_turn(&mut self, now: Now) {
        self.hub.end_turn(now);
        self.retry_batches = self.hub.flush_batches(&self.shared.routes);
    }

    /// Sends the turn's store calls, registry calls and push work.
    pub(crate) fn send_work(&mut self) {
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
    }

    /// Whether the listeners must start (`Some(true)`) or stop
    /// (`Some(false)`) accepting: stop at `max_connections`, resume below
    /// the resume ratio of it (sozu's hysteresis, so the listener does not
    /// flap; `gateway_accept_paused` shows it).
    pub(crate) fn capacity_change(&mut self) -> Option<bool> {
        let max = self.shared.max_connections;
        if max == 0 || self.draining.is_some() {
            return None;
        }
        let open = self.hub.len();
        if self.listening && open >= max {
            self.listening = false;
            self.metrics.accept_pauses.inc();
            self.metrics.accept_paused.set(1);
            tracing::debug!(worker = self.index, open, max, "accept paused");
            Some(false)
        } else if !self.listening && (open as f64) < max as f64 * self.shared.resume_ratio {
            self.listening = true;
            self.metrics.accept_paused.set(0);
            tracing::debug!(worker = self.index, open, max, "accept resumed");
            Some(true)
        } else {
            None
        }
    }
}

/// The time of this turn: both clocks, read once.
pub(crate) fn clock() -> Now {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Now { at: Instant::now(), unix_ms: u64::try_from(unix.as_millis()).unwrap_or(u64::MAX) }
}
