//! The merged snapshot in the Prometheus text format (0.0.4), written with prometheus-client's
//! encoder (a `Collector` over the merged values, built per scrape).
//!
//! Names: `riptide_` prefix, base units (bytes, seconds), counters end in `_total`. The README's
//! metrics table maps each series to the Kafka JMX name it stands for.

use super::snapshot::Merged;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt::Error;
use storage::stats::{Histogram, LATENCY_BUCKETS_US};

/// The `Content-Type` of what `render` returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Renders `merged` as a Prometheus text exposition.
pub fn render(merged: Merged) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(MergedCollector(merged)));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// The `request` label of an API: Kafka's request name in snake case (`list_offsets`). Fetch is
/// `fetch_consumer` (Kafka's FetchConsumer): every fetch is a consumer's until replication adds
/// followers (`fetch_follower`). Unknown keys: `unknown`.
pub fn request_name(api_key: i16) -> String {
    use kafka_protocol::messages::ApiKey;
    match ApiKey::try_from(api_key) {
        Ok(ApiKey::Fetch) => "fetch_consumer".into(),
        Ok(key) => snake_case(&format!("{key:?}")),
        Err(_) => "unknown".into(),
    }
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`).
pub fn error_name(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        None => "NONE".into(),
        Some(kafka_protocol::error::ResponseError::Unknown(_)) => "UNKNOWN".into(),
        Some(e) => snake_case(&e.to_string()).to_uppercase(),
    }
}

fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug)]
struct MergedCollector(Merged);

/// One metric family being written: its descriptor, then one sample set per label set.
struct Family<'a> {
    encoder: prometheus_client::encoding::MetricEncoder<'a>,
    kind: MetricType,
}

impl<'a> Family<'a> {
    fn new(e: &'a mut DescriptorEncoder<'_>, name: &'a str, help: &str, kind: MetricType) -> Result<Family<'a>, Error> {
        Ok(Family { encoder: e.encode_descriptor(name, help, None, kind)?, kind })
    }

    fn value(&mut self, labels: &impl EncodeLabelSet, v: i64) -> Result<(), Error> {
        let mut m = self.encoder.encode_family(labels)?;
        match self.kind {
            MetricType::Counter => m.encode_counter::<NoLabelSet, u64, f64>(&(v.max(0) as u64), None),
            _ => m.encode_gauge(&v),
        }
    }

    fn histogram(&mut self, labels: &impl EncodeLabelSet, h: &Histogram) -> Result<(), Error> {
        let buckets: Vec<(f64, u64)> =
            LATENCY_BUCKETS_US.iter().zip(h.counts.iter()).map(|(&us, &n)| (us as f64 / 1e6, n)).collect();
        let mut m = self.encoder.encode_family(labels)?;
        m.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count(), &buckets, None)
    }
}

const NO_LABELS: [(&str, &str); 0] = [];

/// A series read off a struct: name, help, getter.
type Series<T, V> = (&'static str, &'static str, fn(&T) -> V);

fn single(e: &mut DescriptorEncoder, name: &str, help: &str, kind: MetricType, v: i64) -> Result<(), Error> {
    Family::new(e, name, help, kind)?.value(&NO_LABELS, v)
}

use MetricType::{Counter, Gauge};

impl Collector for MergedCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), Error> {
        let m = &self.0;
        // ---- broker ----
        Family::new(&mut e, "riptide_build_info", "Riptide version (value 1).", Gauge)?.value(&[("version", env!("CARGO_PKG_VERSION"))], 1)?;
        single(&mut e, "riptide_shards", "Shards (cores) the broker runs.", Gauge, m.shards as i64)?;
        single(&mut e, "riptide_metrics_shards_answered", "Shards whose counters this scrape includes.", Gauge, m.shards_answered as i64)?;
        single(&mut e, "riptide_controller_active", "1 on the broker that is the active controller (Kafka ActiveControllerCount).", Gauge, i64::from(m.controller_active))?;
        single(&mut e, "riptide_under_replicated_partitions", "Partitions with fewer in-sync replicas than replicas (Kafka UnderReplicatedPartitions); 0 without replication.", Gauge, 0)?;
        single(&mut e, "riptide_offline_partitions", "Partitions that cannot serve: log failed to open or poisoned (Kafka OfflinePartitionsCount).", Gauge, m.offline_partitions as i64)?;

        // ---- topics ----
        let topic_series: [Series<super::Traffic, u64>; 4] = [
            ("riptide_kafka_bytes_in", "Record batch bytes appended (Kafka BytesInPerSec).", |t| t.bytes_in),
            ("riptide_kafka_messages_in", "Records appended (Kafka MessagesInPerSec).", |t| t.messages_in),
            ("riptide_kafka_bytes_out", "Record batch bytes sent to consumers (Kafka BytesOutPerSec).", |t| t.bytes_out),
            ("riptide_kafka_messages_out", "Records sent to consumers.", |t| t.messages_out),
        ];
        for (name, help, get) in topic_series {
            let mut f = Family::new(&mut e, name, help, Counter)?;
            for (topic, t) in &m.topics {
                f.value(&[("topic", topic.as_str())], get(t) as i64)?;
            }
        }
        if m.per_partition {
            for (name, help, get) in topic_series {
                let name = name.replace("riptide_kafka_", "riptide_kafka_partition_");
                let mut f = Family::new(&mut e, &name, help, Counter)?;
                for ((topic, partition), t) in &m.partitions {
                    f.value(&[("topic", topic.clone()), ("partition", partition.to_string())], get(t) as i64)?;
                }
            }
        }

        // ---- requests ----
        let names: Vec<(i16, String)> = m.apis.keys().map(|&k| (k, request_name(k))).collect();
        let mut f = Family::new(&mut e, "riptide_kafka_requests", "Requests answered, per API (Kafka RequestsPerSec).", Counter)?;
        for (k, name) in &names {
            f.value(&[("request", name.as_str())], m.apis[k].requests as i64)?;
        }
        let mut f = Family::new(&mut e, "riptide_kafka_request_latency_seconds", "Time from a request read to its response written, per API (Kafka TotalTimeMs).", MetricType::Histogram)?;
        for (k, name) in &names {
            f.histogram(&[("request", name.as_str())], &m.apis[k].latency)?;
        }
        let mut f = Family::new(&mut e, "riptide_kafka_request_errors", "Error codes in responses (per partition where the API has partitions), per API and error (Kafka ErrorsPerSec).", Counter)?;
        for ((k, code), n) in &m.errors {
            let labels = [("request", request_name(*k)), ("error", error_name(*code)), ("code", code.to_string())];
            f.value(&labels, *n as i64)?;
        }
        single(&mut e, "riptide_kafka_requests_in_flight", "Requests read whose response is not written yet (Kafka RequestQueueSize + in progress).", Gauge, m.requests_in_flight as i64)?;
        single(&mut e, "riptide_kafka_produce_waiting_requests", "Produce requests appended and waiting for the durability their acks ask for.", Gauge, m.produce_waiting as i64)?;
        single(&mut e, "riptide_kafka_produce_waiting_bytes", "Record bytes of the produce requests waiting for acks.", Gauge, m.produce_waiting_bytes as i64)?;
        single(&mut e, "riptide_kafka_request_budget_used_bytes", "Request bytes held by the shards' request budgets (Kafka queued.max.request.bytes in use).", Gauge, m.request_budget_used_bytes as i64)?;
        single(&mut e, "riptide_kafka_request_budget_bytes", "Size of the shards' request budgets (main pools).", Gauge, m.request_budget_bytes as i64)?;
        single(&mut e, "riptide_connections", "Client connections open.", Gauge, m.connections_open as i64)?;
        single(&mut e, "riptide_connections_accepted", "Client connections accepted.", Counter, m.connections_accepted as i64)?;
        single(&mut e, "riptide_connections_refused", "Client connections refused (a shard's connection limit reached).", Counter, m.connections_refused as i64)?;

        // ---- storage ----
        let s = &m.storage;
        single(&mut e, "riptide_storage_written_bytes", "Bytes written to disk with O_DIRECT (whole blocks: padding and rewritten tails included).", Counter, s.written_bytes as i64)?;
        single(&mut e, "riptide_storage_writes", "O_DIRECT writes completed.", Counter, s.writes as i64)?;
        Family::new(&mut e, "riptide_storage_write_latency_seconds", "Latency of each O_DIRECT write.", MetricType::Histogram)?.histogram(&NO_LABELS, &s.write_latency)?;
        single(&mut e, "riptide_storage_read_bytes", "Bytes read from disk (batch-cache misses, recovery, index lookups).", Counter, s.read_bytes as i64)?;
        single(&mut e, "riptide_storage_sync_rounds", "Sync rounds: one syncfs per round shared by a shard's logs, or one fdatasync (Kafka LogFlushRateAndTimeMs, rate).", Counter, s.sync_rounds as i64)?;
        Family::new(&mut e, "riptide_storage_sync_latency_seconds", "Latency of each sync round (Kafka LogFlushRateAndTimeMs, time).", MetricType::Histogram)?.histogram(&NO_LABELS, &s.sync_latency)?;
        single(&mut e, "riptide_storage_journal_rounds", "Shard journal rounds: one sequential write of every partition's new batches.", Counter, s.journal_rounds as i64)?;
        single(&mut e, "riptide_storage_journal_written_bytes", "Bytes the journal rounds wrote (block-padded).", Counter, s.journal_bytes as i64)?;
        single(&mut e, "riptide_storage_journal_syncs", "fdatasyncs of the shard journal (each covers every round written before it).", Counter, s.journal_syncs as i64)?;
        single(&mut e, "riptide_storage_direct_appends", "Appends written straight to the segment files, not through the journal (256 KiB and larger, or to a log with 1 MiB waiting).", Counter, s.direct_appends as i64)?;
        single(&mut e, "riptide_storage_direct_append_bytes", "Bytes of the direct appends.", Counter, s.direct_bytes as i64)?;
        single(&mut e, "riptide_storage_cache_hits", "Log reads served from the batch cache.", Counter, s.cache_hits as i64)?;
        single(&mut e, "riptide_storage_cache_misses", "Log reads that went to disk.", Counter, s.cache_misses as i64)?;
        let (cache, queue) = m.logs.values().fold((0, 0), |(c, q), l| (c + l.cache_bytes, q + l.write_queue_bytes));
        single(&mut e, "riptide_storage_cache_bytes", "Bytes held by the batch caches.", Gauge, cache as i64)?;
        single(&mut e, "riptide_storage_cache_budget_bytes", "Batch cache budget of all shards.", Gauge, m.cache_budget_bytes as i64)?;
        single(&mut e, "riptide_storage_write_queue_bytes", "Bytes appended and waiting for the storage writers.", Gauge, queue as i64)?;

        // ---- logs ----
        let mut per_topic: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for l in m.logs.values() {
            let t = per_topic.entry(l.topic.as_str()).or_default();
            t.0 += l.size_bytes;
            t.1 += 1;
        }
        let mut f = Family::new(&mut e, "riptide_log_size_bytes", "Bytes in the topic's segments (Kafka Log Size, summed over partitions).", Gauge)?;
        for (topic, (size, _)) in &per_topic {
            f.value(&[("topic", *topic)], *size as i64)?;
        }
        let mut f = Family::new(&mut e, "riptide_log_partitions", "Open partitions of the topic.", Gauge)?;
        for (topic, (_, n)) in &per_topic {
            f.value(&[("topic", *topic)], *n as i64)?;
        }
        if m.per_partition {
            let gauges: [Series<super::snapshot::LogGauges, i64>; 4] = [
                ("riptide_partition_log_start_offset", "First offset of the partition (Kafka LogStartOffset).", |l| l.log_start),
                ("riptide_partition_log_end_offset", "Next offset to be assigned (Kafka LogEndOffset).", |l| l.log_end),
                ("riptide_partition_high_watermark", "Offset below which consumers see data.", |l| l.high_watermark),
                ("riptide_partition_size_bytes", "Bytes in the partition's segments (Kafka Log Size).", |l| l.size_bytes as i64),
            ];
            for (name, help, get) in gauges {
                let mut f = Family::new(&mut e, name, help, Gauge)?;
                for ((topic, partition), l) in &m.logs {
                    f.value(&[("topic", topic.clone()), ("partition", partition.to_string())], get(l))?;
                }
            }
        }

        // ---- consumer groups ----
        let mut lag: std::collections::BTreeMap<(&str, &str), (i64, i64)> = Default::default();
        for ((group, topic, _), (_, l)) in &m.groups {
            if let Some(l) = l {
                let e = lag.entry((group.as_str(), topic.as_str())).or_default();
                e.0 += l;
                e.1 = e.1.max(*l);
            }
        }
        let mut f = Family::new(&mut e, "riptide_consumer_group_lag", "Messages between the high watermark and the group's committed offset, summed over the topic's partitions.", Gauge)?;
        for ((group, topic), (sum, _)) in &lag {
            f.value(&[("group", *group), ("topic", *topic)], *sum)?;
        }
        let mut f = Family::new(&mut e, "riptide_consumer_group_lag_max", "Largest lag of one partition of the topic (the consumers' records-lag-max).", Gauge)?;
        for ((group, topic), (_, max)) in &lag {
            f.value(&[("group", *group), ("topic", *topic)], *max)?;
        }
        if m.per_partition {
            let mut f = Family::new(&mut e, "riptide_consumer_group_committed_offset", "The group's committed offset for the partition.", Gauge)?;
            for ((group, topic, partition), (committed, _)) in &m.groups {
                f.value(&[("group", group.clone()), ("topic", topic.clone()), ("partition", partition.to_string())], *committed)?;
            }
            let mut f = Family::new(&mut e, "riptide_consumer_group_partition_lag", "High watermark minus the group's committed offset (kafka_exporter's kafka_consumergroup_lag).", Gauge)?;
            for ((group, topic, partition), (_, l)) in &m.groups {
                if let Some(l) = l {
                    f.value(&[("group", group.clone()), ("topic", topic.clone()), ("partition", partition.to_string())], *l)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snapshot::{LogGauges, ShardSnapshot};
    use crate::metrics::{ApiStats, Traffic};
    use std::time::Duration;

    fn sample(per_partition: bool) -> String {
        let mut s = ShardSnapshot { is_controller: true, connections_open: 3, ..Default::default() };
        s.counters.topics.insert("orders".into(), Traffic { bytes_in: 2048, messages_in: 20, bytes_out: 1024, messages_out: 10 });
        s.counters.partitions.insert(("orders".into(), 1), Traffic { bytes_in: 2048, messages_in: 20, bytes_out: 1024, messages_out: 10 });
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_millis(20));
        s.counters.apis.push((0, ApiStats { requests: 2, latency: h.clone() }));
        s.counters.apis.push((1, ApiStats { requests: 1, latency: Histogram::default() }));
        s.counters.errors.insert((0, 3), 4);
        s.counters.group_offsets.push(("billing".into(), "orders".into(), 1, 15));
        s.storage.sync_latency = h;
        s.storage.sync_rounds = 2;
        s.storage.journal_rounds = 7;
        s.storage.journal_syncs = 3;
        s.storage.direct_appends = 4;
        s.logs.push(LogGauges { topic: "orders".into(), partition: 1, log_start: 0, log_end: 20, high_watermark: 20, size_bytes: 2048, cache_bytes: 2048, write_queue_bytes: 0 });
        render(Merged::of(1, per_partition, vec![s]))
    }

    #[test]
    fn exposition_names_units_and_labels() {
        let text = sample(false);
        for line in [
            "# TYPE riptide_kafka_bytes_in_total counter",
            "riptide_kafka_bytes_in_total{topic=\"orders\"} 2048",
            "riptide_kafka_messages_in_total{topic=\"orders\"} 20",
            "riptide_kafka_requests_total{request=\"produce\"} 2",
            "riptide_kafka_requests_total{request=\"fetch_consumer\"} 1",
            "riptide_kafka_request_errors_total{request=\"produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\",code=\"3\"} 4",
            "# TYPE riptide_kafka_request_latency_seconds histogram",
            "riptide_kafka_request_latency_seconds_bucket{request=\"produce\",le=\"0.001\"} 1",
            "riptide_kafka_request_latency_seconds_bucket{request=\"produce\",le=\"0.025\"} 2",
            "riptide_kafka_request_latency_seconds_bucket{request=\"produce\",le=\"+Inf\"} 2",
            "riptide_kafka_request_latency_seconds_count{request=\"produce\"} 2",
            "riptide_storage_sync_rounds_total 2",
            "riptide_storage_journal_rounds_total 7",
            "riptide_storage_journal_syncs_total 3",
            "riptide_storage_direct_appends_total 4",
            "riptide_storage_sync_latency_seconds_count 2",
            "riptide_controller_active 1",
            "riptide_under_replicated_partitions 0",
            "riptide_offline_partitions 0",
            "riptide_connections 3",
            "riptide_log_size_bytes{topic=\"orders\"} 2048",
            "riptide_consumer_group_lag{group=\"billing\",topic=\"orders\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert!(text.contains("riptide_kafka_request_latency_seconds_sum{request=\"produce\"} 0.0207"), "{text}");
        assert!(!text.contains("partition=\""), "no per-partition series by default:\n{text}");
    }

    #[test]
    fn exposition_per_partition_series_behind_the_flag() {
        let text = sample(true);
        for line in [
            "riptide_kafka_partition_bytes_in_total{topic=\"orders\",partition=\"1\"} 2048",
            "riptide_partition_log_end_offset{topic=\"orders\",partition=\"1\"} 20",
            "riptide_partition_high_watermark{topic=\"orders\",partition=\"1\"} 20",
            "riptide_consumer_group_committed_offset{group=\"billing\",topic=\"orders\",partition=\"1\"} 15",
            "riptide_consumer_group_partition_lag{group=\"billing\",topic=\"orders\",partition=\"1\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn exposition_request_and_error_names() {
        assert_eq!(request_name(0), "produce");
        assert_eq!(request_name(2), "list_offsets");
        assert_eq!(request_name(18), "api_versions");
        assert_eq!(request_name(1), "fetch_consumer");
        assert_eq!(request_name(-1), "unknown");
        assert_eq!(error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
    }
}
