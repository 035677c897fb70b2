//! Client frames for the rest of the node (SEND, READ, TYPING, PRESENCE_*,
//! GROUP_*, PREKEY_*) turned into store requests (answered in `answers`) or
//! routed at once (presence, typing).
//!
//! The store is the truth (SPEC §6): a SEND is acknowledged only when the
//! store's answer arrives, and only then are its inbox entries delivered
//! live; a device that misses one (offline, slow, a shed batch) reads it from
//! the store at its next sync. Presence and typing never touch the store's
//! write path (visibility aside).

use backend_store::{
    GroupChange, GroupOp, PrekeyFetch, PrekeyUpload as StoreUpload, ReadCursor, Request,
    SendMessage as StoreSend,
};
use gateway_admin::MediaResult;
use gateway_core::Class;
use protocol::{Capabilities, CloseCode, DeviceId, ErrorCode, Frame, Note, SendError, UserId};
use routing::SessionRef;

use crate::work::{Now, Pending};
use crate::Hub;

/// ERROR answering request `reference`.
pub(crate) fn error_frame(code: ErrorCode, reference: u64, text: &str) -> Frame {
    let retryable = code.retry() == protocol::Retry::Retryable;
    let retry_after_ms = if retryable { 1_000 } else { 0 };
    Frame::Error(protocol::Error { code, retryable, retry_after_ms, reference, text: Note::truncated(text) })
}

impl<C> Hub<C> {
    /// A frame for the rest of the node from session `key`.
    pub(crate) fn route(&mut self, now: Now, key: usize, frame: Frame) {
        let Some((me, (user, device))) = self.identified(key) else { return };
        match frame {
            Frame::SendMessage(send) => self.send(now, key, me, (user, device), send),
            Frame::Read(read) => {
                let request = Request::Read(ReadCursor {
                    user,
                    device,
                    conversation: read.conversation,
                    up_to: read.up_to,
                });
                self.store_call(me, request, Pending::Receipts);
            }
            Frame::Typing(typing) => self.typing(now, key, user, typing.conversation, typing.active),
            Frame::PresenceSubscribe(subscribe) => self.subscribe(now, key, me, subscribe.user),
            Frame::PresenceUnsubscribe(unsubscribe) => self.unsubscribe(key, me, unsubscribe.user),
            Frame::PresenceSet(set) => self.set_visibility(now, key, me, user, set.visibility),
            Frame::GroupCreate(create) => {
                let op = GroupOp::Create { name: create.name, members: create.members.iter().collect() };
                self.group(now, key, (user, device), create.request, op);
            }
            Frame::GroupAdd(add) => {
                let op = GroupOp::Add { group: add.group, members: add.members.iter().collect() };
                self.group(now, key, (user, device), add.request, op);
            }
            Frame::GroupRemove(remove) => {
                let op = GroupOp::Remove { group: remove.group, members: remove.members.iter().collect() };
                self.group(now, key, (user, device), remove.request, op);
            }
            Frame::GroupLeave(leave) => {
                self.group(now, key, (user, device), leave.request, GroupOp::Leave { group: leave.group });
            }
            Frame::GroupSetRole(set) => {
                let op = GroupOp::SetRole { group: set.group, member: set.user, role: set.role };
                self.group(now, key, (user, device), set.request, op);
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
                let per_min = self.config.prekey_fetches_per_min;
                if !self.directory.take_fetch_token(user, now.unix_ms, per_min) {
                    let text = "too many prekey fetches";
                    self.reply(now, key, &error_frame(ErrorCode::RATE_LIMITED, fetch.request, text));
                    return;
                }
                let request = Request::PrekeyFetch(PrekeyFetch { user: fetch.user, device: fetch.device });
                let pending = Pending::PrekeyFetch { request: fetch.request, user: fetch.user };
                self.request(now, key, fetch.request, request, pending);
            }
            Frame::MediaUpload(upload) => {
                self.media_ticket(now, key, upload.request, |media, now_ms| {
                    media.upload(user.0, &upload, now_ms).map(Frame::MediaUploadTicket)
                });
            }
            Frame::MediaDownload(download) => {
                self.media_ticket(now, key, download.request, |media, now_ms| {
                    media.download(user.0, &download, now_ms).map(Frame::MediaDownloadTicket)
                });
            }
            // The session keeps every other kind to itself or refuses it.
            _ => {}
        }
    }

    /// MEDIA_UPLOAD or MEDIA_DOWNLOAD: answered at once (presigned here, no
    /// network call), or refused with ERROR naming `request`. Without the
    /// MEDIA capability granted the frame is not allowed (SPEC §6.8).
    fn media_ticket(
        &mut self,
        now: Now,
        key: usize,
        request: u64,
        ticket: impl FnOnce(&gateway_media::Media, u64) -> Result<Frame, gateway_media::Refusal>,
    ) {
        let granted = self.slots.get(key).is_some_and(|slot| slot.wants(Capabilities::MEDIA));
        let media = self.config.media.as_deref().filter(|_| granted);
        let Some(media) = media else {
            self.call(now, key, |session, ctx| {
                let text = "media frames need the MEDIA capability granted in AUTH_OK";
                let _ = session.send(ctx, &error_frame(ErrorCode::UNEXPECTED_FRAME, 0, text), Class::Control);
                session.close_with(ctx, CloseCode::UNEXPECTED_FRAME, text);
            });
            return;
        };
        let answer = match ticket(media, now.unix_ms) {
            Ok(ticket) => {
                self.metrics.media_tickets.inc(MediaResult::Granted);
                ticket
            }
            Err(refusal) => {
                self.metrics.media_tickets.inc(media_result(&refusal));
                let retryable = refusal.code().retry() == protocol::Retry::Retryable;
                Frame::Error(protocol::Error {
                    code: refusal.code(),
                    retryable,
                    retry_after_ms: refusal.retry_after_ms(),
                    reference: request,
                    text: Note::truncated(&refusal.text()),
                })
            }
        };
        self.reply(now, key, &answer);
    }

    /// SEND: stored, then acknowledged and fanned out (`answers`).
    fn send(
        &mut self,
        now: Now,
        key: usize,
        me: SessionRef,
        (user, device): (UserId, DeviceId),
        send: protocol::SendMessage,
    ) {
        // Over the limit AUTH_OK announced: a refused request, not a
        // malformed frame, so the session lives (SPEC §6.1).
        let len = send.payload.bytes().len();
        let max_payload = self.config.max_payload;
        if len > max_payload as usize {
            let text = format!("payload of {len} bytes over max_payload {max_payload}");
            let refusal = send_error(send.client_id, ErrorCode::PAYLOAD_TOO_LARGE, 0, &text);
            self.reply(now, key, &refusal);
            return;
        }
        let request = Request::Send(StoreSend {
            user,
            device,
            client_id: send.client_id,
            to: send.to,
            payload: send.payload.bytes().clone(),
        });
        if !self.store_call(me, request, Pending::Send { client_id: send.client_id }) {
            let text = "too many store requests in flight";
            self.reply(now, key, &send_error(send.client_id, ErrorCode::OVERLOADED, 1_000, text));
        }
    }

    /// PRESENCE_SET: applied on this node at once (watchers hear it), and
    /// stored for the user's next login.
    fn set_visibility(
        &mut self,
        now: Now,
        key: usize,
        me: SessionRef,
        user: UserId,
        visibility: protocol::Visibility,
    ) {
        if !self.store_call(me, Request::SetVisibility { user, visibility }, Pending::VisibilitySet) {
            // Applied on this node below, but not stored: the client must send
            // it again, or its next login reads the old one.
            let text = "presence setting not stored; send it again";
            self.reply(now, key, &error_frame(ErrorCode::OVERLOADED, 0, text));
        }
        let mut watchers = std::mem::take(&mut self.watchers);
        watchers.clear();
        let view = self.directory.set_visibility(
            user,
            visibility,
            now.unix_ms,
            self.config.grace_ms(),
            &mut watchers,
        );
        let presence = crate::presence::presence(user, view);
        for watcher in watchers.drain(..) {
            self.post_frame(watcher, presence.clone(), Class::Ephemeral);
        }
        self.watchers = watchers;
        self.presence_elsewhere(user, presence, false);
    }

    /// A store request answered by the frame `request` names, or ERROR
    /// OVERLOADED at once.
    fn request(&mut self, now: Now, key: usize, reference: u64, request: Request, pending: Pending) {
        let Some(me) = self.session_ref(key) else { return };
        if !self.store_call(me, request, pending) {
            self.reply(now, key, &error_frame(ErrorCode::OVERLOADED, reference, "too many store requests"));
        }
    }

    fn group(&mut self, now: Now, key: usize, (user, device): (UserId, DeviceId), request: u64, op: GroupOp) {
        let call = Request::Group(GroupChange { user, device, op });
        self.request(now, key, request, call, Pending::Group { request });
    }
}

/// SEND_ERROR for the SEND with `client_id`.
pub(crate) fn send_error(client_id: u64, code: ErrorCode, retry_after_ms: u32, text: &str) -> Frame {
    Frame::SendError(SendError { client_id, code, retry_after_ms, text: Note::truncated(text) })
}

/// The metric label of a refused ticket.
fn media_result(refusal: &gateway_media::Refusal) -> MediaResult {
    use gateway_media::Refusal;
    match refusal {
        Refusal::TooLarge { .. } => MediaResult::TooLarge,
        Refusal::QuotaExceeded { .. } => MediaResult::QuotaExceeded,
        Refusal::RateLimited { .. } => MediaResult::RateLimited,
        Refusal::UnknownMedia => MediaResult::UnknownMedia,
        Refusal::StoreUnavailable { .. } => MediaResult::StoreUnavailable,
    }
}
