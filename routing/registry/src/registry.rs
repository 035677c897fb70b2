//! [`Registry`]: the calls a node makes, over one multiplexed connection
//! (a single server's `ConnectionManager`, which reconnects by itself, or a
//! Redis Cluster connection, which follows the slot map and is rebuilt from
//! the seeds when calls keep failing: `conn`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::{DeviceId, UserId};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

use crate::conn::{Connect, Healing};
use crate::keys::{self, Scripts};
use crate::{Epoch, NodeId};

/// How a node talks to the registry.
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest wait for any one call (connecting included): past it the call
    /// fails with [`RegistryError::Timeout`] and the caller degrades (live
    /// delivery falls back to the next sync).
    pub timeout: Duration,
    /// A node's lease: renew well within it (a third is the usual cadence).
    pub lease: Duration,
    /// How long a user's placements outlive their last registration
    /// (bounds what a user never looked up again leaves behind; a session
    /// open longer than this is re-registered by its node's periodic
    /// refresh).
    pub safety_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(500),
            lease: Duration::from_secs(10),
            safety_ttl: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Where a device's session lives: the node, the node's epoch when it
/// registered it, and the node's own id for the session (unique within the
/// node's epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Placement {
    /// The node.
    pub node: NodeId,
    /// Its epoch at registration.
    pub epoch: Epoch,
    /// The session on that node.
    pub session: u64,
}

impl Placement {
    fn encode(self) -> String {
        format!("{}:{}:{}", self.node.0, self.epoch.0, self.session)
    }

    fn decode(text: &str) -> Result<Self, RegistryError> {
        let corrupt = || RegistryError::Corrupt(format!("placement {text:?}"));
        let mut parts = text.split(':');
        let mut next = || parts.next().ok_or_else(corrupt);
        let node = next()?.parse().map_err(|_| corrupt())?;
        let epoch = next()?.parse().map_err(|_| corrupt())?;
        let session = next()?.parse().map_err(|_| corrupt())?;
        Ok(Self { node: NodeId(node), epoch: Epoch(epoch), session })
    }
}

/// What a lease renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Renewal {
    /// The lease is ours and extended.
    Renewed,
    /// The lease expired or another epoch holds it: the node must stop
    /// trusting its placements, join again and re-register its sessions.
    Fenced,
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No answer within [`Config::timeout`].
    #[error("registry call timed out after {0:?}")]
    Timeout(Duration),
    /// Redis refused the call or the connection failed.
    #[error("registry: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored value is not what this code writes.
    #[error("registry holds a corrupt {0}")]
    Corrupt(String),
}

/// The registry as one node sees it. `C` is the connection: a single
/// server's [`ConnectionManager`] or a [`ClusterConnection`].
#[derive(Clone)]
pub struct Registry<C> {
    conn: Arc<Healing<C>>,
    config: Config,
    scripts: Arc<Scripts>,
    leases: Arc<LiveLeases>,
}

/// Leases read as held, trusted without reading them again until they
/// would expire unrenewed, and for a tenth of a lease at most: a lookup
/// costs one round trip, not two, and a 1,024-member group's lookups read
/// each node's lease about once. Only "this node holds this epoch" is
/// remembered: a placement of a newer epoch (the node joined again) or of
/// a node not known alive reads the lease as before. A lease that ends
/// early (a drained node leaves, a restarted one joins again) counts for
/// up to that tenth of a lease more; [`Registry::forget_lease`] ends that
/// at once (the node's link failed).
#[derive(Debug, Default)]
struct LiveLeases {
    /// node → (trusted until, epoch).
    held: Mutex<HashMap<NodeId, (Instant, Epoch)>>,
}

impl LiveLeases {
    fn trusted(&self, node: NodeId, epoch: Epoch) -> bool {
        self.lock().get(&node).is_some_and(|(until, held)| *held == epoch && Instant::now() < *until)
    }

    /// `node`'s lease read: held by `epoch` for `trust` more, or not held.
    fn seen(&self, node: NodeId, epoch: Option<Epoch>, trust: Duration) {
        let mut held = self.lock();
        match epoch {
            Some(epoch) if !trust.is_zero() => held.insert(node, (Instant::now() + trust, epoch)),
            _ => held.remove(&node),
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, (Instant, Epoch)>> {
        // The map is valid whatever a panicking holder left half done.
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<C> std::fmt::Debug for Registry<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Registry<ConnectionManager> {
    /// A registry on one Redis server (`redis://host:port`).
    pub async fn single(url: &str, config: Config) -> Result<Self, RegistryError> {
        let client = redis::Client::open(url)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout));
        let conn = bounded(config.timeout, client.get_connection_manager_with_config(manager)).await?;
        Ok(Self::with(Healing::new(conn, None), config))
    }
}

impl Registry<ClusterConnection> {
    /// A registry on a Redis Cluster, given some of its nodes.
    pub async fn cluster(urls: &[&str], config: Config) -> Result<Self, RegistryError> {
        let client = ClusterClientBuilder::new(urls.iter().copied())
            .connection_timeout(config.timeout)
            .response_timeout(config.timeout)
            .build()?;
        let conn = bounded(config.timeout, client.get_async_connection()).await?;
        let timeout = config.timeout;
        let connect: Connect<ClusterConnection> = Box::new(move || {
            let client = client.clone();
            Box::pin(async move { bounded(timeout, client.get_async_connection()).await })
        });
        Ok(Self::with(Healing::new(conn, Some(connect)), config))
    }
}

impl<C> Registry<C> {
    fn with(conn: Healing<C>, config: Config) -> Self {
        Self { conn: Arc::new(conn), config, scripts: Arc::new(Scripts::new()), leases: Arc::default() }
    }

    /// Stops trusting what lookups remembered of `node`'s lease (its link
    /// failed: it may be gone): the next lookup reads it.
    pub fn forget_lease(&self, node: NodeId) {
        self.leases.seen(node, None, Duration::ZERO);
    }
}

impl<C: ConnectionLike + Clone + Send> Registry<C> {
    /// Times the connection was rebuilt after calls kept failing.
    pub fn reconnects(&self) -> u64 {
        self.conn.rebuilt()
    }

    /// `future` (a call on a connection from `self.conn`), bounded by the
    /// timeout; its outcome counts towards rebuilding the connection.
    async fn bounded<T>(
        &self,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RegistryError> {
        let result = bounded(self.config.timeout, future).await;
        self.conn.observe(&result, self.config.timeout).await;
        result
    }

    /// Starts a new epoch of `node`, takes its lease and advertises
    /// `link_address`, where other nodes dial its link listener.
    pub async fn join(&self, node: NodeId, link_address: &str) -> Result<Epoch, RegistryError> {
        let mut call = self.scripts.join.prepare_invoke();
        call.key(keys::epoch(node))
            .key(keys::lease(node))
            .key(keys::link(node))
            .arg(millis(self.config.lease))
            .arg(link_address);
        let mut conn = self.conn.get();
        let epoch: u64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(Epoch(epoch))
    }

    /// Extends `node`'s lease if `epoch` still holds it.
    pub async fn renew(&self, node: NodeId, epoch: Epoch) -> Result<Renewal, RegistryError> {
        let mut call = self.scripts.renew.prepare_invoke();
        call.key(keys::lease(node)).arg(epoch.0).arg(millis(self.config.lease));
        let mut conn = self.conn.get();
        let renewed: u8 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(if renewed == 1 { Renewal::Renewed } else { Renewal::Fenced })
    }

    /// Ends `node`'s lease now (a drained node), if `epoch` still holds it:
    /// its placements stop counting at once.
    pub async fn leave(&self, node: NodeId, epoch: Epoch) -> Result<(), RegistryError> {
        let mut call = self.scripts.leave.prepare_invoke();
        call.key(keys::lease(node)).arg(epoch.0);
        let mut conn = self.conn.get();
        let _: u8 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// The epoch holding `node`'s lease, if any.
    pub async fn lease(&self, node: NodeId) -> Result<Option<Epoch>, RegistryError> {
        let mut conn = self.conn.get();
        let key = keys::lease(node);
        let mut read = redis::pipe();
        read.get(&key).cmd("PTTL").arg(&key);
        let (epoch, ttl): (Option<u64>, i64) = self.bounded(read.query_async(&mut conn)).await?;
        let epoch = epoch.map(Epoch);
        // PTTL is negative for a key without expiry (never written so) or
        // gone: then nothing is trusted.
        let ttl = Duration::from_millis(u64::try_from(ttl).unwrap_or(0));
        self.leases.seen(node, epoch, ttl.min(self.config.lease / 10));
        Ok(epoch)
    }

    /// The link address `node` advertised when it last joined.
    pub async fn link_address(&self, node: NodeId) -> Result<Option<String>, RegistryError> {
        let mut conn = self.conn.get();
        let mut get = redis::cmd("GET");
        get.arg(keys::link(node));
        self.bounded(get.query_async(&mut conn)).await
    }

    /// Places `device` of `user` at `placement`; returns the placement it
    /// replaced (whose session must be closed with 4007 where it lives, if
    /// its node is alive and it is not this one).
    pub async fn register(
        &self,
        user: UserId,
        device: DeviceId,
        placement: Placement,
    ) -> Result<Option<Placement>, RegistryError> {
        let mut call = self.scripts.register.prepare_invoke();
        call.key(keys::user(user))
            .arg(keys::device_field(device))
            .arg(placement.encode())
            .arg(millis(self.config.safety_ttl));
        let mut conn = self.conn.get();
        let old: Option<String> = self.bounded(call.invoke_async(&mut conn)).await?;
        old.as_deref().map(Placement::decode).transpose()
    }

    /// Places `device` of `user` at `placement` again (a session this node
    /// served while it could not be placed: the registry was down, or the
    /// node was fenced), unless a live session of another node holds the
    /// device now: then that placement is returned and nothing is changed
    /// (this node's session is the older one, to be closed with 4007).
    /// Another node's placement whose lease is gone is taken over.
    pub async fn reclaim(
        &self,
        user: UserId,
        device: DeviceId,
        placement: Placement,
    ) -> Result<Option<Placement>, RegistryError> {
        let mut dead = String::new();
        // Twice at most: the second time over a dead node's placement, which
        // is taken only if it is still the one there (not a newer one).
        loop {
            let mut call = self.scripts.reclaim.prepare_invoke();
            call.key(keys::user(user))
                .arg(keys::device_field(device))
                .arg(placement.encode())
                .arg(format!("{}:", placement.node.0))
                .arg(millis(self.config.safety_ttl))
                .arg(&dead);
            let mut conn = self.conn.get();
            let other: Option<String> = self.bounded(call.invoke_async(&mut conn)).await?;
            let Some(encoded) = other else { return Ok(None) };
            let other = Placement::decode(&encoded)?;
            if !dead.is_empty() || self.lease(other.node).await? == Some(other.epoch) {
                return Ok(Some(other));
            }
            dead = encoded;
        }
    }

    /// Removes `device`'s placement if it is still exactly `placement`;
    /// true if removed (false: a newer connection replaced it, or it is
    /// gone).
    pub async fn unregister(
        &self,
        user: UserId,
        device: DeviceId,
        placement: Placement,
    ) -> Result<bool, RegistryError> {
        let mut call = self.scripts.unregister.prepare_invoke();
        call.key(keys::user(user)).arg(keys::device_field(device)).arg(placement.encode());
        let mut conn = self.conn.get();
        let removed: u8 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(removed == 1)
    }

    /// `node` has sessions watching `user`'s presence (kept for the safety
    /// TTL, renewed by each call).
    pub async fn watch(&self, user: UserId, node: NodeId) -> Result<(), RegistryError> {
        let mut conn = self.conn.get();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SADD")
            .arg(keys::watchers(user))
            .arg(node.0)
            .ignore()
            .cmd("PEXPIRE")
            .arg(keys::watchers(user))
            .arg(millis(self.config.safety_ttl))
            .ignore();
        self.bounded(pipe.query_async(&mut conn)).await
    }

    /// `node` no longer has sessions watching `user`.
    pub async fn unwatch(&self, user: UserId, node: NodeId) -> Result<(), RegistryError> {
        let mut conn = self.conn.get();
        let mut srem = redis::cmd("SREM");
        srem.arg(keys::watchers(user)).arg(node.0);
        let _: u8 = self.bounded(srem.query_async(&mut conn)).await?;
        Ok(())
    }

    /// The nodes with sessions watching `user`.
    pub async fn watching(&self, user: UserId) -> Result<Vec<NodeId>, RegistryError> {
        let mut conn = self.conn.get();
        let mut members = redis::cmd("SMEMBERS");
        members.arg(keys::watchers(user));
        let nodes: Vec<u32> = self.bounded(members.query_async(&mut conn)).await?;
        Ok(nodes.into_iter().map(NodeId).collect())
    }

    /// The user's devices whose node holds a lease of the placement's epoch
    /// (read, or held when last read within a tenth of a lease: `LiveLeases`).
    /// Placements of dead nodes or older epochs are left out and removed
    /// (by compare-and-set, so a newer registration is never touched).
    pub async fn lookup(&self, user: UserId) -> Result<Vec<(DeviceId, Placement)>, RegistryError> {
        let mut conn = self.conn.get();
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(keys::user(user));
        let fields: HashMap<String, String> = self.bounded(hgetall.query_async(&mut conn)).await?;
        let mut leases: HashMap<NodeId, Option<Epoch>> = HashMap::new();
        let mut live = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            let Some(device) = field.strip_prefix("d:").and_then(|d| d.parse().ok()).map(DeviceId) else {
                return Err(RegistryError::Corrupt(format!("field {field:?}")));
            };
            let placement = Placement::decode(&value)?;
            let lease = match leases.get(&placement.node) {
                Some(lease) => *lease,
                None if self.leases.trusted(placement.node, placement.epoch) => Some(placement.epoch),
                None => {
                    let lease = self.lease(placement.node).await?;
                    leases.insert(placement.node, lease);
                    lease
                }
            };
            if lease == Some(placement.epoch) {
                live.push((device, placement));
            } else {
                self.unregister(user, device, placement).await?;
            }
        }
        live.sort_by_key(|(device, _)| *device);
        Ok(live)
    }
}

/// `future`, or [`RegistryError::Timeout`] after `limit`.
async fn bounded<T>(
    limit: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(RegistryError::Timeout(limit)),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_round_trip_and_garbage_is_an_error() {
        let placement = Placement { node: NodeId(7), epoch: Epoch(3), session: (1 << 48) | 42 };
        assert_eq!(Placement::decode(&placement.encode()).ok(), Some(placement));
        for bad in ["", "7", "7:3", "x:3:1", "7:3:-1"] {
            assert!(matches!(Placement::decode(bad), Err(RegistryError::Corrupt(_))), "{bad:?}");
        }
    }
}
