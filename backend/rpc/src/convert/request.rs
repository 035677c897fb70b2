//! [`Request`] ↔ the proto request in a pipeline envelope. [`Call`] (the
//! envelope's oneof) names the request kind and carries its message.

use backend_store::{
    Ack, Connect, GroupChange, GroupOp, InboxQuery, PrekeyFetch, PrekeyUpload, ReadCursor, Request,
    SendMessage,
};
use protocol::{ConvSeq, DeviceId, GroupId, Seq, Timestamp, UserId};

use super::{
    blob_from_proto, conversation_from_proto, conversation_to_proto, group_name_from_proto,
    one_time_from_proto, one_time_to_proto, required, role_from_proto, role_to_proto,
    signed_prekey_from_proto, signed_prekey_to_proto, users_from_proto, users_to_proto,
    visibility_from_proto, visibility_to_proto, Bad,
};
use crate::pb::store as pb;

/// One store request in proto form: the `request` oneof of a pipeline
/// [`pb::Envelope`].
pub(crate) use crate::pb::store::envelope::Request as Call;

/// Which request a [`Call`] is, kept by the client to check that the reply
/// matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Connect,
    Send,
    Ack,
    Read,
    Group,
    PrekeyUpload,
    PrekeyFetch,
    SetVisibility,
    GetVisibility,
    Inbox,
    GroupGet,
    Cursors,
}

impl Kind {
    pub(crate) fn of(call: &Call) -> Self {
        match call {
            Call::Connect(_) => Self::Connect,
            Call::Send(_) => Self::Send,
            Call::Ack(_) => Self::Ack,
            Call::Read(_) => Self::Read,
            Call::Group(_) => Self::Group,
            Call::PrekeyUpload(_) => Self::PrekeyUpload,
            Call::PrekeyFetch(_) => Self::PrekeyFetch,
            Call::SetVisibility(_) => Self::SetVisibility,
            Call::GetVisibility(_) => Self::GetVisibility,
            Call::Inbox(_) => Self::Inbox,
            Call::GroupGet(_) => Self::GroupGet,
            Call::Cursors(_) => Self::Cursors,
        }
    }

    /// The oneof field's name, for an error message.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Send => "send",
            Self::Ack => "ack",
            Self::Read => "read",
            Self::Group => "group",
            Self::PrekeyUpload => "prekey_upload",
            Self::PrekeyFetch => "prekey_fetch",
            Self::SetVisibility => "set_visibility",
            Self::GetVisibility => "get_visibility",
            Self::Inbox => "inbox",
            Self::GroupGet => "group_get",
            Self::Cursors => "cursors",
        }
    }
}

pub(crate) fn to_proto(request: Request) -> Call {
    match request {
        Request::Connect(Connect { user, device }) => {
            Call::Connect(pb::ConnectRequest { user: user.0, device: device.0 })
        }
        Request::Send(send) => Call::Send(pb::SendRequest {
            user: send.user.0,
            device: send.device.0,
            client_id: send.client_id,
            to: Some(conversation_to_proto(send.to)),
            payload: send.payload,
        }),
        Request::Ack(Ack { user, device, up_to }) => {
            Call::Ack(pb::AckRequest { user: user.0, device: device.0, up_to: up_to.0 })
        }
        Request::Read(read) => Call::Read(pb::ReadRequest {
            user: read.user.0,
            device: read.device.0,
            conversation: Some(conversation_to_proto(read.conversation)),
            up_to: read.up_to.0,
        }),
        Request::Group(change) => Call::Group(group_to_proto(change)),
        Request::PrekeyUpload(upload) => Call::PrekeyUpload(pb::PrekeyUploadRequest {
            user: upload.user.0,
            device: upload.device.0,
            identity_key: upload.identity_key.into_bytes(),
            signed_prekey: Some(signed_prekey_to_proto(upload.signed_prekey)),
            one_time: upload.one_time.into_iter().map(one_time_to_proto).collect(),
        }),
        Request::PrekeyFetch(PrekeyFetch { user, device }) => {
            Call::PrekeyFetch(pb::PrekeyFetchRequest { user: user.0, device: device.0 })
        }
        Request::SetVisibility { user, visibility } => Call::SetVisibility(pb::SetVisibilityRequest {
            user: user.0,
            visibility: visibility_to_proto(visibility),
        }),
        Request::GetVisibility { user } => Call::GetVisibility(pb::GetVisibilityRequest { user: user.0 }),
        Request::Inbox(query) => Call::Inbox(pb::InboxRequest {
            user: query.user.0,
            device: query.device.0,
            after: query.after.0,
            limit: query.limit,
            max_bytes: query.max_bytes,
        }),
        Request::GroupGet { user, group } => {
            Call::GroupGet(pb::GroupGetRequest { user: user.0, group: group.0 })
        }
        Request::Cursors { user, since } => {
            Call::Cursors(pb::CursorsRequest { user: user.0, since: since.0 })
        }
    }
}

fn group_to_proto(change: GroupChange) -> pb::GroupRequest {
    use pb::group_request::Op;
    let op = match change.op {
        GroupOp::Create { name, members } => {
            Op::Create(pb::GroupCreate { name: name.as_str().to_owned(), members: users_to_proto(members) })
        }
        GroupOp::Add { group, members } => {
            Op::Add(pb::GroupMembers { group: group.0, members: users_to_proto(members) })
        }
        GroupOp::Remove { group, members } => {
            Op::Remove(pb::GroupMembers { group: group.0, members: users_to_proto(members) })
        }
        GroupOp::Leave { group } => Op::Leave(pb::GroupLeave { group: group.0 }),
        GroupOp::SetRole { group, member, role } => {
            Op::SetRole(pb::GroupSetRole { group: group.0, member: member.0, role: role_to_proto(role) })
        }
    };
    pb::GroupRequest { user: change.user.0, device: change.device.0, op: Some(op) }
}

pub(crate) fn from_proto(call: Call) -> Result<Request, Bad> {
    Ok(match call {
        Call::Connect(c) => Request::Connect(Connect { user: UserId(c.user), device: DeviceId(c.device) }),
        Call::Send(s) => Request::Send(SendMessage {
            user: UserId(s.user),
            device: DeviceId(s.device),
            client_id: s.client_id,
            to: conversation_from_proto(s.to, "SendRequest.to")?,
            payload: s.payload,
        }),
        Call::Ack(a) => {
            Request::Ack(Ack { user: UserId(a.user), device: DeviceId(a.device), up_to: Seq(a.up_to) })
        }
        Call::Read(r) => Request::Read(ReadCursor {
            user: UserId(r.user),
            device: DeviceId(r.device),
            conversation: conversation_from_proto(r.conversation, "ReadRequest.conversation")?,
            up_to: ConvSeq(r.up_to),
        }),
        Call::Group(g) => Request::Group(group_from_proto(g)?),
        Call::PrekeyUpload(u) => Request::PrekeyUpload(PrekeyUpload {
            user: UserId(u.user),
            device: DeviceId(u.device),
            identity_key: blob_from_proto(u.identity_key, "PrekeyUploadRequest.identity_key")?,
            signed_prekey: signed_prekey_from_proto(u.signed_prekey, "PrekeyUploadRequest.signed_prekey")?,
            one_time: u.one_time.into_iter().map(one_time_from_proto).collect::<Result<_, _>>()?,
        }),
        Call::PrekeyFetch(f) => {
            Request::PrekeyFetch(PrekeyFetch { user: UserId(f.user), device: DeviceId(f.device) })
        }
        Call::SetVisibility(v) => Request::SetVisibility {
            user: UserId(v.user),
            visibility: visibility_from_proto(v.visibility, "SetVisibilityRequest.visibility")?,
        },
        Call::GetVisibility(v) => Request::GetVisibility { user: UserId(v.user) },
        Call::Inbox(i) => Request::Inbox(InboxQuery {
            user: UserId(i.user),
            device: DeviceId(i.device),
            after: Seq(i.after),
            limit: i.limit,
            max_bytes: i.max_bytes,
        }),
        Call::GroupGet(g) => Request::GroupGet { user: UserId(g.user), group: GroupId(g.group) },
        Call::Cursors(c) => Request::Cursors { user: UserId(c.user), since: Timestamp(c.since) },
    })
}

fn group_from_proto(change: pb::GroupRequest) -> Result<GroupChange, Bad> {
    use pb::group_request::Op;
    let op = match required(change.op, "GroupRequest.op")? {
        Op::Create(c) => GroupOp::Create {
            name: group_name_from_proto(&c.name, "GroupCreate.name")?,
            members: users_from_proto(c.members),
        },
        Op::Add(a) => GroupOp::Add { group: GroupId(a.group), members: users_from_proto(a.members) },
        Op::Remove(r) => GroupOp::Remove { group: GroupId(r.group), members: users_from_proto(r.members) },
        Op::Leave(l) => GroupOp::Leave { group: GroupId(l.group) },
        Op::SetRole(s) => GroupOp::SetRole {
            group: GroupId(s.group),
            member: UserId(s.member),
            role: role_from_proto(s.role, "GroupSetRole.role")?,
        },
    };
    Ok(GroupChange { user: UserId(change.user), device: DeviceId(change.device), op })
}
