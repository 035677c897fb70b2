//! `flood`: the gateway's connection-flood load tool.
//!
//! `flood connect` opens many sessions at a set rate, each a non-blocking
//! socket bound to one of a range of source addresses, driven by mio (many
//! connections per thread, one `Poll` per thread) through the WebSocket
//! upgrade, HELLO with a token minted here with the gateway's signing key,
//! and AUTH_OK; holds them idle with heartbeats; then closes them and
//! prints what happened (a table, or JSON with `--json`). It always stops
//! by itself: every stage of a connection has a deadline, the ramp has one,
//! and the hold is fixed.
//!
//! `flood chat` runs pairs of sessions that message each other through the
//! gateway (and `--ping`, the same loop with PING/PONG: its baseline);
//! `flood fill` fills an inbox in a stopped node's store and `flood sync`
//! drains it. See `traffic` for what they measure.
//!
//! `flood echo` keeps a window of messages in flight on raw WebSocket
//! connections to an echo route (the gateway's `/echo`, the baseline's) and
//! checks every echo; `flood handshake` opens and closes connections as fast
//! as a concurrency bound allows (upgrade only, or the full HELLO/AUTH_OK
//! with `--protocol`); `flood group` measures group fanout (or, with
//! `--hub`, a baseline hub's rooms); `flood storm` drops a share of the
//! sessions abruptly mid-traffic, reconnects them with `resume_after` and
//! proves no message was lost or surfaced twice.
//!
//! Modules: `cli` and `args` (arguments), `source` (`--source` ranges),
//! `ws` (client side of RFC 6455), `transport` (socket, TLS, buffers),
//! `conn` (one protocol connection), `worker` (what the two poll loops
//! share), `engine` (one thread's poll loop for them), `raw` and
//! `rawloop` (raw WebSocket connections and their loop), `stats`
//! (counters, summary, `/proc`), `multi` (`--processes` for connect),
//! `driver` (progress lines, summaries and children of the newer
//! scenarios), `traffic` (message traffic, counters, latencies), `tag`
//! (tagged payloads: order, loss, duplicates), `report` (percentiles,
//! `--pid`, tables), `scenarios` (chat, fill, sync), `echo` (echo,
//! handshake), `group`, `storm`.

mod args;
mod cli;
mod conn;
mod driver;
mod echo;
mod engine;
mod group;
mod mix;
mod multi;
mod raw;
mod rawloop;
mod report;
mod scenarios;
mod source;
mod stats;
mod storm;
mod tag;
mod traffic;
mod transport;
mod worker;
mod ws;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::cli::{Cli, Command, ConnectArgs};
use crate::engine::Plan;
use crate::stats::{Phase, Progress, Shared, Summary};
use crate::worker::Endpoints;

/// Open files a process needs besides its connections (stdio, poll, eventfd,
/// files read at start).
pub(crate) const SPARE_FILES: u64 = 32;

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let result = match command {
        Command::Connect(args) => connect(&args),
        Command::Chat(args) => scenarios::chat(&args),
        Command::Fill(args) => scenarios::fill(&args),
        Command::Sync(args) => scenarios::sync(&args),
        Command::Echo(args) => echo::echo(&args),
        Command::Handshake(args) => echo::handshake(&args),
        Command::Group(args) => group::group(&args),
        Command::Storm(args) => storm::storm(&args),
        Command::Mix(args) => mix::mix(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("flood: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A line a child of `--processes` writes on its stdout.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChildLine {
    /// Once a second.
    Progress(Progress),
    /// Last.
    Summary(Box<Summary>),
}

fn connect(args: &ConnectArgs) -> Result<(), String> {
    validate(args)?;
    let summary = if args.processes > 1 { multi::run(args)? } else { run_connect(args)? };
    if args.child {
        print_line(&ChildLine::Summary(Box::new(summary)));
    } else if args.json {
        let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        println!("{json}");
    } else {
        print!("{}", summary.table());
    }
    Ok(())
}

fn validate(args: &ConnectArgs) -> Result<(), String> {
    if args.sessions == 0 {
        return Err("--sessions must be at least 1".to_owned());
    }
    if !(0.0..=86_400.0).contains(&args.hold) {
        return Err("--hold must be between 0 and 86400 seconds".to_owned());
    }
    if !(1..=256).contains(&args.threads) {
        return Err("--threads must be between 1 and 256".to_owned());
    }
    if !(1..=256).contains(&args.processes) || args.processes > args.sessions {
        return Err("--processes must be between 1 and 256, and at most --sessions".to_owned());
    }
    if args.handshake_timeout_ms == 0 {
        return Err("--handshake-timeout-ms must be positive".to_owned());
    }
    if let Some(source) = &args.source {
        source::parse_sources(source).map_err(|e| format!("--source {e}"))?;
    }
    if !args.path.starts_with('/')
        || args.path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!("--path {:?}: expected an absolute path without spaces", args.path));
    }
    let per_process = args.sessions.div_ceil(args.processes);
    if let Some(limit) = stats::open_files_limit() {
        if per_process + SPARE_FILES > limit {
            let fit = limit.saturating_sub(SPARE_FILES).max(1);
            return Err(format!(
                "{per_process} sessions per process need {} open files, over this process's limit of {limit}: \
                 use --processes {} (or fewer --sessions)",
                per_process + SPARE_FILES,
                args.sessions.div_ceil(fit)
            ));
        }
    }
    Ok(())
}

/// Runs the sessions of this process and returns its summary.
fn run_connect(args: &ConnectArgs) -> Result<Summary, String> {
    let signer = scenarios::signer(&args.signing_key, args.key_id)?;
    let tls = if args.tls { Some(tls_settings(args)?) } else { None };
    let sources = match &args.source {
        Some(source) => source::parse_sources(source)?,
        None => Vec::new(),
    };
    let handshake_timeout = Duration::from_millis(args.handshake_timeout_ms);
    let start = Instant::now();
    let plan = Arc::new(Plan {
        threads: args.threads,
        sessions: args.sessions,
        rate: args.rate,
        first_user: args.first_user,
        endpoints: Endpoints {
            targets: args.targets.clone(),
            sources,
            tls,
            path: args.path.clone(),
            handshake_timeout,
        },
        signer,
        start,
        traffic: None,
        latencies: traffic::Latencies::new()?,
    });
    let shared = Arc::new(Shared::new());
    let workers = engine::spawn(&plan, &shared)?;

    // The ramp ends when every session is authenticated or failed, or at
    // this deadline (every connection has its own deadline well before it).
    let ramp_deadline = start
        + Duration::from_secs_f64(args.sessions as f64 / args.rate * 1.5)
        + handshake_timeout
        + Duration::from_secs(5);
    let mut ramp = None;
    let mut hold_start = start;
    let mut hold_end = None;
    let mut live_at_hold_end = 0;
    let mut rss_at_hold_end = 0;
    let mut next_tick = start + Duration::from_secs(1);
    let mut last_pongs = 0;
    while !workers.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        match shared.phase() {
            Phase::Ramp if shared.resolved() >= args.sessions || now >= ramp_deadline => {
                ramp = Some((now - start, shared.resolved() >= args.sessions));
                hold_start = now;
                shared.set_phase(Phase::Hold);
            }
            Phase::Hold if now >= hold_start + Duration::from_secs_f64(args.hold) => {
                hold_end = Some(now);
                live_at_hold_end = shared.live.load(std::sync::atomic::Ordering::Relaxed);
                rss_at_hold_end = stats::self_rss_bytes().0;
                shared.set_phase(Phase::Close);
            }
            _ => {}
        }
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            let progress = shared.progress();
            if args.child {
                print_line(&ChildLine::Progress(progress));
            } else {
                let pongs_per_sec = progress.pongs.saturating_sub(last_pongs) as f64;
                last_pongs = progress.pongs;
                let phase = phase_name(shared.phase());
                eprintln!(
                    "{}",
                    progress.line((now - start).as_secs_f64(), phase, args.sessions, pongs_per_sec)
                );
            }
        }
    }
    driver::join(workers)?;

    let end = Instant::now();
    let (ramp_time, ramp_complete) = ramp.unwrap_or((end - start, false));
    let hold_time = hold_end.map_or(Duration::ZERO, |t| t - hold_start);
    let (rss_now, peak) = stats::self_rss_bytes();
    let progress = shared.progress();
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    let authenticated = progress.authenticated;
    Ok(Summary {
        scenario: "connect".to_owned(),
        processes: 1,
        threads: args.threads,
        sessions: args.sessions,
        targets: args.targets.iter().map(ToString::to_string).collect(),
        tls: args.tls,
        rate: args.rate,
        attempted: progress.attempted,
        connected: progress.connected,
        upgraded: load(&shared.upgraded),
        authenticated,
        failed: progress.failed,
        dropped: progress.dropped,
        live_at_hold_end,
        closed_clean: load(&shared.closed_clean),
        closed_unclean: load(&shared.closed_unclean),
        errors: progress.errors,
        error_details: shared.details(),
        ramp_secs: ramp_time.as_secs_f64(),
        ramp_complete,
        hold_secs: hold_time.as_secs_f64(),
        wall_secs: (end - start).as_secs_f64(),
        pings_sent: load(&shared.pings_sent),
        pongs: progress.pongs,
        server_pings: load(&shared.server_pings),
        goaways: load(&shared.goaways),
        auth_latency_mean_ms: if authenticated == 0 {
            0.0
        } else {
            load(&shared.auth_latency_sum_us) as f64 / authenticated as f64 / 1000.0
        },
        auth_latency_max_ms: load(&shared.auth_latency_max_us) as f64 / 1000.0,
        cpu_secs: stats::self_cpu_secs(),
        rss_bytes: if rss_at_hold_end > 0 { rss_at_hold_end } else { rss_now },
        peak_rss_bytes: peak.max(rss_at_hold_end),
    })
}

/// The client TLS settings trusting `--ca`, and the name to verify.
fn tls_settings(
    args: &ConnectArgs,
) -> Result<(Arc<rustls::ClientConfig>, Option<ServerName<'static>>), String> {
    tls_from(args.ca.as_deref(), args.server_name.as_deref())
}

/// The client TLS settings trusting the certificates in `ca`, and the name
/// to verify (`None`: the target's IP address).
pub(crate) fn tls_from(
    ca: Option<&std::path::Path>,
    server_name: Option<&str>,
) -> Result<(Arc<rustls::ClientConfig>, Option<ServerName<'static>>), String> {
    let Some(ca) = ca else { return Err("--tls needs --ca".to_owned()) };
    let pem = std::fs::read(ca).map_err(|e| format!("--ca {}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        roots.add(cert).map_err(|e| format!("--ca {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca {}: no certificate in the file", ca.display()));
    }
    let config = client::tls_config(roots).map_err(|e| format!("TLS settings: {e}"))?;
    let name = match server_name {
        Some(name) => {
            Some(ServerName::try_from(name.to_owned()).map_err(|e| format!("--server-name {name:?}: {e}"))?)
        }
        None => None,
    };
    Ok((config, name))
}

pub(crate) fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Ramp => "ramp",
        Phase::Hold => "hold",
        Phase::Drain => "drain",
        Phase::Close => "close",
        Phase::Setup => "setup",
        Phase::Sync => "sync",
    }
}

/// Writes one JSON line on stdout (a child's progress or summary).
fn print_line(line: &ChildLine) {
    if let Ok(json) = serde_json::to_string(line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{json}");
        let _ = out.flush();
    }
}
