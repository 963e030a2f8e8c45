//! Batches produced on any shard come back from Fetch byte-identical (but for the base offset the
//! broker assigns), across shards, with long polling that wakes on new data.

mod common;
use bytes::Bytes;
use common::{batch, TestBroker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use std::time::{Duration, Instant};

fn name(s: &str) -> TopicName {
    common::topic_name(s)
}

fn produce(topic: &str, parts: Vec<(i32, Bytes)>) -> ProduceRequest {
    common::produce_request(topic, parts)
}

fn fetch(topic: &str, parts: &[(i32, i64)], max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    let mut t = FetchTopic::default();
    t.topic = name(topic);
    t.partitions = parts
        .iter()
        .map(|(p, off)| {
            let mut fp = FetchPartition::default();
            fp.partition = *p;
            fp.fetch_offset = *off;
            fp.partition_max_bytes = 1 << 20;
            fp
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = min_bytes;
    req.max_bytes = 50 << 20;
    req.isolation_level = 1;
    req.topics = vec![t];
    req
}

fn values(records: &Bytes) -> Vec<(i64, String)> {
    let mut buf = records.clone();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        for r in set.records {
            out.push((r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
        }
    }
    out
}

#[test]
fn produce_fetch_round_trip_across_shards() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    // Four partitions: shard_for spreads consecutive partitions over both shards, so one request
    // touches the local shard and the other one.
    let parts: Vec<(i32, Bytes)> = (0..4).map(|p| (p, batch(5, &format!("p{p}"), Compression::None))).collect();
    for round in 0..3 {
        let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &produce("rt", parts.clone()));
        for pr in &resp.responses[0].partition_responses {
            assert_eq!(pr.error_code, 0);
            assert_eq!(pr.base_offset, round * 5, "offsets are assigned per partition");
        }
    }
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch("rt", &[(0, 0), (1, 0), (2, 0), (3, 7)], 0, 0));
    let ps = &resp.responses[0].partitions;
    assert_eq!(ps.len(), 4);
    for (i, p) in ps.iter().enumerate() {
        assert_eq!(p.error_code, 0);
        assert_eq!(p.high_watermark, 15);
        assert_eq!(p.last_stable_offset, 15, "LSO = HW without transactions");
        let got = values(p.records.as_ref().unwrap());
        let first = if i == 3 { 5 } else { 0 }; // fetch from the middle returns the whole batch
        assert_eq!(got.len(), 15 - first as usize);
        assert_eq!(got[0], (first, format!("p{i}-0")));
    }
    // Stored bytes equal the produced bytes after the 8-byte base offset.
    let stored = resp.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(&stored[8..parts[0].1.len()], &parts[0].1[8..]);
}

#[test]
fn produce_fetch_lz4_batches_served_as_stored() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    let b = batch(100, "z", Compression::Lz4);
    let resp: ProduceResponse = c.call(ApiKey::Produce, 8, &produce("lz", vec![(0, b.clone())]));
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 4, &fetch("lz", &[(0, 0)], 0, 0));
    let stored = resp.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(&stored[8..], &b[8..], "compressed batch is not re-encoded");
    assert_eq!(values(&stored).len(), 100);
}

#[test]
fn produce_fetch_long_poll_wakes_on_new_data() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    let _: ProduceResponse = c.call(ApiKey::Produce, 9, &produce("lp", vec![(1, batch(1, "a", Compression::None))]));
    let addr = broker.addr;
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut c = common::TestBroker::connect_to(addr);
        let _: ProduceResponse = c.call(ApiKey::Produce, 9, &produce("lp", vec![(2, batch(1, "b", Compression::None))]));
    });
    let started = Instant::now();
    // Waits on partitions of both shards for up to 8 s; the produce after 300 ms must end it.
    let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &fetch("lp", &[(1, 1), (2, 0)], 8000, 1));
    let waited = started.elapsed();
    producer.join().unwrap();
    assert!(waited < Duration::from_secs(6), "fetch slept through new data ({waited:?})");
    let p2 = &resp.responses[0].partitions[1];
    assert_eq!(values(p2.records.as_ref().unwrap()), vec![(0, "b-0".to_string())]);
}

#[test]
fn produce_fetch_out_of_range_and_list_offsets() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    for _ in 0..4 {
        let _: ProduceResponse = c.call(ApiKey::Produce, 9, &produce("lo", vec![(0, batch(10, "x", Compression::None))]));
    }
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch("lo", &[(0, 500)], 0, 0));
    assert_eq!(resp.responses[0].partitions[0].error_code, 1, "OFFSET_OUT_OF_RANGE");
    let mut t = ListOffsetsTopic::default();
    t.name = name("lo");
    t.partitions = [-2i64, -1, 1_700_000_000_005, 1_800_000_000_000]
        .iter()
        .map(|ts| {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = 0;
            p.timestamp = *ts;
            p
        })
        .collect();
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req);
    let offsets: Vec<i64> = resp.topics[0].partitions.iter().map(|p| p.offset).collect();
    // earliest, latest, the first record with a timestamp >= T (inside a batch), none later.
    assert_eq!(offsets, vec![0, 40, 5, -1]);
}

#[test]
fn produce_idempotent_retry_is_not_written_twice() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    let mut raw = batch(3, "i", Compression::None).to_vec();
    // producer id 42 (bytes 43..51), epoch 0 (51..53), base sequence 0 (53..57); the CRC
    // (17..21) covers them, so recompute it.
    raw[43..51].copy_from_slice(&42i64.to_be_bytes());
    raw[51..53].copy_from_slice(&0i16.to_be_bytes());
    raw[53..57].copy_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&raw[21..]);
    raw[17..21].copy_from_slice(&crc.to_be_bytes());
    let b = Bytes::from(raw);
    let first: ProduceResponse = c.call(ApiKey::Produce, 9, &produce("idem", vec![(0, b.clone())]));
    let retry: ProduceResponse = c.call(ApiKey::Produce, 9, &produce("idem", vec![(0, b)]));
    assert_eq!(first.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(first.responses[0].partition_responses[0].base_offset, 0);
    assert_eq!(retry.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(retry.responses[0].partition_responses[0].base_offset, 0, "duplicate acked at its offset");
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch("idem", &[(0, 0)], 0, 0));
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 3, "written once");
}

#[test]
fn connection_ready_response_not_held_behind_pending_one() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    let _: ProduceResponse = c.call(ApiKey::Produce, 9, &produce("hol", vec![(0, batch(1, "a", Compression::None))]));
    // Pipelined: a request answered at once, then a fetch that waits (up to 30 s) for data.
    c.send(&common::encode_request(ApiKey::ApiVersions, 3, 101, &ApiVersionsRequest::default()));
    c.send(&common::encode_request(ApiKey::Fetch, 12, 102, &fetch("hol", &[(1, 0)], 30_000, 1)));
    // The first answer must not wait in the broker's buffer behind the pending fetch (the read
    // times out after 10 s).
    let first = c.recv().expect("ApiVersions answered while the fetch is still waiting");
    assert_eq!(i32::from_be_bytes(first[..4].try_into().unwrap()), 101);
    let mut other = broker.connect();
    let _: ProduceResponse = other.call(ApiKey::Produce, 9, &produce("hol", vec![(1, batch(1, "b", Compression::None))]));
    let second = c.recv().expect("fetch answered once data arrived");
    assert_eq!(i32::from_be_bytes(second[..4].try_into().unwrap()), 102);
}

#[test]
fn fetch_response_budget_shared_across_partitions() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    let b = batch(50, "s", Compression::None);
    for _ in 0..3 {
        let parts = (0..4).map(|p| (p, b.clone())).collect();
        let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &produce("share", parts));
        assert!(resp.responses[0].partition_responses.iter().all(|p| p.error_code == 0));
    }
    // Room for four batches in all: each partition gets one, instead of the first partition
    // taking three and the others nothing.
    let mut req = fetch("share", &[(0, 0), (1, 0), (2, 0), (3, 0)], 0, 0);
    req.max_bytes = 4 * b.len() as i32 + 100;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
    let sizes: Vec<usize> = resp.responses[0].partitions.iter().map(|p| p.records.as_ref().map_or(0, |r| r.len())).collect();
    assert_eq!(sizes, vec![b.len(); 4], "one whole batch per partition");
}
