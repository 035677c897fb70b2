//! The `group` driver: group fanout through the gateway (GROUP_CREATE, then
//! SENDs to the group checked by every member), or with `--hub` through a
//! baseline hub's rooms (raw WebSocket broadcast).
//!
//! Phases (protocol): ramp until every session is authenticated or failed →
//! setup (creators send GROUP_CREATE; until every GROUP_OK or the setup
//! timeout) → hold (the measured window: senders send) → drain (until
//! every acknowledged message reached every other member, or the drain
//! timeout) → close. The hub has no setup and no acks: a message counts as
//! sent when written.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::args::GroupArgs;
use crate::driver::{self, Base, Tick, Ticker, Window, TICK};
use crate::engine::Plan;
use crate::rawloop::{Kind, Opening, RawPlan};
use crate::report::{self, per_sec, HistDump, Percentiles};
use crate::stats::{Phase, Shared};

/// How long after the drain starts the run may be judged settled: by then
/// every worker thread has seen the phase and sent its last message.
const DRAIN_SEEN: Duration = Duration::from_millis(100);
use crate::tag::TAG_LEN;
use crate::traffic::{self, Latencies, Mode, Spec};

/// What a `group` run did (also the `--json` output).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GroupSummary {
    #[serde(flatten)]
    pub(crate) base: Base,
    /// Against a baseline hub (raw rooms) rather than the protocol.
    pub(crate) hub: bool,
    pub(crate) groups: u64,
    pub(crate) group_size: u64,
    pub(crate) senders_per_group: u64,
    pub(crate) window: u32,
    pub(crate) rate_per_sender: Option<f64>,
    pub(crate) payload_bytes: usize,
    /// Groups whose GROUP_OK arrived (hub: rooms, all).
    pub(crate) groups_created: u64,
    /// Messages sent to the groups, whole run.
    pub(crate) sent: u64,
    /// SEND_ACKs (hub: = sent).
    pub(crate) acked: u64,
    pub(crate) send_errors: u64,
    /// Messages received by members (membership entries not counted).
    pub(crate) delivered: u64,
    /// Of those, first arrivals.
    pub(crate) unique: u64,
    /// Received twice by a member.
    pub(crate) duplicates: u64,
    /// Arrived after a gap in their sender's stream.
    pub(crate) out_of_order: u64,
    /// Membership-change entries received (SPEC §6.5).
    pub(crate) system_entries: u64,
    /// `acked × (group_size − 1)`.
    pub(crate) expected: u64,
    /// `expected − unique` (0 when nothing was lost).
    pub(crate) lost: u64,
    pub(crate) delivered_in_window: u64,
    /// Fanout: deliveries received by members per second in the window
    /// (summed over processes).
    pub(crate) deliveries_per_sec: f64,
    /// SEND → SEND_ACK (protocol).
    pub(crate) ack_latency: Percentiles,
    /// Sent → received by a member.
    pub(crate) deliver_latency: Percentiles,
}

impl GroupSummary {
    fn table(&self) -> String {
        let mut rows = self.base.head_rows();
        rows.extend([
            ("against", if self.hub { "hub (raw rooms)" } else { "gateway protocol" }.to_owned()),
            (
                "groups x size / senders per group",
                format!("{} x {} / {}", self.groups, self.group_size, self.senders_per_group),
            ),
            (
                "window / rate per sender",
                format!(
                    "{} / {}",
                    self.window,
                    self.rate_per_sender.map_or_else(|| "max".to_owned(), |r| format!("{r}/s"))
                ),
            ),
            ("groups created", self.groups_created.to_string()),
            ("sent / acked / errors", format!("{} / {} / {}", self.sent, self.acked, self.send_errors)),
            (
                "delivered / unique / expected",
                format!("{} / {} / {}", self.delivered, self.unique, self.expected),
            ),
            (
                "lost / duplicates / out of order",
                format!("{} / {} / {}", self.lost, self.duplicates, self.out_of_order),
            ),
            ("membership entries", self.system_entries.to_string()),
            ("fanout deliveries/s in window", format!("{:.0}", self.deliveries_per_sec)),
            ("send→SEND_ACK p50/p90/p99/p999/max (ms)", self.ack_latency.row5()),
            ("send→deliver p50/p90/p99/p999/max (ms)", self.deliver_latency.row5()),
        ]);
        rows.extend(self.base.tail_rows());
        report::render(rows, &self.base.errors)
    }

    fn add(&mut self, other: &Self) {
        self.base.add(&other.base);
        self.groups += other.groups;
        self.groups_created += other.groups_created;
        self.sent += other.sent;
        self.acked += other.acked;
        self.send_errors += other.send_errors;
        self.delivered += other.delivered;
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.system_entries += other.system_entries;
        self.expected += other.expected;
        self.lost += other.lost;
        self.delivered_in_window += other.delivered_in_window;
        self.deliveries_per_sec += other.deliveries_per_sec;
    }
}

/// `flood group`.
pub(crate) fn group(args: &GroupArgs) -> Result<(), String> {
    let common = &args.common;
    let sessions = args.groups.saturating_mul(args.group_size);
    driver::validate(common, sessions)?;
    if args.groups == 0 || !(2..=protocol::limits::MAX_GROUP_MEMBERS as u64).contains(&args.group_size) {
        return Err(format!(
            "--groups must be positive and --group-size 2..={}",
            protocol::limits::MAX_GROUP_MEMBERS
        ));
    }
    if !(1..=args.group_size).contains(&args.senders) {
        return Err("--senders must be 1..=--group-size".to_owned());
    }
    if !(1..=protocol::limits::MAX_FRAMES_PER_MESSAGE as u32 / 2).contains(&args.window) {
        return Err(format!("--window must be 1..={}", protocol::limits::MAX_FRAMES_PER_MESSAGE / 2));
    }
    if !(TAG_LEN..=protocol::limits::MAX_PAYLOAD).contains(&args.payload) {
        return Err(format!("--payload must be {TAG_LEN}..={} bytes", protocol::limits::MAX_PAYLOAD));
    }
    if args.hub && args.rate.is_none() {
        return Err("--hub needs --rate (the hub sends no acks to bound a window)".to_owned());
    }
    if !(0.0..=86_400.0).contains(&args.duration) || !(0.0..=3600.0).contains(&args.drain_timeout) {
        return Err("--duration must be 0..=86400 s and --drain-timeout 0..=3600 s".to_owned());
    }
    let summary = if common.processes > 1 {
        let processes = common.processes;
        let rate = args.connect_rate / processes as f64;
        let (children, pids, own_cpu) =
            driver::run_children::<GroupSummary>(processes, sessions, &common.pids, &|i| {
                // Whole groups per child, consecutive users.
                let (groups, before) = driver::share(args.groups, processes, i);
                vec![
                    "--groups".into(),
                    groups.to_string(),
                    "--first-user".into(),
                    (args.first_user + before * args.group_size).to_string(),
                    "--connect-rate".into(),
                    rate.to_string(),
                ]
            })?;
        let (mut ack, mut deliver) = (traffic::histogram()?, traffic::histogram()?);
        let mut total: Option<GroupSummary> = None;
        for mut child in children {
            child.base.take_histogram("ack", &mut ack);
            child.base.take_histogram("deliver", &mut deliver);
            match total.as_mut() {
                None => total = Some(child),
                Some(t) => t.add(&child),
            }
        }
        let mut total = total.ok_or("no child summary")?;
        total.ack_latency = Percentiles::of(&ack);
        total.deliver_latency = Percentiles::of(&deliver);
        total.base.pids = pids;
        total.base.flood_cpu.secs += own_cpu;
        total
    } else {
        run(args, sessions)?
    };
    driver::output(common, &summary, GroupSummary::table)
}

fn run(args: &GroupArgs, sessions: u64) -> Result<GroupSummary, String> {
    let common = &args.common;
    let start = Instant::now();
    let handshake_timeout = Duration::from_millis(common.handshake_timeout_ms);
    let interval = args.rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
    let (shared, workers) = if args.hub {
        let path = args.path.clone().unwrap_or_else(|| "/hub".to_owned());
        driver::check_path(&path)?;
        let plan = RawPlan {
            threads: common.threads,
            total: sessions,
            opening: Opening::Rate(args.connect_rate),
            kind: Kind::Hub {
                group_size: args.group_size,
                senders: args.senders,
                interval: interval.unwrap_or(Duration::from_secs(1)),
                size: args.payload,
            },
            first_user: args.first_user,
            endpoints: driver::endpoints(common, path)?,
            start,
            latencies: Latencies::new()?,
        };
        crate::echo::start_raw(plan)?
    } else {
        let path = args.path.clone().unwrap_or_else(|| "/ws".to_owned());
        driver::check_path(&path)?;
        let key = args.signing_key.as_deref().ok_or("--signing-key is required without --hub")?;
        let mut spec = Spec::new(Mode::Group, args.window, interval, args.payload, start);
        spec.group_size = u32::try_from(args.group_size).unwrap_or(u32::MAX);
        spec.senders = u32::try_from(args.senders).unwrap_or(u32::MAX);
        let plan = Plan {
            threads: common.threads,
            sessions,
            rate: args.connect_rate,
            first_user: args.first_user,
            endpoints: driver::endpoints(common, path)?,
            signer: crate::scenarios::signer(key, args.key_id)?,
            start,
            traffic: Some(spec),
            latencies: Latencies::new()?,
        };
        start_engine(plan)?
    };
    let counters = &shared.traffic;
    let others = args.group_size - 1;
    let ramp_deadline = start
        + Duration::from_secs_f64(sessions as f64 / args.connect_rate * 1.5)
        + handshake_timeout
        + Duration::from_secs(5);
    let mut setup_deadline = start;
    let mut window: Option<(Window, u64)> = None;
    let mut closed = None;
    let mut drain_deadline = start;
    let mut drain_start = start;
    let mut ticker = Ticker::new(start, common.child, sessions);
    while !workers.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let mut hold = false;
        match shared.phase() {
            Phase::Ramp if shared.resolved() >= sessions || now >= ramp_deadline => {
                if args.hub {
                    hold = true;
                } else {
                    setup_deadline = now + Duration::from_secs_f64(args.setup_timeout);
                    shared.set_phase(Phase::Setup);
                }
            }
            Phase::Setup => {
                hold = counters.groups_created.load(Relaxed) >= args.groups || now >= setup_deadline;
            }
            Phase::Hold
                if window
                    .as_ref()
                    .is_some_and(|(w, _)| now >= w.start + Duration::from_secs_f64(args.duration)) =>
            {
                if let Some((w, delivered0)) = &window {
                    closed = Some((w.close(), counters.delivered.load(Relaxed).saturating_sub(*delivered0)));
                }
                drain_start = now;
                drain_deadline = now + Duration::from_secs_f64(args.drain_timeout);
                shared.set_phase(Phase::Drain);
            }
            Phase::Drain => {
                let (sent, acked, errors, _) = counters.snapshot();
                let acked = if args.hub { sent } else { acked };
                // A worker may send once more in the turn it learns of the
                // drain: judge only after every worker has had a turn.
                let settled = now >= drain_start + DRAIN_SEEN
                    && sent <= acked + errors
                    && counters.unique.load(Relaxed) >= acked * others;
                if settled || now >= drain_deadline {
                    shared.set_phase(Phase::Close);
                }
            }
            _ => {}
        }
        if hold {
            window = Some((Window::open(&common.pids), counters.delivered.load(Relaxed)));
            shared.set_phase(Phase::Hold);
        }
        if ticker.due(now) {
            ticker.print::<GroupSummary>(now, Tick::of(&shared, |l| &l.e2e));
        }
    }
    driver::join(workers)?;

    let (sent, acked, send_errors, delivered) = counters.snapshot();
    let acked = if args.hub { sent } else { acked };
    let unique = counters.unique.load(Relaxed);
    let mut base =
        Base::collect(if args.hub { "group_hub" } else { "group" }, common, sessions, &shared, start);
    let mut summary = GroupSummary {
        hub: args.hub,
        groups: args.groups,
        group_size: args.group_size,
        senders_per_group: args.senders,
        window: args.window,
        rate_per_sender: args.rate,
        payload_bytes: args.payload,
        groups_created: if args.hub { args.groups } else { counters.groups_created.load(Relaxed) },
        sent,
        acked,
        send_errors,
        delivered,
        unique,
        duplicates: counters.duplicates.load(Relaxed),
        out_of_order: counters.out_of_order.load(Relaxed),
        system_entries: counters.system_entries.load(Relaxed),
        expected: acked * others,
        lost: (acked * others).saturating_sub(unique),
        ..GroupSummary::default()
    };
    if let Some(((secs, pids, cpu), in_window)) = closed {
        base.window_secs = secs;
        base.pids = pids;
        base.flood_cpu = cpu;
        summary.delivered_in_window = in_window;
        summary.deliveries_per_sec = per_sec(in_window, secs);
    }
    if let Some(latencies) = counters.latencies() {
        summary.ack_latency = Percentiles::of(&latencies.ack);
        summary.deliver_latency = Percentiles::of(&latencies.e2e);
        if common.child {
            base.histograms.insert("ack".to_owned(), HistDump::of(&latencies.ack));
            base.histograms.insert("deliver".to_owned(), HistDump::of(&latencies.e2e));
        }
    }
    summary.base = base;
    Ok(summary)
}

/// Starts the protocol workers of `plan`.
pub(crate) fn start_engine(plan: Plan) -> Result<driver::Running, String> {
    let shared = Arc::new(Shared::new());
    let workers = crate::engine::spawn(&Arc::new(plan), &shared)?;
    Ok((shared, workers))
}
