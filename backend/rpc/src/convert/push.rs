//! [`PushNote`] and connected devices ↔ the push service's proto messages.

use backend_push::PushNote;
use protocol::{Conversation, DeviceId, GroupId, Seq, UserId};

use super::{required, Bad};
use crate::pb::push as pb;

pub(crate) fn note_to_proto(note: PushNote) -> pb::PushNote {
    use pb::conversation::Kind;
    let kind = match note.conversation {
        Conversation::Direct(user) => Kind::Direct(user.0),
        Conversation::Group(group) => Kind::Group(group.0),
    };
    pb::PushNote {
        user: note.user.0,
        device: note.device.0,
        seq: note.seq.0,
        conversation: Some(pb::Conversation { kind: Some(kind) }),
        sender: note.sender.0,
    }
}

pub(crate) fn note_from_proto(note: pb::PushNote) -> Result<PushNote, Bad> {
    use pb::conversation::Kind;
    let conversation = match required(note.conversation, "PushNote.conversation")?.kind {
        Some(Kind::Direct(user)) => Conversation::Direct(UserId(user)),
        Some(Kind::Group(group)) => Conversation::Group(GroupId(group)),
        None => return Err(Bad::new("PushNote.conversation", "neither direct nor group")),
    };
    Ok(PushNote {
        user: UserId(note.user),
        device: DeviceId(note.device),
        seq: Seq(note.seq),
        conversation,
        sender: UserId(note.sender),
    })
}

pub(crate) fn device_to_proto(user: UserId, device: DeviceId) -> pb::Device {
    pb::Device { user: user.0, device: device.0 }
}

pub(crate) fn device_from_proto(device: pb::Device) -> (UserId, DeviceId) {
    (UserId(device.user), DeviceId(device.device))
}
