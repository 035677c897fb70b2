//! A node whose descriptor limit (`prlimit`) is exhausted by connections that
//! never send a byte. With `max_connections` derived from the limit minus the
//! reserve, the node stops accepting before it runs out: the admin listener
//! answers, and logged-in clients send and receive with nothing lost.
//! Without the reserve the flood takes every descriptor and `/healthz` hangs.
//! (The store's own recovery from EMFILE is shown by
//! `backend-store/tests/descriptors.rs`.)

use std::collections::HashSet;
use std::net::TcpStream;
use std::time::Duration;

use super::support::{temp_dir, Gateway};
use super::{connect, send, within, Outcome, OPEN_LIMITS};

/// The node's open-file limit: room for 300 connections beside the reserve
/// (512, `gateway::fds::FD_RESERVE`).
const NOFILE: usize = 812;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_the_store_or_the_admin_listener() {
    assert_eq!(gateway::fds::FD_RESERVE, 512, "NOFILE assumes a reserve of 512");
    // Idle connections are kept for the whole test.
    let config = format!("{OPEN_LIMITS}[session]\nhandshake_timeout_ms = 120000\n");
    let limit = format!("--nofile={NOFILE}:{NOFILE}");
    let gateway = Gateway::start_under(temp_dir(), &config, &[], &["prlimit", &limit]);
    connect(&gateway, 2).await.close().await.unwrap();
    let mut a = connect(&gateway, 1).await;

    // More idle connections than the node has descriptors: the ones past
    // max_connections wait in the listen backlog.
    let flood: Vec<TcpStream> =
        (0..NOFILE + 200).map(|_| TcpStream::connect(gateway.listen).unwrap()).collect();
    // The node accepts until its derived limit and stops there.
    let accepted = || gateway.metric("gateway_sessions_open");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while accepted() < 300.0 - 2.0 {
        assert!(std::time::Instant::now() < deadline, "only {} connections accepted", accepted());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = accepted();
    assert!(open <= 300.0 + 2.0, "{open} connections open, above the derived max_connections");

    assert_eq!(gateway.http_get("/healthz").map(|(status, _)| status), Some(200));
    assert_eq!(gateway.http_get("/readyz").map(|(status, _)| status), Some(200));
    let mut acked = HashSet::new();
    for i in 0..200 {
        let text = format!("under flood {i}");
        let (_, outcome) = within(send(&mut a, &text)).await;
        assert!(matches!(outcome, Outcome::Sent), "{outcome:?}");
        acked.insert(text);
    }
    assert_eq!(gateway.metric("store_failures_total"), 0.0);
    drop(flood);
    super::receive_exactly(&gateway, &acked).await;
}

#[test]
fn a_limit_without_room_for_connections_fails_the_start_with_a_clear_message() {
    let dir = temp_dir();
    let out = std::process::Command::new("prlimit")
        .arg("--nofile=400:400")
        .arg(env!("CARGO_BIN_EXE_gateway"))
        .args(["--data-dir", dir.join("data").to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with 400 descriptors: {stderr}");
    assert!(stderr.contains("RLIMIT_NOFILE") && stderr.contains("is 400"), "{stderr}");
}
