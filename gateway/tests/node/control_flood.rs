//! Issue 12, defect 2: WebSocket control frames under the session's bounds.
//! A raw client floods masked PINGs and never reads, before and after
//! authentication; the node must close it (1008 before, 4008 after, or the
//! rate limit's 1008 / 4009) while its RSS stays bounded, and be back near
//! its baseline once the connections are gone.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use protocol::{Capabilities, DeviceId, Frame, Hello, Seq, Token};

use crate::support::{client_frame, Gateway, Raw};

/// Pings per write: 500 × 131 bytes.
const BATCH: usize = 500;
/// Growth of the node's RSS allowed during a flood. Before the fix 2M pings
/// took a node from 33 MB to 363 MB.
const RSS_BOUND: u64 = 64 << 20;
/// Pings after which a connection that is still open fails the test.
const MOST_PINGS: usize = 2_000_000;

/// The node's resident set, bytes (VmRSS of /proc/PID/status).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kib << 10
}

/// Samples the node's RSS every 10 ms and keeps the highest.
struct Peak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peak {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&peak), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self { peak, stop, thread: Some(thread) }
    }

    fn get(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An upgraded `/ws` connection that has sent HELLO with a valid token and
/// read its AUTH_OK.
fn authenticated(gateway: &Gateway, user: u64) -> Raw {
    let token = gateway.token(user, 1);
    let hello = Frame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        device: DeviceId(1),
        resume_after: Seq(0),
        capabilities: Capabilities(0),
        token: Token::new(token.into_bytes()).unwrap(),
    });
    let mut body = BytesMut::new();
    hello.encode(&mut body).unwrap();
    let mut raw = Raw::upgrade(gateway.listen, "/ws");
    raw.send(&client_frame(0x2, &body));
    let (opcode, payload) = raw.read_frame().expect("AUTH_OK");
    assert_eq!((opcode, payload.first()), (0x2, Some(&0x02)), "AUTH_OK first");
    // Then the sync's SYNC_DONE (after a store read, so it may come after
    // what the test sends next): taken here, so that the next frame read is
    // the answer to the test's own.
    let (opcode, payload) = raw.read_frame().expect("SYNC_DONE");
    assert_eq!((opcode, payload.first()), (0x2, Some(&0x32)), "SYNC_DONE after AUTH_OK");
    raw
}

/// Floods `raw` with PINGs of `payload` bytes, reading nothing, until the
/// node has counted a close with `code` (and the connection ended), with the
/// node's RSS under `baseline + RSS_BOUND` throughout.
fn flood_until_closed(gateway: &Gateway, raw: &mut Raw, payload: usize, code: u16, baseline: u64) {
    let pid = gateway.child.id();
    let series = format!(r#"gateway_closes_total{{code="{code}"}}"#);
    let before = gateway.metric(&series);
    raw.0.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let batch = client_frame(0x9, &vec![7; payload]).repeat(BATCH);
    let peak = Peak::start(pid);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    let mut last_check = Instant::now();
    loop {
        let grown = peak.get().saturating_sub(baseline);
        assert!(grown < RSS_BOUND, "node RSS grew by {} MiB after {sent} pings", grown >> 20);
        assert!(sent < MOST_PINGS, "still open after {sent} pings (node RSS +{} MiB)", grown >> 20);
        assert!(Instant::now() < deadline, "flood of {sent} pings not closed in 60 s");
        if last_check.elapsed() > Duration::from_millis(20) {
            if gateway.metric(&series) > before {
                break;
            }
            last_check = Instant::now();
        }
        // A write fails once the node has reset the connection (it gave up
        // waiting for the client's close).
        if raw.0.write_all(&batch).is_err() {
            break;
        }
        sent += BATCH;
    }
    assert!(gateway.metric(&series) > before, "no close {code} counted after {sent} pings");
    // The node's close frame comes after what it had queued, if the
    // connection still takes it; either way the connection ends.
    let seen = raw.close_code();
    assert!(seen.is_none() || seen == Some(code), "closed with {seen:?}, not {code}");
    eprintln!("close {code} after {sent} pings; close frame read: {seen:?}");
    let grown = peak.get().saturating_sub(baseline);
    assert!(grown < RSS_BOUND, "node RSS grew by {} MiB", grown >> 20);
}

/// Waits until the node holds no session, then for its RSS to settle.
fn settled_rss(gateway: &Gateway) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    while gateway.metric("gateway_sessions_open") > 0.0 {
        assert!(Instant::now() < deadline, "sessions still open");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    rss(gateway.child.id())
}

#[test]
fn a_ping_flood_that_never_reads_is_closed_with_bounded_memory() {
    // The frame rate is out of the way: only the outbound bounds stop it.
    let gateway = Gateway::start("[limits]\nframes_per_sec = 1000000000\nframes_burst = 1000000000\n");
    // Warm up what every node allocates once (worker buffers, a session).
    let mut warm = authenticated(&gateway, 1);
    warm.send(&client_frame(0x9, b"warm"));
    assert_eq!(warm.read_frame().map(|(op, _)| op), Some(0xA));
    drop(warm);
    let baseline = settled_rss(&gateway);

    // Before authentication: closed with 1008 at the pre-auth bound.
    let mut raw = Raw::upgrade(gateway.listen, "/ws");
    flood_until_closed(&gateway, &mut raw, 125, 1008, baseline);
    assert!(gateway.metric(r#"gateway_drops_total{reason="overflow"}"#) >= 1.0);
    drop(raw);

    // After authentication: closed with 4008 (SLOW_CONSUMER).
    let mut raw = authenticated(&gateway, 2);
    flood_until_closed(&gateway, &mut raw, 125, 4008, baseline);
    drop(raw);

    let after = settled_rss(&gateway);
    eprintln!("RSS baseline {} KiB, after the floods {} KiB", baseline >> 10, after >> 10);
    assert!(after < baseline + (16 << 20), "RSS stayed at +{} MiB after close", (after - baseline) >> 20);
}

#[test]
fn control_frames_spend_the_frame_rate_bucket() {
    // Default limits: 100 frames/s, a burst of 400; a flood of control pings
    // is refused, then closed: 1008 before authentication, 4009 after. Empty
    // pings, so that their pongs stay far below the outbound bounds.
    let gateway = Gateway::start("");
    let baseline = settled_rss(&gateway);
    let refused = r#"gateway_drops_total{reason="rate_limited"}"#;
    let mut raw = Raw::upgrade(gateway.listen, "/ws");
    flood_until_closed(&gateway, &mut raw, 0, 1008, baseline);
    // Warned once, refused through a whole burst, then closed.
    assert!(gateway.metric(refused) >= 400.0);
    let mut raw = authenticated(&gateway, 3);
    flood_until_closed(&gateway, &mut raw, 0, 4009, baseline);
    assert!(gateway.metric(refused) >= 800.0);
    assert_eq!(gateway.metric(r#"gateway_drops_total{reason="overflow"}"#), 0.0);
}
