//! Messaging: client frames turned into store requests, store answers turned
//! into frames for the asking session and fanout to everyone else.
//!
//! The store is the truth (SPEC §6): a SEND is acknowledged only when the
//! store's answer arrives, and only then are its inbox entries delivered
//! live; a device that misses one (offline, slow, a shed batch) reads it from
//! the store at its next sync. Presence and typing never touch the store's
//! write path (visibility aside).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use backend_push::PushNote;
use backend_store::{
    Ack as StoreAck, Connect, Delivery, GroupChange, GroupOp, InboxQuery, Message, PrekeyFetch,
    PrekeyUpload as StoreUpload, ReadCursor, ReceiptNote, Request, Response, SendMessage as StoreSend,
    StoreError,
};
use gateway_core::{Class, SharedDeliver};
use protocol::{
    Capabilities, Conversation, Deliver, ErrorCode, Frame, GroupId, Note, Payload, Presence, Receipt,
    SendError, Seq, Timestamp, TypingNotify, UserId,
};

use super::fanout::Remote;
use super::Worker;
use crate::directory::SessionRef;

/// What a worker was doing when it called the store, to finish it when the
/// answer comes back.
#[derive(Debug)]
pub(crate) enum Pending {
    /// HELLO verified; the device is being registered.
    Connect { resume_after: Seq, capabilities: Capabilities, version: u8 },
    /// A SEND.
    Send { client_id: u64 },
    /// An ACK or READ: the answer is receipts to fan out.
    Receipts,
    /// A group change.
    Group { request: u64 },
    /// GROUP_GET.
    GroupGet { request: u64 },
    /// TYPING in a group: the members are being read.
    Typing { user: UserId, group: GroupId, active: bool },
    /// PREKEY_UPLOAD.
    PrekeyUpload { request: u64 },
    /// PREKEY_FETCH of `user`'s bundles.
    PrekeyFetch { request: u64, user: UserId },
    /// A sync window.
    Inbox { epoch: u8 },
    /// Cursors that moved while the device was away.
    Cursors,
    /// The user's visibility, read when it connected.
    Visibility { user: UserId, came_online: bool },
    /// PRESENCE_SET stored.
    Stored,
}

/// Milliseconds since the Unix epoch (presence times).
pub(super) fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// ERROR answering request `reference`.
pub(super) fn error_frame(code: ErrorCode, reference: u64, text: &str) -> Frame {
    let retryable = code.retry() == protocol::Retry::Retryable;
    let retry_after_ms = if retryable { 1_000 } else { 0 };
    Frame::Error(protocol::Error { code, retryable, retry_after_ms, reference, text: Note::truncated(text) })
}

impl Worker {
    /// Sends `request` to the store for session `key`, unless this worker
    /// already has `store.max_inflight` requests out: then `false`.
    pub(super) fn store_call(&mut self, key: usize, request: Request, pending: Pending) -> bool {
        if self.inflight >= self.messaging.max_inflight {
            self.metrics.drops.inc(gateway_admin::DropReason::Backend);
            return false;
        }
        let Some(conn) = self.conns.get(key) else { return false };
        let to = SessionRef { worker: self.index, key, generation: conn.generation };
        self.inflight += 1;
        self.sink.call(self.shared.backend.store.as_ref(), request, to, pending);
        true
    }

    /// Frames for the rest of the node (SEND, READ, TYPING, PRESENCE_*,
    /// GROUP_*, PREKEY_*), from session `key`.
    pub(super) fn route(&mut self, now: Instant, key: usize, frame: Frame) {
        let Some(conn) = self.conns.get(key) else { return };
        let Some((user, device)) = conn.identity else { return };
        let me = SessionRef { worker: self.index, key, generation: conn.generation };
        match frame {
            Frame::SendMessage(send) => {
                let request = Request::Send(StoreSend {
                    user,
                    device,
                    client_id: send.client_id,
                    to: send.to,
                    payload: send.payload.bytes().clone(),
                });
                if !self.store_call(key, request, Pending::Send { client_id: send.client_id }) {
                    let refusal = Frame::SendError(SendError {
                        client_id: send.client_id,
                        code: ErrorCode::OVERLOADED,
                        retry_after_ms: 1_000,
                        text: Note::truncated("too many store requests in flight"),
                    });
                    self.answer(now, key, &refusal);
                }
            }
            Frame::Read(read) => {
                let request = Request::Read(ReadCursor {
                    user,
                    device,
                    conversation: read.conversation,
                    up_to: read.up_to,
                });
                self.store_call(key, request, Pending::Receipts);
            }
            Frame::Typing(typing) => self.typing(now, key, user, typing.conversation, typing.active),
            Frame::PresenceSubscribe(subscribe) => self.subscribe(now, key, me, subscribe.user),
            Frame::PresenceUnsubscribe(unsubscribe) => {
                self.shared.directory.unwatch(unsubscribe.user, me);
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.extras().watching.retain(|u| *u != unsubscribe.user);
                }
            }
            Frame::PresenceSet(set) => {
                let request = Request::SetVisibility { user, visibility: set.visibility };
                self.store_call(key, request, Pending::Stored);
                let mut watchers = std::mem::take(&mut self.watchers);
                watchers.clear();
                self.shared.directory.announce_online(user, set.visibility, false, &mut watchers);
                let view =
                    self.shared.directory.current(user, unix_ms(), self.messaging.grace_ms, &mut watchers);
                let presence =
                    Frame::Presence(Presence { user, status: view.status, last_seen: view.last_seen });
                for watcher in watchers.drain(..) {
                    self.post_frame(watcher, presence.clone(), Class::Ephemeral);
                }
                self.watchers = watchers;
            }
            Frame::GroupCreate(create) => {
                let op = GroupOp::Create { name: create.name, members: create.members.iter().collect() };
                self.group(now, key, user, device, create.request, op);
            }
            Frame::GroupAdd(add) => {
                let op = GroupOp::Add { group: add.group, members: add.members.iter().collect() };
                self.group(now, key, user, device, add.request, op);
            }
            Frame::GroupRemove(remove) => {
                let op = GroupOp::Remove { group: remove.group, members: remove.members.iter().collect() };
                self.group(now, key, user, device, remove.request, op);
            }
            Frame::GroupLeave(leave) => {
                self.group(now, key, user, device, leave.request, GroupOp::Leave { group: leave.group });
            }
            Frame::GroupSetRole(set) => {
                let op = GroupOp::SetRole { group: set.group, member: set.user, role: set.role };
                self.group(now, key, user, device, set.request, op);
            }
            Frame::GroupGet(get) => {
                let request = Request::GroupGet { user, group: get.group };
                self.request(now, key, get.request, request, Pending::GroupGet { request: get.request });
            }
            Frame::PrekeyUpload(upload) => {
                let request = Request::PrekeyUpload(StoreUpload {
                    user,
                    device,
                    identity_key: upload.identity_key,
                    signed_prekey: upload.signed_prekey,
                    one_time: upload.one_time.iter().collect(),
                });
                let pending = Pending::PrekeyUpload { request: upload.request };
                self.request(now, key, upload.request, request, pending);
            }
            Frame::PrekeyFetch(fetch) => {
                let per_min = self.messaging.prekey_fetches_per_min;
                if !self.shared.directory.take_fetch_token(user, unix_ms(), per_min) {
                    let text = "too many prekey fetches";
                    self.answer(now, key, &error_frame(ErrorCode::RATE_LIMITED, fetch.request, text));
                    return;
                }
                let request = Request::PrekeyFetch(PrekeyFetch { user: fetch.user, device: fetch.device });
                let pending = Pending::PrekeyFetch { request: fetch.request, user: fetch.user };
                self.request(now, key, fetch.request, request, pending);
            }
            // The session keeps every other kind to itself or refuses it.
            _ => {}
        }
    }

    /// A store request answered by the frame `request` names, or ERROR
    /// OVERLOADED at once.
    fn request(&mut self, now: Instant, key: usize, reference: u64, request: Request, pending: Pending) {
        if !self.store_call(key, request, pending) {
            self.answer(now, key, &error_frame(ErrorCode::OVERLOADED, reference, "too many store requests"));
        }
    }

    fn group(
        &mut self,
        now: Instant,
        key: usize,
        user: UserId,
        device: protocol::DeviceId,
        request: u64,
        op: GroupOp,
    ) {
        let call = Request::Group(GroupChange { user, device, op });
        self.request(now, key, request, call, Pending::Group { request });
    }

    /// Queues `frame` for session `key` itself (a control answer).
    pub(super) fn answer(&mut self, now: Instant, key: usize, frame: &Frame) {
        self.call(now, key, |conn, ctx| {
            let _ = conn.session.send(ctx, frame, Class::Control);
        });
    }

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
                let retryable = err.code().retry() == protocol::Retry::Retryable;
                let refusal = Frame::SendError(SendError {
                    client_id,
                    code: err.code(),
                    retry_after_ms: if retryable { 1_000 } else { 0 },
                    text: Note::truncated(&err.to_string()),
                });
                self.answer_if(now, key, &refusal);
            }
            (Pending::Receipts, Ok(Response::Receipts(notes))) => self.receipts(&notes),
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
                self.shared.directory.announce_online(user, visibility, came_online, &mut watchers);
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
            (Pending::Stored, Ok(_)) => {}
            (
                Pending::Group { request }
                | Pending::GroupGet { request }
                | Pending::PrekeyUpload { request }
                | Pending::PrekeyFetch { request, .. },
                result,
            ) => {
                let err = failure(result);
                self.answer_if(now, key, &error_frame(err.code(), request, &err.to_string()));
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

    /// Delivers a stored message's inbox entries: live to connected devices
    /// (the DELIVER encoded once per conversation view), a push note for the
    /// others.
    pub(super) fn fanout(&mut self, message: &Message, deliveries: &[Delivery]) {
        let mut views: Vec<(Conversation, SharedDeliver)> = Vec::with_capacity(2);
        let mut devices = std::mem::take(&mut self.devices);
        let mut current = None;
        for delivery in deliveries {
            if current != Some(delivery.user) {
                self.shared.directory.devices(delivery.user, &mut devices);
                current = Some(delivery.user);
            }
            let session = devices.iter().find(|(device, _)| *device == delivery.device).map(|(_, s)| *s);
            let Some(to) = session else {
                self.shared.backend.push.notify(PushNote {
                    user: delivery.user,
                    device: delivery.device,
                    seq: delivery.seq,
                    conversation: delivery.conversation,
                    sender: message.sender,
                });
                continue;
            };
            let deliver = match views.iter().find(|(view, _)| *view == delivery.conversation) {
                Some((_, shared)) => shared.clone(),
                None => {
                    let shared = SharedDeliver::new(&deliver_of(delivery, message));
                    views.push((delivery.conversation, shared.clone()));
                    shared
                }
            };
            self.post(Remote::Live { to, seq: delivery.seq, deliver });
        }
        self.devices = devices;
    }

    /// Sends each cursor move to the devices of the user who must hear it.
    pub(super) fn receipts(&mut self, notes: &[ReceiptNote]) {
        for note in notes {
            self.post_to_user(note.to, note.except, &receipt_frame(note), Class::Live);
        }
    }

    /// Queues `frame` for every connected device of `user` but `except`.
    pub(super) fn post_to_user(
        &mut self,
        user: UserId,
        except: Option<protocol::DeviceId>,
        frame: &Frame,
        class: Class,
    ) {
        let mut devices = std::mem::take(&mut self.devices);
        self.shared.directory.devices(user, &mut devices);
        for (device, session) in devices.iter().copied() {
            if Some(device) != except {
                self.post_frame(session, frame.clone(), class);
            }
        }
        self.devices = devices;
    }
}

/// The DELIVER body of `delivery`'s entry.
fn deliver_of(delivery: &Delivery, message: &Message) -> Deliver {
    Deliver {
        seq: delivery.seq,
        message_id: message.id,
        conversation: delivery.conversation,
        conv_seq: message.conv_seq,
        sender: message.sender,
        sender_device: message.sender_device,
        server_time: message.server_time,
        payload: Payload::new(message.payload.clone()).unwrap_or_default(),
    }
}

fn receipt_frame(note: &ReceiptNote) -> Frame {
    Frame::Receipt(Receipt {
        conversation: note.conversation,
        user: note.user,
        kind: note.kind,
        up_to: note.up_to,
        at: note.at,
    })
}

/// The error of a failed (or mismatched) answer.
fn failure(result: Result<Response, StoreError>) -> StoreError {
    match result {
        Err(err) => err,
        Ok(other) => StoreError::Engine(format!("unexpected store answer {other:?}")),
    }
}

impl Worker {
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
                let (code, close) = match &err {
                    StoreError::TooManyDevices(_) => {
                        (ErrorCode::TOO_MANY_DEVICES, protocol::CloseCode::TOO_MANY_DEVICES)
                    }
                    StoreError::Overloaded => (ErrorCode::OVERLOADED, protocol::CloseCode::TRY_AGAIN_LATER),
                    _ => (ErrorCode::BACKEND_UNAVAILABLE, protocol::CloseCode::INTERNAL_ERROR),
                };
                conn.identity = None;
                let text = err.to_string();
                if self
                    .call(now, key, |conn, ctx| conn.session.reject(ctx, code, close, "backend", &text))
                    .is_some()
                {
                    self.after(now, key);
                }
                return;
            }
        };
        let generation = conn.generation;
        conn.capabilities = u8::try_from(capabilities.0).unwrap_or(0);
        conn.extras().previous_connect = connected.previous_connect;
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
        // HELLO.resume_after is an implicit ACK (SPEC §6.2), never above the head.
        let resume_after = Seq(resume_after.0.min(connected.inbox_head.0));
        self.call(now, key, |conn, ctx| conn.session.accept(ctx, auth_ok, resume_after));
        if resume_after > connected.acked {
            let ack = Request::Ack(StoreAck { user, device, up_to: resume_after });
            self.store_call(key, ack, Pending::Receipts);
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

    /// The session's actions that need the store: sync windows, acks and the
    /// cursors after the first sync.
    pub(super) fn delivery_action(&mut self, now: Instant, key: usize, action: gateway_core::Action) {
        let Some(conn) = self.conns.get(key) else { return };
        let Some((user, device)) = conn.identity else { return };
        match action {
            gateway_core::Action::ReadInbox { after, limit, epoch } => {
                let max_bytes = (protocol::limits::MAX_FRAME_LEN - 64) as u32;
                let query = InboxQuery { user, device, after, limit, max_bytes };
                if !self.store_call(key, Request::Inbox(query), Pending::Inbox { epoch }) {
                    // A sync cannot stall: the client reconnects and resumes.
                    self.shed(now, key, protocol::CloseCode::TRY_AGAIN_LATER);
                }
            }
            gateway_core::Action::Acked(up_to) => {
                self.store_call(key, Request::Ack(StoreAck { user, device, up_to }), Pending::Receipts);
            }
            gateway_core::Action::Synced => {
                let since = conn.extras.as_ref().map_or(Timestamp(0), |extras| extras.previous_connect);
                self.store_call(key, Request::Cursors { user, since }, Pending::Cursors);
            }
            _ => {}
        }
    }

    /// Starts registering the device whose token was verified.
    pub(super) fn connect(
        &mut self,
        now: Instant,
        key: usize,
        user: UserId,
        device: protocol::DeviceId,
        pending: Pending,
    ) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.identity = Some((user, device));
        }
        if !self.store_call(key, Request::Connect(Connect { user, device }), pending) {
            let (code, close) = (ErrorCode::OVERLOADED, protocol::CloseCode::TRY_AGAIN_LATER);
            self.call(now, key, |conn, ctx| {
                conn.session.reject(ctx, code, close, "backend", "too many store requests")
            });
        }
    }

    /// Closes session `key` because the store cannot take its request now
    /// (resumable: the client backs off and resumes).
    fn shed(&mut self, now: Instant, key: usize, close: protocol::CloseCode) {
        self.call(now, key, |conn, ctx| conn.session.close_with(ctx, close, "store overloaded"));
    }
}
