//! Arguments of the `echo`, `handshake`, `group` and `storm` scenarios, the
//! flags they share ([`Common`]) and the rate parser every scenario's flags
//! use ([`parse_rate`]). `cli` builds on this module, not the other way round.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Flags every newer scenario takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Common {
    /// Server listener (ip:port); repeat for several nodes, used round-robin.
    #[arg(long = "target", value_name = "IP:PORT", required = true)]
    pub(crate) targets: Vec<SocketAddr>,
    /// Local addresses to bind, round-robin (`127.0.0.2-127.0.0.60`, or a
    /// comma-separated list of addresses and ranges).
    #[arg(long, value_name = "RANGE")]
    pub(crate) source: Option<String>,
    /// Worker threads per process, each with its own poll loop.
    #[arg(long, value_name = "T", default_value_t = 1)]
    pub(crate) threads: u64,
    /// Run P copies of flood, each with a disjoint share of the connections
    /// and of the rates (one process holds at most its open-file limit).
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub(crate) processes: u64,
    /// A process to watch over the measured window (CPU, RSS); repeatable.
    #[arg(long = "pid", value_name = "PID")]
    pub(crate) pids: Vec<u32>,
    /// Print the summary as JSON (stdout) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Connect with TLS (wss://); needs --ca.
    #[arg(long, requires = "ca")]
    pub(crate) tls: bool,
    /// PEM file of the certificates to trust for --tls.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca: Option<PathBuf>,
    /// Name the server certificate must carry (default: the target's IP).
    #[arg(long, value_name = "NAME")]
    pub(crate) server_name: Option<String>,
    /// Deadline from the start of a connect to the upgrade (or AUTH_OK), ms.
    #[arg(long, value_name = "MS", default_value_t = 15_000)]
    pub(crate) handshake_timeout_ms: u64,
    /// Internal: run as a child of --processes (JSON lines on stdout).
    #[arg(long, hide = true)]
    pub(crate) child: bool,
}

/// `flood echo`.
#[derive(Debug, Clone, Args)]
pub(crate) struct EchoArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Connections.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) connections: u64,
    /// Messages in flight per connection.
    #[arg(long, value_name = "W", default_value_t = 16)]
    pub(crate) window: u32,
    /// Message size, bytes (at least 24: send time and sequence number).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub(crate) size: usize,
    /// Offered messages per second over all connections (each sends at its
    /// share, evenly spaced, never more than --window in flight), to compare
    /// servers at one load below saturation; unset: as fast as the window
    /// allows.
    #[arg(long, value_name = "R/s", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Length of the measured window, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Connections opened per second while ramping up.
    #[arg(long, value_name = "R/s", default_value = "1000/s", value_parser = parse_rate)]
    pub(crate) connect_rate: f64,
    /// After the window: longest wait for the echoes in flight, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) drain_timeout: f64,
    /// WebSocket path of the echo route.
    #[arg(long, value_name = "PATH", default_value = "/echo")]
    pub(crate) path: String,
}

/// `flood handshake`.
#[derive(Debug, Clone, Args)]
pub(crate) struct HandshakeArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Connections to open and close.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub(crate) connections: u64,
    /// Most handshakes in progress at once (all processes).
    #[arg(long, value_name = "C", default_value_t = 100)]
    pub(crate) concurrency: u64,
    /// Full protocol handshake: HELLO with a token minted with
    /// --signing-key, AUTH_OK, then the close (default path /ws). Without it:
    /// the WebSocket upgrade only (default path /echo, comparable with the
    /// baseline server).
    #[arg(long, requires = "signing_key")]
    pub(crate) protocol: bool,
    /// Ed25519 PKCS#8 signing key for --protocol tokens.
    #[arg(long, value_name = "PATH")]
    pub(crate) signing_key: Option<PathBuf>,
    /// Key id written into the tokens (default: the id `gateway` derives for
    /// its development key from the key itself).
    #[arg(long, value_name = "ID")]
    pub(crate) key_id: Option<u32>,
    /// --protocol: connection i is user FIRST_USER + (i mod USERS).
    #[arg(long, value_name = "U", default_value_t = 1)]
    pub(crate) first_user: u64,
    /// --protocol: distinct users (0: one per connection).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) users: u64,
    /// WebSocket path (default /ws with --protocol, else /echo).
    #[arg(long, value_name = "PATH")]
    pub(crate) path: Option<String>,
    /// Longest run, seconds (what is unfinished then counts as failed).
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub(crate) timeout: f64,
}

/// `flood group`.
#[derive(Debug, Clone, Args)]
pub(crate) struct GroupArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Groups.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) groups: u64,
    /// Members per group (creator included).
    #[arg(long, value_name = "G", default_value_t = 5)]
    pub(crate) group_size: u64,
    /// Senders per group (members 0..K).
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub(crate) senders: u64,
    /// Most SENDs in flight per sender (protocol only).
    #[arg(long, value_name = "W", default_value_t = 8)]
    pub(crate) window: u32,
    /// Messages per second per sender (still bounded by --window); default:
    /// as fast as the window allows. Required with --hub (no acks there).
    #[arg(long, value_name = "R/s", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Payload size, bytes (at least 24: send time, group, sender, sequence).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub(crate) payload: usize,
    /// Length of the measured window, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// After the window: longest wait for what is in flight, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) drain_timeout: f64,
    /// Longest wait for every GROUP_OK, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub(crate) setup_timeout: f64,
    /// Connections opened per second while ramping up.
    #[arg(long, value_name = "R/s", default_value = "1000/s", value_parser = parse_rate)]
    pub(crate) connect_rate: f64,
    /// Against the baseline hub: raw WebSocket rooms at PATH/ROOM (no
    /// auth, no acks; a message is broadcast to the room's other members).
    /// ROOM is the number of the group's first member, FIRST_USER + g·G.
    #[arg(long)]
    pub(crate) hub: bool,
    /// Ed25519 PKCS#8 signing key the tokens are minted with (not with --hub).
    #[arg(long, value_name = "PATH", required_unless_present = "hub")]
    pub(crate) signing_key: Option<PathBuf>,
    /// Key id written into the tokens (default: the id `gateway` derives for
    /// its development key from the key itself).
    #[arg(long, value_name = "ID")]
    pub(crate) key_id: Option<u32>,
    /// User id of member 0 of group 0; members are consecutive users.
    #[arg(long, value_name = "U", default_value_t = 1_000_000)]
    pub(crate) first_user: u64,
    /// WebSocket path (default /ws; with --hub the rooms' prefix, /hub).
    #[arg(long, value_name = "PATH")]
    pub(crate) path: Option<String>,
}

/// `flood storm`.
#[derive(Debug, Clone, Args)]
pub(crate) struct StormArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Sessions (an even number: pairs).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) sessions: u64,
    /// Share of the sessions dropped, percent.
    #[arg(long = "drop", value_name = "PCT", default_value_t = 50.0)]
    pub(crate) drop_percent: f64,
    /// Reconnections per second (all processes).
    #[arg(long, value_name = "R/s", default_value = "1000/s", value_parser = parse_rate)]
    pub(crate) reconnect_rate: f64,
    /// SENDs per second per session (bounded by --window).
    #[arg(long, value_name = "R/s", default_value = "5/s", value_parser = parse_rate)]
    pub(crate) rate: f64,
    /// Most SENDs in flight per session.
    #[arg(long, value_name = "W", default_value_t = 8)]
    pub(crate) window: u32,
    /// Payload size, bytes (at least 24).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub(crate) payload: usize,
    /// Traffic before the storm, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub(crate) warmup: f64,
    /// Traffic after every dropped session is back, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub(crate) after: f64,
    /// Longest wait for the dropped sessions to be back and synced, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub(crate) storm_timeout: f64,
    /// After the traffic: longest wait for what is in flight, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 15.0)]
    pub(crate) drain_timeout: f64,
    /// Connections opened per second while ramping up (all processes).
    #[arg(long, value_name = "R/s", default_value = "1000/s", value_parser = parse_rate)]
    pub(crate) connect_rate: f64,
    /// The targets are nodes of one fleet, as a client's list of node URLs:
    /// the two sessions of a pair may be on different nodes, a session whose
    /// connection is lost while live reconnects (resuming), and every failed
    /// attempt moves on to the next target.
    #[arg(long)]
    pub(crate) fleet: bool,
    /// `kill -9` of this process (a node) at the storm's trigger, by the
    /// first flood process only (0: none).
    #[arg(long, value_name = "PID")]
    pub(crate) kill_at_storm: Option<u32>,
    /// Ed25519 PKCS#8 signing key the tokens are minted with.
    #[arg(long, value_name = "PATH")]
    pub(crate) signing_key: PathBuf,
    /// Key id written into the tokens (default: the id `gateway` derives for
    /// its development key from the key itself).
    #[arg(long, value_name = "ID")]
    pub(crate) key_id: Option<u32>,
    /// User id of the first session (even); session i is user FIRST_USER + i.
    #[arg(long, value_name = "U", default_value_t = 2_000_000)]
    pub(crate) first_user: u64,
    /// WebSocket path.
    #[arg(long, value_name = "PATH", default_value = "/ws")]
    pub(crate) path: String,
}

/// `flood mix`.
#[derive(Debug, Clone, Args)]
pub(crate) struct MixArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Sessions (an even number: pairs), all processes.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub(crate) sessions: u64,
    /// Messages per second, all processes (the seeds' 2.3M/s peak at 1/1000
    /// is 2300).
    #[arg(long, value_name = "R/s", default_value = "2300/s", value_parser = parse_rate)]
    pub(crate) rate: f64,
    /// Share of the messages sent to the pair (the rest go to groups).
    #[arg(long, value_name = "SHARE", default_value_t = 0.7)]
    pub(crate) direct_share: f64,
    /// Senders per group (members 0..K).
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub(crate) senders: u64,
    /// Share of the pair sends preceded by a TYPING.
    #[arg(long, value_name = "SHARE", default_value_t = 0.5)]
    pub(crate) typing_share: f64,
    /// Share of group deliveries the member marks read (every pair
    /// delivery is marked read).
    #[arg(long, value_name = "SHARE", default_value_t = 0.1)]
    pub(crate) group_read_share: f64,
    /// Most SENDs in flight per session.
    #[arg(long, value_name = "W", default_value_t = 8)]
    pub(crate) window: u32,
    /// Payload size, bytes (at least 24; the seeds' average message is 100).
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub(crate) payload: usize,
    /// Length of the measured window, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub(crate) duration: f64,
    /// Longest wait for every GROUP_OK and membership entry, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub(crate) setup_timeout: f64,
    /// After the setup, seconds before the measured window opens: creating
    /// every group at once costs a delivery and an ACK per session, which
    /// the store and the links absorb first.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) settle: f64,
    /// After the window: longest wait for what is in flight, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub(crate) drain_timeout: f64,
    /// Longest wait for every live session's final sync, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub(crate) sync_timeout: f64,
    /// Connections opened per second while ramping up (all processes).
    #[arg(long, value_name = "R/s", default_value = "1000/s", value_parser = parse_rate)]
    pub(crate) connect_rate: f64,
    /// The targets are nodes of one fleet: a session whose connection is
    /// lost while live reconnects to the next target and resumes.
    #[arg(long)]
    pub(crate) fleet: bool,
    /// Ed25519 PKCS#8 signing key the tokens are minted with.
    #[arg(long, value_name = "PATH")]
    pub(crate) signing_key: PathBuf,
    /// Key id written into the tokens (default: the id `gateway` derives for
    /// its development key from the key itself).
    #[arg(long, value_name = "ID")]
    pub(crate) key_id: Option<u32>,
    /// User id of the first session (even); session i is user FIRST_USER + i.
    #[arg(long, value_name = "U", default_value_t = 3_000_000)]
    pub(crate) first_user: u64,
    /// WebSocket path.
    #[arg(long, value_name = "PATH", default_value = "/ws")]
    pub(crate) path: String,
}

/// `2000`, `2000/s` or `2.5/s`: a positive, finite rate.
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.trim().strip_suffix("/s").unwrap_or(text.trim());
    match number.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?}: expected a positive rate such as 2000/s")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2000/s").unwrap(), 2000.0);
        assert_eq!(parse_rate("2000").unwrap(), 2000.0);
        assert_eq!(parse_rate("0.5/s").unwrap(), 0.5);
        for bad in ["0", "-1/s", "fast", "inf", "NaN/s", "/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
