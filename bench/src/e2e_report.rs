//! The combined end-to-end report: every system on the same workload in the same run, the raw
//! disk and loopback references, and the ratios between them.

use crate::disk::DiskResult;
use crate::loopback::LoopbackResult;
use loadgen::Report;
use serde::{Deserialize, Serialize};

/// Target for 1 KiB, acks=1, durable: Riptide at >= 60% of the null-broker ceiling.
pub const TARGET_FRACTION_OF_CEILING: f64 = 0.60;
/// Target: Riptide at >= 3x Tansu's throughput.
pub const TARGET_TIMES_TANSU: f64 = 3.0;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub cpu_model: String,
}

/// One system under test.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SystemResult {
    /// `null-broker`, `tansu`, `riptide-shards-1`, ...
    pub name: String,
    pub command: String,
    /// Why it was not run (binary missing...).
    pub skipped: Option<String>,
    /// Why the run failed.
    pub error: Option<String>,
    /// CPU seconds (utime + stime) of the broker process during the measured window(s).
    pub broker_cpu_s: f64,
    /// broker_cpu_s / wall seconds of the measured window(s).
    pub broker_busy_cores: f64,
    pub produce_mb_per_s: f64,
    pub produce_p99_ms: f64,
    pub e2e_p99_ms: f64,
    pub mb_per_s_per_busy_core: f64,
    /// Writes completed per second on the data dir's device during the measured window(s).
    #[serde(default)]
    pub device_writes_per_s: f64,
    /// Bytes written to that device / payload bytes produced (write amplification).
    #[serde(default)]
    pub device_bytes_per_payload_byte: f64,
    /// The same broker and device figures for each step of the run (e.g. each fixed rate).
    #[serde(default)]
    pub steps: Vec<StepMeasure>,
    pub run: Option<Report>,
}

/// Broker CPU and device figures of one measured window (one step of the workload).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StepMeasure {
    pub step: usize,
    pub produce_mb_per_s: f64,
    pub produce_p50_ms: f64,
    pub produce_p99_ms: f64,
    pub broker_busy_cores: f64,
    pub device_writes_per_s: f64,
    pub device_bytes_per_payload_byte: f64,
}

impl StepMeasure {
    /// From a step's CPU seconds, device writes and bytes over `wall_s`.
    pub fn of(step: usize, run: &Report, cpu_s: f64, wall_s: f64, writes: u64, bytes: u64) -> StepMeasure {
        let s = run.steps.get(step);
        let produced = s.map_or(0, |s| s.produce.bytes);
        let per_s = |v: f64| if wall_s > 0.0 { v / wall_s } else { 0.0 };
        StepMeasure {
            step,
            produce_mb_per_s: s.map_or(0.0, |s| s.produce.mb_per_s),
            produce_p50_ms: s.map_or(0.0, |s| s.produce_latency.p50_ms),
            produce_p99_ms: s.map_or(0.0, |s| s.produce_latency.p99_ms),
            broker_busy_cores: per_s(cpu_s),
            device_writes_per_s: per_s(writes as f64),
            device_bytes_per_payload_byte: if produced > 0 { bytes as f64 / produced as f64 } else { 0.0 },
        }
    }
}

impl SystemResult {
    pub fn skipped(name: &str, command: String, why: String) -> Self {
        SystemResult {
            name: name.to_owned(),
            command,
            skipped: Some(why),
            error: None,
            broker_cpu_s: 0.0,
            broker_busy_cores: 0.0,
            produce_mb_per_s: 0.0,
            produce_p99_ms: 0.0,
            e2e_p99_ms: 0.0,
            mb_per_s_per_busy_core: 0.0,
            device_writes_per_s: 0.0,
            device_bytes_per_payload_byte: 0.0,
            steps: Vec::new(),
            run: None,
        }
    }

    /// Adds the device counters of the measured window(s): `writes` and `bytes` written over
    /// `wall_s` seconds, for the payload bytes the run produced.
    pub fn with_device(mut self, writes: u64, bytes: u64, wall_s: f64) -> Self {
        let produced: u64 = self.run.as_ref().map_or(0, |r| r.steps.iter().map(|s| s.produce.bytes).sum());
        if wall_s > 0.0 {
            self.device_writes_per_s = writes as f64 / wall_s;
        }
        if produced > 0 {
            self.device_bytes_per_payload_byte = bytes as f64 / produced as f64;
        }
        self
    }

    /// Fills the summary fields from the run and the CPU used over `wall_s`.
    pub fn measured(name: &str, command: String, run: Report, cpu_s: f64, wall_s: f64) -> Self {
        let best = run.best_step().cloned();
        let mb = best.as_ref().map_or(0.0, |s| s.produce.mb_per_s);
        let busy = if wall_s > 0.0 { cpu_s / wall_s } else { 0.0 };
        SystemResult {
            name: name.to_owned(),
            command,
            skipped: None,
            error: None,
            broker_cpu_s: cpu_s,
            broker_busy_cores: busy,
            produce_mb_per_s: mb,
            produce_p99_ms: best.as_ref().map_or(0.0, |s| s.produce_latency.p99_ms),
            e2e_p99_ms: best.as_ref().map_or(0.0, |s| s.e2e_latency.p99_ms),
            mb_per_s_per_busy_core: if busy > 0.0 { mb / busy } else { 0.0 },
            device_writes_per_s: 0.0,
            device_bytes_per_payload_byte: 0.0,
            steps: Vec::new(),
            run: Some(run),
        }
    }

    fn ok(&self) -> bool {
        self.run.is_some() && self.error.is_none() && self.produce_mb_per_s > 0.0
    }
}

/// Ratios of one Riptide configuration against the references.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ratios {
    pub system: String,
    /// Throughput / null-broker throughput.
    pub vs_ceiling: Option<f64>,
    /// Throughput / Tansu throughput.
    pub vs_tansu_throughput: Option<f64>,
    /// p99 / Tansu p99 (lower is better).
    pub vs_tansu_p99: Option<f64>,
    /// (MB/s per busy broker core) / Tansu's.
    pub vs_tansu_per_core: Option<f64>,
    /// Throughput / raw disk sequential write.
    pub vs_raw_disk: Option<f64>,
    /// Throughput / loopback TCP.
    pub vs_loopback: Option<f64>,
    pub meets_fraction_of_ceiling: Option<bool>,
    pub meets_times_tansu: Option<bool>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct E2eReport {
    pub format_version: u32,
    pub started_unix_s: u64,
    pub workload_file: String,
    pub machine: Machine,
    pub systems: Vec<SystemResult>,
    pub raw_disk: Option<DiskResult>,
    pub loopback_tcp: Option<LoopbackResult>,
    pub ratios: Vec<Ratios>,
    pub notes: Vec<String>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (a > 0.0 && b > 0.0).then_some(a / b)
}

/// Ratios for every measured `riptide*` system.
pub fn compute_ratios(
    systems: &[SystemResult],
    disk: Option<&DiskResult>,
    loopback: Option<&LoopbackResult>,
) -> Vec<Ratios> {
    let find = |name: &str| systems.iter().find(|s| s.name == name && s.ok());
    let ceiling = find("null-broker");
    let tansu = find("tansu");
    systems
        .iter()
        .filter(|s| s.name.starts_with("riptide") && s.ok())
        .map(|s| {
            let vs_ceiling = ceiling.and_then(|c| ratio(s.produce_mb_per_s, c.produce_mb_per_s));
            let vs_tansu = tansu.and_then(|t| ratio(s.produce_mb_per_s, t.produce_mb_per_s));
            Ratios {
                system: s.name.clone(),
                vs_ceiling,
                vs_tansu_throughput: vs_tansu,
                vs_tansu_p99: tansu.and_then(|t| ratio(s.produce_p99_ms, t.produce_p99_ms)),
                vs_tansu_per_core: tansu
                    .and_then(|t| ratio(s.mb_per_s_per_busy_core, t.mb_per_s_per_busy_core)),
                vs_raw_disk: disk.and_then(|d| ratio(s.produce_mb_per_s, d.mb_per_s)),
                vs_loopback: loopback.and_then(|l| ratio(s.produce_mb_per_s, l.mb_per_s)),
                meets_fraction_of_ceiling: vs_ceiling.map(|r| r >= TARGET_FRACTION_OF_CEILING),
                meets_times_tansu: vs_tansu.map(|r| r >= TARGET_TIMES_TANSU),
            }
        })
        .collect()
}

/// A short human summary of the report.
pub fn summary_table(r: &E2eReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>10} {:>9} {:>9} {:>10} {:>12} {:>10} {:>9}  note",
        "system", "prod MB/s", "p99 ms", "e2e p99", "busy cores", "MB/s/core", "dev wr/s", "dev B/B"
    );
    for s in &r.systems {
        let note = s
            .skipped
            .as_deref()
            .map(|w| format!("skipped: {w}"))
            .or_else(|| s.error.as_ref().map(|e| format!("error: {e}")))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<22} {:>10.1} {:>9.2} {:>9.2} {:>10.2} {:>12.1} {:>10.0} {:>9.2}  {note}",
            s.name,
            s.produce_mb_per_s,
            s.produce_p99_ms,
            s.e2e_p99_ms,
            s.broker_busy_cores,
            s.mb_per_s_per_busy_core,
            s.device_writes_per_s,
            s.device_bytes_per_payload_byte
        );
    }
    if let Some(d) = &r.raw_disk {
        let _ = writeln!(out, "raw disk ({}): {:.1} MB/s sequential direct write", d.method, d.mb_per_s);
    }
    if let Some(l) = &r.loopback_tcp {
        let _ = writeln!(out, "loopback TCP: {:.1} MB/s (one stream)", l.mb_per_s);
    }
    let fmt = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.2}"));
    for q in &r.ratios {
        let _ = writeln!(
            out,
            "{}: vs ceiling {} | vs Tansu x{} (p99 x{}, per core x{}) | vs raw disk {} | vs loopback {}",
            q.system,
            fmt(q.vs_ceiling),
            fmt(q.vs_tansu_throughput),
            fmt(q.vs_tansu_p99),
            fmt(q.vs_tansu_per_core),
            fmt(q.vs_raw_disk),
            fmt(q.vs_loopback)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(name: &str, mb: f64, p99: f64, busy: f64) -> SystemResult {
        let mut s = SystemResult::skipped(name, String::new(), String::new());
        s.skipped = None;
        s.produce_mb_per_s = mb;
        s.produce_p99_ms = p99;
        s.broker_busy_cores = busy;
        s.mb_per_s_per_busy_core = mb / busy;
        s.run = Some(
            serde_json::from_value(serde_json::json!({
                "format_version": 1, "tool": "t", "target": name, "bootstrap": "b", "brokers": 1,
                "started_unix_s": 0, "topics": [],
                "workload": {"name": "w"}, "steps": []
            }))
            .unwrap(),
        );
        s
    }

    #[test]
    fn report_ratios_against_references() {
        let systems = vec![
            sys("null-broker", 1000.0, 5.0, 0.5),
            sys("tansu", 200.0, 40.0, 1.0),
            sys("riptide-shards-1", 700.0, 10.0, 1.0),
        ];
        let disk = DiskResult {
            method: "o_direct".into(),
            bytes: 1,
            seconds: 1.0,
            mb_per_s: 1400.0,
            block_bytes: 1,
            dir: String::new(),
        };
        let r = compute_ratios(&systems, Some(&disk), None);
        assert_eq!(r.len(), 1);
        let q = &r[0];
        assert!((q.vs_ceiling.unwrap() - 0.7).abs() < 1e-9);
        assert!((q.vs_tansu_throughput.unwrap() - 3.5).abs() < 1e-9);
        assert!((q.vs_tansu_p99.unwrap() - 0.25).abs() < 1e-9);
        assert!((q.vs_tansu_per_core.unwrap() - 3.5).abs() < 1e-9);
        assert!((q.vs_raw_disk.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(q.vs_loopback, None);
        assert_eq!(q.meets_fraction_of_ceiling, Some(true));
        assert_eq!(q.meets_times_tansu, Some(true));
    }

    #[test]
    fn report_ratios_skip_missing_systems() {
        let mut skipped = SystemResult::skipped("riptide-shards-2", String::new(), "missing".into());
        skipped.produce_mb_per_s = 0.0;
        let r = compute_ratios(&[skipped, sys("tansu", 10.0, 1.0, 1.0)], None, None);
        assert!(r.is_empty());
    }
}
