//! Command line: `flood connect|chat|fill|sync ...`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::args::{parse_rate, EchoArgs, GroupArgs, HandshakeArgs, MixArgs, StormArgs};

/// Connection-flood load tool for the gateway.
#[derive(Debug, Parser)]
#[command(name = "flood", version, about, long_about = None, args_override_self = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Scenarios.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Open SESSIONS sessions at RATE per second (WebSocket upgrade, HELLO,
    /// AUTH_OK), hold them idle for HOLD seconds once every session is
    /// authenticated or failed (PING every heartbeat, PONGs counted), then
    /// close them all with 1000 and exit.
    Connect(ConnectArgs),
    /// Open SESSIONS sessions in pairs (user 2k ↔ 2k+1, device 1, no
    /// receipts); once all are authenticated, every session sends SEND to its
    /// peer for DURATION seconds, at most WINDOW unacknowledged (as fast as
    /// SEND_ACKs allow, or at --rate per session), and acks what it receives
    /// once per WebSocket message. Reports messages sent, acked and
    /// delivered, acked/s, SEND→SEND_ACK and end-to-end latency percentiles,
    /// and the gateway's CPU (--gateway-pid). With --ping: PING/PONG round
    /// trips in the same window instead of SENDs (the unpersisted baseline).
    Chat(ChatArgs),
    /// Fill one device's inbox directly in a gateway's store (the node must
    /// be stopped): MESSAGES messages from FROM_USER to TO_USER, device 1.
    Fill(FillArgs),
    /// Connect one device (USER, device 1, resume_after 0) and drain its
    /// inbox: the server's SYNC_BATCHes, acked once per WebSocket message,
    /// until SYNC_DONE. Reports entries drained per second.
    Sync(SyncArgs),
    /// Raw WebSocket echo (no protocol, no auth) against any server's echo
    /// route: CONNECTIONS connections each keep WINDOW binary messages of
    /// SIZE bytes in flight for DURATION seconds; every echo is checked
    /// (intact, in order). Reports msgs/s, round-trip percentiles, errors by
    /// kind, and the --pid processes' CPU and RSS.
    Echo(EchoArgs),
    /// Open and close CONNECTIONS connections as fast as CONCURRENCY allows:
    /// the WebSocket upgrade only (default, path /echo: comparable with the
    /// baseline server), or with --protocol the full HELLO/AUTH_OK (path
    /// /ws). Reports handshakes/s and their latency.
    Handshake(HandshakeArgs),
    /// Groups of GROUP_SIZE sessions: member 0 creates each group
    /// (GROUP_CREATE naming the others), SENDERS members send to it for
    /// DURATION seconds, every member checks what it receives (loss,
    /// duplicates, order per sender) and acks. Reports fanout deliveries/s
    /// and send→deliver latency. With --hub: the baseline hub's rooms
    /// (PATH/ROOM, broadcast to the others, no auth, no acks).
    Group(GroupArgs),
    /// SESSIONS chat sessions in pairs send at RATE; after WARMUP seconds
    /// DROP % of them are dropped abruptly (no close frame) and reconnect at
    /// RECONNECT_RATE with HELLO.resume_after = their last ack. Reports the
    /// time until all are back and synced, reconnect latency, and proves
    /// every acknowledged message was delivered exactly once.
    Storm(StormArgs),
    /// The fleet's traffic: SESSIONS sessions in pairs (user 2k ↔ 2k+1) and
    /// in groups of 5 to 1,024 members, sending RATE messages per second in
    /// all (DIRECT_SHARE to the pair, the rest to the groups), with presence
    /// subscriptions, typing and READs, for DURATION seconds. Then every
    /// live session syncs once more, and each acknowledged message is
    /// checked at every recipient: lost, surfaced twice or out of
    /// conversation order must all be 0. With --fleet a session whose node
    /// dies reconnects to the next target and resumes.
    Mix(MixArgs),
}

/// `flood chat`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ChatArgs {
    /// Gateway client listener (ip:port); repeat for several, used round-robin.
    #[arg(long = "target", value_name = "IP:PORT", required = true)]
    pub(crate) targets: Vec<SocketAddr>,
    /// Sessions (an even number: pairs).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) sessions: u64,
    /// Connections opened per second while ramping up.
    #[arg(long, value_name = "R/s", default_value = "1000/s", value_parser = parse_rate)]
    pub(crate) connect_rate: f64,
    /// Length of the measured window, seconds (starts once every session is
    /// authenticated or failed).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Most SENDs (or PINGs) in flight per session.
    #[arg(long, value_name = "W", default_value_t = 32)]
    pub(crate) window: u32,
    /// SENDs per second per session (still bounded by --window); default:
    /// as fast as the window allows.
    #[arg(long, value_name = "R/s", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// SEND payload size, bytes (the first 8 are the send time).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub(crate) payload: usize,
    /// PING/PONG round trips instead of SENDs (same sessions, window and rate).
    #[arg(long)]
    pub(crate) ping: bool,
    /// After the window: longest wait for the sends in flight, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) drain_timeout: f64,
    /// The gateway's process id: its CPU time over the window is reported.
    #[arg(long, value_name = "PID")]
    pub(crate) gateway_pid: Option<u32>,
    /// Ed25519 PKCS#8 signing key the tokens are minted with (a gateway's
    /// `<data_dir>/keys/dev-signing.pk8`).
    #[arg(long, value_name = "PATH")]
    pub(crate) signing_key: PathBuf,
    /// Key id written into the tokens (default: the id `gateway` derives for
    /// its development key from the key itself).
    #[arg(long, value_name = "ID")]
    pub(crate) key_id: Option<u32>,
    /// User id of the first session (even); session i is user FIRST_USER + i.
    #[arg(long, value_name = "U", default_value_t = 2)]
    pub(crate) first_user: u64,
    /// Local addresses to bind, round-robin (as for `connect`).
    #[arg(long, value_name = "RANGE")]
    pub(crate) source: Option<String>,
    /// Worker threads, each with its own poll loop.
    #[arg(long, value_name = "T", default_value_t = 1)]
    pub(crate) threads: u64,
    /// Print the summary as JSON (stdout) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// WebSocket path.
    #[arg(long, value_name = "PATH", default_value = "/ws")]
    pub(crate) path: String,
    /// Deadline from the start of a connect to AUTH_OK, ms.
    #[arg(long, value_name = "MS", default_value_t = 15_000)]
    pub(crate) handshake_timeout_ms: u64,
}

/// `flood fill`.
#[derive(Debug, Clone, Args)]
pub(crate) struct FillArgs {
    /// The gateway's data directory (the store is `DIR/store`); the node
    /// must not be running.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
    /// Messages to store.
    #[arg(long, value_name = "K", default_value_t = 100_000)]
    pub(crate) messages: u64,
    /// Sender (device 1).
    #[arg(long, value_name = "U", default_value_t = 2)]
    pub(crate) from_user: u64,
    /// Recipient (its device 1 gets the inbox entries).
    #[arg(long, value_name = "U", default_value_t = 3)]
    pub(crate) to_user: u64,
    /// Payload size, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub(crate) payload: usize,
}

/// `flood sync`.
#[derive(Debug, Clone, Args)]
pub(crate) struct SyncArgs {
    /// Gateway client listener (ip:port).
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) target: SocketAddr,
    /// The device's user (device 1).
    #[arg(long, value_name = "U", default_value_t = 3)]
    pub(crate) user: u64,
    /// Entries expected in the inbox (reported beside what arrived).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub(crate) messages: u64,
    /// Longest wait for SYNC_DONE, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub(crate) timeout: f64,
    /// The gateway's process id: its CPU time during the drain is reported.
    #[arg(long, value_name = "PID")]
    pub(crate) gateway_pid: Option<u32>,
    /// Ed25519 PKCS#8 signing key the token is minted with.
    #[arg(long, value_name = "PATH")]
    pub(crate) signing_key: PathBuf,
    /// Key id written into the token (default: the id `gateway` derives for
    /// its development key from the key itself).
    #[arg(long, value_name = "ID")]
    pub(crate) key_id: Option<u32>,
    /// Print the summary as JSON (stdout) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// WebSocket path.
    #[arg(long, value_name = "PATH", default_value = "/ws")]
    pub(crate) path: String,
}

/// `flood connect`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectArgs {
    /// Gateway client listener (ip:port); repeat for several, used round-robin.
    #[arg(long = "target", value_name = "IP:PORT", required = true)]
    pub(crate) targets: Vec<SocketAddr>,
    /// Sessions to open (users FIRST_USER.., device 1).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub(crate) sessions: u64,
    /// Connections opened per second, over all threads and processes
    /// (`2000` or `2000/s`).
    #[arg(long, value_name = "R/s", default_value = "1000/s", value_parser = parse_rate)]
    pub(crate) rate: f64,
    /// Seconds to hold the sessions once every one is authenticated or failed.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) hold: f64,
    /// Local addresses to bind, round-robin: `127.0.0.2-127.0.0.60`, or a
    /// comma-separated list of addresses and ranges. Each address gives about
    /// 28,000 ports per target. Default: let the kernel choose.
    #[arg(long, value_name = "RANGE")]
    pub(crate) source: Option<String>,
    /// Ed25519 PKCS#8 signing key the tokens are minted with (a gateway's
    /// `<data_dir>/keys/dev-signing.pk8`).
    #[arg(long, value_name = "PATH")]
    pub(crate) signing_key: PathBuf,
    /// Key id written into the tokens (default: the id `gateway` derives for
    /// its development key from the key itself).
    #[arg(long, value_name = "ID")]
    pub(crate) key_id: Option<u32>,
    /// User id of the first session; session i is user FIRST_USER + i.
    #[arg(long, value_name = "U", default_value_t = 1)]
    pub(crate) first_user: u64,
    /// Connect with TLS (wss://); needs --ca.
    #[arg(long, requires = "ca")]
    pub(crate) tls: bool,
    /// PEM file of the certificates to trust for --tls (a CA, or the
    /// server's self-signed certificate).
    #[arg(long, value_name = "PEM")]
    pub(crate) ca: Option<PathBuf>,
    /// Name the server certificate must carry (default: the target's IP).
    #[arg(long, value_name = "NAME")]
    pub(crate) server_name: Option<String>,
    /// Worker threads per process, each with its own poll loop.
    #[arg(long, value_name = "T", default_value_t = 1)]
    pub(crate) threads: u64,
    /// Run P copies of flood, each with a disjoint share of the sessions
    /// (and of the rate), and sum their summaries. One process holds at most
    /// its open-file limit of connections.
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub(crate) processes: u64,
    /// Print the summary as JSON (stdout) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// WebSocket path.
    #[arg(long, value_name = "PATH", default_value = "/ws")]
    pub(crate) path: String,
    /// Deadline from the start of a connect to AUTH_OK, ms.
    #[arg(long, value_name = "MS", default_value_t = 15_000)]
    pub(crate) handshake_timeout_ms: u64,
    /// Internal: run as a child of --processes (JSON lines on stdout).
    #[arg(long, hide = true)]
    pub(crate) child: bool,
}

impl ConnectArgs {
    /// The arguments of one child of `--processes`: this run's settings with
    /// the child's share of sessions and rate, and its first user.
    pub(crate) fn child_args(&self, sessions: u64, first_user: u64, rate: f64) -> Vec<String> {
        let mut args = vec!["connect".to_owned()];
        for target in &self.targets {
            args.extend(["--target".to_owned(), target.to_string()]);
        }
        let mut pair = |flag: &str, value: String| args.extend([flag.to_owned(), value]);
        pair("--sessions", sessions.to_string());
        pair("--rate", rate.to_string());
        pair("--hold", self.hold.to_string());
        if let Some(source) = &self.source {
            pair("--source", source.clone());
        }
        pair("--signing-key", self.signing_key.display().to_string());
        if let Some(key_id) = self.key_id {
            pair("--key-id", key_id.to_string());
        }
        pair("--first-user", first_user.to_string());
        pair("--threads", self.threads.to_string());
        pair("--path", self.path.clone());
        pair("--handshake-timeout-ms", self.handshake_timeout_ms.to_string());
        if let Some(ca) = &self.ca {
            pair("--ca", ca.display().to_string());
        }
        if let Some(name) = &self.server_name {
            pair("--server-name", name.clone());
        }
        if self.tls {
            args.push("--tls".to_owned());
        }
        args.push("--child".to_owned());
        args
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn child_args_parse_back() {
        let cli = Cli::try_parse_from([
            "flood",
            "connect",
            "--target",
            "127.0.0.1:7700",
            "--target",
            "127.0.0.1:7702",
            "--sessions",
            "30000",
            "--rate",
            "3000/s",
            "--hold",
            "5",
            "--source",
            "127.0.0.2-127.0.0.9",
            "--signing-key",
            "/k.pk8",
            "--tls",
            "--ca",
            "/ca.pem",
            "--processes",
            "2",
            "--json",
        ])
        .unwrap();
        let Command::Connect(args) = cli.command else { panic!("not connect") };
        let child = args.child_args(15_000, 15_001, 1500.0);
        let parsed = Cli::try_parse_from(std::iter::once("flood".to_owned()).chain(child)).unwrap();
        let Command::Connect(child) = parsed.command else { panic!("not connect") };
        assert_eq!(child.targets, args.targets);
        assert_eq!((child.sessions, child.first_user, child.rate), (15_000, 15_001, 1500.0));
        assert_eq!(child.source.as_deref(), Some("127.0.0.2-127.0.0.9"));
        assert!(child.tls && child.child && !child.json);
        assert_eq!(child.processes, 1);
    }
}
