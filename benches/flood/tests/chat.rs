//! `flood chat`, `flood chat --ping`, `flood fill` and `flood sync` end to
//! end against the real gateway binary (see `common` for where it comes
//! from): small runs whose counts must add up and whose latencies must be
//! recorded.

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::Command;

use common::Gateway;
use serde_json::Value;

/// Frame-rate limits lifted: a chat session sends far more than a phone.
const CONFIG: &str = "[limits]\nconnections_per_ip_per_sec = 100000\nconnections_per_ip_burst = 100000\n\
                      frames_per_sec = 1000000\nframes_burst = 1000000\n";

/// Runs flood with `args` and returns its `--json` summary.
fn flood(args: &[&str]) -> Value {
    let output =
        Command::new(env!("CARGO_BIN_EXE_flood")).args(args).arg("--json").output().expect("run flood");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "flood {args:?} failed: {}\n{stdout}\n{stderr}", output.status);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("flood's --json output ({e}):\n{stdout}\n{stderr}"))
}

fn count(summary: &Value, key: &str) -> u64 {
    summary[key].as_u64().unwrap_or_else(|| panic!("no {key} in {summary}"))
}

#[test]
fn chat_pairs_persist_deliver_and_time_their_messages() {
    let gateway = Gateway::start(CONFIG);
    let key = gateway.dir.join("data/keys/dev-signing.pk8");
    let (target, pid) = (gateway.listen.to_string(), gateway.pid().to_string());
    let base = [
        "chat",
        "--target",
        &target,
        "--sessions",
        "10",
        "--duration",
        "2",
        "--window",
        "8",
        "--gateway-pid",
        &pid,
    ];
    let summary = flood(&[&base[..], &["--signing-key", key.to_str().unwrap()]].concat());

    assert_eq!(summary["scenario"], "chat", "{summary}");
    assert_eq!(count(&summary, "authenticated"), 10, "{summary}");
    assert_eq!(count(&summary, "failed") + count(&summary, "dropped"), 0, "{summary}");
    assert!(summary["errors"].as_object().unwrap().is_empty(), "{summary}");
    let acked = count(&summary, "acked");
    assert!(acked > 0, "{summary}");
    assert_eq!(count(&summary, "sent"), acked, "every send acknowledged after the drain: {summary}");
    assert_eq!(count(&summary, "delivered"), acked, "every acknowledged message delivered: {summary}");
    assert_eq!(count(&summary, "send_errors"), 0, "{summary}");
    assert!(count(&summary, "acks_sent") > 0, "{summary}");
    assert!(count(&summary, "acked_in_window") > 0 && summary["msgs_per_sec"].as_f64().unwrap() > 0.0);
    for histogram in ["ack_latency", "e2e_latency"] {
        let h = &summary[histogram];
        assert_eq!(h["count"].as_u64().unwrap(), acked, "{histogram}: {summary}");
        let (p50, p99, max) =
            (h["p50_us"].as_u64().unwrap(), h["p99_us"].as_u64().unwrap(), h["max_us"].as_u64().unwrap());
        assert!(0 < p50 && p50 <= p99 && p99 <= max && max < 60_000_000, "{histogram}: {summary}");
    }
    assert!(summary["gateway_cpu_secs"].as_f64().unwrap() > 0.0, "{summary}");
    assert!(summary["msgs_per_sec_per_gateway_core"].as_f64().unwrap() > 0.0, "{summary}");

    // The baseline: PING round trips with the same sessions and window.
    let ping = flood(
        &[&base[..], &["--ping", "--first-user", "100", "--signing-key", key.to_str().unwrap()]].concat(),
    );
    assert_eq!(ping["scenario"], "ping", "{ping}");
    let pongs = count(&ping, "acked");
    assert!(pongs > 0 && count(&ping, "sent") == pongs, "{ping}");
    assert_eq!(count(&ping, "delivered"), 0, "{ping}");
    assert_eq!(ping["ack_latency"]["count"].as_u64().unwrap(), pongs, "{ping}");
}

#[test]
fn a_filled_inbox_drains_by_sync() {
    const MESSAGES: u64 = 3000;
    let gateway = Gateway::start_with(CONFIG, |data| {
        let status = Command::new(env!("CARGO_BIN_EXE_flood"))
            .args(["fill", "--data-dir", data.to_str().unwrap(), "--messages", &MESSAGES.to_string()])
            .args(["--from-user", "2", "--to-user", "3"])
            .status()
            .expect("run flood fill");
        assert!(status.success(), "flood fill failed: {status}");
    });
    let key = gateway.dir.join("data/keys/dev-signing.pk8");
    let summary = flood(&[
        "sync",
        "--target",
        &gateway.listen.to_string(),
        "--user",
        "3",
        "--messages",
        &MESSAGES.to_string(),
        "--signing-key",
        key.to_str().unwrap(),
    ]);
    assert!(summary["synced"].as_bool().unwrap(), "{summary}");
    assert_eq!(count(&summary, "delivered"), MESSAGES, "{summary}");
    assert_eq!(count(&summary, "head"), MESSAGES, "{summary}");
    assert!(count(&summary, "acks_sent") > 0, "{summary}");
    assert!(summary["msgs_per_sec"].as_f64().unwrap() > 0.0, "{summary}");
}
