//! `baseline`: the WebSocket server a Rust user would build with the usual
//! crates (tokio, tokio-tungstenite, tokio-rustls), which the benchmarks run
//! next to the gateway under the same load. Routes: `GET /echo` and
//! `GET /hub/<room>`; anything else is a 404. See the README for the flags.

mod cli;
mod conn;
mod echo;
mod hub;
mod relay;
mod route;
mod server;
mod tls;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::Args;
use crate::hub::Hub;
use crate::server::TlsListen;

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("baseline: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let tls = match (args.tls_listen, &args.cert, &args.key) {
        (Some(addr), Some(cert), Some(key)) => {
            Some(TlsListen { addr, config: tls::server_config(cert, key)? })
        }
        // clap's `requires` rules out the partial combinations.
        _ => None,
    };
    let capacity = usize::try_from(args.hub_capacity).context("--hub-capacity")?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.get());
    }
    let runtime = runtime.enable_all().build().context("starting the tokio runtime")?;
    runtime.block_on(server::run(args.listen, tls, Arc::new(Hub::new(capacity))))
}

/// Logs go to stderr (stdout carries only the readiness lines), filtered by
/// `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
