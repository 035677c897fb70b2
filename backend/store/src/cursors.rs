//! Delivered and read cursors, the receipts their moves produce, and the
//! per-user receipt mailbox that answers `Cursors{user, since}`.
//!
//! A pair's cursor (user's cursor of a kind, up_to and at) is the note its
//! peer's mailbox keeps of it (`peer · Direct(user) · user · kind`): the
//! peer's sync reads it there. A read move also leaves a note in the
//! user's own mailbox, for its other devices. Mailbox notes are state, not
//! events, overwritten on every move: bounded by conversations × peers, and
//! `Cursors` is one prefix scan of the asking user's mailbox. (Pairs used to
//! have a meta key too, always written beside that note with the same
//! value, so databases written then read the same.)
//!
//! A group's cursors live in `group_cursors`: a move there is told live to
//! the authors it covers and to the user's other devices (the receipts
//! `advance` returns), and a sync works the rest out from the cursors.

use protocol::{ConvSeq, Conversation, DeviceId, ReceiptKind, Timestamp, UserId};

use crate::api::{ReadCursor, ReceiptNote, StoreError};
use crate::codec::{convlog_key, corrupt, meta, ConvKey, Dec, Enc, Key};
use crate::db::{Ks, Tx};
use crate::group_cursors;
use crate::records::{conv_seq, load_group};

/// Most conversation-log entries one group cursor move scans for senders
/// (bounded work per request): a longer jump tells only the senders of the
/// newest `GROUP_SCAN` messages it covers.
const GROUP_SCAN: u64 = 4096;

/// Where `user`'s cursor of `kind` in the pair with `peer` lives: the note
/// of it in the peer's mailbox (see the module doc).
fn pair_home(user: UserId, peer: UserId, kind: ReceiptKind) -> Key {
    Enc::default().user(peer).view(Conversation::Direct(user)).user(user).u8(kind as u8).key()
}

/// Where `user`'s cursor of `kind` in the pair with `peer` of another
/// shard lives: a key of its own shard, the note in the peer's mailbox
/// being sent there after each move.
fn remote_pair_home(user: UserId, peer: UserId, kind: ReceiptKind) -> Key {
    Enc::tag(meta::PAIR_CURSOR).user(user).user(peer).u8(kind as u8).key()
}

/// The pair cursor stored at `home` (0: none).
fn stored(tx: &mut Tx<'_>, home: (Ks, &Key)) -> Result<u64, StoreError> {
    Ok(stored_at(tx, home)?.0)
}

/// The pair cursor stored at `home` and when it moved there (0, 0: none).
fn stored_at(tx: &mut Tx<'_>, (ks, home): (Ks, &Key)) -> Result<(u64, u64), StoreError> {
    match tx.get(ks, home)? {
        Some(bytes) => {
            let mut dec = Dec::new(&bytes);
            Ok((dec.u64()?, dec.u64()?))
        }
        None => Ok((0, 0)),
    }
}

/// Moves `user`'s cursor in `view` (as `user` names it) to `up_to` if that is
/// higher, and returns the notes to send; `device` is the device that moved a
/// read cursor (its own copy is not sent back); `authored`: the move is a
/// Send's, to its author's own message.
pub(crate) fn advance(
    tx: &mut Tx<'_>,
    user: UserId,
    device: Option<DeviceId>,
    view: Conversation,
    kind: ReceiptKind,
    up_to: u64,
    authored: bool,
) -> Result<Vec<ReceiptNote>, StoreError> {
    let (conv, now) = (ConvKey::of(user, view), tx.now);
    let note = |to: UserId, conversation: Conversation, except: Option<DeviceId>| ReceiptNote {
        to,
        except,
        conversation,
        user,
        kind,
        up_to: ConvSeq(up_to),
        at: Timestamp(now),
    };
    let mut notes = Vec::new();
    match conv {
        ConvKey::Pair(a, b) => {
            let peer = if a == user { b } else { a };
            let peer_shard = tx.layout().user(peer);
            let home = if tx.is_local(peer_shard) {
                (Ks::Mailbox, pair_home(user, peer, kind))
            } else {
                (Ks::Meta, remote_pair_home(user, peer, kind))
            };
            let (current, moved_at) = stored_at(tx, (home.0, &home.1))?;
            if up_to < current || (up_to == current && (current == 0 || tx.is_local(peer_shard))) {
                return Ok(Vec::new());
            }
            if up_to == current {
                // Already there: its note to the peer's shard may have been
                // cut (a crash after this shard's commit, or a refused
                // step). Sent again; storing it twice changes nothing.
                if peer != user {
                    let again = ReceiptNote {
                        at: Timestamp(moved_at),
                        ..note(peer, Conversation::Direct(user), None)
                    };
                    tx.notes.push((peer_shard, again));
                }
                return Ok(Vec::new());
            }
            let value = Enc::default().u64(up_to).u64(now).done();
            if peer != user {
                notes.push(note(peer, Conversation::Direct(user), None));
            }
            if kind == ReceiptKind::Read {
                notes.push(note(user, view, device));
            }
            // The peer's note is the cursor's home (its copy, sent there,
            // if the peer is in another shard); the user's own read note is
            // for its other devices' syncs.
            for n in &notes {
                let key = mailbox_key(n);
                if n.to != user && !tx.is_local(peer_shard) {
                    tx.notes.push((peer_shard, *n));
                } else if (Ks::Mailbox, &key) != (home.0, &home.1) {
                    tx.put(Ks::Mailbox, key, value.clone());
                }
            }
            tx.put(home.0, home.1, value);
        }
        ConvKey::Group(group) => {
            let cursor = group_cursors::load(tx, user, group, kind)?;
            if up_to <= cursor.up_to {
                return Ok(Vec::new());
            }
            let old = cursor.up_to;
            group_cursors::advance(tx, (user, group, kind), cursor, up_to, authored);
            // Only the authors of the messages the move covers hear of it.
            let first = (old + 1).max(up_to.saturating_sub(GROUP_SCAN) + 1);
            let log = tx.layout().conv(conv);
            let cached =
                if tx.is_local(log) { senders_from_cache(tx, conv, user, first, up_to)? } else { None };
            let mut senders = match cached {
                Some(senders) => senders,
                None => {
                    let mut senders = Vec::new();
                    let (start, end) = (convlog_key(conv, first), convlog_key(conv, up_to + 1));
                    for (_, value) in tx.range_in(log, Ks::ConvLog, (&start, &end), usize::MAX)? {
                        add_sender(&mut senders, &value, user)?;
                    }
                    senders
                }
            };
            senders.sort_unstable();
            notes.extend(senders.into_iter().map(|s| note(s, view, None)));
            if kind == ReceiptKind::Read {
                notes.push(note(user, view, device));
            }
        }
    }
    Ok(notes)
}

/// Most entries a cursor move looks up one by one in the writer's cache
/// before it reads the range from the engine instead.
const CACHED_SCAN: u64 = 64;

/// The authors of group log entries `first..=last`, if every one of them is
/// known without reading the engine (this batch's writes or the writer's
/// cache: a member's ACK covers what a Send wrote moments ago); `None`
/// otherwise, and the caller scans the range.
fn senders_from_cache(
    tx: &Tx<'_>,
    conv: ConvKey,
    user: UserId,
    first: u64,
    last: u64,
) -> Result<Option<Vec<UserId>>, StoreError> {
    if last.saturating_sub(first) >= CACHED_SCAN {
        return Ok(None);
    }
    let mut senders = Vec::new();
    for seq in first..=last {
        match tx.known(Ks::ConvLog, &convlog_key(conv, seq)) {
            Some(Some(value)) => add_sender(&mut senders, value, user)?,
            // Deleted in this batch: not in the log.
            Some(None) => {}
            None => return Ok(None),
        }
    }
    Ok(Some(senders))
}

/// Adds the author of log entry `value` (`message_id sender sender_device`)
/// to `senders` unless it is `user`, a system entry (device 0) or already in.
fn add_sender(senders: &mut Vec<UserId>, value: &[u8], user: UserId) -> Result<(), StoreError> {
    let mut dec = Dec::new(value);
    dec.skip(8)?;
    let (sender, sender_device) = (UserId(dec.u64()?), dec.u32()?);
    if sender_device != 0 && sender != user && !senders.contains(&sender) {
        senders.push(sender);
    }
    Ok(())
}

/// READ: moves the reader's read cursor (clamped to the conversation's last
/// conv_seq; a group needs membership).
pub(crate) fn read(tx: &mut Tx<'_>, req: ReadCursor) -> Result<Vec<ReceiptNote>, StoreError> {
    if let Conversation::Group(group) = req.conversation {
        let (info, _) = load_group(tx, group)?.ok_or(StoreError::UnknownGroup(group))?;
        if !info.members.iter().any(|m| m.user == req.user) {
            return Err(StoreError::NotAMember(group));
        }
    }
    let last = conv_seq(tx, ConvKey::of(req.user, req.conversation))?;
    let up_to = req.up_to.0.min(last);
    advance(tx, req.user, Some(req.device), req.conversation, ReceiptKind::Read, up_to, false)
}

/// Stores notes another shard's cursor moves sent to this shard's
/// mailboxes; a note only moves up (one sent twice, or after a newer one,
/// changes nothing).
pub(crate) fn store_notes(tx: &mut Tx<'_>, notes: Vec<ReceiptNote>) -> Result<(), StoreError> {
    for note in notes {
        let key = mailbox_key(&note);
        if note.up_to.0 > stored(tx, (Ks::Mailbox, &key))? {
            tx.put(Ks::Mailbox, key, Enc::default().u64(note.up_to.0).u64(note.at.0).done());
        }
    }
    Ok(())
}

/// The mailbox key of `note`: `to · conversation as seen by to · cursor
/// owner · kind`.
pub(crate) fn mailbox_key(note: &ReceiptNote) -> Key {
    Enc::default().user(note.to).view(note.conversation).user(note.user).u8(note.kind as u8).key()
}

/// Decodes one mailbox pair into the note for its owner's `Cursors` answer.
/// A kind byte other than delivered or read is corruption, not a read.
pub(crate) fn mailbox_note(key: &[u8], value: &[u8]) -> Result<ReceiptNote, StoreError> {
    let mut k = Dec::new(key);
    let to = UserId(k.u64()?);
    let conversation = k.view()?;
    let user = UserId(k.u64()?);
    let kind = match k.u8()? {
        1 => ReceiptKind::Delivered,
        2 => ReceiptKind::Read,
        _ => return Err(corrupt("receipt kind")),
    };
    let mut v = Dec::new(value);
    Ok(ReceiptNote {
        to,
        except: None,
        conversation,
        user,
        kind,
        up_to: ConvSeq(v.u64()?),
        at: Timestamp(v.u64()?),
    })
}

#[cfg(test)]
mod tests {
    use protocol::GroupId;

    use super::*;

    /// Found by the `store_codec` fuzz target: any kind byte but 1 decoded as
    /// a read cursor, so a corrupt mailbox key was answered as a receipt.
    #[test]
    fn mailbox_keys_round_trip_and_an_unknown_kind_is_corruption() {
        let note = ReceiptNote {
            to: UserId(1),
            except: None,
            conversation: Conversation::Group(GroupId(5)),
            user: UserId(2),
            kind: ReceiptKind::Read,
            up_to: ConvSeq(7),
            at: Timestamp(9),
        };
        let value = Enc::default().u64(7).u64(9).done();
        let mut key = mailbox_key(&note);
        assert_eq!(mailbox_note(&key, &value).unwrap(), note);
        *key.last_mut().unwrap() = 3;
        assert!(matches!(mailbox_note(&key, &value), Err(StoreError::Engine(_))));
    }
}
