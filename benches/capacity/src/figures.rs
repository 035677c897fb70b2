//! The measured per-unit costs the model multiplies (`figures.toml`).
//!
//! Each figure is a value; one that nothing in `benches/RESULTS.md`
//! measured carries `assumption = true` and a `why`, so that the output can
//! list every number the answer rests on that is not a measurement. The file
//! itself names, per figure, the RESULTS.md section and the command.

use std::path::Path;

use serde::Deserialize;

use crate::error::{self, ModelError};

/// One per-unit figure.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// The value, in the unit its name says (`us_` = CPU microseconds,
    /// `bytes_`, a count, a share).
    pub value: f64,
    /// Not measured here: chosen, or derived with a step that was not
    /// measured.
    #[serde(default)]
    pub assumption: bool,
    /// Why the assumed value is what it is (required when `assumption`).
    #[serde(default)]
    pub why: Option<String>,
}

/// Every figure, by part of the system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figures {
    /// A gateway node: memory and CPU per session and per event.
    pub gateway: Gateway,
    /// The gateway ↔ store stream (the remote store, `backend-rpc`).
    pub rpc: Rpc,
    /// The session registry on Redis (`routing-registry`).
    pub registry: Registry,
    /// Redis itself: CPU per request, server and client side.
    pub redis: Redis,
    /// The store, both engines.
    pub store: Store,
}

/// A gateway node's costs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// A node with no session: its private (anonymous) memory, bytes.
    pub idle_node_anon_bytes: Figure,
    /// The gateway binary's file-backed pages a node maps: one copy per box
    /// however many nodes it runs (PSS divides them among the nodes).
    pub binary_bytes: Figure,
    /// CPU of a node with no session, per second (timers, lease renewals).
    pub us_per_node_second: Figure,
    /// User space per idle plain (ws) session, the gateway process alone.
    pub user_bytes_per_session: Figure,
    /// Extra user space per session over TLS (wss − ws).
    pub tls_bytes_per_session: Figure,
    /// Extra user space per session under traffic (its state and the
    /// buffers and allocator pages traffic leaves behind), beyond
    /// `user_bytes_per_session`.
    pub traffic_bytes_per_session: Figure,
    /// User space per user whose placements a node caches.
    pub bytes_per_cached_user: Figure,
    /// Users a node caches at most (then the cache starts over).
    pub cache_users_max: Figure,
    /// Kernel slab per idle socket.
    pub kernel_bytes_per_socket: Figure,
    /// User space of the links to one peer node (both directions).
    pub link_bytes_per_peer: Figure,
    /// CPU per heartbeat PING/PONG of an otherwise idle session.
    pub us_per_heartbeat: Figure,
    /// Extra CPU per heartbeat over TLS.
    pub tls_us_per_heartbeat: Figure,
    /// CPU per new session (TCP accept, upgrade, token, HELLO/AUTH_OK).
    pub us_per_connect: Figure,
    /// Extra CPU per new session over TLS (the TLS handshake).
    pub tls_us_per_connect: Figure,
    /// CPU per session close.
    pub us_per_disconnect: Figure,
    /// CPU per 1:1 message, both ends on the node (SEND, SEND_ACK, DELIVER,
    /// ACK), without the store's own work.
    pub us_per_direct_msg: Figure,
    /// CPU per group delivery (DELIVER out, its ACK in), without the store.
    pub us_per_group_delivery: Figure,
    /// Extra CPU (all nodes) per delivery to a device on another node that
    /// shares its link frame with others (a group message's members on one
    /// node): the router, the link, the receiving node's hand-off.
    pub us_per_remote_delivery: Figure,
    /// Extra CPU (both nodes) per link frame that carries one item alone
    /// (a 1:1 entry, a receipt, a TYPING at the rates of a fleet): the
    /// item's own cost included.
    pub us_per_link_frame: Figure,
    /// CPU per registry call on the node's fleet thread (the Redis client,
    /// the router's task and its answer).
    pub us_per_registry_call: Figure,
    /// CPU per inbox entry a reconnecting device syncs.
    pub us_per_synced_entry: Figure,
    /// Store requests a login makes.
    pub store_requests_per_connect: Figure,
}

/// The remote store's request stream, per request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rpc {
    /// Gateway side (encode, send, the answer back to the worker).
    pub client_us_per_request: Figure,
    /// Store side (decode, hand to the engine, encode the answer).
    pub server_us_per_request: Figure,
}

/// The session registry's costs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Redis memory per registered (connected) device, plain Redis.
    pub bytes_per_device: Figure,
    /// Redis memory per watched user (its presence watch set, one member),
    /// plain Redis.
    pub bytes_per_watch_set: Figure,
    /// Connections a gateway node holds to each master.
    pub connections_per_node: Figure,
    /// Round trips and commands (a script counts once plus once per
    /// command it runs, as `INFO commandstats` counts them) per event.
    pub requests_per_connect: Figure,
    /// See `requests_per_connect`.
    pub commands_per_connect: Figure,
    /// See `requests_per_connect`.
    pub requests_per_disconnect: Figure,
    /// See `requests_per_connect`.
    pub commands_per_disconnect: Figure,
    /// Lookup of a user whose device is placed (HGETALL; the node's lease
    /// is read apart: `lease_trust_secs`).
    pub requests_per_lookup: Figure,
    /// See `requests_per_lookup`.
    pub commands_per_lookup: Figure,
    /// Lookup of a user placed nowhere (offline): HGETALL only.
    pub requests_per_lookup_nowhere: Figure,
    /// See `requests_per_lookup_nowhere`.
    pub commands_per_lookup_nowhere: Figure,
    /// Commands per presence watch or unwatch (mean of the two).
    pub commands_per_watch_event: Figure,
    /// Commands per lease renewal (one round trip).
    pub commands_per_renewal: Figure,
    /// The node lease (renewed every third of it).
    pub lease_secs: Figure,
    /// How long a node trusts a peer's lease it read as held before it
    /// reads it again (once per peer it routes to, at most this often).
    pub lease_trust_secs: Figure,
    /// Commands of one lease read (one round trip).
    pub commands_per_lease_read: Figure,
    /// How long a node trusts a cached placement before re-reading it.
    pub cache_secs: Figure,
}

/// Redis CPU per request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// redis-server CPU per request (one core per server: it is
    /// single-threaded).
    pub server_us_per_request: Figure,
    /// Client CPU per request (the `redis` crate and its runtime).
    pub client_us_per_request: Figure,
    /// `used_memory` of an empty cluster-mode master.
    pub master_base_bytes: Figure,
    /// What a master holds for one replica (backlog, the replica's client).
    pub replica_bytes: Figure,
    /// A client connection's memory in the server (buffers, client struct).
    pub bytes_per_client: Figure,
    /// Extra memory per key in cluster mode (slot bookkeeping).
    pub cluster_bytes_per_key: Figure,
}

/// The store's costs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// The embedded LSM engine.
    pub fjall: Engine,
    /// The Redis Cluster engine.
    pub redis: Engine,
    /// A read receipt's engine work as a share of a 1:1 message's.
    pub read_share_of_msg: Figure,
    /// Store requests per entry a reconnecting device syncs (windows and
    /// their acks).
    pub requests_per_synced_entry: Figure,
    /// Redis memory per registered, idle device (Redis engine).
    pub redis_bytes_per_idle_device: Figure,
    /// Redis memory per pending inbox entry beyond the message (Redis engine).
    pub redis_bytes_per_pending_entry: Figure,
    /// Redis memory a message keeps after its last ack, for the dedup
    /// window (Redis engine).
    pub redis_retained_bytes_per_message: Figure,
}

/// One engine's CPU per unit of work (engine CPU: the store process and, for
/// Redis, its redis-servers; no RPC).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Engine {
    /// A persisted 1:1 message and its ack.
    pub us_per_direct_msg: Figure,
    /// A group delivery (its inbox entry) and its ack.
    pub us_per_group_delivery: Figure,
    /// An entry read by a sync, with its share of the acks.
    pub us_per_synced_entry: Figure,
    /// A login's store work (device, visibility, cursors, the sync read).
    pub us_per_connect: Figure,
    /// A group's members read for a TYPING (`GroupGet`).
    pub us_per_group_read: Figure,
    /// Share of the engine CPU spent in redis-servers (0 for fjall).
    pub server_share: Figure,
}

/// `(dotted name, figure)` for every field of a figure struct.
macro_rules! named {
    ($out:ident, $prefix:expr, $s:expr, [$($field:ident),* $(,)?]) => {
        $( $out.push((format!("{}.{}", $prefix, stringify!($field)), &$s.$field)); )*
    };
}

impl Figures {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::parse(&error::read(path)?, path)
    }

    /// Parses and checks figures read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ModelError> {
        let figures: Self = toml::from_str(text)
            .map_err(|source| ModelError::Toml { path: path.to_owned(), source: Box::new(source) })?;
        figures.validate()?;
        Ok(figures)
    }

    /// Every figure with its dotted name, in file order.
    pub fn named(&self) -> Vec<(String, &Figure)> {
        let mut out = Vec::new();
        let g = &self.gateway;
        named!(
            out,
            "gateway",
            g,
            [
                idle_node_anon_bytes,
                binary_bytes,
                us_per_node_second,
                user_bytes_per_session,
                traffic_bytes_per_session,
                bytes_per_cached_user,
                cache_users_max,
                tls_bytes_per_session,
                kernel_bytes_per_socket,
                link_bytes_per_peer,
                us_per_heartbeat,
                tls_us_per_heartbeat,
                us_per_connect,
                tls_us_per_connect,
                us_per_disconnect,
                us_per_direct_msg,
                us_per_group_delivery,
                us_per_remote_delivery,
                us_per_link_frame,
                us_per_registry_call,
                us_per_synced_entry,
                store_requests_per_connect,
            ]
        );
        named!(out, "rpc", self.rpc, [client_us_per_request, server_us_per_request]);
        let r = &self.registry;
        named!(
            out,
            "registry",
            r,
            [
                bytes_per_device,
                bytes_per_watch_set,
                connections_per_node,
                requests_per_connect,
                commands_per_connect,
                requests_per_disconnect,
                commands_per_disconnect,
                requests_per_lookup,
                commands_per_lookup,
                requests_per_lookup_nowhere,
                commands_per_lookup_nowhere,
                commands_per_watch_event,
                commands_per_renewal,
                lease_secs,
                lease_trust_secs,
                commands_per_lease_read,
                cache_secs,
            ]
        );
        named!(
            out,
            "redis",
            self.redis,
            [
                server_us_per_request,
                client_us_per_request,
                master_base_bytes,
                replica_bytes,
                bytes_per_client,
                cluster_bytes_per_key,
            ]
        );
        for (name, engine) in [("store.fjall", &self.store.fjall), ("store.redis", &self.store.redis)] {
            named!(
                out,
                name,
                engine,
                [
                    us_per_direct_msg,
                    us_per_group_delivery,
                    us_per_synced_entry,
                    us_per_connect,
                    us_per_group_read,
                    server_share,
                ]
            );
        }
        named!(
            out,
            "store",
            self.store,
            [
                read_share_of_msg,
                requests_per_synced_entry,
                redis_bytes_per_idle_device,
                redis_bytes_per_pending_entry,
                redis_retained_bytes_per_message,
            ]
        );
        out
    }

    /// The figures marked as assumptions, with why.
    pub fn assumptions(&self) -> Vec<(String, f64, String)> {
        self.named()
            .into_iter()
            .filter(|(_, f)| f.assumption)
            .map(|(name, f)| (name, f.value, f.why.clone().unwrap_or_default()))
            .collect()
    }

    /// Every value finite and non-negative, shares at most 1, the lease
    /// positive, and every assumption explained.
    pub fn validate(&self) -> Result<(), ModelError> {
        for (name, figure) in self.named() {
            error::non_negative(&name, figure.value)?;
            if figure.assumption && figure.why.as_deref().is_none_or(|why| why.trim().is_empty()) {
                return Err(ModelError::invalid(name, "an assumption needs a `why`"));
            }
        }
        error::positive("registry.lease_secs", self.registry.lease_secs.value)?;
        error::positive("registry.lease_trust_secs", self.registry.lease_trust_secs.value)?;
        error::share("store.fjall.server_share", self.store.fjall.server_share.value)?;
        error::share("store.redis.server_share", self.store.redis.server_share.value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn shipped() -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("figures.toml")).unwrap()
    }

    #[test]
    fn shipped_figures_parse_and_every_assumption_says_why() {
        let figures = Figures::parse(&shipped(), Path::new("figures.toml")).unwrap();
        assert!(!figures.assumptions().is_empty());
        assert!(figures.assumptions().iter().all(|(_, _, why)| !why.is_empty()));
    }

    #[test]
    fn a_negative_figure_is_refused_by_name() {
        let text = shipped().replacen("value = 25.35", "value = -25.35", 1);
        let err = Figures::parse(&text, Path::new("f.toml")).unwrap_err();
        assert!(err.to_string().contains("gateway.us_per_heartbeat"), "{err}");
    }

    #[test]
    fn an_assumption_without_why_is_refused() {
        let text = shipped().replacen("why = ", "# why = ", 1);
        assert!(Figures::parse(&text, Path::new("f.toml")).is_err());
    }

    #[test]
    fn a_misspelt_figure_is_refused() {
        let text = shipped().replacen("[gateway.us_per_heartbeat]", "[gateway.us_per_heartbeet]", 1);
        assert!(Figures::parse(&text, Path::new("f.toml")).is_err());
    }
}
