//! What the drivers of `echo`, `handshake`, `group` and `storm` share: the
//! once-a-second progress line ([`Tick`], [`Ticker`]), the part of every
//! summary that counts connections, errors and CPU ([`Base`]), the measured
//! window ([`Window`]), worker threads, and `--processes` children (the same
//! command line with a share of the work and `--child`; they write JSON
//! lines, [`Line`], which the parent sums).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::args::Common;
use crate::report::{self, Cpu, HistDump, PidStat, PidWatch};
use crate::stats::{self, Shared};
use crate::traffic::Latencies;
use crate::worker::Endpoints;

/// A process's counters and its worker threads, as a driver starts them.
pub(crate) type Running = (Arc<Shared>, Vec<JoinHandle<std::io::Result<()>>>);

/// How often the drivers look at the counters.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// A line a `--processes` child writes on its stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Line<S> {
    /// Once a second.
    Progress(Tick),
    /// Last.
    Summary(Box<S>),
}

/// Writes one JSON line on stdout.
pub(crate) fn print_line<S: Serialize>(line: &Line<S>) {
    if let Ok(json) = serde_json::to_string(line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{json}");
        let _ = out.flush();
    }
}

/// A snapshot of one process's counters for the progress line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tick {
    pub(crate) phase: String,
    pub(crate) live: u64,
    pub(crate) failed: u64,
    pub(crate) dropped: u64,
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) delivered: u64,
    pub(crate) handshakes: u64,
    pub(crate) resynced: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    /// Latency so far (the scenario's main histogram), µs; summed processes
    /// show the largest.
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
}

impl Tick {
    /// `pick` chooses the scenario's main histogram.
    pub(crate) fn of(shared: &Shared, pick: fn(&Latencies) -> &Histogram<u64>) -> Self {
        let progress = shared.progress();
        let c = &shared.traffic;
        let (p50_us, p99_us) = c
            .with_latencies(|l| {
                let h = pick(l);
                if h.is_empty() {
                    (0, 0)
                } else {
                    (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
                }
            })
            .unwrap_or((0, 0));
        Self {
            phase: crate::phase_name(shared.phase()).to_owned(),
            live: progress.live,
            failed: progress.failed,
            dropped: progress.dropped,
            sent: c.sent.load(Relaxed),
            acked: c.acked.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            handshakes: shared.closed_clean.load(Relaxed) + shared.closed_unclean.load(Relaxed),
            resynced: c.resynced.load(Relaxed),
            errors: progress.errors,
            p50_us,
            p99_us,
        }
    }

    pub(crate) fn add(&mut self, other: &Self) {
        self.live += other.live;
        self.failed += other.failed;
        self.dropped += other.dropped;
        self.sent += other.sent;
        self.acked += other.acked;
        self.delivered += other.delivered;
        self.handshakes += other.handshakes;
        self.resynced += other.resynced;
        report::merge_errors(&mut self.errors, &other.errors);
        self.p50_us = self.p50_us.max(other.p50_us);
        self.p99_us = self.p99_us.max(other.p99_us);
    }
}

/// Prints the progress line once a second (a child: its JSON line).
#[derive(Debug)]
pub(crate) struct Ticker {
    start: Instant,
    next: Instant,
    last: Tick,
    child: bool,
    /// Connections asked for, shown beside the live ones.
    total: u64,
}

impl Ticker {
    pub(crate) fn new(start: Instant, child: bool, total: u64) -> Self {
        Self { start, next: start + Duration::from_secs(1), last: Tick::default(), child, total }
    }

    /// Whether a second passed since the last line.
    pub(crate) fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Prints `tick` (call when [`Ticker::due`]).
    pub(crate) fn print<S: Serialize>(&mut self, now: Instant, tick: Tick) {
        self.next += Duration::from_secs(1);
        if self.next < now {
            self.next = now + Duration::from_secs(1);
        }
        if self.child {
            print_line::<S>(&Line::Progress(tick));
            return;
        }
        let rate = |now: u64, before: u64| now.saturating_sub(before);
        let ms = |us: u64| us as f64 / 1000.0;
        eprintln!(
            "[{:5.0}s] {:<5} live {}/{}  failed {}  dropped {}  handshakes/s {}  sent/s {}  acked/s {}  delivered/s {}  resynced {}  p50 {:.2}ms p99 {:.2}ms{}",
            (now - self.start).as_secs_f64(),
            tick.phase,
            tick.live,
            self.total,
            tick.failed,
            tick.dropped,
            rate(tick.handshakes, self.last.handshakes),
            rate(tick.sent, self.last.sent),
            rate(tick.acked, self.last.acked),
            rate(tick.delivered, self.last.delivered),
            tick.resynced,
            ms(tick.p50_us),
            ms(tick.p99_us),
            report::errors_suffix(&tick.errors),
        );
        self.last = tick;
    }
}

/// What every newer scenario's summary starts with (flattened into it).
/// Counts add up over `--processes`; times are the slowest child's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Base {
    pub(crate) scenario: String,
    pub(crate) targets: Vec<String>,
    pub(crate) processes: u64,
    pub(crate) threads: u64,
    /// Connections (sessions) asked for.
    pub(crate) connections: u64,
    pub(crate) tls: bool,
    pub(crate) attempted: u64,
    pub(crate) connected: u64,
    pub(crate) upgraded: u64,
    /// Upgrades (echo, hub) or AUTH_OKs (protocol) completed.
    pub(crate) authenticated: u64,
    pub(crate) failed: u64,
    pub(crate) dropped: u64,
    pub(crate) closed_clean: u64,
    pub(crate) closed_unclean: u64,
    /// Errors by kind (`connect_refused`, `http_404`, `echo_corrupt`, ...).
    pub(crate) errors: BTreeMap<String, u64>,
    #[serde(default)]
    pub(crate) error_details: BTreeMap<String, String>,
    /// The measured window, seconds.
    pub(crate) window_secs: f64,
    pub(crate) wall_secs: f64,
    /// `--pid` processes over the window (measured by the parent).
    pub(crate) pids: Vec<PidStat>,
    /// flood's own CPU over the window, all its processes.
    pub(crate) flood_cpu: Cpu,
    /// flood's peak RSS, summed over its processes, bytes.
    pub(crate) flood_peak_rss_bytes: u64,
    /// A child's histograms for its parent (not printed otherwise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) histograms: BTreeMap<String, HistDump>,
}

impl Base {
    /// The counters of this process at the end of a run.
    pub(crate) fn collect(
        scenario: &str,
        common: &Common,
        connections: u64,
        shared: &Shared,
        start: Instant,
    ) -> Self {
        let progress = shared.progress();
        Self {
            scenario: scenario.to_owned(),
            targets: common.targets.iter().map(ToString::to_string).collect(),
            processes: 1,
            threads: common.threads,
            connections,
            tls: common.tls,
            attempted: progress.attempted,
            connected: progress.connected,
            upgraded: shared.upgraded.load(Relaxed),
            authenticated: progress.authenticated,
            failed: progress.failed,
            dropped: progress.dropped,
            closed_clean: shared.closed_clean.load(Relaxed),
            closed_unclean: shared.closed_unclean.load(Relaxed),
            errors: progress.errors,
            error_details: shared.details(),
            window_secs: 0.0,
            wall_secs: start.elapsed().as_secs_f64(),
            pids: Vec::new(),
            flood_cpu: Cpu::default(),
            flood_peak_rss_bytes: stats::self_rss_bytes().1,
            histograms: BTreeMap::new(),
        }
    }

    /// Adds a child's.
    pub(crate) fn add(&mut self, other: &Self) {
        self.processes += other.processes;
        self.connections += other.connections;
        self.attempted += other.attempted;
        self.connected += other.connected;
        self.upgraded += other.upgraded;
        self.authenticated += other.authenticated;
        self.failed += other.failed;
        self.dropped += other.dropped;
        self.closed_clean += other.closed_clean;
        self.closed_unclean += other.closed_unclean;
        report::merge_errors(&mut self.errors, &other.errors);
        for (kind, text) in &other.error_details {
            self.error_details.entry(kind.clone()).or_insert_with(|| text.clone());
        }
        self.window_secs = self.window_secs.max(other.window_secs);
        self.wall_secs = self.wall_secs.max(other.wall_secs);
        self.flood_cpu.secs += other.flood_cpu.secs;
        self.flood_cpu.cores += other.flood_cpu.cores;
        self.flood_peak_rss_bytes += other.flood_peak_rss_bytes;
    }

    /// A child's histogram, merged into `into` (parent side).
    pub(crate) fn take_histogram(&mut self, name: &str, into: &mut Histogram<u64>) {
        if let Some(dump) = self.histograms.remove(name) {
            dump.add_to(into);
        }
    }

    /// The first rows of the table.
    pub(crate) fn head_rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("scenario", self.scenario.clone()),
            ("targets", self.targets.join(" ")),
            ("transport", if self.tls { "wss (TLS)" } else { "ws" }.to_owned()),
            ("processes x threads", format!("{} x {}", self.processes, self.threads)),
            (
                "connections asked / connected / open",
                format!("{} / {} / {}", self.connections, self.connected, self.authenticated),
            ),
            ("failed / dropped", format!("{} / {}", self.failed, self.dropped)),
            ("closed clean / unclean", format!("{} / {}", self.closed_clean, self.closed_unclean)),
            ("window (s) / wall (s)", format!("{:.2} / {:.2}", self.window_secs, self.wall_secs)),
        ]
    }

    /// The last rows: target processes and flood's own cost.
    pub(crate) fn tail_rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = report::cpu_rows(&self.pids, &self.flood_cpu);
        rows.push((
            "flood peak RSS (MiB, all processes)",
            format!("{:.1}", self.flood_peak_rss_bytes as f64 / 1048576.0),
        ));
        for (kind, text) in &self.error_details {
            rows.push(("error detail", format!("{kind}: {text}")));
        }
        rows
    }
}

/// The measured window: opened when the hold starts, closed when it ends.
#[derive(Debug)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pids: PidWatch,
    cpu: f64,
}

impl Window {
    pub(crate) fn open(pids: &[u32]) -> Self {
        Self { start: Instant::now(), pids: PidWatch::start(pids), cpu: stats::self_cpu_secs() }
    }

    /// Ends it: its length, the `--pid` readings and flood's own CPU.
    pub(crate) fn close(&self) -> (f64, Vec<PidStat>, Cpu) {
        let secs = self.start.elapsed().as_secs_f64();
        let cpu = (stats::self_cpu_secs() - self.cpu).max(0.0);
        (secs, self.pids.finish(secs), Cpu { secs: cpu, cores: if secs > 0.0 { cpu / secs } else { 0.0 } })
    }
}

/// Checks the shared flags; `per_process` connections must fit the
/// open-file limit.
pub(crate) fn validate(common: &Common, connections: u64) -> Result<(), String> {
    if !(1..=256).contains(&common.threads) {
        return Err("--threads must be between 1 and 256".to_owned());
    }
    if !(1..=256).contains(&common.processes) || common.processes > connections.max(1) {
        return Err("--processes must be between 1 and 256, and at most the connections".to_owned());
    }
    if common.handshake_timeout_ms == 0 {
        return Err("--handshake-timeout-ms must be positive".to_owned());
    }
    if let Some(source) = &common.source {
        crate::source::parse_sources(source).map_err(|e| format!("--source {e}"))?;
    }
    let per_process = connections.div_ceil(common.processes);
    if let Some(limit) = stats::open_files_limit() {
        if per_process + crate::SPARE_FILES > limit {
            let fit = limit.saturating_sub(crate::SPARE_FILES).max(1);
            return Err(format!(
                "{per_process} connections per process need more open files than this process's limit of {limit}: \
                 use --processes {}",
                connections.div_ceil(fit)
            ));
        }
    }
    Ok(())
}

/// Validates a WebSocket path.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(format!("--path {path:?}: expected an absolute path without spaces"));
    }
    Ok(())
}

/// Where the connections connect: `--target`, `--source`, `--tls` and the
/// WebSocket `path`.
pub(crate) fn endpoints(common: &Common, path: String) -> Result<Endpoints, String> {
    let sources = match &common.source {
        Some(source) => crate::source::parse_sources(source).map_err(|e| format!("--source {e}"))?,
        None => Vec::new(),
    };
    let tls = if common.tls {
        Some(crate::tls_from(common.ca.as_deref(), common.server_name.as_deref())?)
    } else {
        None
    };
    Ok(Endpoints {
        targets: common.targets.clone(),
        sources,
        tls,
        path,
        handshake_timeout: Duration::from_millis(common.handshake_timeout_ms),
    })
}

/// Starts `threads` workers running `work(thread)`.
pub(crate) fn spawn<F>(threads: u64, work: F) -> Result<Vec<JoinHandle<std::io::Result<()>>>, String>
where
    F: Fn(u64) -> std::io::Result<()> + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let mut workers = Vec::new();
    for thread in 0..threads {
        let work = Arc::clone(&work);
        let worker = std::thread::Builder::new()
            .name(format!("flood-{thread}"))
            .spawn(move || work(thread))
            .map_err(|e| format!("starting a worker thread: {e}"))?;
        workers.push(worker);
    }
    Ok(workers)
}

/// Waits for the workers.
pub(crate) fn join(workers: Vec<JoinHandle<std::io::Result<()>>>) -> Result<(), String> {
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("worker thread: {e}")),
            Err(_) => return Err("a worker thread panicked".to_owned()),
        }
    }
    Ok(())
}

/// Runs `processes` children: flood's own command line, then
/// `overrides(index)` (later flags override earlier ones), `--processes 1
/// --child`. Prints their summed progress once a second and returns their
/// summaries, with the parent's `--pid` readings over the children's run.
pub(crate) fn run_children<S: DeserializeOwned + Send + 'static>(
    processes: u64,
    total: u64,
    pids: &[u32],
    overrides: &dyn Fn(u64) -> Vec<String>,
) -> Result<(Vec<S>, Vec<PidStat>, f64), String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating flood's own binary: {e}"))?;
    let base: Vec<String> = std::env::args().skip(1).collect();
    let watch = Window::open(pids);
    let args = (0..processes).map(|index| {
        let mut args = base.clone();
        args.extend(overrides(index));
        args.extend(["--processes".to_owned(), "1".to_owned(), "--child".to_owned()]);
        args
    });
    let (mut children, readers, rx) = spawn_children::<Line<S>>(&exe, args)?;
    let count = children.len();
    let mut ticks = vec![Tick::default(); count];
    let mut summaries: Vec<Option<S>> = (0..count).map(|_| None).collect();
    let mut ticker = Ticker::new(Instant::now(), false, total);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((slot, Line::Progress(tick))) => {
                if let Some(entry) = ticks.get_mut(slot) {
                    *entry = tick;
                }
            }
            Ok((slot, Line::Summary(summary))) => {
                if let Some(entry) = summaries.get_mut(slot) {
                    *entry = Some(*summary);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if ticker.due(now) {
            let mut total = Tick { phase: format!("x{count}"), ..Tick::default() };
            for tick in &ticks {
                total.add(tick);
            }
            ticker.print::<()>(now, total);
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let (_, pid_stats, _) = watch.close();
    let own_cpu = stats::self_cpu_secs();
    wait_children(&mut children)?;
    let summaries = summaries
        .into_iter()
        .enumerate()
        .map(|(index, s)| s.ok_or_else(|| format!("child {index} printed no summary")))
        .collect::<Result<Vec<S>, String>>()?;
    Ok((summaries, pid_stats, own_cpu))
}

/// Starts a child of flood's own binary `exe` for each command line, and a
/// thread for each that sends the JSON lines `L` it writes, with its index.
/// A line that does not parse goes to stderr.
#[allow(clippy::type_complexity)]
pub(crate) fn spawn_children<L: DeserializeOwned + Send + 'static>(
    exe: &std::path::Path,
    args: impl Iterator<Item = Vec<String>>,
) -> Result<(Vec<Child>, Vec<JoinHandle<()>>, mpsc::Receiver<(usize, L)>), String> {
    let (tx, rx) = mpsc::channel::<(usize, L)>();
    let mut children: Vec<Child> = Vec::new();
    let mut readers = Vec::new();
    for (index, args) in args.enumerate() {
        let mut child = match Command::new(exe).args(&args).stdout(Stdio::piped()).spawn() {
            Ok(child) => child,
            Err(e) => {
                stop(&mut children);
                return Err(format!("starting child {index}: {e}"));
            }
        };
        let Some(stdout) = child.stdout.take() else {
            stop(&mut children);
            return Err(format!("child {index}: no stdout"));
        };
        children.push(child);
        let tx = tx.clone();
        let slot = children.len() - 1;
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<L>(&line) {
                    Ok(parsed) => {
                        if tx.send((slot, parsed)).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("flood: child {slot}: {line}"),
                }
            }
        }));
    }
    drop(tx);
    Ok((children, readers, rx))
}

/// Waits for the children; an error names each that failed.
pub(crate) fn wait_children(children: &mut [Child]) -> Result<(), String> {
    let mut failures = Vec::new();
    for (index, child) in children.iter_mut().enumerate() {
        match child.wait() {
            Ok(status) if status.success() => {}
            Ok(status) => failures.push(format!("child {index} exited with {status}")),
            Err(e) => failures.push(format!("child {index}: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Ends the children started so far (after a failure to start another).
fn stop(children: &mut [Child]) {
    for child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Prints a summary: the child's JSON line, `--json`, or the table.
pub(crate) fn output<S: Serialize>(
    common: &Common,
    summary: &S,
    table: impl FnOnce(&S) -> String,
) -> Result<(), String> {
    if common.child {
        print_line(&Line::Summary(Box::new(summary)));
    } else if common.json {
        println!("{}", serde_json::to_string_pretty(summary).map_err(|e| e.to_string())?);
    } else {
        print!("{}", table(summary));
    }
    Ok(())
}

/// Checks the flags of the paired, tagged scenarios (`storm`, `mix`):
/// sessions in pairs from an even first user, a send window that fits a
/// message's frames, a payload that holds a tag, and times within a day.
pub(crate) fn check_pairs(
    sessions: u64,
    first_user: u64,
    window: u32,
    payload: usize,
    times: &[(&str, f64)],
) -> Result<(), String> {
    use protocol::limits::{MAX_FRAMES_PER_MESSAGE, MAX_PAYLOAD};
    if sessions == 0 || sessions % 2 != 0 {
        return Err("--sessions must be a positive even number (sessions talk in pairs)".to_owned());
    }
    if first_user == 0 || first_user % 2 != 0 {
        return Err("--first-user must be even and positive".to_owned());
    }
    if !(1..=MAX_FRAMES_PER_MESSAGE as u32 / 4).contains(&window) {
        return Err(format!("--window must be 1..={}", MAX_FRAMES_PER_MESSAGE / 4));
    }
    if !(crate::tag::TAG_LEN..=MAX_PAYLOAD).contains(&payload) {
        return Err(format!("--payload must be {}..={MAX_PAYLOAD} bytes", crate::tag::TAG_LEN));
    }
    match times.iter().find(|(_, secs)| !(0.0..=86_400.0).contains(secs)) {
        Some((name, _)) => Err(format!("{name} must be 0..=86400 s")),
        None => Ok(()),
    }
}

/// The share of `total` for child `index` of `processes` (the first ones
/// take the remainder), and the number before it.
pub(crate) fn share(total: u64, processes: u64, index: u64) -> (u64, u64) {
    let base = total / processes.max(1);
    let extra = total % processes.max(1);
    let count = base + u64::from(index < extra);
    let before = index * base + index.min(extra);
    (count, before)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn shares_cover_the_total() {
        let parts: Vec<_> = (0..3).map(|i| share(10, 3, i)).collect();
        assert_eq!(parts, vec![(4, 0), (3, 4), (3, 7)]);
        assert_eq!(share(5, 1, 0), (5, 0));
    }

    #[test]
    fn ticks_add() {
        let mut a = Tick { sent: 3, p99_us: 10, ..Tick::default() };
        a.errors.insert("x".into(), 1);
        let mut b = Tick { sent: 4, p99_us: 20, ..Tick::default() };
        b.errors.insert("x".into(), 2);
        a.add(&b);
        assert_eq!((a.sent, a.p99_us, a.errors["x"]), (7, 20, 3));
        let line: Line<Base> =
            serde_json::from_str(&serde_json::to_string(&Line::<Base>::Progress(a.clone())).unwrap())
                .unwrap();
        assert!(matches!(line, Line::Progress(t) if t == a));
    }
}
