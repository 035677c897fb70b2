//! Delivered and read cursors, the receipts their moves produce, and the
//! mailbox that answers `Cursors` (REDIS.md, "Ack, read, receipts"). A
//! user's own cursors are in its slot; each receipt is then written to the
//! mailbox of the user it goes to, in that user's slot, keeping the
//! highest (a lost mailbox write loses a receipt, never a cursor).

use backend_store::{ReadCursor, ReceiptNote, StoreError};
use protocol::{ConvSeq, Conversation, DeviceId, ReceiptKind, Timestamp, UserId};

use crate::entry::{parse_view, view_text, Entry};
use crate::keys;
use crate::store::{corrupt, millis, now_ms, RedisStore};

impl RedisStore {
    /// Moves `user`'s cursor in `view` up to `up_to` (if higher) and
    /// returns the receipts to send, written to their mailboxes; `device`
    /// moved a read cursor (its own copy is not sent back).
    pub(crate) async fn advance(
        &self,
        user: UserId,
        device: Option<DeviceId>,
        view: Conversation,
        kind: ReceiptKind,
        up_to: u64,
    ) -> Result<Vec<ReceiptNote>, StoreError> {
        let moved = Move { user, device, view, kind, up_to, at: now_ms() };
        match self.move_own(&moved, None).await? {
            Some(from) => self.receipts(&moved, from, false).await,
            None => Ok(Vec::new()),
        }
    }

    /// The CURSOR script: `moved.user`'s own cursor and, for a read, the
    /// copy its other devices hear, in one step of the user's slot; with
    /// `finish` (the dedup key and its final record) a send's chain ends in
    /// the same step. Returns the value the cursor moved from, if it moved.
    pub(crate) async fn move_own(
        &self,
        moved: &Move,
        finish: Option<(&str, &str)>,
    ) -> Result<Option<u64>, StoreError> {
        let conv = keys::conversation(moved.user, moved.view);
        let own = match moved.kind {
            ReceiptKind::Read => mailbox_field(moved.view, moved.user, moved.kind),
            ReceiptKind::Delivered => String::new(),
        };
        let mut call = self.inner.scripts.cursor.prepare_invoke();
        call.key(keys::cursors(moved.user))
            .key(keys::mailbox(moved.user))
            .arg(format!("{conv}|{}", moved.kind as u8))
            .arg(moved.up_to)
            .arg(moved.at)
            .arg(own);
        if let Some((dedup, record)) = finish {
            call.key(dedup).arg(record).arg(millis(self.inner.config.retention));
        }
        let from: i64 = self.invoke(call).await?;
        Ok(u64::try_from(from).ok())
    }

    /// The receipts a move of `moved.user`'s cursor from `from` causes,
    /// each written to the mailbox of the user it goes to (side by side:
    /// each mailbox is in its owner's slot). `peer_told`: a pair's peer
    /// already has it (a send's enter step wrote it).
    pub(crate) async fn receipts(
        &self,
        moved: &Move,
        from: u64,
        peer_told: bool,
    ) -> Result<Vec<ReceiptNote>, StoreError> {
        let Move { user, device, view, kind, up_to, at } = *moved;
        let note = |to: UserId, conversation: Conversation, except: Option<DeviceId>| ReceiptNote {
            to,
            except,
            conversation,
            user,
            kind,
            up_to: ConvSeq(up_to),
            at: Timestamp(at),
        };
        let mut notes = Vec::new();
        match view {
            Conversation::Direct(peer) if peer != user => {
                notes.push(note(peer, Conversation::Direct(user), None))
            }
            Conversation::Direct(_) => {}
            Conversation::Group(_) => {
                // Only the authors of the messages the move covers hear of it.
                let mut senders = self.senders(&keys::conversation(user, view), user, from, up_to).await?;
                senders.sort_unstable();
                notes.extend(senders.into_iter().map(|sender| note(sender, view, None)));
            }
        }
        if !(peer_told && matches!(view, Conversation::Direct(_))) {
            let mut writes = tokio::task::JoinSet::new();
            for n in &notes {
                let (store, mailbox) = (self.clone(), keys::mailbox(n.to));
                let field = mailbox_field(n.conversation, n.user, n.kind);
                writes.spawn(async move { store.raise(&mailbox, &field, up_to, at).await });
            }
            while let Some(written) = writes.join_next().await {
                written.map_err(|_| corrupt("mailbox task"))??;
            }
        }
        // The user's other devices: written by the cursor's own step.
        if kind == ReceiptKind::Read {
            notes.push(note(user, view, device));
        }
        Ok(notes)
    }

    /// READ: the reader's read cursor, clamped to the conversation's last
    /// conv_seq.
    pub(crate) async fn read(&self, req: ReadCursor) -> Result<Vec<ReceiptNote>, StoreError> {
        if let Conversation::Group(group) = req.conversation {
            self.group_of_member(group, req.user).await?;
        }
        let mut get = redis::cmd("GET");
        get.arg(keys::conv_seq(&keys::conversation(req.user, req.conversation)));
        let last: Option<u64> = self.query(&get).await?;
        let up_to = req.up_to.0.min(last.unwrap_or(0));
        self.advance(req.user, Some(req.device), req.conversation, ReceiptKind::Read, up_to).await
    }

    /// The delivered cursors an ack moves: the highest conv_seq per
    /// conversation among the entries it removed (copies of the user's own
    /// messages say nothing about delivery to the user).
    pub(crate) async fn delivered(
        &self,
        user: UserId,
        removed: &[String],
    ) -> Result<Vec<ReceiptNote>, StoreError> {
        let mut highest: Vec<(Conversation, u64)> = Vec::new();
        for text in removed {
            let entry = Entry::parse(text).ok_or_else(|| corrupt("inbox entry"))?;
            if entry.sender == user {
                continue;
            }
            match highest.iter_mut().find(|(view, _)| *view == entry.view) {
                Some((_, seq)) => *seq = (*seq).max(entry.conv_seq.0),
                None => highest.push((entry.view, entry.conv_seq.0)),
            }
        }
        let mut notes = Vec::new();
        for (view, up_to) in highest {
            notes.extend(self.advance(user, None, view, ReceiptKind::Delivered, up_to).await?);
        }
        Ok(notes)
    }

    /// `Cursors`: the receipts in `user`'s mailbox that moved after `since`.
    pub(crate) async fn mailbox(
        &self,
        user: UserId,
        since: Timestamp,
    ) -> Result<Vec<ReceiptNote>, StoreError> {
        let mut all = redis::cmd("HGETALL");
        all.arg(keys::mailbox(user));
        let fields: Vec<(String, String)> = self.query(&all).await?;
        let mut notes = Vec::new();
        for (field, value) in fields {
            let note = mailbox_note(user, &field, &value).ok_or_else(|| corrupt("mailbox field"))?;
            if note.at > since {
                notes.push(note);
            }
        }
        Ok(notes)
    }

    /// The RAISE script: the value the cursor moved from, if it moved.
    pub(crate) async fn raise(
        &self,
        key: &str,
        field: &str,
        up_to: u64,
        at: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut call = self.inner.scripts.raise.prepare_invoke();
        call.key(key).arg(field).arg(up_to).arg(at);
        let from: i64 = self.invoke(call).await?;
        Ok(u64::try_from(from).ok())
    }

    /// The authors (not `user`, not system entries) of a group's messages
    /// after `old` up to `up_to`: at most the newest `GROUP_SCAN` of them
    /// (bounded work per move, as in the fjall engine), read in one script.
    async fn senders(
        &self,
        conv: &str,
        user: UserId,
        old: u64,
        up_to: u64,
    ) -> Result<Vec<UserId>, StoreError> {
        const GROUP_SCAN: u64 = 4096;
        let first = (old + 1).max(up_to.saturating_sub(GROUP_SCAN) + 1);
        if first > up_to {
            return Ok(Vec::new());
        }
        let mut call = self.inner.scripts.senders.prepare_invoke();
        call.key(keys::conv_seq(conv)).arg(conv).arg(first).arg(up_to).arg(user.0);
        let senders: Vec<u64> = self.invoke(call).await?;
        Ok(senders.into_iter().map(UserId).collect())
    }
}

/// A move of a user's own cursor (`device` moved it, for a read).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Move {
    pub(crate) user: UserId,
    pub(crate) device: Option<DeviceId>,
    pub(crate) view: Conversation,
    pub(crate) kind: ReceiptKind,
    pub(crate) up_to: u64,
    /// When (ms), as the receipts say.
    pub(crate) at: u64,
}

/// The mailbox field of the receipt of `user`'s `kind` cursor in
/// `conversation` (as the mailbox's owner names it).
pub(crate) fn mailbox_field(conversation: Conversation, user: UserId, kind: ReceiptKind) -> String {
    format!("{}|{}|{}", view_text(conversation), user.0, kind as u8)
}

/// A mailbox field (`view|owner|kind`) and value (`up_to at`) of `to`'s.
fn mailbox_note(to: UserId, field: &str, value: &str) -> Option<ReceiptNote> {
    let mut parts = field.split('|');
    let conversation = parse_view(parts.next()?)?;
    let user = UserId(parts.next()?.parse().ok()?);
    let kind = match parts.next()? {
        "1" => ReceiptKind::Delivered,
        "2" => ReceiptKind::Read,
        _ => return None,
    };
    let (up_to, at) = value.split_once(' ')?;
    Some(ReceiptNote {
        to,
        except: None,
        conversation,
        user,
        kind,
        up_to: ConvSeq(up_to.parse().ok()?),
        at: Timestamp(at.parse().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_field_reads_back_and_an_unknown_kind_is_refused() {
        let note = mailbox_note(UserId(1), "d2|2|2", "7 9").unwrap();
        assert_eq!(
            (note.conversation, note.user, note.kind),
            (Conversation::Direct(UserId(2)), UserId(2), ReceiptKind::Read)
        );
        assert_eq!((note.up_to, note.at), (ConvSeq(7), Timestamp(9)));
        assert_eq!(mailbox_note(UserId(1), "d2|2|3", "7 9"), None);
        assert_eq!(mailbox_note(UserId(1), "d2|2|1", "7"), None);
    }
}
