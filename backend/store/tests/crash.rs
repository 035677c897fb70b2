//! Crash durability in Process mode: a child process (this test binary
//! re-executed in child mode) sends messages and prints each acknowledged
//! message id; the parent SIGKILLs it mid-stream, reopens the store and
//! checks that every acknowledged message is in the recipient's inbox exactly
//! once, with contiguous seqs.
// Tests unwrap and index: a panic there is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use backend_store::*;
use common::*;
use protocol::{DeviceId, UserId};

const CHILD_DIR: &str = "BACKEND_STORE_CRASH_CHILD_DIR";
const CHILD_STREAM: &str = "BACKEND_STORE_CRASH_CHILD_STREAM";

/// Child mode: only runs when the parent sets `CHILD_DIR`. Phase 1 sends 300
/// small messages one at a time, printing each acknowledged id (small
/// batches stay inside fjall's 8 KiB journal buffer unless the commit
/// flushes it: this is what catches a missing flush). Then it prints `DONE`
/// and idles, or with `CHILD_STREAM` keeps sending, 64 in flight, until the
/// parent kills it mid-stream.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let store = Store::open(config(std::path::Path::new(&dir))).unwrap();
    connect(&store, 1, 1);
    connect(&store, 2, 1);
    let stdout = std::io::stdout();
    let message = |client_id| SendMessage {
        user: UserId(1),
        device: DeviceId(1),
        client_id,
        to: direct(2),
        payload: bytes::Bytes::from_static(b"hello"),
    };
    for client_id in 0..300 {
        let sent = send(&store, 1, 1, client_id, direct(2), b"hello");
        let mut out = stdout.lock();
        writeln!(out, "ACKED {}", sent.message.id.0).unwrap();
        out.flush().unwrap();
    }
    writeln!(stdout.lock(), "DONE").unwrap();
    stdout.lock().flush().unwrap();
    if std::env::var(CHILD_STREAM).is_err() {
        // Idle until killed: the acknowledged tail must already be on the OS.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let (slot_tx, slot_rx) = mpsc::sync_channel::<()>(64);
    let slot_rx = std::sync::Arc::new(std::sync::Mutex::new(slot_rx));
    for client_id in 300.. {
        slot_tx.send(()).unwrap();
        let slot_rx = slot_rx.clone();
        store.call(
            Request::Send(message(client_id)),
            Box::new(move |_| {
                let _ = slot_rx.lock().unwrap().try_recv();
            }),
        );
    }
}

#[test]
fn acknowledged_sends_survive_sigkill_when_idle() {
    kill_and_check(false);
}

#[test]
fn acknowledged_sends_survive_sigkill_mid_stream() {
    kill_and_check(true);
}

fn kill_and_check(stream: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    if stream {
        command.env(CHILD_STREAM, "1");
    }
    let mut child = command
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("child output").unwrap();
        // libtest may print "test child_writer ... " before the first line.
        if let Some((_, id)) = line.split_once("ACKED ") {
            acked.push(id.parse::<u64>().unwrap());
        } else if line.ends_with("DONE") {
            break;
        }
    }
    assert_eq!(acked.len(), 300);
    if stream {
        // Let the pipelined phase run so that the kill lands mid-stream.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store = Store::open(config(dir.path())).unwrap();
    let entries = inbox_all(&store, 2, 1);
    let ids: Vec<u64> = entries.iter().map(|e| e.message_id.0).collect();
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no message twice");
    for id in &acked {
        assert!(unique.contains(id), "acknowledged message {id} lost");
    }
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq.0, i as u64 + 1, "contiguous seqs");
    }
}
