//! Instruction-count benches for CI, run under `valgrind --tool=callgrind` by
//! `bench/scripts/callgrind-regress.sh`:
//!
//!   callgrind-bench run <scenario> [--iterations N]   # the measured process
//!   callgrind-bench list
//!   callgrind-bench compare --baseline B.json --current C.json [--threshold-pct 10]

use anyhow::{bail, Context};
use bench::scenarios::{run_measured, Inputs, ITERATIONS_DEFAULT, SCENARIOS};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Default allowed growth of instructions before CI fails.
const THRESHOLD_PCT_DEFAULT: f64 = 10.0;

#[derive(Debug, Parser)]
#[command(name = "callgrind-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario (under callgrind).
    Run {
        scenario: String,
        #[arg(long, default_value_t = ITERATIONS_DEFAULT)]
        iterations: u32,
    },
    /// List the scenarios.
    List,
    /// Compare instruction counts with the baseline; exit 1 on a regression.
    Compare {
        #[arg(long)]
        baseline: PathBuf,
        #[arg(long)]
        current: PathBuf,
        #[arg(long, default_value_t = THRESHOLD_PCT_DEFAULT)]
        threshold_pct: f64,
    },
}

/// `{"iterations": N, "scenarios": {"name": instructions, ...}}`.
#[derive(Debug, Serialize, Deserialize)]
struct Counts {
    iterations: u32,
    scenarios: BTreeMap<String, u64>,
}

fn read_counts(path: &PathBuf) -> anyhow::Result<Counts> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

fn compare(baseline: &PathBuf, current: &PathBuf, threshold_pct: f64) -> anyhow::Result<()> {
    let base = read_counts(baseline)?;
    let cur = read_counts(current)?;
    if base.iterations != cur.iterations {
        bail!(
            "baseline used {} iterations, current {}: rerun with --update",
            base.iterations,
            cur.iterations
        );
    }
    println!("{:<20} {:>14} {:>14} {:>9}", "scenario", "baseline Ir", "current Ir", "change");
    let mut regressions = Vec::new();
    for (name, &now) in &cur.scenarios {
        let Some(&was) = base.scenarios.get(name) else {
            println!("{name:<20} {:>14} {now:>14} {:>9}", "-", "new");
            continue;
        };
        let change_pct = (now as f64 - was as f64) / was.max(1) as f64 * 100.0;
        println!("{name:<20} {was:>14} {now:>14} {change_pct:>+8.2}%");
        if change_pct > threshold_pct {
            regressions.push(format!(
                "{name}: {was} -> {now} instructions ({change_pct:+.2}% > +{threshold_pct}%)"
            ));
        }
    }
    for name in base.scenarios.keys().filter(|n| !cur.scenarios.contains_key(*n)) {
        println!("{name:<20} missing from the current run");
    }
    if !regressions.is_empty() {
        eprintln!("\nREGRESSION: instruction count grew beyond the threshold:");
        for r in &regressions {
            eprintln!("  {r}");
        }
        eprintln!(
            "If this is intended, refresh the baseline: bench/scripts/callgrind-regress.sh --update"
        );
        std::process::exit(1);
    }
    println!("\nno regression beyond +{threshold_pct}%");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run { scenario, iterations } => {
            let inputs = Inputs::new();
            let Some(checksum) = run_measured(&scenario, &inputs, iterations) else {
                bail!("unknown or failing scenario {scenario:?}; have: {}", SCENARIOS.join(", "));
            };
            println!("{scenario}: checksum {checksum}");
            Ok(())
        }
        Command::List => {
            for s in SCENARIOS {
                println!("{s}");
            }
            Ok(())
        }
        Command::Compare {
            baseline,
            current,
            threshold_pct,
        } => compare(&baseline, &current, threshold_pct),
    }
}
