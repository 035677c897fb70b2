//! The target load and the fleet policy (`target-seeds.toml`): what the
//! fleet must carry, on which box, with what redundancy and headroom.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{self, ModelError};

/// Everything the sizing needs beyond the figures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The traffic at peak.
    pub load: Load,
    /// Group sizes, by share of group messages.
    pub groups: Vec<GroupSize>,
    /// Redundancy and planned utilisation.
    pub fleet: Policy,
    /// The gateway box.
    #[serde(rename = "box")]
    pub shape: BoxShape,
    /// The store tier.
    pub store: StoreTarget,
    /// Redis deployment (registry and store clusters alike).
    pub redis: RedisTarget,
}

/// The traffic at peak.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Concurrent sessions (one device each).
    pub sessions: f64,
    /// Messages sent per second at peak.
    pub peak_msgs_per_sec: f64,
    /// Messages sent per second over a day (what memory retention sees).
    pub avg_msgs_per_sec: f64,
    /// Share of messages that are 1:1; the rest go to groups.
    pub direct_share: f64,
    /// Client heartbeat period.
    pub heartbeat_secs: f64,
    /// Share of sessions over TLS.
    pub tls_share: f64,
    /// Mean session length: every session reconnects this often.
    pub session_minutes: f64,
    /// Share of 1:1 recipients connected when the message is sent.
    pub direct_online_share: f64,
    /// Share of group members connected when the message is sent.
    pub group_online_share: f64,
    /// Delivered receipts a sender receives per delivery of its message.
    pub delivered_receipts_per_delivery: f64,
    /// READs sent per 1:1 message.
    pub direct_reads_per_message: f64,
    /// READs sent per group delivery (a READ covers every message up to it).
    pub group_reads_per_delivery: f64,
    /// TYPING frames sent per message.
    pub typing_per_message: f64,
    /// Presence watches a session starts per hour (each later ended).
    pub presence_watches_per_session_hour: f64,
    /// Sessions watching a given session's presence at a time.
    pub watchers_per_session: f64,
    /// Distinct senders a user receives from (placement cache reuse).
    pub senders_per_recipient: f64,
    /// Registered devices (the store keeps every one).
    pub registered_devices: f64,
}

/// One group size and its share of group messages.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSize {
    /// Members, the sender included.
    pub members: f64,
    /// Share of group messages sent in groups of this size.
    pub share: f64,
}

/// How the fleet is provisioned.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Spare capacity beyond what the load needs.
    pub redundancy: Redundancy,
    /// Highest planned CPU use of a core (and of a Redis shard).
    pub cpu_utilisation: f64,
    /// Highest planned share of a box's memory.
    pub memory_utilisation: f64,
    /// Memory kept for the OS and agents per box, GiB.
    pub os_reserve_gib: f64,
}

/// Spare capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Redundancy {
    /// Exactly what the load needs.
    #[serde(rename = "none")]
    None,
    /// One node more: the fleet survives the loss of any one node.
    #[serde(rename = "n_plus_1")]
    NPlus1,
    /// Twice what the load needs (the seeds' 2×).
    #[serde(rename = "double")]
    Double,
}

impl Redundancy {
    /// Nodes deployed for `needed` nodes of load.
    pub fn deploy(self, needed: u64) -> u64 {
        match self {
            Self::None => needed,
            Self::NPlus1 => needed.saturating_add(1),
            Self::Double => needed.saturating_mul(2),
        }
    }
}

impl FromStr for Redundancy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "n+1" | "n_plus_1" => Ok(Self::NPlus1),
            "double" | "2x" => Ok(Self::Double),
            other => Err(format!("redundancy {other:?}: expected none, n+1 or double")),
        }
    }
}

impl fmt::Display for Redundancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::NPlus1 => "n+1",
            Self::Double => "double",
        })
    }
}

/// A box: cores and memory.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BoxShape {
    /// Cores (vCPUs) the gateway's threads may use.
    pub cores: f64,
    /// Memory, GiB.
    pub mem_gib: f64,
}

impl FromStr for BoxShape {
    type Err = String;
    /// `cores=16,mem_gib=42`, in either order.
    fn from_str(s: &str) -> Result<Self, String> {
        let (mut cores, mut mem_gib) = (None, None);
        for part in s.split(',') {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected key=value"))?;
            let value: f64 = value.trim().parse().map_err(|e| format!("{part:?}: {e}"))?;
            match key.trim() {
                "cores" => cores = Some(value),
                "mem_gib" => mem_gib = Some(value),
                other => return Err(format!("{other:?}: expected cores or mem_gib")),
            }
        }
        match (cores, mem_gib) {
            (Some(cores), Some(mem_gib)) if cores > 0.0 && mem_gib > 0.0 => Ok(Self { cores, mem_gib }),
            _ => Err(format!("{s:?}: expected cores=N,mem_gib=M, both above 0")),
        }
    }
}

/// Which store engine the fleet runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreEngine {
    /// The embedded LSM, one writer thread per store process.
    Fjall,
    /// Redis Cluster behind store instances.
    Redis,
}

impl fmt::Display for StoreEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fjall => "fjall",
            Self::Redis => "redis",
        })
    }
}

/// The store tier.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTarget {
    /// The engine.
    pub engine: StoreEngine,
    /// Cores of a store instance's box.
    pub instance_cores: f64,
    /// How long a message's dedup records and body stay after the last ack.
    pub dedup_window_hours: f64,
    /// Mean time an entry for an offline device waits for its device.
    pub pending_hours: f64,
}

/// A Redis deployment.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTarget {
    /// Replicas per master.
    pub replicas: f64,
    /// Largest planned dataset per master, GiB.
    pub shard_mem_gib: f64,
}

impl Target {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::parse(&error::read(path)?, path)
    }

    /// Parses and checks a target read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ModelError> {
        let target: Self = toml::from_str(text)
            .map_err(|source| ModelError::Toml { path: path.to_owned(), source: Box::new(source) })?;
        target.validate()?;
        Ok(target)
    }

    /// Mean recipients of a group message (members − the sender).
    pub fn mean_group_recipients(&self) -> f64 {
        self.groups.iter().map(|g| g.share * (g.members - 1.0)).sum()
    }

    /// Every number in range; group shares sum to 1.
    pub fn validate(&self) -> Result<(), ModelError> {
        let l = &self.load;
        for (name, value) in [
            ("load.sessions", l.sessions),
            ("load.peak_msgs_per_sec", l.peak_msgs_per_sec),
            ("load.avg_msgs_per_sec", l.avg_msgs_per_sec),
            ("load.delivered_receipts_per_delivery", l.delivered_receipts_per_delivery),
            ("load.direct_reads_per_message", l.direct_reads_per_message),
            ("load.group_reads_per_delivery", l.group_reads_per_delivery),
            ("load.typing_per_message", l.typing_per_message),
            ("load.presence_watches_per_session_hour", l.presence_watches_per_session_hour),
            ("load.watchers_per_session", l.watchers_per_session),
            ("load.registered_devices", l.registered_devices),
            ("store.dedup_window_hours", self.store.dedup_window_hours),
            ("store.pending_hours", self.store.pending_hours),
            ("redis.replicas", self.redis.replicas),
            ("fleet.os_reserve_gib", self.fleet.os_reserve_gib),
        ] {
            error::non_negative(name, value)?;
        }
        for (name, value) in [
            ("load.sessions", l.sessions),
            ("load.heartbeat_secs", l.heartbeat_secs),
            ("load.session_minutes", l.session_minutes),
            ("load.senders_per_recipient", l.senders_per_recipient),
            ("box.cores", self.shape.cores),
            ("box.mem_gib", self.shape.mem_gib),
            ("store.instance_cores", self.store.instance_cores),
            ("redis.shard_mem_gib", self.redis.shard_mem_gib),
            ("fleet.cpu_utilisation", self.fleet.cpu_utilisation),
            ("fleet.memory_utilisation", self.fleet.memory_utilisation),
        ] {
            error::positive(name, value)?;
        }
        for (name, value) in [
            ("load.direct_share", l.direct_share),
            ("load.tls_share", l.tls_share),
            ("load.direct_online_share", l.direct_online_share),
            ("load.group_online_share", l.group_online_share),
            ("fleet.cpu_utilisation", self.fleet.cpu_utilisation),
            ("fleet.memory_utilisation", self.fleet.memory_utilisation),
        ] {
            error::share(name, value)?;
        }
        if self.groups.is_empty() {
            return Err(ModelError::invalid("groups", "at least one group size"));
        }
        for g in &self.groups {
            error::share("groups.share", g.share)?;
            if !(g.members.is_finite() && g.members >= 2.0) {
                return Err(ModelError::invalid("groups.members", format!("{} is below 2", g.members)));
            }
        }
        let total: f64 = self.groups.iter().map(|g| g.share).sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(ModelError::invalid("groups.share", format!("shares sum to {total}, not 1")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn box_shapes_parse_in_either_order_and_refuse_nonsense() {
        assert_eq!("cores=16,mem_gib=42".parse(), Ok(BoxShape { cores: 16.0, mem_gib: 42.0 }));
        assert_eq!("mem_gib=256, cores=64".parse(), Ok(BoxShape { cores: 64.0, mem_gib: 256.0 }));
        for bad in ["", "cores=16", "cores=0,mem_gib=1", "cores=x,mem_gib=1", "cpus=4,mem_gib=1"] {
            assert!(bad.parse::<BoxShape>().is_err(), "{bad}");
        }
    }

    #[test]
    fn redundancy_deploys_what_it_says() {
        assert_eq!(Redundancy::None.deploy(70), 70);
        assert_eq!(Redundancy::NPlus1.deploy(70), 71);
        assert_eq!(Redundancy::Double.deploy(70), 140);
        assert_eq!("n+1".parse(), Ok(Redundancy::NPlus1));
        assert!("triple".parse::<Redundancy>().is_err());
    }

    #[test]
    fn the_seeds_target_has_the_seeds_mean_group() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target-seeds.toml");
        let target = Target::load(&path).unwrap();
        let members = target.mean_group_recipients() + 1.0;
        assert!((members - 50.0).abs() < 1.0, "mean group {members}");
        assert!(target.groups.iter().any(|g| (g.members - 1024.0).abs() < f64::EPSILON));
    }

    #[test]
    fn group_shares_must_sum_to_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target-seeds.toml");
        let text = std::fs::read_to_string(&path).unwrap().replacen("share = 0.365", "share = 0.465", 1);
        let err = Target::parse(&text, &path).unwrap_err();
        assert!(err.to_string().contains("groups.share"), "{err}");
    }
}
