//! The listeners: bind, announce the addresses on stdout, accept and spawn a
//! task per connection until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Error;

use crate::conn;
use crate::hub::Hub;

/// The `wss://` listener's address and TLS configuration.
#[derive(Debug)]
pub(crate) struct TlsListen {
    /// Where to listen.
    pub(crate) addr: SocketAddr,
    /// The server's certificate, key and protocol versions.
    pub(crate) config: Arc<ServerConfig>,
}

/// Serves `listen` (and `tls`) until SIGTERM or SIGINT. Prints `listening on
/// ADDR` then, with TLS, `tls listening on ADDR` once both accept.
pub(crate) async fn run(listen: SocketAddr, tls: Option<TlsListen>, hub: Arc<Hub>) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let plain = bind(listen).await?;
    let secure = match tls {
        Some(tls) => Some((bind(tls.addr).await?, TlsAcceptor::from(tls.config))),
        None => None,
    };
    announce(&plain, secure.as_ref().map(|(listener, _)| listener)).context("writing to stdout")?;

    let plain = tokio::spawn(accept_loop(plain, None, Arc::clone(&hub)));
    let secure = secure.map(|(listener, acceptor)| tokio::spawn(accept_loop(listener, Some(acceptor), hub)));
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    plain.abort();
    if let Some(secure) = secure {
        secure.abort();
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

fn announce(plain: &TcpListener, secure: Option<&TcpListener>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", plain.local_addr()?)?;
    if let Some(secure) = secure {
        writeln!(out, "tls listening on {}", secure.local_addr()?)?;
    }
    out.flush()
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, hub: Arc<Hub>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let (tls, hub) = (tls.clone(), Arc::clone(&hub));
                tokio::spawn(async move {
                    match conn::serve(tcp, tls, hub).await {
                        Ok(()) | Err(Error::ConnectionClosed | Error::AlreadyClosed) => {}
                        Err(e) => tracing::debug!(%peer, error = %e, "connection ended"),
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
