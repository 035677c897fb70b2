//! The store's disk fills up while a client sends, then space comes back: SEND
//! is refused retryably with a real `retry_after_ms` and a generic text,
//! HELLO gets the retryable AUTH_ERROR, `/readyz` says 503, and once the
//! filler is deleted the node recovers by itself and has lost nothing it
//! acknowledged.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use client::{Client, ClientError};
use protocol::ErrorCode;

use super::support::Gateway;
use super::{config, connect, resend_until_sent, send, within, Outcome, OPEN_LIMITS};

/// A tmpfs mounted for the test; unmounted (lazily) when dropped, even when
/// the test fails.
pub(crate) struct Tmpfs(PathBuf);

impl Tmpfs {
    pub(crate) fn mount(size: &str) -> Self {
        let dir = super::support::temp_dir();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("running mount");
        assert!(status.success(), "this test mounts a tmpfs and needs root (mount exited {status})");
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Appends zeros to `filler` until its file system is full.
fn fill(filler: &Path) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write(&block).is_ok_and(|n| n > 0) {}
    // Smaller writes take the last partial block too.
    while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
}

/// Engine detail a client must never see.
const INTERNAL: [&str; 6] = ["Poisoned", "os error", "No space", "Fjall", "engine", "Io("];

fn generic(text: &str) {
    for word in INTERNAL {
        assert!(!text.contains(word), "a client saw engine detail: {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_retryably_not_ready_and_recovered_from_with_nothing_lost() {
    let fs = Tmpfs::mount("32m");
    let node_dir = fs.0.join("node");
    std::fs::create_dir(&node_dir).unwrap();
    // Declared after the tmpfs: stopped before it is unmounted.
    let gateway = Gateway::start_in(node_dir, OPEN_LIMITS);
    let filler = fs.0.join("filler");
    // Tokens are minted while there is room (`gateway token` reads the key).
    let config_3 = config(&gateway, 3);
    connect(&gateway, 2).await.close().await.unwrap();
    let mut a = connect(&gateway, 1).await;
    let body = |i: usize| format!("{i:05}-{}", "x".repeat(1_000));
    let mut acked = HashSet::new();
    let mut refused = Vec::new();
    for i in 0..20 {
        let (_, outcome) = send(&mut a, &body(i)).await;
        assert!(matches!(outcome, Outcome::Sent), "{outcome:?}");
        acked.insert(body(i));
    }

    fill(&filler);
    let mut i = 20;
    let first = loop {
        assert!(i < 5_000, "no send was refused on a full disk");
        let (id, outcome) = send(&mut a, &body(i)).await;
        i += 1;
        match outcome {
            Outcome::Sent => {
                acked.insert(body(i - 1));
            }
            refusal => {
                refused.push((id, body(i - 1)));
                break refusal;
            }
        }
    };
    let Outcome::Refused { code, retryable, retry_after_ms, text } = first else { unreachable!() };
    assert_eq!(code, ErrorCode::BACKEND_UNAVAILABLE, "{text}");
    assert!(retryable && retry_after_ms > 0, "retryable {retryable}, retry_after_ms {retry_after_ms}");
    generic(&text);

    // While the disk stays full (kept full: a reopening may free the torn
    // tail of the journal), /readyz says 503 and a login gets the retryable
    // AUTH_ERROR; sends are only ever refused retryably.
    let (mut not_ready, mut login_refused) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(not_ready && login_refused) {
        assert!(Instant::now() < deadline, "not ready: {not_ready}, login refused: {login_refused}");
        fill(&filler);
        let (id, outcome) = send(&mut a, &body(i)).await;
        match outcome {
            Outcome::Sent => {
                acked.insert(body(i));
            }
            Outcome::Refused { code, retryable: true, text, .. }
                if code == ErrorCode::BACKEND_UNAVAILABLE =>
            {
                generic(&text);
                refused.push((id, body(i)));
            }
            other => panic!("while full: {other:?}"),
        }
        i += 1;
        if let Some((503, body)) = gateway.http_get("/readyz") {
            assert_eq!(body, "store not writable\n");
            // Read a moment after /readyz: with several store writers one
            // shard may reopen in between (the others stay full), so the
            // two must agree at some point before the deadline.
            not_ready |= gateway.metric("gateway_store_writable") == 0.0;
        }
        if !login_refused {
            match within(Client::connect(config_3.clone())).await {
                Err(ClientError::AuthRejected { code, retry_after_ms, text }) => {
                    assert_eq!(code, ErrorCode::BACKEND_UNAVAILABLE);
                    assert!(retry_after_ms > 0, "AUTH_ERROR without retry_after_ms");
                    generic(&text);
                    login_refused = true;
                }
                Err(err) => panic!("login while full: {err}"),
                // The login's small write fitted; try again later.
                Ok(client) => drop(client),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gateway.metric("store_failures_total") >= 1.0);

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.http_get("/readyz").map(|(status, _)| status) != Some(200) {
        assert!(Instant::now() < deadline, "not ready 30 s after the disk was freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gateway.metric("gateway_store_writable"), 1.0);
    assert!(gateway.metric("store_reopens_total") >= 1.0);
    for (id, text) in refused {
        resend_until_sent(&mut a, id).await;
        acked.insert(text);
    }
    for i in i..i + 20 {
        let (_, outcome) = send(&mut a, &body(i)).await;
        assert!(matches!(outcome, Outcome::Sent), "{outcome:?}");
        acked.insert(body(i));
    }
    connect(&gateway, 3).await;
    super::receive_exactly(&gateway, &acked).await;
}

/// A node restarted on a full disk starts (opening the store writes nothing),
/// refuses logins retryably while nothing can be written, and serves what it
/// stored once space is back. (The dev key is off for the restart: its
/// rewrite at start is not the store's business.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_on_a_full_disk_and_serves_once_space_is_back() {
    let fs = Tmpfs::mount("32m");
    let node_dir = fs.0.join("node");
    std::fs::create_dir(&node_dir).unwrap();
    let mut gateway = Gateway::start_in(node_dir.clone(), OPEN_LIMITS);
    let config_2 = config(&gateway, 2);
    connect(&gateway, 2).await.close().await.unwrap();
    let mut a = connect(&gateway, 1).await;
    let (_, outcome) = send(&mut a, "stored before the disk filled up").await;
    assert!(matches!(outcome, Outcome::Sent), "{outcome:?}");
    drop(a);

    // The restart writes nothing before it serves: the dev key made at the
    // first start is only read now.
    let filler = fs.0.join("filler");
    fill(&filler);
    gateway.kill9_and_restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        assert!(Instant::now() < deadline, "a login succeeded on a full disk every time");
        fill(&filler);
        match within(Client::connect(config_2.clone())).await {
            Err(err) => break err,
            Ok(client) => drop(client),
        }
    };
    let ClientError::AuthRejected { code, retry_after_ms, text } = refused else { panic!("{refused}") };
    assert_eq!(code, ErrorCode::BACKEND_UNAVAILABLE);
    assert!(retry_after_ms > 0);
    generic(&text);

    std::fs::remove_file(&filler).unwrap();
    let expected = HashSet::from(["stored before the disk filled up".to_owned()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.http_get("/readyz").map(|(status, _)| status) != Some(200) {
        assert!(Instant::now() < deadline, "not ready 30 s after the disk was freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    super::receive_exactly(&gateway, &expected).await;
}
