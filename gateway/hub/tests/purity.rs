//! The hub and `routing` stay sans-IO: no socket, no clock, no thread, no
//! channel, no file, and nothing of the driver. A dependency or an import
//! that would bring one fails here, with the file and line.
//!
//! (The hub's own unit tests, under `src/tests/`, may read the clock once to
//! start their virtual one; they are not scanned.)

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// Crates that do IO, keep time, or run threads, and the gateway binary (the
/// driver): none may be a dependency.
const FORBIDDEN_CRATES: &[&str] = &[
    "mio",
    "socket2",
    "tokio",
    "crossbeam-channel",
    "signal-hook",
    "hyper",
    "tonic",
    "libc",
    "rustix",
    "io-uring",
    "gateway",
    "backend-rpc",
];

/// What sans-IO code must not name.
const FORBIDDEN_CODE: &[&str] = &[
    "mio::",
    "std::net",
    "std::fs",
    "std::thread",
    "std::io::",
    "std::process",
    "Instant::now",
    "SystemTime",
    "UNIX_EPOCH",
    "crossbeam",
    "tokio",
    "Waker",
];

fn crate_dir(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The names in `[dependencies]` of a manifest.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut in_dependencies = false;
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
        } else if in_dependencies && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap().trim();
            names.push(name.to_owned());
        }
    }
    names
}

fn sources(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        if path.is_dir() {
            sources(&path, skip, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn check(relative: &str) -> Vec<String> {
    let dir = crate_dir(relative);
    let mut problems = Vec::new();
    let manifest = dir.join("Cargo.toml");
    for name in dependencies(&manifest) {
        if FORBIDDEN_CRATES.contains(&name.as_str()) {
            problems.push(format!("{}: depends on {name}", manifest.display()));
        }
    }
    let mut files = Vec::new();
    sources(&dir.join("src"), &dir.join("src/tests"), &mut files);
    assert!(!files.is_empty(), "no sources under {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for pattern in FORBIDDEN_CODE.iter().filter(|p| code.contains(**p)) {
                problems.push(format!("{}:{}: {pattern}: {}", file.display(), number + 1, line.trim()));
            }
        }
    }
    problems
}

#[test]
fn the_hub_and_routing_do_no_io_keep_no_clock_and_know_no_driver() {
    let problems: Vec<String> = [".", "../../routing", "../media"].into_iter().flat_map(check).collect();
    assert!(problems.is_empty(), "sans-IO crates reach for IO:\n{}", problems.join("\n"));
}

#[test]
fn the_session_core_does_not_know_the_hub() {
    let core = dependencies(&crate_dir("../core/Cargo.toml"));
    assert!(!core.iter().any(|name| name == "gateway-hub" || name == "routing"), "{core:?}");
    // The check itself sees what it must: this crate's own manifest.
    assert!(dependencies(&crate_dir("Cargo.toml")).iter().any(|name| name == "gateway-core"));
}
