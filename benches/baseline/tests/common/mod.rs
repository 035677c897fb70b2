//! Runs the `baseline` binary on free ports, waits for its readiness lines and
//! kills it on drop; connects WebSocket clients to it.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error;
use tokio_tungstenite::WebSocketStream;

/// A running `baseline` process.
pub struct Server {
    child: Child,
    /// The `ws://` listener.
    pub addr: SocketAddr,
    /// The `wss://` listener, when started with TLS.
    pub tls_addr: Option<SocketAddr>,
}

impl Server {
    /// Starts the binary on `127.0.0.1:0` with `args` added; `tls` says whether
    /// they include `--tls-listen` (so a second readiness line follows).
    pub fn start(args: &[&str], tls: bool) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_baseline"))
            .args(["--listen", "127.0.0.1:0", "--threads", "2"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start baseline");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |prefix: &str| -> SocketAddr {
            let line = lines.next().expect("a readiness line").unwrap();
            line.strip_prefix(prefix).unwrap_or_else(|| panic!("unexpected line {line:?}")).parse().unwrap()
        };
        let addr = next("listening on ");
        let tls_addr = tls.then(|| next("tls listening on "));
        Self { child, addr, tls_addr }
    }

    /// Sends `signal` (`TERM`, `INT`) and waits for the exit.
    pub fn signal(mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens `ws://addr{path}`.
pub async fn connect(addr: SocketAddr, path: &str) -> Result<WebSocketStream<TcpStream>, Error> {
    let tcp = TcpStream::connect(addr).await?;
    let (ws, _response) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp).await?;
    Ok(ws)
}
