//! The real `push` binary behind a real `RemotePush`, delivering to a webhook
//! this test runs: notes for one device within the window arrive as one
//! coalesced POST.

// Integration tests: a failed unwrap is a failed assertion, and indexing into
// what the test itself received is the clearest way to check it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use backend_push::{PushApi, PushNote};
use backend_rpc::{RemotePush, RemotePushConfig};
use common::Daemon;
use protocol::{Conversation, DeviceId, GroupId, Seq, UserId};

/// An HTTP/1.1 server answering 200 to every request; sends each (path,
/// body) to the returned receiver.
fn webhook() -> (String, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, &tx));
        }
    });
    (url, rx)
}

/// Answers requests on one (kept-alive) connection until it closes.
fn serve(stream: TcpStream, tx: &mpsc::Sender<(String, Vec<u8>)>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let _ = tx.send((path, body));
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
    }
}

#[test]
fn notes_for_one_device_arrive_as_one_coalesced_post() {
    let (url, posts) = webhook();
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_push"),
        &["--listen", "127.0.0.1:0", "--provider", "webhook", "--webhook-url", &url, "--window-ms", "500"],
    );
    let push = RemotePush::start(RemotePushConfig::new(daemon.endpoint())).unwrap();

    let (user, device) = (UserId(42), DeviceId(3));
    for seq in 1..=5 {
        push.notify(PushNote {
            user,
            device,
            seq: Seq(seq),
            conversation: Conversation::Group(GroupId(7)),
            sender: UserId(9),
        });
    }

    let (path, body) = posts.recv_timeout(Duration::from_secs(10)).expect("a POST within 10 s");
    assert_eq!(path, "/push");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["user"], 42);
    assert_eq!(json["device"], 3);
    assert_eq!(json["count"], 5, "{json}");
    assert_eq!(json["seq"], 5);
    assert_eq!(json["conversation"]["group"], 7);
    // One notification, not five: nothing else arrives after the window.
    assert!(posts.recv_timeout(Duration::from_millis(1500)).is_err(), "a second POST arrived");

    let stats = push.stats();
    assert_eq!(stats.notes_sent, 5);
    assert!(stats.batches >= 1 && stats.batches <= 5, "{stats:?}");
    assert_eq!(stats.dropped_full + stats.dropped_failed, 0);
}

#[test]
fn a_connect_cancels_the_pending_push() {
    let (url, posts) = webhook();
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_push"),
        &["--listen", "127.0.0.1:0", "--provider", "webhook", "--webhook-url", &url, "--window-ms", "800"],
    );
    let push = RemotePush::start(RemotePushConfig::new(daemon.endpoint())).unwrap();
    let note = |user: u64| PushNote {
        user: UserId(user),
        device: DeviceId(1),
        seq: Seq(1),
        conversation: Conversation::Direct(UserId(9)),
        sender: UserId(9),
    };
    push.notify(note(1));
    push.notify(note(2));
    // User 1's device connects within the window: only user 2 is pushed.
    push.connected(UserId(1), DeviceId(1));
    let (_, body) = posts.recv_timeout(Duration::from_secs(10)).expect("a POST");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["user"], 2, "{json}");
    assert!(posts.recv_timeout(Duration::from_millis(1500)).is_err(), "the cancelled push arrived");
    assert_eq!(push.stats().connects_sent, 1);
}

#[test]
fn push_down_drops_and_counts_without_blocking() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = RemotePushConfig::new(format!("127.0.0.1:{port}"));
    config.connect_timeout = Duration::from_millis(200);
    config.queue = 16;
    let push = RemotePush::start(config).unwrap();
    let started = Instant::now();
    for seq in 0..1000 {
        push.notify(PushNote {
            user: UserId(1),
            device: DeviceId(1),
            seq: Seq(seq),
            conversation: Conversation::Direct(UserId(2)),
            sender: UserId(2),
        });
    }
    // `notify` only queues: 1000 calls against a dead service take no time.
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = push.stats();
        if stats.dropped_full + stats.dropped_failed == 1000 {
            assert!(stats.dropped_full > 0 && stats.dropped_failed > 0, "{stats:?}");
            assert_eq!(stats.notes_sent, 0);
            break;
        }
        assert!(Instant::now() < deadline, "not all drops counted: {stats:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_exits_0_and_metrics_are_served() {
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let mut daemon = Daemon::start(
        env!("CARGO_BIN_EXE_push"),
        &["--listen", "127.0.0.1:0", "--provider", "log", "--metrics-listen", &metrics],
    );
    let push = RemotePush::start(RemotePushConfig::new(daemon.endpoint())).unwrap();
    push.connected(UserId(1), DeviceId(1));
    let (status, body) = common::http_get(&metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(!body.is_empty());
    assert!(daemon.terminate().success(), "exit status after SIGTERM");
}

#[test]
fn bad_flags_exit_2() {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_push"))
        .args(["--listen", "127.0.0.1:0", "--provider", "webhook"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
