//! Store answers: each finishes what its ticket's `Pending` names (SEND_ACK
//! or SEND_ERROR, GROUP_OK, GROUP_INFO, PREKEY_*, receipts, presence; the
//! login and sync windows are in `sessions`) and starts the fanout a stored
//! change causes. Fanout happens even when the asking session is gone: a
//! stored message must reach its recipients.

use std::borrow::Cow;

use backend_store::{Response, StoreError};
use gateway_core::Class;
use protocol::{Conversation, DeviceId, ErrorCode, Frame, GroupId, Seq, TypingNotify, UserId};

use crate::fanout::receipt_frame;
use crate::frames::{error_frame, send_error};
use crate::work::{Now, Pending, Ticket};
use crate::Hub;

type Answer = Result<Response, StoreError>;

impl<C> Hub<C> {
    /// Finishes what `ticket` names with the store's `result`.
    pub(crate) fn answer(&mut self, now: Now, ticket: Ticket, result: Answer) {
        let Ticket { to, pending } = ticket;
        let key = self.live_key(to);
        match pending {
            Pending::Connect { resume_after, capabilities, version } => {
                if let Some(key) = key {
                    self.connected(now, key, (resume_after, capabilities, version), result);
                }
            }
            Pending::Send { client_id } => self.sent(now, key, client_id, result),
            Pending::Receipts => match result {
                Ok(Response::Receipts(notes)) => self.receipts(&notes),
                result => self.group_refused(now, key, "read", result),
            },
            Pending::Ack { up_to } => self.ack_stored(key, up_to, result),
            Pending::Group { request } => match result {
                Ok(Response::GroupChanged(changed)) => {
                    self.fanout(&changed.message, &changed.deliveries, None);
                    let ok = protocol::GroupOk {
                        request,
                        group: changed.info.group,
                        version: changed.info.version,
                    };
                    self.reply_to(now, key, &Frame::GroupOk(ok));
                }
                result => self.request_failed(now, key, request, result),
            },
            Pending::GroupGet { request } => self.group_info(now, key, request, result),
            Pending::Typing { user, group, active } => {
                self.group_typing(now, key, (user, group, active), result)
            }
            Pending::PrekeyUpload { request } => match result {
                Ok(Response::PrekeyStock(stock)) => {
                    self.reply_to(now, key, &Frame::PrekeyOk(protocol::PrekeyOk { request, stock }));
                }
                result => self.request_failed(now, key, request, result),
            },
            Pending::PrekeyFetch { request, user } => self.prekeys_fetched(now, key, (request, user), result),
            Pending::Inbox { epoch, query, tries } => self.page(now, key, (epoch, query, tries), result),
            Pending::Register { .. } => debug_assert!(false, "a store answer with a registry ticket"),
            Pending::Cursors => match (key, result) {
                (Some(_), Ok(Response::Cursors(notes))) => {
                    for note in notes {
                        self.post_frame(to, receipt_frame(&note), Class::Live);
                    }
                }
                (_, result) => best_effort("cursors", result),
            },
            Pending::Visibility { user, came_online } => match result {
                Ok(Response::Visibility(visibility)) => self.came_online(now, user, visibility, came_online),
                result => best_effort("visibility", result),
            },
            Pending::VisibilitySet => {
                if let Err(err) = result {
                    // The node applied the setting, the store did not keep it:
                    // the client is told, so that its next login does not read
                    // the old one (SPEC §6.6).
                    tracing::warn!(session = ?to, %err, "presence setting not stored");
                    let text = "presence setting not stored; send it again";
                    self.reply_to(now, key, &error_frame(ErrorCode::BACKEND_UNAVAILABLE, 0, text));
                }
            }
        }
    }

    /// SEND stored (SEND_ACK, fanout, the receipts it causes) or refused.
    fn sent(&mut self, now: Now, key: Option<usize>, client_id: u64, result: Answer) {
        match result {
            Ok(Response::Sent(sent)) => {
                let confirm = self.next_confirm(key);
                let elsewhere = self.fanout(&sent.message, &sent.deliveries, confirm);
                self.receipts(&sent.receipts);
                let ack = Frame::SendAck(protocol::SendAck {
                    client_id,
                    message_id: sent.message.id,
                    conv_seq: sent.message.conv_seq,
                    server_time: sent.message.server_time,
                    duplicate: sent.duplicate,
                });
                // Entries for other nodes: the ack waits until they are
                // taken (`held`).
                match confirm.filter(|_| elsewhere > 0) {
                    Some(confirm) => self.hold(now, confirm, ack),
                    None => self.reply_to(now, key, &ack),
                }
            }
            result => {
                let err = failure(result);
                log_failure(&err, "send", self.identity_of(key));
                let code = err.code();
                let refusal = send_error(client_id, code, retry_after_ms(&err, code), &client_text(&err));
                self.reply_to(now, key, &refusal);
            }
        }
    }

    /// A store Ack answered: its receipts go out, then the next Ack.
    fn ack_stored(&mut self, key: Option<usize>, up_to: Seq, result: Answer) {
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

    /// GROUP_GET answered.
    fn group_info(&mut self, now: Now, key: Option<usize>, request: u64, result: Answer) {
        let info = match result {
            Ok(Response::Group(info)) => info,
            result => return self.request_failed(now, key, request, result),
        };
        let members = protocol::List::from_items(&info.members);
        if let Ok(members) = members {
            let info = protocol::GroupInfo {
                request,
                group: info.group,
                version: info.version,
                name: info.name,
                members,
            };
            self.reply_to(now, key, &Frame::GroupInfo(info));
        }
    }

    /// A group's members read for TYPING: each hears it.
    fn group_typing(
        &mut self,
        now: Now,
        key: Option<usize>,
        (user, group, active): (UserId, GroupId, bool),
        result: Answer,
    ) {
        let info = match result {
            Ok(Response::Group(info)) => info,
            result => return self.group_refused(now, key, "typing", result),
        };
        let notify =
            Frame::TypingNotify(TypingNotify { conversation: Conversation::Group(group), user, active });
        for member in info.members.iter().filter(|m| m.user != user) {
            self.post_to_user(member.user, None, &notify, Class::Ephemeral);
        }
    }

    /// PREKEY_FETCH answered: the bundles, and PREKEY_LOW to the devices
    /// whose stock ran low.
    fn prekeys_fetched(
        &mut self,
        now: Now,
        key: Option<usize>,
        (request, user): (u64, UserId),
        result: Answer,
    ) {
        let fetched = match result {
            Ok(Response::PrekeyFetched(fetched)) => fetched,
            result => return self.request_failed(now, key, request, result),
        };
        if let Ok(bundles) = protocol::List::from_items(&fetched.bundles) {
            let frame = Frame::PrekeyBundles(protocol::PrekeyBundles { request, user, bundles });
            self.reply_to(now, key, &frame);
        }
        for (device, stock) in fetched.low {
            if let Some(session) = self.directory.session(user, device) {
                self.post_frame(session, Frame::PrekeyLow(protocol::PrekeyLow { stock }), Class::Live);
            }
        }
    }

    /// A request with an id failed: ERROR naming it.
    fn request_failed(&mut self, now: Now, key: Option<usize>, request: u64, result: Answer) {
        let err = failure(result);
        log_failure(&err, "request", self.identity_of(key));
        self.reply_to(now, key, &error_frame(err.code(), request, &client_text(&err)));
    }

    /// READ and TYPING have no request id: a refusal of the group they name
    /// is ERROR with reference 0, and the session lives (SPEC §4.1); other
    /// failures are best effort.
    fn group_refused(&mut self, now: Now, key: Option<usize>, kind: &'static str, result: Answer) {
        match result {
            Err(err @ (StoreError::UnknownGroup(_) | StoreError::NotAMember(_))) => {
                self.reply_to(now, key, &error_frame(err.code(), 0, &err.to_string()));
            }
            result => best_effort(kind, result),
        }
    }

    /// Queues `frame` for session `key` if it is still there.
    pub(crate) fn reply_to(&mut self, now: Now, key: Option<usize>, frame: &Frame) {
        if let Some(key) = key {
            self.reply(now, key, frame);
        }
    }

    fn identity_of(&self, key: Option<usize>) -> Option<(UserId, DeviceId)> {
        self.slots.get(key?)?.identity()
    }
}

/// Receipts, typing, cursors, visibility: a failure is only logged.
fn best_effort(kind: &'static str, result: Answer) {
    tracing::debug!(kind, err = %failure(result), "store request failed");
}

/// The wait a client is advised after `err`, answered with `code`: the
/// store's own when it knows it (a recovering engine's next attempt), a
/// second for other retryable codes, none for the rest.
pub(crate) fn retry_after_ms(err: &StoreError, code: ErrorCode) -> u32 {
    match err {
        StoreError::Recovering { retry_after_ms } => *retry_after_ms,
        _ if code.retry() == protocol::Retry::Retryable => 1_000,
        _ => 0,
    }
}

/// The text a client sees for `err`: a refusal's own message (it names only
/// the client's ids), and a generic one for a failure of the store itself,
/// whose detail (engine errors, paths, peers) is for the log only.
pub(crate) fn client_text(err: &StoreError) -> Cow<'static, str> {
    match err {
        StoreError::Unavailable(_) | StoreError::Recovering { .. } => "store unavailable".into(),
        StoreError::Engine(_) => "internal error".into(),
        refusal => refusal.to_string().into(),
    }
}

/// Logs the detail a client is not told. Outages are logged once by the
/// store (or its client) with their cause, so the per-request line is debug;
/// an engine error is unexpected and goes out at warn.
pub(crate) fn log_failure(err: &StoreError, kind: &'static str, identity: Option<(UserId, DeviceId)>) {
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
pub(crate) fn failure(result: Result<Response, StoreError>) -> StoreError {
    match result {
        Err(err) => err,
        Ok(other) => StoreError::unexpected_response(&other),
    }
}
