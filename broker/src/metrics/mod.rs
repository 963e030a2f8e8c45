//! Metrics: counters owned by each shard, merged when the admin endpoint is scraped.
//!
//! - Each shard thread has its own `ShardMetrics` (a thread-local of plain `Cell`s and maps):
//!   the request path bumps it with no atomics and nothing shared between cores. Storage keeps
//!   its own per-thread counters the same way (`storage::stats`).
//! - On a scrape, the admin HTTP thread (`admin`, a plain std thread, off the shards) asks every
//!   shard for a `ShardSnapshot` (`collect`): each shard's metrics task copies its counters and
//!   reads its logs' gauges on its own thread, and sends the copy back. The snapshots are merged
//!   (`snapshot::Merged`) and rendered in the Prometheus text format (`exposition`, with
//!   prometheus-client's encoder). So a scrape costs each shard one short task; nothing is
//!   published while nobody scrapes.
//! - Low cardinality by default (per topic, per API); per-partition series only with
//!   `metrics.per.partition` (`--metrics-per-partition`).
//!
//! Consumer groups: the group coordinator reports committed offsets with
//! [`groups::committed`] (on its shard); the scrape computes lag = high watermark - committed
//! from the owning shards' logs, so Grafana needs no exporter.

pub mod admin;
pub mod collect;
pub mod exposition;
pub mod snapshot;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use storage::stats::Histogram;

/// Slots for API keys (the registry's dispatch table has as many).
pub const API_KEY_SLOTS: usize = 128;

/// Traffic of one topic (or one partition, with per-partition series on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes_in: u64,
    pub messages_in: u64,
    pub bytes_out: u64,
    pub messages_out: u64,
}

impl Traffic {
    pub fn add(&mut self, o: &Traffic) {
        self.bytes_in += o.bytes_in;
        self.messages_in += o.messages_in;
        self.bytes_out += o.bytes_out;
        self.messages_out += o.messages_out;
    }
}

/// Requests of one API: how many were answered, and how long each took from being read to its
/// response being written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiStats {
    pub requests: u64,
    pub latency: Histogram,
}

/// One shard's counters. Only its own thread touches it.
#[derive(Default)]
pub struct ShardMetrics {
    per_partition: Cell<bool>,
    topics: RefCell<HashMap<String, Traffic>>,
    partitions: RefCell<HashMap<(String, i32), Traffic>>,
    apis: RefCell<Vec<ApiStats>>,
    /// (API key, error code) -> count. Key -1: a frame that named no API we know.
    errors: RefCell<HashMap<(i16, i16), u64>>,
    connections_accepted: Cell<u64>,
    connections_refused: Cell<u64>,
    requests_in_flight: Cell<u64>,
    produce_waiting: Cell<u64>,
    produce_waiting_bytes: Cell<u64>,
    /// group -> (topic, partition) -> committed offset.
    groups: RefCell<BTreeMap<String, GroupOffsets>>,
}

/// One group's committed offsets: (topic, partition) -> offset.
type GroupOffsets = BTreeMap<(String, i32), i64>;

thread_local! {
    static METRICS: ShardMetrics = ShardMetrics::default();
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

/// Turns per-partition series on or off for this shard (at shard start).
pub fn set_per_partition(on: bool) {
    METRICS.with(|m| m.per_partition.set(on));
}

fn traffic(topic: &str, partition: i32, f: impl Fn(&mut Traffic)) {
    METRICS.with(|m| {
        let mut topics = m.topics.borrow_mut();
        match topics.get_mut(topic) {
            Some(t) => f(t),
            None => f(topics.entry(topic.to_string()).or_default()),
        }
        if m.per_partition.get() {
            f(m.partitions.borrow_mut().entry((topic.to_string(), partition)).or_default());
        }
    });
}

/// Records appended to a partition (on its owner shard): batch bytes as received, messages.
pub fn produced(topic: &str, partition: i32, bytes: u64, messages: u64) {
    traffic(topic, partition, |t| {
        t.bytes_in += bytes;
        t.messages_in += messages;
    });
}

/// Record batches sent to a consumer in a Fetch response (on the connection's shard).
pub fn fetched(topic: &str, partition: i32, bytes: u64, messages: u64) {
    traffic(topic, partition, |t| {
        t.bytes_out += bytes;
        t.messages_out += messages;
    });
}

/// A partition- or request-level error code in a response to API `api_key`.
pub fn error(api_key: i16, code: i16) {
    if code == 0 {
        return;
    }
    METRICS.with(|m| *m.errors.borrow_mut().entry((api_key, code)).or_default() += 1);
}

pub fn connection_accepted() {
    METRICS.with(|m| bump(&m.connections_accepted, 1));
}

pub fn connection_refused() {
    METRICS.with(|m| bump(&m.connections_refused, 1));
}

/// A request read and handed to its handler; dropping it (response written, or the
/// connection gone) ends its time in flight. `finish` also records its latency.
pub struct InFlight {
    api_key: i16,
    started: std::time::Instant,
}

impl InFlight {
    pub fn start(api_key: i16) -> InFlight {
        METRICS.with(|m| bump(&m.requests_in_flight, 1));
        InFlight { api_key, started: std::time::Instant::now() }
    }

    /// The response was written (or, for acks=0, the request completed).
    pub fn finish(self) {
        request_done(self.api_key, self.started.elapsed());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        METRICS.with(|m| m.requests_in_flight.set(m.requests_in_flight.get().saturating_sub(1)));
    }
}

fn request_done(api_key: i16, took: Duration) {
    let Ok(slot) = usize::try_from(api_key) else { return };
    if slot >= API_KEY_SLOTS {
        return;
    }
    METRICS.with(|m| {
        let mut apis = m.apis.borrow_mut();
        if apis.len() < API_KEY_SLOTS {
            apis.resize_with(API_KEY_SLOTS, ApiStats::default);
        }
        apis[slot].requests += 1;
        apis[slot].latency.observe(took);
    });
}

/// A produce request waiting for its acks (phase 2); `bytes` of records. Dropped when answered.
pub struct ProduceWaiting {
    bytes: u64,
}

impl ProduceWaiting {
    pub fn new(bytes: u64) -> ProduceWaiting {
        METRICS.with(|m| {
            bump(&m.produce_waiting, 1);
            bump(&m.produce_waiting_bytes, bytes);
        });
        ProduceWaiting { bytes }
    }
}

impl Drop for ProduceWaiting {
    fn drop(&mut self) {
        METRICS.with(|m| {
            m.produce_waiting.set(m.produce_waiting.get().saturating_sub(1));
            m.produce_waiting_bytes.set(m.produce_waiting_bytes.get().saturating_sub(self.bytes));
        });
    }
}

/// The hook for the consumer-group coordinator: call these on the shard that coordinates the
/// group, whenever its committed offsets change. Lag is computed at scrape time against the
/// partitions' high watermarks.
pub mod groups {
    use super::METRICS;

    /// `group` committed `offset` (the next offset it will consume) for `topic`-`partition`.
    pub fn committed(group: &str, topic: &str, partition: i32, offset: i64) {
        METRICS.with(|m| {
            let mut groups = m.groups.borrow_mut();
            let offsets = match groups.get_mut(group) {
                Some(o) => o,
                None => groups.entry(group.to_string()).or_default(),
            };
            match offsets.get_mut(&(topic.to_string(), partition)) {
                Some(o) => *o = offset,
                None => {
                    offsets.insert((topic.to_string(), partition), offset);
                }
            }
        });
    }

    /// The group's offsets for one partition were deleted (OffsetDelete, topic deleted).
    pub fn forget(group: &str, topic: &str, partition: i32) {
        METRICS.with(|m| {
            let mut groups = m.groups.borrow_mut();
            if let Some(offsets) = groups.get_mut(group) {
                offsets.remove(&(topic.to_string(), partition));
                if offsets.is_empty() {
                    groups.remove(group);
                }
            }
        });
    }

    /// The group is gone (DeleteGroups, offsets expired, coordinator moved away).
    pub fn forget_group(group: &str) {
        METRICS.with(|m| {
            m.groups.borrow_mut().remove(group);
        });
    }
}

/// Copies this shard's counters (the part of a `ShardSnapshot` that is not read from logs).
pub(crate) fn counters() -> snapshot::Counters {
    METRICS.with(|m| snapshot::Counters {
        topics: m.topics.borrow().clone(),
        partitions: m.partitions.borrow().clone(),
        apis: m
            .apis
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, a)| a.requests > 0)
            .map(|(k, a)| (k as i16, a.clone()))
            .collect(),
        errors: m.errors.borrow().clone(),
        connections_accepted: m.connections_accepted.get(),
        connections_refused: m.connections_refused.get(),
        requests_in_flight: m.requests_in_flight.get(),
        produce_waiting: m.produce_waiting.get(),
        produce_waiting_bytes: m.produce_waiting_bytes.get(),
        group_offsets: m
            .groups
            .borrow()
            .iter()
            .flat_map(|(g, offsets)| offsets.iter().map(move |((t, p), o)| (g.clone(), t.clone(), *p, *o)))
            .collect(),
    })
}

/// Number of records in each stored batch (header field; nothing decoded).
pub fn records_in(batches: &[bytes::Bytes]) -> u64 {
    batches.iter().filter_map(|b| storage::BatchHeader::parse(b).ok()).map(|h| h.records_count.max(0) as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_fresh_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().unwrap()
    }

    #[test]
    fn metrics_counters_are_per_thread_and_per_topic() {
        let c = on_fresh_thread(|| {
            produced("a", 0, 100, 2);
            produced("a", 1, 50, 1);
            fetched("a", 0, 100, 2);
            produced("b", 0, 7, 1);
            error(0, 3);
            error(0, 3);
            error(0, 0); // NONE is not an error
            let inflight = InFlight::start(0);
            let during = counters().requests_in_flight;
            inflight.finish();
            drop(InFlight::start(1)); // connection closed before the response: no latency
            (during, counters())
        });
        let (during, c) = c;
        assert_eq!(during, 1);
        assert_eq!(c.requests_in_flight, 0);
        assert_eq!(c.topics["a"], Traffic { bytes_in: 150, messages_in: 3, bytes_out: 100, messages_out: 2 });
        assert_eq!(c.topics["b"].bytes_in, 7);
        assert!(c.partitions.is_empty(), "per-partition series are off by default");
        assert_eq!(c.errors[&(0, 3)], 2);
        assert_eq!(c.errors.len(), 1);
        assert_eq!(c.apis.len(), 1);
        assert_eq!((c.apis[0].0, c.apis[0].1.requests, c.apis[0].1.latency.count()), (0, 1, 1));
        assert_eq!(on_fresh_thread(counters).topics.len(), 0, "another shard has its own counters");
    }

    #[test]
    fn metrics_per_partition_and_groups() {
        let c = on_fresh_thread(|| {
            set_per_partition(true);
            produced("t", 3, 10, 1);
            groups::committed("g", "t", 3, 5);
            groups::committed("g", "t", 3, 8);
            groups::committed("g", "t", 4, 1);
            groups::forget("g", "t", 4);
            groups::committed("h", "t", 0, 1);
            groups::forget_group("h");
            let waiting = ProduceWaiting::new(1000);
            let during = (counters().produce_waiting, counters().produce_waiting_bytes);
            drop(waiting);
            (during, counters())
        });
        let (during, c) = c;
        assert_eq!(during, (1, 1000));
        assert_eq!((c.produce_waiting, c.produce_waiting_bytes), (0, 0));
        assert_eq!(c.partitions[&("t".to_string(), 3)].bytes_in, 10);
        assert_eq!(c.group_offsets, vec![("g".to_string(), "t".to_string(), 3, 8)]);
    }
}
