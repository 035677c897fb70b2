//! `capacity`: the fleet for a target load from measured per-unit figures
//! (`capacity [--figures F] [--target T] [--box cores=16,mem_gib=42]
//! [--redundancy double|n+1|none] [--json]`), and `capacity check --run
//! RUN.json [--error 0.35]`, which predicts a measured run and exits 1 when
//! a quantity misses by more than the error (a run that cannot validate the
//! model, its load not carried or its box saturated, is reported as such and
//! exits 0). Input errors exit 2.

use std::path::PathBuf;
use std::process::ExitCode;

use capacity::check::{self, Run, STATED_ERROR};
use capacity::figures::Figures;
use capacity::target::{BoxShape, Redundancy, Target};
use capacity::{fleet, report, seeds};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

/// The shipped inputs, so that `cargo run -p capacity` needs no argument.
const FIGURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/figures.toml");
const TARGET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target-seeds.toml");

#[derive(Debug, Parser)]
#[command(
    name = "capacity",
    about = "Sizes the gateway fleet for a target load from measured per-unit figures (FLEET.md)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    size: SizeArgs,
}

#[derive(Debug, Args)]
struct SizeArgs {
    /// Measured per-unit figures.
    #[arg(long, default_value = FIGURES)]
    figures: PathBuf,
    /// Target load and fleet policy.
    #[arg(long, default_value = TARGET)]
    target: PathBuf,
    /// Gateway box instead of the target's, e.g. cores=64,mem_gib=256.
    #[arg(long = "box", value_name = "cores=N,mem_gib=M")]
    shape: Option<BoxShape>,
    /// Redundancy instead of the target's: none, n+1 or double.
    #[arg(long)]
    redundancy: Option<Redundancy>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Predicts a measured run (scripts/bench-fleet's JSON) from the
    /// figures and its load; exits 1 if a quantity misses by more than the
    /// error (0 for a run that cannot validate the model: load not carried,
    /// box saturated).
    Check {
        /// Measured per-unit figures.
        #[arg(long, default_value = FIGURES)]
        figures: PathBuf,
        /// The run.
        #[arg(long)]
        run: PathBuf,
        /// Largest relative error allowed per quantity.
        #[arg(long, default_value_t = STATED_ERROR)]
        error: f64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The answer as JSON: the fleet, the comparison, the assumed figures.
#[derive(Debug, Serialize)]
struct Answer<'a> {
    fleet: &'a fleet::Fleet,
    seeds: Vec<seeds::Row>,
    assumptions: Vec<(String, f64, String)>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Check { figures, run, error, json }) => run_check(&figures, &run, error, json),
        None => run_size(&cli.size),
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("capacity: {message}");
            ExitCode::from(2)
        }
    }
}

fn run_size(args: &SizeArgs) -> Result<ExitCode, String> {
    let figures = Figures::load(&args.figures).map_err(|e| e.to_string())?;
    let mut target = Target::load(&args.target).map_err(|e| e.to_string())?;
    if let Some(shape) = args.shape {
        target.shape = shape;
    }
    if let Some(redundancy) = args.redundancy {
        target.fleet.redundancy = redundancy;
    }
    let fleet = fleet::size(&figures, &target).map_err(|e| e.to_string())?;
    if args.json {
        let answer =
            Answer { seeds: seeds::compare(&fleet), assumptions: figures.assumptions(), fleet: &fleet };
        println!("{}", serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())?);
    } else {
        print!("{}", report::render(&fleet, &target, &figures));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_check(
    figures: &std::path::Path,
    run: &std::path::Path,
    error: f64,
    json: bool,
) -> Result<ExitCode, String> {
    if !(error.is_finite() && error > 0.0) {
        return Err(format!("--error {error}: expected a number above 0"));
    }
    let figures = Figures::load(figures).map_err(|e| e.to_string())?;
    let run = Run::load(run).map_err(|e| e.to_string())?;
    let verdict = check::check(&figures, &run, error);
    if json {
        println!("{}", serde_json::to_string_pretty(&verdict).map_err(|e| e.to_string())?);
    } else {
        print!("{}", check::render(&run, &verdict));
    }
    Ok(if verdict.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
