//! The model against the measured fleet runs shipped in `runs/`: every run
//! that can validate it (it carried its load, its box kept CPU headroom)
//! is predicted within the error FLEET.md states, from the figures and the
//! run's load alone. A figure that drifts, or a cost the model misses,
//! fails here; the answer is to measure it, not to widen the error.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use capacity::check::{self, Run, STATED_ERROR};
use capacity::figures::Figures;

fn figures() -> Figures {
    Figures::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("figures.toml")).unwrap()
}

fn runs() -> Vec<(String, Run)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runs");
    let mut runs: Vec<(String, Run)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), Run::load(&path).unwrap()))
        .collect();
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    runs
}

#[test]
fn every_valid_run_is_predicted_within_the_stated_error() {
    let figures = figures();
    let runs = runs();
    let mut valid = Vec::new();
    for (name, run) in &runs {
        let verdict = check::check(&figures, run, STATED_ERROR);
        if verdict.valid() {
            assert!(verdict.pass, "{name}:\n{}", check::render(run, &verdict));
            valid.push(name.as_str());
        }
    }
    // The check is only worth something if runs at more than one fleet
    // size validate it.
    assert!(valid.len() >= 2, "valid runs: {valid:?} of {}", runs.len());
}

#[test]
fn every_shipped_run_carries_what_the_check_needs_to_judge_it() {
    for (name, run) in runs() {
        assert!(run.offered_msgs_per_sec.is_some(), "{name}: no offered load");
        assert!(run.box_cpu_cores_used.is_some() && run.box_cores.is_some(), "{name}: no box CPU");
        assert!(run.cached_users.is_some(), "{name}: no placement cache count");
        assert!(run.link_frames_per_sec.is_some(), "{name}: no link frame count");
    }
}
