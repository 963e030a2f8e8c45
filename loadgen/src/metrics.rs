//! Measurement primitives: latency histograms (hdrhistogram, microseconds), shared counters, and
//! the summaries that go into the report.

use crate::constants::{BYTES_PER_MB, LATENCY_SIGFIG, LATENCY_US_MAX};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Percentiles drawn in the latency plot and stored in the report.
pub const CURVE_PERCENTILES: &[f64] = &[
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        // Bounds are constants that hdrhistogram accepts; failure would be a programming error.
        let inner = Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGFIG)
            .expect("constant histogram bounds are valid");
        LatencyHistogram { inner }
    }

    /// Records one latency; values beyond the bounds are clamped.
    pub fn record_us(&mut self, us: u64) {
        self.inner.saturating_record(us.clamp(1, LATENCY_US_MAX));
    }

    /// Records the time elapsed since `send_time_ns` (wall clock), clamping negative skew to 0.
    pub fn record_since_ns(&mut self, send_time_ns: u64, now_ns: u64) {
        self.record_us(now_ns.saturating_sub(send_time_ns) / 1_000);
    }

    pub fn add(&mut self, other: &LatencyHistogram) {
        // Both histograms share the same bounds, so add cannot fail.
        let _ = self.inner.add(&other.inner);
    }

    pub fn reset(&mut self) {
        self.inner.reset();
    }

    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Latency at percentile `p` (0..=100) in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.inner.is_empty() {
            return 0.0;
        }
        self.inner.value_at_percentile(p) as f64 / 1_000.0
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.inner.len(),
            mean_ms: if self.inner.is_empty() { 0.0 } else { self.inner.mean() / 1_000.0 },
            p50_ms: self.percentile_ms(50.0),
            p95_ms: self.percentile_ms(95.0),
            p99_ms: self.percentile_ms(99.0),
            p999_ms: self.percentile_ms(99.9),
            max_ms: if self.inner.is_empty() { 0.0 } else { self.inner.max() as f64 / 1_000.0 },
            curve: CURVE_PERCENTILES
                .iter()
                .map(|p| PercentilePoint {
                    percentile: *p,
                    ms: self.percentile_ms(*p),
                })
                .collect(),
        }
    }
}

/// One point of a latency percentile curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub ms: f64,
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub curve: Vec<PercentilePoint>,
}

/// Message and byte totals over a window, with the rates they imply.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
}

impl Throughput {
    pub fn over(messages: u64, bytes: u64, seconds: f64) -> Throughput {
        let s = if seconds > 0.0 { seconds } else { f64::INFINITY };
        Throughput {
            messages,
            bytes,
            msgs_per_s: messages as f64 / s,
            mb_per_s: bytes as f64 / s / BYTES_PER_MB,
        }
    }
}

/// Counters shared between the workers and the sampler. Only the measured window is counted.
#[derive(Debug, Default)]
pub struct Counters {
    pub produced_msgs: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub consumed_msgs: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub produce_errors: AtomicU64,
    pub consume_errors: AtomicU64,
    /// Every acknowledged message since the start (warm-up included), for the lag.
    pub acked_total: AtomicU64,
    /// Every consumed message since the start, per subscription summed, for the lag.
    pub consumed_total: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub produced_msgs: u64,
    pub produced_bytes: u64,
    pub consumed_msgs: u64,
    pub consumed_bytes: u64,
    pub produce_errors: u64,
    pub consume_errors: u64,
    pub acked_total: u64,
    pub consumed_total: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let r = Ordering::Relaxed;
        CounterSnapshot {
            produced_msgs: self.produced_msgs.load(r),
            produced_bytes: self.produced_bytes.load(r),
            consumed_msgs: self.consumed_msgs.load(r),
            consumed_bytes: self.consumed_bytes.load(r),
            produce_errors: self.produce_errors.load(r),
            consume_errors: self.consume_errors.load(r),
            acked_total: self.acked_total.load(r),
            consumed_total: self.consumed_total.load(r),
        }
    }
}

/// Consumer lag in messages: what was acknowledged times the subscriptions, minus what was read.
pub fn lag_messages(s: &CounterSnapshot, subscriptions: u32, consumers_enabled: bool) -> u64 {
    if !consumers_enabled {
        return 0;
    }
    (s.acked_total * u64::from(subscriptions)).saturating_sub(s.consumed_total)
}

/// One throughput sample over a sampling interval.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IntervalSample {
    /// Seconds since the start of the measured window (negative during warm-up).
    pub t_s: f64,
    pub produce_msgs_per_s: f64,
    pub produce_mb_per_s: f64,
    pub consume_msgs_per_s: f64,
    pub consume_mb_per_s: f64,
    pub produce_errors: u64,
    pub consume_errors: u64,
    pub lag_msgs: u64,
    pub produce_p99_ms: f64,
    pub e2e_p99_ms: f64,
}

/// Builds an interval sample from two snapshots taken `seconds` apart.
pub fn interval_sample(
    t_s: f64,
    before: &CounterSnapshot,
    after: &CounterSnapshot,
    seconds: f64,
    lag_msgs: u64,
) -> IntervalSample {
    let produce = Throughput::over(
        after.produced_msgs - before.produced_msgs,
        after.produced_bytes - before.produced_bytes,
        seconds,
    );
    let consume = Throughput::over(
        after.consumed_msgs - before.consumed_msgs,
        after.consumed_bytes - before.consumed_bytes,
        seconds,
    );
    IntervalSample {
        t_s,
        produce_msgs_per_s: produce.msgs_per_s,
        produce_mb_per_s: produce.mb_per_s,
        consume_msgs_per_s: consume.msgs_per_s,
        consume_mb_per_s: consume.mb_per_s,
        produce_errors: after.produce_errors - before.produce_errors,
        consume_errors: after.consume_errors - before.consume_errors,
        lag_msgs,
        produce_p99_ms: 0.0,
        e2e_p99_ms: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_within_precision() {
        let mut h = LatencyHistogram::new();
        for us in 1..=10_000 {
            h.record_us(us);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert!((s.p50_ms - 5.0).abs() < 0.01, "p50 {}", s.p50_ms);
        assert!((s.p99_ms - 9.9).abs() < 0.01, "p99 {}", s.p99_ms);
        assert!((s.max_ms - 10.0).abs() < 0.01);
        assert_eq!(s.curve.len(), CURVE_PERCENTILES.len());
        assert!(s.curve.windows(2).all(|w| w[0].ms <= w[1].ms));
    }

    #[test]
    fn histogram_clamps_out_of_range_and_skew() {
        let mut h = LatencyHistogram::new();
        h.record_us(u64::MAX);
        h.record_since_ns(2_000, 1_000); // clock skew: recorded as the minimum
        assert_eq!(h.len(), 2);
        assert!(h.summary().max_ms <= LATENCY_US_MAX as f64 / 1_000.0 * 1.001);
    }

    #[test]
    fn histogram_empty_summary_is_zero() {
        let s = LatencyHistogram::new().summary();
        assert_eq!(s.count, 0);
        assert_eq!(s.p99_ms, 0.0);
    }

    #[test]
    fn throughput_rates_from_totals() {
        let t = Throughput::over(2_000, 2_000_000, 2.0);
        assert_eq!(t.msgs_per_s, 1_000.0);
        assert_eq!(t.mb_per_s, 1.0);
        assert_eq!(Throughput::over(5, 5, 0.0).msgs_per_s, 0.0);
    }

    #[test]
    fn lag_counts_each_subscription() {
        let s = CounterSnapshot {
            acked_total: 100,
            consumed_total: 150,
            ..Default::default()
        };
        assert_eq!(lag_messages(&s, 2, true), 50);
        assert_eq!(lag_messages(&s, 1, true), 0);
        assert_eq!(lag_messages(&s, 2, false), 0);
    }
}
