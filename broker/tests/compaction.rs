//! Compacted topics (cleanup.policy=compact) through the Kafka API: configs accepted and
//! validated, keyless records refused per partition (KIP-467), and the acceptance test of
//! issue 11: a compacted topic keeps the last value per key across segment rolls and restarts.

mod common;
use bytes::Bytes;
use common::{Client, TestBroker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const INVALID_CONFIG: i16 = 40;
const INVALID_RECORD: i16 = 87;

fn name(s: &str) -> TopicName {
    common::topic_name(s)
}

fn create(c: &mut Client, topic: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &common::create_topics_request(topic, partitions, 1, configs));
    resp.topics[0].error_code
}

/// One batch of (key, value) records; None key = keyless, None value = tombstone.
fn records(kvs: &[(Option<&str>, Option<&str>)]) -> Bytes {
    let records = kvs.iter().map(|(k, v)| (k.map(|k| Bytes::from(k.to_string())), v.map(|v| Bytes::from(v.to_string()))));
    // Timestamps now: tombstones stay delete.retention.ms after them.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    riptide_testkit::record_batch(records.collect::<Vec<_>>(), now, Compression::None)
}

fn produce(c: &mut Client, version: i16, topic: &str, parts: Vec<(i32, Bytes)>) -> Vec<produce_response::PartitionProduceResponse> {
    let req = common::produce_request(topic, parts);
    let mut resp: ProduceResponse = c.call(ApiKey::Produce, version, &req);
    let mut parts = resp.responses.remove(0).partition_responses;
    parts.sort_by_key(|p| p.index);
    parts
}

/// Every (offset, key, value) of a partition from offset 0, fetched batch by batch.
fn fetch_all(c: &mut Client, topic: &str, partition: i32) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut fp = FetchPartition::default();
        fp.partition = partition;
        fp.fetch_offset = offset;
        fp.partition_max_bytes = 1 << 20;
        let mut t = FetchTopic::default();
        t.topic = name(topic);
        t.partitions = vec![fp];
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_bytes = 50 << 20;
        req.topics = vec![t];
        let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &req);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at {offset}");
        let mut buf = p.records.clone().unwrap_or_default();
        if buf.is_empty() {
            assert!(offset >= p.high_watermark, "nothing at {offset} below the high watermark {}", p.high_watermark);
            return out;
        }
        while !buf.is_empty() {
            let header = storage::BatchHeader::parse(&buf).unwrap();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            for r in set.records {
                let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                out.push((r.offset, String::from_utf8(r.key.unwrap().to_vec()).unwrap(), value));
            }
            offset = header.next_offset();
        }
    }
}

#[test]
fn compaction_topic_configs_are_accepted_and_validated() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    assert_eq!(create(&mut c, "compacted", 1, &[("cleanup.policy", "compact"), ("delete.retention.ms", "1000")]), 0);
    assert_eq!(create(&mut c, "both", 1, &[("cleanup.policy", "compact,delete"), ("min.cleanable.dirty.ratio", "0.1")]), 0);
    assert_eq!(create(&mut c, "bad-policy", 1, &[("cleanup.policy", "compact,shred")]), INVALID_CONFIG);
    assert_eq!(create(&mut c, "bad-ratio", 1, &[("cleanup.policy", "compact"), ("min.cleanable.dirty.ratio", "1.5")]), INVALID_CONFIG);
    assert_eq!(create(&mut c, "bad-lag", 1, &[("min.compaction.lag.ms", "-3")]), INVALID_CONFIG);
    assert_eq!(create(&mut c, "bad-retention", 1, &[("delete.retention.ms", "soon")]), INVALID_CONFIG);
    // IncrementalAlterConfigs: APPEND compact to the default delete.
    let mut entry = AlterableConfig::default();
    entry.name = StrBytes::from_static_str("cleanup.policy");
    entry.config_operation = 2;
    entry.value = Some(StrBytes::from_static_str("compact"));
    let mut res = AlterConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = StrBytes::from_static_str("plain");
    res.configs = vec![entry];
    assert_eq!(create(&mut c, "plain", 1, &[]), 0);
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let resp: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, 1, &req);
    assert_eq!(resp.responses[0].error_code, 0, "{:?}", resp.responses[0].error_message);
    // From now on the topic refuses keyless records.
    let parts = produce(&mut c, 9, "plain", vec![(0, records(&[(None, Some("v"))]))]);
    assert_eq!(parts[0].error_code, INVALID_RECORD);
}

#[test]
fn compaction_keyless_records_are_refused_per_partition_with_record_errors() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    assert_eq!(create(&mut c, "kv", 2, &[("cleanup.policy", "compact")]), 0);
    let mixed = records(&[(Some("a"), Some("1")), (None, Some("2")), (Some("b"), None), (None, Some("4"))]);
    let keyed = records(&[(Some("a"), Some("1")), (Some("b"), None)]);
    let parts = produce(&mut c, 9, "kv", vec![(0, mixed.clone()), (1, keyed.clone())]);
    assert_eq!(parts[0].error_code, INVALID_RECORD);
    assert_eq!(parts[0].record_errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(), vec![1, 3]);
    let why = parts[0].record_errors[0].batch_index_error_message.as_ref().unwrap().to_string();
    assert_eq!(why, "Compacted topic cannot accept message without key in topic partition kv-0.");
    assert!(parts[0].error_message.as_ref().is_some_and(|m| m.contains("2 record errors")), "{:?}", parts[0].error_message);
    assert_eq!((parts[1].error_code, parts[1].base_offset), (0, 0), "the other partition is appended");
    // Compressed batches are checked too.
    let lz4 = riptide_testkit::record_batch(vec![(None, Some(Bytes::from("x")))], 1_700_000_000_000, Compression::Lz4);
    assert_eq!(produce(&mut c, 9, "kv", vec![(0, lz4)])[0].error_code, INVALID_RECORD);
    // Before v8 only the code.
    let old = produce(&mut c, 7, "kv", vec![(0, mixed.clone())]);
    assert_eq!((old[0].error_code, old[0].record_errors.len()), (INVALID_RECORD, 0));
    assert_eq!(fetch_all(&mut c, "kv", 0), vec![], "nothing of a refused batch was appended");
    // A topic that is not compacted takes keyless records.
    assert_eq!(create(&mut c, "plain", 1, &[]), 0);
    assert_eq!(produce(&mut c, 9, "plain", vec![(0, mixed)])[0].error_code, 0);
}

/// The acceptance test of issue 11.
#[test]
fn compaction_compacted_topic_keeps_the_last_value_per_key_across_segment_rolls_and_restarts() {
    const KEYS: usize = 8;
    const ROUNDS: usize = 40;
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    let configs = [("cleanup.policy", "compact"), ("segment.bytes", "2048"), ("min.cleanable.dirty.ratio", "0.01")];
    assert_eq!(create(&mut c, "latest", 1, &configs), 0);
    let mut want = BTreeMap::new();
    for round in 0..ROUNDS {
        for k in 0..KEYS {
            let (key, value) = (format!("key-{k}"), format!("value-{k}-{round}"));
            let tombstone = k == 0 && round == ROUNDS - 1;
            let value = (!tombstone).then_some(value);
            assert_eq!(produce(&mut c, 9, "latest", vec![(0, records(&[(Some(&key), value.as_deref())]))])[0].error_code, 0);
            want.insert(key, value);
        }
    }
    // Unique fillers: every update ends up in a sealed segment.
    for i in 0..60 {
        let (key, value) = (format!("filler-{i}"), format!("f{i}"));
        assert_eq!(produce(&mut c, 9, "latest", vec![(0, records(&[(Some(&key), Some(&value))]))])[0].error_code, 0);
        want.insert(key, Some(value));
    }
    let compacted = |c: &mut Client| {
        let got = fetch_all(c, "latest", 0);
        let updates = got.iter().filter(|r| r.1.starts_with("key-")).count();
        (got, updates)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while compacted(&mut c).1 > KEYS {
        assert!(Instant::now() < deadline, "not compacted in time: {} update records", compacted(&mut c).1);
        std::thread::sleep(Duration::from_millis(100));
    }
    let check = |got: &[(i64, String, Option<String>)]| {
        let mut seen = BTreeMap::new();
        for (_, key, value) in got {
            assert!(seen.insert(key.clone(), value.clone()).is_none(), "{key} twice: {got:?}");
        }
        assert_eq!(seen, want, "exactly the last value per key (the tombstone within delete.retention.ms)");
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    };
    let (before, _) = compacted(&mut c);
    check(&before);
    drop(c);
    let dir = broker.stop_keeping_data();
    let broker = TestBroker::start_groups(2, Default::default(), Some(dir));
    let mut c = broker.connect();
    let after = fetch_all(&mut c, "latest", 0);
    assert_eq!(after, before, "the same after a restart");
    // And the log goes on where it was.
    let parts = produce(&mut c, 9, "latest", vec![(0, records(&[(Some("key-1"), Some("after"))]))]);
    assert_eq!(parts[0].base_offset, (KEYS * ROUNDS + 60) as i64);
}
