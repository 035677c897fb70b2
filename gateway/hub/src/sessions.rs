//! A session's life as messaging sees it: HELLO verified and the device
//! registered (AUTH_OK, the sync, presence), sync windows and the cursors
//! after the first sync, replacement by a newer connection of the device,
//! and the node's drain and stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_store::{Connect, Connected, InboxQuery, Request, Response, StoreError};
use gateway_core::Class;
use protocol::{Capabilities, CloseCode, ErrorCode, Frame, GoAway, GoAwayReason, Note, Seq, Timestamp};
use routing::SessionRef;

use crate::answers::{client_text, failure, log_failure, retry_after_ms};
use crate::logins::Arrival;
use crate::work::{FleetCall, Now, Pending};
use crate::Hub;

impl<C> Hub<C> {
    /// HELLO arrived: its login starts if the worker has a slot for it,
    /// waits for one, or is refused at once with a retry hint (`logins`).
    pub(crate) fn hello_arrived(&mut self, now: Now, key: usize, hello: Box<protocol::Hello>) {
        let Some(me) = self.session_ref(key) else { return };
        match self.logins.arrive(now.at, me, hello) {
            Arrival::Start(hello) => self.start_login(now, key, &hello),
            Arrival::Queued => {}
            Arrival::Refused { retry_after_ms } => {
                let (code, close) = (ErrorCode::OVERLOADED, CloseCode::TRY_AGAIN_LATER);
                self.call(now, key, |session, ctx| {
                    session.reject_retry_after(
                        ctx,
                        code,
                        close,
                        "overloaded",
                        "too many logins",
                        retry_after_ms,
                    );
                });
            }
        }
        self.report_logins();
    }

    /// Starts the queued logins the free slots allow (a session that left
    /// while it waited, or timed out and is closing, gives its slot to the
    /// next).
    pub(crate) fn start_queued_logins(&mut self, now: Now) {
        if !self.logins.has_next() {
            return;
        }
        while let Some((who, hello)) = self.logins.next() {
            let waiting = self.live_key(who).filter(|&key| {
                self.slots.get(key).is_some_and(|slot| slot.session.state() == gateway_core::State::Verifying)
            });
            match waiting {
                Some(key) => self.start_login(now, key, &hello),
                None => self.logins.finish(),
            }
        }
        self.report_logins();
    }

    /// Session `key` takes a login slot (the gate counted it) and its token
    /// is checked.
    fn start_login(&mut self, now: Now, key: usize, hello: &protocol::Hello) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.logging_in = true;
        }
        self.verify(now, key, hello);
    }

    /// Sets the login gauges.
    pub(crate) fn report_logins(&self) {
        self.metrics.logins_in_flight.set(i64::try_from(self.logins.in_flight()).unwrap_or(i64::MAX));
        self.metrics.logins_queued.set(i64::try_from(self.logins.queued()).unwrap_or(i64::MAX));
    }

    /// A login's HELLO: verify its token, then register the device.
    fn verify(&mut self, now: Now, key: usize, hello: &protocol::Hello) {
        let verifier = match self.verifier.read() {
            Ok(verifier) => Arc::clone(&verifier),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        let result =
            self.recent_tokens.verify(&verifier, hello.token.bytes(), hello.device, now.unix_ms / 1_000);
        let (claims, token) = match result {
            Ok((claims, token, recent)) => {
                if recent {
                    self.metrics.recent_tokens.inc();
                }
                (claims, token)
            }
            Err(err) => {
                let code = err.error_code();
                let close = if code == ErrorCode::AUTH_EXPIRED {
                    CloseCode::AUTH_EXPIRED
                } else {
                    CloseCode::AUTH_FAILED
                };
                let text = err.to_string();
                self.call(now, key, |session, ctx| session.reject(ctx, code, close, err.reason(), &text));
                return;
            }
        };
        let Some(me) = self.session_ref(key) else { return };
        if let Some(slot) = self.slots.get_mut(key) {
            slot.set_identity(Some((claims.user, claims.device)));
            slot.token = token;
        }
        let pending = Pending::Connect {
            resume_after: hello.resume_after,
            capabilities: hello.capabilities.intersection(self.config.capabilities()),
            version: protocol::limits::VERSION_MAX.min(hello.max_version),
        };
        let request = Request::Connect(Connect { user: claims.user, device: claims.device });
        if !self.store_call(me, request, pending) {
            let (code, close) = (ErrorCode::OVERLOADED, CloseCode::TRY_AGAIN_LATER);
            self.call(now, key, |session, ctx| {
                session.reject_retry_after(ctx, code, close, "backend", "too many store requests", 1_000);
            });
        }
    }

    /// Connect answered: AUTH_OK and the sync, or AUTH_ERROR and a close.
    pub(crate) fn connected(
        &mut self,
        now: Now,
        key: usize,
        (resume_after, capabilities, version): (Seq, Capabilities, u8),
        result: Result<Response, StoreError>,
    ) {
        // The store answered: the login's slot is free.
        self.free_login(key);
        let Some(slot) = self.slots.get_mut(key) else { return };
        let Some((user, device)) = slot.identity() else { return };
        let connected = match result {
            Ok(Response::Connected(connected)) => connected,
            other => {
                // The token did verify: the client's retry may skip that.
                self.recent_tokens.remember(slot.token, now.unix_ms / 1_000);
                slot.set_identity(None);
                self.refuse_login(now, key, failure(other), (user, device));
                return;
            }
        };
        let me = SessionRef { worker: self.worker, key, generation: slot.generation };
        if self.in_fleet() {
            // Placed in the registry before the sync starts: a message stored
            // before another node looks the device up and finds nothing is
            // then stored before this sync reads the inbox, so it is never
            // missed by both.
            let pending = Pending::Register { resume_after, capabilities, version, connected };
            let ticket = crate::Ticket { to: me, pending };
            let session = me.placement_id();
            self.fleet_calls.push_back(FleetCall::Register { user, device, session, ticket });
            return;
        }
        self.admit(now, key, (resume_after, capabilities, version), connected);
    }

    /// The registry answered a session's placement (cluster mode).
    pub(crate) fn registered(&mut self, now: Now, ticket: crate::Ticket) {
        let crate::Ticket { to, pending } = ticket;
        let Pending::Register { resume_after, capabilities, version, connected } = pending else {
            debug_assert!(false, "a registry answer with another ticket");
            return;
        };
        let Some(key) = self.live_key(to) else { return };
        // Placed or not (the registry did not answer: the fleet thread
        // places the session later and resyncs it), it is served now.
        self.admit(now, key, (resume_after, capabilities, version), connected);
    }

    /// AUTH_OK, the sync, and the node's directory and presence told.
    fn admit(
        &mut self,
        now: Now,
        key: usize,
        (resume_after, capabilities, version): (Seq, Capabilities, u8),
        connected: Connected,
    ) {
        let Some(slot) = self.slots.get_mut(key) else { return };
        let Some((user, device)) = slot.identity() else { return };
        slot.capabilities = u8::try_from(capabilities.0).unwrap_or(0);
        slot.previous_connect_secs = u32::try_from(connected.previous_connect.0 / 1_000).unwrap_or(u32::MAX);
        let me = SessionRef { worker: self.worker, key, generation: slot.generation };
        let auth_ok = protocol::AuthOk {
            version,
            user,
            device,
            session: me.generation,
            server_time: Timestamp(now.unix_ms),
            heartbeat_ms: u32::try_from(self.session_config.heartbeat.as_millis()).unwrap_or(u32::MAX),
            inbox_head: connected.inbox_head,
            max_payload: self.config.max_payload,
            capabilities,
        };
        let resume_after = sync_start(resume_after, &connected);
        self.call(now, key, |session, ctx| session.accept(ctx, auth_ok, resume_after));
        if resume_after > connected.acked {
            self.ack_arrived(key, resume_after);
        }
        if let Some(stock) = connected.prekey_stock.filter(|stock| *stock <= self.config.prekey_low) {
            self.reply(now, key, &Frame::PrekeyLow(protocol::PrekeyLow { stock }));
        }
        self.push.push_back(crate::PushWork::Connected(user, device));
        let (replaced, came_online) = self.directory.insert(user, device, me);
        self.store_call(me, Request::GetVisibility { user }, Pending::Visibility { user, came_online });
        if let Some(old) = replaced {
            self.post(crate::Remote::Replace(old));
        }
    }

    /// AUTH_ERROR and a close for a login the store refused or failed.
    fn refuse_login(
        &mut self,
        now: Now,
        key: usize,
        err: StoreError,
        identity: (protocol::UserId, protocol::DeviceId),
    ) {
        log_failure(&err, "connect", Some(identity));
        let (code, close) = match &err {
            StoreError::TooManyDevices(_) => (ErrorCode::TOO_MANY_DEVICES, CloseCode::TOO_MANY_DEVICES),
            StoreError::Overloaded => (ErrorCode::OVERLOADED, CloseCode::TRY_AGAIN_LATER),
            _ => (ErrorCode::BACKEND_UNAVAILABLE, CloseCode::INTERNAL_ERROR),
        };
        let (text, retry_after) = (client_text(&err), retry_after_ms(&err, code));
        self.call(now, key, |session, ctx| {
            session.reject_retry_after(ctx, code, close, "backend", &text, retry_after);
        });
    }

    /// The session asks for a sync window.
    pub(crate) fn read_inbox(&mut self, now: Now, key: usize, after: Seq, limit: u32, epoch: u8) {
        let Some((me, (user, device))) = self.identified(key) else { return };
        let max_bytes = (protocol::limits::MAX_FRAME_LEN - 64) as u32;
        let query = InboxQuery { user, device, after, limit, max_bytes };
        self.request_inbox(now, me, query, epoch, 0);
    }

    /// A sync window came back (or could not be read: asked for again if
    /// the store may give it later, see `retry`).
    pub(crate) fn page(
        &mut self,
        now: Now,
        key: Option<usize>,
        (epoch, query, tries): (u8, InboxQuery, u8),
        result: Result<Response, StoreError>,
    ) {
        match (key, result) {
            (Some(key), Ok(Response::Inbox(page))) => {
                self.call(now, key, |session, ctx| {
                    session.handle_page(ctx, epoch, &page.entries, page.remaining)
                });
            }
            (None, Ok(_) | Err(_)) => {}
            (Some(key), Err(err)) if crate::retry::passing(&err) => {
                if let Some((to, _)) = self.identified(key) {
                    let retry = crate::retry::InboxRetry { to, query, epoch, tries: tries + 1 };
                    self.retry_inbox(now, retry, &err.to_string());
                }
            }
            (key, result) => {
                // The sync cannot go on: close resumably, the next connection
                // syncs again from the client's cursor.
                tracing::warn!(err = %failure(result), "inbox read failed");
                if let Some(key) = key {
                    self.call(now, key, |session, ctx| {
                        session.close_with(ctx, CloseCode::INTERNAL_ERROR, "store unavailable");
                    });
                }
            }
        }
    }

    /// The first sync is over: the cursors that moved while the device was
    /// away come next.
    pub(crate) fn synced(&mut self, key: usize) {
        let Some((me, (user, _))) = self.identified(key) else { return };
        let Some(slot) = self.slots.get(key) else { return };
        let since = Timestamp(u64::from(slot.previous_connect_secs) * 1_000);
        self.store_call(me, Request::Cursors { user, since }, Pending::Cursors);
    }

    /// Session `key`'s reference and identity, once authenticated.
    pub(crate) fn identified(
        &self,
        key: usize,
    ) -> Option<(SessionRef, (protocol::UserId, protocol::DeviceId))> {
        let identity = self.slots.get(key)?.identity()?;
        Some((self.session_ref(key)?, identity))
    }

    /// Queues `frame` for session `key` itself (an answer to its request).
    pub(crate) fn reply(&mut self, now: Now, key: usize, frame: &Frame) {
        self.call(now, key, |session, ctx| {
            let _ = session.send(ctx, frame, Class::Control);
        });
    }

    /// Closes a session replaced by a newer connection of the same device.
    pub(crate) fn replaced(&mut self, now: Now, key: usize) {
        let Some(me) = self.session_ref(key) else { return };
        let Some(slot) = self.slots.get_mut(key) else { return };
        // The replacement owns the device from now on: on this node it took
        // the directory entry already; from another node (cluster mode) the
        // entry still names this session and goes now.
        if let Some((user, device)) = slot.identity() {
            // Its close will not see an identity: remember its token now.
            self.recent_tokens.remember(slot.token, now.unix_ms / 1_000);
            slot.set_identity(None);
            if self.directory.remove(user, device, me, now.unix_ms) {
                self.left(now, user);
            }
        }
        self.call(now, key, |session, ctx| {
            session.close_with(ctx, CloseCode::REPLACED, "replaced by a newer connection");
        });
    }

    /// SIGTERM: GOAWAY to each session, spread over `window` so that clients
    /// do not all reconnect in the same instant; each is closed by
    /// `deadline`.
    pub fn drain(&mut self, now: Now, window: Duration, deadline: Instant) {
        let keys: Vec<usize> = self.slots.iter().map(|(key, _)| key).collect();
        let count = keys.len().max(1) as u32;
        for (i, key) in keys.into_iter().enumerate() {
            // Session i reconnects after i/count of the window.
            let delay = window.saturating_mul(i as u32) / count;
            let grace = deadline.saturating_duration_since(now.at).saturating_sub(delay);
            let goaway = GoAway {
                reason: GoAwayReason::Drain,
                reconnect_after_ms: u32::try_from(delay.as_millis()).unwrap_or(u32::MAX),
                resume_after: Seq(0),
                redirect: Note::default(),
            };
            self.call(now, key, |session, ctx| session.drain(ctx, goaway, grace));
        }
    }

    /// Stop: every session is closed with 1001.
    pub fn close_all(&mut self, now: Now) {
        let keys: Vec<usize> = self.slots.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.call(now, key, |session, ctx| {
                session.close_with(ctx, CloseCode::GOING_AWAY, "shutting down")
            });
        }
    }
}

/// Where the sync starts. HELLO.resume_after is an implicit ACK (SPEC §6.2),
/// never above the head; below the store's acked cursor the sync starts at
/// that cursor (those entries are gone, and are not expired ones: SPEC §6.3).
fn sync_start(resume_after: Seq, connected: &Connected) -> Seq {
    Seq(resume_after.0.min(connected.inbox_head.0).max(connected.acked.0))
}
