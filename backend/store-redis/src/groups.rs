//! Groups (REDIS.md, "Groups"): the record and the group's conversation live
//! in the group's slot. A change is read, applied here, and written back
//! with its system entry only if the group is still at the version read
//! (compare and set, retried). Each member carries the conv_seq of the
//! system entry that added it: the first of its membership, which the
//! order check of its slot starts from.

use backend_store::{GroupChange, GroupChanged, GroupInfo, GroupOp, Message, SendMessage, StoreError};
use protocol::limits::MAX_GROUP_MEMBERS;
use protocol::{
    ConvSeq, DeviceId, Frame, GroupId, GroupName, List, Member, MessageId, ReceiptKind, Role, Seq, Timestamp,
    UserId,
};

use crate::entry::Entry;
use crate::keys;
use crate::send::{durable_keys, Appended};
use crate::store::{corrupt, millis, now_ms, value, RedisStore};

/// Attempts of a change that another change keeps overtaking.
const WRITE_ATTEMPTS: usize = 32;

/// A group's record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    version: u64,
    name: GroupName,
    /// Members in join order, with the conv_seq that added each (0 for one
    /// joining in the change being written).
    members: Vec<(UserId, Role, u64)>,
}

impl Record {
    /// `user:role:join ...`; a join of 0 is written `*` (the script puts the
    /// system entry's conv_seq there).
    fn members_text(&self) -> String {
        let one = |&(user, role, join): &(UserId, Role, u64)| {
            let join = if join == 0 { "*".to_owned() } else { join.to_string() };
            format!("{}:{}:{join}", user.0, role as u8)
        };
        self.members.iter().map(one).collect::<Vec<_>>().join(" ")
    }

    fn info(&self, group: GroupId) -> GroupInfo {
        let members = self.members.iter().map(|&(user, role, _)| Member { user, role }).collect();
        GroupInfo { group, version: self.version, name: self.name.clone(), members }
    }
}

/// Parses `user:role:join ...`.
pub(crate) fn parse_members(text: &str) -> Option<Vec<(UserId, Role, u64)>> {
    text.split(' ')
        .filter(|one| !one.is_empty())
        .map(|one| {
            let mut parts = one.split(':');
            let user = UserId(parts.next()?.parse().ok()?);
            let role =
                if parts.next()? == (Role::Admin as u8).to_string() { Role::Admin } else { Role::Member };
            Some((user, role, parts.next()?.parse().ok()?))
        })
        .collect()
}

impl RedisStore {
    /// The group's record, if it exists.
    async fn record(&self, group: GroupId) -> Result<Option<Record>, StoreError> {
        let mut read = redis::cmd("HMGET");
        read.arg(keys::group_info(&group_prefix(group))).arg("v").arg("name").arg("mem");
        let fields: Vec<Option<String>> = self.query(&read).await?;
        let [Some(version), Some(name), Some(members)] = &fields[..] else { return Ok(None) };
        Ok(Some(Record {
            version: version.parse().map_err(|_| corrupt("group version"))?,
            name: GroupName::new(name).map_err(|_| corrupt("group name"))?,
            members: parse_members(members).ok_or_else(|| corrupt("group members"))?,
        }))
    }

    /// The group, if `user` is a member of it (GroupGet, READ, TYPING).
    pub(crate) async fn group_of_member(
        &self,
        group: GroupId,
        user: UserId,
    ) -> Result<GroupInfo, StoreError> {
        let record = self.record(group).await?.ok_or(StoreError::UnknownGroup(group))?;
        if !record.members.iter().any(|(member, _, _)| *member == user) {
            return Err(StoreError::NotAMember(group));
        }
        Ok(record.info(group))
    }

    /// Step 2 of a group send: the sender must be a member; every member
    /// gets the message, from the conv_seq of its joining on.
    pub(crate) async fn append_group(
        &self,
        req: &SendMessage,
        conv: &str,
        group: GroupId,
    ) -> Result<(Appended, Vec<(UserId, u64)>), StoreError> {
        let (appended, members) = self.append(req, conv, Some(group)).await?;
        let members = parse_members(&members).ok_or_else(|| corrupt("group members"))?;
        Ok((appended, members.into_iter().map(|(user, _, join)| (user, join)).collect()))
    }

    /// A group change: the new record and its system entry (a GROUP_INFO
    /// frame with request 0, from device 0), entered for every member
    /// after the change and for the members it removed.
    pub(crate) async fn group_change(&self, req: GroupChange) -> Result<GroupChanged, StoreError> {
        let group = match &req.op {
            GroupOp::Create { .. } => {
                let mut next = redis::cmd("INCR");
                next.arg("store:groups");
                GroupId(self.query(&next).await?)
            }
            GroupOp::Add { group, .. }
            | GroupOp::Remove { group, .. }
            | GroupOp::Leave { group }
            | GroupOp::SetRole { group, .. } => *group,
        };
        let conv = group_prefix(group);
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.record(group).await?;
            let (record, removed) = apply(group, current.clone(), &req)?;
            let frame = Frame::GroupInfo(protocol::GroupInfo {
                request: 0,
                group,
                version: record.version,
                name: record.name.clone(),
                members: List::from_items(&record.info(group).members).map_err(|e| encode_failed(&e))?,
            });
            let payload = frame.to_bytes().map_err(|e| encode_failed(&e))?;
            let now = now_ms();
            let id = self.next_id(now)?;
            let mut call = self.inner.scripts.group_write.prepare_invoke();
            call.key(keys::group_info(&conv))
                .key(keys::conv_seq(&conv))
                .arg(current.as_ref().map_or(0, |c| c.version))
                .arg(record.version)
                .arg(record.name.as_str())
                .arg(record.members_text())
                .arg(id)
                .arg(req.user.0)
                .arg(now)
                .arg(payload.as_ref())
                .arg(millis(self.inner.config.retention));
            let answer: Vec<redis::Value> = self.invoke(call).await?;
            let mut items = answer.into_iter();
            let written: u8 = items.next().map(value).transpose()?.unwrap_or(0);
            if written == 0 {
                continue;
            }
            let conv_seq: u64 =
                items.next().map(value).transpose()?.ok_or_else(|| corrupt("group answer"))?;
            let members: String =
                items.next().map(value).transpose()?.ok_or_else(|| corrupt("group answer"))?;
            let members = parse_members(&members).ok_or_else(|| corrupt("group members"))?;
            // A new member starts with everything before its joining read
            // and delivered (no receipt: nothing of theirs moved).
            let joined: Vec<UserId> =
                members.iter().filter(|(_, _, join)| *join == conv_seq).map(|(user, _, _)| *user).collect();
            for user in &joined {
                for kind in [ReceiptKind::Read, ReceiptKind::Delivered] {
                    self.raise(&keys::cursors(*user), &format!("{conv}|{}", kind as u8), conv_seq, now)
                        .await?;
                }
            }
            // On the replicas before any member's order check passes it.
            self.durable(&[keys::message(&conv, conv_seq)]).await?;
            let mut recipients: Vec<(UserId, u64)> =
                members.iter().map(|&(user, _, join)| (user, join)).collect();
            recipients.extend(removed);
            let entry = Entry {
                seq: Seq(0),
                id: MessageId(id),
                conv: conv.clone(),
                conv_seq: ConvSeq(conv_seq),
                view: protocol::Conversation::Group(group),
                sender: req.user,
                sender_device: DeviceId(0),
                time: Timestamp(now),
            };
            let deliveries = self.enter_all(&entry, &recipients, None).await?;
            self.durable(&durable_keys(None, &conv, conv_seq, &deliveries)).await?;
            let message = Message {
                id: MessageId(id),
                conv_seq: ConvSeq(conv_seq),
                sender: req.user,
                sender_device: DeviceId(0),
                server_time: Timestamp(now),
                payload,
            };
            let info = Record { members, ..record }.info(group);
            return Ok(GroupChanged { info, message, deliveries });
        }
        Err(StoreError::Overloaded)
    }
}

/// The change `req` makes to the group's `current` record: the new record
/// (version + 1) and the members it removes, each with the first conv_seq
/// of its membership (they get the system entry, nothing after it).
fn apply(
    group: GroupId,
    current: Option<Record>,
    req: &GroupChange,
) -> Result<(Record, Vec<(UserId, u64)>), StoreError> {
    let mut removed = Vec::new();
    let mut record = match (&req.op, current) {
        (GroupOp::Create { name, members }, _) => {
            let mut record =
                Record { version: 0, name: name.clone(), members: vec![(req.user, Role::Admin, 0)] };
            add(group, &mut record, members)?;
            record
        }
        (_, None) => return Err(StoreError::UnknownGroup(group)),
        (GroupOp::Add { members, .. }, Some(mut record)) => {
            require_admin(group, &record, req.user)?;
            add(group, &mut record, members)?;
            record
        }
        (GroupOp::Remove { members, .. }, Some(mut record)) => {
            require_admin(group, &record, req.user)?;
            record.members.retain(|&(user, _, join)| {
                let gone = members.contains(&user);
                if gone {
                    removed.push((user, join));
                }
                !gone
            });
            record
        }
        (GroupOp::Leave { .. }, Some(mut record)) => {
            let Some(&(_, _, join)) = record.members.iter().find(|(user, _, _)| *user == req.user) else {
                return Err(StoreError::NotAMember(group));
            };
            record.members.retain(|(user, _, _)| *user != req.user);
            removed.push((req.user, join));
            record
        }
        (GroupOp::SetRole { member, role, .. }, Some(mut record)) => {
            require_admin(group, &record, req.user)?;
            let target = record.members.iter_mut().find(|(user, _, _)| user == member);
            target.ok_or(StoreError::NotAMember(group))?.1 = *role;
            record
        }
    };
    record.version += 1;
    // A group never stays without an admin: the oldest member becomes one.
    if !record.members.iter().any(|(_, role, _)| *role == Role::Admin) {
        if let Some(oldest) = record.members.first_mut() {
            oldest.1 = Role::Admin;
        }
    }
    Ok((record, removed))
}

fn require_admin(group: GroupId, record: &Record, user: UserId) -> Result<(), StoreError> {
    match record.members.iter().find(|(member, _, _)| *member == user) {
        None => Err(StoreError::NotAMember(group)),
        Some((_, role, _)) if *role != Role::Admin => Err(StoreError::NotAdmin(group)),
        Some(_) => Ok(()),
    }
}

/// Adds the users of `members` not yet in the group, joining now.
fn add(group: GroupId, record: &mut Record, members: &[UserId]) -> Result<(), StoreError> {
    for &user in members {
        if record.members.iter().any(|(member, _, _)| *member == user) {
            continue;
        }
        if record.members.len() >= MAX_GROUP_MEMBERS {
            return Err(StoreError::GroupFull(group));
        }
        record.members.push((user, Role::Member, 0));
    }
    Ok(())
}

fn group_prefix(group: GroupId) -> String {
    keys::conversation(UserId(0), protocol::Conversation::Group(group))
}

fn encode_failed(err: &protocol::EncodeError) -> StoreError {
    StoreError::Engine(backend_store::EngineError::Encode { message: err.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_read_back_with_their_joins() {
        let record = Record {
            version: 3,
            name: GroupName::new("team").unwrap_or_else(|_| unreachable!()),
            members: vec![(UserId(1), Role::Admin, 4), (UserId(2), Role::Member, 0)],
        };
        let text = record.members_text();
        assert_eq!(text, "1:1:4 2:0:*");
        assert_eq!(
            parse_members(&text.replace('*', "9")),
            Some(vec![(UserId(1), Role::Admin, 4), (UserId(2), Role::Member, 9)])
        );
        assert_eq!(parse_members("1:1"), None);
    }
}
