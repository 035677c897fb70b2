//! Durability mapped onto Redis (REDIS.md, "Durability and the loss
//! window of each setting"): the AOF setting every master must have, checked
//! when the engine starts, and `WAIT` for replicas before a send is
//! acknowledged.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use backend_store::{EngineError, StoreError, UnavailableError};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, Slot};

use crate::store::RedisStore;

/// What an acknowledged write must survive, as the masters' AOF setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `appendonly yes`: `kill -9` of any process (Redis writes the AOF to
    /// the OS before it replies).
    Process,
    /// `appendonly yes` and `appendfsync always`: a power loss of a master's
    /// machine.
    Fsync,
}

/// Refuses to start on a cluster whose masters do not persist as
/// `durability` needs: the engine would acknowledge what a crash loses.
pub(crate) async fn check(conn: &mut ClusterConnection, durability: Durability) -> Result<(), StoreError> {
    let mut get = redis::cmd("CONFIG");
    get.arg("GET").arg("append*");
    let every_master = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    let answer = conn.route_command(get, every_master).await.map_err(crate::store::unavailable)?;
    let by_node: HashMap<String, HashMap<String, String>> =
        redis::from_redis_value(answer).map_err(|err| misconfigured(format!("CONFIG GET answer: {err}")))?;
    for (node, config) in by_node {
        let setting = |name: &str| config.get(name).map_or("?", String::as_str).to_owned();
        if setting("appendonly") != "yes" {
            return Err(misconfigured(format!(
                "master {node} has appendonly {}: acknowledged messages would not survive its restart \
                 (set appendonly yes)",
                setting("appendonly")
            )));
        }
        if durability == Durability::Fsync && setting("appendfsync") != "always" {
            return Err(misconfigured(format!(
                "master {node} has appendfsync {}: durability fsync needs appendfsync always",
                setting("appendfsync")
            )));
        }
    }
    Ok(())
}

fn misconfigured(message: String) -> StoreError {
    StoreError::Engine(EngineError::Database {
        message: format!("Redis Cluster not fit for this durability: {message}"),
    })
}

impl RedisStore {
    /// With `replicas = N`, before a send (or group change) is answered:
    /// what it wrote is on N replicas of every master it wrote to. `written`
    /// holds, for each slot it wrote, a key that must be there (the message,
    /// the dedup record, a user's record of its entries), with the
    /// retention TTL.
    ///
    /// Per slot, one pipeline on one connection: [`TOUCH`], then `WAIT N
    /// timeout`. Both go to the slot's master or fail together (a lone
    /// `WAIT` may be sent to another node while the master's connection is
    /// being repaired, and answers for writes it never saw). TOUCH refreshes
    /// the key's TTL, a write, so this connection's replication offset is
    /// past everything written to the slot before, by any instance; and it
    /// answers 0 if the key is gone: the master that took the write died
    /// before a replica had it, and a new connection to its successor would
    /// have `WAIT` answer at once. Either failure, or fewer replicas within
    /// the timeout, is `Unavailable`: the client's retry writes again what
    /// is missing (the enter step re-enters, a lost append appends again).
    pub(crate) async fn durable(&self, written: &[String]) -> Result<(), StoreError> {
        let ttl = u64::try_from(self.inner.config.retention.as_millis()).unwrap_or(u64::MAX);
        self.wait_replicas(written, ttl).await
    }

    /// As [`RedisStore::durable`], for hashes that never expire (a device's
    /// state, written at connect): touched by a field write, not a TTL.
    pub(crate) async fn durable_hashes(&self, written: &[String]) -> Result<(), StoreError> {
        self.wait_replicas(written, 0).await
    }

    /// TOUCH (`ttl`, or 0 for a hash that keeps none) and WAIT per slot.
    async fn wait_replicas(&self, written: &[String], ttl: u64) -> Result<(), StoreError> {
        let wanted = self.inner.config.replicas;
        if wanted == 0 {
            return Ok(());
        }
        let timeout = u64::try_from(self.inner.config.replica_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut slots = HashSet::new();
        let keys: Vec<&String> = written.iter().filter(|key| slots.insert(Slot::for_key(key))).collect();
        for chunk in keys.chunks(64) {
            let mut waits = tokio::task::JoinSet::new();
            for key in chunk {
                let mut pipe = redis::pipe();
                pipe.cmd("EVAL").arg(TOUCH).arg(1).arg(key.as_str()).arg(ttl);
                pipe.cmd("WAIT").arg(wanted).arg(timeout);
                let (mut conn, key) = (self.inner.conn.clone(), (*key).clone());
                waits.spawn(async move { (key, pipe.query_async::<(u8, u32)>(&mut conn).await) });
            }
            while let Some(done) = waits.join_next().await {
                let (key, answer) = done.map_err(|_| crate::store::corrupt("wait task"))?;
                let why = match self.answered(answer)? {
                    (0, _) => format!("{key} is gone: its master was lost before a replica had it"),
                    (_, acked) if acked < wanted => {
                        format!("{acked} of {wanted} replicas took the write within {timeout} ms")
                    }
                    _ => continue,
                };
                return Err(StoreError::Unavailable(UnavailableError::Unreachable {
                    why,
                    retry_in_ms: 1_000,
                }));
            }
        }
        Ok(())
    }
}

/// A write that is replicated, to a key that must be there; 0 if it is gone.
/// ARGV[1] > 0: the key's TTL refreshed to it; 0: a hash that keeps no TTL
/// gets its `w` field written. Sent with EVAL, not EVALSHA: it shares a
/// pipeline with `WAIT`, where a NOSCRIPT could not be answered by loading
/// the script.
const TOUCH: &str = r"
if tonumber(ARGV[1]) > 0 then return redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'w', 1)
return 1
";

/// How long a `WAIT` may take by default.
pub(crate) const REPLICA_TIMEOUT: Duration = Duration::from_secs(1);
