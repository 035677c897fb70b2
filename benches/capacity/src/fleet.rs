//! Sizing: gateway nodes for a box shape (the most any resource needs at
//! the planned utilisation, then the redundancy), what runs out first and
//! each resource's headroom; Redis shards and store instances.

use serde::Serialize;

use crate::demand::{self, Demand};
use crate::error::ModelError;
use crate::figures::Figures;
use crate::load::Rates;
use crate::seeds;
use crate::target::{BoxShape, RedisTarget, Redundancy, StoreEngine, Target};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A gateway node's resources that the load can exhaust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// All the box's cores (workers, fleet thread).
    Cpu,
    /// The one fleet thread: a single core whatever the box.
    FleetThread,
    /// The box's memory (user space, kernel, the OS reserve).
    Memory,
}

impl Resource {
    /// Every resource, in table order.
    pub const ALL: [Self; 3] = [Self::Cpu, Self::FleetThread, Self::Memory];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::FleetThread => "fleet thread",
            Self::Memory => "memory",
        }
    }
}

/// One resource's standing.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Use {
    /// Which.
    pub resource: Resource,
    /// Nodes it alone needs at the planned utilisation.
    pub nodes_needed: u64,
    /// Its use on the deployed fleet, as a share of the whole (0..).
    pub utilisation: f64,
    /// 1 − utilisation.
    pub headroom: f64,
}

/// A Redis cluster's size.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Shards {
    /// Masters for the CPU (one core each: redis-server is single-threaded).
    pub by_cpu: u64,
    /// Masters for the memory.
    pub by_memory: u64,
    /// Masters: the larger.
    pub masters: u64,
    /// redis-server processes with the replicas.
    pub processes: u64,
    /// Memory of the masters, bytes: the dataset and each master's own.
    pub memory_bytes: f64,
    /// Each master's own memory beyond its share of the dataset, bytes.
    pub per_master_bytes: f64,
}

/// The store tier's size.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StoreTier {
    /// The engine.
    pub engine: StoreEngine,
    /// Store processes.
    pub instances: u64,
    /// The store's Redis Cluster (Redis engine only).
    pub shards: Option<Shards>,
    /// What the dataset holds (Redis engine): idle devices, messages kept
    /// for the dedup window, entries pending for offline devices.
    pub idle_device_bytes: f64,
    /// See `idle_device_bytes`.
    pub retained_bytes: f64,
    /// See `idle_device_bytes`.
    pub pending_bytes: f64,
}

/// The answer.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    /// The rates the fleet carries.
    pub rates: Rates,
    /// The box.
    pub shape: BoxShape,
    /// The redundancy.
    pub redundancy: Redundancy,
    /// Planned utilisation of CPU and memory.
    pub cpu_utilisation: f64,
    /// See `cpu_utilisation`.
    pub memory_utilisation: f64,
    /// Memory kept per box for the OS, bytes.
    pub os_reserve_bytes: f64,
    /// The demand on the deployed fleet.
    pub demand: Demand,
    /// Nodes the load needs (the most any resource needs).
    pub nodes_needed: u64,
    /// Nodes deployed (with the redundancy).
    pub nodes: u64,
    /// Every resource, in `Resource` order.
    pub uses: Vec<Use>,
    /// The resource with the least headroom.
    pub first_to_run_out: Resource,
    /// Sessions per deployed node.
    pub sessions_per_node: f64,
    /// TCP connections per node for links (one each way per peer).
    pub link_connections_per_node: f64,
    /// Each resource's utilisation on the seeds' 400 servers.
    pub on_seeds_fleet: Vec<(Resource, f64)>,
    /// Mean LIVE frames per group message.
    pub link_frames_per_group_msg: f64,
    /// The registry's Redis Cluster.
    pub registry: Shards,
    /// The store tier.
    pub store: StoreTier,
}

/// Sizes the fleet for `target` with `figures`.
pub fn size(figures: &Figures, target: &Target) -> Result<Fleet, ModelError> {
    let rates = Rates::from_target(target);
    let policy = target.fleet;
    let shape = target.shape;
    let engine = target.store.engine;
    let reserve = policy.os_reserve_gib * GIB;
    // What a resource needs depends on the node count (links, the share of
    // remote deliveries), which depends on what the resources need: start
    // from one node and grow to the least count that covers itself. Demand
    // never falls as nodes are added, so this only climbs.
    let mut nodes: u64 = 1;
    for _ in 0..1000 {
        let demand = Demand::compute(&rates, figures, engine, nodes);
        let needed = needs(&demand, shape, policy.cpu_utilisation, policy.memory_utilisation, reserve)?
            .into_iter()
            .map(|(_, n)| n)
            .max()
            .unwrap_or(1);
        let deployed = target.fleet.redundancy.deploy(needed).max(1);
        if deployed <= nodes {
            return Ok(answer(
                figures,
                target,
                rates,
                Demand::compute(&rates, figures, engine, nodes),
                needed,
                reserve,
            ));
        }
        nodes = deployed;
    }
    Err(ModelError::NoFit(format!("the node count did not settle below {nodes}")))
}

/// Nodes each resource needs at the planned utilisation, in `Resource` order.
fn needs(
    d: &Demand,
    shape: BoxShape,
    cpu_util: f64,
    mem_util: f64,
    reserve: f64,
) -> Result<[(Resource, u64); 3], ModelError> {
    let usable = shape.mem_gib * GIB * mem_util - reserve - d.gateway.node_fixed_bytes;
    if usable <= 0.0 {
        return Err(ModelError::NoFit(format!(
            "a {} GiB box at {:.0} % leaves nothing for sessions after {:.1} GiB of fixed memory at {} nodes",
            shape.mem_gib,
            mem_util * 100.0,
            (reserve + d.gateway.node_fixed_bytes) / GIB,
            d.nodes
        )));
    }
    let count = |x: f64| (x.ceil() as u64).max(1);
    Ok([
        (Resource::Cpu, count(d.gateway.cpu / (shape.cores * cpu_util))),
        (Resource::FleetThread, count(d.gateway.fleet_thread / cpu_util)),
        (Resource::Memory, count((d.gateway.user_bytes + d.gateway.kernel_bytes) / usable)),
    ])
}

/// Each resource's use of the fleet `d` was computed for, in `Resource`
/// order, as a share of the whole.
fn utilisations(d: &Demand, shape: BoxShape, reserve: f64) -> [f64; 3] {
    let g = &d.gateway;
    let n = d.nodes as f64;
    let used_memory = g.user_bytes + g.kernel_bytes + n * (g.node_fixed_bytes + reserve);
    [g.cpu / (n * shape.cores), g.fleet_thread / n, used_memory / (n * shape.mem_gib * GIB)]
}

fn answer(
    figures: &Figures,
    target: &Target,
    rates: Rates,
    demand: Demand,
    nodes_needed: u64,
    reserve: f64,
) -> Fleet {
    let policy = target.fleet;
    let shape = target.shape;
    let nodes = demand.nodes;
    let n = nodes as f64;
    let needs =
        needs(&demand, shape, policy.cpu_utilisation, policy.memory_utilisation, reserve).unwrap_or([
            (Resource::Cpu, nodes_needed),
            (Resource::FleetThread, nodes_needed),
            (Resource::Memory, nodes_needed),
        ]);
    let uses: Vec<Use> = needs
        .iter()
        .zip(utilisations(&demand, shape, reserve))
        .map(|(&(resource, nodes_needed), utilisation)| Use {
            resource,
            nodes_needed,
            utilisation,
            headroom: 1.0 - utilisation,
        })
        .collect();
    let on_seeds_fleet = Resource::ALL
        .into_iter()
        .zip(utilisations(
            &Demand::compute(&rates, figures, target.store.engine, seeds::SERVERS),
            shape,
            reserve,
        ))
        .collect();
    let first_to_run_out = uses
        .iter()
        .copied()
        .reduce(|a, b| if b.utilisation > a.utilisation { b } else { a })
        .map_or(Resource::Cpu, |u| u.resource);
    let recipients: f64 = target
        .groups
        .iter()
        .map(|gs| gs.share * demand::link_frames((gs.members - 1.0) * target.load.group_online_share, nodes))
        .sum();
    Fleet {
        rates,
        shape,
        redundancy: policy.redundancy,
        cpu_utilisation: policy.cpu_utilisation,
        memory_utilisation: policy.memory_utilisation,
        os_reserve_bytes: reserve,
        nodes_needed,
        nodes,
        uses,
        first_to_run_out,
        sessions_per_node: rates.sessions / n,
        link_connections_per_node: 2.0 * demand.gateway.link_peers,
        on_seeds_fleet,
        link_frames_per_group_msg: recipients,
        registry: shards(
            demand.registry.server_cores,
            demand.registry.memory_bytes,
            demand.registry.master_fixed_bytes + demand::replica_bytes(figures, target.redis.replicas),
            target.redis,
            policy.cpu_utilisation,
        ),
        store: store_tier(figures, target, &rates, &demand),
        demand,
    }
}

/// Masters for `server_cores` of redis-server work and `memory` bytes of
/// data, each master holding `per_master` bytes of its own.
fn shards(server_cores: f64, memory: f64, per_master: f64, redis: RedisTarget, cpu_util: f64) -> Shards {
    let by_cpu = (server_cores / cpu_util).ceil() as u64;
    let room = (redis.shard_mem_gib * GIB - per_master).max(1.0);
    let by_memory = (memory / room).ceil() as u64;
    let masters = by_cpu.max(by_memory).max(1);
    Shards {
        by_cpu,
        by_memory,
        masters,
        processes: (masters as f64 * (1.0 + redis.replicas)).ceil() as u64,
        memory_bytes: memory + masters as f64 * per_master,
        per_master_bytes: per_master,
    }
}

fn store_tier(figures: &Figures, target: &Target, rates: &Rates, demand: &Demand) -> StoreTier {
    let s = &demand.store;
    let util = target.fleet.cpu_utilisation;
    let cores = target.store.instance_cores;
    match s.engine {
        StoreEngine::Fjall => {
            // One writer thread per store process does all the engine's
            // writes (RESULTS.md "Messaging"): a process gives one core of
            // engine work, its other cores serve the request stream.
            let by_writer = (s.engine_cores / util).ceil();
            let by_rpc = (s.rpc_cores / ((cores - 1.0).max(1.0) * util)).ceil();
            StoreTier {
                engine: s.engine,
                instances: by_writer.max(by_rpc).max(1.0) as u64,
                shards: None,
                idle_device_bytes: 0.0,
                retained_bytes: 0.0,
                pending_bytes: 0.0,
            }
        }
        StoreEngine::Redis => {
            let f = &figures.store;
            let scale = target.load.avg_msgs_per_sec / target.load.peak_msgs_per_sec.max(1.0);
            let idle = target.load.registered_devices * f.redis_bytes_per_idle_device.value;
            let retained = target.load.avg_msgs_per_sec
                * target.store.dedup_window_hours
                * 3600.0
                * f.redis_retained_bytes_per_message.value;
            let pending = rates.offline_entries()
                * scale
                * target.store.pending_hours
                * 3600.0
                * f.redis_bytes_per_pending_entry.value;
            let instances = ((s.instance_engine_cores + s.rpc_cores) / (cores * util)).ceil();
            StoreTier {
                engine: s.engine,
                instances: instances.max(1.0) as u64,
                // The store's masters hold Redis's base and their
                // replicas' backlogs; their few clients (store
                // instances) are left out.
                shards: Some(shards(
                    s.server_cores,
                    idle + retained + pending,
                    figures.redis.master_base_bytes.value
                        + demand::replica_bytes(figures, target.redis.replicas),
                    target.redis,
                    util,
                )),
                idle_device_bytes: idle,
                retained_bytes: retained,
                pending_bytes: pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use crate::shipped::inputs;

    #[test]
    fn the_node_count_is_the_most_any_resource_needs() {
        let (figures, mut target) = inputs();
        target.fleet.redundancy = Redundancy::None;
        let fleet = size(&figures, &target).unwrap();
        let most = fleet.uses.iter().map(|u| u.nodes_needed).max().unwrap();
        assert_eq!(fleet.nodes_needed, most);
        assert_eq!(fleet.nodes, most);
    }

    #[test]
    fn the_first_to_run_out_has_the_least_headroom() {
        let (figures, target) = inputs();
        for shape in
            ["cores=16,mem_gib=42", "cores=64,mem_gib=256", "cores=64,mem_gib=16", "cores=4,mem_gib=512"]
        {
            let mut target = target.clone();
            target.shape = shape.parse().unwrap();
            let fleet = size(&figures, &target).unwrap();
            let least = fleet.uses.iter().map(|u| u.headroom).fold(f64::INFINITY, f64::min);
            let first = fleet.uses.iter().find(|u| u.resource == fleet.first_to_run_out).unwrap();
            assert!((first.headroom - least).abs() < f64::EPSILON, "{shape}");
        }
    }

    #[test]
    fn memory_runs_out_first_on_a_box_with_little_memory_and_a_free_fleet_thread() {
        let (mut figures, mut target) = inputs();
        figures.gateway.us_per_remote_delivery.value = 0.0;
        figures.gateway.us_per_link_frame.value = 0.0;
        figures.gateway.us_per_registry_call.value = 0.0;
        target.shape = "cores=64,mem_gib=16".parse().unwrap();
        assert_eq!(size(&figures, &target).unwrap().first_to_run_out, Resource::Memory);
    }

    #[test]
    fn cpu_runs_out_first_on_a_box_with_one_core() {
        let (figures, mut target) = inputs();
        target.shape = "cores=1,mem_gib=64".parse().unwrap();
        assert_eq!(size(&figures, &target).unwrap().first_to_run_out, Resource::Cpu);
    }

    #[test]
    fn double_redundancy_deploys_twice_the_nodes_of_none() {
        let (figures, mut target) = inputs();
        target.fleet.redundancy = Redundancy::None;
        let none = size(&figures, &target).unwrap();
        target.fleet.redundancy = Redundancy::Double;
        let double = size(&figures, &target).unwrap();
        assert_eq!(double.nodes, 2 * double.nodes_needed);
        // At least twice the nodes: the extra nodes add links, and every
        // node reads more peers' leases.
        assert!(double.nodes >= 2 * none.nodes, "{} vs {}", double.nodes, none.nodes);
        target.fleet.redundancy = Redundancy::NPlus1;
        let spare = size(&figures, &target).unwrap();
        assert_eq!(spare.nodes, spare.nodes_needed + 1);
    }

    #[test]
    fn no_redundancy_keeps_the_binding_resource_at_or_under_the_plan() {
        let (figures, mut target) = inputs();
        target.fleet.redundancy = Redundancy::None;
        let fleet = size(&figures, &target).unwrap();
        let first = fleet.uses.iter().find(|u| u.resource == fleet.first_to_run_out).unwrap();
        assert!(
            first.utilisation <= target.fleet.cpu_utilisation.max(target.fleet.memory_utilisation) + 1e-9
        );
    }

    #[test]
    fn a_box_too_small_for_its_fixed_memory_is_an_error() {
        let (figures, mut target) = inputs();
        target.shape = "cores=16,mem_gib=2".parse().unwrap();
        assert!(matches!(size(&figures, &target), Err(ModelError::NoFit(_))));
    }

    #[test]
    fn shards_cover_both_cpu_and_memory() {
        let redis = RedisTarget { shard_mem_gib: 25.0, replicas: 1.0 };
        let s = shards(7.0, 100.0 * GIB, 0.0, redis, 0.7);
        assert_eq!((s.by_cpu, s.by_memory, s.masters, s.processes), (10, 4, 10, 20));
        // Each master's own memory leaves less room for the data.
        let s = shards(0.0, 100.0 * GIB, 0.5 * GIB, redis, 0.7);
        assert_eq!((s.by_memory, s.masters), (5, 5));
        assert!((s.memory_bytes - 102.5 * GIB).abs() < 1.0);
    }
}
