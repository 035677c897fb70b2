//! The push service against a real HTTP receiver on 127.0.0.1: coalescing,
//! cancelling, retries, dead letters, concurrency and metrics, end to end.

// Tests fail by panicking: unwrap and indexing are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::{Duration, Instant};

use backend_push::{ProviderConfig, Push, PushApi, PushConfig, PushNote};
use protocol::{Conversation, DeviceId, GroupId, Seq, UserId};
use serde_json::{json, Value};
use support::{wait_until, Receiver, Reply};

fn config(receiver: &Receiver) -> PushConfig {
    PushConfig {
        provider: ProviderConfig::Webhook { url: receiver.url() },
        window: Duration::from_millis(100),
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        ..PushConfig::default()
    }
}

fn note(user: u64, device: u32, seq: u64) -> PushNote {
    PushNote {
        user: UserId(user),
        device: DeviceId(device),
        seq: Seq(seq),
        conversation: Conversation::Direct(UserId(50 + seq)),
        sender: UserId(50 + seq),
    }
}

/// Gives a wrongly retried or uncancelled notification time to show up.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

fn dead_letters(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn notes_in_a_window_become_one_post_per_device() {
    let receiver = Receiver::start(|_| Reply::status(200));
    let push = Push::start(config(&receiver)).unwrap();
    let metrics = push.metrics();
    for seq in [3, 1, 7, 5] {
        push.notify(note(1, 1, seq));
    }
    push.notify(PushNote {
        conversation: Conversation::Group(GroupId(9)),
        sender: UserId(77),
        ..note(1, 1, 8)
    });
    push.notify(note(1, 2, 4));
    assert!(wait_until(|| metrics.snapshot().sent == 2));
    settle();

    let received = receiver.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/push"));
        assert_eq!(r.content_type, "application/json");
    }
    let body = |device: u64| &received.iter().find(|r| r.body["device"] == device).unwrap().body;
    let one = body(1);
    assert_eq!(one["user"], 1);
    assert_eq!(one["count"], 5);
    assert_eq!(one["seq"], 8);
    assert_eq!(one["conversation"], json!({"group": 9}));
    assert_eq!(one["sender"], 77);
    assert_eq!(one["collapse_key"], "inbox-1-1");
    assert!(one["sent_at_ms"].as_u64().unwrap() >= one["first_at_ms"].as_u64().unwrap() + 90);
    let two = body(2);
    assert_eq!((two["count"].as_u64(), two["seq"].as_u64()), (Some(1), Some(4)));
    assert_eq!(two["conversation"], json!({"direct": 54}));
    assert_eq!(two["collapse_key"], "inbox-1-2");

    let m = metrics.snapshot();
    assert_eq!((m.notes, m.coalesced, m.sent, m.retried, m.dead_lettered, m.pending), (6, 4, 2, 0, 0, 0));
    let mut text = String::new();
    metrics.render(&mut text);
    for line in [
        "push_notes_total 6",
        "push_coalesced_total 4",
        "push_sent_total 2",
        "push_retried_total 0",
        "push_dead_lettered_total 0",
        "push_cancelled_total 0",
        "push_dropped_total 0",
        "push_connect_dropped_total 0",
        "push_pending 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
    }
    assert!(text.contains("# TYPE push_sent_total counter\n"));
    assert!(text.contains("# HELP push_coalesced_total "));
}

#[test]
fn connected_within_the_window_cancels() {
    let receiver = Receiver::start(|_| Reply::status(200));
    let push = Push::start(PushConfig { window: Duration::from_millis(200), ..config(&receiver) }).unwrap();
    push.notify(note(2, 1, 1));
    push.notify(note(2, 1, 2));
    push.connected(UserId(2), DeviceId(1));
    // Another device of the same user is not affected.
    push.notify(note(2, 3, 1));
    assert!(wait_until(|| push.metrics().snapshot().sent == 1));
    settle();
    let m = push.metrics().snapshot();
    assert_eq!((m.cancelled, m.sent, m.pending), (1, 1, 0));
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["device"], 3);
}

#[test]
fn connected_cancels_a_retrying_notification() {
    let receiver = Receiver::start(|_| Reply::status(503));
    let push = Push::start(PushConfig {
        backoff_base: Duration::from_millis(400),
        backoff_cap: Duration::from_millis(400),
        ..config(&receiver)
    })
    .unwrap();
    push.notify(note(3, 1, 1));
    assert!(wait_until(|| receiver.count() == 1));
    push.connected(UserId(3), DeviceId(1));
    assert!(wait_until(|| push.metrics().snapshot().cancelled == 1));
    settle();
    settle();
    let m = push.metrics().snapshot();
    assert_eq!(receiver.count(), 1, "no try after the cancel");
    assert_eq!((m.cancelled, m.sent, m.dead_lettered, m.retried, m.pending), (1, 0, 0, 0, 0));
}

#[test]
fn server_errors_are_retried_until_sent() {
    let receiver = Receiver::start(|n| Reply::status(if n < 2 { 500 } else { 200 }));
    let push = Push::start(config(&receiver)).unwrap();
    push.notify(note(4, 1, 1));
    assert!(wait_until(|| push.metrics().snapshot().sent == 1));
    settle();
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    // The same notification each time, re-stamped per try.
    assert!(received.iter().all(|r| r.body["collapse_key"] == "inbox-4-1" && r.body["count"] == 1));
    let stamps: Vec<u64> = received.iter().map(|r| r.body["sent_at_ms"].as_u64().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    let m = push.metrics().snapshot();
    assert_eq!((m.retried, m.sent, m.dead_lettered), (2, 1, 0));
}

#[test]
fn always_failing_is_dead_lettered_after_max_tries() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dead.jsonl");
    let receiver = Receiver::start(|_| Reply::status(500));
    let push = Push::start(PushConfig { max_tries: 3, dead_letter: Some(file.clone()), ..config(&receiver) })
        .unwrap();
    push.notify(note(5, 6, 9));
    assert!(wait_until(|| push.metrics().snapshot().dead_lettered == 1));
    settle();
    assert_eq!(receiver.count(), 3);
    let m = push.metrics().snapshot();
    assert_eq!((m.retried, m.sent, m.dead_lettered), (2, 0, 1));
    let lines = dead_letters(&file);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(
        (line["user"].as_u64(), line["device"].as_u64(), line["seq"].as_u64()),
        (Some(5), Some(6), Some(9))
    );
    assert_eq!(line["tries"], 3);
    assert!(line["error"].as_str().unwrap().contains("HTTP 500"), "{line}");
    let mut text = String::new();
    push.metrics().render(&mut text);
    assert!(text.lines().any(|l| l == "push_dead_lettered_total 1"), "{text}");
    assert!(text.lines().any(|l| l == "push_retried_total 2"), "{text}");
}

#[test]
fn client_error_is_dead_lettered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dead.jsonl");
    let receiver = Receiver::start(|_| Reply::status(400));
    let push = Push::start(PushConfig { dead_letter: Some(file.clone()), ..config(&receiver) }).unwrap();
    push.notify(note(6, 1, 1));
    assert!(wait_until(|| push.metrics().snapshot().dead_lettered == 1));
    settle();
    assert_eq!(receiver.count(), 1);
    assert_eq!(push.metrics().snapshot().retried, 0);
    let lines = dead_letters(&file);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["tries"], 1);
    assert!(lines[0]["error"].as_str().unwrap().contains("HTTP 400"));
}

#[test]
fn too_many_requests_honours_retry_after_capped() {
    let receiver = Receiver::start(|n| {
        if n == 0 {
            Reply { retry_after: Some(100), ..Reply::status(429) }
        } else {
            Reply::status(204)
        }
    });
    let push = Push::start(PushConfig {
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(300),
        ..config(&receiver)
    })
    .unwrap();
    push.notify(note(7, 1, 1));
    assert!(wait_until(|| push.metrics().snapshot().sent == 1));
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    // 100 s asked, capped to 300 ms; without Retry-After it would be ~1 ms.
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_millis(280), "{gap:?}");
    assert!(gap < Duration::from_secs(3), "{gap:?}");
}

#[test]
fn unreachable_and_slow_receivers_are_retryable() {
    // Nothing listens on this port once the listener is dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let push = Push::start(PushConfig {
        provider: ProviderConfig::Webhook { url: format!("http://127.0.0.1:{port}/push") },
        max_tries: 2,
        window: Duration::from_millis(20),
        backoff_base: Duration::from_millis(10),
        ..PushConfig::default()
    })
    .unwrap();
    push.notify(note(8, 1, 1));
    assert!(wait_until(|| push.metrics().snapshot().dead_lettered == 1));
    assert_eq!(push.metrics().snapshot().retried, 1);

    let slow = Receiver::start(|_| Reply { delay: Duration::from_secs(2), ..Reply::status(200) });
    let push = Push::start(PushConfig { max_tries: 2, timeout: Duration::from_millis(100), ..config(&slow) })
        .unwrap();
    push.notify(note(8, 2, 1));
    assert!(wait_until(|| push.metrics().snapshot().dead_lettered == 1));
    let m = push.metrics().snapshot();
    assert_eq!((m.retried, m.sent, slow.count()), (1, 0, 2));
}

#[test]
fn sends_run_concurrently_up_to_in_flight() {
    let receiver = Receiver::start(|_| Reply { delay: Duration::from_millis(200), ..Reply::status(200) });
    let push = Push::start(PushConfig { in_flight: 3, ..config(&receiver) }).unwrap();
    for device in 1..=8 {
        push.notify(note(9, device, 1));
    }
    assert!(wait_until(|| push.metrics().snapshot().sent == 8));
    assert_eq!(receiver.max_concurrent(), 3, "parallel, but no more than in_flight");
}

#[test]
fn pending_bound_drops_new_devices() {
    let receiver = Receiver::start(|_| Reply::status(200));
    let push = Push::start(PushConfig { max_pending: 2, ..config(&receiver) }).unwrap();
    push.notify(note(10, 1, 1));
    push.notify(note(10, 2, 1));
    push.notify(note(10, 3, 1)); // a third device: over the bound
    push.notify(note(10, 1, 2)); // an open window still takes notes
    assert!(wait_until(|| push.metrics().snapshot().sent == 2));
    settle();
    let m = push.metrics().snapshot();
    assert_eq!((m.notes, m.dropped, m.coalesced, m.sent), (4, 1, 1, 2));
    assert!(receiver.received().iter().all(|r| r.body["device"] != 3));
}

#[test]
fn drop_stops_the_thread_and_pending_windows() {
    let receiver = Receiver::start(|_| Reply::status(500));
    let push = Push::start(PushConfig { window: Duration::from_millis(200), ..config(&receiver) }).unwrap();
    push.notify(note(11, 1, 1));
    let started = Instant::now();
    drop(push);
    assert!(started.elapsed() < Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(receiver.count(), 0, "a dropped window is not sent");
}
