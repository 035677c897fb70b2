//! The registry's render: valid exposition format for every family, label
//! sets, sums over worker threads, the loop-turn histogram.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::support::{check_against_names, parse};
use gateway_admin::names;
use gateway_admin::{
    AuthFailure, DropReason, HandshakeFailure, MediaResult, Registry, SessionState, WorkerMetrics,
};
use protocol::{CloseCode, FrameKind};

/// Touches every cell of a worker once, so every series is non-zero.
fn touch_everything(w: &WorkerMetrics) {
    w.sessions_open.inc();
    w.sessions.inc(SessionState::Live);
    w.accepts.inc();
    w.accept_paused.set(1);
    w.accept_pauses.inc();
    HandshakeFailure::ALL.iter().for_each(|&r| w.handshake_failures.inc(r));
    AuthFailure::ALL.iter().for_each(|&r| w.auth_failures.inc(r));
    FrameKind::ALL.iter().for_each(|&k| w.frames_in.inc(k));
    FrameKind::ALL.iter().for_each(|&k| w.frames_out.inc(k));
    w.bytes_in.add(100);
    w.bytes_out.add(200);
    w.outbound_queue_bytes.set(4096);
    w.recent_tokens.inc();
    w.send_acks_held.inc();
    w.send_acks_unconfirmed.inc();
    w.inbox_depth.set(3);
    DropReason::ALL.iter().for_each(|&r| w.drops.inc(r));
    MediaResult::ALL.iter().for_each(|&r| w.media_tickets.inc(r));
    CloseCode::KNOWN.iter().for_each(|&(c, _, _)| w.closes.inc(c));
    w.closes.inc(CloseCode(4999));
    w.uring_buffers_dry.inc();
    w.loop_turn.observe(Duration::from_micros(75));
    w.store_request.observe(Duration::from_micros(300));
}

#[test]
fn fresh_render_is_valid_exposition_for_every_family() {
    let registry = Registry::new(4);
    let text = registry.render_to_string();
    let expo = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    check_against_names(&expo);
    assert_eq!(expo.value(names::ACCEPTS_TOTAL, &[]), Some(0.0));
}

#[test]
fn busy_render_is_valid_exposition_for_every_family() {
    let registry = Registry::new(3);
    registry.workers().iter().for_each(|w| touch_everything(w));
    let text = registry.render_to_string();
    let expo = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    check_against_names(&expo);
    // Every sample of a summed counter family is 3 (one per worker).
    for family in names::ALL.iter().filter(|f| f.kind == names::Kind::Counter) {
        let factor = if family.name.starts_with("gateway_bytes") { 0.0 } else { 3.0 };
        if factor > 0.0 {
            for s in expo.series(family.name) {
                assert_eq!(s.value, factor, "{} {:?}", s.name, s.labels);
            }
        }
    }
    assert_eq!(expo.value(names::BYTES_IN_TOTAL, &[]), Some(300.0));
    assert_eq!(expo.value(names::BYTES_OUT_TOTAL, &[]), Some(600.0));
}

#[test]
fn every_label_value_is_rendered_once() {
    let text = Registry::new(2).render_to_string();
    let expo = parse(&text).unwrap();
    let values = |name: &str, key: &str| -> Vec<String> {
        expo.series(name).iter().map(|s| s.labels[key].clone()).collect()
    };
    let names_of = |all: &[&str]| all.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    assert_eq!(
        values(names::HANDSHAKE_FAILURES_TOTAL, "reason"),
        names_of(&[
            "malformed",
            "method",
            "http_version",
            "path",
            "host",
            "body",
            "upgrade",
            "ws_version",
            "key",
            "too_many_headers",
            "too_large",
            "timeout",
            "tls"
        ])
    );
    assert_eq!(
        values(names::AUTH_FAILURES_TOTAL, "reason"),
        names_of(&[
            "malformed",
            "bad_signature",
            "unknown_key",
            "expired",
            "not_yet_valid",
            "device_mismatch",
            "timeout",
            "version",
            "overloaded"
        ])
    );
    assert_eq!(
        values(names::DROPS_TOTAL, "reason"),
        names_of(&[
            "typing",
            "presence",
            "live_paused",
            "inbox_full",
            "rate_limited",
            "ephemeral",
            "overflow",
            "live_gap",
            "backend",
            "write_stall"
        ])
    );
    assert_eq!(values(names::SESSIONS, "state"), names_of(&["handshake", "auth", "live", "draining"]));
    let kinds: Vec<String> = FrameKind::ALL.iter().map(|k| k.name().to_string()).collect();
    assert_eq!(values(names::FRAMES_IN_TOTAL, "kind"), kinds);
    assert_eq!(values(names::FRAMES_OUT_TOTAL, "kind"), kinds);
    let mut codes: Vec<String> = CloseCode::KNOWN.iter().map(|(c, _, _)| c.0.to_string()).collect();
    codes.push("other".into());
    assert_eq!(values(names::CLOSES_TOTAL, "code"), codes);
    let workers: BTreeSet<String> = values(names::INBOX_DEPTH, "worker").into_iter().collect();
    assert_eq!(workers, ["0", "1"].map(String::from).into());
}

#[test]
fn counters_sum_increments_from_several_threads() {
    const THREADS: usize = 4;
    const ROUNDS: u64 = 20_000;
    let registry = Arc::new(Registry::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let w = Arc::clone(registry.worker(i).unwrap());
            thread::spawn(move || {
                for n in 0..ROUNDS {
                    w.accepts.inc();
                    w.bytes_in.add(3);
                    w.frames_in.inc(FrameKind::SendMessage);
                    w.frames_out.add(FrameKind::Deliver, 2);
                    w.handshake_failures.inc(HandshakeFailure::ALL[i % HandshakeFailure::ALL.len()]);
                    if n % 10 == 0 {
                        w.closes.inc(CloseCode::SLOW_CONSUMER);
                        w.drops.inc(DropReason::Typing);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let expo = parse(&registry.render_to_string()).unwrap();
    let total = (THREADS as u64 * ROUNDS) as f64;
    assert_eq!(expo.value(names::ACCEPTS_TOTAL, &[]), Some(total));
    assert_eq!(expo.value(names::BYTES_IN_TOTAL, &[]), Some(3.0 * total));
    assert_eq!(expo.value(names::FRAMES_IN_TOTAL, &[("kind", "SEND")]), Some(total));
    assert_eq!(expo.value(names::FRAMES_OUT_TOTAL, &[("kind", "DELIVER")]), Some(2.0 * total));
    assert_eq!(expo.value(names::FRAMES_IN_TOTAL, &[("kind", "PING")]), Some(0.0));
    assert_eq!(expo.value(names::CLOSES_TOTAL, &[("code", "4008")]), Some(total / 10.0));
    assert_eq!(expo.value(names::DROPS_TOTAL, &[("reason", "typing")]), Some(total / 10.0));
    for (i, reason) in HandshakeFailure::ALL.iter().enumerate() {
        let want = if i < THREADS { ROUNDS as f64 } else { 0.0 };
        assert_eq!(expo.value(names::HANDSHAKE_FAILURES_TOTAL, &[("reason", reason.name())]), Some(want));
    }
}

#[test]
fn counters_only_move_up_while_rendering_concurrently() {
    let registry = Arc::new(Registry::new(2));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let w = Arc::clone(registry.worker(i).unwrap());
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    w.accepts.inc();
                    w.loop_turn.observe_ns(n % 2_000_000);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut last = 0.0;
    for _ in 0..50 {
        let expo = parse(&registry.render_to_string()).unwrap();
        let now = expo.value(names::ACCEPTS_TOTAL, &[]).unwrap();
        assert!(now >= last, "counter went back: {last} -> {now}");
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    let written: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    let expo = parse(&registry.render_to_string()).unwrap();
    assert_eq!(expo.value(names::ACCEPTS_TOTAL, &[]), Some(written as f64));
    let counts: f64 = ["0", "1"]
        .iter()
        .map(|w| expo.value("gateway_loop_turn_seconds_count", &[("worker", w)]).unwrap())
        .sum();
    assert_eq!(counts, written as f64);
}

#[test]
fn one_worker_set_shared_by_threads_loses_no_increment() {
    // Not the intended use (one writer per set), but not a lost update either.
    let registry = Arc::new(Registry::new(1));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let w = Arc::clone(registry.worker(0).unwrap());
            thread::spawn(move || (0..10_000).for_each(|_| w.bytes_out.add(1)))
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(registry.worker(0).unwrap().bytes_out.get(), 40_000);
}

#[test]
fn loop_turn_histogram_is_cumulative_with_count_and_sum() {
    let registry = Registry::new(2);
    let w = registry.worker(1).unwrap();
    for d in [
        Duration::from_micros(5),
        Duration::from_micros(10), // on a bound: counts in le="0.00001"
        Duration::from_micros(20),
        Duration::from_millis(3),
        Duration::from_secs(1),
        Duration::from_secs(2), // past the last bound: +Inf only
    ] {
        w.loop_turn.observe(d);
    }
    let text = registry.render_to_string();
    let expo = parse(&text).unwrap();
    check_against_names(&expo);
    let bucket = |worker: &str, le: &str| {
        expo.value("gateway_loop_turn_seconds_bucket", &[("worker", worker), ("le", le)])
            .unwrap_or_else(|| panic!("no bucket le={le}\n{text}"))
    };
    let expected = [
        ("0.00001", 2.0),
        ("0.000025", 3.0),
        ("0.00005", 3.0),
        ("0.0001", 3.0),
        ("0.00025", 3.0),
        ("0.0005", 3.0),
        ("0.001", 3.0),
        ("0.0025", 3.0),
        ("0.005", 4.0),
        ("0.01", 4.0),
        ("0.025", 4.0),
        ("0.05", 4.0),
        ("0.1", 4.0),
        ("0.25", 4.0),
        ("0.5", 4.0),
        ("1", 5.0),
        ("+Inf", 6.0),
    ];
    for (le, count) in expected {
        assert_eq!(bucket("1", le), count, "le={le}");
        assert_eq!(bucket("0", le), 0.0, "idle worker le={le}");
    }
    assert_eq!(expo.series("gateway_loop_turn_seconds_bucket").len(), 2 * expected.len());
    assert_eq!(expo.value("gateway_loop_turn_seconds_count", &[("worker", "1")]), Some(6.0));
    assert_eq!(expo.value("gateway_loop_turn_seconds_count", &[("worker", "0")]), Some(0.0));
    let sum = expo.value("gateway_loop_turn_seconds_sum", &[("worker", "1")]).unwrap();
    assert!((sum - 3.003_035).abs() < 1e-9, "sum {sum}");
    assert_eq!(expo.value("gateway_loop_turn_seconds_sum", &[("worker", "0")]), Some(0.0));
}

#[test]
fn gauges_are_summed_except_inbox_depth() {
    let registry = Registry::new(3);
    for (i, w) in registry.workers().iter().enumerate() {
        let i = i as i64;
        for _ in 0..(i + 1) * 10 {
            w.sessions_open.inc();
            w.sessions.transition(None, Some(SessionState::Handshake));
        }
        // Half of them reach live, one closes.
        for _ in 0..(i + 1) * 5 {
            w.sessions.transition(Some(SessionState::Handshake), Some(SessionState::Auth));
            w.sessions.transition(Some(SessionState::Auth), Some(SessionState::Live));
        }
        w.sessions.transition(Some(SessionState::Live), None);
        w.sessions_open.dec();
        w.outbound_queue_bytes.add(1000 * (i + 1));
        w.inbox_depth.set(7 * i);
    }
    let expo = parse(&registry.render_to_string()).unwrap();
    assert_eq!(expo.value(names::SESSIONS_OPEN, &[]), Some(57.0));
    assert_eq!(expo.value(names::SESSIONS, &[("state", "handshake")]), Some(30.0));
    assert_eq!(expo.value(names::SESSIONS, &[("state", "auth")]), Some(0.0));
    assert_eq!(expo.value(names::SESSIONS, &[("state", "live")]), Some(27.0));
    assert_eq!(expo.value(names::SESSIONS, &[("state", "draining")]), Some(0.0));
    assert_eq!(expo.value(names::OUTBOUND_QUEUE_BYTES, &[]), Some(6000.0));
    for i in 0..3 {
        let worker = i.to_string();
        assert_eq!(expo.value(names::INBOX_DEPTH, &[("worker", &worker)]), Some(7.0 * i as f64));
    }
    assert_eq!(expo.series(names::INBOX_DEPTH).len(), 3);
}

#[test]
fn unknown_close_codes_count_as_other() {
    let registry = Registry::new(1);
    let w = registry.worker(0).unwrap();
    w.closes.inc(CloseCode(4321));
    w.closes.inc(CloseCode(1015));
    w.closes.inc(CloseCode::GOING_AWAY);
    let expo = parse(&registry.render_to_string()).unwrap();
    assert_eq!(expo.value(names::CLOSES_TOTAL, &[("code", "other")]), Some(2.0));
    assert_eq!(expo.value(names::CLOSES_TOTAL, &[("code", "1001")]), Some(1.0));
    assert_eq!(expo.value(names::CLOSES_TOTAL, &[("code", "4321")]), None);
}

#[cfg(target_os = "linux")]
#[test]
fn process_resident_memory_is_reported() {
    let expo = parse(&Registry::new(1).render_to_string()).unwrap();
    let rss = expo.value(names::PROCESS_RESIDENT_MEMORY_BYTES, &[]).unwrap();
    assert!(rss > 1024.0 * 1024.0, "rss {rss}");
    assert_eq!(rss % 1024.0, 0.0);
}

#[test]
fn render_appends_to_the_buffer() {
    let registry = Registry::new(1);
    let mut out = String::from("# previous content\n");
    registry.render(&mut out);
    assert!(out.starts_with("# previous content\n# HELP gateway_sessions_open "));
    parse(&out).unwrap();
}

#[test]
fn checker_rejects_malformed_exposition() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"v\"} 1\n";
    parse(ok).unwrap();
    let bad = [
        ("no newline at end", "# HELP a_total A.\n# TYPE a_total counter\na_total 1"),
        ("sample without TYPE", "# HELP a_total A.\na_total 1\n"),
        ("sample without HELP", "# TYPE a_total counter\na_total 1\n"),
        ("undeclared family", "b 1\n"),
        ("duplicate series", "# HELP g G.\n# TYPE g gauge\ng 1\ng 2\n"),
        ("unquoted label", "# HELP g G.\n# TYPE g gauge\ng{k=v} 1\n"),
        ("bad escape", "# HELP g G.\n# TYPE g gauge\ng{k=\"\\x\"} 1\n"),
        ("bad value", "# HELP g G.\n# TYPE g gauge\ng one\n"),
        ("negative counter", "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n"),
        ("type after sample", "# HELP g G.\ng 1\n# TYPE g gauge\n"),
        (
            "not contiguous",
            "# HELP g G.\n# TYPE g gauge\ng 1\n# HELP h H.\n# TYPE h gauge\nh 1\ng{x=\"1\"} 1\n",
        ),
        (
            "non-cumulative",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        ),
        ("count mismatch", "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n"),
        ("no +Inf", "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"),
        ("no _sum", "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n"),
    ];
    for (what, text) in bad {
        assert!(parse(text).is_err(), "accepted {what}: {text:?}");
    }
}
