//! Messages and inboxes, on the writer: storing a message once (once per
//! shard with several writers) and fanning it out to inbox entries (Send,
//! group system entries; `fanout` says whose entries a batch makes), dedup,
//! and Ack.
//!
//! A message with a single inbox entry (most: a 1:1 message to a user with
//! one device) keeps its body in that entry (`codec::Entry`), so its Send
//! writes one key fewer and its Ack deletes one fewer and reads no count.
//! A message with several lives in `messages` with a reference count in
//! `refs` (one per inbox entry pointing to it) while two or more do; with
//! one left it has none (a count of 2 is deleted, not set to 1), and the
//! last ack deletes the body. A group message also gets a
//! conversation-log entry (conv, conv_seq) → (id, sender, device) for group
//! receipts (a pair's receipts need no log: the author is the peer), and
//! every message an expiry record keyed by (time, id) listing its inbox
//! entries and dedup key, which the retention sweep walks.

use bytes::Bytes;
use protocol::{Conversation, DeviceId, ReceiptKind, Seq, Timestamp, UserId};

use crate::api::{Ack, Delivery, Message, ReceiptNote, SendMessage, Sent, StoreError};
use crate::codec::{
    conv_seq_key, convlog_key, dedup_key, inbox_key, message_key, meta, ConvKey, Dec, Enc, Entry,
    ENTRY_CACHED,
};
use crate::db::{Ks, Tx};
use crate::error::EngineError;
use crate::fanout::{self, Enter, Recipient};
use crate::records::{conv_seq, load_group, next_counter};
use crate::{cursors, devices, expiry};

/// Gives the message its id and its conv_seq, and logs it: a group's
/// messages always (group receipts name their authors), any message with
/// its body too when `with_body` (recipients in other shards catch up from
/// the log: `steps`).
pub(crate) fn append(
    tx: &mut Tx<'_>,
    conv: ConvKey,
    (sender, sender_device): (UserId, DeviceId),
    payload: Bytes,
    with_body: bool,
) -> Result<Message, StoreError> {
    let id = tx.layout().mint(next_counter(tx, meta::NEXT_MESSAGE)?, tx.shard());
    let seq = conv_seq(tx, conv)? + 1;
    tx.put(Ks::Meta, conv_seq_key(conv), Enc::default().u64(seq).done());
    if with_body || matches!(conv, ConvKey::Group(_)) {
        let mut log = Enc::default().u64(id).user(sender).device(sender_device);
        if with_body {
            log = log.u64(tx.now).raw(&payload);
        }
        tx.put(Ks::ConvLog, convlog_key(conv, seq), log.done());
    }
    Ok(Message {
        id: protocol::MessageId(id),
        conv_seq: protocol::ConvSeq(seq),
        sender,
        sender_device,
        server_time: Timestamp(tx.now),
        payload,
    })
}

/// Gives each of `targets` (devices of this shard's users) its next inbox
/// seq for `message`, and records the entries for retention. A shard that
/// already holds entries of the message (a catch-up came first: `steps`)
/// adds these to its record, and each of them holds the body.
pub(crate) fn enter(
    tx: &mut Tx<'_>,
    message: &Message,
    conv: ConvKey,
    targets: Vec<(UserId, DeviceId, Conversation)>,
    here: expiry::Here,
) -> Result<Vec<Delivery>, StoreError> {
    let (id, seq, time) = (message.id.0, message.conv_seq.0, message.server_time.0);
    let record_key = expiry::Record::key(time, id);
    let earlier = if tx.layout().count() > 1 { tx.get(Ks::Expiry, &record_key)? } else { None };
    if targets.is_empty() && here.dedup.is_none() && !here.log && earlier.is_none() {
        return Ok(Vec::new());
    }
    let mut deliveries = Vec::with_capacity(targets.len());
    // A message with one entry keeps its body there (see `Entry`).
    let inline = targets.len() == 1 || earlier.is_some();
    for (user, device, view) in targets {
        let mut state = devices::state(tx, user, device)?;
        state.head += 1;
        devices::set_state(tx, user, device, state);
        let entry = Entry { message: id, view, conv_seq: seq, sender: message.sender, time, inline };
        let value = if inline {
            entry.encode_with_body(message.sender_device, &message.payload)
        } else {
            entry.encode()
        };
        tx.put(Ks::Inbox, inbox_key(user, device, state.head), value);
        deliveries.push(Delivery { user, device, seq: Seq(state.head), conversation: view });
    }
    // A body apart only for several entries: one entry holds it, and a
    // message nobody receives (a note to self with no other device) keeps
    // none (its dedup record still answers retries).
    if !inline && deliveries.len() > 1 {
        let body = Enc::default()
            .u64(seq)
            .user(message.sender)
            .device(message.sender_device)
            .u64(time)
            .raw(&message.payload)
            .done();
        tx.put(Ks::Messages, message_key(id), body);
        let count = u32::try_from(deliveries.len()).unwrap_or(u32::MAX);
        tx.put(Ks::Refs, message_key(id), count.to_be_bytes().to_vec());
    }
    let entries = deliveries.iter().map(|d| (d.user, d.device, d.seq.0));
    let record = match &earlier {
        // A catch-up came first (`fanout`): this shard's record grows.
        Some(bytes) => {
            let record = expiry::Record::decode(bytes)?;
            let all: Vec<_> = record.entries.iter().copied().chain(entries).collect();
            record.with_entries(&all)
        }
        None => expiry::Record::encode(&here, conv, seq, entries),
    };
    tx.put(Ks::Expiry, record_key, record);
    Ok(deliveries)
}

/// Decodes a stored message body.
pub(crate) fn decode_body(id: u64, bytes: &[u8]) -> Result<Message, StoreError> {
    let mut dec = Dec::new(bytes);
    Ok(Message {
        id: protocol::MessageId(id),
        conv_seq: protocol::ConvSeq(dec.u64()?),
        sender: UserId(dec.u64()?),
        sender_device: DeviceId(dec.u32()?),
        server_time: Timestamp(dec.u64()?),
        payload: Bytes::copy_from_slice(dec.rest()),
    })
}

/// Drops one inbox reference to message `id`, deleting the body with the
/// last. Called once per inbox entry that leaves, so a body without a count
/// is down to its last reference. A count of 2 becomes no count (one left);
/// a count of 1 is only in databases written before counts of one were
/// left out.
pub(crate) fn release(tx: &mut Tx<'_>, id: u64) -> Result<(), StoreError> {
    let key = message_key(id);
    match tx.get(Ks::Refs, &key)? {
        None => {
            tx.del(Ks::Messages, key);
            tx.deleted += 1;
        }
        Some(bytes) => match Dec::new(&bytes).u32()? {
            0 | 1 => {
                tx.del(Ks::Refs, key.clone());
                tx.del(Ks::Messages, key);
                tx.deleted += 1;
            }
            2 => tx.del(Ks::Refs, key),
            count => tx.put(Ks::Refs, key, (count - 1).to_be_bytes().to_vec()),
        },
    }
    Ok(())
}

/// Send: dedup, checks, the message appended, its entries and the author's
/// read cursor. Entries for users of other shards are returned as Enter
/// steps to run once this batch committed (`fanout`; with one shard there
/// are none).
pub(crate) fn send(tx: &mut Tx<'_>, req: SendMessage) -> Result<(Sent, Vec<(usize, Enter)>), StoreError> {
    if req.payload.len() > protocol::limits::MAX_PAYLOAD {
        // The gateway's decoder already bounds payloads; this keeps the store
        // from ever holding a message no DELIVER frame could carry.
        return Err(EngineError::PayloadTooLarge.into());
    }
    let dkey = dedup_key(req.user, req.device, req.client_id);
    if !tx.dedup_absent(&dkey)? {
        if let Some(bytes) = tx.get(Ks::Dedup, &dkey)? {
            return duplicate(tx, &bytes, &req);
        }
    }
    let conv = ConvKey::of(req.user, req.to);
    let audience = audience(tx, req.user, req.to)?;
    let layout = tx.layout();
    let remote = audience.iter().any(|r| !tx.is_local(layout.user(r.user)));
    let message = append(tx, conv, (req.user, req.device), req.payload, remote)?;
    let here = expiry::Here { dedup: Some(dkey.clone()), log: remote || matches!(conv, ConvKey::Group(_)) };
    let (entered, enters) = fanout::fan(tx, (&message, conv), &audience, here, true)?;
    let record = Enc::default().u64(message.id.0).u64(message.conv_seq.0).u64(message.server_time.0).done();
    tx.put(Ks::Dedup, dkey, record);
    let sent = Sent { message, duplicate: false, deliveries: entered.deliveries, receipts: entered.receipts };
    Ok((sent, enters))
}

/// The users a message of `user` to `to` goes to, in order: a pair's peer
/// (who must have a device) and the author (for its other devices), or a
/// group's members (the author must be one).
fn audience(tx: &mut Tx<'_>, user: UserId, to: Conversation) -> Result<Vec<Recipient>, StoreError> {
    let author = Recipient { user, from: 1, joins: false };
    match to {
        Conversation::Direct(peer) => {
            // A peer of this shard is checked as its entries are made
            // (`fanout::targets`).
            if !tx.is_local(tx.layout().user(peer)) && devices::list(tx, peer)?.is_empty() {
                return Err(StoreError::UnknownRecipient(peer));
            }
            let peer = Recipient { user: peer, from: 1, joins: false };
            Ok(if peer.user == user { vec![author] } else { vec![peer, author] })
        }
        Conversation::Group(group) => {
            let (info, joins) = load_group(tx, group)?.ok_or(StoreError::UnknownGroup(group))?;
            if !info.members.iter().any(|m| m.user == user) {
                return Err(StoreError::NotAMember(group));
            }
            let from = |i: usize| joins.get(i).copied().unwrap_or(1);
            Ok(info
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| Recipient { user: m.user, from: from(i), joins: false })
                .collect())
        }
    }
}

/// The answer to a retried Send. The payload is the stored one while any
/// inbox entry still points to the message (or holds it), empty once all
/// were acked.
///
/// Its deliveries are the message's entries not acked yet: the gateway that
/// answered the first attempt may have died before it told the recipients'
/// nodes (the client retries through another one), so the retry fans them
/// out again; a session that already has an entry drops it by its seq. With
/// several shards the retry also runs the message's Enter steps again: they
/// answer the entries already made there and make those the first attempt
/// never got to (the process died between the steps).
fn duplicate(
    tx: &mut Tx<'_>,
    record: &[u8],
    req: &SendMessage,
) -> Result<(Sent, Vec<(usize, Enter)>), StoreError> {
    let mut dec = Dec::new(record);
    let (id, seq, time) = (dec.u64()?, dec.u64()?, dec.u64()?);
    let deliveries = match tx.get(Ks::Expiry, &expiry::Record::key(time, id))? {
        Some(record) => expiry::Record::decode(&record)?.unacked(tx)?,
        None => Vec::new(),
    };
    let mut message = Message {
        id: protocol::MessageId(id),
        conv_seq: protocol::ConvSeq(seq),
        sender: req.user,
        sender_device: req.device,
        server_time: Timestamp(time),
        payload: Bytes::new(),
    };
    if let Some(first) = deliveries.first() {
        message.payload = held_body(tx, id, first)?.unwrap_or_default();
    }
    let mut enters = Vec::new();
    if tx.layout().count() > 1 {
        // Its Enter steps again: the process may have died between them.
        // The log keeps the body until every one of them is done.
        // While the log holds the body, the chain may not be complete: a
        // retry that cannot run it (its author left the group since) is
        // refused, not acknowledged. Once trimmed, every step committed, and
        // the steps only announce their entries again.
        let conv = ConvKey::of(req.user, req.to);
        let mut carried = message.clone();
        let audience = match fanout::from_log(tx, conv, seq)? {
            Some(logged) => {
                // The entries a step makes now are told with this body.
                if message.payload.is_empty() {
                    message.payload = logged.payload.clone();
                }
                carried.payload = logged.payload;
                Some(audience(tx, req.user, req.to)?)
            }
            None => audience(tx, req.user, req.to).ok(),
        };
        if let Some(audience) = audience {
            enters = fanout::split(tx, (&carried, conv), &audience, true).1;
        }
    }
    Ok((Sent { message, duplicate: true, deliveries, receipts: Vec::new() }, enters))
}

/// The body of message `id` while an entry of this shard holds it:
/// `entry` (one of its entries not acked yet) or the body kept apart.
pub(crate) fn held_body(tx: &mut Tx<'_>, id: u64, entry: &Delivery) -> Result<Option<Bytes>, StoreError> {
    if let Some(body) = tx.get(Ks::Messages, &message_key(id))? {
        return Ok(Some(decode_body(id, &body)?.payload));
    }
    let key = inbox_key(entry.user, entry.device, entry.seq.0);
    let Some(value) = tx.get_entire(Ks::Inbox, &key)? else { return Ok(None) };
    Ok(Entry::inline_body(&value)?.map(|(_, payload)| Bytes::copy_from_slice(payload)))
}

/// Most seqs one Ack resolves through the writer's cache before it falls
/// back to a range scan.
const ACK_CACHED: u64 = 1024;

/// The inbox entries with `from <= seq <= to`, in seq order. Inbox keys are
/// fixed-width (`user device seq`), so that range holds exactly these seqs'
/// keys: when the batch or the writer's cache knows every one of them (the
/// usual case, the Send that wrote them was a moment ago), no engine read is
/// needed; otherwise one range scan.
fn acked_entries(
    tx: &mut Tx<'_>,
    user: UserId,
    device: DeviceId,
    from: u64,
    to: u64,
) -> Result<crate::db::Pairs, StoreError> {
    if to - from < ACK_CACHED {
        let mut pairs = Vec::new();
        let mut complete = true;
        for seq in from..=to {
            let key = inbox_key(user, device, seq);
            match tx.known(Ks::Inbox, &key) {
                Some(Some(value)) => {
                    // The header is all an Ack needs, not a body the entry holds.
                    let value = value.get(..ENTRY_CACHED).unwrap_or(value).to_vec();
                    pairs.push((key, value));
                }
                Some(None) => {}
                None => {
                    complete = false;
                    break;
                }
            }
        }
        if complete {
            return Ok(pairs);
        }
    }
    let start = inbox_key(user, device, from);
    let end = inbox_key(user, device, to + 1);
    tx.range(Ks::Inbox, &start, &end, usize::MAX)
}

/// Ack: removes entries up to `up_to` (clamped to the head), releases their
/// messages, and moves the user's delivered cursors.
pub(crate) fn ack(tx: &mut Tx<'_>, req: Ack) -> Result<Vec<ReceiptNote>, StoreError> {
    let mut state = devices::state(tx, req.user, req.device)?;
    let up_to = req.up_to.0.min(state.head);
    if up_to <= state.acked {
        return Ok(Vec::new());
    }
    let mut highest: Vec<(Conversation, u64)> = Vec::new();
    for (key, value) in acked_entries(tx, req.user, req.device, state.acked + 1, up_to)? {
        let entry = Entry::decode(&value)?;
        tx.del(Ks::Inbox, key);
        if entry.inline {
            // The body leaves with its only entry.
            tx.deleted += 1;
        } else {
            release(tx, entry.message)?;
        }
        // Copies of the user's own messages say nothing about delivery to them.
        if entry.sender == req.user {
            continue;
        }
        match highest.iter_mut().find(|(view, _)| *view == entry.view) {
            Some((_, seq)) => *seq = (*seq).max(entry.conv_seq),
            None => highest.push((entry.view, entry.conv_seq)),
        }
    }
    state.acked = up_to;
    devices::set_state(tx, req.user, req.device, state);
    let mut notes = Vec::new();
    for (view, seq) in highest {
        notes.extend(cursors::advance(tx, req.user, None, view, ReceiptKind::Delivered, seq, false)?);
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use fjall::PersistMode;
    use protocol::Payload;

    use super::*;
    use crate::api::{Connect, InboxQuery};
    use crate::cache::MetaCache;
    use crate::db::Db;
    use crate::reader;

    const A: UserId = UserId(1);
    const B: UserId = UserId(2);
    const ONE: DeviceId = DeviceId(1);

    fn page(db: &Db) -> Vec<protocol::Deliver> {
        let query = InboxQuery { user: B, device: ONE, after: Seq(0), limit: 10, max_bytes: 1 << 20 };
        reader::inbox(db, u64::MAX, query).unwrap().entries
    }

    /// A 1:1 body lives in its entry, and the writer's cache keeps only the
    /// entry's header; an entry written before bodies moved in (a bare
    /// header, the body in `messages`) still reads, acks and deletes its body.
    #[test]
    fn a_body_lives_in_its_only_entry_and_old_entries_still_point_to_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut cache = MetaCache::new();
        let mut tx = Tx::new(&db, &mut cache, 1_000);
        for user in [A, B] {
            devices::connect(&mut tx, Connect { user, device: ONE }, 5).unwrap();
        }
        // The old layout, as written before: a bare entry, its body apart.
        let old = Entry {
            message: 500,
            view: Conversation::Direct(A),
            conv_seq: 1,
            sender: A,
            time: 900,
            inline: false,
        };
        tx.put(Ks::Inbox, inbox_key(B, ONE, 1), old.encode());
        let body = Enc::default().u64(1).user(A).device(DeviceId(3)).u64(900).raw(b"old").done();
        tx.put(Ks::Messages, message_key(500), body);
        devices::set_state(
            &mut tx,
            B,
            ONE,
            crate::codec::DeviceState { head: 1, acked: 0, connected: 1_000 },
        );
        tx.commit(PersistMode::Buffer).unwrap();

        let mut tx = Tx::new(&db, &mut cache, 2_000);
        let payload = Bytes::from_static(b"new");
        let request =
            SendMessage { user: A, device: ONE, client_id: 1, to: Conversation::Direct(B), payload };
        let (sent, enters) = send(&mut tx, request).unwrap();
        assert!(enters.is_empty(), "one shard: nothing to enter elsewhere");
        assert_eq!(sent.deliveries.len(), 1);
        tx.commit(PersistMode::Buffer).unwrap();
        let id = sent.message.id.0;
        assert_eq!(db.get(Ks::Messages, &message_key(id)).unwrap(), None, "no body key");
        let stored = db.get(Ks::Inbox, &inbox_key(B, ONE, 2)).unwrap().unwrap();
        assert_eq!(Entry::inline_body(&stored).unwrap(), Some((ONE, &b"new"[..])));
        let tx = Tx::new(&db, &mut cache, 2_000);
        let cached = tx.known(Ks::Inbox, &inbox_key(B, ONE, 2)).flatten().unwrap();
        assert_eq!(cached.len(), ENTRY_CACHED, "the cache holds the header");
        drop(tx);

        let read: Vec<_> = page(&db).into_iter().map(|d| (d.seq.0, d.sender_device, d.payload)).collect();
        let payload = |bytes: &'static [u8]| Payload::new(Bytes::from_static(bytes)).unwrap();
        assert_eq!(read, [(1, DeviceId(3), payload(b"old")), (2, ONE, payload(b"new"))]);

        let mut tx = Tx::new(&db, &mut cache, 3_000);
        ack(&mut tx, Ack { user: B, device: ONE, up_to: Seq(2) }).unwrap();
        assert_eq!(tx.deleted, 2, "both bodies leave");
        tx.commit(PersistMode::Buffer).unwrap();
        assert_eq!(db.get(Ks::Messages, &message_key(500)).unwrap(), None, "the old body is deleted");
        assert!(page(&db).is_empty());
    }
}
