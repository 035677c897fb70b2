//! What the `store` and `push` binaries share: logging, shutdown signals, the
//! readiness line and a minimal `GET /metrics` endpoint. Public only so that
//! the binaries of this crate can use it.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Logs go to stderr (stdout carries only the readiness line), filtered by
/// `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Prints `listening on <addr>` to stdout and flushes: tests and scripts wait
/// for this line, and with port 0 it carries the real port.
pub fn announce(addr: SocketAddr) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()
}

/// Installs the SIGTERM and SIGINT handlers now, and resolves on the first
/// of them (the caller then shuts down gracefully), or at once if they
/// cannot be installed. Call it before [`announce`]: a signal sent as soon
/// as the readiness line is out must not find the default action (the
/// process killed, exit status not 0).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    let installed = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (mut term, mut int) = match installed {
            (Ok(term), Ok(int)) => (term, int),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot install signal handlers; stopping");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
}

/// Fills a buffer with Prometheus text.
pub type Render = Arc<dyn Fn(&mut String) + Send + Sync>;

/// Longest request head read from an admin client.
const MAX_HEAD: usize = 8 * 1024;

/// Serves `GET /metrics` with what `render` writes, one request per
/// connection, until the task is dropped. Anything else is a 404; the admin
/// port is for a scraper, not a general HTTP server.
pub async fn serve_metrics(listener: TcpListener, render: Render) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let render = Arc::clone(&render);
                tokio::spawn(async move {
                    if let Err(e) = answer_scrape(stream, &render).await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer_scrape(mut stream: TcpStream, render: &Render) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow request"))??;
        if n == 0 {
            break;
        }
        debug_assert!(n <= buf.len(), "`read` returns at most the buffer's length");
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = head.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let response = if method == Some(b"GET") && path == Some(b"/metrics") {
        let mut body = String::with_capacity(4096);
        render(&mut body);
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// How long in-flight requests get after a signal before the process stops
/// anyway.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a tonic server until `stop` ([`shutdown_signal`], installed before
/// the readiness line) resolves, then lets it finish in-flight requests for
/// at most [`SHUTDOWN_GRACE`]. `serve` gets the future that resolves on the
/// signal (for `serve_with_incoming_shutdown`).
pub async fn serve_until_signal<F>(
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    serve: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> F,
) -> Result<(), Fatal>
where
    F: std::future::Future<Output = Result<(), tonic::transport::Error>>,
{
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let server = serve(Box::pin(async move {
        stop.await;
        let _ = signalled.send(());
    }));
    tokio::pin!(server);
    let overdue = async move {
        // A dropped sender means the server ended first; `select!` already
        // took that branch.
        if on_signal.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = &mut server => result.map_err(|e| Fatal::runtime(format!("server failed: {e}"))),
        () = overdue => {
            tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "requests still in flight after the grace period; stopping anyway");
            Ok(())
        }
    }
}

/// Why a binary stops with an error: the message for stderr and the exit
/// code (2: bad flags or config, 1: failed while running).
#[derive(Debug)]
pub struct Fatal {
    /// What went wrong, with its context.
    pub message: String,
    /// The process exit code.
    pub code: u8,
}

impl Fatal {
    /// A bad flag or config value (exit 2, like clap's usage errors).
    pub fn usage(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: 2 }
    }

    /// A failure while starting or running (exit 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: 1 }
    }

    /// Prints `<program>: <message>` to stderr and gives the exit code.
    pub fn report(self, program: &str) -> std::process::ExitCode {
        eprintln!("{program}: {}", self.message);
        std::process::ExitCode::from(self.code)
    }
}

/// Binds the admin listener and serves `GET /metrics` on it in the background
/// (on the current runtime).
pub async fn spawn_metrics(addr: SocketAddr, render: Render) -> Result<SocketAddr, Fatal> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Fatal::runtime(format!("cannot listen for metrics on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| Fatal::runtime(format!("metrics listener: {e}")))?;
    tokio::spawn(serve_metrics(listener, render));
    tracing::info!(%local, "serving GET /metrics");
    Ok(local)
}

/// Binds the gRPC listener (`SO_REUSEADDR`, so a restart after `kill -9` can
/// take the same port at once).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Fatal> {
    let listener =
        TcpListener::bind(addr).await.map_err(|e| Fatal::runtime(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| Fatal::runtime(format!("listener on {addr}: {e}")))?;
    Ok((listener, local))
}

/// A multi-thread runtime for a binary's server side.
pub fn server_runtime(name: &str) -> Result<tokio::runtime::Runtime, Fatal> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| Fatal::runtime(format!("cannot start the runtime: {e}")))
}
