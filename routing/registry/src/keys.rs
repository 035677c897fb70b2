//! Key names and the scripts that change them. Each script touches keys of
//! one hash tag only, so it runs on one shard of a Redis Cluster.

use protocol::UserId;
use redis::Script;

/// The registry's scripts, built once (each `Script` hashes its text for
/// EVALSHA when it is made).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) join: Script,
    pub(crate) renew: Script,
    pub(crate) leave: Script,
    pub(crate) register: Script,
    pub(crate) unregister: Script,
    pub(crate) reclaim: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            join: join(),
            renew: renew(),
            leave: leave(),
            register: register(),
            unregister: unregister(),
            reclaim: reclaim(),
        }
    }
}

use crate::NodeId;

/// A user's placements (one hash per user: all its devices in one slot).
pub(crate) fn user(user: UserId) -> String {
    format!("reg:{{u:{}}}", user.0)
}

/// The nodes with sessions watching a user's presence (same slot as the
/// user's placements).
pub(crate) fn watchers(user: UserId) -> String {
    format!("watch:{{u:{}}}", user.0)
}

/// A node's lease: its current epoch, expiring with the lease.
pub(crate) fn lease(node: NodeId) -> String {
    format!("lease:{{n:{}}}", node.0)
}

/// The address a node's link listener advertises (same slot as its lease).
pub(crate) fn link(node: NodeId) -> String {
    format!("link:{{n:{}}}", node.0)
}

/// A node's epoch counter (same slot as its lease).
pub(crate) fn epoch(node: NodeId) -> String {
    format!("epoch:{{n:{}}}", node.0)
}

/// The hash field of a device.
pub(crate) fn device_field(device: protocol::DeviceId) -> String {
    format!("d:{}", device.0)
}

/// KEYS: epoch, lease, link. ARGV: lease ms, link address. A new epoch,
/// the lease on it, and the address other nodes' links dial.
fn join() -> Script {
    Script::new(
        r"local epoch = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], epoch, 'PX', ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
return epoch",
    )
}

/// KEYS: lease. ARGV: epoch, lease ms. 1 if the lease was ours and is
/// extended; 0 if it is gone or another epoch's (fenced).
fn renew() -> Script {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0",
    )
}

/// KEYS: lease. ARGV: epoch. Ends the lease if it is still ours.
fn leave() -> Script {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
}

/// KEYS: user. ARGV: field, placement, safety TTL ms. Sets the placement;
/// returns the one it replaced (nil if none).
fn register() -> Script {
    Script::new(
        r"local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return old",
    )
}

/// KEYS: user. ARGV: field, placement, this node's prefix (`<node>:`),
/// safety TTL ms, a dead node's placement that may be taken over (or "").
/// Sets the placement unless another node's (other than that dead one) is
/// there now; returns that one (nil when set).
fn reclaim() -> Script {
    Script::new(
        r"local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and cur ~= ARGV[5] and string.sub(cur, 1, string.len(ARGV[3])) ~= ARGV[3] then
  return cur
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return false",
    )
}

/// KEYS: user. ARGV: field, placement. Removes the placement only if it is
/// still exactly this one; 1 if removed.
fn unregister() -> Script {
    Script::new(
        r"if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0",
    )
}
