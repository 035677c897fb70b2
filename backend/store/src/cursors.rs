//! Delivered and read cursors, the receipts their moves produce, and the
//! per-user receipt mailbox that answers `Cursors{user, since}`.
//!
//! Each note produced is written to the mailbox of the user it goes to
//! (`to · conversation as seen by to · cursor owner · kind` → up_to, at),
//! overwritten on every move: state, not events, bounded by conversations ×
//! peers. `Cursors` is then one prefix scan of the asking user's mailbox.
//!
//! A user's own cursor (up_to, at) lives in meta (`C user conv kind`) for a
//! group. For a pair it is the note its peer's mailbox keeps of it
//! (`peer · Direct(user) · user · kind`), which every move writes anyway:
//! one key per move instead of two. (Pairs used to have a meta key too,
//! always written beside that note with the same value, so databases
//! written then read the same.)

use protocol::{ConvSeq, Conversation, DeviceId, ReceiptKind, Timestamp, UserId};

use crate::api::{ReadCursor, ReceiptNote, StoreError};
use crate::codec::{convlog_key, corrupt, meta, ConvKey, Dec, Enc, Key};
use crate::db::{Ks, Tx};
use crate::records::{conv_seq, load_group};

/// Most conversation-log entries one group cursor move scans for senders
/// (bounded work per request): a longer jump tells only the senders of the
/// newest `GROUP_SCAN` messages it covers.
const GROUP_SCAN: u64 = 4096;

/// Where `user`'s cursor of `kind` in `conv` lives (see the module doc).
fn home(user: UserId, conv: ConvKey, kind: ReceiptKind) -> (Ks, Key) {
    match conv {
        ConvKey::Pair(a, b) => {
            let peer = if a == user { b } else { a };
            let key = Enc::default().user(peer).view(Conversation::Direct(user)).user(user).u8(kind as u8);
            (Ks::Mailbox, key.key())
        }
        ConvKey::Group(_) => (Ks::Meta, Enc::tag(meta::CURSOR).user(user).conv(conv).u8(kind as u8).key()),
    }
}

/// The cursor stored at `home` (0: none).
fn stored(tx: &mut Tx<'_>, (ks, key): &(Ks, Key)) -> Result<u64, StoreError> {
    match tx.get(*ks, key)? {
        Some(bytes) => Dec::new(&bytes).u64(),
        None => Ok(0),
    }
}

/// Sets the user's cursor without telling anyone (a new group member's start).
pub(crate) fn set(tx: &mut Tx<'_>, user: UserId, conv: ConvKey, kind: ReceiptKind, up_to: u64) {
    let (ks, key) = home(user, conv, kind);
    let now = tx.now;
    tx.put(ks, key, Enc::default().u64(up_to).u64(now).done());
}

/// Moves `user`'s cursor in `view` (as `user` names it) to `up_to` if that is
/// higher, and returns the notes to send; `device` is the device that moved a
/// read cursor (its own copy is not sent back).
pub(crate) fn advance(
    tx: &mut Tx<'_>,
    user: UserId,
    device: Option<DeviceId>,
    view: Conversation,
    kind: ReceiptKind,
    up_to: u64,
) -> Result<Vec<ReceiptNote>, StoreError> {
    let conv = ConvKey::of(user, view);
    let home = home(user, conv, kind);
    let old = stored(tx, &home)?;
    if up_to <= old {
        return Ok(Vec::new());
    }
    let value = Enc::default().u64(up_to).u64(tx.now).done();
    tx.put(home.0, home.1.clone(), value.clone());
    let note = |to: UserId, conversation: Conversation, except: Option<DeviceId>| ReceiptNote {
        to,
        except,
        conversation,
        user,
        kind,
        up_to: ConvSeq(up_to),
        at: Timestamp(tx.now),
    };
    let mut notes = Vec::new();
    match conv {
        ConvKey::Pair(..) => {
            if let Conversation::Direct(peer) = view {
                if peer != user {
                    notes.push(note(peer, Conversation::Direct(user), None));
                }
            }
        }
        ConvKey::Group(_) => {
            // Only the authors of the messages the move covers hear of it.
            let first = (old + 1).max(up_to.saturating_sub(GROUP_SCAN) + 1);
            let mut senders = match senders_from_cache(tx, conv, user, first, up_to)? {
                Some(senders) => senders,
                None => {
                    let mut senders = Vec::new();
                    let (start, end) = (convlog_key(conv, first), convlog_key(conv, up_to + 1));
                    for (_, value) in tx.range(Ks::ConvLog, &start, &end, usize::MAX)? {
                        add_sender(&mut senders, &value, user)?;
                    }
                    senders
                }
            };
            senders.sort_unstable();
            notes.extend(senders.into_iter().map(|s| note(s, view, None)));
        }
    }
    if kind == ReceiptKind::Read {
        notes.push(note(user, view, device));
    }
    for n in &notes {
        let key = mailbox_key(n);
        // The peer's note of a pair cursor is its home, written above.
        if (Ks::Mailbox, &key) != (home.0, &home.1) {
            tx.put(Ks::Mailbox, key, value.clone());
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
        let info = load_group(tx, group)?.ok_or(StoreError::UnknownGroup(group))?;
        if !info.members.iter().any(|m| m.user == req.user) {
            return Err(StoreError::NotAMember(group));
        }
    }
    let last = conv_seq(tx, ConvKey::of(req.user, req.conversation))?;
    let up_to = req.up_to.0.min(last);
    advance(tx, req.user, Some(req.device), req.conversation, ReceiptKind::Read, up_to)
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
