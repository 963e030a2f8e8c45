//! End-to-end harness: starts each system under test on loopback with a fresh data dir, runs the
//! same workload with the loadgen library, tears it down, and writes ONE JSON report with the
//! raw-disk and loopback references and the ratios.
//!
//!   cargo run -p riptide-bench --release --bin e2e -- \
//!       --workload bench/workloads/1-topic-100-partitions-1kb-max.toml --out bench/reports/run.json

use anyhow::{bail, Context};
use bench::e2e_report::{compute_ratios, summary_table, E2eReport, Machine, SystemResult};
use bench::diskstats::{self, DiskCounters};
use bench::systems::{self, SystemSpec};
use bench::{disk, loopback, procstat};
use clap::Parser;
use loadgen::null_broker::{NullBroker, NullBrokerConfig};
use loadgen::workload::DurationSpec;
use loadgen::{run_workload, RunOptions, WindowEdge, WindowHook, Workload};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Raw disk reference: bytes and time bounds.
const DISK_BYTES_MAX: u64 = 1024 * 1024 * 1024;
const DISK_TIME_MAX: Duration = Duration::from_secs(5);
/// Loopback reference duration.
const LOOPBACK_TIME: Duration = Duration::from_secs(2);
/// Pause between systems so sockets and page cache settle.
const BETWEEN_SYSTEMS: Duration = Duration::from_secs(1);
const REPORT_FORMAT_VERSION: u32 = 1;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[derive(Debug, Parser)]
#[command(name = "e2e", about = "Riptide end-to-end benchmark harness (loopback only)")]
struct Args {
    /// Workload file.
    #[arg(long, short)]
    workload: Option<PathBuf>,
    /// JSON report path (plots are written beside it).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Systems to run, comma separated: null-broker, tansu, riptide-<shards>.
    #[arg(long, value_delimiter = ',', default_value = "null-broker,tansu,riptide-1,riptide-2")]
    systems: Vec<String>,
    /// Riptide binary (default: <workspace>/target/release/riptide).
    #[arg(long)]
    riptide_bin: Option<PathBuf>,
    /// An older Riptide binary, run as `riptide-old-<shards>` in the same run (e.g. built from
    /// the commit before a change).
    #[arg(long)]
    riptide_old_bin: Option<PathBuf>,
    /// Tansu binary (default: installed by bench/scripts/setup-tansu.sh).
    #[arg(long)]
    tansu_bin: Option<PathBuf>,
    /// Where fresh data directories and the raw disk test file go (same filesystem as a real
    /// deployment's data dir).
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Override the measured duration of every run (e.g. 10s).
    #[arg(long)]
    duration: Option<String>,
    /// Override the warm-up of every run (e.g. 2s).
    #[arg(long)]
    warmup: Option<String>,
    /// Override the consumer count of every run (0: producers only, as against the ceiling).
    #[arg(long)]
    consumers: Option<u32>,
    /// I/O properties file for the `riptide-<n>-tuned` systems (written by `riptide tune`).
    #[arg(long)]
    riptide_io_properties: Option<PathBuf>,
    /// Skip the raw disk reference.
    #[arg(long)]
    no_disk: bool,
    /// Skip the loopback TCP reference.
    #[arg(long)]
    no_loopback: bool,
    /// Internal: serve a null broker on this address until killed.
    #[arg(long, hide = true)]
    serve_null_broker: Option<SocketAddr>,
}

fn machine() -> Machine {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: mem_kib / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        cpu_model,
    }
}

fn tansu_binary(given: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let script = workspace_root().join("bench/scripts/setup-tansu.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The command line of each system; `Err` carries why it is skipped.
fn system_spec(name: &str, args: &Args) -> Result<SystemSpec, String> {
    if name == "null-broker" {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        return Ok(SystemSpec {
            name: name.into(),
            program: exe,
            args: vec!["--serve-null-broker".into(), "127.0.0.1:{port}".into()],
            needs_data_dir: false,
        });
    }
    if name == "tansu" {
        let bin = tansu_binary(args.tansu_bin.as_ref()).map_err(|e| format!("{e:#}"))?;
        if !bin.exists() {
            return Err(format!("{} not found", bin.display()));
        }
        return Ok(SystemSpec {
            name: name.into(),
            program: bin,
            args: [
                "broker",
                "--listener-url",
                "tcp://127.0.0.1:{port}",
                "--advertised-listener-url",
                "tcp://127.0.0.1:{port}",
                "--storage-engine",
                "memory://tansu/",
            ]
            .map(String::from)
            .to_vec(),
            needs_data_dir: false,
        });
    }
    if let Some(rest) = name.strip_prefix("riptide-") {
        let (old, rest) = match rest.strip_prefix("old-") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let (shards, variant) = rest.split_once('-').unwrap_or((rest, ""));
        let shards: u32 = shards
            .parse()
            .map_err(|_| format!("bad system name {name:?}: use riptide-<shards>[-tuned|-scraped] or riptide-old-<shards>"))?;
        let bin = if old {
            args.riptide_old_bin.clone().ok_or("riptide-old-N needs --riptide-old-bin")?
        } else {
            args.riptide_bin.clone().unwrap_or_else(|| workspace_root().join("target/release/riptide"))
        };
        if !bin.exists() {
            return Err(format!(
                "{} not found (build it with `cargo build --release -p riptide`)",
                bin.display()
            ));
        }
        let mut start_args: Vec<String> = vec![
            "start".into(),
            "--data-dir".into(),
            "{data_dir}".into(),
            "--listen".into(),
            "127.0.0.1:{port}".into(),
            "--shards".into(),
            shards.to_string(),
        ];
        // The admin endpoint is off unless scraped (the default port could be taken); a data
        // dir is fresh, so defaults are the memory-sized ones unless a properties file is given.
        match variant {
            // An older binary may not know the flags below.
            _ if old => {}
            "" => start_args.extend(["--admin".into(), "none".into()]),
            "tuned" => {
                let props = args.riptide_io_properties.clone().ok_or("riptide-<n>-tuned needs --riptide-io-properties FILE (from riptide tune --write)")?;
                start_args.extend(["--admin".into(), "none".into(), "--io-properties".into(), props.display().to_string()]);
            }
            "scraped" => {
                let port = systems::free_port().map_err(|e| e.to_string())?;
                start_args.extend(["--admin".into(), format!("127.0.0.1:{port}")]);
            }
            other => return Err(format!("unknown riptide variant {other:?}: tuned or scraped")),
        }
        return Ok(SystemSpec {
            name: match (old, variant) {
                (true, _) => format!("riptide-old-shards-{shards}"),
                (false, "") => format!("riptide-shards-{shards}"),
                (false, v) => format!("riptide-shards-{shards}-{v}"),
            },
            program: bin,
            args: start_args,
            needs_data_dir: true,
        });
    }
    Err(format!("unknown system {name:?}"))
}

fn run_system(spec: &SystemSpec, workload: &Workload, data_root: &Path, out: &Path) -> SystemResult {
    let command = format!("{} {}", spec.program.display(), spec.args.join(" "));
    let log_dir = out.with_extension("logs");
    let mut running = match systems::start(spec, data_root, &log_dir) {
        Ok(r) => r,
        Err(e) => {
            let mut r = SystemResult::skipped(&spec.name, command, String::new());
            r.skipped = None;
            r.error = Some(format!("start: {e}"));
            return r;
        }
    };
    eprintln!("== {} on {} (pid {})", spec.name, running.addr, running.pid());
    let mut opts = RunOptions::new(running.addr.to_string());
    opts.target_label = spec.name.clone();
    // Broker CPU time and device writes at the edges of the measured windows only (not topic
    // creation or drain).
    let edges: Arc<Mutex<Vec<(WindowEdge, f64, Instant)>>> = Arc::default();
    let disk_edges: Arc<Mutex<Vec<(WindowEdge, DiskCounters)>>> = Arc::default();
    let pid = running.pid();
    let (hook_edges, hook_disk) = (edges.clone(), disk_edges.clone());
    let disk_path = data_root.to_path_buf();
    opts.window_hook = Some(WindowHook(Arc::new(move |edge| {
        let cpu = procstat::cpu_seconds(pid).unwrap_or(0.0);
        let disk = diskstats::read(&disk_path).unwrap_or_default();
        if let Ok(mut e) = hook_edges.lock() {
            e.push((edge, cpu, Instant::now()));
        }
        if let Ok(mut d) = hook_disk.lock() {
            d.push((edge, disk));
        }
    })));
    // `-scraped` systems: GET /metrics every second for the whole run, as Prometheus would.
    let scraper = spec.name.ends_with("-scraped").then(|| {
        let admin = spec.args.iter().skip_while(|a| *a != "--admin").nth(1).cloned().unwrap_or_default();
        Scraper::start(admin)
    });
    let result = run_workload(workload, &opts);
    if let Some(s) = scraper {
        let (scrapes, bytes, failed) = s.stop();
        eprintln!("== {}: {scrapes} scrapes of /metrics ({bytes} bytes), {failed} failed", spec.name);
    }
    let cpu_edges = edges.lock().map(|e| e.clone()).unwrap_or_default();
    let disk_edges = disk_edges.lock().map(|e| e.clone()).unwrap_or_default();
    let (cpu_s, wall_s) = window_cpu(&cpu_edges);
    let (disk_writes, disk_bytes) = window_disk(&disk_edges);
    let alive = running.is_alive();
    running.stop();
    match result {
        Ok(report) => {
            print!("{}", report.table());
            let stem = out.with_file_name(format!(
                "{}-{}.json",
                out.file_stem().and_then(|s| s.to_str()).unwrap_or("e2e"),
                spec.name
            ));
            if let Err(e) = loadgen::plot::write_plots(&report, &stem) {
                eprintln!("plots for {}: {e}", spec.name);
            }
            let steps = step_measures(&report, &cpu_edges, &disk_edges);
            for m in &steps {
                eprintln!(
                    "== {} step {}: {:.1} MB/s, ack p50/p99 {:.2}/{:.2} ms, busy cores {:.2}, device writes/s {:.0}, device bytes/payload {:.2}",
                    spec.name, m.step, m.produce_mb_per_s, m.produce_p50_ms, m.produce_p99_ms, m.broker_busy_cores, m.device_writes_per_s, m.device_bytes_per_payload_byte
                );
            }
            let mut r = SystemResult::measured(&spec.name, command, report, cpu_s, wall_s).with_device(disk_writes, disk_bytes, wall_s);
            r.steps = steps;
            if !alive {
                r.error = Some(format!("exited during the run; see {}", running.log_path().display()));
            }
            r
        }
        Err(e) => {
            eprintln!("{}: {e}", spec.name);
            let mut r = SystemResult::skipped(&spec.name, command, String::new());
            r.skipped = None;
            r.error = Some(format!("{e}; log {}", running.log_path().display()));
            r
        }
    }
}

/// CPU and device figures of each measured window (one per step).
fn step_measures(report: &loadgen::Report, cpu: &[(WindowEdge, f64, Instant)], disk: &[(WindowEdge, DiskCounters)]) -> Vec<bench::e2e_report::StepMeasure> {
    let step_of = |e: &WindowEdge| match e {
        WindowEdge::Start { step } | WindowEdge::End { step } => *step,
    };
    (0..report.steps.len())
        .map(|step| {
            let c: Vec<_> = cpu.iter().filter(|(e, ..)| step_of(e) == step).cloned().collect();
            let d: Vec<_> = disk.iter().filter(|(e, _)| step_of(e) == step).cloned().collect();
            let (cpu_s, wall_s) = window_cpu(&c);
            let (writes, bytes) = window_disk(&d);
            bench::e2e_report::StepMeasure::of(step, report, cpu_s, wall_s, writes, bytes)
        })
        .collect()
}

/// Device writes and bytes written summed over the measured windows (Start/End pairs).
fn window_disk(edges: &[(WindowEdge, DiskCounters)]) -> (u64, u64) {
    let (mut writes, mut bytes) = (0, 0);
    let mut open: Option<DiskCounters> = None;
    for (edge, c) in edges {
        match edge {
            WindowEdge::Start { .. } => open = Some(*c),
            WindowEdge::End { .. } => {
                if let Some(start) = open.take() {
                    writes += c.writes.saturating_sub(start.writes);
                    bytes += c.bytes_written.saturating_sub(start.bytes_written);
                }
            }
        }
    }
    (writes, bytes)
}

/// Scrapes an admin endpoint's /metrics once a second until stopped.
struct Scraper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64, u64)>,
}

impl Scraper {
    fn start(addr: String) -> Scraper {
        use std::io::{Read, Write};
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut ok, mut bytes, mut failed) = (0u64, 0u64, 0u64);
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                let got = std::net::TcpStream::connect(&addr).and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")?;
                    let mut body = Vec::new();
                    s.read_to_end(&mut body)?;
                    Ok(body)
                });
                match got {
                    Ok(body) if body.starts_with(b"HTTP/1.1 200") => {
                        ok += 1;
                        bytes += body.len() as u64;
                    }
                    _ => failed += 1,
                }
                std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
            }
            (ok, bytes, failed)
        });
        Scraper { stop, thread }
    }

    fn stop(self) -> (u64, u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// CPU seconds and wall seconds summed over the measured windows (Start/End pairs).
fn window_cpu(edges: &[(WindowEdge, f64, Instant)]) -> (f64, f64) {
    let mut cpu = 0.0;
    let mut wall = 0.0;
    let mut open: Option<(f64, Instant)> = None;
    for (edge, c, t) in edges {
        match edge {
            WindowEdge::Start { .. } => open = Some((*c, *t)),
            WindowEdge::End { .. } => {
                if let Some((c0, t0)) = open.take() {
                    cpu += c - c0;
                    wall += t.duration_since(t0).as_secs_f64();
                }
            }
        }
    }
    (cpu, wall)
}

fn load_workload(args: &Args) -> anyhow::Result<(PathBuf, Workload)> {
    let path = args
        .workload
        .clone()
        .unwrap_or_else(|| workspace_root().join("bench/workloads/1-topic-100-partitions-1kb-max.toml"));
    let mut w = Workload::from_file(&path)?;
    if let Some(d) = &args.duration {
        w.run.duration = DurationSpec::Text(d.clone());
    }
    if let Some(d) = &args.warmup {
        w.run.warmup = DurationSpec::Text(d.clone());
    }
    if let Some(n) = args.consumers {
        w.consumer.count = n;
    }
    w.validate()?;
    Ok((path, w))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.serve_null_broker {
        let _broker = NullBroker::start(NullBrokerConfig::new(addr))?;
        loop {
            std::thread::park();
        }
    }
    let (workload_path, workload) = load_workload(&args)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("bench/reports/e2e-latest.json"));
    let data_root = args.data_root.clone().unwrap_or_else(std::env::temp_dir);
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut notes = vec![
        "All traffic on 127.0.0.1; clients and brokers share the machine's cores.".to_owned(),
        "null-broker runs without consumers (it stores nothing to read).".to_owned(),
    ];
    let mut results = Vec::new();
    for name in &args.systems {
        match system_spec(name, &args) {
            Err(why) => {
                eprintln!("== {name}: skipped: {why}");
                results.push(SystemResult::skipped(name, String::new(), why));
            }
            Ok(spec) => {
                let mut w = workload.clone();
                if spec.name == "null-broker" {
                    w.consumer.count = 0;
                }
                results.push(run_system(&spec, &w, &data_root, &out));
                std::thread::sleep(BETWEEN_SYSTEMS);
            }
        }
    }
    let raw_disk = if args.no_disk {
        None
    } else {
        match disk::measure(&data_root, DISK_BYTES_MAX, DISK_TIME_MAX) {
            Ok(d) => Some(d),
            Err(e) => {
                notes.push(format!("raw disk: {e}"));
                None
            }
        }
    };
    let loopback_tcp = if args.no_loopback {
        None
    } else {
        match loopback::measure(LOOPBACK_TIME) {
            Ok(l) => Some(l),
            Err(e) => {
                notes.push(format!("loopback: {e}"));
                None
            }
        }
    };
    let ratios = compute_ratios(&results, raw_disk.as_ref(), loopback_tcp.as_ref());
    let report = E2eReport {
        format_version: REPORT_FORMAT_VERSION,
        started_unix_s,
        workload_file: workload_path.display().to_string(),
        machine: machine(),
        systems: results,
        raw_disk,
        loopback_tcp,
        ratios,
        notes,
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("write {}", out.display()))?;
    println!();
    print!("{}", summary_table(&report));
    println!("report: {}", out.display());
    Ok(())
}
