//! Command-line flags.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::Parser;

/// The benchmarks' baseline: a WebSocket echo and broadcast-hub server built on
/// tokio, tokio-tungstenite and tokio-rustls.
#[derive(Debug, Parser)]
#[command(name = "baseline", version)]
pub(crate) struct Args {
    /// Plain `ws://` address to listen on (port 0: any free port, printed when ready).
    #[arg(long, env = "BASELINE_LISTEN", default_value = "127.0.0.1:7800")]
    pub(crate) listen: SocketAddr,
    /// Tokio worker threads (default: the available cores).
    #[arg(long, env = "BASELINE_THREADS")]
    pub(crate) threads: Option<NonZeroUsize>,
    /// `wss://` address to listen on; needs `--cert` and `--key`.
    #[arg(long, env = "BASELINE_TLS_LISTEN", requires_all = ["cert", "key"])]
    pub(crate) tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for `--tls-listen`, leaf first.
    #[arg(long, env = "BASELINE_CERT", requires = "tls_listen")]
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `--tls-listen`.
    #[arg(long, env = "BASELINE_KEY", requires = "tls_listen")]
    pub(crate) key: Option<PathBuf>,
    /// Messages buffered per hub room; a reader further behind than this skips
    /// the oldest ones.
    #[arg(long, env = "BASELINE_HUB_CAPACITY", default_value = "1024",
          value_parser = clap::value_parser!(u32).range(1..=1 << 24))]
    pub(crate) hub_capacity: u32,
}
