//! What a shard sends back when scraped, and the merge of all shards.

use super::{ApiStats, Traffic};
use std::collections::{BTreeMap, HashMap};
use storage::stats::StorageSnapshot;

/// The counters of `ShardMetrics`, copied on the shard's thread.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub topics: HashMap<String, Traffic>,
    pub partitions: HashMap<(String, i32), Traffic>,
    pub apis: Vec<(i16, ApiStats)>,
    pub errors: HashMap<(i16, i16), u64>,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub requests_in_flight: u64,
    pub produce_waiting: u64,
    pub produce_waiting_bytes: u64,
    /// (group, topic, partition, committed offset).
    pub group_offsets: Vec<(String, String, i32, i64)>,
}

/// One open log's gauges, read on its owner shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogGauges {
    pub topic: String,
    pub partition: i32,
    pub log_start: i64,
    pub log_end: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub cache_bytes: u64,
    pub write_queue_bytes: u64,
}

/// Everything one shard reports.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub counters: Counters,
    pub storage: StorageSnapshot,
    pub logs: Vec<LogGauges>,
    /// Partitions this shard owns that cannot serve: their log failed to open, or it was
    /// poisoned (a failed write or sync, or damage found by a read).
    pub offline_partitions: u64,
    pub connections_open: u64,
    pub request_budget_bytes: u64,
    pub request_budget_used_bytes: u64,
    pub cache_budget_bytes: u64,
    pub is_controller: bool,
}

/// All shards summed (counters) or joined (per-partition gauges: each partition has one owner).
#[derive(Clone, Debug, Default)]
pub struct Merged {
    pub shards: usize,
    pub shards_answered: usize,
    pub per_partition: bool,
    pub topics: BTreeMap<String, Traffic>,
    pub partitions: BTreeMap<(String, i32), Traffic>,
    pub apis: BTreeMap<i16, ApiStats>,
    pub errors: BTreeMap<(i16, i16), u64>,
    pub storage: StorageSnapshot,
    pub logs: BTreeMap<(String, i32), LogGauges>,
    pub offline_partitions: u64,
    pub connections_open: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub requests_in_flight: u64,
    pub produce_waiting: u64,
    pub produce_waiting_bytes: u64,
    pub request_budget_bytes: u64,
    pub request_budget_used_bytes: u64,
    pub cache_budget_bytes: u64,
    pub controller_active: bool,
    /// (group, topic, partition) -> (committed offset, lag); lag is None when the partition's
    /// high watermark is unknown (deleted topic, shard that did not answer).
    pub groups: BTreeMap<(String, String, i32), (i64, Option<i64>)>,
}

impl Merged {
    /// Merges the shards that answered; `shards` is how many the broker runs.
    pub fn of(shards: usize, per_partition: bool, snapshots: Vec<ShardSnapshot>) -> Merged {
        let mut m = Merged { shards, shards_answered: snapshots.len(), per_partition, ..Merged::default() };
        let mut group_offsets = Vec::new();
        for s in snapshots {
            let c = s.counters;
            for (topic, t) in c.topics {
                m.topics.entry(topic).or_default().add(&t);
            }
            for (key, t) in c.partitions {
                m.partitions.entry(key).or_default().add(&t);
            }
            for (key, a) in c.apis {
                let e = m.apis.entry(key).or_default();
                e.requests += a.requests;
                e.latency.merge(&a.latency);
            }
            for (key, n) in c.errors {
                *m.errors.entry(key).or_default() += n;
            }
            m.storage.merge(&s.storage);
            for log in s.logs {
                m.logs.insert((log.topic.clone(), log.partition), log);
            }
            m.offline_partitions += s.offline_partitions;
            m.connections_open += s.connections_open;
            m.connections_accepted += c.connections_accepted;
            m.connections_refused += c.connections_refused;
            m.requests_in_flight += c.requests_in_flight;
            m.produce_waiting += c.produce_waiting;
            m.produce_waiting_bytes += c.produce_waiting_bytes;
            m.request_budget_bytes += s.request_budget_bytes;
            m.request_budget_used_bytes += s.request_budget_used_bytes;
            m.cache_budget_bytes += s.cache_budget_bytes;
            m.controller_active |= s.is_controller;
            group_offsets.extend(c.group_offsets);
        }
        for (group, topic, partition, committed) in group_offsets {
            let lag = m.logs.get(&(topic.clone(), partition)).map(|l| (l.high_watermark - committed.max(0)).max(0));
            m.groups.insert((group, topic, partition), (committed, lag));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn log(topic: &str, partition: i32, hw: i64) -> LogGauges {
        LogGauges {
            topic: topic.into(),
            partition,
            log_start: 0,
            log_end: hw + 1,
            high_watermark: hw,
            size_bytes: 100,
            cache_bytes: 10,
            write_queue_bytes: 0,
        }
    }

    #[test]
    fn merge_sums_counters_and_joins_partitions() {
        let mut a = ShardSnapshot { shard: 0, is_controller: true, connections_open: 2, ..Default::default() };
        a.counters.topics.insert("t".into(), Traffic { bytes_in: 10, messages_in: 1, bytes_out: 0, messages_out: 0 });
        let mut h = storage::stats::Histogram::default();
        h.observe(Duration::from_millis(3));
        a.counters.apis.push((0, ApiStats { requests: 1, latency: h.clone() }));
        a.counters.errors.insert((0, 56), 1);
        a.counters.group_offsets.push(("g".into(), "t".into(), 1, 40));
        a.logs.push(log("t", 0, 10));
        a.storage.written_bytes = 4096;
        let mut b = ShardSnapshot { shard: 1, connections_open: 1, offline_partitions: 1, ..Default::default() };
        b.counters.topics.insert("t".into(), Traffic { bytes_in: 5, messages_in: 2, bytes_out: 7, messages_out: 1 });
        b.counters.apis.push((0, ApiStats { requests: 2, latency: h }));
        b.counters.errors.insert((0, 56), 2);
        b.logs.push(log("t", 1, 100));
        b.storage.written_bytes = 8192;
        // A group coordinated on shard 1 for a partition whose log is on shard 0.
        b.counters.group_offsets.push(("g".into(), "t".into(), 0, 4));
        b.counters.group_offsets.push(("g".into(), "gone".into(), 0, 4));

        let m = Merged::of(2, false, vec![a, b]);
        assert_eq!((m.shards, m.shards_answered), (2, 2));
        assert_eq!(m.topics["t"], Traffic { bytes_in: 15, messages_in: 3, bytes_out: 7, messages_out: 1 });
        assert_eq!(m.apis[&0].requests, 3);
        assert_eq!(m.apis[&0].latency.count(), 2);
        assert_eq!(m.errors[&(0, 56)], 3);
        assert_eq!(m.storage.written_bytes, 12288);
        assert_eq!(m.logs.len(), 2);
        assert_eq!((m.connections_open, m.offline_partitions, m.controller_active), (3, 1, true));
        assert_eq!(m.groups[&("g".into(), "t".into(), 0)], (4, Some(6)), "lag = hw 10 - committed 4");
        assert_eq!(m.groups[&("g".into(), "t".into(), 1)], (40, Some(60)));
        assert_eq!(m.groups[&("g".into(), "gone".into(), 0)], (4, None), "no log: lag unknown");
    }
}
