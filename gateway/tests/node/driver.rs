//! The io_uring driver's own behaviour (the rest of the end-to-end suite
//! runs on either driver, `GATEWAY_DRIVER`): the fallback to epoll where
//! io_uring is refused, the buffer ring running dry, and a session closed
//! with a write in flight.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use super::support::{client_frame, temp_dir, Gateway, Raw};

/// Runs the node with io_uring refused by a seccomp filter (as Docker's
/// default profile refuses it).
const WITHOUT_IO_URING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/without-io-uring");

/// The node's own settings win over the suite's `GATEWAY_DRIVER`.
fn io_uring(required: bool) -> [(&'static str, &'static str); 2] {
    [("GATEWAY_DRIVER", "io_uring"), ("GATEWAY_DRIVER_REQUIRED", if required { "true" } else { "false" })]
}

#[test]
fn a_host_that_refuses_io_uring_runs_the_node_on_epoll_and_says_so_once() {
    let gateway = Gateway::start_logged(
        temp_dir(),
        "[session]\necho_route = true\n",
        &io_uring(false),
        &["python3", WITHOUT_IO_URING],
    );
    let mut raw = Raw::upgrade(gateway.listen, "/echo");
    raw.send(&client_frame(0x2, b"on epoll"));
    assert_eq!(raw.read_frame(), Some((0x2, b"on epoll".to_vec())));
    let log = gateway.log();
    assert_eq!(log.matches("io_uring cannot run on this host: the workers run on epoll").count(), 1, "{log}");
    assert!(log.contains("Operation not permitted"), "the reason is in the line: {log}");
}

#[test]
fn a_required_io_uring_driver_refuses_to_start_where_it_cannot_run() {
    let mut gateway =
        Gateway::spawn_logged_under(temp_dir(), "", &io_uring(true), &["python3", WITHOUT_IO_URING]);
    let status = gateway.wait_exit(Duration::from_secs(20)).expect("the node exits");
    assert!(!status.success(), "{status:?}");
    let log = gateway.log();
    assert!(log.contains("node.driver = \"io_uring\" is required, and this host cannot run it"), "{log}");
    assert!(log.contains("io_uring_setup: Operation not permitted"), "{log}");
}

/// Two receive buffers of 512 bytes for a worker, and 40 clients each
/// sending a 6 KB echo message at once: receives find the buffers in use
/// and wait a turn; every echo still comes back whole.
#[test]
fn a_burst_that_runs_the_buffer_ring_dry_slows_down_and_loses_nothing() {
    let gateway = Gateway::start_with_env(
        temp_dir(),
        "[node]\nuring_buffers = 2\nuring_buffer_size = 512\n[session]\necho_route = true\n",
        &io_uring(true),
    );
    let mut clients: Vec<Raw> = (0..40).map(|_| Raw::upgrade(gateway.listen, "/echo")).collect();
    let messages: Vec<Vec<u8>> =
        (0..40u8).map(|i| (0..6000u32).map(|j| i ^ (j % 251) as u8).collect()).collect();
    for (client, message) in clients.iter_mut().zip(&messages) {
        client.send(&client_frame(0x2, message));
    }
    for (client, message) in clients.iter_mut().zip(&messages) {
        assert_eq!(client.read_frame(), Some((0x2, message.clone())));
    }
    assert!(gateway.metric("gateway_uring_buffers_dry_total") >= 1.0, "the ring never ran dry");
    assert_eq!(gateway.metric("gateway_sessions_open"), 40.0);
}

/// A client that stops reading leaves the node's write to it in flight
/// (its socket full); when the session is cut (4008) that write is
/// cancelled and the socket closed: the session is gone from the node, and
/// the client, reading at last, reaches the end of the stream.
#[test]
fn a_session_closed_with_its_write_in_flight_has_the_write_cancelled_and_its_socket_closed() {
    let gateway = Gateway::start_with_env(
        temp_dir(),
        "[session]\necho_route = true\noutbound_pause_bytes = 65536\noutbound_queue_bytes = 262144\n\
         write_stall_ms = 500\n",
        &io_uring(true),
    );
    let mut raw = Raw::upgrade(gateway.listen, "/echo");
    raw.0.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let message = client_frame(0x2, &vec![7u8; 60_000]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while gateway.metric(r#"gateway_closes_total{code="4008"}"#) < 1.0 {
        assert!(Instant::now() < deadline, "the slow reader was never cut");
        if raw.0.write_all(&message).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    while gateway.metric("gateway_sessions_open") > 0.0 {
        assert!(Instant::now() < deadline, "the closed session is still open");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Read what the node sent before the cut; then the stream ends (or is
    // reset, when the node closed with bytes of ours unread).
    raw.0.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        match raw.0.read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => assert!(Instant::now() < deadline + Duration::from_secs(10), "the socket never closed"),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => panic!("the socket was not closed: {err}"),
        }
    }
    // The node still serves.
    let mut next = Raw::upgrade(gateway.listen, "/echo");
    next.send(&client_frame(0x2, b"still here"));
    assert_eq!(next.read_frame(), Some((0x2, b"still here".to_vec())));
    let _ = raw.0.flush();
}
