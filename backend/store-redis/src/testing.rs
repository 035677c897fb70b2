//! Test fixtures (feature `testing`): a long backlog written fast. Each
//! message goes through the engine's own APPEND and ENTER steps (the same
//! Lua functions as the send chain), a thousand at a time inside one script
//! per slot, instead of one chain of round trips per message.

use backend_store::{Connect, Request, StoreError};
use bytes::Bytes;
use protocol::{ConvSeq, Conversation, DeviceId, MessageId, Seq, Timestamp, UserId};
use redis::Script;

use crate::entry::Entry;
use crate::keys;
use crate::scripts::{append_fn, enter_fn, raise_fn};
use crate::store::{corrupt, millis, now_ms, RedisConfig, RedisStore};

/// Appends a run of one sender's messages. KEYS: the conversation's seq
/// key. ARGV: sender, sender device, time, retention (ms), then client id,
/// message id, payload per message. Returns the conv_seqs.
const FILL_APPEND: &str = concat!(
    append_fn!(),
    r"
local prefix = string.sub(KEYS[1], 1, -4)
local out = {}
for i = 5, #ARGV, 3 do
  local dedup = prefix .. 'dd:' .. ARGV[1] .. ':' .. ARGV[2] .. ':' .. ARGV[i]
  local got = append({KEYS[1], dedup}, {ARGV[i + 1], ARGV[1], ARGV[2], ARGV[3], ARGV[i + 2], ARGV[4]})
  table.insert(out, got[1])
end
return out
"
);

/// Enters a run of messages for one user, in order. KEYS: the user's
/// devices, its last-conv_seq hash. ARGV: conversation prefix, retention
/// (ms), then conv_seq, entry without its seq, message id per message.
/// Returns how many entered.
const FILL_ENTER: &str = concat!(
    raise_fn!(),
    enter_fn!(),
    r"
local user = string.sub(KEYS[1], 1, -5)
local entered = 0
for i = 3, #ARGV, 3 do
  local record = user .. 't:' .. ARGV[1] .. ARGV[i]
  local got = enter({KEYS[1], KEYS[2], record}, {ARGV[1], ARGV[i], '', ARGV[i + 1], 0, ARGV[2], ARGV[i + 2]})
  if got[1] == 'ok' then entered = entered + 1 end
end
return entered
"
);

/// Stores `payloads` from `from` to `to` (both devices registered here),
/// in order: the recipient's inbox holds them at seqs 1, 2, ... when it was
/// empty. For a fresh pair, once: client ids start at 1, and only the
/// recipient's order check moves, so the sender's other devices get no
/// copies (a later real send in the pair would bring them in by catch-up).
/// Runs on a thread of its own, so it may be called from async code too.
pub fn fill_direct(
    urls: Vec<String>,
    from: (UserId, DeviceId),
    to: (UserId, DeviceId),
    payloads: &[Bytes],
) -> Result<(), StoreError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| fill_on_this_thread(urls, from, to, payloads))
            .join()
            .map_err(|_| corrupt("fill thread"))?
    })
}

fn fill_on_this_thread(
    urls: Vec<String>,
    from: (UserId, DeviceId),
    to: (UserId, DeviceId),
    payloads: &[Bytes],
) -> Result<(), StoreError> {
    let store = RedisStore::connect(RedisConfig::new(urls))?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|_| corrupt("runtime"))?;
    runtime.block_on(async {
        for (user, device) in [from, to] {
            store.handle(Request::Connect(Connect { user, device })).await?;
        }
        let view = Conversation::Direct(to.0);
        let conv = keys::conversation(from.0, view);
        let retention = millis(store.inner.config.retention);
        let (append, enter) = (Script::new(FILL_APPEND), Script::new(FILL_ENTER));
        let mut client_id = 0u64;
        for chunk in payloads.chunks(1_000) {
            let now = now_ms();
            let mut call = append.prepare_invoke();
            call.key(keys::conv_seq(&conv)).arg(from.0 .0).arg(from.1 .0).arg(now).arg(retention);
            let mut ids = Vec::with_capacity(chunk.len());
            for payload in chunk {
                client_id += 1;
                let id = store.next_id(now)?;
                ids.push(id);
                call.arg(client_id).arg(id).arg(payload.as_ref());
            }
            let conv_seqs: Vec<u64> = store.invoke(call).await?;
            let mut call = enter.prepare_invoke();
            call.key(keys::devices(to.0)).key(keys::last_conv_seqs(to.0)).arg(&conv).arg(retention);
            for (&conv_seq, &id) in conv_seqs.iter().zip(&ids) {
                let entry = Entry {
                    seq: Seq(0),
                    id: MessageId(id),
                    conv: conv.clone(),
                    conv_seq: ConvSeq(conv_seq),
                    view: Conversation::Direct(from.0),
                    sender: from.0,
                    sender_device: from.1,
                    time: Timestamp(now),
                };
                call.arg(conv_seq).arg(entry.unsequenced()).arg(id);
            }
            let entered: usize = store.invoke(call).await?;
            if entered != chunk.len() {
                return Err(corrupt("fill: entries out of order"));
            }
        }
        Ok(())
    })
}
