//! Per-shard storage counters, for the broker's metrics.
//!
//! Each executor thread (one shard) has its own `StorageStats` in a thread-local: the I/O paths
//! bump plain `Cell`s, with no atomics and nothing shared between cores. The broker reads them
//! with [`snapshot`] when it is scraped, on the shard's own thread, and sums the shards.
//!
//! What is counted, and where:
//! - DMA writes (`io::dma`, every O_DIRECT write: segments, indexes, checkpoints): bytes and
//!   latency;
//! - DMA reads (`io::dma`): bytes;
//! - syncs: each `syncfs` round of a `SyncGroup`, or each per-file fdatasync, with its latency;
//! - batch-cache hits and misses (`Log::read`);
//! - journal rounds (one write of every partition's entries), their bytes, and journal syncs;
//!   appends that went straight to the segment files instead (direct appends) and their bytes.

use std::cell::{Cell, RefCell};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (100 µs to 10 s, then +Inf): the same
/// buckets for every latency histogram, so the broker's and storage's can be read side by side.
pub const LATENCY_BUCKETS_US: [u64; 16] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000];

/// A latency histogram with fixed buckets (`LATENCY_BUCKETS_US`), owned by one thread.
/// `counts[i]` counts observations in bucket i only (not cumulative); the last slot is +Inf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub sum_ns: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = LATENCY_BUCKETS_US.partition_point(|&bound| bound < us);
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another histogram's counts (merging shards).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// (upper bound in seconds, cumulative count) per bucket, +Inf excluded (Prometheus' `le`).
    pub fn cumulative_seconds(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        LATENCY_BUCKETS_US
            .iter()
            .zip(self.counts.iter())
            .map(|(&bound, &c)| {
                total += c;
                (bound as f64 / 1e6, total)
            })
            .collect()
    }
}

/// One shard's storage counters (see the module comment).
#[derive(Default)]
pub struct StorageStats {
    written_bytes: Cell<u64>,
    writes: Cell<u64>,
    read_bytes: Cell<u64>,
    sync_rounds: Cell<u64>,
    cache_hits: Cell<u64>,
    cache_misses: Cell<u64>,
    journal_rounds: Cell<u64>,
    journal_bytes: Cell<u64>,
    journal_syncs: Cell<u64>,
    direct_appends: Cell<u64>,
    direct_bytes: Cell<u64>,
    write_latency: RefCell<Histogram>,
    sync_latency: RefCell<Histogram>,
}

/// A copy of one shard's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageSnapshot {
    pub written_bytes: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub sync_rounds: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub journal_rounds: u64,
    pub journal_bytes: u64,
    pub journal_syncs: u64,
    pub direct_appends: u64,
    pub direct_bytes: u64,
    pub write_latency: Histogram,
    pub sync_latency: Histogram,
}

impl StorageSnapshot {
    pub fn merge(&mut self, o: &StorageSnapshot) {
        self.written_bytes += o.written_bytes;
        self.writes += o.writes;
        self.read_bytes += o.read_bytes;
        self.sync_rounds += o.sync_rounds;
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.journal_rounds += o.journal_rounds;
        self.journal_bytes += o.journal_bytes;
        self.journal_syncs += o.journal_syncs;
        self.direct_appends += o.direct_appends;
        self.direct_bytes += o.direct_bytes;
        self.write_latency.merge(&o.write_latency);
        self.sync_latency.merge(&o.sync_latency);
    }
}

thread_local! {
    static STATS: StorageStats = StorageStats::default();
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

/// A DMA write of `bytes` completed (or failed) after `took`.
pub fn record_write(bytes: u64, took: Duration) {
    STATS.with(|s| {
        bump(&s.written_bytes, bytes);
        bump(&s.writes, 1);
        s.write_latency.borrow_mut().observe(took);
    });
}

/// A DMA read returned `bytes`.
pub fn record_read(bytes: u64) {
    STATS.with(|s| bump(&s.read_bytes, bytes));
}

/// A sync round (one `syncfs` for a shard's files, or one file's fdatasync) took `took`.
pub fn record_sync(took: Duration) {
    STATS.with(|s| {
        bump(&s.sync_rounds, 1);
        s.sync_latency.borrow_mut().observe(took);
    });
}

/// A log read was served from the batch cache (`hit`) or had to go to disk.
pub fn record_cache(hit: bool) {
    STATS.with(|s| bump(if hit { &s.cache_hits } else { &s.cache_misses }, 1));
}

/// A journal round wrote `bytes` (block-padded) for every partition with entries in it.
pub fn record_journal_round(bytes: u64) {
    STATS.with(|s| {
        bump(&s.journal_rounds, 1);
        bump(&s.journal_bytes, bytes);
    });
}

/// The journal fdatasync'ed what its rounds wrote since the last one.
pub fn record_journal_sync() {
    STATS.with(|s| bump(&s.journal_syncs, 1));
}

/// An append of `bytes` went straight to the segment files (not through the journal).
pub fn record_direct_append(bytes: u64) {
    STATS.with(|s| {
        bump(&s.direct_appends, 1);
        bump(&s.direct_bytes, bytes);
    });
}

/// This thread's (shard's) counters so far.
pub fn snapshot() -> StorageSnapshot {
    STATS.with(|s| StorageSnapshot {
        written_bytes: s.written_bytes.get(),
        writes: s.writes.get(),
        read_bytes: s.read_bytes.get(),
        sync_rounds: s.sync_rounds.get(),
        cache_hits: s.cache_hits.get(),
        cache_misses: s.cache_misses.get(),
        journal_rounds: s.journal_rounds.get(),
        journal_bytes: s.journal_bytes.get(),
        journal_syncs: s.journal_syncs.get(),
        direct_appends: s.direct_appends.get(),
        direct_bytes: s.direct_bytes.get(),
        write_latency: s.write_latency.borrow().clone(),
        sync_latency: s.sync_latency.borrow().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_histogram_buckets_are_upper_bounds() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(100)); // exactly on a bound: that bucket (le)
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(60)); // +Inf
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[LATENCY_BUCKETS_US.len()], 1);
        assert_eq!(h.count(), 3);
        let cum = h.cumulative_seconds();
        assert_eq!(cum[0], (0.0001, 1));
        assert_eq!(cum.last().unwrap(), &(10.0, 2), "+Inf is not a listed bucket");
        let mut m = h.clone();
        m.merge(&h);
        assert_eq!((m.count(), m.sum_ns), (6, 2 * h.sum_ns));
    }

    #[test]
    fn stats_are_per_thread() {
        record_write(4096, Duration::from_millis(1));
        record_cache(true);
        record_cache(false);
        record_sync(Duration::from_millis(2));
        let here = snapshot();
        assert!(here.written_bytes >= 4096 && here.cache_hits >= 1 && here.sync_rounds >= 1);
        let other = std::thread::spawn(snapshot).join().unwrap();
        assert_eq!(other, StorageSnapshot::default(), "another thread (shard) starts at zero");
    }
}
