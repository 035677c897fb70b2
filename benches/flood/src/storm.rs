//! The `storm` driver: chat pairs send tagged messages at a steady rate;
//! after the warmup a share of the sessions is dropped abruptly (TCP reset,
//! no close frame) and reconnected at a set rate with `HELLO.resume_after`
//! = their last ack (the same [`client::Session`], so pending sends are
//! resent with their client ids and replays are deduplicated). A failed
//! reconnect is retried as the SPEC's clients do (`client::Backoff`: from
//! about 1 s, doubling to 60 s, jittered, never below the server's
//! `retry_after_ms`), for as long as the storm's timeout allows; so is a
//! first connection refused with a retry hint during the ramp (counted as
//! `connect_retry_<kind>` errors, the ramp waits for it). The driver
//! waits until every dropped session is back and synced, lets the traffic
//! run a little longer, drains, and checks: every SEND the server
//! acknowledged must have reached its recipient's application exactly once
//! (`lost` and `duplicates` must be 0).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::args::StormArgs;
use crate::driver::{self, Base, Tick, Ticker, Window, TICK};
use crate::engine::Plan;
use crate::report::{self, per_sec, HistDump, Percentiles};
use crate::stats::Phase;
use crate::traffic::{self, Latencies, Mode, Spec};

/// How long after the trigger every thread has surely dropped its share.
const TRIGGER_SETTLE: Duration = Duration::from_millis(300);

/// With `--fleet`: how long after the trigger every session of a node
/// killed then has surely seen its connection end (a process holding
/// thousands of sockets takes a while to exit).
const FLEET_SETTLE: Duration = Duration::from_secs(2);

/// What a `storm` run did (also the `--json` output).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StormSummary {
    #[serde(flatten)]
    pub(crate) base: Base,
    pub(crate) drop_percent: f64,
    /// Reconnections per second asked for (all processes).
    pub(crate) reconnect_rate: f64,
    pub(crate) rate_per_session: f64,
    /// Sessions dropped by the storm (and, with `--fleet`, those whose node
    /// died).
    pub(crate) storm_dropped: u64,
    /// With `--fleet`: of those, connections lost while live (not dropped
    /// by flood).
    pub(crate) connections_lost: u64,
    /// Of those, authenticated again.
    pub(crate) reconnected: u64,
    /// Of those, synced again (SYNC_DONE after the reconnect).
    pub(crate) resynced: u64,
    /// Reconnect attempts that failed and were retried.
    pub(crate) reconnect_retries: u64,
    /// Whether every dropped session was back and synced before the timeout.
    pub(crate) all_back: bool,
    /// From the drop to the last dropped session synced, seconds (slowest
    /// process).
    pub(crate) reconnect_secs: f64,
    /// Reconnect started → SYNC_DONE.
    pub(crate) reconnect_latency: Percentiles,
    pub(crate) sent: u64,
    /// SEND_ACKs: messages the server stored.
    pub(crate) acked: u64,
    pub(crate) send_errors: u64,
    /// Sends still unanswered at the end.
    pub(crate) unanswered: u64,
    /// Messages surfaced to the receivers' application.
    pub(crate) delivered: u64,
    /// Of those, first arrivals.
    pub(crate) unique: u64,
    /// Acknowledged but never delivered: `acked − unique` (must be 0).
    pub(crate) lost: u64,
    /// Surfaced twice to an application (must be 0).
    pub(crate) duplicates: u64,
    /// Arrived after a gap in their sender's stream.
    pub(crate) out_of_order: u64,
    /// Replays the session core dropped (resume overlap; harmless).
    pub(crate) replays_dropped: u64,
    pub(crate) acked_per_sec: f64,
    pub(crate) ack_latency: Percentiles,
    pub(crate) e2e_latency: Percentiles,
}

impl StormSummary {
    fn table(&self) -> String {
        let mut rows = self.base.head_rows();
        rows.extend([
            (
                "drop / reconnect rate / send rate",
                format!(
                    "{} % / {}/s / {}/s per session",
                    self.drop_percent, self.reconnect_rate, self.rate_per_session
                ),
            ),
            (
                "dropped (of which lost with their node) / reconnected / resynced / retries",
                format!(
                    "{} ({}) / {} / {} / {}",
                    self.storm_dropped,
                    self.connections_lost,
                    self.reconnected,
                    self.resynced,
                    self.reconnect_retries
                ),
            ),
            ("all back and synced", format!("{} in {:.3} s", self.all_back, self.reconnect_secs)),
            ("reconnect p50/p90/p99/p999/max (ms)", self.reconnect_latency.row5()),
            (
                "sent / acked / errors / unanswered",
                format!("{} / {} / {} / {}", self.sent, self.acked, self.send_errors, self.unanswered),
            ),
            ("delivered / unique", format!("{} / {}", self.delivered, self.unique)),
            ("LOST (must be 0)", self.lost.to_string()),
            ("DUPLICATES surfaced (must be 0)", self.duplicates.to_string()),
            ("out of order / replays dropped", format!("{} / {}", self.out_of_order, self.replays_dropped)),
            ("acked/s in window", format!("{:.0}", self.acked_per_sec)),
            ("send→SEND_ACK p50/p90/p99/p999/max (ms)", self.ack_latency.row5()),
            ("send→deliver p50/p90/p99/p999/max (ms)", self.e2e_latency.row5()),
        ]);
        rows.extend(self.base.tail_rows());
        report::render(rows, &self.base.errors)
    }

    fn add(&mut self, o: &Self) {
        self.base.add(&o.base);
        self.storm_dropped += o.storm_dropped;
        self.connections_lost += o.connections_lost;
        self.reconnected += o.reconnected;
        self.resynced += o.resynced;
        self.reconnect_retries += o.reconnect_retries;
        self.all_back = self.all_back && o.all_back;
        self.reconnect_secs = self.reconnect_secs.max(o.reconnect_secs);
        self.sent += o.sent;
        self.acked += o.acked;
        self.send_errors += o.send_errors;
        self.unanswered += o.unanswered;
        self.delivered += o.delivered;
        self.unique += o.unique;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.replays_dropped += o.replays_dropped;
        self.acked_per_sec += o.acked_per_sec;
    }
}

/// `flood storm`.
pub(crate) fn storm(args: &StormArgs) -> Result<(), String> {
    let common = &args.common;
    driver::validate(common, args.sessions)?;
    driver::check_path(&args.path)?;
    driver::check_pairs(
        args.sessions,
        args.first_user,
        args.window,
        args.payload,
        &[
            ("--warmup", args.warmup),
            ("--after", args.after),
            ("--storm-timeout", args.storm_timeout),
            ("--drain-timeout", args.drain_timeout),
        ],
    )?;
    if !(0.0..=100.0).contains(&args.drop_percent) {
        return Err("--drop must be 0..=100 (percent)".to_owned());
    }
    let summary = if common.processes > 1 {
        let processes = common.processes;
        let p = processes as f64;
        let (children, pids, own_cpu) =
            driver::run_children::<StormSummary>(processes, args.sessions, &common.pids, &|i| {
                // Whole pairs per child.
                let (pairs, before) = driver::share(args.sessions / 2, processes, i);
                let kill = if i == 0 { args.kill_at_storm.unwrap_or(0) } else { 0 };
                vec![
                    "--kill-at-storm".into(),
                    kill.to_string(),
                    "--sessions".into(),
                    (pairs * 2).to_string(),
                    "--first-user".into(),
                    (args.first_user + before * 2).to_string(),
                    "--connect-rate".into(),
                    (args.connect_rate / p).to_string(),
                    "--reconnect-rate".into(),
                    (args.reconnect_rate / p).to_string(),
                ]
            })?;
        let (mut reconnect, mut ack, mut e2e) =
            (traffic::histogram()?, traffic::histogram()?, traffic::histogram()?);
        let mut total: Option<StormSummary> = None;
        for mut child in children {
            child.base.take_histogram("reconnect", &mut reconnect);
            child.base.take_histogram("ack", &mut ack);
            child.base.take_histogram("e2e", &mut e2e);
            match total.as_mut() {
                None => total = Some(child),
                Some(t) => t.add(&child),
            }
        }
        let mut total = total.ok_or("no child summary")?;
        total.reconnect_rate = args.reconnect_rate;
        total.reconnect_latency = Percentiles::of(&reconnect);
        total.ack_latency = Percentiles::of(&ack);
        total.e2e_latency = Percentiles::of(&e2e);
        total.base.pids = pids;
        total.base.flood_cpu.secs += own_cpu;
        total
    } else {
        run(args)?
    };
    driver::output(common, &summary, StormSummary::table)?;
    if summary.lost > 0 || summary.duplicates > 0 {
        return Err(format!("{} messages lost, {} surfaced twice", summary.lost, summary.duplicates));
    }
    // "Nothing lost" proves nothing if nothing was stored: a pair split over
    // nodes with separate stores (no routing between nodes yet) has every
    // SEND refused. Such a run fails instead of passing vacuously.
    if summary.acked == 0 {
        return Err(format!(
            "no send acknowledged ({} refused): the storm checked nothing (pairs on nodes that are not one fleet \
             need each target listed twice)",
            summary.send_errors
        ));
    }
    Ok(())
}

fn run(args: &StormArgs) -> Result<StormSummary, String> {
    let common = &args.common;
    let start = Instant::now();
    let handshake_timeout = Duration::from_millis(common.handshake_timeout_ms);
    let interval = Some(Duration::from_secs_f64(1.0 / args.rate));
    let mut spec = Spec::new(Mode::Storm, args.window, interval, args.payload, start);
    spec.drop_percent = args.drop_percent;
    spec.reconnect_rate = args.reconnect_rate;
    spec.fleet = args.fleet;
    let plan = Plan {
        threads: common.threads,
        sessions: args.sessions,
        rate: args.connect_rate,
        first_user: args.first_user,
        endpoints: driver::endpoints(common, args.path.clone())?,
        signer: crate::scenarios::signer(&args.signing_key, args.key_id)?,
        start,
        traffic: Some(spec),
        latencies: Latencies::new()?,
    };
    let (shared, workers) = crate::group::start_engine(plan)?;
    let counters = &shared.traffic;
    let ramp_deadline = start
        + Duration::from_secs_f64(args.sessions as f64 / args.connect_rate * 1.5)
        + handshake_timeout
        + Duration::from_secs(5);
    let mut window: Option<(Window, u64)> = None;
    let mut trigger: Option<Instant> = None;
    let mut back: Option<(Instant, bool)> = None;
    let mut closed = None;
    let mut drain_deadline = start;
    let mut ticker = Ticker::new(start, common.child, args.sessions);
    while !workers.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        match shared.phase() {
            Phase::Ramp if shared.resolved() >= args.sessions || now >= ramp_deadline => {
                window = Some((Window::open(&common.pids), counters.acked.load(Relaxed)));
                shared.set_phase(Phase::Hold);
            }
            Phase::Hold => {
                let Some((w, acked0)) = &window else { continue };
                match (trigger, back) {
                    (None, _) if now >= w.start + Duration::from_secs_f64(args.warmup) => {
                        let ns = u64::try_from(now.saturating_duration_since(start).as_nanos()).unwrap_or(0);
                        counters.storm_at_ns.store(ns, Relaxed);
                        trigger = Some(now);
                        if let Some(pid) = args.kill_at_storm.filter(|pid| *pid != 0) {
                            kill9(pid)?;
                        }
                    }
                    (Some(at), None) => {
                        let dropped = counters.storm_dropped.load(Relaxed);
                        let settle = if args.fleet { FLEET_SETTLE } else { TRIGGER_SETTLE };
                        let all = now >= at + settle && counters.resynced.load(Relaxed) >= dropped;
                        if all || now >= at + Duration::from_secs_f64(args.storm_timeout) {
                            back = Some((now, all));
                        }
                    }
                    (Some(_), Some((at, _))) if now >= at + Duration::from_secs_f64(args.after) => {
                        closed = Some((w.close(), counters.acked.load(Relaxed).saturating_sub(*acked0)));
                        drain_deadline = now + Duration::from_secs_f64(args.drain_timeout);
                        shared.set_phase(Phase::Drain);
                    }
                    _ => {}
                }
            }
            Phase::Drain => {
                let (sent, acked, errors, _) = counters.snapshot();
                let settled = sent <= acked + errors && counters.unique.load(Relaxed) >= acked;
                if settled || now >= drain_deadline {
                    shared.set_phase(Phase::Close);
                }
            }
            _ => {}
        }
        if ticker.due(now) {
            ticker.print::<StormSummary>(now, Tick::of(&shared, |l| &l.e2e));
        }
    }
    driver::join(workers)?;

    let (sent, acked, send_errors, delivered) = counters.snapshot();
    let unique = counters.unique.load(Relaxed);
    let storm_at = counters.storm_at_ns.load(Relaxed);
    let last = counters.last_resync_ns.load(Relaxed);
    let mut base = Base::collect("storm", common, args.sessions, &shared, start);
    let mut summary = StormSummary {
        drop_percent: args.drop_percent,
        reconnect_rate: args.reconnect_rate,
        rate_per_session: args.rate,
        storm_dropped: counters.storm_dropped.load(Relaxed),
        connections_lost: counters.connections_lost.load(Relaxed),
        reconnected: counters.reconnected.load(Relaxed),
        resynced: counters.resynced.load(Relaxed),
        reconnect_retries: counters.reconnect_retries.load(Relaxed),
        all_back: back.is_some_and(|(_, all)| all),
        reconnect_secs: if storm_at != u64::MAX && last > storm_at {
            (last - storm_at) as f64 / 1e9
        } else {
            0.0
        },
        sent,
        acked,
        send_errors,
        unanswered: sent.saturating_sub(acked + send_errors),
        delivered,
        unique,
        lost: acked.saturating_sub(unique),
        duplicates: counters.duplicates.load(Relaxed),
        out_of_order: counters.out_of_order.load(Relaxed),
        replays_dropped: counters.replays_dropped.load(Relaxed),
        ..StormSummary::default()
    };
    if let Some(((secs, pids, cpu), in_window)) = closed {
        base.window_secs = secs;
        base.pids = pids;
        base.flood_cpu = cpu;
        summary.acked_per_sec = per_sec(in_window, secs);
    }
    if let Some(latencies) = counters.latencies() {
        summary.reconnect_latency = Percentiles::of(&latencies.reconnect);
        summary.ack_latency = Percentiles::of(&latencies.ack);
        summary.e2e_latency = Percentiles::of(&latencies.e2e);
        if common.child {
            base.histograms.insert("reconnect".to_owned(), HistDump::of(&latencies.reconnect));
            base.histograms.insert("ack".to_owned(), HistDump::of(&latencies.ack));
            base.histograms.insert("e2e".to_owned(), HistDump::of(&latencies.e2e));
        }
    }
    summary.base = base;
    if summary.lost > 0 {
        report_lost(counters, storm_at, args.first_user);
    }
    Ok(summary)
}

/// Names the first acknowledged messages that never arrived (a run that
/// lost some fails; this says where to look).
fn report_lost(counters: &traffic::Counters, storm_at_ns: u64, first_user: u64) {
    let Ok(ledger) = counters.ledger.lock() else { return };
    let lost = ledger.lost();
    for &(from, stamp) in lost.iter().take(10) {
        let sender = first_user + u64::from(from);
        let after = (stamp as f64 - storm_at_ns as f64) / 1e9;
        eprintln!("flood: lost: user {sender} → user {}, sent {after:+.3} s from the trigger", sender ^ 1);
    }
    if lost.len() > 10 {
        eprintln!("flood: lost: … and {} more", lost.len() - 10);
    }
}

/// `kill -9 pid` (`--kill-at-storm`).
fn kill9(pid: u32) -> Result<(), String> {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .map_err(|e| format!("--kill-at-storm {pid}: running kill: {e}"))?;
    if !status.success() {
        return Err(format!("--kill-at-storm {pid}: kill -9 failed ({status})"));
    }
    eprintln!("storm: killed process {pid} (kill -9)");
    Ok(())
}
