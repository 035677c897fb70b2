//! `flood connect` end to end against the real gateway binary: 200 sessions
//! from two source addresses, held for 2 s; every one authenticates, the
//! node's `gateway_sessions_open` reaches 200, heartbeats are answered and
//! the close is clean.
//!
//! The gateway binary belongs to another package, so Cargo does not build it
//! for this test: it is taken from `<target>/debug/gateway` (built by
//! `cargo build -p gateway`, or by any workspace-wide build or test run).

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Gateway;

#[test]
fn two_hundred_sessions_authenticate_and_hold() {
    let gateway = Gateway::start(
        "[session]\nheartbeat_ms = 500\n\
         [limits]\nconnections_per_ip_per_sec = 100000\nconnections_per_ip_burst = 100000\n",
    );
    let key = gateway.dir.join("data/keys/dev-signing.pk8");
    assert!(key.is_file(), "the node did not create its dev key");

    let mut flood = Command::new(env!("CARGO_BIN_EXE_flood"))
        .args(["connect", "--target", &gateway.listen.to_string(), "--sessions", "200", "--rate", "1000/s"])
        .args(["--hold", "2", "--source", "127.0.0.2-127.0.0.3", "--signing-key", key.to_str().unwrap()])
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flood");

    // Watch the node while flood holds its sessions.
    let mut most_open = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(open) = gateway.metric("gateway_sessions_open") {
            most_open = most_open.max(open);
        }
        if let Some(status) = flood.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = flood.kill();
            panic!("flood did not stop by itself within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    flood.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    flood.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "flood failed: {status}\n{stderr}");

    let summary: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("flood's --json output ({e}):\n{stdout}"));
    let count = |key: &str| summary[key].as_u64().unwrap_or_else(|| panic!("no {key} in {summary}"));
    assert_eq!(count("authenticated"), 200, "{summary}");
    assert_eq!(count("failed"), 0, "{summary}");
    assert_eq!(count("dropped"), 0, "{summary}");
    assert_eq!(count("live_at_hold_end"), 200, "{summary}");
    assert_eq!(count("closed_clean"), 200, "{summary}");
    assert!(summary["ramp_complete"].as_bool().unwrap(), "{summary}");
    assert!(summary["errors"].as_object().unwrap().is_empty(), "{summary}");
    // A 500 ms heartbeat over a 2 s hold: every session pinged and was answered.
    assert!(count("pongs") >= 200, "{summary}");
    assert!(summary["cpu_secs"].as_f64().unwrap() < 60.0 && count("rss_bytes") > 0, "{summary}");
    assert_eq!(most_open, 200.0, "gateway_sessions_open peaked at {most_open}");
    // The progress line went to stderr.
    assert!(stderr.contains("authenticated 200"), "{stderr}");

    // flood closed every session: the node's gauge returns to 0.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.metric("gateway_sessions_open") != Some(0.0) {
        assert!(Instant::now() < deadline, "sessions still open on the node after flood exited");
        std::thread::sleep(Duration::from_millis(50));
    }
}
