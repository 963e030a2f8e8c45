//! Cluster sizing: pure math, no I/O.
//!
//! Every byte produced is written on `rf` brokers (the leader's append plus `rf - 1` follower
//! appends), and read `fanout` times by consumers plus `rf - 1` times by followers fetching from the
//! leader. With `W` the sustainable write rate of one broker and `R` its sustainable read (egress)
//! rate:
//!
//! ```text
//! write load  = ingress x rf                     brokers_write = ceil(ingress x rf / W)
//! read load   = ingress x (fanout + rf - 1)      brokers_read  = ceil(ingress x (fanout + rf - 1) / R)
//! brokers     = max(brokers_write, brokers_read, rf)
//! ```
//!
//! The seeds' Kafka rule of thumb is `(ingress / per_broker) x rf`, e.g. `(1000 / 200) x 3 = 15`:
//! the write bound alone. `W` is measured: the highest produce rate at which p99 produce latency
//! stayed under the SLO, times the measured replication factor, divided by the measured brokers.

use crate::error::{Error, Result};
use crate::report::Report;
use serde::{Deserialize, Serialize};

/// The seeds' per-broker figure: "~200 MB/s per broker" (seed 003).
pub const SEED_PER_BROKER_BYTES_PER_S: f64 = 200e6;
/// Float tolerance when rounding broker counts up (so 15.000000001 stays 15).
const CEIL_EPSILON: f64 = 1e-9;

/// What the sizing needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SizingInput {
    /// Client ingress for the whole cluster, bytes per second.
    pub ingress_bytes_per_s: f64,
    pub replication_factor: u32,
    /// How many times consumers read every byte.
    pub egress_fanout: f64,
    /// Sustainable write bytes per second of one broker (replica appends included).
    pub per_broker_write_bytes_per_s: f64,
    /// Sustainable read bytes per second of one broker (consumer and follower fetches).
    pub per_broker_read_bytes_per_s: f64,
}

/// The answer, with every intermediate figure so it can be shown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SizingResult {
    pub write_load_bytes_per_s: f64,
    pub read_load_bytes_per_s: f64,
    pub brokers_for_write: u64,
    pub brokers_for_read: u64,
    pub brokers_for_rf: u64,
    pub brokers: u64,
    /// The seeds' rule of thumb with the same per-broker figure: (ingress / W) x rf, unrounded.
    pub rule_of_thumb: f64,
}

fn ceil_count(x: f64) -> u64 {
    (x - CEIL_EPSILON).ceil().max(0.0) as u64
}

/// Sizes a cluster.
pub fn size_cluster(input: &SizingInput) -> Result<SizingResult> {
    let i = input;
    if !(i.ingress_bytes_per_s.is_finite() && i.ingress_bytes_per_s > 0.0) {
        return Err(Error::Sizing("ingress must be positive".into()));
    }
    if i.replication_factor == 0 {
        return Err(Error::Sizing("replication factor must be >= 1".into()));
    }
    if !(i.egress_fanout.is_finite() && i.egress_fanout >= 0.0) {
        return Err(Error::Sizing("egress fanout must be >= 0".into()));
    }
    if !(i.per_broker_write_bytes_per_s > 0.0 && i.per_broker_read_bytes_per_s > 0.0) {
        return Err(Error::Sizing("per-broker rates must be positive".into()));
    }
    let rf = f64::from(i.replication_factor);
    let write_load = i.ingress_bytes_per_s * rf;
    let read_load = i.ingress_bytes_per_s * (i.egress_fanout + rf - 1.0);
    let brokers_for_write = ceil_count(write_load / i.per_broker_write_bytes_per_s);
    let brokers_for_read = ceil_count(read_load / i.per_broker_read_bytes_per_s);
    let brokers_for_rf = u64::from(i.replication_factor);
    Ok(SizingResult {
        write_load_bytes_per_s: write_load,
        read_load_bytes_per_s: read_load,
        brokers_for_write,
        brokers_for_read,
        brokers_for_rf,
        brokers: brokers_for_write.max(brokers_for_read).max(brokers_for_rf),
        rule_of_thumb: i.ingress_bytes_per_s / i.per_broker_write_bytes_per_s * rf,
    })
}

/// One measured operating point (one step of a run).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeasuredPoint {
    /// Client produce bytes per second acknowledged in the measured window.
    pub produce_bytes_per_s: f64,
    /// Consumer bytes per second read in the measured window.
    pub consume_bytes_per_s: f64,
    pub p99_produce_ms: f64,
    pub errors: u64,
    /// Brokers serving the run.
    pub brokers: u32,
    /// Replication factor of the run's topics.
    pub replication_factor: u32,
}

impl MeasuredPoint {
    fn meets(&self, slo_p99_ms: f64) -> bool {
        self.errors == 0 && self.p99_produce_ms <= slo_p99_ms && self.produce_bytes_per_s > 0.0
    }

    fn write_per_broker(&self) -> f64 {
        self.produce_bytes_per_s * f64::from(self.replication_factor) / f64::from(self.brokers.max(1))
    }

    fn read_per_broker(&self) -> f64 {
        let follower_reads = self.produce_bytes_per_s * f64::from(self.replication_factor.max(1) - 1);
        (self.consume_bytes_per_s + follower_reads) / f64::from(self.brokers.max(1))
    }
}

/// The per-broker sustainable rates derived from measured points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sustainable {
    pub write_bytes_per_s: f64,
    /// Read rate observed at that point (a lower bound of the read capacity).
    pub read_bytes_per_s_observed: f64,
    /// The point chosen.
    pub point: MeasuredPoint,
}

/// Highest per-broker write rate among points whose p99 produce latency met the SLO without
/// errors; `None` if no point qualifies.
pub fn sustainable_per_broker(points: &[MeasuredPoint], slo_p99_ms: f64) -> Option<Sustainable> {
    points
        .iter()
        .filter(|p| p.meets(slo_p99_ms))
        .max_by(|a, b| a.write_per_broker().total_cmp(&b.write_per_broker()))
        .map(|p| Sustainable {
            write_bytes_per_s: p.write_per_broker(),
            read_bytes_per_s_observed: p.read_per_broker(),
            point: *p,
        })
}

/// The measured points of a report, one per step.
pub fn points_from_report(report: &Report) -> Vec<MeasuredPoint> {
    report
        .steps
        .iter()
        .map(|s| MeasuredPoint {
            produce_bytes_per_s: s.produce.mb_per_s * crate::constants::BYTES_PER_MB,
            consume_bytes_per_s: s.consume.mb_per_s * crate::constants::BYTES_PER_MB,
            p99_produce_ms: s.produce_latency.p99_ms,
            errors: s.produce_errors,
            brokers: report.brokers,
            replication_factor: u32::from(report.workload.topics.replication_factor),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{report, step};

    fn input(ingress: f64, rf: u32, fanout: f64, w: f64, r: f64) -> SizingInput {
        SizingInput {
            ingress_bytes_per_s: ingress,
            replication_factor: rf,
            egress_fanout: fanout,
            per_broker_write_bytes_per_s: w,
            per_broker_read_bytes_per_s: r,
        }
    }

    #[test]
    fn sizing_matches_seed_rule_of_thumb() {
        // Seed 003: 1 GB/s, 200 MB/s per broker, RF 3 -> (1000/200) x 3 = 15.
        let r = size_cluster(&input(1e9, 3, 1.0, 200e6, 1e12)).unwrap();
        assert_eq!(r.brokers_for_write, 15);
        assert_eq!(r.brokers, 15);
        assert!((r.rule_of_thumb - 15.0).abs() < 1e-9);
        assert_eq!(r.write_load_bytes_per_s, 3e9);
    }

    #[test]
    fn sizing_egress_fanout_can_dominate() {
        // Fanout 2, RF 3: read load = 1 GB/s x (2 + 2) = 4 GB/s; at 200 MB/s read -> 20 brokers.
        let r = size_cluster(&input(1e9, 3, 2.0, 200e6, 200e6)).unwrap();
        assert_eq!(r.read_load_bytes_per_s, 4e9);
        assert_eq!(r.brokers_for_read, 20);
        assert_eq!(r.brokers_for_write, 15);
        assert_eq!(r.brokers, 20);
    }

    #[test]
    fn sizing_never_below_replication_factor() {
        let r = size_cluster(&input(1e6, 3, 1.0, 1e9, 1e9)).unwrap();
        assert_eq!(r.brokers_for_write, 1);
        assert_eq!(r.brokers, 3);
    }

    #[test]
    fn sizing_rounds_up_without_float_noise() {
        let r = size_cluster(&input(1e9, 3, 0.0, 3e9 / 15.0, 1e12)).unwrap();
        assert_eq!(r.brokers_for_write, 15);
        let r = size_cluster(&input(1.01e9, 3, 0.0, 200e6, 1e12)).unwrap();
        assert_eq!(r.brokers_for_write, 16);
    }

    #[test]
    fn sizing_rejects_nonsense() {
        assert!(size_cluster(&input(0.0, 3, 1.0, 1.0, 1.0)).is_err());
        assert!(size_cluster(&input(1.0, 0, 1.0, 1.0, 1.0)).is_err());
        assert!(size_cluster(&input(1.0, 1, -1.0, 1.0, 1.0)).is_err());
        assert!(size_cluster(&input(1.0, 1, 1.0, 0.0, 1.0)).is_err());
    }

    #[test]
    fn sizing_sustainable_picks_highest_rate_under_slo() {
        let r = report(
            vec![step(100.0, 5.0), step(250.0, 40.0), step(400.0, 120.0)],
            1,
            1,
        );
        let s = sustainable_per_broker(&points_from_report(&r), 50.0).unwrap();
        assert!((s.write_bytes_per_s - 250e6).abs() < 1.0);
        assert!(sustainable_per_broker(&points_from_report(&r), 1.0).is_none());
    }

    #[test]
    fn sizing_sustainable_accounts_for_measured_rf_and_brokers() {
        // 300 MB/s client ingress on 3 brokers at RF 3: each broker writes 300 MB/s.
        let r = report(vec![step(300.0, 10.0)], 3, 3);
        let s = sustainable_per_broker(&points_from_report(&r), 50.0).unwrap();
        assert!((s.write_bytes_per_s - 300e6).abs() < 1.0);
        // Followers fetch 2 x 300 MB/s, spread over 3 brokers.
        assert!((s.read_bytes_per_s_observed - 200e6).abs() < 1.0);
    }

    #[test]
    fn sizing_sustainable_skips_points_with_errors() {
        let mut bad = step(500.0, 1.0);
        bad.produce_errors = 3;
        let r = report(vec![step(100.0, 5.0), bad], 1, 1);
        let s = sustainable_per_broker(&points_from_report(&r), 50.0).unwrap();
        assert!((s.write_bytes_per_s - 100e6).abs() < 1.0);
    }
}
