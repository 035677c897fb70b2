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
    /// holds a key in each slot it wrote (a key that exists, with the
    /// retention TTL).
    ///
    /// Per slot, one pipeline on one connection: the key's TTL refreshed (a
    /// write, so this connection's replication offset is at least that of
    /// everything written to the slot so far, by any instance), then
    /// `WAIT N timeout`. Both go to the slot's master or fail together: a
    /// lone `WAIT` may be sent to another node while the master's connection
    /// is being repaired (the cluster client falls back), and would answer
    /// for writes it never saw. Fewer replicas within the timeout:
    /// `Unavailable`, and the client's retry finds its dedup record.
    pub(crate) async fn durable(&self, written: &[String]) -> Result<(), StoreError> {
        let wanted = self.inner.config.replicas;
        if wanted == 0 {
            return Ok(());
        }
        let ttl = u64::try_from(self.inner.config.retention.as_millis()).unwrap_or(u64::MAX);
        let timeout = u64::try_from(self.inner.config.replica_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut slots = HashSet::new();
        let keys: Vec<&String> = written.iter().filter(|key| slots.insert(Slot::for_key(key))).collect();
        for chunk in keys.chunks(64) {
            let mut waits = tokio::task::JoinSet::new();
            for key in chunk {
                let mut pipe = redis::pipe();
                pipe.cmd("PEXPIRE").arg(key.as_str()).arg(ttl).ignore().cmd("WAIT").arg(wanted).arg(timeout);
                let mut conn = self.inner.conn.clone();
                waits.spawn(async move { pipe.query_async::<(u32,)>(&mut conn).await });
            }
            while let Some(done) = waits.join_next().await {
                let answer = done.map_err(|_| crate::store::corrupt("wait task"))?;
                let (acked,) = self.answered(answer)?;
                if acked < wanted {
                    return Err(StoreError::Unavailable(UnavailableError::Unreachable {
                        why: format!("{acked} of {wanted} replicas took the write within {timeout} ms"),
                        retry_in_ms: 1_000,
                    }));
                }
            }
        }
        Ok(())
    }
}

/// How long a `WAIT` may take by default.
pub(crate) const REPLICA_TIMEOUT: Duration = Duration::from_secs(1);
