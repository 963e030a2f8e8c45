//! Request versions older than kafka-protocol's codec that Kafka 3.x still serves (sarama 1.22
//! and the lag monitors built on it send them): ListOffsets v0, OffsetCommit v0-1,
//! OffsetFetch v0. Frames written by hand, answers compared byte for byte.

mod common;
use common::{batch, header_v1, TestBroker};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

fn string(v: &str) -> Vec<u8> {
    let mut b = (v.len() as i16).to_be_bytes().to_vec();
    b.extend_from_slice(v.as_bytes());
    b
}

fn produce(c: &mut common::Client, topic: &str, partition: i32, records: usize) {
    let mut p = PartitionProduceData::default();
    p.index = partition;
    p.records = Some(batch(records, "legacy", Compression::None));
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_data = vec![p];
    let mut r = ProduceRequest::default();
    r.acks = -1;
    r.timeout_ms = 5000;
    r.topic_data = vec![t];
    let resp: ProduceResponse = c.call(ApiKey::Produce, 7, &r);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
}

/// ListOffsets v0 request: replica -1, one topic, partitions (index, timestamp, max offsets).
fn list_offsets_v0(correlation: i32, topic: &str, partitions: &[(i32, i64, i32)]) -> Vec<u8> {
    let mut req = header_v1(2, 0, correlation, "sarama");
    req.extend_from_slice(&(-1i32).to_be_bytes());
    req.extend_from_slice(&1i32.to_be_bytes());
    req.extend(string(topic));
    req.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
    for (p, ts, max) in partitions {
        req.extend_from_slice(&p.to_be_bytes());
        req.extend_from_slice(&ts.to_be_bytes());
        req.extend_from_slice(&max.to_be_bytes());
    }
    req
}

#[test]
fn legacy_list_offsets_v0_golden() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    produce(&mut c, "legacy", 1, 7); // auto-created with 4 partitions
    let req = list_offsets_v0(21, "legacy", &[(1, -1, 1), (1, -2, 1), (0, -1, 1), (9, -1, 1), (1, -1, 0)]);
    let resp = c.roundtrip(&req).expect("answered, connection kept");
    // Header v0 (correlation), then [topic, [partition, error, [offsets]]].
    let mut want = 21i32.to_be_bytes().to_vec();
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend(string("legacy"));
    want.extend_from_slice(&5i32.to_be_bytes());
    let part = |want: &mut Vec<u8>, p: i32, error: i16, offsets: &[i64]| {
        want.extend_from_slice(&p.to_be_bytes());
        want.extend_from_slice(&error.to_be_bytes());
        want.extend_from_slice(&(offsets.len() as i32).to_be_bytes());
        for o in offsets {
            want.extend_from_slice(&o.to_be_bytes());
        }
    };
    part(&mut want, 1, 0, &[7]); // latest: the high watermark
    part(&mut want, 1, 0, &[0]); // earliest
    part(&mut want, 0, 0, &[0]); // an empty partition
    part(&mut want, 9, 3, &[]); // no such partition
    part(&mut want, 1, 0, &[]); // asked for no offsets
    assert_eq!(resp, want);
}

#[test]
fn legacy_offset_commit_v0_v1_and_fetch_v0_golden() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    produce(&mut c, "legacy-oc", 0, 3);
    // OffsetCommit v1: group, generation -1, member "", [topic, [partition, offset, timestamp, metadata]].
    let mut req = header_v1(8, 1, 31, "sarama");
    req.extend(string("old-group"));
    req.extend_from_slice(&(-1i32).to_be_bytes());
    req.extend(string(""));
    req.extend_from_slice(&1i32.to_be_bytes());
    req.extend(string("legacy-oc"));
    req.extend_from_slice(&2i32.to_be_bytes());
    for (p, offset) in [(0i32, 3i64), (8, 1)] {
        req.extend_from_slice(&p.to_be_bytes());
        req.extend_from_slice(&offset.to_be_bytes());
        req.extend_from_slice(&(-1i64).to_be_bytes());
        req.extend(string("v1"));
    }
    let mut want = 31i32.to_be_bytes().to_vec();
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend(string("legacy-oc"));
    want.extend_from_slice(&2i32.to_be_bytes());
    want.extend_from_slice(&0i32.to_be_bytes());
    want.extend_from_slice(&0i16.to_be_bytes());
    want.extend_from_slice(&8i32.to_be_bytes());
    want.extend_from_slice(&3i16.to_be_bytes()); // UNKNOWN_TOPIC_OR_PARTITION
    assert_eq!(c.roundtrip(&req).expect("answered"), want);
    // OffsetCommit v0 (no generation) moves it on.
    let mut req = header_v1(8, 0, 32, "sarama");
    req.extend(string("old-group"));
    req.extend_from_slice(&1i32.to_be_bytes());
    req.extend(string("legacy-oc"));
    req.extend_from_slice(&1i32.to_be_bytes());
    req.extend_from_slice(&0i32.to_be_bytes());
    req.extend_from_slice(&2i64.to_be_bytes());
    req.extend(string("v0"));
    let resp = c.roundtrip(&req).expect("answered");
    assert_eq!(&resp[resp.len() - 2..], &[0, 0]);
    // OffsetFetch v0: group, [topic, [partition]] -> [topic, [partition, offset, metadata, error]].
    let mut req = header_v1(9, 0, 33, "sarama");
    req.extend(string("old-group"));
    req.extend_from_slice(&1i32.to_be_bytes());
    req.extend(string("legacy-oc"));
    req.extend_from_slice(&2i32.to_be_bytes());
    req.extend_from_slice(&0i32.to_be_bytes());
    req.extend_from_slice(&1i32.to_be_bytes());
    let mut want = 33i32.to_be_bytes().to_vec();
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend(string("legacy-oc"));
    want.extend_from_slice(&2i32.to_be_bytes());
    want.extend_from_slice(&0i32.to_be_bytes());
    want.extend_from_slice(&2i64.to_be_bytes());
    want.extend(string("v0"));
    want.extend_from_slice(&0i16.to_be_bytes());
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend_from_slice(&(-1i64).to_be_bytes());
    want.extend(string(""));
    want.extend_from_slice(&0i16.to_be_bytes());
    assert_eq!(c.roundtrip(&req).expect("answered"), want);
}

#[test]
fn legacy_list_offsets_v0_hostile_count_closes_the_connection() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    let mut req = header_v1(2, 0, 5, "x");
    req.extend_from_slice(&(-1i32).to_be_bytes());
    req.extend_from_slice(&i32::MAX.to_be_bytes());
    c.send(&req);
    assert!(c.closed(), "a malformed v0 request closes the connection like any other");
    let mut ok = broker.connect();
    assert!(ok.roundtrip(&list_offsets_v0(6, "legacy-none", &[(0, -1, 1)])).is_some());
}
