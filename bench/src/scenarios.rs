//! Deterministic micro-scenarios for the CI instruction-count benches (run under callgrind).
//!
//! Inputs are built outside the measured function from fixed patterns, so the instruction count
//! of [`run_measured`] depends only on the code under test.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::hint::black_box;

/// Bytes checksummed by the CRC scenario.
pub const CRC_INPUT_BYTES: usize = 16 * 1024;
/// Target size of the record batch used by the produce and validation scenarios.
pub const BATCH_TARGET_BYTES: usize = 16 * 1024;
/// Value bytes per record in that batch.
pub const RECORD_VALUE_BYTES: usize = 1000;
/// Partitions in the produce request.
pub const PRODUCE_PARTITIONS: i32 = 4;
/// Produce request version encoded and decoded (librdkafka's common choice).
pub const PRODUCE_VERSION: i16 = 9;
/// Default iterations per scenario.
pub const ITERATIONS_DEFAULT: u32 = 100;

/// The scenarios, by name.
pub const SCENARIOS: &[&str] = &[
    "crc32c-16k",
    "produce-encode",
    "produce-decode",
    "validate-batches",
];

/// Fixed, non-trivial bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// One v2 record batch of about [`BATCH_TARGET_BYTES`], uncompressed.
pub fn record_batch() -> Bytes {
    let count = BATCH_TARGET_BYTES / (RECORD_VALUE_BYTES + 24);
    riptide_testkit::unkeyed_batch(count, Bytes::from(pattern(RECORD_VALUE_BYTES)), 1_700_000_000_000)
}

/// A Produce request with one topic and [`PRODUCE_PARTITIONS`] partitions of one batch each.
pub fn produce_request(batch: &Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench-topic")))
            .with_partition_data(
                (0..PRODUCE_PARTITIONS)
                    .map(|p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(batch.clone()))
                    })
                    .collect(),
            )])
}

/// Inputs prepared before measuring.
pub struct Inputs {
    pub crc_input: Vec<u8>,
    pub batch: Bytes,
    pub request: ProduceRequest,
    pub encoded_request: Bytes,
}

impl Inputs {
    pub fn new() -> Inputs {
        let batch = record_batch();
        let request = produce_request(&batch);
        let mut buf = BytesMut::new();
        request
            .encode(&mut buf, PRODUCE_VERSION)
            .expect("encoding a fixed produce request");
        Inputs {
            crc_input: pattern(CRC_INPUT_BYTES),
            batch,
            request,
            encoded_request: buf.freeze(),
        }
    }
}

impl Default for Inputs {
    fn default() -> Self {
        Self::new()
    }
}

/// The measured region: callgrind collects only inside this function
/// (`--toggle-collect=*run_measured*`). Returns a checksum so nothing is optimised away.
#[inline(never)]
pub fn run_measured(scenario: &str, inputs: &Inputs, iterations: u32) -> Option<u64> {
    let mut acc = 0_u64;
    match scenario {
        "crc32c-16k" => {
            for _ in 0..iterations {
                acc = acc.wrapping_add(u64::from(crc32c::crc32c(black_box(&inputs.crc_input))));
            }
        }
        "produce-encode" => {
            let mut buf = BytesMut::with_capacity(inputs.encoded_request.len());
            for _ in 0..iterations {
                buf.clear();
                black_box(&inputs.request).encode(&mut buf, PRODUCE_VERSION).ok()?;
                acc = acc.wrapping_add(buf.len() as u64);
            }
        }
        "produce-decode" => {
            for _ in 0..iterations {
                let mut b = black_box(inputs.encoded_request.clone());
                let r = ProduceRequest::decode(&mut b, PRODUCE_VERSION).ok()?;
                acc = acc.wrapping_add(r.topic_data.len() as u64);
            }
        }
        "validate-batches" => {
            for _ in 0..iterations {
                let headers = storage::validate_batches(black_box(&inputs.batch)).ok()?;
                acc = acc.wrapping_add(headers.len() as u64);
            }
        }
        _ => return None,
    }
    Some(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_all_run() {
        let inputs = Inputs::new();
        for s in SCENARIOS {
            assert!(run_measured(s, &inputs, 2).is_some(), "{s}");
        }
        assert!(run_measured("nope", &inputs, 1).is_none());
    }

    #[test]
    fn scenarios_batch_is_about_16k_and_valid() {
        let b = record_batch();
        assert!(b.len() > BATCH_TARGET_BYTES / 2 && b.len() <= BATCH_TARGET_BYTES + 1024, "{}", b.len());
        assert!(storage::validate_batches(&b).is_ok());
    }
}
