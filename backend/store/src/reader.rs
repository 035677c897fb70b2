//! Reads, on reader threads, straight from committed fjall data: Inbox,
//! GroupGet, Cursors, GetVisibility. Each write batch is atomic, so a reader
//! never sees seq n + 1 without seq n.

use std::collections::HashMap;

use bytes::Bytes;
use protocol::limits::MAX_SYNC_BATCH;
use protocol::{
    ConvSeq, Conversation, Deliver, DeviceId, GroupId, MessageId, Payload, Seq, Timestamp, UserId,
    Visibility, Wire,
};

use crate::api::{InboxPage, InboxQuery, ReceiptNote, Request, Response, StoreError};
use crate::codec::{
    device_key, group_key, inbox_key, inbox_key_seq, message_key, meta, prefix_end, DeviceState, Enc, Entry,
};
use crate::db::{Db, Ks};
use crate::error::EngineError;
use crate::messages::decode_body;
use crate::records::decode_group;
use crate::shards::Peers;
use crate::{cursors, expiry, group_cursors, now_ms};

/// Answers a read request from the shard that owns it.
pub(crate) fn handle(peers: &Peers, retention_ms: u64, request: Request) -> Result<Response, StoreError> {
    let layout = peers.layout;
    match request {
        Request::Inbox(query) => {
            inbox(&*peers.db(layout.user(query.user))?, retention_ms, query).map(Response::Inbox)
        }
        Request::GroupGet { user, group } => {
            group_get(&*peers.db(layout.group(group))?, user, group).map(Response::Group)
        }
        Request::Cursors { user, since } => cursors_since(peers, user, since.0).map(Response::Cursors),
        Request::GetVisibility { user } => {
            let db = peers.db(layout.user(user))?;
            let key = Enc::tag(meta::VISIBILITY).user(user).done();
            let visibility = match db.get(Ks::Meta, &key)? {
                Some(v) if v.first() == Some(&(Visibility::Nobody as u8)) => Visibility::Nobody,
                _ => Visibility::Everyone,
            };
            Ok(Response::Visibility(visibility))
        }
        _ => Err(EngineError::WriteOnReader.into()),
    }
}

/// What a sync of `user` is told: the notes in its mailbox (pairs, and
/// group notes written before `group_cursors`) and its groups' cursors,
/// that moved after `since`; one per cursor, the newest.
fn cursors_since(peers: &Peers, user: UserId, since: u64) -> Result<Vec<ReceiptNote>, StoreError> {
    let db = peers.db(peers.layout.user(user))?;
    let start = Enc::default().user(user).done();
    let mut notes = Vec::new();
    for (k, v) in db.scan(Ks::Mailbox, &start, &prefix_end(&start), usize::MAX)? {
        let note = cursors::mailbox_note(&k, &v)?;
        if note.at.0 > since {
            notes.push(note);
        }
    }
    group_cursors::sync((&db, peers), user, since, &mut notes)?;
    if !db.legacy_group_cursors {
        // Mailboxes hold group notes only in databases written before
        // `group_cursors`: no cursor is in both.
        return Ok(notes);
    }
    // A group cursor may have a note from before `group_cursors` and a newer
    // value now: the newest goes.
    let mut newest: Vec<ReceiptNote> = Vec::with_capacity(notes.len());
    let mut index: HashMap<(Conversation, UserId, u8), usize> = HashMap::new();
    for note in notes {
        let key = (note.conversation, note.user, note.kind as u8);
        match index.get(&key).and_then(|&i| newest.get_mut(i)) {
            Some(kept) if kept.at < note.at => *kept = note,
            Some(_) => {}
            None => {
                index.insert(key, newest.len());
                newest.push(note);
            }
        }
    }
    Ok(newest)
}

fn group_get(db: &Db, user: UserId, group: GroupId) -> Result<crate::api::GroupInfo, StoreError> {
    let bytes = db.get(Ks::Meta, &group_key(group))?.ok_or(StoreError::UnknownGroup(group))?;
    let (info, _) = decode_group(group, &bytes)?;
    if !info.members.iter().any(|m| m.user == user) {
        return Err(StoreError::NotAMember(group));
    }
    Ok(info)
}

/// One page of a device's inbox: a walk over its keys, which stops at the
/// first entry past the page (an entry holds its body or points to it: one
/// point read then). `remaining` is `head − last seq returned`: exact while
/// nothing above that seq has expired (entries above the acked cursor are
/// contiguous), an upper bound otherwise.
pub(crate) fn inbox(db: &Db, retention_ms: u64, q: InboxQuery) -> Result<InboxPage, StoreError> {
    let head = match db.get(Ks::Meta, &device_key(q.user, q.device))? {
        Some(bytes) => DeviceState::decode(&bytes)?.head,
        None => 0,
    };
    let limit = (q.limit as usize).clamp(1, MAX_SYNC_BATCH);
    let now = now_ms();
    let start = inbox_key(q.user, q.device, q.after.0.saturating_add(1));
    let end = prefix_end(&Enc::default().user(q.user).device(q.device).done());
    let mut entries: Vec<Deliver> = Vec::new();
    let mut bytes = 0usize;
    let mut last = q.after.0;
    db.walk(Ks::Inbox, &start, &end, |key, value| {
        let seq = inbox_key_seq(key)?;
        let entry = Entry::decode(value)?;
        // Expired entries, and bodies released meanwhile, are skipped.
        if expiry::is_expired(entry.time, now, retention_ms) {
            return Ok(true);
        }
        let deliver = match Entry::inline_body(value)? {
            Some((sender_device, payload)) => {
                deliver(seq, &entry, sender_device, Bytes::copy_from_slice(payload))?
            }
            None => {
                let Some(body) = db.get(Ks::Messages, &message_key(entry.message))? else {
                    return Ok(true);
                };
                let message = decode_body(entry.message, &body)?;
                deliver(seq, &entry, message.sender_device, message.payload)?
            }
        };
        let size = deliver.wire_len();
        if !entries.is_empty() && (bytes + size > q.max_bytes as usize || entries.len() >= limit) {
            return Ok(false);
        }
        bytes += size;
        last = seq;
        entries.push(deliver);
        Ok(true)
    })?;
    let remaining = if entries.is_empty() { 0 } else { head.saturating_sub(last) };
    Ok(InboxPage { entries, remaining, head: Seq(head) })
}

/// The DELIVER of entry `seq`; the rest of the message is in the entry
/// (the body's conv_seq, author and time are the entry's too).
fn deliver(seq: u64, entry: &Entry, sender_device: DeviceId, payload: Bytes) -> Result<Deliver, StoreError> {
    let payload = Payload::new(payload).map_err(|_| StoreError::from(EngineError::StoredPayloadTooLarge))?;
    Ok(Deliver {
        seq: Seq(seq),
        message_id: MessageId(entry.message),
        conversation: entry.view,
        conv_seq: ConvSeq(entry.conv_seq),
        sender: entry.sender,
        sender_device,
        server_time: Timestamp(entry.time),
        payload,
    })
}
