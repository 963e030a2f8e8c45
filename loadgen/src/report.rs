//! The JSON report of one loadgen run, and its human table.

use crate::error::{Error, Result};
use crate::metrics::{IntervalSample, LatencySummary, Throughput};
use crate::workload::{TargetRate, Workload};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// Version of the report layout; bump when fields change meaning.
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// A loadgen run: one or more steps (a rate sweep) of the same workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub format_version: u32,
    pub tool: String,
    /// What was measured (free label, e.g. "riptide --shards 2").
    pub target: String,
    pub bootstrap: String,
    /// Brokers behind the bootstrap list, for the per-broker figures.
    pub brokers: u32,
    pub started_unix_s: u64,
    pub topics: Vec<String>,
    pub workload: Workload,
    pub steps: Vec<StepReport>,
}

/// The measured window of one step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub target_rate: TargetRate,
    pub measured_s: f64,
    pub produce: Throughput,
    pub consume: Throughput,
    pub produce_errors: u64,
    pub consume_errors: u64,
    /// First few distinct error messages seen.
    pub error_samples: Vec<String>,
    pub produce_latency: LatencySummary,
    pub e2e_latency: LatencySummary,
    pub lag_max_msgs: u64,
    pub lag_final_msgs: u64,
    /// Stopped because `run.message_count` was reached.
    pub stopped_on_count: bool,
    pub intervals: Vec<IntervalSample>,
}

impl Report {
    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).map_err(|e| Error::io(format!("write {}", path.display()), e))
    }

    pub fn read_json(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// The final table, one row per step.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} | target {} | bootstrap {} | {} broker(s)",
            self.workload.name, self.target, self.bootstrap, self.brokers
        );
        let _ = writeln!(
            out,
            "{:>12} {:>11} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>8} {:>9} {:>7}",
            "target", "prod msg/s", "prod MB/s", "cons MB/s", "p50 ms", "p95 ms", "p99 ms",
            "p99.9 ms", "max ms", "e2e p50", "e2e p99", "e2e p99.9", "errors"
        );
        for s in &self.steps {
            let target = match s.target_rate {
                TargetRate::Max => "max".to_owned(),
                TargetRate::MessagesPerSecond(r) => format!("{r:.0}/s"),
            };
            let p = &s.produce_latency;
            let e = &s.e2e_latency;
            let _ = writeln!(
                out,
                "{:>12} {:>11.0} {:>10.1} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>9.2} {:>8.2} {:>9.2} {:>7}",
                target,
                s.produce.msgs_per_s,
                s.produce.mb_per_s,
                s.consume.mb_per_s,
                p.p50_ms,
                p.p95_ms,
                p.p99_ms,
                p.p999_ms,
                p.max_ms,
                e.p50_ms,
                e.p99_ms,
                e.p999_ms,
                s.produce_errors + s.consume_errors
            );
        }
        for s in &self.steps {
            for m in &s.error_samples {
                let _ = writeln!(out, "  error: {m}");
            }
            if s.lag_max_msgs > 0 {
                let _ = writeln!(
                    out,
                    "  consumer lag: max {} msgs, final {} msgs",
                    s.lag_max_msgs, s.lag_final_msgs
                );
            }
        }
        out
    }

    /// The step with the highest produce throughput.
    pub fn best_step(&self) -> Option<&StepReport> {
        self.steps
            .iter()
            .max_by(|a, b| a.produce.mb_per_s.total_cmp(&b.produce.mb_per_s))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::LatencyHistogram;

    pub(crate) fn step(mb_per_s: f64, p99_ms: f64) -> StepReport {
        let mut h = LatencyHistogram::new();
        h.record_us((p99_ms * 1000.0) as u64);
        let mut lat = h.summary();
        lat.p99_ms = p99_ms;
        StepReport {
            target_rate: TargetRate::MessagesPerSecond(mb_per_s * 1000.0),
            measured_s: 10.0,
            produce: Throughput {
                messages: 1,
                bytes: (mb_per_s * 1e7) as u64,
                msgs_per_s: mb_per_s * 1000.0,
                mb_per_s,
            },
            consume: Throughput::default(),
            produce_errors: 0,
            consume_errors: 0,
            error_samples: vec![],
            produce_latency: lat,
            e2e_latency: LatencySummary::default(),
            lag_max_msgs: 0,
            lag_final_msgs: 0,
            stopped_on_count: false,
            intervals: vec![],
        }
    }

    pub(crate) fn report(steps: Vec<StepReport>, brokers: u32, rf: u16) -> Report {
        let mut workload = Workload::from_toml_str("name = \"t\"").unwrap();
        workload.topics.replication_factor = rf;
        Report {
            format_version: REPORT_FORMAT_VERSION,
            tool: "riptide-loadgen".into(),
            target: "test".into(),
            bootstrap: "127.0.0.1:9092".into(),
            brokers,
            started_unix_s: 0,
            topics: vec!["t-0".into()],
            workload,
            steps,
        }
    }

    #[test]
    fn report_json_round_trips() {
        let r = report(vec![step(100.0, 5.0), step(200.0, 80.0)], 1, 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/run.json");
        r.write_json(&path).unwrap();
        assert_eq!(Report::read_json(&path).unwrap(), r);
    }

    #[test]
    fn report_table_has_row_per_step() {
        let r = report(vec![step(100.0, 5.0), step(200.0, 80.0)], 1, 1);
        let t = r.table();
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.contains("200.0"));
        assert_eq!(r.best_step().unwrap().produce.mb_per_s, 200.0);
    }
}
