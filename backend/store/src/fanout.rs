//! Who a message goes to, shard by shard (`SHARDS.md`, "Send: the chain"):
//! the entries of the users in the batch's own shard are made in the same
//! batch as the message's append; every other shard gets one [`Enter`] step,
//! run there once the append committed. With one shard every user is local
//! and a message is one batch, as it always was.
//!
//! An Enter is applied under a per-user order check: `L user conv` holds the
//! last conv_seq entered for the user, so a step that comes twice (a retried
//! Send rolling its chain forward) enters nothing new, and one that comes
//! after a gap (an earlier message's step failed, or the process died
//! between the steps) first enters the missing messages from the
//! conversation's log, whose entries carry their bodies when any recipient is
//! in another shard. So every device still sees a conversation in conv_seq
//! order with contiguous seqs.

use std::borrow::Cow;

use protocol::{Conversation, DeviceId, UserId};

use crate::api::{Delivery, Message, ReceiptNote, StoreError};
use crate::codec::{convlog_key, meta, ConvKey, Dec, Enc, Key, LOG_CACHED};
use crate::db::{Ks, Tx};
use crate::expiry::{self, Here};
use crate::{cursors, devices, group_cursors, messages};

/// A user a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recipient {
    /// The user.
    pub(crate) user: UserId,
    /// The first conv_seq the user receives in the conversation (its
    /// joining of a group; 1 in a pair): where a catch-up starts for a user
    /// with nothing entered yet.
    pub(crate) from: u64,
    /// Whether the message is the user's joining of the group.
    pub(crate) joins: bool,
}

/// A message's entries for the users of one shard.
#[derive(Debug, Clone)]
pub(crate) struct Enter {
    /// The conversation.
    pub(crate) conv: ConvKey,
    /// The message (its body included).
    pub(crate) message: Message,
    /// This shard's recipients.
    pub(crate) users: Vec<Recipient>,
    /// Whether the author's read cursor moves to the message (a Send's;
    /// the author is then among `users`).
    pub(crate) authored: bool,
}

/// What an Enter made: its entries (for a repeated one, those of its users
/// not acked yet, to fan out again) and the receipts of the author's cursor.
#[derive(Debug, Default)]
pub(crate) struct Entered {
    /// Inbox entries.
    pub(crate) deliveries: Vec<Delivery>,
    /// The author's read cursor moves.
    pub(crate) receipts: Vec<ReceiptNote>,
    /// For a repeated Enter with entries not acked yet: the body they hold
    /// (a retried Send answers with it).
    pub(crate) payload: Option<bytes::Bytes>,
}

/// The conversation `user` sees `conv` as.
fn view_of(conv: ConvKey, user: UserId) -> Conversation {
    match conv {
        ConvKey::Group(group) => Conversation::Group(group),
        ConvKey::Pair(a, b) => Conversation::Direct(if user == a { b } else { a }),
    }
}

/// The devices of `users` that get `message`: all of theirs but the author's
/// own sending device (a system entry, device 0, goes to every device).
fn targets(
    tx: &mut Tx<'_>,
    message: &Message,
    conv: ConvKey,
    users: impl Iterator<Item = UserId>,
) -> Result<Vec<(UserId, DeviceId, Conversation)>, StoreError> {
    let mut out = Vec::new();
    for user in users {
        let view = view_of(conv, user);
        let devices = devices::list(tx, user)?;
        if devices.is_empty() && matches!(conv, ConvKey::Pair(..)) && user != message.sender {
            // A pair's peer must have a device (checked here for a peer of
            // this shard, by the Send's audience for one of another).
            return Err(StoreError::UnknownRecipient(user));
        }
        for device in devices {
            if (user, device) != (message.sender, message.sender_device) {
                out.push((user, device, view));
            }
        }
    }
    Ok(out)
}

/// Splits `audience` into the users of this batch's shard and one [`Enter`]
/// per other shard; `authored` goes with the author's.
pub(crate) fn split<'a>(
    tx: &Tx<'_>,
    (message, conv): (&Message, ConvKey),
    audience: &'a [Recipient],
    authored: bool,
) -> (Cow<'a, [Recipient]>, Vec<(usize, Enter)>) {
    let layout = tx.layout();
    if layout.count() == 1 {
        return (Cow::Borrowed(audience), Vec::new());
    }
    let mut local = Vec::new();
    let mut remote: Vec<(usize, Enter)> = Vec::new();
    for recipient in audience {
        let shard = layout.user(recipient.user);
        if tx.is_local(shard) {
            local.push(*recipient);
            continue;
        }
        let authored = authored && recipient.user == message.sender;
        match remote.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, enter)) => {
                enter.users.push(*recipient);
                enter.authored |= authored;
            }
            None => {
                let users = vec![*recipient];
                remote.push((shard, Enter { conv, message: message.clone(), users, authored }));
            }
        }
    }
    (Cow::Owned(local), remote)
}

/// Enters `message` for `audience` (in order): the users of this batch's
/// shard now, beside the message's append (`here`: what of it this shard
/// holds), and the others as one [`Enter`] per shard, returned to run once
/// this batch committed. `authored`: the author's read cursor moves to the
/// message (where the author's keys are).
pub(crate) fn fan(
    tx: &mut Tx<'_>,
    (message, conv): (&Message, ConvKey),
    audience: &[Recipient],
    here: Here,
    authored: bool,
) -> Result<(Entered, Vec<(usize, Enter)>), StoreError> {
    let (local, remote) = split(tx, (message, conv), audience, authored);
    let list = targets(tx, message, conv, local.iter().map(|r| r.user))?;
    let deliveries = messages::enter(tx, message, conv, list, here)?;
    let mut entered = Entered { deliveries, receipts: Vec::new(), payload: None };
    finish(tx, (message, conv), &local, authored, &mut entered)?;
    Ok((entered, remote))
}

/// After the entries of `users`: the author's read cursor, and the joining
/// users' group cursors and index.
fn finish(
    tx: &mut Tx<'_>,
    (message, conv): (&Message, ConvKey),
    users: &[Recipient],
    authored: bool,
    entered: &mut Entered,
) -> Result<(), StoreError> {
    let seq = message.conv_seq.0;
    if authored && users.iter().any(|r| r.user == message.sender) {
        let (author, view) = (message.sender, view_of(conv, message.sender));
        let kind = protocol::ReceiptKind::Read;
        entered.receipts.extend(cursors::advance(
            tx,
            author,
            Some(message.sender_device),
            view,
            kind,
            seq,
            true,
        )?);
    }
    if let ConvKey::Group(group) = conv {
        for recipient in users.iter().filter(|r| r.joins) {
            group_cursors::join(tx, recipient.user, group, seq)?;
        }
    }
    Ok(())
}

/// Key of `user`'s order check in `conv`: the last conv_seq entered for it
/// there by an Enter step.
fn order_key(user: UserId, conv: ConvKey) -> Key {
    Enc::tag(meta::ENTERED).user(user).conv(conv).key()
}

/// Applies an Enter step in this batch's shard (see the module doc).
pub(crate) fn enter(tx: &mut Tx<'_>, step: Enter) -> Result<Entered, StoreError> {
    let Enter { conv, message, users, authored } = step;
    let seq = message.conv_seq.0;
    let mut entered = Entered::default();
    let mut fresh = Vec::with_capacity(users.len());
    let mut repeated = Vec::new();
    for recipient in users {
        let key = order_key(recipient.user, conv);
        let last = match tx.get(Ks::Meta, &key)? {
            Some(bytes) => Dec::new(&bytes).u64()?,
            None => 0,
        };
        if seq <= last {
            repeated.push(recipient.user);
            continue;
        }
        if seq < recipient.from {
            // Joined after the message (a retry of an older one).
            continue;
        }
        let first = last.max(recipient.from.saturating_sub(1)) + 1;
        catch_up(tx, (conv, recipient), (first, seq), &mut entered)?;
        tx.put(Ks::Meta, key, Enc::default().u64(seq).done());
        fresh.push(recipient);
    }
    if !repeated.is_empty() {
        let record = expiry::Record::key(message.server_time.0, message.id.0);
        if let Some(bytes) = tx.get(Ks::Expiry, &record)? {
            let unacked = expiry::Record::decode(&bytes)?.unacked(tx)?;
            let mut again = unacked.into_iter().filter(|d| repeated.contains(&d.user)).peekable();
            if let Some(first) = again.peek() {
                entered.payload = messages::held_body(tx, message.id.0, first)?;
            }
            entered.deliveries.extend(again);
        }
    }
    if !fresh.is_empty() {
        let list = targets(tx, &message, conv, fresh.iter().map(|r| r.user))?;
        let here = Here { dedup: None, log: false };
        entered.deliveries.extend(messages::enter(tx, &message, conv, list, here)?);
        finish(tx, (&message, conv), &fresh, authored, &mut entered)?;
    }
    Ok(entered)
}

/// Enters for `recipient` the messages of `conv` from conv_seq `first` up
/// to (not including) `until` that its shard has not seen (their Enter
/// steps were refused or cut by a crash, or have not come yet), from the
/// conversation's log: in order, each entry holding its body, with what
/// its own step would have done besides (the user's joining of the group,
/// the author's read cursor; its receipts join `entered`). A log entry
/// without a body (written when no recipient was in another shard) or
/// already expired is passed over.
fn catch_up(
    tx: &mut Tx<'_>,
    (conv, recipient): (ConvKey, Recipient),
    (first, until): (u64, u64),
    entered: &mut Entered,
) -> Result<(), StoreError> {
    if first >= until {
        return Ok(());
    }
    let shard = tx.layout().conv(conv);
    let (start, end) = (convlog_key(conv, first), convlog_key(conv, until));
    for (key, value) in tx.range_in(shard, Ks::ConvLog, (&start, &end), usize::MAX)? {
        let Some(message) = logged(&key, &value)? else { continue };
        let list = targets(tx, &message, conv, std::iter::once(recipient.user))?;
        // Not told live: an answer names one message, and a session that
        // gets a later entry reads the gap from the store (SPEC §6.3).
        messages::enter(tx, &message, conv, list, Here { dedup: None, log: false })?;
        let joins = matches!(conv, ConvKey::Group(_)) && message.conv_seq.0 == recipient.from;
        let authored = message.sender == recipient.user && message.sender_device.0 != 0;
        finish(tx, (&message, conv), &[Recipient { joins, ..recipient }], authored, entered)?;
        tx.caught_up += 1;
    }
    Ok(())
}

/// The message a log entry (`id sender sender_device [time payload]`)
/// holds, if it holds its body.
fn logged(key: &[u8], value: &[u8]) -> Result<Option<Message>, StoreError> {
    let mut dec = Dec::new(value);
    let (id, sender, sender_device) = (dec.u64()?, UserId(dec.u64()?), DeviceId(dec.u32()?));
    if dec.is_empty() {
        return Ok(None);
    }
    let time = dec.u64()?;
    let mut tail = Dec::new(key.get(key.len().saturating_sub(8)..).unwrap_or_default());
    let conv_seq = tail.u64()?;
    Ok(Some(Message {
        id: protocol::MessageId(id),
        conv_seq: protocol::ConvSeq(conv_seq),
        sender,
        sender_device,
        server_time: protocol::Timestamp(time),
        payload: bytes::Bytes::copy_from_slice(dec.rest()),
    }))
}

/// Drops the body from the log entry of `conv_seq` in `conv` (this
/// shard's): every recipient shard entered the message, so no catch-up
/// needs it. A pair's entry goes whole (only catch-ups read it); a
/// group's keeps its author for receipts.
pub(crate) fn trim(tx: &mut Tx<'_>, conv: ConvKey, conv_seq: u64) -> Result<(), StoreError> {
    let key = convlog_key(conv, conv_seq);
    // Past the writer's cache, which keeps only an entry's head.
    let Some(value) = tx.get_entire(Ks::ConvLog, &key)? else { return Ok(()) };
    match conv {
        ConvKey::Pair(..) => tx.del(Ks::ConvLog, key),
        ConvKey::Group(_) => {
            let head = value.get(..LOG_CACHED).ok_or_else(|| crate::codec::corrupt("log entry"))?;
            if value.len() > LOG_CACHED {
                tx.put(Ks::ConvLog, key, head.to_vec());
            }
        }
    }
    Ok(())
}

/// The message logged at `conv_seq` in `conv` with its body, if the log has it.
pub(crate) fn from_log(tx: &mut Tx<'_>, conv: ConvKey, conv_seq: u64) -> Result<Option<Message>, StoreError> {
    let key = convlog_key(conv, conv_seq);
    let shard = tx.layout().conv(conv);
    // Past the writer's cache, which keeps only an entry's head.
    let value = if tx.is_local(shard) {
        tx.get_entire(Ks::ConvLog, &key)?
    } else {
        tx.get_in(shard, Ks::ConvLog, &key)?
    };
    match value {
        Some(value) => logged(&key, &value),
        None => Ok(None),
    }
}
