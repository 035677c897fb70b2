//! Meta records that several request modules read: persisted counters, a
//! conversation's last conv_seq, and group records.
//!
//! The lowest of the writer's request modules: `cursors`, `messages` and
//! `groups` build on it (in that order, each on the ones before), and it on
//! none of them, so their dependencies stay acyclic.

use protocol::limits::MAX_GROUP_MEMBERS;
use protocol::{GroupId, GroupName, Member, Role, UserId};

use crate::api::{GroupInfo, StoreError};
use crate::codec::{conv_seq_key, corrupt, group_key, ConvKey, Dec, Enc, Key};
use crate::db::{Ks, Tx};

/// Takes the next value of a persisted counter (first value 1).
pub(crate) fn next_counter(tx: &mut Tx<'_>, key: &[u8]) -> Result<u64, StoreError> {
    let last = match tx.get(Ks::Meta, key)? {
        Some(bytes) => Dec::new(&bytes).u64()?,
        None => 0,
    };
    let next = last + 1;
    tx.put(Ks::Meta, Key::from_slice(key), Enc::default().u64(next).done());
    Ok(next)
}

/// The last conv_seq of a conversation (0: none), from its shard.
pub(crate) fn conv_seq(tx: &mut Tx<'_>, conv: ConvKey) -> Result<u64, StoreError> {
    let shard = tx.layout().conv(conv);
    match tx.get_in(shard, Ks::Meta, &conv_seq_key(conv))? {
        Some(bytes) => Dec::new(&bytes).u64(),
        None => Ok(0),
    }
}

/// Reads a group record: the group, and each member's joining conv_seq
/// (kept with several shards only, `fanout::Recipient::from`; empty
/// otherwise).
pub(crate) fn decode_group(group: GroupId, bytes: &[u8]) -> Result<(GroupInfo, Vec<u64>), StoreError> {
    let mut dec = Dec::new(bytes);
    let version = dec.u64()?;
    let name = std::str::from_utf8(dec.bytes()?).map_err(|_| corrupt("group name"))?;
    let name = GroupName::new(name).map_err(|_| corrupt("group name"))?;
    let count = dec.u32()?;
    let mut members = Vec::with_capacity((count as usize).min(MAX_GROUP_MEMBERS));
    for _ in 0..count {
        let user = UserId(dec.u64()?);
        let role = if dec.u8()? == Role::Admin as u8 { Role::Admin } else { Role::Member };
        members.push(Member { user, role });
    }
    let mut joins = Vec::new();
    while !dec.is_empty() && joins.len() < members.len() {
        joins.push(dec.u64()?);
    }
    Ok((GroupInfo { group, version, name, members }, joins))
}

/// Writes a group record (what [`decode_group`] reads); `joins` is empty
/// or has one conv_seq per member.
pub(crate) fn encode_group(info: &GroupInfo, joins: &[u64]) -> Vec<u8> {
    let count = u32::try_from(info.members.len()).unwrap_or(u32::MAX);
    let enc = Enc::default().u64(info.version).bytes(info.name.as_str().as_bytes()).u32(count);
    let enc = info.members.iter().fold(enc, |enc, m| enc.user(m.user).u8(m.role as u8));
    joins.iter().fold(enc, |enc, &seq| enc.u64(seq)).done()
}

/// The group and its members' joining conv_seqs, if it exists (from the
/// group's shard).
pub(crate) fn load_group(
    tx: &mut Tx<'_>,
    group: GroupId,
) -> Result<Option<(GroupInfo, Vec<u64>)>, StoreError> {
    let shard = tx.layout().group(group);
    tx.get_in(shard, Ks::Meta, &group_key(group))?.map(|bytes| decode_group(group, &bytes)).transpose()
}
