//! The seeds' own estimate (seed 002, sections 2.3, 2.5, 4.2 and 15), side by
//! side with the model's answer, and why each differs.

use serde::Serialize;

use crate::fleet::Fleet;
use crate::report::{count, gib};

/// The seeds' gateway servers (002 line 79).
pub const SERVERS: u64 = 400;
/// The seeds' connections per server (002 line 77).
pub const SESSIONS_PER_SERVER: f64 = 500_000.0;

/// One line of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What is compared.
    pub quantity: &'static str,
    /// The seeds' figure.
    pub seeds: String,
    /// The model's.
    pub model: String,
    /// Why they differ.
    pub why: String,
}

/// The comparison for `fleet`.
pub fn compare(fleet: &Fleet) -> Vec<Row> {
    let d = &fleet.demand;
    let binding = fleet.first_to_run_out.name();
    let per_session = (d.gateway.user_bytes + d.gateway.kernel_bytes) / fleet.rates.sessions.max(1.0);
    let at_500k = SESSIONS_PER_SERVER * per_session + d.gateway.node_fixed_bytes + fleet.os_reserve_bytes;
    let cpu_per_node = d.gateway.cpu / fleet.nodes as f64;
    let mut rows = vec![
        Row {
            quantity: "gateway servers, no redundancy",
            seeds: "200 (100M / 500K)".into(),
            model: count(fleet.nodes_needed as f64),
            why: format!(
                "the seeds divide connections by an assumed 500K per server; the model divides each measured cost by \
                 the box and keeps the largest: {binding} binds"
            ),
        },
        Row {
            quantity: "gateway servers deployed",
            seeds: format!("{SERVERS} (2x)"),
            model: format!("{} ({})", count(fleet.nodes as f64), fleet.redundancy),
            why: "same redundancy rule applied to a different base".into(),
        },
        Row {
            quantity: "sessions per server",
            seeds: "500K (250K at half load)".into(),
            model: count(fleet.sessions_per_node),
            why: format!(
                "a session idles at {:.1} KB (user {:.0} B + kernel {:.0} B); {} limits a node",
                per_session / 1000.0,
                d.gateway.user_bytes / fleet.rates.sessions.max(1.0),
                d.gateway.kernel_bytes / fleet.rates.sessions.max(1.0),
                binding,
            ),
        },
        Row {
            quantity: "memory of a server at 500K sessions",
            seeds: "not estimated".into(),
            model: format!("{} of {} GiB", gib(at_500k), fleet.shape.mem_gib),
            why: "user space, kernel slab, the idle process, links and the OS reserve".into(),
        },
        Row {
            quantity: "CPU per deployed server at peak",
            seeds: "not estimated".into(),
            model: format!("{cpu_per_node:.1} of {} cores", fleet.shape.cores),
            why: "heartbeats, logins, messages, deliveries, receipts, typing, presence, links, registry calls".into(),
        },
        Row {
            quantity: "session registry",
            seeds: "Redis Cluster, 50 nodes (002 line 255)".into(),
            model: format!(
                "{} masters ({} with replicas), {}",
                count(fleet.registry.masters as f64),
                count(fleet.registry.processes as f64),
                gib(fleet.registry.memory_bytes)
            ),
            why: registry_why(fleet),
        },
        Row {
            quantity: "registry writes for liveness",
            seeds: "20M/s (SETEX per 5 s heartbeat, 002 line 582)".into(),
            model: format!(
                "{}/s (leases) + {}/s (connect and close)",
                count(d.registry.renewals),
                count(fleet.rates.connects * 2.0)
            ),
            why: "node leases with boot epochs; a placement is written at connect and close only".into(),
        },
    ];
    let on_seeds: Vec<String> = fleet
        .on_seeds_fleet
        .iter()
        .map(|(resource, utilisation)| format!("{} {:.0} %", resource.name(), utilisation * 100.0))
        .collect();
    rows.push(Row {
        quantity: "the seeds' 400 servers under this load",
        seeds: "50 % loaded (2x)".into(),
        model: on_seeds.join(", "),
        why: "each resource's use of 400 boxes of this shape; above 100 % they do not carry the load".into(),
    });
    rows.push(store_row(fleet));
    rows
}

fn registry_why(fleet: &Fleet) -> String {
    let r = &fleet.demand.registry;
    if fleet.registry.by_cpu >= fleet.registry.by_memory {
        format!(
            "CPU binds: {}/s round trips, of which {}/s look up users placed nowhere (every entry for an offline \
             device) and {}/s placed ones",
            count(r.requests),
            count(r.lookups_nowhere),
            count(r.lookups)
        )
    } else {
        format!(
            "memory binds: {} of placements and presence watch sets, {} per master",
            gib(r.memory_bytes),
            gib(fleet.registry.per_master_bytes)
        )
    }
}

fn store_row(fleet: &Fleet) -> Row {
    let s = &fleet.demand.store;
    let model = match &fleet.store.shards {
        Some(shards) => format!(
            "{} store instances + {} Redis masters ({} with replicas), {} of data",
            count(fleet.store.instances as f64),
            count(shards.masters as f64),
            count(shards.processes as f64),
            gib(shards.memory_bytes)
        ),
        None => format!("{} fjall store instances", count(fleet.store.instances as f64)),
    };
    let why = match &fleet.store.shards {
        Some(shards) if shards.by_memory > shards.by_cpu => format!(
            "memory binds: the 30-day dedup window keeps every message's body in RAM ({}); engine CPU {} cores",
            gib(fleet.store.retained_bytes),
            count(s.engine_cores)
        ),
        Some(_) => format!("CPU binds: {} cores of engine work", count(s.engine_cores)),
        None => format!("one writer thread per process: {} cores of writer work", count(s.engine_cores)),
    };
    Row {
        quantity: "message store",
        seeds: "Cassandra, 525 nodes (3.5M writes/s / 20K × RF 3, 002 lines 99-105)".into(),
        model,
        why,
    }
}
