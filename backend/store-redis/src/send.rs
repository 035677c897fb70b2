//! Send: the chain of steps in REDIS.md ("Send: the chain and why it
//! cannot be half-delivered"): claim in the sender's slot, append in the
//! conversation's slot, enter in each recipient user's slot (with the order
//! check and its catch-up), then the sender's own devices and the dedup
//! record made final. Every step is idempotent, so a retry (or the next
//! sender to the conversation) rolls an interrupted chain forward.

use backend_store::{Delivery, EngineError, Message, SendMessage, Sent, StoreError};
use bytes::Bytes;
use protocol::{ConvSeq, Conversation, DeviceId, GroupId, MessageId, ReceiptKind, Seq, Timestamp, UserId};

use crate::cursors::{mailbox_field, Move};
use crate::entry::{parse_view, view_text, Entry};
use crate::groups::parse_members;
use crate::keys;
use crate::store::{corrupt, millis, now_ms, value, RedisStore};

/// What the append step answered.
pub(crate) struct Appended {
    pub(crate) conv_seq: u64,
    pub(crate) fresh: bool,
    pub(crate) id: u64,
    pub(crate) time: u64,
}

impl RedisStore {
    pub(crate) async fn send(&self, req: SendMessage) -> Result<Sent, StoreError> {
        if req.payload.len() > protocol::limits::MAX_PAYLOAD {
            return Err(StoreError::Engine(EngineError::PayloadTooLarge));
        }
        let ttl = millis(self.inner.config.retention);
        // Step 1, claim: a retry finds the record of the first attempt. It
        // runs beside the check that a pair's peer exists (another slot).
        let dedup = keys::dedup(req.user, req.device, req.client_id);
        let mut claim = redis::cmd("SET");
        claim.arg(&dedup).arg(format!("p {}", view_text(req.to))).arg("NX").arg("PX").arg(ttl).arg("GET");
        let peer = match req.to {
            Conversation::Direct(peer) if peer != req.user => Some(peer),
            _ => None,
        };
        let exists = async {
            let Some(peer) = peer else { return Ok(true) };
            // A script, not EXISTS: the cluster client sends EXISTS to every
            // shard its keys name and sums the answers, and while a master
            // fails over that sum answered 0 for a registered user (an
            // UNKNOWN_RECIPIENT a client takes for good). A script goes to
            // the key's master or fails.
            let mut call = self.inner.scripts.exists.prepare_invoke();
            call.key(keys::devices(peer));
            self.invoke::<bool>(call).await
        };
        let (exists, earlier) = tokio::join!(exists, self.query::<Option<String>>(&claim));
        let earlier = earlier?;
        if let (false, Some(peer)) = (exists?, peer) {
            if earlier.is_none() {
                self.unclaim(&dedup).await;
            }
            return Err(StoreError::UnknownRecipient(peer));
        }
        let to = match earlier.as_deref() {
            Some(done) if done.starts_with("d ") => return self.duplicate(&req, done).await,
            Some(pending) => parse_view(pending.strip_prefix("p ").unwrap_or_default())
                .ok_or_else(|| corrupt("dedup record"))?,
            None => req.to,
        };
        // Step 2, append: the message and its conv_seq, once; and who gets it
        // (each with the first conv_seq of its membership, 0 in a pair).
        let conv = keys::conversation(req.user, to);
        let (appended, recipients) = match self.append_to(&req, to, &conv).await {
            Ok(appended) => appended,
            Err(err) => {
                self.unclaim(&dedup).await;
                return Err(err);
            }
        };
        // With replicas, the message is on them before any user's order
        // check moves past its conv_seq: a failover of the conversation's
        // master can then not hand that conv_seq out again (REDIS.md,
        // "Durability").
        self.durable(&[keys::message(&conv, appended.conv_seq)]).await?;
        // Step 3, enter: every recipient's devices (the sending one aside).
        // Sending moves the author's read cursor to the message (SPEC §6.4):
        // a pair's peer hears it in the same step.
        let entry = entry_of(&req, to, conv.clone(), &appended);
        let moved = Move {
            user: req.user,
            device: Some(req.device),
            view: to,
            kind: ReceiptKind::Read,
            up_to: appended.conv_seq,
            at: now_ms(),
        };
        let receipt = matches!(to, Conversation::Direct(peer) if peer != req.user).then(|| PeerReceipt {
            field: mailbox_field(Conversation::Direct(req.user), req.user, ReceiptKind::Read),
            up_to: moved.up_to,
            at: moved.at,
        });
        let deliveries = self.enter_all(&entry, &recipients, receipt.as_ref()).await?;
        // Step 4, finish, with the author's own cursor: the record says what
        // was stored, for retries.
        let record = format!("d {} {} {} {}", conv, appended.conv_seq, appended.id, appended.time);
        let receipts = match self.move_own(&moved, Some((&dedup, &record))).await? {
            Some(from) => self.receipts(&moved, from, true).await?,
            None => Vec::new(),
        };
        // Step 5: on the replicas asked for, before the ack.
        self.durable(&durable_keys(Some(&dedup), &conv, appended.conv_seq, &deliveries)).await?;
        let message = Message {
            id: MessageId(appended.id),
            conv_seq: ConvSeq(appended.conv_seq),
            sender: req.user,
            sender_device: req.device,
            server_time: Timestamp(appended.time),
            payload: req.payload,
        };
        Ok(Sent { message, duplicate: !appended.fresh, deliveries, receipts })
    }

    /// Step 2 to `to` (its key prefix `conv`): the appended message, and
    /// who gets it, each with the first conv_seq of its membership (0 in a
    /// pair).
    async fn append_to(
        &self,
        req: &SendMessage,
        to: Conversation,
        conv: &str,
    ) -> Result<(Appended, Vec<(UserId, u64)>), StoreError> {
        match to {
            Conversation::Direct(peer) => {
                let (appended, _) = self.append(req, conv, None).await?;
                let mut recipients = vec![(req.user, 0)];
                if peer != req.user {
                    recipients.push((peer, 0));
                }
                Ok((appended, recipients))
            }
            Conversation::Group(group) => self.append_group(req, conv, group).await,
        }
    }

    /// Step 2: the message at the conversation's next conv_seq, or the one
    /// an earlier attempt of the same (device, client id) got; for a group
    /// (its record's key in `group`), only from a member, with the members
    /// (`user:role:join ...`).
    pub(crate) async fn append(
        &self,
        req: &SendMessage,
        conv: &str,
        group: Option<GroupId>,
    ) -> Result<(Appended, String), StoreError> {
        let now = now_ms();
        let mut call = self.inner.scripts.append.prepare_invoke();
        call.key(keys::conv_seq(conv)).key(keys::appended(conv, req.user, req.device, req.client_id));
        if group.is_some() {
            call.key(keys::group_info(conv));
        }
        call.arg(self.next_id(now)?)
            .arg(req.user.0)
            .arg(req.device.0)
            .arg(now)
            .arg(req.payload.as_ref())
            .arg(millis(self.inner.config.retention));
        let answer: Vec<redis::Value> = self.invoke(call).await?;
        let mut items = answer.into_iter();
        let mut next = || items.next().ok_or_else(|| corrupt("append answer"));
        let conv_seq: i64 = value(next()?)?;
        match (conv_seq, group) {
            (-1, Some(group)) => return Err(StoreError::UnknownGroup(group)),
            (-2, Some(group)) => return Err(StoreError::NotAMember(group)),
            _ => {}
        }
        let conv_seq = u64::try_from(conv_seq).map_err(|_| corrupt("append answer"))?;
        let fresh: u8 = value(next()?)?;
        let (id, time): (u64, u64) = (value(next()?)?, value(next()?)?);
        let members: String = value(next()?)?;
        Ok((Appended { conv_seq, fresh: fresh == 1, id, time }, members))
    }

    /// Enters `entry` in every device of `user` but `skip`, after any
    /// earlier conv_seq of the conversation that has not entered yet (the
    /// order check's catch-up). Returns the deliveries made for `entry`:
    /// those made now, or, if an earlier attempt or another sender's
    /// catch-up made them, those recorded with them.
    async fn enter(
        &self,
        user: UserId,
        entry: &Entry,
        skip: Option<DeviceId>,
        from: u64,
        receipt: Option<&PeerReceipt>,
    ) -> Result<Vec<Delivery>, StoreError> {
        loop {
            match self.enter_once(user, entry, skip, from, receipt).await? {
                Entered::Now(deliveries) => return Ok(deliveries),
                Entered::Behind(last) => {
                    for conv_seq in last + 1..entry.conv_seq.0 {
                        self.catch_up(user, &entry.conv, conv_seq, from).await?;
                    }
                }
            }
        }
    }

    /// Enters `entry` for every recipient (user, first conv_seq of its
    /// membership), several at a time (a group has up to 1,024 members);
    /// the sender's own device is skipped, and a pair's peer gets `receipt`.
    pub(crate) async fn enter_all(
        &self,
        entry: &Entry,
        recipients: &[(UserId, u64)],
        receipt: Option<&PeerReceipt>,
    ) -> Result<Vec<Delivery>, StoreError> {
        const AT_ONCE: usize = 64;
        let mut deliveries = Vec::new();
        for chunk in recipients.chunks(AT_ONCE) {
            let mut tasks = tokio::task::JoinSet::new();
            for &(user, from) in chunk {
                let (store, mut entry) = (self.clone(), entry.clone());
                entry.view = view_of(&entry.conv, user).ok_or_else(|| corrupt("conversation key"))?;
                let skip = (user == entry.sender).then_some(entry.sender_device);
                let receipt = receipt.filter(|_| user != entry.sender).cloned();
                tasks.spawn(async move { store.enter(user, &entry, skip, from, receipt.as_ref()).await });
            }
            while let Some(done) = tasks.join_next().await {
                deliveries.extend(done.map_err(|_| corrupt("enter task"))??);
            }
        }
        Ok(deliveries)
    }

    /// Drops a claim whose append was refused (not a member, an unknown
    /// group): nothing was stored, and a later send may use the id.
    async fn unclaim(&self, dedup: &str) {
        let mut del = redis::cmd("DEL");
        del.arg(dedup);
        let _ = self.query::<()>(&del).await;
    }

    /// One attempt of the enter script: what it entered (now, or before and
    /// recorded), or the conv_seq the order check is behind at.
    async fn enter_once(
        &self,
        user: UserId,
        entry: &Entry,
        skip: Option<DeviceId>,
        from: u64,
        receipt: Option<&PeerReceipt>,
    ) -> Result<Entered, StoreError> {
        let mut call = self.inner.scripts.enter.prepare_invoke();
        call.key(keys::devices(user))
            .key(keys::last_conv_seqs(user))
            .key(keys::record(user, &entry.conv, entry.conv_seq.0))
            .arg(&entry.conv)
            .arg(entry.conv_seq.0)
            .arg(skip.map_or(String::new(), |d| d.0.to_string()))
            .arg(entry.unsequenced())
            .arg(from)
            .arg(millis(self.inner.config.retention))
            .arg(entry.id.0);
        if let Some(receipt) = receipt {
            call.key(keys::mailbox(user)).arg(&receipt.field).arg(receipt.up_to).arg(receipt.at);
        }
        let answer: Vec<redis::Value> = self.invoke(call).await?;
        let mut values = answer.into_iter();
        let status: String = values.next().map(value).transpose()?.unwrap_or_default();
        match status.as_str() {
            "ok" | "have" => {
                let rest: Vec<u64> = values.map(value).collect::<Result<_, _>>()?;
                Ok(Entered::Now(deliveries(user, entry.view, &rest)))
            }
            "behind" => {
                let last: u64 = values.next().map(value).transpose()?.unwrap_or(0);
                Ok(Entered::Behind(last))
            }
            // The record at this conv_seq is another message's: the
            // conversation's master lost writes (REDIS.md, "Durability").
            "moved" => {
                let last: u64 = values.next().map(value).transpose()?.unwrap_or(0);
                let other: u64 = values.next().map(value).transpose()?.unwrap_or(0);
                Err(StoreError::Engine(EngineError::Database {
                    message: format!(
                        "conversation {} went back: conv_seq {} of message {} was message {other}'s for user {} \
                         (at {last})",
                        entry.conv, entry.conv_seq.0, entry.id.0, user.0
                    ),
                }))
            }
            _ => Err(corrupt("enter answer")),
        }
    }

    /// Enters, for `user`, the message at `conv_seq` that its sender's chain
    /// has not brought here yet (read back from the conversation's slot).
    async fn catch_up(&self, user: UserId, conv: &str, conv_seq: u64, from: u64) -> Result<(), StoreError> {
        let mut read = redis::cmd("HMGET");
        read.arg(keys::message(conv, conv_seq)).arg("id").arg("snd").arg("dev").arg("t");
        let fields: Vec<Option<u64>> = self.query(&read).await?;
        let [Some(id), Some(sender), Some(device), Some(time)] = fields[..] else {
            // Expired meanwhile: nothing left to enter; step over it.
            return self.step_over(user, conv, conv_seq).await;
        };
        let device = u32::try_from(device).map_err(|_| corrupt("sender device"))?;
        let (sender, device) = (UserId(sender), DeviceId(device));
        let entry = Entry {
            seq: Seq(0),
            id: MessageId(id),
            conv: conv.to_owned(),
            conv_seq: ConvSeq(conv_seq),
            view: view_of(conv, user).ok_or_else(|| corrupt("conversation key"))?,
            sender,
            sender_device: device,
            time: Timestamp(time),
        };
        let skip = (sender == user).then_some(device);
        match self.enter_once(user, &entry, skip, from, None).await? {
            Entered::Now(_) => Ok(()),
            Entered::Behind(_) => Err(corrupt("catch-up out of order")),
        }
    }

    /// Moves the order check past a conv_seq whose message expired.
    async fn step_over(&self, user: UserId, conv: &str, conv_seq: u64) -> Result<(), StoreError> {
        let mut call = self.inner.scripts.step.prepare_invoke();
        call.key(keys::last_conv_seqs(user)).arg(conv).arg(conv_seq);
        self.invoke(call).await
    }

    /// The answer to a retry of a finished send: the original message, and
    /// its entries not acked yet (issue 14: they are fanned out again), from
    /// the enter step run again for each recipient (it is idempotent, and
    /// re-enters an entry a failover lost). A group's recipients are its
    /// members now: one who left since is not fanned out again (its entry
    /// stays in its inbox, for its next sync).
    async fn duplicate(&self, req: &SendMessage, record: &str) -> Result<Sent, StoreError> {
        let mut fields = record.split(' ').skip(1);
        let (Some(conv), Some(conv_seq), Some(id), Some(time)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(corrupt("dedup record"));
        };
        let parse = |text: &str| text.parse::<u64>().map_err(|_| corrupt("dedup record"));
        let (conv_seq, id, time) = (parse(conv_seq)?, parse(id)?, parse(time)?);
        let payload: Option<Bytes> = self.get_field(&keys::message(conv, conv_seq), "p").await?;
        let view = view_of(conv, req.user).ok_or_else(|| corrupt("dedup record"))?;
        let recipients: Vec<(UserId, u64)> = match view {
            Conversation::Direct(peer) if peer == req.user => vec![(peer, 0)],
            Conversation::Direct(peer) => vec![(req.user, 0), (peer, 0)],
            Conversation::Group(_) => {
                let members: Option<String> = self.get_field(&keys::group_info(conv), "mem").await?;
                let members = parse_members(members.as_deref().unwrap_or_default())
                    .ok_or_else(|| corrupt("group members"))?;
                members.into_iter().map(|(user, _, join)| (user, join)).collect()
            }
        };
        // The enter step again: it answers from each user's record (the
        // entries not acked yet), and enters again what a failover lost
        // after the first attempt wrote `done`.
        let entry = Entry {
            seq: Seq(0),
            id: MessageId(id),
            conv: conv.to_owned(),
            conv_seq: ConvSeq(conv_seq),
            view,
            sender: req.user,
            sender_device: req.device,
            time: Timestamp(time),
        };
        let pending = self.enter_all(&entry, &recipients, None).await?;
        let dedup = keys::dedup(req.user, req.device, req.client_id);
        self.durable(&durable_keys(Some(&dedup), conv, conv_seq, &pending)).await?;
        let message = Message {
            id: MessageId(id),
            conv_seq: ConvSeq(conv_seq),
            sender: req.user,
            sender_device: req.device,
            server_time: Timestamp(time),
            payload: payload.unwrap_or_default(),
        };
        Ok(Sent { message, duplicate: true, deliveries: pending, receipts: Vec::new() })
    }
}

/// The author's read receipt that a pair's peer gets in its enter step: the
/// mailbox field, the cursor and when it moved.
#[derive(Debug, Clone)]
pub(crate) struct PeerReceipt {
    field: String,
    up_to: u64,
    at: u64,
}

/// A key in each slot a send (or group change) wrote that must be there
/// now (for `durable`): its dedup record, the message, and the record of
/// each user it has entries for.
pub(crate) fn durable_keys(
    dedup: Option<&str>,
    conv: &str,
    conv_seq: u64,
    deliveries: &[Delivery],
) -> Vec<String> {
    let mut keys: Vec<String> = dedup.into_iter().map(str::to_owned).collect();
    keys.push(keys::message(conv, conv_seq));
    keys.extend(deliveries.iter().map(|d| keys::record(d.user, conv, conv_seq)));
    keys.dedup();
    keys
}

/// The inbox entry (without its seq) of `req`'s message, appended to `to`
/// (key prefix `conv`).
fn entry_of(req: &SendMessage, to: Conversation, conv: String, appended: &Appended) -> Entry {
    Entry {
        seq: Seq(0),
        id: MessageId(appended.id),
        conv,
        conv_seq: ConvSeq(appended.conv_seq),
        view: to,
        sender: req.user,
        sender_device: req.device,
        time: Timestamp(appended.time),
    }
}

/// `user`'s deliveries from a script's `device, seq, ...` answer.
fn deliveries(user: UserId, conversation: Conversation, pairs: &[u64]) -> Vec<Delivery> {
    pairs
        .chunks_exact(2)
        .filter_map(|pair| match *pair {
            [device, seq] => Some(Delivery {
                user,
                device: DeviceId(u32::try_from(device).ok()?),
                seq: Seq(seq),
                conversation,
            }),
            _ => None,
        })
        .collect()
}

/// What one enter attempt did.
enum Entered {
    /// Entered, now or before (a retry, or another sender's catch-up), with
    /// these deliveries.
    Now(Vec<Delivery>),
    /// Earlier conv_seqs must enter first: the last one that did.
    Behind(u64),
}

/// The conversation whose key prefix is `conv` (`{p:A:B}:` or `{g:G}:`) as
/// `user` names it; `None` for a prefix that is neither.
pub(crate) fn view_of(conv: &str, user: UserId) -> Option<Conversation> {
    if let Some(group) = conv.strip_prefix("{g:").and_then(|rest| rest.strip_suffix("}:")) {
        return Some(Conversation::Group(protocol::GroupId(group.parse().ok()?)));
    }
    let inner = conv.strip_prefix("{p:")?.strip_suffix("}:")?;
    let (a, b) = inner.split_once(':')?;
    let (a, b) = (UserId(a.parse().ok()?), UserId(b.parse().ok()?));
    Some(Conversation::Direct(if user == a { b } else { a }))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RedisStore {
        /// Steps 1 and 2 of a send, and step 3 for its first `entered`
        /// recipients only: a store instance that died in the middle of
        /// the chain.
        pub(crate) async fn send_interrupted(&self, req: &SendMessage, entered: usize) -> u64 {
            let mut claim = redis::cmd("SET");
            claim
                .arg(keys::dedup(req.user, req.device, req.client_id))
                .arg(format!("p {}", view_text(req.to)));
            self.query::<()>(&claim).await.unwrap();
            let conv = keys::conversation(req.user, req.to);
            let (appended, recipients) = self.append_to(req, req.to, &conv).await.unwrap();
            let entry = entry_of(req, req.to, conv, &appended);
            self.enter_all(&entry, &recipients[..entered], None).await.unwrap();
            appended.conv_seq
        }
    }

    #[test]
    fn conversation_keys_name_the_view() {
        let direct = |user| Some(Conversation::Direct(UserId(user)));
        assert_eq!(view_of("{p:3:9}:", UserId(3)), direct(9));
        assert_eq!(view_of("{p:3:9}:", UserId(9)), direct(3));
        assert_eq!(view_of("{p:4:4}:", UserId(4)), direct(4));
        assert_eq!(view_of("{g:4}:", UserId(4)), Some(Conversation::Group(protocol::GroupId(4))));
        assert_eq!(view_of("{x:4}:", UserId(4)), None);
        let devices = deliveries(UserId(5), direct(3).unwrap(), &[2, 17, 4, 18]);
        assert_eq!(
            devices.iter().map(|d| (d.device, d.seq)).collect::<Vec<_>>(),
            [(DeviceId(2), Seq(17)), (DeviceId(4), Seq(18))]
        );
        assert_eq!(
            parse_view(&view_text(Conversation::Direct(UserId(8)))),
            Some(Conversation::Direct(UserId(8)))
        );
    }
}
