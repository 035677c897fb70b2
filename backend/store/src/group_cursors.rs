//! Group cursors: where a member's delivered and read cursor in a group
//! live, and which of their moves a user's sync tells it of.
//!
//! A move of a member's cursor covers messages of some authors, who hear of
//! it live (`cursors::advance` returns their receipts). It is not copied
//! into their mailboxes: that was a key per covered author per move, half
//! the keys a message commits in a group where every member talks
//! (`RECEIPTS.md`). Each cursor is one key, ordered by group (`K group user
//! kind`), and the groups a user has been a member of are indexed (`J user
//! group`, written when it joins: its messages stay in a group it left, and
//! moves over them are still owed to it). A sync (`Cursors{user, since}`)
//! reads the cursors of each of those groups and works out which moved over
//! one of the user's messages after `since`, from two short histories their
//! values keep:
//!
//! - each cursor's last [`HISTORY`] values with their times: a cursor moves
//!   contiguously, so its moves after `since` are the one interval
//!   (its value at `since`, its value now];
//! - in the user's own read cursor, the conv_seqs of its last [`SENT`]
//!   messages in the group (a Send moves its author's read cursor anyway).
//!
//! A member's cursor is sent when one of the user's messages lies in that
//! interval. Past what the histories hold the answer errs towards sending: a
//! start older than the history counts as 0, and the user's messages older
//! than its list may lie anywhere below it. So a sync never misses a
//! receipt it owes, and may send one too many (receipts are state: the
//! client keeps the highest).
//!
//! Databases written before keep a group cursor as `C user conv kind` (its
//! value and time, no histories): read when the `K` key is missing, as a
//! cursor whose histories are unknown. The moves made then were copied into
//! mailboxes, which a sync still reads; their groups are found by the
//! legacy keys too.
//!
//! A cursor's times never go back (a move at an earlier clock reading keeps
//! the later time), so that `since` compares with them as with the notes'.

use std::collections::HashSet;

use protocol::{ConvSeq, Conversation, GroupId, ReceiptKind, Timestamp, UserId};

use crate::api::{ReceiptNote, StoreError};
use crate::codec::{corrupt, meta, prefix_end, ConvKey, Dec, Enc, Key};
use crate::db::{Db, Ks, Tx};
use crate::shards::Peers;

/// Earlier values a cursor keeps with their times.
pub(crate) const HISTORY: usize = 4;

/// Own messages a user's read cursor in a group keeps the conv_seqs of.
pub(crate) const SENT: usize = 8;

/// Flag: values older than the history were dropped, or never known.
const HISTORY_CUT: u8 = 1;
/// Flag: the user may have messages older than the `sent` list.
const SENT_CUT: u8 = 2;

/// A member's cursor in a group, with its histories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupCursor {
    /// Its value: a conv_seq.
    pub(crate) up_to: u64,
    /// When it last moved (ms).
    pub(crate) at: u64,
    /// Earlier values and their times, newest first.
    history: Vec<(u64, u64)>,
    /// Whether values older than `history` existed and were dropped.
    history_cut: bool,
    /// The conv_seqs of the user's last messages in the group, newest first
    /// (kept in its read cursor).
    sent: Vec<u64>,
    /// Whether the user may have messages older than `sent`.
    sent_cut: bool,
}

impl GroupCursor {
    /// A new member's cursor: at `up_to` from `now`, everything since known.
    fn start(up_to: u64, now: u64) -> Self {
        Self { up_to, at: now, history: Vec::new(), history_cut: false, sent: Vec::new(), sent_cut: false }
    }

    /// A cursor whose histories are unknown (a legacy key, or none).
    fn unknown(up_to: u64, at: u64) -> Self {
        Self { up_to, at, history: Vec::new(), history_cut: true, sent: Vec::new(), sent_cut: true }
    }

    fn encode(&self) -> Vec<u8> {
        let flags = if self.history_cut { HISTORY_CUT } else { 0 } | if self.sent_cut { SENT_CUT } else { 0 };
        // At most HISTORY and SENT entries (see `advance`): the counts fit a byte.
        let mut enc = Enc::default().u64(self.up_to).u64(self.at).u8(flags).u8(self.history.len() as u8);
        for &(value, at) in &self.history {
            enc = enc.u64(value).u64(at);
        }
        enc = enc.u8(self.sent.len() as u8);
        self.sent.iter().fold(enc, |enc, &seq| enc.u64(seq)).done()
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut dec = Dec::new(bytes);
        let (up_to, at, flags) = (dec.u64()?, dec.u64()?, dec.u8()?);
        let history_len = usize::from(dec.u8()?);
        if history_len > HISTORY {
            return Err(corrupt("group cursor history"));
        }
        let mut history = Vec::with_capacity(history_len);
        for _ in 0..history_len {
            history.push((dec.u64()?, dec.u64()?));
        }
        let sent_len = usize::from(dec.u8()?);
        if sent_len > SENT {
            return Err(corrupt("group cursor messages"));
        }
        let mut sent = Vec::with_capacity(sent_len);
        for _ in 0..sent_len {
            sent.push(dec.u64()?);
        }
        let (history_cut, sent_cut) = (flags & HISTORY_CUT != 0, flags & SENT_CUT != 0);
        Ok(Self { up_to, at, history, history_cut, sent, sent_cut })
    }

    /// Moves to `up_to` at `now`; `authored`: `up_to` is its user's own
    /// message (a Send moving its author's read cursor).
    fn advance(&mut self, up_to: u64, now: u64, authored: bool) {
        self.history.insert(0, (self.up_to, self.at));
        if self.history.len() > HISTORY {
            self.history.truncate(HISTORY);
            self.history_cut = true;
        }
        (self.up_to, self.at) = (up_to, now.max(self.at));
        if authored {
            self.sent.insert(0, up_to);
            if self.sent.len() > SENT {
                self.sent.truncate(SENT);
                self.sent_cut = true;
            }
        }
    }

    /// Its value at time `since`: where its moves after `since` start (0
    /// when that is older than its history).
    fn value_at(&self, since: u64) -> u64 {
        if self.at <= since {
            return self.up_to;
        }
        if let Some(&(value, _)) = self.history.iter().find(|&&(_, at)| at <= since) {
            return value;
        }
        if self.history_cut {
            0
        } else {
            // Every value is known: the cursor began after `since`, at the
            // oldest one.
            self.history.last().map_or(self.up_to, |&(value, _)| value)
        }
    }

    /// Whether one of the messages this (read) cursor's user wrote lies in
    /// `(start, end]`, as far as its list says: older messages than the
    /// list's may lie anywhere below its oldest.
    fn wrote_in(&self, start: u64, end: u64) -> bool {
        if self.sent.iter().any(|&seq| start < seq && seq <= end) {
            return true;
        }
        self.sent_cut && start < self.sent.last().map_or(end, |&oldest| oldest.min(end))
    }
}

fn cursor_key(group: GroupId, user: UserId, kind: ReceiptKind) -> Key {
    Enc::tag(meta::GROUP_CURSOR).u64(group.0).user(user).u8(kind as u8).key()
}

fn legacy_key(user: UserId, group: GroupId, kind: ReceiptKind) -> Key {
    Enc::tag(meta::CURSOR).user(user).conv(ConvKey::Group(group)).u8(kind as u8).key()
}

fn membership_key(user: UserId, group: GroupId) -> Key {
    Enc::tag(meta::MEMBERSHIP).user(user).u64(group.0).key()
}

/// `user`'s cursor of `kind` in `group`, as the batch sees it (one of
/// unknown history at 0 if it has none).
pub(crate) fn load(
    tx: &mut Tx<'_>,
    user: UserId,
    group: GroupId,
    kind: ReceiptKind,
) -> Result<GroupCursor, StoreError> {
    Ok(stored(tx, user, group, kind)?.unwrap_or_else(|| GroupCursor::unknown(0, 0)))
}

/// `user`'s cursor of `kind` in `group`, if it has one (a legacy one has
/// unknown histories).
fn stored(
    tx: &mut Tx<'_>,
    user: UserId,
    group: GroupId,
    kind: ReceiptKind,
) -> Result<Option<GroupCursor>, StoreError> {
    if let Some(bytes) = tx.get(Ks::Meta, &cursor_key(group, user, kind))? {
        return GroupCursor::decode(&bytes).map(Some);
    }
    match tx.get(Ks::Meta, &legacy_key(user, group, kind))? {
        Some(bytes) => {
            let mut dec = Dec::new(&bytes);
            Ok(Some(GroupCursor::unknown(dec.u64()?, dec.u64()?)))
        }
        None => Ok(None),
    }
}

/// Moves `cursor` (`user`'s of `kind` in `group`) to `up_to` and stores it;
/// `authored` as in [`GroupCursor::advance`].
pub(crate) fn advance(
    tx: &mut Tx<'_>,
    (user, group, kind): (UserId, GroupId, ReceiptKind),
    mut cursor: GroupCursor,
    up_to: u64,
    authored: bool,
) {
    cursor.advance(up_to, tx.now, authored);
    tx.put(Ks::Meta, cursor_key(group, user, kind), cursor.encode());
}

/// `user` joins `group` at conv_seq `at_seq` (its joining system entry):
/// both cursors start there, and the group enters its index. A member that
/// comes back keeps its cursors, moved up to there: their histories still
/// answer for the moves before, and its read cursor still lists its
/// messages from then.
pub(crate) fn join(tx: &mut Tx<'_>, user: UserId, group: GroupId, at_seq: u64) -> Result<(), StoreError> {
    for kind in [ReceiptKind::Delivered, ReceiptKind::Read] {
        let cursor = match stored(tx, user, group, kind)? {
            None => GroupCursor::start(at_seq, tx.now),
            Some(cursor) if cursor.up_to >= at_seq => continue,
            Some(mut cursor) => {
                cursor.advance(at_seq, tx.now, false);
                cursor
            }
        };
        tx.put(Ks::Meta, cursor_key(group, user, kind), cursor.encode());
    }
    tx.put(Ks::Meta, membership_key(user, group), Vec::new());
    Ok(())
}

/// The receipts a sync of `user` owes from its groups' cursors that moved
/// after `since` (see the module doc), appended to `notes`.
///
/// `db` is the user's shard; a group's cursors are each in its member's,
/// so with several shards each is scanned.
pub(crate) fn sync(
    (db, peers): (&Db, &Peers),
    user: UserId,
    since: u64,
    notes: &mut Vec<ReceiptNote>,
) -> Result<(), StoreError> {
    let shards = peers.layout.count();
    for group in groups_of(db, user)? {
        let prefix = Enc::tag(meta::GROUP_CURSOR).u64(group.0).done();
        let mut found = Vec::new();
        for shard in 0..shards {
            let scanned = if shards == 1 {
                db.scan(Ks::Meta, &prefix, &prefix_end(&prefix), usize::MAX)?
            } else {
                peers.db(shard)?.scan(Ks::Meta, &prefix, &prefix_end(&prefix), usize::MAX)?
            };
            found.extend(scanned);
        }
        let mut cursors = Vec::new();
        for (key, value) in found {
            let mut dec = Dec::new(&key);
            dec.skip(prefix.len())?;
            let member = UserId(dec.u64()?);
            let kind = match dec.u8()? {
                1 => ReceiptKind::Delivered,
                2 => ReceiptKind::Read,
                _ => return Err(corrupt("group cursor kind")),
            };
            cursors.push((member, kind, GroupCursor::decode(&value)?));
        }
        let unknown = GroupCursor::unknown(0, 0);
        let own = cursors
            .iter()
            .find(|(member, kind, _)| *member == user && *kind == ReceiptKind::Read)
            .map_or(&unknown, |(_, _, cursor)| cursor);
        for (member, kind, cursor) in &cursors {
            if cursor.at <= since {
                continue;
            }
            let owed = if *member == user {
                // The user's own read cursor, for its other devices.
                *kind == ReceiptKind::Read
            } else {
                own.wrote_in(cursor.value_at(since), cursor.up_to)
            };
            if owed {
                notes.push(ReceiptNote {
                    to: user,
                    except: None,
                    conversation: Conversation::Group(group),
                    user: *member,
                    kind: *kind,
                    up_to: ConvSeq(cursor.up_to),
                    at: Timestamp(cursor.at),
                });
            }
        }
    }
    Ok(())
}

/// The groups `user` has been a member of: its index, and the groups of its
/// legacy cursors.
fn groups_of(db: &Db, user: UserId) -> Result<Vec<GroupId>, StoreError> {
    let prefix = Enc::tag(meta::MEMBERSHIP).user(user).done();
    let mut groups = Vec::new();
    for (key, _) in db.scan(Ks::Meta, &prefix, &prefix_end(&prefix), usize::MAX)? {
        let mut dec = Dec::new(&key);
        dec.skip(prefix.len())?;
        groups.push(GroupId(dec.u64()?));
    }
    if !db.legacy_group_cursors {
        return Ok(groups);
    }
    let mut seen: HashSet<GroupId> = groups.iter().copied().collect();
    let prefix = Enc::tag(meta::CURSOR).user(user).done();
    for (key, _) in db.scan(Ks::Meta, &prefix, &prefix_end(&prefix), usize::MAX)? {
        let mut dec = Dec::new(&key);
        dec.skip(prefix.len())?;
        if let ConvKey::Group(group) = ConvKey::get(&mut dec)? {
            if seen.insert(group) {
                groups.push(group);
            }
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use fjall::PersistMode;

    use super::*;
    use crate::cache::MetaCache;
    use crate::shards::Layout;

    /// One shard, read through the database each test holds.
    fn single() -> Peers {
        Peers { layout: Layout::single(), engines: Vec::new() }
    }

    /// A database written before `K` keys: a member's cursor is a legacy
    /// `C` key (value and time), its group found through it (also once the
    /// user left: its messages are still there); its histories unknown, so
    /// any later move of another member is told to it.
    #[test]
    fn legacy_cursors_are_read_as_cursors_of_unknown_history() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut cache = MetaCache::new();
        let (g, old, gone, new) = (GroupId(3), UserId(7), UserId(9), UserId(8));
        let mut tx = Tx::new(&db, &mut cache, 1_000);
        for user in [old, gone] {
            let value = Enc::default().u64(5).u64(900).done();
            tx.put(Ks::Meta, legacy_key(user, g, ReceiptKind::Read), value);
        }
        tx.commit(PersistMode::Buffer).unwrap();
        // Legacy keys are looked for when they are there at open.
        assert!(!db.legacy_group_cursors);
        drop(db);
        let db = Db::open(dir.path()).unwrap();
        assert!(db.legacy_group_cursors);
        let mut cache = MetaCache::new();

        let mut tx = Tx::new(&db, &mut cache, 2_000);
        assert_eq!(load(&mut tx, old, g, ReceiptKind::Read).unwrap(), GroupCursor::unknown(5, 900));
        let cursor = load(&mut tx, new, g, ReceiptKind::Delivered).unwrap();
        assert_eq!(cursor, GroupCursor::unknown(0, 0), "no key at all");
        advance(&mut tx, (new, g, ReceiptKind::Delivered), cursor, 6, false);
        tx.commit(PersistMode::Buffer).unwrap();

        assert_eq!(groups_of(&db, old).unwrap(), [g]);
        assert_eq!(groups_of(&db, gone).unwrap(), [g], "a member once");
        assert_eq!(groups_of(&db, UserId(10)).unwrap(), [], "never a member");
        let mut notes = Vec::new();
        sync((&db, &single()), old, 1_500, &mut notes).unwrap();
        let told: Vec<_> = notes.iter().map(|n| (n.user, n.kind, n.up_to.0, n.at.0)).collect();
        assert_eq!(told, [(new, ReceiptKind::Delivered, 6, 2_000)]);
    }

    #[test]
    fn a_cursor_round_trips_and_keeps_short_histories() {
        let mut cursor = GroupCursor::start(3, 100);
        assert_eq!(GroupCursor::decode(&cursor.encode()).unwrap(), cursor);
        for (i, seq) in (4..22u64).enumerate() {
            cursor.advance(seq, 200 + i as u64, seq % 2 == 0);
        }
        let back = GroupCursor::decode(&cursor.encode()).unwrap();
        assert_eq!(back, cursor);
        assert_eq!(back.history.len(), HISTORY);
        assert!(back.history_cut && back.sent_cut);
        assert_eq!(back.sent, [20, 18, 16, 14, 12, 10, 8, 6], "the last eight, newest first");
        // A count past the bound is corruption, not an allocation.
        let mut bytes = cursor.encode();
        *bytes.get_mut(17).unwrap() = HISTORY as u8 + 1;
        assert!(GroupCursor::decode(&bytes).is_err());
    }

    #[test]
    fn the_value_at_a_time_comes_from_the_history_or_errs_low() {
        // Joined at conv_seq 5 at t=100; moved to 7 at 200, 9 at 300.
        let mut cursor = GroupCursor::start(5, 100);
        cursor.advance(7, 200, false);
        cursor.advance(9, 300, false);
        assert_eq!(cursor.value_at(350), 9, "no move since");
        assert_eq!(cursor.value_at(250), 7);
        assert_eq!(cursor.value_at(150), 5);
        assert_eq!(cursor.value_at(50), 5, "began after: from where it began");
        // A clock that stepped back does not take the cursor's time with it.
        let mut later = cursor.clone();
        later.advance(10, 250, false);
        assert_eq!((later.at, later.value_at(260)), (300, 7));
        for seq in 10..20 {
            cursor.advance(seq, 300 + seq, false);
        }
        assert_eq!(cursor.value_at(50), 0, "older than its history: 0");
        assert_eq!(GroupCursor::unknown(4, 90).value_at(50), 0);
    }

    #[test]
    fn a_users_messages_are_found_in_an_interval_or_assumed_below_its_list() {
        let mut own = GroupCursor::start(1, 100);
        own.advance(4, 110, true);
        own.advance(9, 120, true);
        assert!(own.wrote_in(3, 5));
        assert!(own.wrote_in(8, 9));
        assert!(!own.wrote_in(4, 8), "4 and 9 are outside (4, 8]");
        assert!(!own.wrote_in(0, 3), "a complete list: nothing below 4");
        for seq in 10..20 {
            own.advance(seq, 120 + seq, true);
        }
        assert!(own.wrote_in(0, 3), "older messages than the list's may be anywhere below it");
        assert!(!own.wrote_in(19, 30));
        let unknown = GroupCursor::unknown(0, 0);
        assert!(unknown.wrote_in(2, 3) && !unknown.wrote_in(3, 3));
    }
}
