//! Node configuration: one [`Config`] read from a TOML file, every key optional
//! with a documented default, checked by [`Config::validate`] at load (quinn's
//! `TransportConfig`, pingora's `ServerConf`), then overridden by the command
//! line and environment ([`Cli`]).
//!
//! Precedence, lowest first: built-in defaults, the file (`--config`,
//! `GATEWAY_CONFIG`), `GATEWAY_*` environment variables, command-line flags.
//! [`documented_defaults`] prints every key with its doc line and default
//! (`gateway --print-config`).
//!
//! ```
//! use gateway::config::Config;
//!
//! let config = Config::from_toml("[listen]\nws = \"0.0.0.0:7700\"\n[node]\nworkers = 4\n")?;
//! config.validate()?;
//! assert_eq!(config.node.workers, 4);
//! assert_eq!(config.session.heartbeat_ms, 30_000); // the default
//! # Ok::<(), gateway::config::ConfigError>(())
//! ```
//!
//! Each section struct, its `Default` and its entry in the documented output
//! come from one table (the `section!` macro), so a key cannot lack a doc line
//! or a default, nor be missing from [`documented_defaults`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Most worker threads a node accepts (`node.workers`).
pub const MAX_WORKERS: usize = 1024;

/// Largest `session.echo_max_message`: 16 MiB, the biggest message of
/// Autobahn|Testsuite's cases (9.x), which `/echo` is checked with.
pub const ECHO_MAX_MESSAGE_LIMIT: usize = 16 << 20;

#[macro_use]
mod doc;
mod check;
mod cli;
mod error;
mod sections;

pub use check::{differences, Difference};
pub use cli::{Cli, Command, TokenArgs};
pub use doc::documented_defaults;
use doc::{FieldDoc, SectionDoc};
use error::invalid;
pub use error::ConfigError;

section! {
    /// Identity, storage and threads of this node.
    NodeConfig "node" {
        /// Node id, unique in the fleet: routing and the session registry name
        /// this node by it.
        id: u32 = 1;
        /// Directory for this node's state (signing keys by default).
        data_dir: PathBuf = PathBuf::from("./data");
        /// Worker threads, one event loop each; 0 = one per available core.
        workers: usize = 0;
        /// Pin worker N to core N, so a worker's sessions stay in one core's caches.
        pin_workers: bool = true;
        /// The workers' IO driver: "epoll" (mio), or "io_uring" (one ring per
        /// worker: multishot accept and receive into provided buffers; Linux
        /// 6.0+). A host that cannot run io_uring (an older kernel, a seccomp
        /// filter, the sysctl kernel.io_uring_disabled) gets one log line and
        /// epoll, unless driver_required.
        driver: Driver = Driver::Epoll;
        /// With driver = "io_uring": refuse to start, saying why, rather than
        /// fall back to epoll.
        driver_required: bool = false;
        /// io_uring: receive buffers per worker, shared by its connections (a
        /// power of two, at most 32768); a read waits for one when all are in
        /// use. Memory: uring_buffers x uring_buffer_size per worker.
        uring_buffers: u32 = 64;
        /// io_uring: bytes per receive buffer (one completion carries at most
        /// this much).
        uring_buffer_size: u32 = 16384;
        /// io_uring: submission queue entries per worker (1 to 32768; the
        /// completion queue has twice as many).
        uring_entries: u32 = 4096;
    }
}

/// The workers' IO driver (`node.driver`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Driver {
    /// mio over epoll.
    #[default]
    #[serde(rename = "epoll")]
    #[value(name = "epoll")]
    Epoll,
    /// One io_uring per worker.
    #[serde(rename = "io_uring")]
    #[value(name = "io_uring")]
    IoUring,
}

section! {
    /// Sockets and admission.
    ListenConfig "listen" {
        /// Client listener for plain WebSocket (ws://), ip:port.
        ws: String = "127.0.0.1:7700".to_owned();
        /// Client listener for WebSocket over TLS (wss://), ip:port; unset = none.
        /// Needs tls.cert and tls.key.
        wss: Option<String> = None, example "0.0.0.0:7443";
        /// Admin HTTP listener (/metrics, /healthz, /readyz), ip:port. Keep it off
        /// the public interface.
        admin: String = "127.0.0.1:7701".to_owned();
        /// listen(2) backlog of the client listeners (the kernel caps it at
        /// net.core.somaxconn).
        backlog: u32 = 4096;
        /// Connections a worker takes from each listener per loop turn; the rest
        /// wait in the backlog, where no deadline of the node runs yet. In a
        /// reconnect storm a worker then takes connections at the pace it serves
        /// them, instead of the whole backlog at once and cutting the ones it
        /// cannot reach within session.handshake_timeout_ms (which come back and
        /// add to the storm). At least 1. (io_uring's multishot accept takes
        /// what the backlog holds at a wake-up; the worker makes sessions of N per
        /// turn, queues the rest without a deadline and arms no accept until it
        /// has made them all.)
        accepts_per_turn: u32 = 64;
        /// Open connections this node holds before it stops accepting; 0 = the
        /// open-file limit (RLIMIT_NOFILE; the soft limit is raised to the hard one
        /// at start) minus 512 descriptors reserved for the store, listeners, admin
        /// and push (gateway --print-config shows this machine's value on stderr).
        max_connections: usize = 0;
        /// After reaching max_connections, accepting resumes below this fraction
        /// of it (hysteresis); in (0, 1].
        accept_resume_ratio: f64 = 0.9;
    }
}

section! {
    /// Certificate of the wss listener.
    TlsConfig "tls" {
        /// PEM certificate chain of the wss listener; required if and only if
        /// listen.wss is set.
        cert: Option<PathBuf> = None, example "/etc/gateway/tls/cert.pem";
        /// PEM private key of that certificate; required if and only if
        /// listen.wss is set.
        key: Option<PathBuf> = None, example "/etc/gateway/tls/key.pem";
        /// Issue TLS session tickets, so reconnecting clients resume without a
        /// full handshake.
        session_tickets: bool = true;
    }
}

section! {
    /// Per-connection deadlines, sizes and back-pressure.
    SessionConfig "session" {
        /// Deadline from accept to a completed WebSocket upgrade (TLS included), ms.
        handshake_timeout_ms: u64 = 5_000;
        /// Deadline from the upgrade to a verified HELLO, ms.
        auth_timeout_ms: u64 = 10_000;
        /// Heartbeat interval announced in AUTH_OK, ms: clients send PING this
        /// often (the server only checks for silence; SPEC §5).
        heartbeat_ms: u64 = 30_000;
        /// Heartbeat intervals without a frame from the client before it is
        /// closed (HEARTBEAT_TIMEOUT).
        heartbeat_misses: u32 = 3;
        /// Largest WebSocket message accepted from a client, bytes; at most the
        /// protocol's MAX_CLIENT_MESSAGE_LEN.
        max_message: usize = protocol::limits::MAX_CLIENT_MESSAGE_LEN;
        /// Largest SEND payload accepted, bytes (announced in AUTH_OK); at most
        /// the protocol's MAX_PAYLOAD and below max_message.
        max_payload: usize = protocol::limits::MAX_PAYLOAD;
        /// Bound on one client's queue: a reply (PONG, ERROR) that would pass it
        /// closes the client as a slow consumer (SLOW_CONSUMER); live output
        /// pauses first, and sync output is bounded by the client's acks.
        outbound_queue_bytes: usize = 262_144;
        /// Queued bytes above which live delivery pauses (the client catches up
        /// by sync); below outbound_queue_bytes.
        outbound_pause_bytes: usize = 131_072;
        /// Bytes queued for a client that has not authenticated yet (pongs to
        /// its WebSocket pings, AUTH_ERROR) before it is closed with 1008; at
        /// most outbound_queue_bytes.
        outbound_preauth_bytes: usize = 8_192;
        /// A client whose socket takes no bytes for this long while data is
        /// queued is closed, ms.
        write_stall_ms: u64 = 30_000;
        /// After the server's close frame, how long to wait for the client's
        /// before closing the socket, ms.
        linger_ms: u64 = 2_000;
        /// Conformance testing and benchmarks: also serve `/echo`, a raw
        /// WebSocket echo of text and binary messages (no auth, no protocol).
        echo_route: bool = false;
        /// Largest message accepted on `/echo`, bytes (up to 16 MiB; `/ws` keeps
        /// max_message); an echo session may queue this much more output.
        echo_max_message: usize = ECHO_MAX_MESSAGE_LIMIT;
    }
}

section! {
    /// Rate limits (token buckets) and queue bounds.
    LimitsConfig "limits" {
        /// New connections accepted per client IP per second (bucket refill rate).
        connections_per_ip_per_sec: u32 = 50;
        /// Connections a client IP may open in a burst (bucket size).
        connections_per_ip_burst: u32 = 200;
        /// Frames per second one session may send, WebSocket pings and pongs
        /// included (bucket refill rate); beyond it: RATE_LIMITED.
        frames_per_sec: u32 = 100;
        /// Frames one session may send in a burst (bucket size).
        frames_burst: u32 = 400;
        /// Logins (HELLO to the store's answer to the device's registration)
        /// the node runs at once, shared among the workers; HELLOs beyond wait
        /// in the login queue. It bounds the store requests a reconnect storm
        /// puts ahead of live traffic (4 of the embedded writer's batches).
        logins_in_flight: usize = 4_096;
        /// HELLOs that may wait for a login slot, node-wide. A HELLO beyond it,
        /// or one arriving once the oldest waiting HELLO has waited half of
        /// session.auth_timeout_ms, is refused at once (AUTH_ERROR OVERLOADED,
        /// close 1013) with a retry_after_ms of about that wait (at least 1 s),
        /// spread over twice it; 0: no queue.
        login_queue: usize = 16_384;
        /// Tokens of closed sessions the node remembers (one set for all
        /// workers), for 10 minutes at most: a client that comes back with the
        /// same token (a reconnect storm) skips its Ed25519 signature check;
        /// everything else in the token is checked again. Under 100 bytes each
        /// while held; 0: every token is checked in full.
        recent_tokens: usize = 524_288;
        /// Capacity of each worker's inbox, in batches (each worker and the
        /// fleet thread post at most one per loop turn). When full, another
        /// worker keeps its batch for its next turn and an inbound link
        /// withholds credit. The channel's slots are allocated and touched
        /// up front (40 bytes each), so this is memory every worker pays.
        worker_inbox: usize = 4_096;
    }
}

section! {
    /// The store service: messages, inboxes, cursors, groups, devices, prekeys
    /// (backend/store). Embedded in this process by default.
    StoreConfig "store" {
        /// "embedded": the store runs inside this process on node.data_dir/store;
        /// "remote": a separate `store` process reached over gRPC at store.endpoint.
        mode: BackendMode = BackendMode::Embedded;
        /// gRPC endpoint of the store process when mode = "remote".
        endpoint: String = "http://127.0.0.1:7710".to_owned();
        /// Embedded: when a write is acknowledged. "process": in the engine's
        /// journal, handed to the OS (survives kill -9 of this process); "fsync":
        /// synced to disk, group-committed every store.fsync_interval_ms.
        durability: Durability = Durability::Process;
        /// Embedded, durability = "fsync": longest wait for a group commit, ms.
        fsync_interval_ms: u64 = 2;
        /// Embedded: devices one user may register (4010 TOO_MANY_DEVICES
        /// beyond); at most the protocol's MAX_DEVICES_PER_USER.
        max_devices: u32 = 5;
        /// Embedded: undelivered messages expire after this many days.
        retention_days: u32 = 30;
        /// A device's one-time prekey stock at or below this gets PREKEY_LOW.
        prekey_low: u32 = 10;
        /// Embedded: writer threads, each with its own shard of the data (a
        /// database under node.data_dir/store, and a committer thread):
        /// backend/store/SHARDS.md. More than 1 spreads the store over more
        /// cores at more CPU per message; a store directory opens only with
        /// the count it was written with. 0: that count, or for a new store
        /// a quarter of the cores (at least 1). 0 to 64.
        writers: usize = 1;
        /// Store requests one worker may have outstanding; beyond it SEND is
        /// answered OVERLOADED (retryable).
        max_inflight: usize = 16_384;
        /// Remote: per-request deadline, ms (then BACKEND_UNAVAILABLE).
        timeout_ms: u64 = 5_000;
    }
}

section! {
    /// The push service: wakes offline devices (backend/push). Embedded in this
    /// process by default.
    PushConfig "push" {
        /// "embedded" or "remote" (a separate `push` process at push.endpoint).
        mode: BackendMode = BackendMode::Embedded;
        /// gRPC endpoint of the push process when mode = "remote".
        endpoint: String = "http://127.0.0.1:7720".to_owned();
        /// Embedded: where notifications go: "log" (a log line each) or a
        /// webhook URL (http://...) receiving one JSON POST per notification.
        provider: String = "log".to_owned();
        /// Embedded: notes for one device within this window become one push, ms.
        window_ms: u64 = 2_000;
        /// Embedded: tries before a push is dead-lettered.
        max_tries: u32 = 5;
    }
}

section! {
    /// Messaging behaviour of sessions.
    MessagingConfig "messaging" {
        /// Entries per SYNC_BATCH when the client asks for the server default;
        /// 1 to the protocol's MAX_SYNC_BATCH.
        sync_window: u32 = 256;
        /// A user stays online this long after its last session ends, ms, so that
        /// a mobile reconnect does not flap its presence.
        presence_grace_ms: u64 = 5_000;
        /// TYPING is forwarded at most once per this interval per conversation
        /// and session, ms.
        typing_interval_ms: u64 = 1_000;
        /// PREKEY_FETCH requests one user may make per minute (all its devices).
        prekey_fetches_per_min: u32 = 60;
    }
}

section! {
    /// Media tickets (SPEC §6.8): presigned upload and download URLs for an
    /// S3-compatible object store. Off (the MEDIA capability is not granted)
    /// while endpoint is unset.
    MediaConfig "media" {
        /// The object store's endpoint, an http:// or https:// URL (host and port);
        /// unset = no media.
        endpoint: Option<String> = None, example "https://s3.us-east-1.amazonaws.com";
        /// Bucket the blobs go to.
        bucket: String = "media".to_owned();
        /// Region named in the signatures (the bucket's region on AWS).
        region: String = "us-east-1".to_owned();
        /// PEM file of CA certificates trusted for an https endpoint, beside the
        /// public (webpki) roots: a store behind a private CA.
        ca_file: Option<PathBuf> = None, example "/etc/gateway/media-ca.pem";
        /// URL style: "path" (endpoint/bucket/key; most self-hosted stores) or
        /// "virtual_host" (bucket.endpoint/key; AWS).
        url_style: MediaUrlStyle = MediaUrlStyle::Path;
        /// File with the store's credentials, two lines: access key id, then
        /// secret key (GATEWAY_MEDIA_ACCESS_KEY and GATEWAY_MEDIA_SECRET_KEY,
        /// both set, win over it). The secret is never logged; the key id is
        /// public (SigV4 puts it in every URL). They need s3:PutObject,
        /// s3:GetObject and s3:ListBucket (the check is a HEAD of the bucket).
        credentials_file: Option<PathBuf> = None, example "/etc/gateway/media.credentials";
        /// File holding the key media ids are sealed with (at least 32 bytes;
        /// the same on every node of a fleet, required with cluster.registry);
        /// unset = node.data_dir/media-id.key, made on first use. Never logged.
        /// Changing it makes every media id issued before unknown.
        id_key_file: Option<PathBuf> = None, example "/etc/gateway/media-id.key";
        /// Prefix of every object's name (names follow: class/user/time-random).
        key_prefix: String = "media/".to_owned();
        /// How long a ticket's URL is valid, seconds (1 to 604800).
        ticket_lifetime_secs: u64 = 900;
        /// Largest blob, bytes (MEDIA_TOO_LARGE beyond); at most 5 GiB and at
        /// most quota_bytes_per_day.
        max_blob_bytes: u64 = 100 << 20;
        /// Bytes of upload tickets one user is granted per UTC day on this node
        /// (MEDIA_QUOTA_EXCEEDED beyond).
        quota_bytes_per_day: u64 = 2 << 30;
        /// Tickets (upload and download) one user may ask for per minute on this
        /// node (RATE_LIMITED beyond).
        tickets_per_min: u32 = 60;
        /// Media ids older than this are refused (UNKNOWN_MEDIA); the bucket's
        /// lifecycle rule should delete blobs after the same time (README).
        retention_days: u32 = 30;
        /// The store is checked (a presigned HEAD of the bucket) this often, ms;
        /// while checks fail, tickets are refused as BACKEND_UNAVAILABLE.
        probe_interval_ms: u64 = 5_000;
    }
}

/// URL style of the object store (`media.url_style`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaUrlStyle {
    /// `endpoint/bucket/key`.
    #[default]
    Path,
    /// `bucket.endpoint/key`.
    VirtualHost,
}

/// Where a backend service runs (`store.mode`, `push.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendMode {
    /// Inside the gateway process.
    #[default]
    Embedded,
    /// A separate process reached over gRPC.
    Remote,
}

/// When the store acknowledges a write (`store.durability`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// In the journal, handed to the OS.
    #[default]
    Process,
    /// fsync'd (group commit).
    Fsync,
}

section! {
    /// The fleet: several nodes as one (routing/README.md). Off while
    /// cluster.registry is empty (a single node); on, every node needs the
    /// shared store (store.mode = "remote") and the same cluster secret.
    ClusterConfig "cluster" {
        /// Redis URL(s) of the session registry: one redis:// URL of a single
        /// server, or seed URLs of a Redis Cluster (with registry_cluster =
        /// true); empty = no fleet.
        registry: Vec<String> = Vec::new(), example "[\"redis://127.0.0.1:6379\"]";
        /// The registry URLs are seeds of a Redis Cluster, not one server.
        registry_cluster: bool = false;
        /// Longest wait for one registry call, ms (then the call fails; a failed
        /// lookup is made again four times over 3.75 s, then live delivery falls
        /// back to the next sync).
        registry_timeout_ms: u64 = 500;
        /// This node's lease in the registry, ms: renewed every third of it; a
        /// node that cannot renew it in time is taken for dead by the others.
        lease_ms: u64 = 10_000;
        /// Link listener other nodes dial (authenticated, LINKS.md), ip:port.
        /// Keep it off the public interface.
        link_listen: String = "127.0.0.1:7702".to_owned();
        /// Address other nodes dial for this node's links; unset = link_listen.
        link_advertise: Option<String> = None, example "10.0.0.7:7702";
        /// File holding the cluster secret (at least 32 bytes; the same on
        /// every node): links prove they know it. Never logged.
        secret_file: Option<PathBuf> = None, example "/etc/gateway/cluster.secret";
        /// Where a user's devices are is cached per node, and re-read in the
        /// background once older than this, ms (routing never waits for it; a
        /// message to a device that moved meanwhile takes one more hop: its old
        /// node looks it up and sends it on). A device found nowhere is never
        /// cached.
        cache_ms: u64 = 2_000;
        /// Bytes queued for one peer node before frames are shed (ephemeral
        /// first, then the oldest live ones, which the inbox recovers).
        link_queue_bytes: usize = 8 << 20;
        /// Credit one inbound link is granted, bytes (at least 1 MiB + 4).
        link_window_bytes: u64 = 4 << 20;
        /// A SEND_ACK for a message with recipients on other nodes waits until
        /// their nodes took its entries (so that an acknowledged message never
        /// depends on this node living on), at most this long, ms; 0 = it never
        /// waits. At most lease_ms.
        ack_wait_ms: u64 = 200;
    }
}

section! {
    /// Graceful shutdown (SIGTERM).
    DrainConfig "drain" {
        /// GOAWAYs are spread over this window, ms, so clients do not all
        /// reconnect at once.
        window_ms: u64 = 30_000;
        /// Sessions still open this long after draining began are closed and
        /// the process exits, ms; at least window_ms.
        deadline_ms: u64 = 60_000;
    }
}

section! {
    /// Session token verification.
    AuthConfig "auth" {
        /// Directory of token verification keys; unset = keys/ under node.data_dir.
        keys_dir: Option<PathBuf> = None, example "/var/lib/gateway/keys";
        /// Clock skew tolerated on token expiry and not-before, seconds.
        leeway_secs: u64 = 60;
        /// Development signing key <data_dir>/keys/dev-signing.pk8 (created on
        /// first use, announced at WARN; tokens of `gateway token`): "auto" =
        /// only while keys_dir is unset, "on" = also with keys_dir, "off" = never.
        dev_key: DevKey = DevKey::Auto;
    }
}

/// Whether a node accepts tokens of the development key (`auth.dev_key`).
///
/// Its public half is held in memory, never written into a keys directory,
/// so pointing `auth.keys_dir` at production keys is enough to keep dev
/// tokens out. `true` and `false` are read as `"on"` and `"off"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DevKey {
    /// Only when no keys directory is configured (`auth.keys_dir` unset).
    #[default]
    Auto,
    /// Always, also next to a configured keys directory.
    On,
    /// Never.
    Off,
}

impl<'de> Deserialize<'de> for DevKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bool(bool),
            Name(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Bool(true) => Ok(Self::On),
            Repr::Bool(false) => Ok(Self::Off),
            Repr::Name(name) => match name.as_str() {
                "auto" => Ok(Self::Auto),
                "on" => Ok(Self::On),
                "off" => Ok(Self::Off),
                _ => Err(serde::de::Error::custom(format!(
                    "auth.dev_key must be \"auto\", \"on\" or \"off\", not {name:?}"
                ))),
            },
        }
    }
}

section! {
    /// Logging.
    LogConfig "log" {
        /// Log filter directives (RUST_LOG syntax), e.g. "info,gateway=debug".
        filter: String = "info".to_owned();
        /// Log line format: "text" (human) or "json" (one object per line).
        format: LogFormat = LogFormat::Text;
    }
}

/// Log line format (`log.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole node configuration: one field per `[section]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[node]`: identity, storage and threads.
    pub node: NodeConfig,
    /// `[listen]`: sockets and admission.
    pub listen: ListenConfig,
    /// `[tls]`: certificate of the wss listener.
    pub tls: TlsConfig,
    /// `[session]`: per-connection deadlines, sizes and back-pressure.
    pub session: SessionConfig,
    /// `[limits]`: rate limits and queue bounds.
    pub limits: LimitsConfig,
    /// `[drain]`: graceful shutdown.
    pub drain: DrainConfig,
    /// `[store]`: the store service.
    pub store: StoreConfig,
    /// `[push]`: the push service.
    pub push: PushConfig,
    /// `[messaging]`: messaging behaviour.
    pub messaging: MessagingConfig,
    /// `[media]`: media tickets.
    pub media: MediaConfig,
    /// `[cluster]`: the fleet.
    pub cluster: ClusterConfig,
    /// `[auth]`: token verification.
    pub auth: AuthConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
}

/// Sections in file order.
const SECTIONS: &[SectionDoc] = &[
    NodeConfig::DOC,
    ListenConfig::DOC,
    TlsConfig::DOC,
    SessionConfig::DOC,
    LimitsConfig::DOC,
    StoreConfig::DOC,
    PushConfig::DOC,
    MessagingConfig::DOC,
    MediaConfig::DOC,
    ClusterConfig::DOC,
    DrainConfig::DOC,
    AuthConfig::DOC,
    LogConfig::DOC,
];

impl Config {
    /// Parses a TOML document (not validated; see [`Config::validate`]).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, "<string>".to_owned())
    }

    fn parse(text: &str, origin: String) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse { origin, error })
    }

    /// Reads the file at `path`, or the defaults without one (not
    /// validated: [`Cli::load`] validates after applying overrides).
    pub fn read(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else { return Ok(Self::default()) };
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        Self::parse(&text, path.display().to_string())
    }

    /// Reads the file at `path` (defaults without one) and validates it.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config = Self::read(path)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value and the rules between values; the error names the
    /// first key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.node.validate()?;
        self.listen.validate()?;
        self.validate_tls()?;
        self.session.validate()?;
        self.limits.validate()?;
        self.drain.validate()?;
        self.store.validate()?;
        self.push.validate()?;
        self.messaging.validate()?;
        self.media.validate()?;
        self.cluster.validate()?;
        if self.media.enabled() && self.cluster.enabled() && self.media.id_key_file.is_none() {
            return Err(invalid(
                "media.id_key_file",
                "required with cluster.registry: every node must seal media ids with the same key, \
                 or a blob uploaded through one node cannot be fetched through another",
            ));
        }
        if self.cluster.enabled() && self.store.mode != BackendMode::Remote {
            return Err(invalid(
                "store.mode",
                "must be \"remote\" with cluster.registry set: every node of a fleet uses the shared store",
            ));
        }
        if self.log.filter.trim().is_empty() {
            return Err(invalid("log.filter", "must not be empty (e.g. \"info\")"));
        }
        if self.auth.dev_key == DevKey::On && self.dev_key_in_keys_dir() {
            return Err(invalid(
                "auth.dev_key",
                "\"on\" with auth.keys_dir = <node.data_dir>/keys would put the development key \
                 among the configured keys: point keys_dir elsewhere",
            ));
        }
        Ok(())
    }

    /// Whether this node accepts tokens of the development key
    /// (`auth.dev_key`, "auto" resolved against `auth.keys_dir`).
    pub fn uses_dev_key(&self) -> bool {
        match self.auth.dev_key {
            DevKey::Auto => self.auth.keys_dir.is_none(),
            DevKey::On => true,
            DevKey::Off => false,
        }
    }

    /// Whether `auth.keys_dir` is the directory the development key lives in
    /// (`<node.data_dir>/keys`), where it must then never be created.
    pub fn dev_key_in_keys_dir(&self) -> bool {
        self.auth.keys_dir.as_deref() == Some(self.node.data_dir.join("keys").as_path())
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        match (&self.listen.wss, &self.tls.cert, &self.tls.key) {
            (Some(_), None, _) => Err(invalid("tls.cert", "required when listen.wss is set")),
            (Some(_), _, None) => Err(invalid("tls.key", "required when listen.wss is set")),
            (None, Some(_), _) => {
                Err(invalid("tls.cert", "set but listen.wss is not (no listener would use it)"))
            }
            (None, _, Some(_)) => {
                Err(invalid("tls.key", "set but listen.wss is not (no listener would use it)"))
            }
            _ => Ok(()),
        }
    }

    /// Worker threads to start: `node.workers`, or one per available core
    /// when it is 0.
    pub fn worker_threads(&self) -> usize {
        match self.node.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    /// Directory of the token keys: `auth.keys_dir`, or `<node.data_dir>/keys`.
    pub fn keys_dir(&self) -> PathBuf {
        self.auth.keys_dir.clone().unwrap_or_else(|| self.node.data_dir.join("keys"))
    }
}
