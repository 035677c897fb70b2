//! The raw WebSocket scenarios' drivers: `echo` (a window of messages in
//! flight per connection, every echo checked) and `handshake` (open and
//! close connections as fast as a concurrency bound allows). See
//! [`crate::raw`] for what a connection does.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::args::{EchoArgs, HandshakeArgs};
use crate::driver::{self, Base, Tick, Ticker, Window, TICK};
use crate::rawloop::{self, Kind, Opening, RawPlan};
use crate::report::{self, per_sec, Percentiles};
use crate::stats::{Phase, Shared};
use crate::tag::TAG_LEN;
use crate::traffic::{self, Latencies};

/// What an `echo` run did (also the `--json` output).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EchoSummary {
    #[serde(flatten)]
    pub(crate) base: Base,
    pub(crate) path: String,
    /// Messages in flight per connection.
    pub(crate) window: u32,
    /// Message size, bytes.
    pub(crate) size: usize,
    /// Messages sent, whole run.
    pub(crate) sent: u64,
    /// Echoes back intact and in order, whole run.
    pub(crate) echoed: u64,
    /// Echoes wrong (truncated, corrupt, out of order) or lost with their
    /// connection.
    pub(crate) bad: u64,
    /// Echoes back within the window.
    pub(crate) echoed_in_window: u64,
    /// `echoed_in_window / window_secs` (summed over processes).
    pub(crate) msgs_per_sec: f64,
    /// Round trip (sent → echo read), whole run.
    pub(crate) rtt: Percentiles,
}

impl EchoSummary {
    fn table(&self) -> String {
        let mut rows = self.base.head_rows();
        rows.extend([
            ("path / window / size", format!("{} / {} / {} B", self.path, self.window, self.size)),
            ("sent / echoed / bad", format!("{} / {} / {}", self.sent, self.echoed, self.bad)),
            ("echoed/s in window", format!("{:.0}", self.msgs_per_sec)),
            ("round trip p50/p90/p99/p999/max (ms)", self.rtt.row5()),
        ]);
        rows.extend(self.base.tail_rows());
        report::render(rows, &self.base.errors)
    }
}

/// `flood echo`.
pub(crate) fn echo(args: &EchoArgs) -> Result<(), String> {
    let common = &args.common;
    driver::validate(common, args.connections)?;
    driver::check_path(&args.path)?;
    if args.connections == 0 || !(1..=65_536).contains(&args.window) {
        return Err("--connections must be positive and --window 1..=65536".to_owned());
    }
    if !(TAG_LEN..=protocol::limits::MAX_SERVER_MESSAGE_LEN).contains(&args.size) {
        return Err(format!("--size must be {TAG_LEN}..={} bytes", protocol::limits::MAX_SERVER_MESSAGE_LEN));
    }
    if !(0.0..=86_400.0).contains(&args.duration) || !(0.0..=3600.0).contains(&args.drain_timeout) {
        return Err("--duration must be 0..=86400 s and --drain-timeout 0..=3600 s".to_owned());
    }
    let summary = if common.processes > 1 {
        let processes = common.processes;
        let rate = args.connect_rate / processes as f64;
        let (children, pids, own_cpu) =
            driver::run_children::<EchoSummary>(processes, args.connections, &common.pids, &|i| {
                let (n, _) = driver::share(args.connections, processes, i);
                let mut child =
                    vec!["--connections".into(), n.to_string(), "--connect-rate".into(), rate.to_string()];
                if let Some(offered) = args.rate {
                    // Each child offers its connections' share.
                    child.extend([
                        "--rate".into(),
                        (offered * n as f64 / args.connections as f64).to_string(),
                    ]);
                }
                child
            })?;
        let mut rtt = traffic::histogram()?;
        let mut total: Option<EchoSummary> = None;
        for mut child in children {
            child.base.take_histogram("rtt", &mut rtt);
            match total.as_mut() {
                None => total = Some(child),
                Some(t) => {
                    t.base.add(&child.base);
                    t.sent += child.sent;
                    t.echoed += child.echoed;
                    t.bad += child.bad;
                    t.echoed_in_window += child.echoed_in_window;
                    t.msgs_per_sec += child.msgs_per_sec;
                }
            }
        }
        let mut total = total.ok_or("no child summary")?;
        total.rtt = Percentiles::of(&rtt);
        total.base.pids = pids;
        total.base.flood_cpu.secs += own_cpu;
        total
    } else {
        run_echo(args)?
    };
    driver::output(common, &summary, EchoSummary::table)
}

fn raw_plan(
    common: &crate::args::Common,
    total: u64,
    opening: Opening,
    kind: Kind,
    path: String,
    first_user: u64,
) -> Result<RawPlan, String> {
    Ok(RawPlan {
        threads: common.threads,
        total,
        opening,
        kind,
        first_user,
        endpoints: driver::endpoints(common, path)?,
        start: Instant::now(),
        latencies: Latencies::new()?,
    })
}

/// Starts the raw workers of `plan`.
pub(crate) fn start_raw(plan: RawPlan) -> Result<driver::Running, String> {
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared::new());
    let (p, s) = (Arc::clone(&plan), Arc::clone(&shared));
    let workers = driver::spawn(plan.threads, move |thread| rawloop::run(&p, thread, &s))?;
    Ok((shared, workers))
}

fn run_echo(args: &EchoArgs) -> Result<EchoSummary, String> {
    let common = &args.common;
    let start = Instant::now();
    let interval = args.rate.map(|rate| Duration::from_secs_f64(args.connections as f64 / rate.max(1e-9)));
    let kind = Kind::Echo { window: args.window, size: args.size, interval };
    let plan =
        raw_plan(common, args.connections, Opening::Rate(args.connect_rate), kind, args.path.clone(), 0)?;
    let handshake_timeout = plan.endpoints.handshake_timeout;
    let (shared, workers) = start_raw(plan)?;
    let counters = &shared.traffic;
    let ramp_deadline = start
        + Duration::from_secs_f64(args.connections as f64 / args.connect_rate * 1.5)
        + handshake_timeout
        + Duration::from_secs(5);
    let mut window: Option<(Window, u64)> = None;
    let mut closed = None;
    let mut drain_deadline = start;
    let mut ticker = Ticker::new(start, common.child, args.connections);
    while !workers.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        match shared.phase() {
            Phase::Ramp if shared.resolved() >= args.connections || now >= ramp_deadline => {
                window = Some((Window::open(&common.pids), counters.acked.load(Relaxed)));
                shared.set_phase(Phase::Hold);
            }
            Phase::Hold
                if window
                    .as_ref()
                    .is_some_and(|(w, _)| now >= w.start + Duration::from_secs_f64(args.duration)) =>
            {
                if let Some((w, acked0)) = &window {
                    closed = Some((w.close(), counters.acked.load(Relaxed).saturating_sub(*acked0)));
                }
                drain_deadline = now + Duration::from_secs_f64(args.drain_timeout);
                shared.set_phase(Phase::Drain);
            }
            Phase::Drain => {
                let (sent, acked, bad, _) = counters.snapshot();
                if sent <= acked + bad || now >= drain_deadline {
                    shared.set_phase(Phase::Close);
                }
            }
            _ => {}
        }
        if ticker.due(now) {
            ticker.print::<EchoSummary>(now, Tick::of(&shared, |l| &l.ack));
        }
    }
    driver::join(workers)?;

    let (sent, echoed, bad, _) = counters.snapshot();
    let mut base = Base::collect("echo", common, args.connections, &shared, start);
    let mut summary = EchoSummary {
        path: args.path.clone(),
        window: args.window,
        size: args.size,
        sent,
        echoed,
        bad,
        ..EchoSummary::default()
    };
    if let Some(((secs, pids, cpu), in_window)) = closed {
        base.window_secs = secs;
        base.pids = pids;
        base.flood_cpu = cpu;
        summary.echoed_in_window = in_window;
        summary.msgs_per_sec = per_sec(in_window, secs);
    }
    if let Some(latencies) = counters.latencies() {
        summary.rtt = Percentiles::of(&latencies.ack);
        if common.child {
            base.histograms.insert("rtt".to_owned(), report::HistDump::of(&latencies.ack));
        }
    }
    summary.base = base;
    Ok(summary)
}

/// What a `handshake` run did (also the `--json` output).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HandshakeSummary {
    #[serde(flatten)]
    pub(crate) base: Base,
    /// `upgrade` (the WebSocket upgrade only) or `protocol` (upgrade,
    /// HELLO, AUTH_OK).
    pub(crate) mode: String,
    pub(crate) path: String,
    pub(crate) concurrency: u64,
    /// Handshakes completed (upgrades, or AUTH_OKs with --protocol).
    pub(crate) handshakes: u64,
    /// `handshakes / window_secs` (the whole run), summed over processes.
    pub(crate) handshakes_per_sec: f64,
    /// Connect started → upgrade answered (or AUTH_OK).
    pub(crate) latency: Percentiles,
}

impl HandshakeSummary {
    fn table(&self) -> String {
        let mut rows = self.base.head_rows();
        rows.extend([
            ("mode / path", format!("{} / {}", self.mode, self.path)),
            ("concurrency", self.concurrency.to_string()),
            ("handshakes completed", self.handshakes.to_string()),
            (
                if self.mode == "protocol" { "AUTH_OKs/s" } else { "upgrades/s" },
                format!("{:.0}", self.handshakes_per_sec),
            ),
            ("latency p50/p90/p99/p999/max (ms)", self.latency.row5()),
        ]);
        rows.extend(self.base.tail_rows());
        report::render(rows, &self.base.errors)
    }
}

/// `flood handshake`.
pub(crate) fn handshake(args: &HandshakeArgs) -> Result<(), String> {
    let common = &args.common;
    driver::validate(common, args.concurrency.min(args.connections))?;
    let path = args.path.clone().unwrap_or_else(|| if args.protocol { "/ws" } else { "/echo" }.to_owned());
    driver::check_path(&path)?;
    if args.connections == 0 || args.concurrency == 0 {
        return Err("--connections and --concurrency must be positive".to_owned());
    }
    if !(0.0..=86_400.0).contains(&args.timeout) {
        return Err("--timeout must be 0..=86400 s".to_owned());
    }
    let summary = if common.processes > 1 {
        let processes = common.processes;
        let (children, pids, own_cpu) =
            driver::run_children::<HandshakeSummary>(processes, args.connections, &common.pids, &|i| {
                let (n, before) = driver::share(args.connections, processes, i);
                let (c, _) = driver::share(args.concurrency, processes, i);
                let users = if args.users == 0 { args.connections } else { args.users };
                vec![
                    "--connections".into(),
                    n.to_string(),
                    "--concurrency".into(),
                    c.max(1).to_string(),
                    "--first-user".into(),
                    (args.first_user + before % users).to_string(),
                    "--users".into(),
                    users.to_string(),
                ]
            })?;
        let mut latency = traffic::histogram()?;
        let mut total: Option<HandshakeSummary> = None;
        for mut child in children {
            child.base.take_histogram("latency", &mut latency);
            match total.as_mut() {
                None => total = Some(child),
                Some(t) => {
                    t.base.add(&child.base);
                    t.handshakes += child.handshakes;
                    t.handshakes_per_sec += child.handshakes_per_sec;
                    t.concurrency += child.concurrency;
                }
            }
        }
        let mut total = total.ok_or("no child summary")?;
        total.latency = Percentiles::of(&latency);
        total.base.pids = pids;
        total.base.flood_cpu.secs += own_cpu;
        total
    } else {
        run_handshake(args, path)?
    };
    driver::output(common, &summary, HandshakeSummary::table)
}

fn run_handshake(args: &HandshakeArgs, path: String) -> Result<HandshakeSummary, String> {
    let common = &args.common;
    let start = Instant::now();
    let signer = match (&args.signing_key, args.protocol) {
        (Some(key), true) => Some(crate::scenarios::signer(key, args.key_id)?),
        _ => None,
    };
    let users = if args.users == 0 { args.connections } else { args.users };
    let kind = Kind::Handshake { signer, users };
    let plan = raw_plan(
        common,
        args.connections,
        Opening::Concurrency(args.concurrency),
        kind,
        path.clone(),
        args.first_user,
    )?;
    let window = Window::open(&common.pids);
    let (shared, workers) = start_raw(plan)?;
    shared.set_phase(Phase::Hold);
    let deadline = start + Duration::from_secs_f64(args.timeout);
    let mut ticker = Ticker::new(start, common.child, args.connections);
    while !workers.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        if now >= deadline && shared.phase() != Phase::Close {
            shared.set_phase(Phase::Close);
        }
        if ticker.due(now) {
            ticker.print::<HandshakeSummary>(now, Tick::of(&shared, |l| &l.ack));
        }
    }
    driver::join(workers)?;
    let (secs, pids, cpu) = window.close();
    let mut base = Base::collect("handshake", common, args.connections, &shared, start);
    base.window_secs = secs;
    base.pids = pids;
    base.flood_cpu = cpu;
    // A handshake counts once the upgrade (or AUTH_OK) came back.
    let handshakes = base.authenticated;
    let mut summary = HandshakeSummary {
        mode: if args.protocol { "protocol" } else { "upgrade" }.to_owned(),
        path,
        concurrency: args.concurrency,
        handshakes,
        handshakes_per_sec: per_sec(handshakes, secs),
        ..HandshakeSummary::default()
    };
    if let Some(latencies) = shared.traffic.latencies() {
        summary.latency = Percentiles::of(&latencies.ack);
        if common.child {
            base.histograms.insert("latency".to_owned(), report::HistDump::of(&latencies.ack));
        }
    }
    summary.base = base;
    Ok(summary)
}
