//! The fleet's metrics (relaxed counters), rendered beside the node's own
//! families on `/metrics`. Names: `gateway_fleet_*`, listed in [`NAMES`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use routing_links::{InboundStats, PeerStats};

/// The fleet's families: name, type, help.
pub(crate) const NAMES: &[(&str, &str, &str)] = &[
    (
        "gateway_fleet_registry_healthy",
        "gauge",
        "1 while the session registry answers, else 0; /readyz is 503 while 0.",
    ),
    ("gateway_fleet_registry_calls_total", "counter", "Registry calls, by result (ok, error)."),
    ("gateway_fleet_registry_seconds_sum", "counter", "Total time spent in registry calls."),
    (
        "gateway_fleet_registry_reconnects_total",
        "counter",
        "Times the registry connection was rebuilt from the seed URLs after calls kept failing (a Redis Cluster failover).",
    ),
    (
        "gateway_fleet_cache_hits_total",
        "counter",
        "Fleet items whose user's placements were in the node's cache.",
    ),
    (
        "gateway_fleet_cache_misses_total",
        "counter",
        "Registry lookups started for fleet items whose device was not in the node's cache (one per user, however many items wait for it).",
    ),
    (
        "gateway_fleet_cache_users",
        "gauge",
        "Users whose placements the node caches (about 150 bytes each, 1,048,576 at most, then the cache starts over).",
    ),
    (
        "gateway_fleet_parked",
        "gauge",
        "Fleet items waiting for their user's registry lookup (routing never waits for the registry).",
    ),
    (
        "gateway_fleet_lookups_waiting",
        "gauge",
        "Registry lookups waiting for one of the node's 256 slots (a burst of users the cache does not know).",
    ),
    (
        "gateway_fleet_lookup_retries_total",
        "counter",
        "Lookups of a user with waiting items made again after one failed.",
    ),
    (
        "gateway_fleet_lookups_given_up_total",
        "counter",
        "Users whose lookups all failed: their waiting items went to push notes (read at the devices' next sync).",
    ),
    (
        "gateway_fleet_misroutes_total",
        "counter",
        "Live entries received for a device no longer on this node (looked up again).",
    ),
    (
        "gateway_fleet_replaced_total",
        "counter",
        "Older sessions of a device closed with 4007 across nodes: REPLACE sent to their node, or found here when placing them late.",
    ),
    (
        "gateway_fleet_fenced_total",
        "counter",
        "Times this node found its lease lost while alive and joined again.",
    ),
    (
        "gateway_fleet_presence_suppressed_total",
        "counter",
        "Offline announcements not made: the user's last device left this node, but it is online on another.",
    ),
    (
        "gateway_fleet_presence_shed_total",
        "counter",
        "Presence items (watch, unwatch, change) dropped because their lane held 65,536 waiting for the registry.",
    ),
    (
        "gateway_fleet_placed_late_total",
        "counter",
        "Sessions placed in the registry after they connected (it was down, or the node was fenced), then resynced.",
    ),
    ("gateway_fleet_peers", "gauge", "Links this node dials (peers it sends to)."),
    ("gateway_fleet_bad_frames_total", "counter", "Link frames dropped for content a gateway never sends."),
    (
        "gateway_fleet_inbound_waits_total",
        "counter",
        "Link frames held back because a worker inbox was full (credit withheld).",
    ),
    (
        "gateway_fleet_inbound_shed_total",
        "counter",
        "Items from links shed because a worker inbox filled meanwhile.",
    ),
    (
        "gateway_fleet_acks_waiting",
        "gauge",
        "Messages whose SEND_ACK waits for their LIVE frames to be taken by the recipients' nodes.",
    ),
    (
        "gateway_fleet_confirms_refused_total",
        "counter",
        "Confirmations of held SEND_ACKs a full worker inbox refused (those acks go at cluster.ack_wait_ms).",
    ),
    ("gateway_fleet_inbound_links", "gauge", "Links other nodes hold open to this node."),
    ("gateway_fleet_inbound_frames_total", "counter", "Data frames received over links, by kind (live, other)."),
    ("gateway_fleet_inbound_bytes_total", "counter", "Bytes of data frames received over links."),
    (
        "gateway_fleet_inbound_refused_total",
        "counter",
        "Link connections refused at the handshake (no or a wrong secret).",
    ),
];

/// The per-link families (label `peer`, the node dialed).
pub(crate) const LINK_NAMES: &[(&str, &str, &str)] = &[
    ("gateway_fleet_link_queue_bytes", "gauge", "Bytes queued for a peer node, not yet written."),
    ("gateway_fleet_link_frames_total", "counter", "Link frames written to a peer node."),
    (
        "gateway_fleet_link_writes_total",
        "counter",
        "Writes to a peer node's link (each carries one or more frames).",
    ),
    ("gateway_fleet_link_bytes_total", "counter", "Bytes written to a peer node's link."),
    (
        "gateway_fleet_link_shed_total",
        "counter",
        "Frames for a peer node shed from a full queue, by lane (live, ephemeral).",
    ),
    ("gateway_fleet_link_connects_total", "counter", "Links to a peer node established."),
    ("gateway_fleet_link_failures_total", "counter", "Dials or links to a peer node that failed."),
    (
        "gateway_fleet_link_returned_total",
        "counter",
        "LIVE frames a failed link to a peer node handed back before the peer took them (their devices looked up again).",
    ),
];

/// Counters of the fleet thread.
#[derive(Debug, Default)]
pub(crate) struct FleetMetrics {
    pub(crate) healthy: AtomicBool,
    pub(crate) calls_ok: AtomicU64,
    pub(crate) calls_failed: AtomicU64,
    pub(crate) call_micros: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) cache_users: AtomicU64,
    pub(crate) parked: AtomicU64,
    pub(crate) lookups_waiting: AtomicU64,
    pub(crate) lookup_retries: AtomicU64,
    pub(crate) lookups_given_up: AtomicU64,
    pub(crate) misroutes: AtomicU64,
    pub(crate) replaced: AtomicU64,
    pub(crate) fenced: AtomicU64,
    pub(crate) placed_late: AtomicU64,
    pub(crate) presence_suppressed: AtomicU64,
    pub(crate) presence_shed: AtomicU64,
    pub(crate) peers: AtomicU64,
    pub(crate) bad_frames: AtomicU64,
    pub(crate) inbound_waits: AtomicU64,
    pub(crate) inbound_shed: AtomicU64,
    pub(crate) acks_waiting: AtomicU64,
    pub(crate) confirms_refused: AtomicU64,
    pub(crate) inbound: Arc<InboundStats>,
    /// The links this node dials, by peer node.
    pub(crate) links: std::sync::Mutex<Vec<(u32, Arc<PeerStats>)>>,
}

impl FleetMetrics {
    /// Whether the registry answered its last call (`/readyz`).
    pub(crate) fn registry_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// One registry call that started at `started`.
    pub(crate) fn call(&self, started: Instant, ok: bool) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.call_micros.fetch_add(micros, Ordering::Relaxed);
        let counter = if ok { &self.calls_ok } else { &self.calls_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        super::set_health(&self.healthy, ok);
    }

    /// A link to `node` was started.
    pub(crate) fn link_started(&self, node: u32, stats: Arc<PeerStats>) {
        self.links().push((node, stats));
        self.peers.fetch_add(1, Ordering::Relaxed);
    }

    /// The link to `node` was dropped.
    pub(crate) fn link_dropped(&self, node: u32) {
        self.links().retain(|(peer, _)| *peer != node);
        self.peers.fetch_sub(1, Ordering::Relaxed);
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Vec<(u32, Arc<PeerStats>)>> {
        self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The per-link families, one series per peer node.
    fn render_links(&self, out: &mut String) {
        let links = self.links();
        for &(name, kind, help) in LINK_NAMES {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (peer, stats) in links.iter() {
                let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
                match name {
                    "gateway_fleet_link_shed_total" => {
                        let _ = writeln!(
                            out,
                            "{name}{{peer=\"{peer}\",lane=\"live\"}} {}",
                            get(&stats.shed_live)
                        );
                        let _ = writeln!(
                            out,
                            "{name}{{peer=\"{peer}\",lane=\"ephemeral\"}} {}",
                            get(&stats.shed_ephemeral)
                        );
                    }
                    _ => {
                        let value = match name {
                            "gateway_fleet_link_queue_bytes" => get(&stats.queued_bytes),
                            "gateway_fleet_link_frames_total" => get(&stats.frames),
                            "gateway_fleet_link_writes_total" => get(&stats.writes),
                            "gateway_fleet_link_bytes_total" => get(&stats.bytes),
                            "gateway_fleet_link_connects_total" => get(&stats.connects),
                            "gateway_fleet_link_returned_total" => get(&stats.returned),
                            _ => get(&stats.failures),
                        };
                        let _ = writeln!(out, "{name}{{peer=\"{peer}\"}} {value}");
                    }
                }
            }
        }
    }

    /// Appends the Prometheus text of every family.
    pub(crate) fn render(&self, out: &mut String) {
        self.render_links(out);
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        for &(name, kind, help) in NAMES {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let value = match name {
                "gateway_fleet_registry_healthy" => u64::from(self.healthy.load(Ordering::Relaxed)),
                "gateway_fleet_registry_calls_total" => {
                    let _ = writeln!(out, "{name}{{result=\"ok\"}} {}", get(&self.calls_ok));
                    let _ = writeln!(out, "{name}{{result=\"error\"}} {}", get(&self.calls_failed));
                    continue;
                }
                "gateway_fleet_registry_seconds_sum" => {
                    let _ = writeln!(out, "{name} {}", get(&self.call_micros) as f64 / 1e6);
                    continue;
                }
                "gateway_fleet_registry_reconnects_total" => get(&self.reconnects),
                "gateway_fleet_cache_hits_total" => get(&self.cache_hits),
                "gateway_fleet_cache_misses_total" => get(&self.cache_misses),
                "gateway_fleet_cache_users" => get(&self.cache_users),
                "gateway_fleet_parked" => get(&self.parked),
                "gateway_fleet_lookups_waiting" => get(&self.lookups_waiting),
                "gateway_fleet_lookup_retries_total" => get(&self.lookup_retries),
                "gateway_fleet_lookups_given_up_total" => get(&self.lookups_given_up),
                "gateway_fleet_misroutes_total" => get(&self.misroutes),
                "gateway_fleet_replaced_total" => get(&self.replaced),
                "gateway_fleet_fenced_total" => get(&self.fenced),
                "gateway_fleet_placed_late_total" => get(&self.placed_late),
                "gateway_fleet_presence_suppressed_total" => get(&self.presence_suppressed),
                "gateway_fleet_presence_shed_total" => get(&self.presence_shed),
                "gateway_fleet_peers" => get(&self.peers),
                "gateway_fleet_bad_frames_total" => get(&self.bad_frames),
                "gateway_fleet_inbound_waits_total" => get(&self.inbound_waits),
                "gateway_fleet_inbound_shed_total" => get(&self.inbound_shed),
                "gateway_fleet_acks_waiting" => get(&self.acks_waiting),
                "gateway_fleet_confirms_refused_total" => get(&self.confirms_refused),
                "gateway_fleet_inbound_links" => get(&self.inbound.open),
                "gateway_fleet_inbound_frames_total" => {
                    let lives = get(&self.inbound.lives);
                    let _ = writeln!(out, "{name}{{kind=\"live\"}} {lives}");
                    let _ = writeln!(
                        out,
                        "{name}{{kind=\"other\"}} {}",
                        get(&self.inbound.frames).saturating_sub(lives)
                    );
                    continue;
                }
                "gateway_fleet_inbound_bytes_total" => get(&self.inbound.bytes),
                "gateway_fleet_inbound_refused_total" => get(&self.inbound.refused),
                _ => continue,
            };
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_rendered_once_with_its_help_type_and_samples() {
        let metrics = FleetMetrics::default();
        metrics.call(Instant::now(), true);
        metrics.inbound.frames.fetch_add(3, Ordering::Relaxed);
        metrics.inbound.lives.fetch_add(2, Ordering::Relaxed);
        let mut out = String::new();
        metrics.render(&mut out);
        for (name, kind, _) in NAMES {
            assert!(name.starts_with("gateway_fleet_"), "{name}");
            assert_eq!(*kind == "counter", name.ends_with("_total") || name.ends_with("_sum"), "{name}");
            assert_eq!(out.matches(&format!("# TYPE {name} {kind}\n")).count(), 1, "{name}");
            assert!(
                out.lines().any(|line| line.starts_with(name) && !line.starts_with('#')),
                "{name} has no sample"
            );
        }
        assert!(out.contains("gateway_fleet_registry_healthy 1\n"));
        assert!(out.contains("gateway_fleet_registry_calls_total{result=\"ok\"} 1\n"));
        assert!(out.contains("gateway_fleet_inbound_frames_total{kind=\"live\"} 2\n"));
        assert!(out.contains("gateway_fleet_inbound_frames_total{kind=\"other\"} 1\n"));
    }
}
