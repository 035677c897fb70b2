//! Builders of the client frames besides SEND, ACK, SYNC_REQUEST and PING:
//! read cursors, typing, presence, groups and prekeys (SPEC §4.1, §6.4–6.7).
//!
//! Group and prekey requests get a `request` id from the session (never 0,
//! unique among outstanding requests); the answer ends them (see
//! `Session::handle_frame`). Limits are checked here, so a frame that is
//! built is a frame the server accepts as well formed.

use protocol::limits::MAX_PRESENCE_SUBSCRIPTIONS;
use protocol::{
    ConvSeq, Conversation, DeviceId, EncodeError, Frame, FrameKind, GroupAdd, GroupCreate, GroupGet, GroupId,
    GroupLeave, GroupName, GroupRemove, GroupSetRole, Key, List, MediaClass, MediaDownload, MediaId,
    MediaUpload, OneTimePrekey, PrekeyFetch, PrekeyUpload, PresenceSet, PresenceSubscribe,
    PresenceUnsubscribe, Read, Role, SignedPrekey, Typing, UserId, Visibility,
};

use super::Session;

impl Session {
    /// READ: this user has read `conversation` up to and including `up_to`
    /// (a `conv_seq`). The server keeps the highest value, and tells the
    /// other participants and this user's other devices (RECEIPT `read`).
    pub fn read(&self, conversation: Conversation, up_to: ConvSeq) -> Frame {
        Frame::Read(Read { conversation, up_to })
    }

    /// TYPING: this user started (`active`) or stopped typing in
    /// `conversation`. Ephemeral: the server throttles it per conversation
    /// and drops it first under pressure; receivers forget it after a few
    /// seconds, so repeat it while typing goes on.
    pub fn typing(&self, conversation: Conversation, active: bool) -> Frame {
        Frame::Typing(Typing { conversation, active })
    }

    /// PRESENCE_SUBSCRIBE: watch `user`'s presence. The server answers with
    /// the current [`Event::Presence`](crate::Event::Presence), then one per
    /// change. The session remembers the subscription and
    /// [`Session::resubscribe_presence`] repeats it on the next connection.
    /// Subscribing again to a watched user is allowed (the server answers
    /// with the current state); watching more than
    /// `MAX_PRESENCE_SUBSCRIPTIONS` users is refused with `TooManyItems`.
    pub fn presence_subscribe(&mut self, user: UserId) -> Result<Frame, EncodeError> {
        if !self.subscriptions.contains(&user) && self.subscriptions.len() >= MAX_PRESENCE_SUBSCRIPTIONS {
            return Err(EncodeError::TooManyItems {
                field: "presence subscriptions",
                count: self.subscriptions.len() + 1,
                max: MAX_PRESENCE_SUBSCRIPTIONS,
            });
        }
        self.subscriptions.insert(user);
        Ok(Frame::PresenceSubscribe(PresenceSubscribe { user }))
    }

    /// PRESENCE_UNSUBSCRIBE: stop watching `user` (and forget the
    /// subscription).
    pub fn presence_unsubscribe(&mut self, user: UserId) -> Frame {
        self.subscriptions.remove(&user);
        Frame::PresenceUnsubscribe(PresenceUnsubscribe { user })
    }

    /// PRESENCE_SET: who may see this user's presence (all its devices).
    pub fn presence_set(&self, visibility: Visibility) -> Frame {
        Frame::PresenceSet(PresenceSet { visibility })
    }

    /// PRESENCE_SUBSCRIBE frames for every watched user, in user order:
    /// transmit them after AUTH_OK on a new connection.
    pub fn resubscribe_presence(&self) -> impl Iterator<Item = Frame> + '_ {
        self.subscriptions.iter().map(|&user| Frame::PresenceSubscribe(PresenceSubscribe { user }))
    }

    /// Users whose presence this device watches, in user order.
    pub fn presence_subscriptions(&self) -> impl ExactSizeIterator<Item = UserId> + '_ {
        self.subscriptions.iter().copied()
    }

    /// GROUP_CREATE: a group named `name` with this user as admin and
    /// `members` (others than the creator). Answered by
    /// [`Event::GroupOk`](crate::Event::GroupOk) naming the new group. Fails
    /// on a name over `MAX_GROUP_NAME` bytes or more than
    /// `MAX_MEMBERS_PER_CHANGE` members.
    pub fn group_create(&mut self, name: &str, members: &[UserId]) -> Result<(u64, Frame), EncodeError> {
        let name = GroupName::new(name)?;
        let members = List::from_items(members)?;
        let request = self.allocate_request(FrameKind::GroupCreate);
        Ok((request, Frame::GroupCreate(GroupCreate { request, name, members })))
    }

    /// GROUP_ADD: add `members` to `group` (admins only). Fails on more than
    /// `MAX_MEMBERS_PER_CHANGE` members.
    pub fn group_add(&mut self, group: GroupId, members: &[UserId]) -> Result<(u64, Frame), EncodeError> {
        let members = List::from_items(members)?;
        let request = self.allocate_request(FrameKind::GroupAdd);
        Ok((request, Frame::GroupAdd(GroupAdd { request, group, members })))
    }

    /// GROUP_REMOVE: remove `members` from `group` (admins only). Fails on
    /// more than `MAX_MEMBERS_PER_CHANGE` members.
    pub fn group_remove(&mut self, group: GroupId, members: &[UserId]) -> Result<(u64, Frame), EncodeError> {
        let members = List::from_items(members)?;
        let request = self.allocate_request(FrameKind::GroupRemove);
        Ok((request, Frame::GroupRemove(GroupRemove { request, group, members })))
    }

    /// GROUP_LEAVE: leave `group`.
    pub fn group_leave(&mut self, group: GroupId) -> (u64, Frame) {
        let request = self.allocate_request(FrameKind::GroupLeave);
        (request, Frame::GroupLeave(GroupLeave { request, group }))
    }

    /// GROUP_SET_ROLE: give `user` the role `role` in `group` (admins only).
    pub fn group_set_role(&mut self, group: GroupId, user: UserId, role: Role) -> (u64, Frame) {
        let request = self.allocate_request(FrameKind::GroupSetRole);
        (request, Frame::GroupSetRole(GroupSetRole { request, group, user, role }))
    }

    /// GROUP_GET: ask for `group`'s name and members, answered by
    /// [`Event::GroupInfo`](crate::Event::GroupInfo).
    pub fn group_get(&mut self, group: GroupId) -> (u64, Frame) {
        let request = self.allocate_request(FrameKind::GroupGet);
        (request, Frame::GroupGet(GroupGet { request, group }))
    }

    /// PREKEY_UPLOAD: publish this device's identity key and signed prekey
    /// (replacing the previous ones) and add `one_time` prekeys to its stock.
    /// Answered by [`Event::PrekeyOk`](crate::Event::PrekeyOk). Fails on more
    /// than `MAX_ONE_TIME_PREKEYS` one-time prekeys (keys and signatures are
    /// bounded when built).
    pub fn prekey_upload(
        &mut self,
        identity_key: Key,
        signed_prekey: SignedPrekey,
        one_time: &[OneTimePrekey],
    ) -> Result<(u64, Frame), EncodeError> {
        let one_time = List::from_items(one_time)?;
        let request = self.allocate_request(FrameKind::PrekeyUpload);
        Ok((request, Frame::PrekeyUpload(PrekeyUpload { request, identity_key, signed_prekey, one_time })))
    }

    /// PREKEY_FETCH: bundles of `user`'s `device`, or of every device with
    /// `DeviceId(0)`; answered by
    /// [`Event::PrekeyBundles`](crate::Event::PrekeyBundles). Each returned
    /// bundle consumes one of the peer's one-time prekeys.
    pub fn prekey_fetch(&mut self, user: UserId, device: DeviceId) -> (u64, Frame) {
        let request = self.allocate_request(FrameKind::PrekeyFetch);
        (request, Frame::PrekeyFetch(PrekeyFetch { request, user, device }))
    }

    /// MEDIA_UPLOAD: a ticket to upload an encrypted blob of `size` bytes
    /// (`client_blob` is echoed); answered by
    /// [`Event::MediaUploadTicket`](crate::Event::MediaUploadTicket). Needs
    /// the MEDIA capability granted.
    pub fn media_upload(&mut self, client_blob: u64, size: u64, class: MediaClass) -> (u64, Frame) {
        let request = self.allocate_request(FrameKind::MediaUpload);
        (request, Frame::MediaUpload(MediaUpload { request, client_blob, size, class }))
    }

    /// MEDIA_DOWNLOAD: a ticket to download the blob `media_id` names;
    /// answered by [`Event::MediaDownloadTicket`](crate::Event::MediaDownloadTicket).
    pub fn media_download(&mut self, media_id: MediaId) -> (u64, Frame) {
        let request = self.allocate_request(FrameKind::MediaDownload);
        (request, Frame::MediaDownload(MediaDownload { request, media_id }))
    }

    /// The kind of the outstanding request `request`, if it is outstanding.
    pub fn outstanding_request(&self, request: u64) -> Option<FrameKind> {
        self.requests.get(&request).copied()
    }

    /// Requests sent on this connection and not answered yet: id and kind, in
    /// id order.
    pub fn outstanding_requests(&self) -> impl ExactSizeIterator<Item = (u64, FrameKind)> + '_ {
        self.requests.iter().map(|(&request, &kind)| (request, kind))
    }

    /// Moves the request id counter (tests of the wrap-around).
    #[cfg(test)]
    pub(crate) fn set_next_request_for_test(&mut self, next: u64) {
        self.next_request = next;
    }

    /// A fresh request id: never 0, never one still outstanding.
    fn allocate_request(&mut self, kind: FrameKind) -> u64 {
        loop {
            let request = self.next_request;
            self.next_request = request.wrapping_add(1).max(1);
            if let std::collections::btree_map::Entry::Vacant(entry) = self.requests.entry(request) {
                entry.insert(kind);
                return request;
            }
        }
    }
}
