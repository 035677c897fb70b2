//! The fleet as text: the load, each resource's demand, the node count and
//! what binds it, the Redis and store tiers, the seeds side by side, and
//! every assumption the answer rests on.

use std::fmt::Write as _;

use crate::figures::Figures;
use crate::fleet::Fleet;
use crate::seeds;
use crate::target::Target;

/// `x` rounded, with thousands separators.
pub fn count(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// Bytes in the largest binary unit that keeps the figure above 1.
pub fn gib(bytes: f64) -> String {
    const UNITS: [(&str, f64); 4] = [
        ("PiB", 1_125_899_906_842_624.0),
        ("TiB", 1_099_511_627_776.0),
        ("GiB", 1_073_741_824.0),
        ("MiB", 1_048_576.0),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{:.1} {unit}", bytes / size);
        }
    }
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

fn pct(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// The whole answer.
pub fn render(fleet: &Fleet, target: &Target, figures: &Figures) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_all(&mut out, fleet, target, figures);
    out
}

fn write_all(out: &mut String, fleet: &Fleet, target: &Target, figures: &Figures) -> std::fmt::Result {
    let r = &fleet.rates;
    let d = &fleet.demand;
    let g = &d.gateway;
    let l = &target.load;
    writeln!(
        out,
        "Target: {} sessions, {} msg/s at peak ({:.0} % 1:1; groups of {:.1} members on average), heartbeat {} s, TLS {:.0} %",
        count(r.sessions),
        count(l.peak_msgs_per_sec),
        l.direct_share * 100.0,
        target.mean_group_recipients() + 1.0,
        l.heartbeat_secs,
        l.tls_share * 100.0
    )?;
    writeln!(
        out,
        "Box: {} cores, {} GiB; redundancy {}; planned use at peak: CPU {:.0} %, memory {:.0} %, {} per box for the OS",
        fleet.shape.cores,
        fleet.shape.mem_gib,
        fleet.redundancy,
        fleet.cpu_utilisation * 100.0,
        fleet.memory_utilisation * 100.0,
        gib(fleet.os_reserve_bytes)
    )?;

    writeln!(out, "\nLoad at peak (per second, whole fleet)")?;
    let rows = [
        ("heartbeats (PING/PONG)", count(r.heartbeats), String::new()),
        ("logins (and as many closes)", count(r.connects), String::new()),
        (
            "1:1 messages",
            count(r.direct_msgs),
            format!("live {}, to offline devices {}", count(r.direct_online), count(r.direct_offline)),
        ),
        (
            "group messages",
            count(r.group_msgs),
            format!(
                "live deliveries {}, to offline devices {}",
                count(r.group_online),
                count(r.group_offline)
            ),
        ),
        ("receipts out (delivered, read)", count(r.receipts_out), format!("READ in {}", count(r.reads))),
        (
            "TYPING in",
            count(r.typing_in),
            format!("out live {}, to offline devices {}", count(r.typing_online), count(r.typing_offline)),
        ),
        ("presence watch events", count(r.watch_events), format!("notices out {}", count(r.presence_out))),
        (
            "live deliveries in all",
            count(r.live_deliveries()),
            format!("{} cross a link", pct(d.remote_share)),
        ),
    ];
    for (name, value, note) in rows {
        writeln!(out, "{}", format!("  {name:<32} {value:>12}   {note}").trim_end())?;
    }

    writeln!(out, "\nGateway demand (whole fleet, at peak)")?;
    writeln!(out, "  {:<32} {:>12}", "CPU, cores", format!("{:.1}", g.cpu))?;
    for (name, cores) in [
        ("heartbeats", g.heartbeats),
        ("logins and closes", g.connects),
        ("sending; 1:1 delivery", g.messages),
        ("group, receipt, typing, presence out", g.deliveries),
        ("READ, TYPING, watch in", g.frames_in),
        ("sync of offline entries", g.sync),
        ("idle nodes (timers, leases)", g.idle_nodes),
        ("fleet threads (links, registry)", g.fleet_thread),
    ] {
        writeln!(out, "    {name:<36} {cores:>10.1}  ({})", pct(cores / g.cpu.max(f64::MIN_POSITIVE)))?;
    }
    writeln!(out, "  {:<32} {:>12}", "link frames per second", count(g.link_frames))?;
    let s = r.sessions.max(1.0);
    writeln!(
        out,
        "  {:<32} {:>12}   {:.0} B per session",
        "memory, user space",
        gib(g.user_bytes),
        g.user_bytes / s
    )?;
    writeln!(
        out,
        "  {:<32} {:>12}   {:.0} B per socket",
        "memory, kernel (socket slab)",
        gib(g.kernel_bytes),
        g.kernel_bytes / s
    )?;
    writeln!(
        out,
        "  {:<32} {:>12}   idle process + links to {} peers",
        "memory, fixed per node",
        gib(g.node_fixed_bytes),
        count(g.link_peers)
    )?;

    writeln!(out, "\nGateway nodes ({} cores, {} GiB)", fleet.shape.cores, fleet.shape.mem_gib)?;
    writeln!(
        out,
        "  {:<14} {:>22} {:>22} {:>10}",
        "resource",
        "nodes needed at plan",
        format!("use of {} nodes", count(fleet.nodes as f64)),
        "headroom"
    )?;
    for u in &fleet.uses {
        writeln!(
            out,
            "  {:<14} {:>22} {:>22} {:>10}",
            u.resource.name(),
            count(u.nodes_needed as f64),
            pct(u.utilisation),
            pct(u.headroom)
        )?;
    }
    writeln!(
        out,
        "  nodes: {} needed, {} deployed ({}); first to run out: {}",
        count(fleet.nodes_needed as f64),
        count(fleet.nodes as f64),
        fleet.redundancy,
        fleet.first_to_run_out.name()
    )?;
    let n = fleet.nodes as f64;
    writeln!(
        out,
        "  per node: {} sessions, {:.1} cores, fleet thread {}, {} of memory, {} link connections, {:.1} LIVE frames per group message",
        count(fleet.sessions_per_node),
        g.cpu / n,
        pct(g.fleet_thread / n),
        gib((g.user_bytes + g.kernel_bytes) / n + g.node_fixed_bytes + fleet.os_reserve_bytes),
        count(fleet.link_connections_per_node),
        fleet.link_frames_per_group_msg
    )?;

    let reg = &d.registry;
    writeln!(out, "\nSession registry (Redis Cluster)")?;
    writeln!(
        out,
        "  {}/s round trips, {}/s commands; lookups of placed users {}/s (a routed item, or a node's group receipts to one sender, finds its placement stale {} of the time), of users placed nowhere {}/s; peers' lease reads {}/s",
        count(reg.requests),
        count(reg.commands),
        count(reg.lookups),
        pct(reg.lookup_share),
        count(reg.lookups_nowhere),
        count(reg.lease_reads)
    )?;
    writeln!(
        out,
        "  {} redis-server cores, {} of data + {} per master (Redis, a replica's backlog, a connection per node) = {}; masters: {} for CPU, {} for memory -> {} ({} with replicas)",
        format_args!("{:.1}", reg.server_cores),
        gib(reg.memory_bytes),
        gib(fleet.registry.per_master_bytes),
        gib(fleet.registry.memory_bytes),
        count(fleet.registry.by_cpu as f64),
        count(fleet.registry.by_memory as f64),
        count(fleet.registry.masters as f64),
        count(fleet.registry.processes as f64)
    )?;

    let st = &d.store;
    writeln!(out, "\nStore ({} engine)", st.engine)?;
    writeln!(
        out,
        "  {}/s requests; engine {:.1} cores (redis-servers {:.1}, store processes {:.1}); request stream {:.1} cores",
        count(st.requests),
        st.engine_cores,
        st.server_cores,
        st.instance_engine_cores,
        st.rpc_cores
    )?;
    writeln!(
        out,
        "  store instances: {} ({} cores each)",
        count(fleet.store.instances as f64),
        target.store.instance_cores
    )?;
    if let Some(shards) = &fleet.store.shards {
        writeln!(
            out,
            "  data: idle devices {}, messages kept {} h after their last ack {}, entries pending {} h {}",
            gib(fleet.store.idle_device_bytes),
            target.store.dedup_window_hours,
            gib(fleet.store.retained_bytes),
            target.store.pending_hours,
            gib(fleet.store.pending_bytes)
        )?;
        writeln!(
            out,
            "  masters: {} for CPU, {} for memory -> {} ({} with replicas)",
            count(shards.by_cpu as f64),
            count(shards.by_memory as f64),
            count(shards.masters as f64),
            count(shards.processes as f64)
        )?;
    }

    writeln!(out, "\nAgainst the seeds (002: 400 c5n.4xlarge, 500K connections each, 2x)\n")?;
    writeln!(out, "| quantity | seeds | model | why |")?;
    writeln!(out, "|---|---|---|---|")?;
    for row in seeds::compare(fleet) {
        writeln!(out, "| {} | {} | {} | {} |", row.quantity, row.seeds, row.model, row.why)?;
    }

    writeln!(out, "\nAssumed figures (figures.toml; the target's assumptions are marked in its file)")?;
    for (name, value, why) in figures.assumptions() {
        writeln!(out, "  {name} = {value}: {why}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_separators() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(1000.0), "1,000");
        assert_eq!(count(100_000_000.0), "100,000,000");
        assert_eq!(count(-1234.0), "-1,234");
    }

    #[test]
    fn bytes_pick_a_unit() {
        assert_eq!(gib(1.5 * (1u64 << 30) as f64), "1.5 GiB");
        assert_eq!(gib(2.0 * (1u64 << 50) as f64), "2.0 PiB");
        assert_eq!(gib(1024.0), "0.0 MiB");
    }
}
