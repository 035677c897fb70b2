//! Groups, on the writer: create, add, remove, leave, set role. One meta
//! record per group (`G group` → version, name, members in join order), so
//! GroupGet is one point read even at 1024 members.
//!
//! Each change stores a system entry (sender_device 0, payload one encoded
//! GROUP_INFO frame with request 0) in the group's conversation, delivered to
//! every member device after the change (the acting device included) and to
//! the devices of removed or leaving members, who get nothing after it.
//! Every successful change bumps the version, even one that changes nothing
//! (adding only existing members): it is still answered with a system entry.
//! A group never stays without an admin: when the last admin leaves, is
//! removed or demoted, the oldest remaining member becomes admin.

use protocol::limits::MAX_GROUP_MEMBERS;
use protocol::{Conversation, DeviceId, Frame, GroupId, List, Member, Role, UserId};

use crate::api::{GroupChange, GroupChanged, GroupInfo, GroupOp, StoreError};
use crate::codec::{group_key, meta, ConvKey};
use crate::db::{Ks, Tx};
use crate::error::EngineError;
use crate::messages::{self, NewMessage};
use crate::records::{encode_group, load_group, next_counter};
use crate::{devices, group_cursors};

fn existing(tx: &mut Tx<'_>, group: GroupId) -> Result<GroupInfo, StoreError> {
    load_group(tx, group)?.ok_or(StoreError::UnknownGroup(group))
}

/// Checks that `user` is an admin of `info`.
fn require_admin(info: &GroupInfo, user: UserId) -> Result<(), StoreError> {
    match info.members.iter().find(|m| m.user == user) {
        None => Err(StoreError::NotAMember(info.group)),
        Some(m) if m.role != Role::Admin => Err(StoreError::NotAdmin(info.group)),
        Some(_) => Ok(()),
    }
}

/// Applies a group change.
pub(crate) fn change(tx: &mut Tx<'_>, req: GroupChange) -> Result<GroupChanged, StoreError> {
    let mut removed: Vec<UserId> = Vec::new();
    let mut joined: Vec<UserId> = Vec::new();
    let mut info = match req.op {
        GroupOp::Create { name, members } => {
            let group = GroupId(next_counter(tx, meta::NEXT_GROUP)?);
            let mut info = GroupInfo {
                group,
                version: 0,
                name,
                members: vec![Member { user: req.user, role: Role::Admin }],
            };
            add(&mut info, &members, &mut joined)?;
            joined.push(req.user);
            info
        }
        GroupOp::Add { group, members } => {
            let mut info = existing(tx, group)?;
            require_admin(&info, req.user)?;
            add(&mut info, &members, &mut joined)?;
            info
        }
        GroupOp::Remove { group, members } => {
            let mut info = existing(tx, group)?;
            require_admin(&info, req.user)?;
            info.members.retain(|m| {
                let gone = members.contains(&m.user);
                if gone {
                    removed.push(m.user);
                }
                !gone
            });
            info
        }
        GroupOp::Leave { group } => {
            let mut info = existing(tx, group)?;
            if !info.members.iter().any(|m| m.user == req.user) {
                return Err(StoreError::NotAMember(group));
            }
            info.members.retain(|m| m.user != req.user);
            removed.push(req.user);
            info
        }
        GroupOp::SetRole { group, member, role } => {
            let mut info = existing(tx, group)?;
            require_admin(&info, req.user)?;
            let target = info.members.iter_mut().find(|m| m.user == member);
            target.ok_or(StoreError::NotAMember(group))?.role = role;
            info
        }
    };
    info.version += 1;
    if !info.members.iter().any(|m| m.role == Role::Admin) {
        if let Some(oldest) = info.members.first_mut() {
            oldest.role = Role::Admin;
        }
    }
    tx.put(Ks::Meta, group_key(info.group), encode_group(&info));

    let encode =
        |e: protocol::EncodeError| StoreError::Engine(EngineError::Encode { message: e.to_string() });
    let list = List::from_items(&info.members).map_err(encode)?;
    let frame = Frame::GroupInfo(protocol::GroupInfo {
        request: 0,
        group: info.group,
        version: info.version,
        name: info.name.clone(),
        members: list,
    });
    let payload = frame.to_bytes().map_err(encode)?;
    let view = Conversation::Group(info.group);
    let mut targets = Vec::new();
    for user in info.members.iter().map(|m| m.user).chain(removed.iter().copied()) {
        targets.extend(devices::list(tx, user)?.into_iter().map(|d| (user, d, view)));
    }
    let conv = ConvKey::Group(info.group);
    let new =
        NewMessage { conv, sender: req.user, sender_device: DeviceId(0), payload, targets, dedup: None };
    let (message, deliveries) = messages::store(tx, new)?;
    // A new member starts with everything before its joining read and delivered.
    for user in joined {
        group_cursors::join(tx, user, info.group, message.conv_seq.0)?;
    }
    Ok(GroupChanged { info, message, deliveries })
}

/// Adds the users of `members` not yet in `info` as plain members.
fn add(info: &mut GroupInfo, members: &[UserId], joined: &mut Vec<UserId>) -> Result<(), StoreError> {
    for &user in members {
        if info.members.iter().any(|m| m.user == user) {
            continue;
        }
        if info.members.len() >= MAX_GROUP_MEMBERS {
            return Err(StoreError::GroupFull(info.group));
        }
        info.members.push(Member { user, role: Role::Member });
        joined.push(user);
    }
    Ok(())
}
