//! The message scenarios' drivers: `chat` (and its `--ping` baseline),
//! `fill` and `sync`. They run the same worker threads as `connect`
//! ([`crate::engine`]) with a traffic [`Spec`], and move the phases: ramp
//! until every session is authenticated or failed, hold for the measured
//! window, drain what is in flight, close.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use backend_store::{Connect, Request, Response, SendMessage, Store, StoreApi as _, StoreConfig};
use bytes::Bytes;
use gateway_auth::Signer;
use protocol::{Conversation, DeviceId, UserId};

use crate::cli::{ChatArgs, FillArgs, SyncArgs};
use crate::engine::Plan;
use crate::report::{ChatSummary, Percentiles, SyncSummary};
use crate::stats::{self, Phase, Shared};
use crate::traffic::{Latencies, Mode, Spec, STAMP_LEN};
use crate::worker::Endpoints;

/// How often the driver looks at the counters.
const TICK: Duration = Duration::from_millis(5);

/// `flood chat`.
pub(crate) fn chat(args: &ChatArgs) -> Result<(), String> {
    validate_chat(args)?;
    let summary = run_chat(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?);
    } else {
        print!("{}", summary.table());
    }
    Ok(())
}

fn validate_chat(args: &ChatArgs) -> Result<(), String> {
    if args.sessions == 0 || args.sessions % 2 != 0 {
        return Err("--sessions must be a positive even number (sessions talk in pairs)".to_owned());
    }
    if args.first_user == 0 || args.first_user % 2 != 0 {
        return Err("--first-user must be even and positive (pairs are users 2k and 2k + 1)".to_owned());
    }
    if !(0.0..=86_400.0).contains(&args.duration) || !(0.0..=3600.0).contains(&args.drain_timeout) {
        return Err("--duration must be 0..=86400 s and --drain-timeout 0..=3600 s".to_owned());
    }
    if !(1..=protocol::limits::MAX_FRAMES_PER_MESSAGE as u32 / 2).contains(&args.window) {
        return Err(format!(
            "--window must be between 1 and {} (a reply message holds the window's sends and an ACK)",
            protocol::limits::MAX_FRAMES_PER_MESSAGE / 2
        ));
    }
    if !(STAMP_LEN..=protocol::limits::MAX_PAYLOAD).contains(&args.payload) {
        return Err(format!(
            "--payload must be between {STAMP_LEN} and {} bytes",
            protocol::limits::MAX_PAYLOAD
        ));
    }
    if !(1..=256).contains(&args.threads) {
        return Err("--threads must be between 1 and 256".to_owned());
    }
    if let Some(limit) = stats::open_files_limit() {
        if args.sessions + 32 > limit {
            return Err(format!(
                "{} sessions need more open files than this process's limit of {limit}",
                args.sessions
            ));
        }
    }
    Ok(())
}

pub(crate) fn signer(path: &std::path::Path, key_id: Option<u32>) -> Result<Signer, String> {
    let key = std::fs::read(path).map_err(|e| format!("--signing-key {}: {e}", path.display()))?;
    match key_id {
        Some(key_id) => Signer::from_pkcs8(key_id, &key),
        None => gateway_auth::keys::dev_signer_from_pkcs8(&key),
    }
    .map_err(|e| format!("--signing-key {}: {e}", path.display()))
}

fn run_chat(args: &ChatArgs) -> Result<ChatSummary, String> {
    let signer = signer(&args.signing_key, args.key_id)?;
    let sources = match &args.source {
        Some(source) => crate::source::parse_sources(source).map_err(|e| format!("--source {e}"))?,
        None => Vec::new(),
    };
    let mode = if args.ping { Mode::Ping } else { Mode::Send };
    let handshake_timeout = Duration::from_millis(args.handshake_timeout_ms);
    let start = Instant::now();
    let interval = args.rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
    let spec = Spec::new(mode, args.window, interval, args.payload, start);
    let plan = Arc::new(Plan {
        threads: args.threads,
        sessions: args.sessions,
        rate: args.connect_rate,
        first_user: args.first_user,
        endpoints: Endpoints {
            targets: args.targets.clone(),
            sources,
            tls: None,
            path: args.path.clone(),
            handshake_timeout,
        },
        signer,
        start,
        traffic: Some(spec),
        latencies: Latencies::new()?,
    });
    let shared = Arc::new(Shared::new());
    let workers = crate::engine::spawn(&plan, &shared)?;
    let counters = &shared.traffic;

    let ramp_deadline = start
        + Duration::from_secs_f64(args.sessions as f64 / args.connect_rate * 1.5)
        + handshake_timeout
        + Duration::from_secs(5);
    let duration = Duration::from_secs_f64(args.duration);
    let gateway_cpu = || args.gateway_pid.and_then(stats::pid_cpu_secs);
    // At the start of the window and at its end: (when, counters, gateway CPU, own CPU).
    let mut window_start = None;
    let mut window_end = None;
    let mut drain_deadline = start;
    let mut drain_end = None;
    let mut next_tick = start + Duration::from_secs(1);
    let mut last_acked = 0;
    while !workers.iter().all(JoinHandle::is_finished) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        match shared.phase() {
            Phase::Ramp if shared.resolved() >= args.sessions || now >= ramp_deadline => {
                window_start = Some((now, counters.snapshot(), gateway_cpu(), stats::self_cpu_secs()));
                shared.set_phase(Phase::Hold);
            }
            Phase::Hold if window_start.is_some_and(|(at, ..)| now >= at + duration) => {
                window_end = Some((now, counters.snapshot(), gateway_cpu(), stats::self_cpu_secs()));
                drain_deadline = now + Duration::from_secs_f64(args.drain_timeout);
                shared.set_phase(Phase::Drain);
            }
            Phase::Drain => {
                let (sent, acked, errors, delivered) = counters.snapshot();
                let settled = sent == acked + errors && (mode == Mode::Ping || delivered >= acked);
                if settled || now >= drain_deadline {
                    drain_end = Some(now);
                    shared.set_phase(Phase::Close);
                }
            }
            _ => {}
        }
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            let (sent, acked, errors, delivered) = counters.snapshot();
            let progress = shared.progress();
            eprintln!(
                "[{:5.0}s] {:<5} authenticated {}/{}  failed {}  dropped {}  sent {sent}  acked {acked}  errors {errors}  delivered {delivered}  acked/s {}",
                (now - start).as_secs_f64(),
                crate::phase_name(shared.phase()),
                progress.authenticated,
                args.sessions,
                progress.failed,
                progress.dropped,
                acked.saturating_sub(last_acked),
            );
            last_acked = acked;
        }
    }
    crate::driver::join(workers)?;

    let end = Instant::now();
    let progress = shared.progress();
    let (sent, acked, send_errors, delivered) = counters.snapshot();
    let latencies = counters.latencies();
    let mut summary = ChatSummary {
        scenario: mode.name().to_owned(),
        targets: args.targets.iter().map(ToString::to_string).collect(),
        threads: args.threads,
        sessions: args.sessions,
        window: args.window,
        rate_per_session: args.rate,
        payload_bytes: if mode == Mode::Send { args.payload } else { 0 },
        authenticated: progress.authenticated,
        failed: progress.failed,
        dropped: progress.dropped,
        errors: progress.errors,
        wall_secs: (end - start).as_secs_f64(),
        sent,
        acked,
        send_errors,
        delivered,
        acks_sent: counters.acks_sent.load(Relaxed),
        ack_latency: latencies.as_ref().map(|l| Percentiles::of(&l.ack)).unwrap_or_default(),
        e2e_latency: latencies.as_ref().map(|l| Percentiles::of(&l.e2e)).unwrap_or_default(),
        ..ChatSummary::default()
    };
    if let (Some((t0, c0, g0, f0)), Some((t1, c1, g1, f1))) = (window_start, window_end) {
        let secs = (t1 - t0).as_secs_f64();
        summary.duration_secs = secs;
        summary.drain_secs = drain_end.map_or(0.0, |d| (d - t1).as_secs_f64());
        summary.acked_in_window = c1.1.saturating_sub(c0.1);
        summary.delivered_in_window = c1.3.saturating_sub(c0.3);
        summary.msgs_per_sec = per_sec(summary.acked_in_window, secs);
        summary.delivered_per_sec = per_sec(summary.delivered_in_window, secs);
        summary.flood_cpu_secs = f1 - f0;
        if let (Some(g0), Some(g1)) = (g0, g1) {
            let cpu = g1 - g0;
            summary.gateway_cpu_secs = Some(cpu);
            summary.gateway_cores = Some(if secs > 0.0 { cpu / secs } else { 0.0 });
            summary.msgs_per_sec_per_gateway_core =
                Some(if cpu > 0.0 { summary.acked_in_window as f64 / cpu } else { 0.0 });
        }
    }
    Ok(summary)
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// `flood fill`: stores the messages through the store's own API, pipelined
/// in chunks so that the writer group-commits them.
pub(crate) fn fill(args: &FillArgs) -> Result<(), String> {
    const CHUNK: u64 = 1000;
    if args.from_user == 0 || args.to_user == 0 || args.from_user == args.to_user {
        return Err("--from-user and --to-user must be two different, positive users".to_owned());
    }
    let dir = args.data_dir.join("store");
    let store = Store::open(StoreConfig::new(&dir))
        .map_err(|e| format!("opening the store in {}: {e}", dir.display()))?;
    let call = |request: Request| {
        let (tx, rx) = mpsc::channel();
        store.call(
            request,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        rx
    };
    let started = Instant::now();
    for user in [args.from_user, args.to_user] {
        match call(Request::Connect(Connect { user: UserId(user), device: DeviceId(1) })).recv() {
            Ok(Ok(Response::Connected(_))) => {}
            other => return Err(format!("registering user {user}, device 1: {other:?}")),
        }
    }
    let payload = Bytes::from(vec![0u8; args.payload]);
    let mut next = 0;
    while next < args.messages {
        let end = (next + CHUNK).min(args.messages);
        let pending: Vec<_> = (next..end)
            .map(|i| {
                call(Request::Send(SendMessage {
                    user: UserId(args.from_user),
                    device: DeviceId(1),
                    client_id: i + 1,
                    to: Conversation::Direct(UserId(args.to_user)),
                    payload: payload.clone(),
                }))
            })
            .collect();
        for rx in pending {
            match rx.recv() {
                Ok(Ok(Response::Sent(_))) => {}
                other => return Err(format!("storing message {next}..{end}: {other:?}")),
            }
        }
        next = end;
    }
    drop(store);
    eprintln!(
        "flood fill: {} messages from user {} to user {} (device 1) in {:.2} s, store {}",
        args.messages,
        args.from_user,
        args.to_user,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// `flood sync`.
pub(crate) fn sync(args: &SyncArgs) -> Result<(), String> {
    if args.user == 0 {
        return Err("--user must be positive".to_owned());
    }
    if !(0.0..=86_400.0).contains(&args.timeout) {
        return Err("--timeout must be 0..=86400 s".to_owned());
    }
    let signer = signer(&args.signing_key, args.key_id)?;
    let start = Instant::now();
    let spec = Spec::new(Mode::Sync, 1, None, 0, start);
    let plan = Arc::new(Plan {
        threads: 1,
        sessions: 1,
        rate: 1.0,
        first_user: args.user,
        endpoints: Endpoints {
            targets: vec![args.target],
            sources: Vec::new(),
            tls: None,
            path: args.path.clone(),
            handshake_timeout: Duration::from_secs(15),
        },
        signer,
        start,
        traffic: Some(spec),
        latencies: Latencies::new()?,
    });
    let gateway_cpu = || args.gateway_pid.and_then(stats::pid_cpu_secs);
    let cpu0 = gateway_cpu();
    let shared = Arc::new(Shared::new());
    let workers = crate::engine::spawn(&plan, &shared)?;
    let counters = &shared.traffic;
    let deadline = start + Duration::from_secs_f64(args.timeout);
    let mut cpu1 = None;
    let mut next_tick = start + Duration::from_secs(1);
    while !workers.iter().all(JoinHandle::is_finished) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        match shared.phase() {
            Phase::Ramp if shared.resolved() >= 1 => shared.set_phase(Phase::Hold),
            Phase::Hold => {
                let progress = shared.progress();
                let done = counters.synced.load(Relaxed) > 0;
                if done || progress.dropped > 0 || progress.failed > 0 || now >= deadline {
                    cpu1 = gateway_cpu();
                    shared.set_phase(Phase::Close);
                }
            }
            _ => {}
        }
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            eprintln!(
                "[{:5.0}s] {:<5} delivered {}/{}  acks {}",
                (now - start).as_secs_f64(),
                crate::phase_name(shared.phase()),
                counters.delivered.load(Relaxed),
                args.messages,
                counters.acks_sent.load(Relaxed),
            );
        }
    }
    crate::driver::join(workers)?;

    let progress = shared.progress();
    let synced = counters.synced.load(Relaxed) > 0;
    let first_auth = counters.first_auth_ns.load(Relaxed);
    let drain_secs = if synced && first_auth != u64::MAX {
        counters.last_synced_ns.load(Relaxed).saturating_sub(first_auth) as f64 / 1e9
    } else {
        0.0
    };
    let delivered = counters.delivered.load(Relaxed);
    let summary = SyncSummary {
        scenario: "sync".to_owned(),
        targets: vec![args.target.to_string()],
        user: args.user,
        expected: args.messages,
        authenticated: progress.authenticated,
        errors: progress.errors,
        delivered,
        head: counters.synced_head.load(Relaxed),
        synced,
        acks_sent: counters.acks_sent.load(Relaxed),
        auth_latency_ms: shared.auth_latency_sum_us.load(Relaxed) as f64 / 1000.0,
        drain_secs,
        msgs_per_sec: per_sec(delivered, drain_secs),
        gateway_cpu_secs: cpu0.zip(cpu1).map(|(a, b)| b - a),
        flood_cpu_secs: stats::self_cpu_secs(),
        wall_secs: start.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?);
    } else {
        print!("{}", summary.table());
    }
    if !synced {
        return Err(format!(
            "no SYNC_DONE ({delivered} entries received, timeout {} s, errors {:?})",
            args.timeout, summary.errors
        ));
    }
    Ok(())
}
