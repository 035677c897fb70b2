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
use protocol::{DeviceId, Frame, GroupId, List, Member, Role, UserId};

use crate::api::{GroupChange, GroupChanged, GroupInfo, GroupOp, StoreError};
use crate::codec::{group_key, meta, ConvKey};
use crate::db::{Ks, Tx};
use crate::error::EngineError;
use crate::expiry::Here;
use crate::fanout::{self, Enter, Recipient};
use crate::messages;
use crate::records::{conv_seq, encode_group, load_group, next_counter};

/// The group, and its members with their joining conv_seqs (1 where the
/// record keeps none).
fn existing(
    tx: &mut Tx<'_>,
    group: GroupId,
    before: &mut Vec<(UserId, u64)>,
) -> Result<GroupInfo, StoreError> {
    let (info, joins) = load_group(tx, group)?.ok_or(StoreError::UnknownGroup(group))?;
    let from = |i: usize| joins.get(i).copied().unwrap_or(1);
    before.extend(info.members.iter().enumerate().map(|(i, m)| (m.user, from(i))));
    Ok(info)
}

/// Checks that `user` is an admin of `info`.
fn require_admin(info: &GroupInfo, user: UserId) -> Result<(), StoreError> {
    match info.members.iter().find(|m| m.user == user) {
        None => Err(StoreError::NotAMember(info.group)),
        Some(m) if m.role != Role::Admin => Err(StoreError::NotAdmin(info.group)),
        Some(_) => Ok(()),
    }
}

/// Applies a group change. Its system entry's entries for users of other
/// shards are returned as Enter steps to run once this batch committed
/// (`fanout`; with one shard there are none).
pub(crate) fn change(
    tx: &mut Tx<'_>,
    req: GroupChange,
) -> Result<(GroupChanged, Vec<(usize, Enter)>), StoreError> {
    let mut removed: Vec<UserId> = Vec::new();
    let mut joined: Vec<UserId> = Vec::new();
    let mut before: Vec<(UserId, u64)> = Vec::new();
    let mut info = match req.op {
        GroupOp::Create { name, members } => {
            let group = GroupId(tx.layout().mint(next_counter(tx, meta::NEXT_GROUP)?, tx.shard()));
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
            let mut info = existing(tx, group, &mut before)?;
            require_admin(&info, req.user)?;
            add(&mut info, &members, &mut joined)?;
            info
        }
        GroupOp::Remove { group, members } => {
            let mut info = existing(tx, group, &mut before)?;
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
            let mut info = existing(tx, group, &mut before)?;
            if !info.members.iter().any(|m| m.user == req.user) {
                return Err(StoreError::NotAMember(group));
            }
            info.members.retain(|m| m.user != req.user);
            removed.push(req.user);
            info
        }
        GroupOp::SetRole { group, member, role } => {
            let mut info = existing(tx, group, &mut before)?;
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
    // The system entry's conv_seq is the group's next; a member's joining
    // is kept with several shards only (`fanout::Recipient::from`).
    let conv = ConvKey::Group(info.group);
    let seq = conv_seq(tx, conv)? + 1;
    let from = |user: UserId| before.iter().find(|(u, _)| *u == user).map_or(seq, |&(_, from)| from);
    let joins: Vec<u64> = if tx.layout().count() > 1 {
        info.members.iter().map(|m| from(m.user)).collect()
    } else {
        Vec::new()
    };
    tx.put(Ks::Meta, group_key(info.group), encode_group(&info, &joins));

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
    // Every member after the change, and the removed ones; a new member
    // starts with everything before its joining read and delivered.
    let audience: Vec<Recipient> = info
        .members
        .iter()
        .map(|m| m.user)
        .chain(removed.iter().copied())
        .map(|user| Recipient { user, from: from(user), joins: joined.contains(&user) })
        .collect();
    let layout = tx.layout();
    let remote = audience.iter().any(|r| !tx.is_local(layout.user(r.user)));
    let message = messages::append(tx, conv, (req.user, DeviceId(0)), payload, remote)?;
    let here = Here { dedup: None, log: true };
    let (entered, enters) = fanout::fan(tx, (&message, conv), &audience, here, false)?;
    Ok((GroupChanged { info, message, deliveries: entered.deliveries }, enters))
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
