//! `store`: the store service as a process of its own. Opens the engine
//! (fjall on `--data-dir`, or with `--engine redis` a Redis Cluster seeded
//! by `--redis`: stateless, several processes may serve one cluster),
//! serves it over gRPC on `--listen`, prints `listening on <addr>` when
//! ready, and on SIGTERM/SIGINT stops accepting, finishes what is in
//! flight, closes the store and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use backend_rpc::daemon::{self, Fatal};
use backend_rpc::StoreService;
use backend_store::{Durability, Store, StoreApi, StoreConfig};
use backend_store_redis::{Durability as RedisDurability, RedisConfig, RedisStore};
use clap::{Parser, ValueEnum};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

/// The store service (messages, inboxes, groups, prekeys) over gRPC.
#[derive(Debug, Parser)]
#[command(name = "store", version)]
struct Args {
    /// gRPC address to listen on (port 0: any free port, printed when ready).
    #[arg(long, env = "STORE_LISTEN", default_value = "127.0.0.1:7710")]
    listen: SocketAddr,
    /// The engine: `fjall` (embedded, on `--data-dir`) or `redis` (a Redis
    /// Cluster, `--redis`; backend/store/REDIS.md).
    #[arg(long, env = "STORE_ENGINE", value_enum, default_value_t = Engine::Fjall)]
    engine: Engine,
    /// Database directory, created if missing (fjall).
    #[arg(long, env = "STORE_DATA_DIR", default_value = "./data/store")]
    data_dir: PathBuf,
    /// Seed URLs of the Redis Cluster (`redis://host:port`, repeated or
    /// comma-separated; with `--engine redis`).
    #[arg(long, env = "STORE_REDIS", value_delimiter = ',')]
    redis: Vec<String>,
    /// `process`: answered once in the journal (survives kill -9);
    /// `fsync`: answered once synced (survives power loss; group commit).
    /// With `--engine redis`, the AOF setting every master must have
    /// (`appendonly yes`; `fsync` also `appendfsync always`), checked at start.
    #[arg(long, env = "STORE_DURABILITY", value_enum, default_value_t = Mode::Process)]
    durability: Mode,
    /// With `--engine redis`: replicas that must have a send's writes before
    /// it is acknowledged (`WAIT`; 0: none).
    #[arg(long, env = "STORE_REPLICAS", default_value_t = 0)]
    replicas: u32,
    /// With `--engine redis`: longest wait for those replicas, ms (then the
    /// send is refused as retryable).
    #[arg(long, env = "STORE_REPLICA_TIMEOUT_MS", default_value_t = 1_000)]
    replica_timeout_ms: u64,
    /// Longest wait for a group-commit fsync (with `--durability fsync`).
    #[arg(long, env = "STORE_FSYNC_INTERVAL_MS", default_value_t = 2)]
    fsync_interval_ms: u64,
    /// Most devices per user.
    #[arg(long, env = "STORE_MAX_DEVICES", default_value_t = 5)]
    max_devices: u32,
    /// How long undelivered messages are kept, in days.
    #[arg(long, env = "STORE_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u64,
    /// Writer threads (fjall engine): each owns a shard of the data, its own
    /// database under the data directory (`backend/store/SHARDS.md`). A
    /// directory opens only with the count it was written with; 0 takes
    /// that count, or for a new one a quarter of the cores (at least 1).
    #[arg(long, env = "STORE_WRITERS", default_value_t = 1)]
    writers: usize,
    /// Bound of each request queue (default: the store's own, 65 536);
    /// beyond it requests answer Overloaded.
    #[arg(long, env = "STORE_QUEUE")]
    queue: Option<usize>,
    /// Admin address serving `GET /metrics` (Prometheus text); off if unset.
    #[arg(long, env = "STORE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Largest gRPC message in either direction, in bytes.
    #[arg(long, env = "STORE_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    max_message_bytes: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Process,
    Fsync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Engine {
    Fjall,
    Redis,
}

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => fatal.report("store"),
    }
}

fn config(args: &Args) -> Result<StoreConfig, Fatal> {
    let mut config = StoreConfig::new(&args.data_dir);
    config.durability = match args.durability {
        Mode::Process => Durability::Process,
        Mode::Fsync => Durability::Fsync { interval: Duration::from_millis(args.fsync_interval_ms) },
    };
    config.max_devices = args.max_devices;
    let retention_s = args
        .retention_days
        .checked_mul(24 * 3600)
        .ok_or_else(|| Fatal::usage(format!("--retention-days {} is too large", args.retention_days)))?;
    config.retention = Duration::from_secs(retention_s);
    if let Some(queue) = args.queue {
        config.queue = queue;
    }
    config.writers = args.writers;
    config.validate().map_err(|e| Fatal::usage(format!("invalid store config: {e}")))?;
    if args.max_message_bytes == 0 {
        return Err(Fatal::usage("--max-message-bytes must be above zero"));
    }
    Ok(config)
}

fn run(args: Args) -> Result<(), Fatal> {
    if args.engine == Engine::Redis {
        return run_redis(&args);
    }
    if args.replicas > 0 {
        return Err(Fatal::usage("--replicas is for --engine redis (the fjall engine has no replicas)"));
    }
    let config = config(&args)?;
    let store = Store::open(config)
        .map_err(|e| Fatal::runtime(format!("cannot open the store in {}: {e}", args.data_dir.display())))?;
    tracing::info!(dir = %args.data_dir.display(), durability = ?args.durability, "store open");
    let runtime = daemon::server_runtime("store")?;
    let metrics_store = store.clone();
    let metrics: daemon::Render = Arc::new(move |out: &mut String| metrics_store.metrics().render(out));
    let served = runtime.block_on(serve(&args, Arc::new(store.clone()), Some(metrics)));
    // Every connection task (and its store handle) goes with the runtime;
    // then the last handle closes the store, which waits for its writer.
    drop(runtime);
    drop(store);
    tracing::info!("store closed");
    served
}

/// `--engine redis`: the engine keeps nothing here (no data directory).
fn run_redis(args: &Args) -> Result<(), Fatal> {
    if args.redis.is_empty() {
        return Err(Fatal::usage("--engine redis needs --redis URL (the cluster's seed nodes)"));
    }
    if args.metrics_listen.is_some() {
        return Err(Fatal::usage("--metrics-listen is not served by the Redis engine yet (issue 15)"));
    }
    let mut config = RedisConfig::new(args.redis.clone());
    config.max_devices = args.max_devices;
    config.retention = Duration::from_secs(args.retention_days.saturating_mul(24 * 3600));
    config.durability = match args.durability {
        Mode::Process => RedisDurability::Process,
        Mode::Fsync => RedisDurability::Fsync,
    };
    config.replicas = args.replicas;
    config.replica_timeout = Duration::from_millis(args.replica_timeout_ms);
    let store = RedisStore::connect(config)
        .map_err(|e| Fatal::runtime(format!("cannot use the Redis Cluster {:?}: {e}", args.redis)))?;
    tracing::info!(seeds = ?args.redis, "store engine: redis");
    let runtime = daemon::server_runtime("store")?;
    let served = runtime.block_on(serve(args, Arc::new(store), None));
    drop(runtime);
    served
}

async fn serve(args: &Args, store: Arc<dyn StoreApi>, metrics: Option<daemon::Render>) -> Result<(), Fatal> {
    let (listener, local) = daemon::bind(args.listen).await?;
    if let (Some(addr), Some(render)) = (args.metrics_listen, metrics) {
        daemon::spawn_metrics(addr, render).await?;
    }
    let service = StoreService::new(store);
    let closer = service.clone();
    let service = service.into_server(args.max_message_bytes);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let stop = daemon::shutdown_signal();
    daemon::announce(local).map_err(|e| Fatal::runtime(format!("cannot write to stdout: {e}")))?;
    tracing::info!(%local, "serving the store");
    daemon::serve_until_signal(stop, |signal| {
        // On the signal the server stops accepting and waits for its streams;
        // closing the service ends the pipelines (after answering what they
        // read), so the wait is for in-flight requests, not for the clients.
        let signal = async move {
            signal.await;
            closer.close();
        };
        Server::builder().add_service(service).serve_with_incoming_shutdown(incoming, signal)
    })
    .await
}
