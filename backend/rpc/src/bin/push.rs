//! `push`: the push service as a process of its own. Serves it over gRPC on
//! `--listen`, prints `listening on <addr>` when ready, and on SIGTERM/SIGINT
//! stops accepting, finishes what is in flight, stops the service (pending
//! notifications are dropped: best effort) and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use backend_push::{ProviderConfig, Push, PushConfig};
use backend_rpc::daemon::{self, Fatal};
use backend_rpc::PushService;
use clap::{Parser, ValueEnum};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

/// The push service (wakes offline devices) over gRPC.
#[derive(Debug, Parser)]
#[command(name = "push", version)]
struct Args {
    /// gRPC address to listen on (port 0: any free port, printed when ready).
    #[arg(long, env = "PUSH_LISTEN", default_value = "127.0.0.1:7720")]
    listen: SocketAddr,
    /// Where notifications go: `log` (log and count them) or `webhook`
    /// (POST JSON to `--webhook-url`).
    #[arg(long, env = "PUSH_PROVIDER", value_enum, default_value_t = Provider::Log)]
    provider: Provider,
    /// `http://host[:port]/path` for `--provider webhook`.
    #[arg(long, env = "PUSH_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Coalescing window per device, in ms (default: the service's, 2000).
    #[arg(long, env = "PUSH_WINDOW_MS")]
    window_ms: Option<u64>,
    /// Tries per notification before it is dead-lettered (default: the
    /// service's, 5).
    #[arg(long, env = "PUSH_MAX_TRIES")]
    max_tries: Option<u32>,
    /// JSON-lines file for dead-lettered notifications; only logged if unset.
    #[arg(long, env = "PUSH_DEAD_LETTER")]
    dead_letter: Option<PathBuf>,
    /// Bound of the service's queue (default: the service's, 65 536).
    #[arg(long, env = "PUSH_QUEUE")]
    queue: Option<usize>,
    /// Admin address serving `GET /metrics` (Prometheus text); off if unset.
    #[arg(long, env = "PUSH_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "PUSH_MAX_MESSAGE_BYTES", default_value_t = 4 << 20)]
    max_message_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Provider {
    Log,
    Webhook,
}

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => fatal.report("push"),
    }
}

fn config(args: &Args) -> Result<PushConfig, Fatal> {
    let provider = match (args.provider, &args.webhook_url) {
        (Provider::Log, None) => ProviderConfig::Log,
        (Provider::Log, Some(_)) => return Err(Fatal::usage("--webhook-url needs --provider webhook")),
        (Provider::Webhook, Some(url)) => ProviderConfig::Webhook { url: url.clone() },
        (Provider::Webhook, None) => return Err(Fatal::usage("--provider webhook needs --webhook-url")),
    };
    let mut config = PushConfig { provider, dead_letter: args.dead_letter.clone(), ..PushConfig::default() };
    if let Some(ms) = args.window_ms {
        config.window = Duration::from_millis(ms);
    }
    if let Some(tries) = args.max_tries {
        config.max_tries = tries;
    }
    if let Some(queue) = args.queue {
        config.queue = queue;
    }
    config.validate().map_err(|e| Fatal::usage(e.to_string()))?;
    if args.max_message_bytes == 0 {
        return Err(Fatal::usage("--max-message-bytes must be above zero"));
    }
    Ok(config)
}

fn run(args: Args) -> Result<(), Fatal> {
    let config = config(&args)?;
    let push = Arc::new(Push::start(config).map_err(|e| Fatal::runtime(e.to_string()))?);
    tracing::info!(provider = ?args.provider, "push service started");
    let runtime = daemon::server_runtime("push")?;
    let served = runtime.block_on(serve(&args, Arc::clone(&push)));
    // Connection tasks (and their service handles) go with the runtime; the
    // last handle then stops the push thread.
    drop(runtime);
    drop(push);
    tracing::info!("push service stopped");
    served
}

async fn serve(args: &Args, push: Arc<Push>) -> Result<(), Fatal> {
    let (listener, local) = daemon::bind(args.listen).await?;
    if let Some(addr) = args.metrics_listen {
        let metrics = push.metrics();
        daemon::spawn_metrics(addr, Arc::new(move |out: &mut String| metrics.render(out))).await?;
    }
    let service = PushService::new(push).into_server(args.max_message_bytes);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let stop = daemon::shutdown_signal();
    daemon::announce(local).map_err(|e| Fatal::runtime(format!("cannot write to stdout: {e}")))?;
    tracing::info!(%local, "serving push");
    daemon::serve_until_signal(stop, |signal| {
        Server::builder().add_service(service).serve_with_incoming_shutdown(incoming, signal)
    })
    .await
}
