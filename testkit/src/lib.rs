//! Helpers shared by tests and benches: real Kafka v2 record batches, encoded by the
//! kafka-protocol crate as a client would encode them.

use bytes::{Bytes, BytesMut};
pub use kafka_protocol::records::Compression;
use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// One record batch holding `records` (key, value) in order, offsets 0.., timestamps
/// `first_timestamp_ms`, `first_timestamp_ms + 1`, ...
pub fn record_batch<I>(records: I, first_timestamp_ms: i64, compression: Compression) -> Bytes
where
    I: IntoIterator<Item = (Option<Bytes>, Option<Bytes>)>,
{
    producer_batch(records, first_timestamp_ms, compression, (-1, -1, 0))
}

/// An idempotent producer's batch of `count` small records: producer id, epoch, and the
/// sequence of its first record, as librdkafka or the Java client would send it.
pub fn idempotent_batch(producer_id: i64, epoch: i16, first_sequence: i32, count: usize) -> Bytes {
    let records = (0..count).map(|i| (None, Some(Bytes::from(format!("p{producer_id}-e{epoch}-s{}", first_sequence as usize + i)))));
    producer_batch(records, 1_000, Compression::None, (producer_id, epoch, first_sequence))
}

/// `record_batch` written by a producer: (producer id, epoch, sequence of the first record).
pub fn producer_batch<I>(records: I, first_timestamp_ms: i64, compression: Compression, producer: (i64, i16, i32)) -> Bytes
where
    I: IntoIterator<Item = (Option<Bytes>, Option<Bytes>)>,
{
    let (producer_id, producer_epoch, first_sequence) = producer;
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: first_sequence.wrapping_add(i as i32),
            timestamp: first_timestamp_ms + i as i64,
            key,
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    // Encoding in-memory records into a growable buffer only fails on a codec error, which
    // would be a bug in the test itself.
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode record batch");
    buf.freeze()
}

/// `count` records without keys, every value `value`.
pub fn unkeyed_batch(count: usize, value: Bytes, first_timestamp_ms: i64) -> Bytes {
    record_batch((0..count).map(|_| (None, Some(value.clone()))), first_timestamp_ms, Compression::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn testkit_record_batch_round_trips() {
        let b = record_batch((0..3).map(|i| (Some(Bytes::from(format!("k{i}"))), Some(Bytes::from(format!("v{i}"))))), 1_000, Compression::Lz4);
        let set = RecordBatchDecoder::decode(&mut b.clone()).unwrap();
        assert_eq!(set.records.len(), 3);
        assert_eq!(set.records[2].key.as_deref(), Some(&b"k2"[..]));
        assert_eq!(set.records[2].timestamp, 1_002);
    }

    #[test]
    fn testkit_idempotent_batch_carries_producer_fields() {
        let b = idempotent_batch(7, 2, 40, 3);
        assert_eq!(i64::from_be_bytes(b[43..51].try_into().unwrap()), 7, "producer id");
        assert_eq!(i16::from_be_bytes(b[51..53].try_into().unwrap()), 2, "epoch");
        assert_eq!(i32::from_be_bytes(b[53..57].try_into().unwrap()), 40, "base sequence");
        assert_eq!(RecordBatchDecoder::decode(&mut b.clone()).unwrap().records.len(), 3);
    }
}
