//! Conversions between the protocol's native types and the generated protobuf
//! messages, both ways and total: every native value has a proto form, and a
//! proto value that has no native form (a missing required field, an unknown
//! enum value, an over-long key) is a [`Bad`] naming the field, never a panic.
//!
//! This file holds the shared records; [`fault`], [`request`], [`response`],
//! [`pipeline`] and [`push`] build on it.

pub(crate) mod fault;
pub(crate) mod pipeline;
pub(crate) mod push;
pub(crate) mod request;
pub(crate) mod response;

#[cfg(test)]
mod tests;

use backend_store::{Delivery, Message, ReceiptNote};
use protocol::{
    Blob, ConvSeq, Conversation, Deliver, DeviceBundle, DeviceId, GroupId, GroupName, Member, MessageId,
    OneTimePrekey, ReceiptKind, Role, Seq, SignedPrekey, Timestamp, UserId, Visibility,
};

use crate::pb::store as pb;

/// A proto value with no native form: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {why}")]
pub(crate) struct Bad {
    /// The proto field (`message.field`).
    pub(crate) field: &'static str,
    /// What is wrong with it.
    pub(crate) why: String,
}

impl Bad {
    pub(crate) fn missing(field: &'static str) -> Self {
        Self { field, why: "required, absent".into() }
    }

    pub(crate) fn new(field: &'static str, why: impl Into<String>) -> Self {
        Self { field, why: why.into() }
    }
}

/// `Some` or the required-field error.
pub(crate) fn required<T>(value: Option<T>, field: &'static str) -> Result<T, Bad> {
    value.ok_or_else(|| Bad::missing(field))
}

pub(crate) fn conversation_to_proto(conversation: Conversation) -> pb::Conversation {
    use pb::conversation::Kind;
    let kind = match conversation {
        Conversation::Direct(user) => Kind::Direct(user.0),
        Conversation::Group(group) => Kind::Group(group.0),
    };
    pb::Conversation { kind: Some(kind) }
}

pub(crate) fn conversation_from_proto(
    conversation: Option<pb::Conversation>,
    field: &'static str,
) -> Result<Conversation, Bad> {
    use pb::conversation::Kind;
    match required(conversation, field)?.kind {
        Some(Kind::Direct(user)) => Ok(Conversation::Direct(UserId(user))),
        Some(Kind::Group(group)) => Ok(Conversation::Group(GroupId(group))),
        None => Err(Bad::new(field, "neither direct nor group")),
    }
}

pub(crate) fn visibility_to_proto(visibility: Visibility) -> i32 {
    let value = match visibility {
        Visibility::Nobody => pb::Visibility::Nobody,
        Visibility::Everyone => pb::Visibility::Everyone,
    };
    value as i32
}

pub(crate) fn visibility_from_proto(value: i32, field: &'static str) -> Result<Visibility, Bad> {
    match pb::Visibility::try_from(value) {
        Ok(pb::Visibility::Nobody) => Ok(Visibility::Nobody),
        Ok(pb::Visibility::Everyone) => Ok(Visibility::Everyone),
        Ok(pb::Visibility::Unspecified) | Err(_) => Err(Bad::new(field, format!("bad visibility {value}"))),
    }
}

pub(crate) fn receipt_kind_to_proto(kind: ReceiptKind) -> i32 {
    let value = match kind {
        ReceiptKind::Delivered => pb::ReceiptKind::Delivered,
        ReceiptKind::Read => pb::ReceiptKind::Read,
    };
    value as i32
}

pub(crate) fn receipt_kind_from_proto(value: i32, field: &'static str) -> Result<ReceiptKind, Bad> {
    match pb::ReceiptKind::try_from(value) {
        Ok(pb::ReceiptKind::Delivered) => Ok(ReceiptKind::Delivered),
        Ok(pb::ReceiptKind::Read) => Ok(ReceiptKind::Read),
        Ok(pb::ReceiptKind::Unspecified) | Err(_) => {
            Err(Bad::new(field, format!("bad receipt kind {value}")))
        }
    }
}

pub(crate) fn role_to_proto(role: Role) -> i32 {
    let value = match role {
        Role::Member => pb::Role::Member,
        Role::Admin => pb::Role::Admin,
    };
    value as i32
}

pub(crate) fn role_from_proto(value: i32, field: &'static str) -> Result<Role, Bad> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Member) => Ok(Role::Member),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Unspecified) | Err(_) => Err(Bad::new(field, format!("bad role {value}"))),
    }
}

/// A bounded byte field ([`protocol::Key`], [`protocol::Payload`], ...).
pub(crate) fn blob_from_proto<const MAX: usize>(
    bytes: bytes::Bytes,
    field: &'static str,
) -> Result<Blob<MAX>, Bad> {
    let len = bytes.len();
    Blob::new(bytes).map_err(|_| Bad::new(field, format!("{len} bytes, at most {MAX}")))
}

pub(crate) fn group_name_from_proto(name: &str, field: &'static str) -> Result<GroupName, Bad> {
    GroupName::new(name).map_err(|e| Bad::new(field, e.to_string()))
}

pub(crate) fn users_from_proto(users: Vec<u64>) -> Vec<UserId> {
    users.into_iter().map(UserId).collect()
}

pub(crate) fn users_to_proto(users: Vec<UserId>) -> Vec<u64> {
    users.into_iter().map(|user| user.0).collect()
}

pub(crate) fn message_to_proto(message: Message) -> pb::Message {
    pb::Message {
        id: message.id.0,
        conv_seq: message.conv_seq.0,
        sender: message.sender.0,
        sender_device: message.sender_device.0,
        server_time: message.server_time.0,
        payload: message.payload,
    }
}

pub(crate) fn message_from_proto(message: Option<pb::Message>, field: &'static str) -> Result<Message, Bad> {
    let message = required(message, field)?;
    Ok(Message {
        id: MessageId(message.id),
        conv_seq: ConvSeq(message.conv_seq),
        sender: UserId(message.sender),
        sender_device: DeviceId(message.sender_device),
        server_time: Timestamp(message.server_time),
        payload: message.payload,
    })
}

pub(crate) fn delivery_to_proto(delivery: Delivery) -> pb::Delivery {
    pb::Delivery {
        user: delivery.user.0,
        device: delivery.device.0,
        seq: delivery.seq.0,
        conversation: Some(conversation_to_proto(delivery.conversation)),
    }
}

pub(crate) fn delivery_from_proto(delivery: pb::Delivery) -> Result<Delivery, Bad> {
    Ok(Delivery {
        user: UserId(delivery.user),
        device: DeviceId(delivery.device),
        seq: Seq(delivery.seq),
        conversation: conversation_from_proto(delivery.conversation, "Delivery.conversation")?,
    })
}

pub(crate) fn receipt_to_proto(note: ReceiptNote) -> pb::ReceiptNote {
    pb::ReceiptNote {
        to: note.to.0,
        except: note.except.map(|device| device.0),
        conversation: Some(conversation_to_proto(note.conversation)),
        user: note.user.0,
        kind: receipt_kind_to_proto(note.kind),
        up_to: note.up_to.0,
        at: note.at.0,
    }
}

pub(crate) fn receipt_from_proto(note: pb::ReceiptNote) -> Result<ReceiptNote, Bad> {
    Ok(ReceiptNote {
        to: UserId(note.to),
        except: note.except.map(DeviceId),
        conversation: conversation_from_proto(note.conversation, "ReceiptNote.conversation")?,
        user: UserId(note.user),
        kind: receipt_kind_from_proto(note.kind, "ReceiptNote.kind")?,
        up_to: ConvSeq(note.up_to),
        at: Timestamp(note.at),
    })
}

pub(crate) fn receipts_to_proto(notes: Vec<ReceiptNote>) -> Vec<pb::ReceiptNote> {
    notes.into_iter().map(receipt_to_proto).collect()
}

pub(crate) fn receipts_from_proto(notes: Vec<pb::ReceiptNote>) -> Result<Vec<ReceiptNote>, Bad> {
    notes.into_iter().map(receipt_from_proto).collect()
}

pub(crate) fn deliver_to_proto(deliver: Deliver) -> pb::Deliver {
    pb::Deliver {
        seq: deliver.seq.0,
        message_id: deliver.message_id.0,
        conversation: Some(conversation_to_proto(deliver.conversation)),
        conv_seq: deliver.conv_seq.0,
        sender: deliver.sender.0,
        sender_device: deliver.sender_device.0,
        server_time: deliver.server_time.0,
        payload: deliver.payload.into_bytes(),
    }
}

pub(crate) fn deliver_from_proto(deliver: pb::Deliver) -> Result<Deliver, Bad> {
    Ok(Deliver {
        seq: Seq(deliver.seq),
        message_id: MessageId(deliver.message_id),
        conversation: conversation_from_proto(deliver.conversation, "Deliver.conversation")?,
        conv_seq: ConvSeq(deliver.conv_seq),
        sender: UserId(deliver.sender),
        sender_device: DeviceId(deliver.sender_device),
        server_time: Timestamp(deliver.server_time),
        payload: blob_from_proto(deliver.payload, "Deliver.payload")?,
    })
}

pub(crate) fn member_to_proto(member: Member) -> pb::Member {
    pb::Member { user: member.user.0, role: role_to_proto(member.role) }
}

pub(crate) fn member_from_proto(member: pb::Member) -> Result<Member, Bad> {
    Ok(Member { user: UserId(member.user), role: role_from_proto(member.role, "Member.role")? })
}

pub(crate) fn signed_prekey_to_proto(prekey: SignedPrekey) -> pb::SignedPrekey {
    pb::SignedPrekey { id: prekey.id, key: prekey.key.into_bytes(), signature: prekey.signature.into_bytes() }
}

pub(crate) fn signed_prekey_from_proto(
    prekey: Option<pb::SignedPrekey>,
    field: &'static str,
) -> Result<SignedPrekey, Bad> {
    let prekey = required(prekey, field)?;
    Ok(SignedPrekey {
        id: prekey.id,
        key: blob_from_proto(prekey.key, "SignedPrekey.key")?,
        signature: blob_from_proto(prekey.signature, "SignedPrekey.signature")?,
    })
}

pub(crate) fn one_time_to_proto(prekey: OneTimePrekey) -> pb::OneTimePrekey {
    pb::OneTimePrekey { id: prekey.id, key: prekey.key.into_bytes() }
}

pub(crate) fn one_time_from_proto(prekey: pb::OneTimePrekey) -> Result<OneTimePrekey, Bad> {
    Ok(OneTimePrekey { id: prekey.id, key: blob_from_proto(prekey.key, "OneTimePrekey.key")? })
}

pub(crate) fn bundle_to_proto(bundle: DeviceBundle) -> pb::DeviceBundle {
    pb::DeviceBundle {
        device: bundle.device.0,
        identity_key: bundle.identity_key.into_bytes(),
        signed_prekey: Some(signed_prekey_to_proto(bundle.signed_prekey)),
        one_time: bundle.one_time.map(one_time_to_proto),
    }
}

pub(crate) fn bundle_from_proto(bundle: pb::DeviceBundle) -> Result<DeviceBundle, Bad> {
    Ok(DeviceBundle {
        device: DeviceId(bundle.device),
        identity_key: blob_from_proto(bundle.identity_key, "DeviceBundle.identity_key")?,
        signed_prekey: signed_prekey_from_proto(bundle.signed_prekey, "DeviceBundle.signed_prekey")?,
        one_time: bundle.one_time.map(one_time_from_proto).transpose()?,
    })
}
