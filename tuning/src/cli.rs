//! `riptide tune` and `riptide check`: arguments and the two entry points (the binary only
//! dispatches to `run_tune` / `run_check`).

use crate::check::{self, Readings};
use crate::resources::{IO_MEMORY_BYTES_DEFAULT, IO_PROPERTIES_FILE};
use crate::tune::{self, TuneOptions};
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// `socket.request.max.bytes`' default, which the request budget must hold.
const REQUEST_MAX_BYTES_DEFAULT: u64 = 100 << 20;

#[derive(Debug, Clone, clap::Args)]
pub struct TuneArgs {
    /// Data directory whose device is measured (its nearest existing parent if not created yet)
    #[arg(long, default_value = "./riptide-data")]
    pub data_dir: PathBuf,
    /// Write the I/O properties file here (`riptide start` reads DATA_DIR/io-properties.toml,
    /// or the file given with --io-properties); without it the settings are only printed
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// Total measuring time, shared by all the points (e.g. 20s, 500ms)
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Size of the scratch file measured on (removed afterwards), e.g. 256MiB
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub file_size: u64,
    /// Shards `riptide start` will run, for the per-shard budgets [default: all cores]
    #[arg(long)]
    pub shards: Option<usize>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Data directory to check (its nearest existing parent if not created yet)
    #[arg(long, default_value = "./riptide-data")]
    pub data_dir: PathBuf,
    /// Shards `riptide start` will run [default: all cores]
    #[arg(long)]
    pub shards: Option<usize>,
    /// Make the changes that can be made here (CPU governor, transparent huge pages,
    /// kernel.io_uring_disabled), printing each first; root only
    #[arg(long)]
    pub apply: bool,
}

/// "20s", "500ms", "2m", or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len()));
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?} (e.g. 20s, 500ms)"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// "256MiB", "1GiB", "64KiB", "1000000".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let v: u64 = num.parse().map_err(|_| format!("bad size {s:?} (e.g. 256MiB)"))?;
    let m = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        _ => return Err(format!("bad size unit in {s:?} (KiB, MiB, GiB)")),
    };
    Ok(v * m)
}

fn shards_or_cores(shards: Option<usize>) -> usize {
    shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

struct Bar(indicatif::ProgressBar);

impl tune::Progress for Bar {
    fn step(&self, what: &str) {
        self.0.inc(1);
        self.0.set_message(what.to_string());
    }
}

fn bar(len: u64) -> indicatif::ProgressBar {
    // Drawn on stderr only when it is a terminal.
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg} ({elapsed})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `riptide tune`.
pub fn run_tune(args: TuneArgs) -> anyhow::Result<()> {
    let shards = shards_or_cores(args.shards);
    let opts = TuneOptions { data_dir: args.data_dir.clone(), duration: args.duration, file_bytes: args.file_size, shards };
    let points = (2 * tune::BLOCK_SIZES.len() * tune::QUEUE_DEPTHS.len() + 1) as u64;
    let progress = Bar(bar(points));
    let m = tune::measure(&opts, &progress).context("measuring the data dir's device")?;
    progress.0.finish_and_clear();
    let settings = tune::choose(&m, shards, REQUEST_MAX_BYTES_DEFAULT);
    let mut out = std::io::stdout().lock();
    let h = &m.host;
    writeln!(
        out,
        "riptide tune: {} ({}, Linux {}), {} cores, NUMA {}, memory {} MiB, memlock {}",
        h.measured_in.display(),
        h.filesystem,
        h.kernel,
        h.cores,
        if h.numa_nodes.is_empty() { "unknown".into() } else { h.numa_nodes.join(", ") },
        h.memory_bytes.map_or(0, |b| b >> 20),
        h.memlock_bytes.map_or("unlimited".into(), |b| format!("{} KiB", b >> 10)),
    )?;
    writeln!(out, "{:<6} {:>8} {:>6} {:>10} {:>10}", "op", "block", "depth", "MB/s", "IOPS")?;
    for p in &m.points {
        writeln!(out, "{:<6} {:>5} KiB {:>6} {:>10.1} {:>10.0}", p.op, p.block_bytes >> 10, p.depth, p.mb_per_s, p.iops)?;
    }
    writeln!(out, "sync after a 64 KiB write ({} rounds): p50 {:.2} ms, p99 {:.2} ms", m.sync_rounds, m.sync_p50_us as f64 / 1e3, m.sync_p99_us as f64 / 1e3)?;
    let props = tune::properties(&m, settings);
    let header = format!(
        "Riptide I/O properties, written by `riptide tune` for {} shards\n(data dir {}, measured in {} on {}).",
        shards,
        args.data_dir.display(),
        h.measured_in.display(),
        h.filesystem
    );
    let text = props.render(&header);
    writeln!(out, "settings:")?;
    let s = &props.settings;
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    writeln!(out, "  storage.write.bytes = {}", opt(s.write_bytes.map(|v| v as u64)))?;
    writeln!(out, "  io.memory.bytes = {}", opt(s.io_memory_bytes.map(|v| v as u64)))?;
    writeln!(out, "  io.ring.depth = {}", opt(s.ring_depth.map(|v| v as u64)))?;
    writeln!(out, "  cache.bytes.per.shard = {}", opt(s.cache_bytes_per_shard))?;
    writeln!(out, "  request.budget.bytes.per.shard = {}", opt(s.request_budget_bytes_per_shard))?;
    match &args.write {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
            writeln!(out, "wrote {}", path.display())?;
        }
        None => writeln!(
            out,
            "not written: pass --write FILE (riptide start reads {} or --io-properties FILE)",
            args.data_dir.join(IO_PROPERTIES_FILE).display()
        )?,
    }
    Ok(())
}

/// `riptide check`'s findings and exit status (0 all pass, 1 warnings, 2 failures), written
/// to `out`.
pub fn check(args: &CheckArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let shards = shards_or_cores(args.shards);
    let progress = bar(1);
    progress.set_message("reading the host");
    let readings = Readings::probe(&args.data_dir, shards, IO_MEMORY_BYTES_DEFAULT as u64);
    progress.finish_and_clear();
    let findings = check::evaluate(&readings);
    writeln!(out, "riptide check: data dir {} ({shards} shards)", args.data_dir.display())?;
    for f in &findings {
        writeln!(out, "{}", f.line())?;
    }
    let count = |s| findings.iter().filter(|f| f.status == s).count();
    writeln!(out, "{} pass, {} warn, {} fail", count(check::Status::Pass), count(check::Status::Warn), count(check::Status::Fail))?;
    if !args.apply {
        return Ok(check::exit_code(&findings));
    }
    if !readings.root {
        writeln!(out, "--apply changes kernel settings: run it as root")?;
        return Ok(2);
    }
    let failed = check::apply(&findings, out);
    let after = check::evaluate(&Readings::probe(&args.data_dir, shards, IO_MEMORY_BYTES_DEFAULT as u64));
    writeln!(out, "after --apply:")?;
    for f in &after {
        writeln!(out, "{}", f.line())?;
    }
    Ok(if failed.is_empty() { check::exit_code(&after) } else { 2 })
}

/// `riptide check`: prints, then exits with its status.
pub fn run_check(args: CheckArgs) -> anyhow::Result<()> {
    let code = check(&args, &mut std::io::stdout().lock())?;
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_quantities() {
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("3 bananas").is_err());
    }
}
