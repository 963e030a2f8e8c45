//! Malformed or hostile input gets a Kafka error code or a clean close, and the broker keeps
//! serving everyone else.

mod common;
use common::{batch, header_v1, TestBroker};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::records::Compression;

fn still_serving(broker: &TestBroker) {
    let mut c = broker.connect();
    assert!(c.roundtrip(&header_v1(18, 0, 1, "after")).is_some(), "broker must keep serving");
}

#[test]
fn bad_input_unknown_api_key_closes_connection() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    c.send(&header_v1(999, 0, 1, "x"));
    assert!(c.closed());
    let mut c = broker.connect();
    c.send(&header_v1(57, 0, 1, "x")); // a real key (UpdateFeatures) we do not serve
    assert!(c.closed());
    still_serving(&broker);
}

#[test]
fn bad_input_oversized_and_negative_frames_close_connection() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    c.send_raw(&(1i32 << 30).to_be_bytes()); // 1 GiB > socket.request.max.bytes
    assert!(c.closed());
    let mut c = broker.connect();
    c.send_raw(&(-5i32).to_be_bytes());
    assert!(c.closed());
    let mut c = broker.connect();
    c.send(&[0, 3]); // shorter than any header
    assert!(c.closed());
    still_serving(&broker);
}

#[test]
fn bad_input_truncated_body_closes_connection() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    let mut req = header_v1(3, 1, 1, "x"); // Metadata v1
    req.extend_from_slice(&[0, 0, 0, 5, 0]); // claims 5 topics, then ends
    c.send(&req);
    assert!(c.closed());
    still_serving(&broker);
}

#[test]
fn bad_input_unsupported_version_closes_connection() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    c.send(&header_v1(0, 2, 1, "x")); // Produce v2 is below our range
    assert!(c.closed());
    still_serving(&broker);
}

fn produce(topic: &str, partition: i32, records: bytes::Bytes) -> ProduceRequest {
    common::produce_request(topic, vec![(partition, records)])
}

fn error_of(resp: &ProduceResponse) -> i16 {
    resp.responses[0].partition_responses[0].error_code
}

#[test]
fn bad_input_corrupt_batch_gets_corrupt_message() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    let mut bytes = batch(3, "v", Compression::None).to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // breaks the CRC-32C
    let resp: ProduceResponse = c.call(ApiKey::Produce, 7, &produce("bad", 0, bytes.into()));
    assert_eq!(error_of(&resp), 2, "CORRUPT_MESSAGE");
    let resp: ProduceResponse = c.call(ApiKey::Produce, 7, &produce("bad", 0, bytes::Bytes::from_static(b"garbage")));
    assert_eq!(error_of(&resp), 2, "CORRUPT_MESSAGE for a non-batch");
    // A good batch on the same connection still succeeds at offset 0: nothing was written.
    let resp: ProduceResponse = c.call(ApiKey::Produce, 7, &produce("bad", 0, batch(3, "v", Compression::None)));
    assert_eq!(error_of(&resp), 0);
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 0);
}

#[test]
fn bad_input_unknown_partition_and_bad_acks_get_error_codes() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &produce("t", 99, batch(1, "v", Compression::None)));
    assert_eq!(error_of(&resp), 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let mut req = produce("t", 0, batch(1, "v", Compression::None));
    req.acks = 7;
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req);
    assert_eq!(error_of(&resp), 21, "INVALID_REQUIRED_ACKS");
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &produce("bad/name", 0, batch(1, "v", Compression::None)));
    assert_eq!(error_of(&resp), 3, "an illegal name is never auto-created");
}

#[test]
fn bad_input_huge_array_count_is_rejected_not_allocated() {
    let broker = TestBroker::start(1);
    // Metadata v1 claiming 2^31-1 topics: must close the connection, not abort the process.
    let mut c = broker.connect();
    let mut req = header_v1(3, 1, 1, "x");
    req.extend_from_slice(&i32::MAX.to_be_bytes());
    c.send(&req);
    assert!(c.closed());
    // Flexible Metadata v12: header v2 (client id, empty tags), then a compact array with a
    // varint count of 2^32-1.
    let mut c = broker.connect();
    let mut req = vec![0, 3, 0, 12, 0, 0, 0, 2, 0, 1, b'x', 0];
    req.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    c.send(&req);
    assert!(c.closed());
    still_serving(&broker);
}

/// Fuzz finding F5: decoding multiplies a request's size in memory, so only Produce may use
/// all of socket.request.max.bytes; a 2 MiB Metadata request closes the connection as soon as
/// its API key has arrived, and a 2 MiB Produce request is served.
#[test]
fn bad_input_large_request_other_than_produce_closes_connection() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    let mut req = header_v1(3, 1, 1, "x"); // Metadata v1 with ~190k topic names
    let topics: i32 = (2 << 20) / 11;
    req.extend_from_slice(&topics.to_be_bytes());
    for i in 0..topics {
        req.extend_from_slice(&9i16.to_be_bytes());
        req.extend_from_slice(format!("t{i:08}").as_bytes());
    }
    assert!(req.len() > 2 << 20);
    // Only the size and the first 64 KiB: the broker closes before the rest is sent.
    let mut start = (req.len() as i32).to_be_bytes().to_vec();
    start.extend_from_slice(&req[..64 << 10]);
    c.send_raw(&start);
    assert!(c.closed(), "closed with most of the request still unsent");
    // Three partitions of 700 KB batches (each under max.message.bytes): a 2 MB request.
    let big = riptide_testkit::unkeyed_batch(1, bytes::Bytes::from(vec![7u8; 700_000]), 1);
    let mut req = produce("big", 0, big.clone());
    for p in 1..3 {
        let mut part = req.topic_data[0].partition_data[0].clone();
        part.index = p;
        req.topic_data[0].partition_data.push(part);
    }
    let resp: ProduceResponse = broker.connect().call(ApiKey::Produce, 7, &req);
    let errors: Vec<i16> = resp.responses[0].partition_responses.iter().map(|p| p.error_code).collect();
    assert_eq!(errors, [0, 0, 0], "a Produce request over 1 MiB is served");
    still_serving(&broker);
}
