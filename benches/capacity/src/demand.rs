//! Per-resource demand: rates × per-unit figures, for a fleet of a given
//! node count (the share of deliveries that cross a link, the links each
//! node holds and the placement cache's reuse depend on it).
//!
//! CPU is in cores (µs of CPU per second / 10⁶), memory in bytes, Redis
//! traffic in requests (round trips) and commands per second.

use serde::Serialize;

use crate::figures::Figures;
use crate::load::Rates;
use crate::target::StoreEngine;

/// What the load asks of each resource, for `nodes` gateway nodes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Demand {
    /// Gateway nodes the load is spread over.
    pub nodes: u64,
    /// Share of live deliveries whose device is on another node.
    pub remote_share: f64,
    /// The gateway nodes.
    pub gateway: Gateway,
    /// The session registry.
    pub registry: Registry,
    /// The store tier.
    pub store: Store,
}

/// Gateway CPU by kind of work, in cores, and memory.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gateway {
    /// PING/PONG of every session.
    pub heartbeats: f64,
    /// Logins (with TLS handshakes) and closes.
    pub connects: f64,
    /// Sending 1:1 and group messages, delivering 1:1 messages.
    pub messages: f64,
    /// Group deliveries, receipts, typing and presence out.
    pub deliveries: f64,
    /// READ, TYPING and presence frames in.
    pub frames_in: f64,
    /// Inbox entries synced at reconnect.
    pub sync: f64,
    /// Worker threads: everything above.
    pub workers: f64,
    /// Every node's CPU with no session (timers, lease renewals), whatever
    /// the load.
    pub idle_nodes: f64,
    /// The fleet thread (one per node): routing across links and every
    /// registry call.
    pub fleet_thread: f64,
    /// Link frames per second, all nodes: one per item that crosses alone,
    /// one per node a group message reaches.
    pub link_frames: f64,
    /// All of it: workers, idle nodes and fleet threads.
    pub cpu: f64,
    /// User space for the sessions (not the nodes' fixed part).
    pub user_bytes: f64,
    /// Kernel slab for the sessions' sockets.
    pub kernel_bytes: f64,
    /// A node's fixed user space on a box of its own: the idle process
    /// (its binary's pages whole) and its links.
    pub node_fixed_bytes: f64,
    /// The part of it private to the node (all but the binary's pages,
    /// which nodes sharing a box share).
    pub node_private_bytes: f64,
    /// Users whose placements each node caches.
    pub cached_users: f64,
    /// Peer nodes each node holds links with.
    pub link_peers: f64,
}

/// Registry traffic and memory.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Registry {
    /// Round trips per second.
    pub requests: f64,
    /// Commands executed per second (as `INFO commandstats` counts them).
    pub commands: f64,
    /// Lookups of placed users per second.
    pub lookups: f64,
    /// Lookups of users placed nowhere per second.
    pub lookups_nowhere: f64,
    /// Share of routed items that needed a lookup.
    pub lookup_share: f64,
    /// Lease renewals per second (the whole fleet's liveness writes).
    pub renewals: f64,
    /// Peers' leases read per second (a lookup's placement on a node whose
    /// lease the looking node has not read within the trust window).
    pub lease_reads: f64,
    /// Redis memory of the data (placements, watch sets; one copy, cluster
    /// mode), however many masters hold it.
    pub memory_bytes: f64,
    /// Each master's own memory beyond its share of the data: Redis's base
    /// and every node's connection (replicas: [`replica_bytes`]).
    pub master_fixed_bytes: f64,
    /// redis-server cores.
    pub server_cores: f64,
}

/// Store CPU and requests.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Store {
    /// The engine.
    pub engine: StoreEngine,
    /// Engine CPU in all, cores (store processes and redis-servers).
    pub engine_cores: f64,
    /// The part in redis-servers.
    pub server_cores: f64,
    /// The part in store processes.
    pub instance_engine_cores: f64,
    /// The request stream's store side, cores.
    pub rpc_cores: f64,
    /// Store requests per second.
    pub requests: f64,
}

/// Cores for `rate` events per second at `us` microseconds each.
fn cores(rate: f64, us: f64) -> f64 {
    rate * us / 1e6
}

impl Demand {
    /// The demand of `rates` on `nodes` gateway nodes, with `engine` as store.
    pub fn compute(rates: &Rates, f: &Figures, engine: StoreEngine, nodes: u64) -> Self {
        let n = nodes.max(1) as f64;
        // Sessions are placed without regard to who talks to whom: a
        // device is on another node than the sender with (n − 1) / n.
        let remote_share = (n - 1.0) / n;
        let registry = registry(rates, f, n, remote_share);
        Self {
            nodes: nodes.max(1),
            remote_share,
            gateway: gateway(rates, f, n, remote_share, &registry),
            registry,
            store: store(rates, f, engine),
        }
    }
}

fn gateway(r: &Rates, f: &Figures, n: f64, remote_share: f64, registry: &Registry) -> Gateway {
    let g = &f.gateway;
    let rpc = f.rpc.client_us_per_request.value;
    // A frame in from a session that sends little costs what a PING does:
    // one wake-up, one read, one write.
    let frame_in = g.us_per_heartbeat.value + r.tls_share * g.tls_us_per_heartbeat.value;
    // The 1:1 figure covers both ends on one node: half for the sender
    // (SEND, SEND_ACK), half for the recipient (DELIVER, ACK); a group
    // send is the sender's half. Each end makes one store request.
    let half = g.us_per_direct_msg.value / 2.0;
    let heartbeats = cores(r.heartbeats, frame_in);
    let login = g.us_per_connect.value
        + r.tls_share * g.tls_us_per_connect.value
        + g.store_requests_per_connect.value * rpc
        + g.us_per_disconnect.value;
    let connects = cores(r.connects, login);
    // TLS per frame: a heartbeat's TLS cost is one record in and one out.
    let tls_frame = r.tls_share * g.tls_us_per_heartbeat.value / 2.0;
    let two_frames = half + rpc + 2.0 * tls_frame;
    let messages = cores(r.direct_msgs + r.group_msgs, two_frames) + cores(r.direct_online, two_frames);
    // A live group delivery's ACK is one store request: at the seeds' rates
    // (a delivery every few seconds per device) ACKs never coalesce.
    let deliveries = cores(r.group_online, g.us_per_group_delivery.value + rpc + 2.0 * tls_frame)
        + cores(r.user_frames(), g.us_per_group_delivery.value + tls_frame);
    // A group TYPING reads the members from the store (`GroupGet`).
    let frames_in = cores(r.reads + r.group_typing_in, frame_in + rpc)
        + cores(r.typing_in - r.group_typing_in + r.watch_events, frame_in);
    let sync = cores(r.offline_entries(), g.us_per_synced_entry.value);
    let workers = heartbeats + connects + messages + deliveries + frames_in + sync;
    let idle_nodes = cores(n, g.us_per_node_second.value);
    // An item that crosses alone costs a link frame; a group message's
    // members on one node share one, each past the first costs a remote
    // delivery.
    let remote_items = r.live_deliveries() * remote_share;
    let group_frames = if r.group_msgs > 0.0 {
        r.group_msgs * frames_to_other_nodes(r.group_online / r.group_msgs, n)
    } else {
        0.0
    };
    let link_frames = (r.live_deliveries() - r.group_online) * remote_share + group_frames;
    let fleet_thread = cores(link_frames, g.us_per_link_frame.value)
        + cores((remote_items - link_frames).max(0.0), g.us_per_remote_delivery.value)
        + cores(registry.requests, g.us_per_registry_call.value);
    let session_user = g.user_bytes_per_session.value
        + g.traffic_bytes_per_session.value
        + r.tls_share * g.tls_bytes_per_session.value;
    let link_peers = n - 1.0;
    // A node caches the placements of the users it routed to; a
    // long-running node's cache is full (it starts over at its cap).
    let cached_users =
        r.cached_users.map_or_else(|| g.cache_users_max.value.min(r.sessions), |users| users / n);
    let node_private_bytes = g.idle_node_anon_bytes.value
        + link_peers * g.link_bytes_per_peer.value
        + cached_users * g.bytes_per_cached_user.value;
    Gateway {
        heartbeats,
        connects,
        messages,
        deliveries,
        frames_in,
        sync,
        workers,
        idle_nodes,
        fleet_thread,
        link_frames,
        cpu: workers + idle_nodes + fleet_thread,
        user_bytes: r.sessions * session_user,
        kernel_bytes: r.sessions * g.kernel_bytes_per_socket.value,
        node_fixed_bytes: node_private_bytes + g.binary_bytes.value,
        node_private_bytes,
        cached_users,
        link_peers,
    }
}

fn registry(r: &Rates, f: &Figures, n: f64, remote_share: f64) -> Registry {
    let reg = &f.registry;
    // Items the router handles: a delivery to a device this node holds
    // needs none; a frame for a user always goes through it
    // (`post_to_user`). The router looks a user up once per batch
    // (`route` collects the missing users in a set) and a fresh placement
    // serves every item for `cache_secs`, so items for one user that leave
    // a node together cost one lookup between them: a group message's
    // delivered receipts to its sender leave each node holding connected
    // members at once (each device acks its DELIVER as it arrives). They
    // count once per (message, node), not once per member.
    let receipts = r.group_live_receipts.clamp(0.0, r.receipts_out.max(0.0));
    let receipt_bursts = if r.group_msgs > 0.0 {
        (r.group_msgs * nodes_holding(receipts / r.group_msgs, n)).min(receipts)
    } else {
        receipts
    };
    let routed =
        (r.direct_online + r.group_online) * remote_share + r.user_frames() - receipts + receipt_bursts;
    // A node re-reads a placement it used more than `cache_secs` ago. With
    // such items for a user arriving at λ per second from one node, a share
    // 1 / (1 + λ·cache) of them find the entry stale (one read, then the
    // next cache_secs of items reuse it).
    let per_user = if r.sessions > 0.0 { routed / r.sessions } else { 0.0 };
    let sending_nodes = r.senders_per_recipient.min(n - 1.0).max(1.0);
    let lambda = per_user / sending_nodes;
    let lookup_share = 1.0 / (1.0 + lambda * reg.cache_secs.value);
    let lookups = routed * lookup_share;
    let lookups_nowhere = r.offline_targets();
    let renewals = n / (reg.lease_secs.value / 3.0);
    // A node reads a peer's lease when a lookup names it and its last read
    // is older than the trust window: once per window per peer it looks up
    // users of, at most (the peers named by its lookups in a window,
    // placed uniformly).
    let lookups_per_node_window = lookups / n * reg.lease_trust_secs.value;
    let peers_read = (n - 1.0) * (1.0 - (-lookups_per_node_window / (n - 1.0).max(1.0)).exp());
    let lease_reads = n * peers_read / reg.lease_trust_secs.value;
    let requests = r.connects * (reg.requests_per_connect.value + reg.requests_per_disconnect.value)
        + lookups * reg.requests_per_lookup.value
        + lookups_nowhere * reg.requests_per_lookup_nowhere.value
        + lease_reads
        + r.watch_events
        + renewals;
    let commands = r.connects * (reg.commands_per_connect.value + reg.commands_per_disconnect.value)
        + lookups * reg.commands_per_lookup.value
        + lookups_nowhere * reg.commands_per_lookup_nowhere.value
        + lease_reads * reg.commands_per_lease_read.value
        + r.watch_events * reg.commands_per_watch_event.value
        + renewals * reg.commands_per_renewal.value;
    let per_key = f.redis.cluster_bytes_per_key.value;
    Registry {
        requests,
        commands,
        lookups,
        lookups_nowhere,
        lookup_share,
        renewals,
        lease_reads,
        memory_bytes: r.sessions * (reg.bytes_per_device.value + per_key)
            + r.watched_users * (reg.bytes_per_watch_set.value + per_key),
        master_fixed_bytes: f.redis.master_base_bytes.value
            + n * reg.connections_per_node.value * f.redis.bytes_per_client.value,
        server_cores: cores(requests, f.redis.server_us_per_request.value),
    }
}

/// What a master holds for `replicas` replicas (its backlog and their
/// connections), bytes.
pub fn replica_bytes(f: &Figures, replicas: f64) -> f64 {
    replicas * f.redis.replica_bytes.value
}

/// Expected nodes holding at least one of `devices` devices placed
/// uniformly over `n` nodes (the sender's own node included).
fn nodes_holding(devices: f64, n: f64) -> f64 {
    if n <= 1.0 {
        return n.min(devices.max(0.0));
    }
    n * (1.0 - (1.0 - 1.0 / n).powf(devices))
}

fn store(r: &Rates, f: &Figures, engine: StoreEngine) -> Store {
    let e = match engine {
        StoreEngine::Fjall => &f.store.fjall,
        StoreEngine::Redis => &f.store.redis,
    };
    let s = &f.store;
    // The engine figures include each entry's ack: an entry synced later
    // is acked in the sync's batches, which `us_per_synced_entry` adds.
    let engine_us = r.direct_msgs * e.us_per_direct_msg.value
        + r.group_deliveries() * e.us_per_group_delivery.value
        + r.reads * s.read_share_of_msg.value * e.us_per_direct_msg.value
        + r.connects * e.us_per_connect.value
        + r.group_typing_in * e.us_per_group_read.value
        + r.offline_entries() * e.us_per_synced_entry.value;
    let engine_cores = engine_us / 1e6;
    let server_cores = engine_cores * e.server_share.value;
    // One request per send, per live ack, per READ; logins make several;
    // synced entries are read and acked in windows.
    let requests = r.direct_msgs
        + r.group_msgs
        + r.direct_online
        + r.group_online
        + r.reads
        + r.group_typing_in
        + r.connects * f.gateway.store_requests_per_connect.value
        + r.offline_entries() * s.requests_per_synced_entry.value;
    Store {
        engine,
        engine_cores,
        server_cores,
        instance_engine_cores: engine_cores - server_cores,
        rpc_cores: cores(requests, f.rpc.server_us_per_request.value),
        requests,
    }
}

/// Expected LIVE frames a group message puts on links: one per other node
/// holding at least one of its `recipients` live devices, with devices
/// placed uniformly over `nodes` nodes.
pub fn link_frames(recipients: f64, nodes: u64) -> f64 {
    frames_to_other_nodes(recipients, nodes.max(1) as f64)
}

/// [`link_frames`] for `n` ≥ 1 nodes.
fn frames_to_other_nodes(recipients: f64, n: f64) -> f64 {
    (n - 1.0) * (1.0 - (1.0 - 1.0 / n).powf(recipients))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use crate::shipped::inputs;

    #[test]
    fn link_frames_match_the_27_node_fanout() {
        // RESULTS.md "Group fanout across 27 nodes": 26.05 LIVE frames per
        // message of a 1,024-member group (38 members per node).
        assert!((link_frames(1023.0, 27) - 26.0).abs() < 0.05);
        // And the 5-node run: 4.01.
        assert!((link_frames(1023.0, 5) - 4.0).abs() < 0.05);
        assert!(link_frames(10.0, 1).abs() < f64::EPSILON);
    }

    #[test]
    fn doubling_sessions_doubles_the_session_memory() {
        let (figures, mut target) = inputs();
        let one = Demand::compute(&Rates::from_target(&target), &figures, StoreEngine::Redis, 100);
        target.load.sessions *= 2.0;
        let two = Demand::compute(&Rates::from_target(&target), &figures, StoreEngine::Redis, 100);
        assert!((two.gateway.user_bytes - 2.0 * one.gateway.user_bytes).abs() < 1.0);
        assert!((two.gateway.kernel_bytes - 2.0 * one.gateway.kernel_bytes).abs() < 1.0);
        assert!((two.gateway.heartbeats - 2.0 * one.gateway.heartbeats).abs() < 1e-9);
        assert!((two.gateway.node_fixed_bytes - one.gateway.node_fixed_bytes).abs() < f64::EPSILON);
    }

    #[test]
    fn a_single_node_sends_nothing_over_links() {
        let (figures, target) = inputs();
        let mut rates = Rates::from_target(&target);
        // Frames for users go through the router even on one node.
        (rates.receipts_out, rates.typing_online, rates.presence_out) = (0.0, 0.0, 0.0);
        let d = Demand::compute(&rates, &figures, StoreEngine::Redis, 1);
        assert!(d.remote_share.abs() < f64::EPSILON);
        assert!(d.registry.lookups.abs() < f64::EPSILON);
        assert!(d.gateway.link_peers.abs() < f64::EPSILON);
        let two = Demand::compute(&rates, &figures, StoreEngine::Redis, 2);
        assert!(two.registry.lookups > 0.0 && two.gateway.fleet_thread > d.gateway.fleet_thread);
    }

    #[test]
    fn a_group_message_costs_its_sender_one_lookup_per_node_holding_members() {
        let (figures, _) = inputs();
        // 10 messages/s to 100 connected members each, every delivery acked.
        let rates = Rates {
            sessions: 1e6,
            group_msgs: 10.0,
            group_online: 1000.0,
            receipts_out: 1000.0,
            group_live_receipts: 1000.0,
            senders_per_recipient: 100.0,
            ..Rates::default()
        };
        // Two nodes: half the deliveries cross; each message's 100 receipts
        // leave both nodes, one lookup of the sender at each.
        let r = Demand::compute(&rates, &figures, StoreEngine::Fjall, 2).registry;
        assert!((r.lookups / r.lookup_share - (500.0 + 10.0 * 2.0)).abs() < 1e-6, "{r:?}");
        // Spread over far more nodes than members, nearly every receipt is
        // alone on its node.
        let r = Demand::compute(&rates, &figures, StoreEngine::Fjall, 100_000).registry;
        assert!(r.lookups / r.lookup_share > 1990.0, "{r:?}");
    }

    #[test]
    fn the_placement_cache_helps_only_when_a_node_sends_to_a_user_often() {
        let (figures, target) = inputs();
        let mut rates = Rates::from_target(&target);
        let sparse = Demand::compute(&rates, &figures, StoreEngine::Redis, 100).registry.lookup_share;
        rates.senders_per_recipient = 1.0;
        rates.direct_online *= 1000.0;
        let busy = Demand::compute(&rates, &figures, StoreEngine::Redis, 100).registry.lookup_share;
        assert!(sparse > 0.95, "{sparse}");
        assert!(busy < 0.1, "{busy}");
    }

    #[test]
    fn redis_costs_more_store_cpu_than_fjall() {
        let (figures, target) = inputs();
        let rates = Rates::from_target(&target);
        let fjall = Demand::compute(&rates, &figures, StoreEngine::Fjall, 100).store;
        let redis = Demand::compute(&rates, &figures, StoreEngine::Redis, 100).store;
        assert!(redis.engine_cores > 5.0 * fjall.engine_cores);
        assert!(fjall.server_cores.abs() < f64::EPSILON);
        assert!((redis.server_cores + redis.instance_engine_cores - redis.engine_cores).abs() < 1e-9);
    }
}
