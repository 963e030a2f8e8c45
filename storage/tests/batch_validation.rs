//! Header parsing and batch validation.
extern crate riptide_storage as storage;
mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::records::Compression;
use storage::{validate_batches, BatchHeader, Error};

#[test]
fn batch_validation_parses_kafka_protocol_headers() {
    let b = batch_with(7, 1_000, 33, Compression::Lz4);
    let headers = validate_batches(&b).unwrap();
    assert_eq!(headers.len(), 1);
    let h = headers[0];
    assert_eq!(h.magic, 2);
    assert_eq!(h.records_count, 7);
    assert_eq!(h.last_offset_delta, 6);
    assert_eq!(h.base_timestamp, 1_000);
    assert_eq!(h.max_timestamp, 1_006);
    assert_eq!(h.total_size(), b.len());
    assert_eq!(h.attributes & 0x7, 3, "lz4");
    assert!(!h.is_transactional() && !h.is_control());
    assert_eq!(BatchHeader::parse(&b).unwrap(), h);
}

#[test]
fn batch_validation_concatenated_all_or_nothing() {
    let (a, b) = (batch(2, 1, 10), batch(3, 2, 10));
    let both = Bytes::from([&a[..], &b[..]].concat());
    assert_eq!(validate_batches(&both).unwrap().len(), 2);
    let mut broken = both.to_vec();
    let last = broken.len() - 1;
    broken[last] ^= 0x01;
    assert!(matches!(validate_batches(&broken.into()), Err(Error::CorruptBatch(_))));
}

#[test]
fn batch_validation_base_offset_not_covered_by_crc() {
    let b = with_base(&batch(2, 1, 10), 123_456);
    let h = validate_batches(&b).unwrap()[0];
    assert_eq!(h.base_offset, 123_456);
}

#[test]
fn batch_validation_rejects_malformed() {
    let good = batch(2, 1, 10);
    assert!(BatchHeader::parse(&good[..60]).is_err());
    assert!(validate_batches(&Bytes::new()).is_err());
    for (at, value) in [(16usize, 1u8), (21, 0xff), (30, 0x42)] {
        let mut bad = good.to_vec();
        bad[at] = value;
        assert!(validate_batches(&bad.into()).is_err(), "byte {at}");
    }
    let mut bad = good.to_vec();
    bad[8..12].copy_from_slice(&48i32.to_be_bytes());
    assert!(validate_batches(&bad.into()).is_err());
}
