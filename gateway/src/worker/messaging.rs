//! Messaging: client frames turned into store requests (answered in
//! `replies`, fanned out in `fanout`).
//!
//! The store is the truth (SPEC §6): a SEND is acknowledged only when the
//! store's answer arrives, and only then are its inbox entries delivered
//! live; a device that misses one (offline, slow, a shed batch) reads it from
//! the store at its next sync. Presence and typing never touch the store's
//! write path (visibility aside).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use backend_store::{
    Connect, GroupChange, GroupOp, InboxQuery, PrekeyFetch, PrekeyUpload as StoreUpload, ReadCursor, Request,
    SendMessage as StoreSend,
};
use gateway_core::Class;
use protocol::{Capabilities, ErrorCode, Frame, GroupId, Note, Presence, SendError, Seq, UserId};

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
    /// A READ: the answer is receipts to fan out.
    Receipts,
    /// An Ack up to `up_to` (see `acks`): receipts to fan out, then the
    /// next Ack.
    Ack { up_to: Seq },
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
    /// PRESENCE_SET being stored.
    VisibilitySet,
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
                // Over the limit AUTH_OK announced: a refused request, not a
                // malformed frame, so the session lives (SPEC §6.1).
                let len = send.payload.bytes().len();
                if len > self.messaging.max_payload as usize {
                    let refusal = Frame::SendError(SendError {
                        client_id: send.client_id,
                        code: ErrorCode::PAYLOAD_TOO_LARGE,
                        retry_after_ms: 0,
                        text: Note::truncated(&format!(
                            "payload of {len} bytes over max_payload {}",
                            self.messaging.max_payload
                        )),
                    });
                    self.answer(now, key, &refusal);
                    return;
                }
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
                if !self.store_call(key, request, Pending::VisibilitySet) {
                    // Applied on this node below, but not stored: the client
                    // must send it again, or its next login reads the old one.
                    let text = "presence setting not stored; send it again";
                    self.answer(now, key, &error_frame(ErrorCode::OVERLOADED, 0, text));
                }
                let mut watchers = std::mem::take(&mut self.watchers);
                watchers.clear();
                let view = self.shared.directory.set_visibility(
                    user,
                    set.visibility,
                    unix_ms(),
                    self.messaging.grace_ms,
                    &mut watchers,
                );
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
}

impl Worker {
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
            gateway_core::Action::Acked(up_to) => self.ack_arrived(key, up_to),
            gateway_core::Action::Synced => {
                let since = protocol::Timestamp(u64::from(conn.previous_connect_secs) * 1_000);
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
                conn.session.reject_retry_after(ctx, code, close, "backend", "too many store requests", 1_000)
            });
        }
    }

    /// Closes session `key` because the store cannot take its request now
    /// (resumable: the client backs off and resumes).
    fn shed(&mut self, now: Instant, key: usize, close: protocol::CloseCode) {
        self.call(now, key, |conn, ctx| conn.session.close_with(ctx, close, "store overloaded"));
    }
}
