//! Presence and typing (SPEC §6.6): subscriptions per connection, the grace
//! period before a user who left is announced offline, and the per
//! conversation throttle on TYPING. Neither is stored (visibility aside) and
//! both are the first output dropped under pressure (`Class::Ephemeral`).

use std::time::{Duration, Instant};

use backend_store::Request;
use gateway_core::Class;
use protocol::limits::MAX_PRESENCE_SUBSCRIPTIONS;
use protocol::{Conversation, ErrorCode, Frame, Presence, TypingNotify, UserId};

use super::messaging::{error_frame, unix_ms, Pending};
use super::Worker;
use crate::directory::SessionRef;

/// Conversations whose last TYPING time one connection remembers.
const TYPING_SLOTS: usize = 8;

impl Worker {
    /// PRESENCE_SUBSCRIBE: answered at once with the current state.
    pub(super) fn subscribe(&mut self, now: Instant, key: usize, me: SessionRef, user: UserId) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let watching = &mut conn.extras().watching;
        if !watching.contains(&user) {
            if watching.len() >= MAX_PRESENCE_SUBSCRIPTIONS {
                let text = "too many presence subscriptions";
                self.answer(now, key, &error_frame(ErrorCode::TOO_MANY_SUBSCRIPTIONS, 0, text));
                return;
            }
            watching.push(user);
        }
        let view = self.shared.directory.watch(user, me, unix_ms(), self.messaging.grace_ms);
        let presence = Frame::Presence(Presence { user, status: view.status, last_seen: view.last_seen });
        self.post_frame(me, presence, Class::Ephemeral);
    }

    /// TYPING: forwarded to the other side's connected devices, at most once
    /// per `messaging.typing_interval_ms` per conversation (a stop always
    /// goes through).
    pub(super) fn typing(
        &mut self,
        now: Instant,
        key: usize,
        user: UserId,
        conversation: Conversation,
        active: bool,
    ) {
        let interval = self.messaging.typing_interval;
        let Some(conn) = self.conns.get_mut(key) else { return };
        let typing = &mut conn.extras().typing;
        match typing.iter_mut().find(|(c, _)| *c == conversation) {
            Some((_, last)) if active && now.saturating_duration_since(*last) < interval => {
                self.metrics.drops.inc(gateway_admin::DropReason::Typing);
                return;
            }
            Some((_, last)) => *last = now,
            None => {
                if typing.len() >= TYPING_SLOTS {
                    // Forget the conversation typed in longest ago.
                    if let Some(oldest) =
                        typing.iter().enumerate().min_by_key(|(_, (_, at))| *at).map(|(i, _)| i)
                    {
                        typing.swap_remove(oldest);
                    }
                }
                typing.push((conversation, now));
            }
        }
        match conversation {
            Conversation::Direct(peer) => {
                let notify = Frame::TypingNotify(TypingNotify {
                    conversation: Conversation::Direct(user),
                    user,
                    active,
                });
                self.post_to_user(peer, None, &notify, Class::Ephemeral);
            }
            Conversation::Group(group) => {
                // The members come from the store (a read, never a write).
                let request = Request::GroupGet { user, group };
                self.store_call(key, request, Pending::Typing { user, group, active });
            }
        }
    }

    /// A session of `user` closed; `last` when it was the user's last device:
    /// its watchers hear "offline" after the grace period unless it returns.
    pub(super) fn left(&mut self, now: Instant, user: UserId, left_at: u64) {
        self.presence_due.push_back((now + self.messaging.grace, user, left_at));
    }

    /// Announces "offline" for users whose grace period is over.
    pub(super) fn expire_presence(&mut self, now: Instant) {
        let mut watchers = std::mem::take(&mut self.watchers);
        while let Some(&(due, user, left_at)) = self.presence_due.front() {
            if due > now {
                break;
            }
            self.presence_due.pop_front();
            watchers.clear();
            if let Some(view) = self.shared.directory.expire_presence(user, left_at, &mut watchers) {
                let presence =
                    Frame::Presence(Presence { user, status: view.status, last_seen: view.last_seen });
                for watcher in watchers.drain(..) {
                    self.post_frame(watcher, presence.clone(), Class::Ephemeral);
                }
            }
        }
        self.watchers = watchers;
    }

    /// How long until the next presence expiry, if any is pending.
    pub(super) fn presence_timeout(&self, now: Instant) -> Option<Duration> {
        self.presence_due.front().map(|(due, _, _)| due.saturating_duration_since(now))
    }
}
