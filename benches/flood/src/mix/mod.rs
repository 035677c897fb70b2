//! The `mix` driver: the fleet's traffic at a chosen scale, checked end to
//! end. Sessions talk in pairs (user 2k ↔ 2k+1) and in groups (`layout`),
//! subscribe to their peer's presence, type before half their pair sends
//! and mark what they read; their sends are tagged (`tag`), so every
//! delivery is checked as it arrives (duplicates, conversation order) and,
//! at the end, against every acknowledgement (`ledger`).
//!
//! Phases: ramp until every session is authenticated or failed → setup
//! (GROUP_CREATE by each group's member 0; until every GROUP_OK, then
//! `--settle` seconds: creating every group at once is a burst of a
//! membership entry and its ACK per session, not the steady state) → hold
//! (the measured window) → drain (until every send is answered and every
//! owed delivery arrived, or the drain timeout) → sync (every live session
//! asks for its inbox once more, SYNC_REQUEST after what it surfaced,
//! spread at the connect rate; until every SYNC_DONE) → close → the
//! ledger's check. With `--processes` each
//! child holds whole pairs and groups, so each checks its own share.

mod flow;
mod layout;
mod ledger;
mod summary;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) use flow::{FinalSync, MixFlow, MixSpec};
use ledger::Ledger;
use summary::MixSummary;

use crate::args::MixArgs;
use crate::driver::{self, Base, Tick, Ticker, Window, TICK};
use crate::engine::Plan;
use crate::report::{per_sec, HistDump, Percentiles};
use crate::stats::Phase;
use crate::traffic::{self, Latencies, Mode, Spec};

/// The mix's counters of one process, beside the traffic's.
#[derive(Debug, Default)]
pub(crate) struct MixCounters {
    pub(crate) sent_direct: AtomicU64,
    pub(crate) sent_group: AtomicU64,
    pub(crate) acked_direct: AtomicU64,
    pub(crate) acked_group: AtomicU64,
    /// Deliveries the acknowledged messages owe.
    pub(crate) expected: AtomicU64,
    pub(crate) order_broken: AtomicU64,
    pub(crate) reads_sent: AtomicU64,
    pub(crate) typing_sent: AtomicU64,
    pub(crate) receipts_seen: AtomicU64,
    pub(crate) presence_seen: AtomicU64,
    pub(crate) typing_seen: AtomicU64,
    pub(crate) final_synced: AtomicU64,
    /// Filled as the connections end.
    pub(crate) ledger: Mutex<Ledger>,
}

/// `flood mix`.
pub(crate) fn mix(args: &MixArgs) -> Result<(), String> {
    let common = &args.common;
    driver::validate(common, args.sessions)?;
    driver::check_path(&args.path)?;
    driver::check_pairs(
        args.sessions,
        args.first_user,
        args.window,
        args.payload,
        &[
            ("--duration", args.duration),
            ("--setup-timeout", args.setup_timeout),
            ("--settle", args.settle),
            ("--drain-timeout", args.drain_timeout),
            ("--sync-timeout", args.sync_timeout),
        ],
    )?;
    for (name, share) in [
        ("--direct-share", args.direct_share),
        ("--typing-share", args.typing_share),
        ("--group-read-share", args.group_read_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            return Err(format!("{name} must be 0..=1"));
        }
    }
    if args.senders == 0 {
        return Err("--senders must be at least 1".to_owned());
    }
    let mut summary = if common.processes > 1 {
        let processes = common.processes;
        let (children, pids, own_cpu) =
            driver::run_children::<MixSummary>(processes, args.sessions, &common.pids, &|i| {
                // Whole pairs per child; the rates follow the sessions.
                let (pairs, before) = driver::share(args.sessions / 2, processes, i);
                let part = (pairs * 2) as f64 / args.sessions as f64;
                vec![
                    "--sessions".into(),
                    (pairs * 2).to_string(),
                    "--first-user".into(),
                    (args.first_user + before * 2).to_string(),
                    "--rate".into(),
                    (args.rate * part).to_string(),
                    "--connect-rate".into(),
                    (args.connect_rate * part).to_string(),
                ]
            })?;
        let names = ["ack", "direct", "group", "reconnect"];
        let mut merged =
            [traffic::histogram()?, traffic::histogram()?, traffic::histogram()?, traffic::histogram()?];
        let mut total: Option<MixSummary> = None;
        for mut child in children {
            for (name, into) in names.iter().zip(merged.iter_mut()) {
                child.base.take_histogram(name, into);
            }
            match total.as_mut() {
                None => total = Some(child),
                Some(t) => t.add(&child),
            }
        }
        let mut total = total.ok_or("no child summary")?;
        let [ack, direct, group, reconnect] = merged;
        total.rate = args.rate;
        total.ack_latency = Percentiles::of(&ack);
        total.direct_latency = Percentiles::of(&direct);
        total.group_latency = Percentiles::of(&group);
        total.reconnect_latency = Percentiles::of(&reconnect);
        total.base.pids = pids;
        total.base.flood_cpu.secs += own_cpu;
        total
    } else {
        run(args)?
    };
    if !common.child {
        summary.judge();
    }
    driver::output(common, &summary, MixSummary::table)?;
    match summary.failures.first() {
        Some(first) if !common.child => Err(format!("mix failed: {first}")),
        _ => Ok(()),
    }
}

/// This process's share: its sessions (in `blocks`' groups), its rates.
fn spec(args: &MixArgs, start: Instant, blocks: &[layout::Block]) -> Spec {
    let sessions = args.sessions;
    let direct_rate = args.rate * args.direct_share;
    let group_rate = args.rate - direct_rate;
    // Every session sends to its pair; each group's senders share its rate.
    let every = |rate: f64, senders: f64| (rate > 0.0).then(|| Duration::from_secs_f64(senders / rate));
    let mut spec =
        Spec::new(Mode::Mix, args.window, every(direct_rate, sessions as f64), args.payload, start);
    spec.fleet = args.fleet;
    let senders = blocks.iter().map(|b| b.size.min(args.senders)).sum::<u64>();
    spec.mix = Some(MixSpec {
        sessions,
        group_interval: every(group_rate, senders as f64).filter(|_| senders > 0),
        senders: args.senders,
        typing_share: args.typing_share,
        group_read_share: args.group_read_share,
        sync_rate: args.connect_rate,
    });
    spec
}

fn run(args: &MixArgs) -> Result<MixSummary, String> {
    let common = &args.common;
    let start = Instant::now();
    let handshake_timeout = Duration::from_millis(common.handshake_timeout_ms);
    let blocks = layout::blocks(args.sessions);
    let plan = Plan {
        threads: common.threads,
        sessions: args.sessions,
        rate: args.connect_rate,
        first_user: args.first_user,
        endpoints: driver::endpoints(common, args.path.clone())?,
        signer: crate::scenarios::signer(&args.signing_key, args.key_id)?,
        start,
        traffic: Some(spec(args, start, &blocks)),
        latencies: Latencies::new()?,
    };
    let (shared, workers) = crate::group::start_engine(plan)?;
    let counters = &shared.traffic;
    let mix = &counters.mix;
    let ramp_deadline = start
        + Duration::from_secs_f64(args.sessions as f64 / args.connect_rate * 1.5)
        + handshake_timeout
        + Duration::from_secs(5);
    let mut deadline = start;
    let mut window: Option<(Window, u64, u64)> = None;
    // When the setup's burst has settled and the window opens.
    let mut settle: Option<Instant> = None;
    let mut closed = None;
    let mut ticker = Ticker::new(start, common.child, args.sessions);
    let secs = Duration::from_secs_f64;
    while !workers.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        match shared.phase() {
            Phase::Ramp if shared.resolved() >= args.sessions || now >= ramp_deadline => {
                deadline = now + secs(args.setup_timeout);
                shared.set_phase(Phase::Setup);
            }
            Phase::Setup
                if settle.is_none()
                    && (counters.groups_created.load(Relaxed) >= blocks.len() as u64 || now >= deadline) =>
            {
                settle = Some(now + secs(args.settle));
            }
            Phase::Setup if settle.is_some_and(|at| now >= at) => {
                let acked = || mix.acked_direct.load(Relaxed) + mix.acked_group.load(Relaxed);
                window = Some((Window::open(&common.pids), acked(), counters.delivered.load(Relaxed)));
                shared.set_phase(Phase::Hold);
            }
            Phase::Hold if window.as_ref().is_some_and(|(w, ..)| now >= w.start + secs(args.duration)) => {
                if let Some((w, acked0, delivered0)) = &window {
                    let acked = mix.acked_direct.load(Relaxed) + mix.acked_group.load(Relaxed);
                    let delivered = counters.delivered.load(Relaxed);
                    closed = Some((w.close(), acked - acked0, delivered - delivered0));
                }
                deadline = now + secs(args.drain_timeout);
                shared.set_phase(Phase::Drain);
            }
            Phase::Drain => {
                let (sent, acked, errors, _) = counters.snapshot();
                let settled =
                    sent <= acked + errors && counters.unique.load(Relaxed) >= mix.expected.load(Relaxed);
                if settled || now >= deadline {
                    deadline = now + secs(args.sync_timeout);
                    shared.set_phase(Phase::Sync);
                }
            }
            Phase::Sync if mix.final_synced.load(Relaxed) >= shared.live.load(Relaxed) || now >= deadline => {
                shared.set_phase(Phase::Close);
            }
            _ => {}
        }
        if ticker.due(now) {
            ticker.print::<MixSummary>(now, Tick::of(&shared, |l| &l.e2e));
        }
    }
    driver::join(workers)?;

    let verdict = mix.ledger.lock().map_err(|_| "the ledger's lock is poisoned")?.verify(&blocks);
    for example in &verdict.examples {
        eprintln!("flood: lost: {example}");
    }
    let (sent, acked, send_errors, delivered) = counters.snapshot();
    let mut base = Base::collect("mix", common, args.sessions, &shared, start);
    let load = |c: &AtomicU64| c.load(Relaxed);
    let mut summary = MixSummary {
        rate: args.rate,
        direct_share: args.direct_share,
        groups: blocks.len() as u64,
        largest_group: blocks.iter().map(|b| b.size).max().unwrap_or(0),
        mean_group_size: if blocks.is_empty() { 0.0 } else { args.sessions as f64 / blocks.len() as f64 },
        groups_created: load(&counters.groups_created),
        sent_direct: load(&mix.sent_direct),
        sent_group: load(&mix.sent_group),
        acked_direct: load(&mix.acked_direct),
        acked_group: load(&mix.acked_group),
        send_errors,
        unanswered: sent.saturating_sub(acked + send_errors),
        expected: load(&mix.expected),
        delivered,
        unique: load(&counters.unique),
        checked: verdict.checked,
        lost: verdict.lost,
        unverifiable: verdict.unverifiable,
        duplicates: load(&counters.duplicates),
        order_broken: load(&mix.order_broken),
        out_of_order: load(&counters.out_of_order),
        system_entries: load(&counters.system_entries),
        reads_sent: load(&mix.reads_sent),
        typing_sent: load(&mix.typing_sent),
        receipts_seen: load(&mix.receipts_seen),
        presence_seen: load(&mix.presence_seen),
        typing_seen: load(&mix.typing_seen),
        final_synced: load(&mix.final_synced),
        connections_lost: load(&counters.connections_lost),
        reconnected: load(&counters.reconnected),
        resynced: load(&counters.resynced),
        ..MixSummary::default()
    };
    if let Some(((secs, pids, cpu), acked, delivered)) = closed {
        base.window_secs = secs;
        base.pids = pids;
        base.flood_cpu = cpu;
        summary.msgs_per_sec = per_sec(acked, secs);
        summary.deliveries_per_sec = per_sec(delivered, secs);
    }
    if let Some(l) = counters.latencies() {
        summary.ack_latency = Percentiles::of(&l.ack);
        summary.direct_latency = Percentiles::of(&l.e2e);
        summary.group_latency = Percentiles::of(&l.e2e_group);
        summary.reconnect_latency = Percentiles::of(&l.reconnect);
        if common.child {
            for (name, h) in
                [("ack", &l.ack), ("direct", &l.e2e), ("group", &l.e2e_group), ("reconnect", &l.reconnect)]
            {
                base.histograms.insert(name.to_owned(), HistDump::of(h));
            }
        }
    }
    summary.base = base;
    Ok(summary)
}
