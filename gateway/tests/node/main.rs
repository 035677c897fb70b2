//! The gateway binary end to end: real processes, real sockets, the client
//! library and a raw client for what the library will not send.

// Test code: a panic is a failed assertion, so unwrap and indexing are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../common/mod.rs"]
mod support;

mod control_flood;
mod driver;

use std::time::Duration;

use client::{Client, ClientConfig, ClientError, Event};
use protocol::{CloseCode, DeviceId, ErrorCode, Frame, Ping};
use support::{client_frame, client_header, upgrade_request, Gateway, Raw};

fn config(gateway: &Gateway, token: String, device: u32) -> ClientConfig {
    ClientConfig::new(gateway.url(), token.into_bytes(), DeviceId(device))
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future).await.expect("timed out")
}

/// The next event that is not AUTH_OK / sync bookkeeping.
async fn next_interesting(client: &mut Client) -> Result<Event, ClientError> {
    loop {
        match within(client.next_event()).await? {
            Event::Authenticated(_) | Event::Synced { .. } | Event::SyncProgress { .. } => continue,
            other => return Ok(other),
        }
    }
}

#[tokio::test]
async fn authenticates_and_answers_ping() {
    let gateway = Gateway::start("");
    let token = gateway.token(42, 1);
    let mut client = within(Client::connect(config(&gateway, token, 1))).await.unwrap();
    assert_eq!(client.user(), Some(protocol::UserId(42)));
    let nonce = client.ping().await.unwrap();
    match next_interesting(&mut client).await.unwrap() {
        Event::Pong { nonce: got } => assert_eq!(got, nonce),
        other => panic!("expected PONG, got {other:?}"),
    }
    assert!(gateway.metric(r#"gateway_frames_in_total{kind="PING"}"#) >= 1.0);
    assert!(gateway.metric(r#"gateway_frames_in_total{kind="HELLO"}"#) >= 1.0);
    assert_eq!(gateway.metric("gateway_sessions_open"), 1.0);
    assert_eq!(gateway.metric(r#"gateway_sessions{state="live"}"#), 1.0);
    assert_eq!(gateway.metric(r#"gateway_sessions{state="auth"}"#), 0.0);
    client.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gateway.metric(r#"gateway_sessions{state="live"}"#), 0.0);
    assert_eq!(gateway.metric("gateway_sessions_open"), 0.0);
    assert_eq!(gateway.metric("gateway_outbound_queue_bytes"), 0.0);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_codes() {
    let gateway = Gateway::start("");
    let good = gateway.token(42, 1);

    // A tampered signature.
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let err =
        within(Client::connect(config(&gateway, String::from_utf8(tampered).unwrap(), 1))).await.unwrap_err();
    assert!(matches!(err, ClientError::AuthRejected { code: ErrorCode::AUTH_INVALID, .. }), "{err:?}");

    // A token for another device than HELLO names.
    let err = within(Client::connect(config(&gateway, good, 2))).await.unwrap_err();
    assert!(
        matches!(err, ClientError::AuthRejected { code: ErrorCode::AUTH_DEVICE_MISMATCH, .. }),
        "{err:?}"
    );

    // A key this node does not know.
    let (stranger, _) = gateway_auth::Signer::generate(9).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let token = stranger.mint(protocol::UserId(42), DeviceId(1), now, 3600);
    let err = within(Client::connect(config(&gateway, token, 1))).await.unwrap_err();
    assert!(matches!(err, ClientError::AuthRejected { code: ErrorCode::AUTH_UNKNOWN_KEY, .. }), "{err:?}");

    // An expired token, signed with the node's own key.
    let signer = gateway_auth::keys::load_or_create_dev_signer(&gateway.dir.join("data")).unwrap();
    let token = signer.mint(protocol::UserId(42), DeviceId(1), now - 7200, 600);
    let err = within(Client::connect(config(&gateway, token, 1))).await.unwrap_err();
    assert!(matches!(err, ClientError::AuthRejected { code: ErrorCode::AUTH_EXPIRED, .. }), "{err:?}");
    assert!(err.needs_new_token());

    assert!(gateway.metric(r#"gateway_auth_failures_total{reason="bad_signature"}"#) >= 1.0);
    assert!(gateway.metric(r#"gateway_auth_failures_total{reason="unknown_key"}"#) >= 1.0);
    assert!(gateway.metric(r#"gateway_auth_failures_total{reason="expired"}"#) >= 1.0);
    assert!(gateway.metric(r#"gateway_auth_failures_total{reason="device_mismatch"}"#) >= 1.0);
}

#[test]
fn upgrade_errors_get_http_4xx() {
    let gateway = Gateway::start("");
    let cases: [(Vec<u8>, &str); 4] = [
        (upgrade_request("/nope", "dGhlIHNhbXBsZSBub25jZQ==", "13"), "HTTP/1.1 404"),
        (upgrade_request("/ws", "short", "13"), "HTTP/1.1 400"),
        (upgrade_request("/ws", "dGhlIHNhbXBsZSBub25jZQ==", "8"), "HTTP/1.1 426"),
        (b"POST /ws HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(), "HTTP/1.1 405"),
    ];
    for (request, expected) in cases {
        let mut raw = Raw::connect(gateway.listen);
        raw.send(&request);
        let head = raw.read_head();
        assert!(head.starts_with(expected), "expected {expected}, got {head:?}");
    }
    assert!(gateway.metric(r#"gateway_handshake_failures_total{reason="path"}"#) >= 1.0);
    assert!(gateway.metric(r#"gateway_handshake_failures_total{reason="ws_version"}"#) >= 1.0);
}

#[test]
fn malformed_frames_close_with_4000_and_oversize_with_1009() {
    let gateway = Gateway::start("");
    let mut raw = Raw::upgrade(gateway.listen, "/ws");
    // A PING with a non-canonical varint, before HELLO even.
    raw.send(&client_frame(0x2, &[0x04, 0x02, 0x81, 0x00]));
    assert_eq!(raw.close_code(), Some(CloseCode::BAD_FRAME.0));

    let mut raw = Raw::upgrade(gateway.listen, "/ws");
    // A header announcing a 1 MiB message: refused before the payload.
    raw.send(&client_header(0x2, 1 << 20));
    assert_eq!(raw.close_code(), Some(CloseCode::MESSAGE_TOO_BIG.0));

    let mut raw = Raw::upgrade(gateway.listen, "/ws");
    raw.send(&client_frame(0x1, b"text is not the protocol"));
    assert_eq!(raw.close_code(), Some(CloseCode::UNSUPPORTED_DATA.0));
    assert!(gateway.metric(r#"gateway_closes_total{code="4000"}"#) >= 1.0);
}

#[test]
fn slowloris_is_cut_at_the_handshake_deadline() {
    let gateway = Gateway::start("[session]\nhandshake_timeout_ms = 300\n");
    let mut raw = Raw::connect(gateway.listen);
    let request = upgrade_request("/ws", "dGhlIHNhbXBsZSBub25jZQ==", "13");
    let started = std::time::Instant::now();
    // One byte every 100 ms: the request cannot complete within 300 ms, and
    // the server must hang up rather than wait.
    let mut cut = false;
    for byte in &request {
        use std::io::Write;
        if raw.0.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let head = raw.read_head();
    assert!(cut || head.is_empty(), "no answer to an incomplete request, got {head:?}");
    assert!(cut, "the server kept a trickling connection open for the whole request");
    assert!(started.elapsed() < Duration::from_secs(3), "cut after {:?}", started.elapsed());
    assert!(gateway.metric(r#"gateway_handshake_failures_total{reason="timeout"}"#) >= 1.0);
}

#[test]
fn auth_deadline_closes_with_4005() {
    let gateway = Gateway::start("[session]\nauth_timeout_ms = 300\n");
    let mut raw = Raw::upgrade(gateway.listen, "/ws");
    assert_eq!(raw.close_code(), Some(CloseCode::AUTH_TIMEOUT.0));
}

#[tokio::test]
async fn a_second_connection_of_a_device_replaces_the_first() {
    let gateway = Gateway::start("");
    let token = gateway.token(7, 3);
    let mut first = within(Client::connect(config(&gateway, token.clone(), 3))).await.unwrap();
    let _second = within(Client::connect(config(&gateway, token, 3))).await.unwrap();
    let err = next_interesting(&mut first).await.unwrap_err();
    assert!(matches!(err, ClientError::Closed { code: CloseCode::REPLACED, .. }), "{err:?}");
    assert!(!err.is_resumable(), "REPLACED is terminal");
}

#[tokio::test]
async fn sigterm_sends_goaway_turns_unready_and_exits() {
    let mut gateway = Gateway::start("[drain]\nwindow_ms = 200\ndeadline_ms = 1500\n");
    let token = gateway.token(5, 1);
    let mut client = within(Client::connect(config(&gateway, token, 1))).await.unwrap();
    assert_eq!(gateway.http_get("/readyz").map(|r| r.0), Some(200));
    gateway.signal("-TERM");
    match next_interesting(&mut client).await.unwrap() {
        Event::GoAway(goaway) => assert!(goaway.reconnect_after_ms <= 200),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    assert_eq!(gateway.http_get("/readyz").map(|r| r.0), Some(503));
    // The client does not leave: the node closes it at the deadline (1001)
    // and exits.
    let err = next_interesting(&mut client).await.unwrap_err();
    assert!(matches!(err, ClientError::Closed { code: CloseCode::GOING_AWAY, .. }), "{err:?}");
    let status = gateway.wait_exit(Duration::from_secs(5)).expect("the node exits after draining");
    assert!(status.success(), "{status:?}");
}

#[test]
fn slow_reader_walks_the_graded_policy() {
    // /echo answers every message; a client that never reads first has live
    // output paused (echoes refused), then, with no write progress for the
    // write-stall time, is cut as a slow consumer (4008). The pause mark is
    // below one echo, so the second echo queued behind full socket buffers
    // is refused; the stall time leaves a busy box (the suite runs tests
    // side by side) ample time to take that second message in first.
    let gateway = Gateway::start(
        "[session]\necho_route = true\noutbound_pause_bytes = 16384\noutbound_queue_bytes = 262144\n\
         write_stall_ms = 2000\n",
    );
    let mut raw = Raw::upgrade(gateway.listen, "/echo");
    raw.0.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let message = client_frame(0x2, &vec![7u8; 60_000]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while gateway.metric(r#"gateway_closes_total{code="4008"}"#) < 1.0 {
        assert!(std::time::Instant::now() < deadline, "the slow reader was never cut");
        use std::io::Write;
        if raw.0.write_all(&message).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(gateway.metric(r#"gateway_drops_total{reason="live_paused"}"#) >= 1.0);
    assert!(gateway.metric(r#"gateway_drops_total{reason="write_stall"}"#) >= 1.0);
}

#[tokio::test]
async fn pings_in_one_message_are_all_answered() {
    let gateway = Gateway::start("");
    let token = gateway.token(11, 1);
    let mut client = within(Client::connect(config(&gateway, token, 1))).await.unwrap();
    let pings: Vec<Frame> = (100..105).map(|nonce| Frame::Ping(Ping { nonce })).collect();
    client.send_frames(&pings).await.unwrap();
    for nonce in 100..105 {
        match next_interesting(&mut client).await.unwrap() {
            Event::Pong { nonce: got } => assert_eq!(got, nonce),
            other => panic!("expected PONG {nonce}, got {other:?}"),
        }
    }
}

#[test]
fn a_connection_flood_from_one_address_gets_429() {
    // Two workers share 2 connections/s with a burst of 4: each takes 1/s, burst 2.
    let gateway = Gateway::start("[limits]\nconnections_per_ip_per_sec = 2\nconnections_per_ip_burst = 4\n");
    let mut refused = 0;
    for _ in 0..20 {
        let mut raw = Raw::connect(gateway.listen);
        raw.send(&upgrade_request("/ws", "dGhlIHNhbXBsZSBub25jZQ==", "13"));
        let head = raw.read_head();
        if head.starts_with("HTTP/1.1 429") {
            assert!(head.contains("Retry-After"), "{head}");
            refused += 1;
        } else {
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        }
    }
    assert!(refused >= 10, "only {refused} of 20 refused");
    assert!(gateway.metric(r#"gateway_drops_total{reason="rate_limited"}"#) >= f64::from(refused));
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = support::temp_dir();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let path = socket_path.to_str().unwrap().to_owned();
    let gateway = Gateway::start_with_env(
        dir,
        "[drain]\nwindow_ms = 100\ndeadline_ms = 500\n",
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "200000")],
    );
    let mut heard = Vec::new();
    let mut buf = [0u8; 256];
    // READY first, then at least two watchdog pings (every 100 ms).
    while heard.iter().filter(|m: &&String| m.as_str() == "WATCHDOG=1").count() < 2 {
        let n = socket.recv(&mut buf).expect("no notification from the node");
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(heard.first().map(String::as_str), Some("READY=1"), "{heard:?}");
    gateway.signal("-TERM");
    loop {
        let n = socket.recv(&mut buf).expect("no STOPPING=1 after SIGTERM");
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
}

#[tokio::test]
async fn sighup_reloads_limits_for_live_sessions() {
    let gateway = Gateway::start("");
    let token = gateway.token(21, 1);
    let mut client = within(Client::connect(config(&gateway, token, 1))).await.unwrap();
    let pings: Vec<Frame> = (0..5).map(|nonce| Frame::Ping(Ping { nonce })).collect();
    client.send_frames(&pings).await.unwrap();
    for _ in 0..5 {
        assert!(matches!(next_interesting(&mut client).await.unwrap(), Event::Pong { .. }));
    }
    // Tighten the frame rate and reload: the same session is now limited.
    std::fs::write(gateway.dir.join("gateway.toml"), "[limits]\nframes_per_sec = 1\nframes_burst = 2\n")
        .unwrap();
    gateway.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.send_frames(&pings).await.unwrap();
    let mut pongs = 0;
    loop {
        match next_interesting(&mut client).await.unwrap() {
            Event::Pong { .. } => pongs += 1,
            Event::Error(error) => {
                assert_eq!(error.code, ErrorCode::RATE_LIMITED);
                assert!(error.retry_after_ms > 0);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pongs <= 2, "{pongs} PONGs passed a burst of 2");
}

#[test]
fn a_burst_past_accepts_per_turn_is_all_taken() {
    // Each turn makes sessions of two connections. The rest wait: on epoll
    // in the backlog, where the edge-triggered poll signals nothing more
    // for them; on io_uring in the worker's queue, with no accept armed and
    // so no completion to wake it. Either way the worker must come back for
    // them on its own, turn after turn. The last connection upgrades
    // first, so no session's input wakes the worker before it has taken
    // them all. The burst arrives while the node is stopped (the kernel
    // completes the handshakes into the backlog), so that each worker finds
    // about twenty at once when it runs again: on io_uring twenty accept
    // completions in one turn, eighteen of them queued.
    let gateway = Gateway::start("[listen]\naccepts_per_turn = 2\n");
    gateway.signal("-STOP");
    let mut burst: Vec<Raw> = (0..40).map(|_| Raw::connect(gateway.listen)).collect();
    gateway.signal("-CONT");
    for raw in burst.iter_mut().rev() {
        raw.upgrade_over("/ws");
    }
    assert_eq!(gateway.metric("gateway_accepts_total"), 40.0);
}
