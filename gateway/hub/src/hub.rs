//! The [`Hub`]: its state, its events in and its work out. What each event
//! means for messaging is in the modules beside this one (`frames`,
//! `answers`, `sessions`, `fanout`, `presence`, `acks`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::BytesMut;
use gateway_admin::{DropReason, WorkerMetrics};
use gateway_auth::{RecentTokens, Verifier};
use gateway_core::{Action, Config as SessionConfig, Ctx, Outbound, Session};
use protocol::{DeviceId, UserId};
use routing::{Directory, Flushed, Link, Outbox, SessionRef};
use slab::Slab;

use crate::held::Held;
use crate::logins::LoginGate;
use crate::observe::MetricsObserver;
use crate::slot::Slot;
use crate::work::{Closed, FleetCall, Now, PushWork, Remote, StoreCall, Ticket};
use crate::HubConfig;

/// What every hub of a node shares, and its settings.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Messaging settings.
    pub config: HubConfig,
    /// Session settings (SIGHUP replaces them: [`Hub::reconfigure`]).
    pub session: SessionConfig,
    /// Token verification keys; SIGHUP swaps them. Read once per HELLO.
    pub verifier: Arc<RwLock<Arc<Verifier>>>,
    /// Tokens of the node's recently closed sessions: a reconnect may land
    /// on any worker.
    pub recent_tokens: Arc<RecentTokens>,
    /// The node directory.
    pub directory: Arc<Directory>,
}

/// One worker's sessions and messaging. `C` is the driver's part of each
/// connection (socket, buffers); the hub stores it in the session's slot and
/// never looks inside.
#[derive(Debug)]
pub struct Hub<C> {
    /// This worker's index (a destination of the outbox).
    pub(crate) worker: usize,
    /// The fleet router's destination in the outbox (the index after the
    /// workers), used only in cluster mode.
    pub(crate) fleet: usize,
    pub(crate) config: HubConfig,
    pub(crate) session_config: SessionConfig,
    pub(crate) verifier: Arc<RwLock<Arc<Verifier>>>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) metrics: Arc<WorkerMetrics>,
    /// The metrics as the sessions' observer.
    observer: MetricsObserver,
    pub(crate) slots: Slab<Slot<C>>,
    next_generation: u64,
    /// Where session calls put their actions.
    pub(crate) actions: Vec<Action>,
    /// The second action buffer `after` swaps with `actions`.
    spare: Vec<Action>,
    /// Output for sessions, by worker (this one's applied at `end_turn`).
    pub(crate) outbox: Outbox<Remote>,
    /// Store requests for the driver to send.
    store: VecDeque<StoreCall>,
    /// Store requests outstanding.
    inflight: usize,
    /// Login admission.
    pub(crate) logins: LoginGate,
    /// Tokens of the node's recently closed sessions.
    pub(crate) recent_tokens: Arc<RecentTokens>,
    /// Push work for the driver.
    pub(crate) push: VecDeque<PushWork>,
    /// Registry calls for the driver (cluster mode).
    pub(crate) fleet_calls: VecDeque<FleetCall>,
    /// Sessions the hub has finished with.
    closed: VecDeque<Closed<C>>,
    /// Sessions whose output or deadline may have changed.
    touched: Vec<usize>,
    /// Scratch for directory lookups.
    pub(crate) devices: Vec<(DeviceId, SessionRef)>,
    /// Scratch for presence watchers.
    pub(crate) watchers: Vec<SessionRef>,
    /// Users who left: (announce offline at, user, left at ms), in time order.
    pub(crate) presence_due: VecDeque<(Instant, UserId, u64)>,
    /// SEND_ACKs waiting for the fleet router's confirmation, by token.
    pub(crate) held: HashMap<u64, Held>,
    /// (send unconfirmed at, token), in time order.
    pub(crate) held_due: VecDeque<(Instant, u64)>,
    /// Sync windows the store refused, to ask for again (`retry`), in
    /// time order.
    pub(crate) inbox_due: VecDeque<(Instant, crate::retry::InboxRetry)>,
    /// The last token given to a held SEND_ACK.
    pub(crate) next_token: u64,
}

impl<C> Hub<C> {
    /// The hub of worker `worker` of `workers`.
    pub fn new(worker: usize, workers: usize, setup: Setup, metrics: Arc<WorkerMetrics>) -> Self {
        let fleet = usize::from(setup.config.fleet);
        let outbox = Outbox::new(workers + fleet, setup.config.max_batch);
        // A queued HELLO should not meet the auth deadline: none is queued
        // behind one that has waited half of it.
        let max_wait = setup.session.auth_timeout / 2;
        let seed = 0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1);
        let logins = LoginGate::new(setup.config.max_logins, setup.config.login_queue, max_wait, seed);
        Self {
            worker,
            fleet: workers,
            config: setup.config,
            session_config: setup.session,
            verifier: setup.verifier,
            directory: setup.directory,
            observer: MetricsObserver(Arc::clone(&metrics)),
            metrics,
            slots: Slab::new(),
            next_generation: 1,
            actions: Vec::new(),
            spare: Vec::new(),
            outbox,
            store: VecDeque::new(),
            inflight: 0,
            logins,
            recent_tokens: setup.recent_tokens,
            push: VecDeque::new(),
            fleet_calls: VecDeque::new(),
            closed: VecDeque::new(),
            touched: Vec::new(),
            devices: Vec::new(),
            watchers: Vec::new(),
            presence_due: VecDeque::new(),
            held: HashMap::new(),
            held_due: VecDeque::new(),
            inbox_due: VecDeque::new(),
            next_token: 0,
        }
    }

    // ----- getters -----

    /// Sessions open.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The key the next [`Hub::insert`] takes (a driver registers its
    /// socket under it first).
    pub fn vacant_key(&self) -> usize {
        self.slots.vacant_key()
    }

    /// Bytes of one session's slot (session, messaging state and the
    /// driver's part): most of an idle session's cost.
    pub fn slot_size() -> usize {
        std::mem::size_of::<Slot<C>>()
    }

    /// The driver's part of session `key`.
    pub fn conn_mut(&mut self, key: usize) -> Option<&mut C> {
        self.slots.get_mut(key).map(|slot| &mut slot.conn)
    }

    /// The driver's part of session `key` and the session's unsent output.
    pub fn output(&mut self, key: usize) -> Option<(&mut C, &Outbound)> {
        let slot = self.slots.get_mut(key)?;
        Some((&mut slot.conn, slot.session.outbound()))
    }

    /// When session `key` must next be woken ([`Hub::handle_session_timeout`]).
    pub fn poll_session_timeout(&self, key: usize) -> Option<Instant> {
        self.slots.get(key)?.session.poll_timeout()
    }

    /// When the hub must next be woken ([`Hub::handle_timeout`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let presence = self.presence_due.front().map(|(due, _, _)| *due);
        [presence, self.held_due(), self.inbox_due()].into_iter().flatten().min()
    }

    /// Whether there is work the driver must not sleep on: touched
    /// sessions, this worker's own batch, store or push work.
    pub fn has_work(&self) -> bool {
        !self.touched.is_empty()
            || self.outbox.queued(self.worker) > 0
            || !self.store.is_empty()
            || !self.push.is_empty()
            || !self.fleet_calls.is_empty()
            || self.logins.has_next()
    }

    /// Whether the node is part of a fleet (cluster mode).
    pub(crate) fn in_fleet(&self) -> bool {
        self.config.fleet
    }

    // ----- events in -----

    /// A new connection: its session starts (waiting for the HTTP upgrade).
    /// Returns its key.
    pub fn insert(&mut self, now: Now, conn: C) -> usize {
        let (_, mut ctx) = self.split(now);
        let session = Session::new(&mut ctx);
        let generation = self.next_generation;
        self.next_generation += 1;
        let key = self.slots.insert(Slot::new(session, generation, conn));
        self.after(now, key);
        key
    }

    /// Bytes read from session `key`'s connection (after any partial frame
    /// kept from the last read). What the session leaves in `input` is a
    /// partial frame for the driver to keep.
    pub fn handle_read(&mut self, now: Now, key: usize, input: &mut BytesMut) {
        if self.with_session(now, key, |slot, ctx| slot.session.handle_read(ctx, input)).is_some() {
            self.after(now, key);
        }
    }

    /// The connection of session `key` is gone (end of stream, a socket or
    /// TLS error, a failed write): nothing more is read or written.
    pub fn handle_peer_gone(&mut self, now: Now, key: usize) {
        self.close(now, key);
    }

    /// Session `key`'s deadline has passed.
    pub fn handle_session_timeout(&mut self, now: Now, key: usize) {
        if self.with_session(now, key, |slot, ctx| slot.session.handle_timeout(ctx)).is_some() {
            self.after(now, key);
        }
    }

    /// The hub's own deadline has passed: presence expiries, SEND_ACKs
    /// held past `ack_wait`, sync windows to ask for again.
    pub fn handle_timeout(&mut self, now: Now) {
        self.expire_presence(now);
        self.expire_held(now);
        self.retry_inbox_reads(now);
    }

    /// `written` bytes of session `key`'s output were sent.
    pub fn handle_written(&mut self, now: Now, key: usize, written: usize) {
        if self.with_session(now, key, |slot, ctx| slot.session.handle_written(ctx, written)).is_none() {
            return;
        }
        if self.actions.is_empty() {
            self.account(key);
        } else {
            self.after(now, key);
        }
    }

    /// A store answer.
    pub fn handle_answer(
        &mut self,
        now: Now,
        ticket: Ticket,
        result: Result<backend_store::Response, backend_store::StoreError>,
    ) {
        self.inflight = self.inflight.saturating_sub(1);
        self.answer(now, ticket, result);
    }

    /// The fleet thread is done with a [`FleetCall::Register`]: the
    /// session was placed, or the registry could not be reached (then the
    /// session is served all the same, and other nodes find it once the
    /// fleet thread has placed it and resynced it).
    pub fn handle_registered(&mut self, now: Now, ticket: Ticket) {
        self.registered(now, ticket);
    }

    /// A batch another worker sent (or this worker's own, at `end_turn`).
    pub fn handle_batch(&mut self, now: Now, batch: Vec<Remote>) {
        self.apply(now, batch);
    }

    /// New session settings (SIGHUP): every session uses them from its next
    /// call on, except the WebSocket message limit, which each fixed at its
    /// upgrade.
    pub fn reconfigure(&mut self, session: SessionConfig) {
        self.session_config = session;
    }

    // ----- work out -----

    /// Applies this worker's own batch (posted during the turn, never in the
    /// middle of another session's call), then starts the logins that
    /// waited for a slot freed this turn.
    pub fn end_turn(&mut self, now: Now) {
        let own = self.outbox.take(self.worker);
        if !own.is_empty() {
            self.apply(now, own);
        }
        self.start_queued_logins(now);
    }

    /// Offers every other worker its batch over `links` (by worker index,
    /// then the fleet router's in cluster mode); a refused one stays for the
    /// next turn. Returns true when one was
    /// refused: the driver turns again soon.
    pub fn flush_batches<L: Link<Remote>>(&mut self, links: &[L]) -> bool {
        let Flushed { refused, .. } = self.outbox.flush(self.worker, links);
        refused > 0
    }

    /// A session whose output or deadline may have changed since the last
    /// call.
    pub fn poll_touched(&mut self) -> Option<usize> {
        self.touched.pop()
    }

    /// Seals session `key`'s output for this turn (one WebSocket message),
    /// before the driver writes it.
    pub fn seal(&mut self, key: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.session.flush();
        }
    }

    /// The next store request to send.
    pub fn poll_store(&mut self) -> Option<StoreCall> {
        self.store.pop_front()
    }

    /// The next push work.
    pub fn poll_push(&mut self) -> Option<PushWork> {
        self.push.pop_front()
    }

    /// The next registry call (cluster mode), for the node's fleet thread.
    pub fn poll_fleet(&mut self) -> Option<FleetCall> {
        self.fleet_calls.pop_front()
    }

    /// The next session the hub has finished with.
    pub fn poll_closed(&mut self) -> Option<Closed<C>> {
        self.closed.pop_front()
    }

    // ----- internals shared by the messaging modules -----

    /// Runs `f` on session `key` with the context of this call (the one
    /// place a session's `Ctx` is built); `None` if the session is gone.
    pub(crate) fn with_session<R>(
        &mut self,
        now: Now,
        key: usize,
        f: impl FnOnce(&mut Slot<C>, &mut Ctx<'_, MetricsObserver>) -> R,
    ) -> Option<R> {
        let (slots, mut ctx) = self.split(now);
        Some(f(slots.get_mut(key)?, &mut ctx))
    }

    /// The sessions, and the context of a session call at `now` (the one
    /// place it is built).
    fn split(&mut self, now: Now) -> (&mut Slab<Slot<C>>, Ctx<'_, MetricsObserver>) {
        let ctx = Ctx {
            now: now.at,
            config: &self.session_config,
            observer: &mut self.observer,
            actions: &mut self.actions,
        };
        (&mut self.slots, ctx)
    }

    /// Runs `f` on session `key` and handles what it asked for.
    pub(crate) fn call(
        &mut self,
        now: Now,
        key: usize,
        f: impl FnOnce(&mut Session, &mut Ctx<'_, MetricsObserver>),
    ) {
        if self.with_session(now, key, |slot, ctx| f(&mut slot.session, ctx)).is_some() {
            self.after(now, key);
        }
    }

    /// Handles the actions a session call produced (and any that handling
    /// them produces, until none is left); then the session is touched, or
    /// closed if it asked to be.
    pub(crate) fn after(&mut self, now: Now, key: usize) {
        let mut close = false;
        while !self.actions.is_empty() {
            // Two buffers swap so that no call allocates in steady state.
            let mut batch = std::mem::replace(&mut self.actions, std::mem::take(&mut self.spare));
            for action in batch.drain(..) {
                match action {
                    Action::Verify(hello) => self.hello_arrived(now, key, hello),
                    Action::Frame(frame) => self.route(now, key, frame),
                    Action::ReadInbox { after, limit, epoch } => {
                        self.read_inbox(now, key, after, limit, epoch)
                    }
                    Action::Acked(up_to) => self.ack_arrived(key, up_to),
                    Action::Synced => self.synced(key),
                    Action::LivePaused | Action::LiveResumed => {}
                    Action::Close => close = true,
                }
            }
            self.spare = batch;
        }
        if close {
            self.close(now, key);
        } else if self.slots.contains(key) {
            self.touched.push(key);
            self.account(key);
            self.release_refused_login(key);
        }
    }

    /// Frees the login slot of session `key` if its login was refused (bad
    /// token, store refusal, auth deadline): it is closing, and its close
    /// may wait for the client's close frame.
    fn release_refused_login(&mut self, key: usize) {
        let closing = self.slots.get(key).is_some_and(|slot| {
            matches!(slot.session.state(), gateway_core::State::Closing | gateway_core::State::Closed)
        });
        if closing {
            self.free_login(key);
        }
    }

    /// Gives back session `key`'s login slot, if it holds one.
    pub(crate) fn free_login(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key).filter(|slot| slot.logging_in) else { return };
        slot.logging_in = false;
        self.logins.finish();
        self.report_logins();
    }

    /// Moves the state and queue gauges by what changed for session `key`.
    fn account(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else { return };
        let state = state_label(slot.session.state());
        let queued = u32::try_from(slot.session.outbound().len()).unwrap_or(u32::MAX);
        let (old_state, old_queued) = slot.reported;
        if state != old_state {
            self.metrics.sessions.transition(old_state, state);
        }
        if queued != old_queued {
            self.metrics.outbound_queue_bytes.add(i64::from(queued) - i64::from(old_queued));
        }
        slot.reported = (state, queued);
    }

    /// The key of session `to` if it is still the one on this worker.
    pub(crate) fn live_key(&self, to: SessionRef) -> Option<usize> {
        debug_assert_eq!(to.worker, self.worker, "a session of another worker");
        self.slots.get(to.key).filter(|slot| slot.generation == to.generation).map(|_| to.key)
    }

    /// The reference other workers (and the store's answers) use for `key`.
    pub(crate) fn session_ref(&self, key: usize) -> Option<SessionRef> {
        let slot = self.slots.get(key)?;
        Some(SessionRef { worker: self.worker, key, generation: slot.generation })
    }

    /// Queues `request` for the store on behalf of session `to`, unless this
    /// worker already has `max_inflight` requests out: then `false` (and the
    /// shed request is counted).
    pub(crate) fn store_call(
        &mut self,
        to: SessionRef,
        request: backend_store::Request,
        pending: crate::work::Pending,
    ) -> bool {
        if self.inflight >= self.config.max_inflight {
            self.metrics.drops.inc(DropReason::Backend);
            return false;
        }
        self.inflight += 1;
        self.store.push_back(StoreCall { request, ticket: Ticket { to, pending } });
        true
    }

    /// Forgets session `key`: its waiting ACK goes to the store, the
    /// directory and presence learn it left, and its session and connection
    /// go to the driver ([`Hub::poll_closed`]).
    pub(crate) fn close(&mut self, now: Now, key: usize) {
        if !self.slots.contains(key) {
            return;
        }
        self.flush_ack(key);
        self.free_login(key);
        let slot = self.slots.remove(key);
        let (state, queued) = slot.reported;
        self.metrics.sessions.transition(state, None);
        self.metrics.outbound_queue_bytes.add(-i64::from(queued));
        let me = SessionRef { worker: self.worker, key, generation: slot.generation };
        if let Some((user, device)) = slot.identity() {
            self.recent_tokens.remember(slot.token, now.unix_ms / 1_000);
            if self.directory.remove(user, device, me, now.unix_ms) {
                self.left(now, user);
            }
            if self.in_fleet() {
                let session = me.placement_id();
                self.fleet_calls.push_back(FleetCall::Unregister { user, device, session });
            }
        }
        if let Some(extras) = slot.extras {
            for user in extras.watching {
                self.unwatch(me, user);
            }
        }
        self.closed.push_back(Closed { key, session: slot.session, conn: slot.conn });
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
