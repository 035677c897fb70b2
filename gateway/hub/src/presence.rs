//! Presence and typing (SPEC §6.6): subscriptions per session, the grace
//! period before a user who left is announced offline, and the per
//! conversation throttle on TYPING. Neither is stored (visibility aside) and
//! both are the first output dropped under pressure (`Class::Ephemeral`).

use backend_store::Request;
use gateway_core::Class;
use protocol::limits::MAX_PRESENCE_SUBSCRIPTIONS;
use protocol::{Conversation, ErrorCode, Frame, Presence, TypingNotify, UserId};
use routing::{PresenceView, SessionRef};

use crate::frames::error_frame;
use crate::work::{FleetItem, Now, Pending, Remote};
use crate::Hub;

/// Conversations whose last TYPING time one session remembers.
const TYPING_SLOTS: usize = 8;

impl<C> Hub<C> {
    /// PRESENCE_SUBSCRIBE: answered at once with the current state.
    pub(crate) fn subscribe(&mut self, now: Now, key: usize, me: SessionRef, user: UserId) {
        let Some(slot) = self.slots.get_mut(key) else { return };
        let watching = &mut slot.extras().watching;
        if !watching.contains(&user) {
            if watching.len() >= MAX_PRESENCE_SUBSCRIPTIONS {
                let text = "too many presence subscriptions";
                self.reply(now, key, &error_frame(ErrorCode::TOO_MANY_SUBSCRIPTIONS, 0, text));
                return;
            }
            watching.push(user);
        }
        let view = self.directory.watch(user, me, now.unix_ms, self.config.grace_ms());
        if !self.in_fleet() {
            self.post_frame(me, presence(user, view), Class::Ephemeral);
            return;
        }
        // In a fleet this node knows the state only of users it holds; the
        // router asks the node that holds the others.
        let here = self.directory.presence(user, now.unix_ms, self.config.grace_ms()).is_some();
        if here {
            self.post_frame(me, presence(user, view), Class::Ephemeral);
        }
        self.post(Remote::Fleet(FleetItem::Watch { user, answer: (!here).then_some(me) }));
    }

    /// PRESENCE_UNSUBSCRIBE.
    pub(crate) fn unsubscribe(&mut self, key: usize, me: SessionRef, user: UserId) {
        self.unwatch(me, user);
        if let Some(slot) = self.slots.get_mut(key) {
            slot.extras().watching.retain(|u| *u != user);
        }
    }

    /// Session `me` stops watching `user` (unsubscribed or closed).
    pub(crate) fn unwatch(&mut self, me: SessionRef, user: UserId) {
        if self.directory.unwatch(user, me) && self.in_fleet() {
            self.post(Remote::Fleet(FleetItem::Unwatch(user)));
        }
    }

    /// `user`'s presence changed here: watchers on other nodes hear it too.
    pub(crate) fn presence_elsewhere(&mut self, user: UserId, frame: Frame, offline: bool) {
        if self.in_fleet() {
            self.post(Remote::Fleet(FleetItem::Presence { user, frame, offline }));
        }
    }

    /// TYPING: forwarded to the other side's connected devices, at most once
    /// per `typing_interval` per conversation (a stop always goes through).
    pub(crate) fn typing(
        &mut self,
        now: Now,
        key: usize,
        user: UserId,
        conversation: Conversation,
        active: bool,
    ) {
        let interval = self.config.typing_interval;
        let Some(slot) = self.slots.get_mut(key) else { return };
        let typing = &mut slot.extras().typing;
        match typing.iter_mut().find(|(c, _)| *c == conversation) {
            Some((_, last)) if active && now.at.saturating_duration_since(*last) < interval => {
                self.metrics.drops.inc(gateway_admin::DropReason::Typing);
                return;
            }
            Some((_, last)) => *last = now.at,
            None => {
                if typing.len() >= TYPING_SLOTS {
                    // Forget the conversation typed in longest ago.
                    if let Some(oldest) =
                        typing.iter().enumerate().min_by_key(|(_, (_, at))| *at).map(|(i, _)| i)
                    {
                        typing.swap_remove(oldest);
                    }
                }
                typing.push((conversation, now.at));
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
                let Some(me) = self.session_ref(key) else { return };
                self.store_call(
                    me,
                    Request::GroupGet { user, group },
                    Pending::Typing { user, group, active },
                );
            }
        }
    }

    /// The last device of `user` on this node left: its watchers hear
    /// "offline" after the grace period unless it returns.
    pub(crate) fn left(&mut self, now: Now, user: UserId) {
        self.presence_due.push_back((now.at + self.config.grace, user, now.unix_ms.max(1)));
    }

    /// Announces "offline" for users whose grace period is over.
    pub(crate) fn expire_presence(&mut self, now: Now) {
        let mut watchers = std::mem::take(&mut self.watchers);
        while let Some(&(due, user, left_at)) = self.presence_due.front() {
            if due > now.at {
                break;
            }
            self.presence_due.pop_front();
            watchers.clear();
            if let Some(view) = self.directory.expire_presence(user, left_at, &mut watchers) {
                let frame = presence(user, view);
                if self.in_fleet() {
                    // Maybe online on another node: the router finds out
                    // before anyone hears "offline".
                    watchers.clear();
                    self.presence_elsewhere(user, frame, true);
                    continue;
                }
                for watcher in watchers.drain(..) {
                    self.post_frame(watcher, frame.clone(), Class::Ephemeral);
                }
            }
        }
        self.watchers = watchers;
    }

    /// Tells the user's watchers it is online, once the store said it may be
    /// seen (its visibility, read at login).
    pub(crate) fn came_online(
        &mut self,
        now: Now,
        user: UserId,
        visibility: protocol::Visibility,
        came_online: bool,
    ) {
        let mut watchers = std::mem::take(&mut self.watchers);
        watchers.clear();
        self.directory.visibility_read(user, visibility, came_online, &mut watchers);
        let view = PresenceView {
            status: protocol::PresenceStatus::Online,
            last_seen: protocol::Timestamp(now.unix_ms),
        };
        let frame = presence(user, view);
        for watcher in watchers.drain(..) {
            self.post_frame(watcher, frame.clone(), Class::Ephemeral);
        }
        self.watchers = watchers;
        // Watchers elsewhere hear it only if the user may be seen.
        let visible = self
            .directory
            .presence(user, now.unix_ms, self.config.grace_ms())
            .is_some_and(|view| view.status == protocol::PresenceStatus::Online);
        if came_online && visible {
            self.presence_elsewhere(user, frame, false);
        }
    }
}

/// The PRESENCE frame telling what watchers may see of `user`.
pub(crate) fn presence(user: UserId, view: PresenceView) -> Frame {
    Frame::Presence(Presence { user, status: view.status, last_seen: view.last_seen })
}
