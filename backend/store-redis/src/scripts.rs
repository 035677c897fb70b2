//! The engine's Lua scripts: each is one atomic step on one slot
//! (REDIS.md). Keys a script derives from its first key share that key's
//! hash tag, so they live in the same slot.

use redis::Script;

/// The scripts, each built once (a `Script` hashes its text for EVALSHA).
pub(crate) struct Scripts {
    pub(crate) connect: Script,
    pub(crate) append: Script,
    pub(crate) enter: Script,
    pub(crate) read: Script,
    pub(crate) ack: Script,
    pub(crate) raise: Script,
    pub(crate) exists: Script,
    pub(crate) cursor: Script,
    pub(crate) senders: Script,
    pub(crate) prekey_upload: Script,
    pub(crate) prekey_take: Script,
    pub(crate) group_write: Script,
    pub(crate) step: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            connect: Script::new(CONNECT),
            append: Script::new(APPEND),
            enter: Script::new(ENTER),
            read: Script::new(READ),
            ack: Script::new(ACK),
            raise: Script::new(RAISE),
            exists: Script::new(EXISTS),
            cursor: Script::new(CURSOR),
            senders: Script::new(SENDERS),
            prekey_upload: Script::new(PREKEY_UPLOAD),
            prekey_take: Script::new(PREKEY_TAKE),
            group_write: Script::new(GROUP_WRITE),
            step: Script::new(STEP),
        }
    }
}

/// Registers the device (up to the limit) and records the connect time.
/// KEYS: devices, device state, the device's keys, its one-time keys.
/// ARGV: device, max devices, now (ms). Returns {0} at the limit, else {1,
/// head, acked, previous connect, one-time stock or -1 without keys}.
const CONNECT: &str = r"
local d = ARGV[1]
if redis.call('SISMEMBER', KEYS[1], d) == 0 then
  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {0} end
  redis.call('SADD', KEYS[1], d)
end
local st = redis.call('HMGET', KEYS[2], 'head', 'acked', 'conn')
redis.call('HSET', KEYS[2], 'conn', ARGV[3])
local stock = -1
if redis.call('EXISTS', KEYS[3]) == 1 then stock = redis.call('HLEN', KEYS[4]) end
return {1, tonumber(st[1] or '0'), tonumber(st[2] or '0'), tonumber(st[3] or '0'), stock}
";

/// Step 2: the message gets the conversation's next conv_seq, once per
/// (sender device, client id). KEYS: the conversation's seq key, the
/// append's dedup key, and for a group its record. ARGV: id, sender, sender
/// device, time, payload, retention (ms). Returns {-1} for no such group,
/// {-2} for a sender not a member, else {conv_seq, 1 if appended now, id,
/// time, the group's members (`user:role:join ...`) or ''}.
/// Written as the Lua function `append(KEYS, ARGV)`, which the test fill
/// (`testing.rs`) calls too.
macro_rules! append_fn {
    () => {
        r"
local function append(KEYS, ARGV)
  local members = ''
  if #KEYS == 3 then
    members = redis.call('HGET', KEYS[3], 'mem')
    if not members then return {-1} end
  end
  local prefix = string.sub(KEYS[1], 1, -4)
  -- A retry finds its conv_seq first: a sender who left the group since is
  -- still answered with the message it stored.
  local s = redis.call('GET', KEYS[2])
  local fresh = 0
  if not s then
    if #KEYS == 3 and not string.find(' ' .. members, ' ' .. ARGV[2] .. ':', 1, true) then return {-2} end
    s = redis.call('INCR', KEYS[1])
    local m = prefix .. 'm:' .. s
    redis.call('HSET', m, 'id', ARGV[1], 'snd', ARGV[2], 'dev', ARGV[3], 't', ARGV[4], 'p', ARGV[5])
    redis.call('PEXPIRE', m, ARGV[6])
    redis.call('SET', KEYS[2], s, 'PX', ARGV[6])
    fresh = 1
  end
  local got = redis.call('HMGET', prefix .. 'm:' .. s, 'id', 't')
  return {tonumber(s), fresh, got[1], got[2], members}
end
"
    };
}
#[cfg(feature = "testing")]
pub(crate) use append_fn;

const APPEND: &str = concat!(append_fn!(), "return append(KEYS, ARGV)\n");

/// A cursor (or mailbox field) that only moves up, as Lua: `raise(key,
/// field, up_to, at)` sets the field to `up_to at` if `up_to` is above what
/// it holds, and returns the value it moved from (0: none), or -1 if it did
/// not move. Shared by the scripts that move cursors.
macro_rules! raise_fn {
    () => {
        r"
local function raise(key, field, up_to, at)
  local old = redis.call('HGET', key, field)
  local from = 0
  if old then from = tonumber(string.match(old, '^(%d+)')) end
  if from >= tonumber(up_to) then return -1 end
  redis.call('HSET', key, field, up_to .. ' ' .. at)
  return from
end
"
    };
}
#[cfg(feature = "testing")]
pub(crate) use raise_fn;

/// Step 3: the entry of conv_seq S enters every device's inbox of the user
/// (but the sending device), only if S is the next conv_seq the user should
/// see in that conversation (the order check), trimming entries past the
/// retention from the front of each inbox; and what it entered is
/// recorded in the same step (`id device seq ...`, for a retry's answer).
/// In a pair, the author's read receipt goes to the user's mailbox too.
/// KEYS: the user's devices, its last-conv_seq hash, the record of this
/// message's entries, and (a pair) the user's mailbox.
/// ARGV: conversation prefix, S, device to skip (or ''), the entry without
/// its seq, the first conv_seq of the user's membership (a group's join; 0
/// in a pair), retention (ms), the message id, and (a pair) the mailbox
/// field, up_to and time.
/// Returns {'ok', device, seq, ...}; {'have', device, seq, ...} (entered
/// before, or from before the membership: the record's entries not acked
/// yet); {'behind', last} (the conv_seqs after `last` must enter first); or
/// {'moved', last, id} (the record is message `id`'s: the conversation's
/// seq went back).
/// Written as the Lua function `enter(KEYS, ARGV)` (after `raise_fn`),
/// which the test fill (`testing.rs`) calls too.
macro_rules! enter_fn {
    () => {
        r"
local function enter(KEYS, ARGV)
  if #KEYS == 4 then raise(KEYS[4], ARGV[8], ARGV[9], ARGV[10]) end
  local p = string.sub(KEYS[1], 1, -5)
  local S = tonumber(ARGV[2])
  local expected = math.max(tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') + 1, tonumber(ARGV[5]))
  if S < expected then
    local out = {'have'}
    local record = redis.call('GET', KEYS[3])
    if not record then return out end
    local id = string.match(record, '^(%d+)')
    if id ~= ARGV[7] then return {'moved', expected - 1, id} end
    for d, seq in string.gmatch(record, ' (%d+) (%d+)') do
      if tonumber(redis.call('HGET', p .. 'd:' .. d, 'acked') or '0') < tonumber(seq) then
        table.insert(out, d)
        table.insert(out, seq)
      end
    end
    return out
  end
  if S > expected then return {'behind', expected - 1} end
  local out = {'ok'}
  local record = ARGV[7]
  -- Retention: the entry's time is its last field.
  local cutoff = tonumber(string.match(ARGV[4], '(%d+)$')) - tonumber(ARGV[6])
  for _, d in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if d ~= ARGV[3] then
      local seq = redis.call('HINCRBY', p .. 'd:' .. d, 'head', 1)
      local inbox = p .. 'in:' .. d
      -- Entries past the retention leave from the front, a few per append,
      -- and a list nothing is appended to expires whole.
      for _ = 1, 4 do
        local first = redis.call('LINDEX', inbox, 0)
        if not first or tonumber(string.match(first, '(%d+)$')) > cutoff then break end
        redis.call('LPOP', inbox)
      end
      redis.call('RPUSH', inbox, seq .. ' ' .. ARGV[4])
      redis.call('PEXPIRE', inbox, ARGV[6])
      table.insert(out, d)
      table.insert(out, seq)
      record = record .. ' ' .. d .. ' ' .. seq
    end
  end
  redis.call('HSET', KEYS[2], ARGV[1], S)
  if #out > 1 then redis.call('SET', KEYS[3], record, 'PX', ARGV[6]) end
  return out
end
"
    };
}
#[cfg(feature = "testing")]
pub(crate) use enter_fn;

const ENTER: &str = concat!(raise_fn!(), enter_fn!(), "return enter(KEYS, ARGV)\n");

/// A window of a device's inbox. KEYS: device state, inbox list. ARGV:
/// after, limit. Returns {head, entry, ...} (entries in seq order).
const READ: &str = r"
local head = tonumber(redis.call('HGET', KEYS[1], 'head') or '0')
local out = {head}
if tonumber(ARGV[1]) >= head then return out end
local first = redis.call('LINDEX', KEYS[2], 0)
if not first then return out end
local start = tonumber(ARGV[1]) + 1 - tonumber(string.match(first, '^(%d+)'))
if start < 0 then start = 0 end
for _, e in ipairs(redis.call('LRANGE', KEYS[2], start, start + tonumber(ARGV[2]) - 1)) do
  table.insert(out, e)
end
return out
";

/// Cumulative ack: entries up to n (clamped to the head) leave the inbox.
/// KEYS: device state, inbox list. ARGV: n. Returns the entries removed.
const ACK: &str = r"
local st = redis.call('HMGET', KEYS[1], 'head', 'acked')
local head = tonumber(st[1] or '0')
local acked = tonumber(st[2] or '0')
local n = math.min(tonumber(ARGV[1]), head)
if n <= acked then return {} end
redis.call('HSET', KEYS[1], 'acked', n)
local first = redis.call('LINDEX', KEYS[2], 0)
if not first then return {} end
local count = n + 1 - tonumber(string.match(first, '^(%d+)'))
if count <= 0 then return {} end
return redis.call('LPOP', KEYS[2], count)
";

/// A cursor or mailbox field that only moves up (`raise_fn`). KEYS: the
/// hash. ARGV: field, up_to, at. Returns the value it moved from (0: none),
/// or -1 if it did not move.
const RAISE: &str = concat!(raise_fn!(), "return raise(KEYS[1], ARGV[1], ARGV[2], ARGV[3])\n");

/// Whether a key exists, on its slot's master. KEYS: the key.
const EXISTS: &str = "return redis.call('EXISTS', KEYS[1])";

/// A user's own cursor moved, in one step of the user's slot: the cursor,
/// the copy for the user's other devices (a read cursor), and for a send
/// the dedup record made final (step 4). KEYS: the user's cursors, its
/// mailbox, and (a send) the dedup record. ARGV: cursor field, up_to, at,
/// the mailbox field ('' for none), and (a send) the record and retention
/// (ms). Returns what `raise` returned for the cursor.
const CURSOR: &str = concat!(
    raise_fn!(),
    r"
local from = raise(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
if from >= 0 and ARGV[4] ~= '' then raise(KEYS[2], ARGV[4], ARGV[2], ARGV[3]) end
if #KEYS == 3 then redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6]) end
return from
"
);

/// The authors of a group's messages `from..=to` (not `user`, not system
/// entries), each once, in a single step of the group's slot. KEYS: the
/// group's seq key (it names the slot). ARGV: conversation prefix, from,
/// to, user. Returns the authors' ids.
const SENDERS: &str = r"
local seen, out = {}, {}
for s = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  local f = redis.call('HMGET', ARGV[1] .. 'm:' .. s, 'snd', 'dev')
  if f[1] and f[2] and f[2] ~= '0' and f[1] ~= ARGV[4] and not seen[f[1]] then
    seen[f[1]] = true
    table.insert(out, f[1])
  end
end
return out
";

/// PREKEY_UPLOAD: the identity key and signed prekey replaced, one-time
/// keys added (an id already stored is replaced). KEYS: the device's keys,
/// its one-time keys (id → key), their ids (a sorted set). ARGV: identity
/// key, signed prekey id, signed prekey, signature, then id, key, ...
/// Returns the one-time stock.
const PREKEY_UPLOAD: &str = r"
redis.call('HSET', KEYS[1], 'ik', ARGV[1], 'sid', ARGV[2], 'spk', ARGV[3], 'sig', ARGV[4])
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i])
end
return redis.call('HLEN', KEYS[2])
";

/// PREKEY_FETCH of one device: its bundle, consuming the lowest one-time
/// key. KEYS as for the upload. Returns {} without keys, else {identity
/// key, signed prekey id, signed prekey, signature, stock left, one-time id
/// or -1, one-time key or ''}.
const PREKEY_TAKE: &str = r"
local keys = redis.call('HMGET', KEYS[1], 'ik', 'sid', 'spk', 'sig')
if not keys[1] then return {} end
local id, key = -1, ''
local lowest = redis.call('ZPOPMIN', KEYS[3])
if lowest[1] then
  id = tonumber(lowest[1])
  key = redis.call('HGET', KEYS[2], lowest[1])
  redis.call('HDEL', KEYS[2], lowest[1])
end
return {keys[1], keys[2], keys[3], keys[4], redis.call('HLEN', KEYS[2]), id, key}
";

/// A group change, if the group is still at the version it was read at: the
/// new record and its system entry at the next conv_seq (members who join
/// now have `*` for their join, which becomes that conv_seq).
/// KEYS: the group's info, its seq key. ARGV: version read (0: none), new
/// version, name, members, id, actor, time, payload, retention (ms).
/// Returns {0} if the group changed meanwhile, else {1, conv_seq, members}.
const GROUP_WRITE: &str = r"
if tonumber(redis.call('HGET', KEYS[1], 'v') or '0') ~= tonumber(ARGV[1]) then return {0} end
local s = redis.call('INCR', KEYS[2])
local members = string.gsub(ARGV[4], '%*', tostring(s))
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'name', ARGV[3], 'mem', members)
local m = string.sub(KEYS[2], 1, -4) .. 'm:' .. s
redis.call('HSET', m, 'id', ARGV[5], 'snd', ARGV[6], 'dev', 0, 't', ARGV[7], 'p', ARGV[8])
redis.call('PEXPIRE', m, ARGV[9])
return {1, s, members}
";

/// Moves the order check past a conv_seq whose message expired, never
/// back (a concurrent enter may be further on). KEYS: the user's
/// last-conv_seq hash. ARGV: conversation prefix, conv_seq.
const STEP: &str = r"
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0
";
