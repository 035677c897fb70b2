//! Running the crate's real binaries from integration tests: start one with
//! flags, wait for its `listening on <addr>` line, kill it on drop.

// Each test crate compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running binary; SIGKILLed and reaped when dropped.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Daemon {
    /// Starts `program` with `args` and waits (up to 30 s) for its readiness
    /// line.
    pub(crate) fn start(program: &str, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let addr = wait_for_listening(stdout);
        Self { child, addr }
    }

    /// `http://addr` for a client.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL (no graceful anything) and reap.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads stdout on a thread (the pipe must keep draining) until the
/// `listening on` line, and returns the address it names.
fn wait_for_listening(stdout: ChildStdout) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().parse::<SocketAddr>().expect("an address"));
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("the binary printed `listening on <addr>` in time")
}
