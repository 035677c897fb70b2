//! `--processes P`: flood runs P copies of itself, each with a disjoint
//! share of the sessions (consecutive user ranges) and of the rate, so that
//! each stays under its open-file limit; it prints their summed progress once
//! a second and sums their summaries.
//!
//! A child is `flood connect ... --child`: it writes one JSON line a second
//! (`{"progress": ...}`) and a last one (`{"summary": ...}`) on its stdout;
//! its stderr is flood's. Each child holds for `--hold` seconds after its
//! own ramp; the children ramp in parallel, so their holds overlap.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cli::ConnectArgs;
use crate::driver;
use crate::stats::{Progress, Summary};
use crate::ChildLine;

/// Runs the children and returns their summed summary.
pub(crate) fn run(args: &ConnectArgs) -> Result<Summary, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating flood's own binary: {e}"))?;
    let processes = args.processes;
    let rate = args.rate / processes as f64;
    let mut offset = 0;
    let command_lines = (0..processes).map(|index| {
        let sessions = args.sessions / processes + u64::from(index < args.sessions % processes);
        let child_args = args.child_args(sessions, args.first_user + offset, rate);
        offset += sessions;
        child_args
    });
    let (mut children, readers, rx) = driver::spawn_children::<ChildLine>(&exe, command_lines)?;

    let start = Instant::now();
    let count = children.len();
    let mut progress: Vec<Progress> = vec![Progress::default(); count];
    let mut summaries: Vec<Option<Summary>> = vec![None; count];
    let mut next_tick = start + Duration::from_secs(1);
    let mut last_pongs = 0;
    loop {
        match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok((slot, ChildLine::Progress(p))) => {
                if let Some(entry) = progress.get_mut(slot) {
                    *entry = p;
                }
            }
            Ok((slot, ChildLine::Summary(s))) => {
                if let Some(entry) = summaries.get_mut(slot) {
                    *entry = Some(*s);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            let mut total = Progress::default();
            for p in &progress {
                total.add(p);
            }
            let pongs_per_sec = total.pongs.saturating_sub(last_pongs) as f64;
            last_pongs = total.pongs;
            let phase = format!("x{count}");
            eprintln!("{}", total.line((now - start).as_secs_f64(), &phase, args.sessions, pongs_per_sec));
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    driver::wait_children(&mut children)?;
    let mut summaries = summaries.into_iter();
    let Some(Some(mut total)) = summaries.next() else {
        return Err("child 0 printed no summary".to_owned());
    };
    for (index, summary) in summaries.enumerate() {
        let summary = summary.ok_or_else(|| format!("child {} printed no summary", index + 1))?;
        total.add(&summary);
    }
    total.rate = args.rate;
    Ok(total)
}
