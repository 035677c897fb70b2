//! Store answers: each finishes what its `Pending` names (AUTH_OK and the
//! sync after Connect, SEND_ACK or SEND_ERROR, GROUP_OK, GROUP_INFO,
//! PREKEY_*, a sync window) and starts the fanout a stored change causes.
//! Fanout happens even when the asking session is gone: a stored message must
//! reach its recipients.

use std::borrow::Cow;
use std::time::Instant;

use backend_store::{Request, Response, StoreError};
use gateway_core::Class;
use protocol::{
    Capabilities, Conversation, DeviceId, ErrorCode, Frame, Note, Presence, SendError, Seq, Timestamp,
    TypingNotify, UserId,
};

use super::fanout::receipt_frame;
use super::messaging::{error_frame, unix_ms, Pending};
use super::Worker;
use crate::directory::SessionRef;

impl Worker {
    /// A store answer for session `to`. Fanout happens even if the asking
    /// session is gone: a stored message must reach its recipients.
    pub(super) fn on_reply(
        &mut self,
        now: Instant,
        to: SessionRef,
        pending: Pending,
        result: Result<Response, StoreError>,
    ) {
        self.inflight = self.inflight.saturating_sub(1);
        let key = self.conns.get(to.key).filter(|conn| conn.generation == to.generation).map(|_| to.key);
        match (pending, result) {
            (Pending::Connect { resume_after, capabilities, version }, result) => {
                if let Some(key) = key {
                    self.connected(now, key, resume_after, capabilities, version, result);
                }
            }
            (Pending::Send { client_id }, Ok(Response::Sent(sent))) => {
                self.fanout(&sent.message, &sent.deliveries);
                self.receipts(&sent.receipts);
                let ack = Frame::SendAck(protocol::SendAck {
                    client_id,
                    message_id: sent.message.id,
                    conv_seq: sent.message.conv_seq,
                    server_time: sent.message.server_time,
                    duplicate: sent.duplicate,
                });
                self.answer_if(now, key, &ack);
            }
            (Pending::Send { client_id }, result) => {
                let err = failure(result);
                log_failure(&err, "send", key.and_then(|key| self.conns.get(key)?.identity));
                let refusal = Frame::SendError(SendError {
                    client_id,
                    code: err.code(),
                    retry_after_ms: retry_after_ms(&err, err.code()),
                    text: Note::truncated(&client_text(&err)),
                });
                self.answer_if(now, key, &refusal);
            }
            (Pending::Receipts, Ok(Response::Receipts(notes))) => self.receipts(&notes),
            (Pending::Ack { up_to }, result) => {
                let failed = match result {
                    Ok(Response::Receipts(notes)) => {
                        self.receipts(&notes);
                        None
                    }
                    result => {
                        tracing::debug!(err = %failure(result), "store Ack failed; it waits for the next");
                        Some(up_to)
                    }
                };
                self.ack_answered(key, failed);
            }
            (Pending::Group { request }, Ok(Response::GroupChanged(changed))) => {
                self.fanout(&changed.message, &changed.deliveries);
                let ok =
                    protocol::GroupOk { request, group: changed.info.group, version: changed.info.version };
                self.answer_if(now, key, &Frame::GroupOk(ok));
            }
            (Pending::GroupGet { request }, Ok(Response::Group(info))) => {
                let members = protocol::List::from_items(&info.members);
                let frame = members.map(|members| {
                    Frame::GroupInfo(protocol::GroupInfo {
                        request,
                        group: info.group,
                        version: info.version,
                        name: info.name,
                        members,
                    })
                });
                if let Ok(frame) = frame {
                    self.answer_if(now, key, &frame);
                }
            }
            (Pending::Typing { user, group, active }, Ok(Response::Group(info))) => {
                let notify = Frame::TypingNotify(TypingNotify {
                    conversation: Conversation::Group(group),
                    user,
                    active,
                });
                for member in info.members.iter().filter(|m| m.user != user) {
                    self.post_to_user(member.user, None, &notify, Class::Ephemeral);
                }
            }
            (Pending::PrekeyUpload { request }, Ok(Response::PrekeyStock(stock))) => {
                self.answer_if(now, key, &Frame::PrekeyOk(protocol::PrekeyOk { request, stock }));
            }
            (Pending::PrekeyFetch { request, user }, Ok(Response::PrekeyFetched(fetched))) => {
                if let Ok(bundles) = protocol::List::from_items(&fetched.bundles) {
                    let frame = Frame::PrekeyBundles(protocol::PrekeyBundles { request, user, bundles });
                    self.answer_if(now, key, &frame);
                }
                for (device, stock) in fetched.low {
                    if let Some(session) = self.shared.directory.session(user, device) {
                        self.post_frame(
                            session,
                            Frame::PrekeyLow(protocol::PrekeyLow { stock }),
                            Class::Live,
                        );
                    }
                }
            }
            (Pending::Inbox { epoch }, Ok(Response::Inbox(page))) => {
                if let Some(key) = key {
                    let ran = self.call(now, key, |conn, ctx| {
                        conn.session.handle_page(ctx, epoch, &page.entries, page.remaining)
                    });
                    if ran.is_some() {
                        self.after(now, key);
                    }
                }
            }
            (Pending::Inbox { .. }, result) => {
                // The sync cannot go on: close resumably, the next connection
                // syncs again from the client's cursor.
                tracing::warn!(err = %failure(result), "inbox read failed");
                if let Some(key) = key {
                    let close = protocol::CloseCode::INTERNAL_ERROR;
                    if self
                        .call(now, key, |conn, ctx| conn.session.close_with(ctx, close, "store unavailable"))
                        .is_some()
                    {
                        self.after(now, key);
                    }
                }
            }
            (Pending::Cursors, Ok(Response::Cursors(notes))) => {
                if let Some(key) = key {
                    for note in notes {
                        let frame = receipt_frame(&note);
                        self.post_frame(
                            SessionRef { worker: self.index, key, generation: to.generation },
                            frame,
                            Class::Live,
                        );
                    }
                }
            }
            (Pending::Visibility { user, came_online }, Ok(Response::Visibility(visibility))) => {
                let mut watchers = std::mem::take(&mut self.watchers);
                watchers.clear();
                self.shared.directory.visibility_read(user, visibility, came_online, &mut watchers);
                let presence = Frame::Presence(Presence {
                    user,
                    status: protocol::PresenceStatus::Online,
                    last_seen: Timestamp(unix_ms()),
                });
                for watcher in watchers.drain(..) {
                    self.post_frame(watcher, presence.clone(), Class::Ephemeral);
                }
                self.watchers = watchers;
            }
            (Pending::VisibilitySet, Ok(_)) => {}
            (Pending::VisibilitySet, result) => {
                // The node applied the setting, the store did not keep it: the
                // client is told, so that its next login does not read the
                // old one (SPEC §6.6).
                tracing::warn!(session = ?to, err = %failure(result), "presence setting not stored");
                let text = "presence setting not stored; send it again";
                self.answer_if(now, key, &error_frame(ErrorCode::BACKEND_UNAVAILABLE, 0, text));
            }
            (
                Pending::Receipts | Pending::Typing { .. },
                Err(err @ (StoreError::UnknownGroup(_) | StoreError::NotAMember(_))),
            ) => {
                // READ and TYPING have no request id: a refusal of the group
                // they name is ERROR with reference 0, and the session lives
                // (SPEC §4.1).
                self.answer_if(now, key, &error_frame(err.code(), 0, &err.to_string()));
            }
            (
                Pending::Group { request }
                | Pending::GroupGet { request }
                | Pending::PrekeyUpload { request }
                | Pending::PrekeyFetch { request, .. },
                result,
            ) => {
                let err = failure(result);
                log_failure(&err, "request", key.and_then(|key| self.conns.get(key)?.identity));
                self.answer_if(now, key, &error_frame(err.code(), request, &client_text(&err)));
            }
            (pending, result) => {
                // Receipts, typing, cursors, visibility: best effort.
                tracing::debug!(?pending, err = %failure(result), "store request failed");
            }
        }
    }

    fn answer_if(&mut self, now: Instant, key: Option<usize>, frame: &Frame) {
        if let Some(key) = key {
            self.answer(now, key, frame);
            self.after(now, key);
        }
    }

    /// Connect answered: AUTH_OK and sync, or AUTH_ERROR and a close.
    fn connected(
        &mut self,
        now: Instant,
        key: usize,
        resume_after: Seq,
        capabilities: Capabilities,
        version: u8,
        result: Result<Response, StoreError>,
    ) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let Some((user, device)) = conn.identity else { return };
        let connected = match result {
            Ok(Response::Connected(connected)) => connected,
            other => {
                let err = failure(other);
                log_failure(&err, "connect", Some((user, device)));
                let (code, close) = match &err {
                    StoreError::TooManyDevices(_) => {
                        (ErrorCode::TOO_MANY_DEVICES, protocol::CloseCode::TOO_MANY_DEVICES)
                    }
                    StoreError::Overloaded => (ErrorCode::OVERLOADED, protocol::CloseCode::TRY_AGAIN_LATER),
                    _ => (ErrorCode::BACKEND_UNAVAILABLE, protocol::CloseCode::INTERNAL_ERROR),
                };
                conn.identity = None;
                let (text, retry_after) = (client_text(&err), retry_after_ms(&err, code));
                if self
                    .call(now, key, |conn, ctx| {
                        conn.session.reject_retry_after(ctx, code, close, "backend", &text, retry_after)
                    })
                    .is_some()
                {
                    self.after(now, key);
                }
                return;
            }
        };
        let generation = conn.generation;
        conn.capabilities = u8::try_from(capabilities.0).unwrap_or(0);
        conn.previous_connect_secs = u32::try_from(connected.previous_connect.0 / 1_000).unwrap_or(u32::MAX);
        let me = SessionRef { worker: self.index, key, generation };
        let auth_ok = protocol::AuthOk {
            version,
            user,
            device,
            session: generation,
            server_time: Timestamp(unix_ms()),
            heartbeat_ms: u32::try_from(self.shared.session.heartbeat.as_millis()).unwrap_or(u32::MAX),
            inbox_head: connected.inbox_head,
            max_payload: self.messaging.max_payload,
            capabilities,
        };
        // HELLO.resume_after is an implicit ACK (SPEC §6.2), never above the
        // head; below the store's acked cursor the sync starts at that cursor
        // (those entries are gone, and are not expired ones: SPEC §6.3).
        let resume_after = Seq(resume_after.0.min(connected.inbox_head.0).max(connected.acked.0));
        self.call(now, key, |conn, ctx| conn.session.accept(ctx, auth_ok, resume_after));
        if resume_after > connected.acked {
            self.ack_arrived(key, resume_after);
        }
        if let Some(stock) = connected.prekey_stock.filter(|stock| *stock <= self.messaging.prekey_low) {
            self.answer(now, key, &Frame::PrekeyLow(protocol::PrekeyLow { stock }));
        }
        self.shared.backend.push.connected(user, device);
        let (replaced, came_online) = self.shared.directory.insert(user, device, me);
        self.store_call(key, Request::GetVisibility { user }, Pending::Visibility { user, came_online });
        self.after(now, key);
        if let Some(old) = replaced {
            self.replace(now, old);
        }
    }
}

/// The wait a client is advised after `err`, answered with `code`: the
/// store's own when it knows it (a recovering engine's next attempt), a
/// second for other retryable codes, none for the rest.
fn retry_after_ms(err: &StoreError, code: ErrorCode) -> u32 {
    match err {
        StoreError::Recovering { retry_after_ms } => *retry_after_ms,
        _ if code.retry() == protocol::Retry::Retryable => 1_000,
        _ => 0,
    }
}

/// The text a client sees for `err`: a refusal's own message (it names only
/// the client's ids), and a generic one for a failure of the store itself,
/// whose detail (engine errors, paths, peers) is for the log only.
fn client_text(err: &StoreError) -> Cow<'static, str> {
    match err {
        StoreError::Unavailable(_) | StoreError::Recovering { .. } => "store unavailable".into(),
        StoreError::Engine(_) => "internal error".into(),
        refusal => refusal.to_string().into(),
    }
}

/// Logs the detail a client is not told. Outages are logged once by the
/// store (or its client) with their cause, so the per-request line is debug;
/// an engine error is unexpected and goes out at warn.
fn log_failure(err: &StoreError, kind: &'static str, identity: Option<(UserId, DeviceId)>) {
    let (user, device) = identity.map_or((0, 0), |(user, device)| (user.0, device.0));
    match err {
        StoreError::Engine(_) => tracing::warn!(kind, user, device, %err, "store request failed"),
        StoreError::Unavailable(_) | StoreError::Recovering { .. } => {
            tracing::debug!(kind, user, device, %err, "store request failed");
        }
        _ => {}
    }
}

/// The error of a failed (or mismatched) answer.
fn failure(result: Result<Response, StoreError>) -> StoreError {
    match result {
        Err(err) => err,
        Ok(other) => StoreError::unexpected_response(&other),
    }
}
