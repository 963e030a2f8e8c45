//! Shared helpers for the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use storage::{FlushPolicy, Log, LogConfig, ReadResult};

/// Runs `f` on a fresh glommio executor thread.
pub fn run<G, F>(f: G)
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor thread");
}

/// Builds one Kafka v2 record batch with `count` records (values of `value_len` bytes),
/// timestamps `ts`, `ts + 1`, ... using kafka-protocol's encoder.
pub fn batch_with(count: usize, ts: i64, value_len: usize, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; value_len])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode batch");
    buf.freeze()
}

/// Uncompressed batch.
pub fn batch(count: usize, ts: i64, value_len: usize) -> Bytes {
    batch_with(count, ts, value_len, Compression::None)
}

/// `batch` with its base offset rewritten, as the log stores it.
pub fn with_base(batch: &Bytes, base: i64) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[..8].copy_from_slice(&base.to_be_bytes());
    b.freeze()
}

pub fn concat(result: &ReadResult) -> Vec<u8> {
    result.batches.iter().flat_map(|b| b.iter().copied()).collect()
}

/// Small-segment config used across tests: cache on, flush always, no retention.
pub fn config() -> LogConfig {
    LogConfig { retention_ms: None, ..LogConfig::default() }
}

pub fn uncached(mut config: LogConfig) -> LogConfig {
    config.cache_bytes_max = 0;
    config
}

pub fn interval(mut config: LogConfig) -> LogConfig {
    config.flush = FlushPolicy::Interval { ms: 5, bytes: 1 << 20 };
    config
}

/// A partition directory under a temp dir (the temp dir plays the data dir).
pub fn partition_dir(tmp: &Path) -> PathBuf {
    tmp.join("topic-0")
}

/// Appends and waits until synced; returns the base offset.
pub async fn append_synced<B: storage::IoBackend>(log: &Log<B>, data: Bytes) -> i64 {
    let info = log.append(data).await.expect("append");
    log.wait_durable(info.log_end_offset, storage::Durability::Synced).await.expect("durable");
    info.base_offset
}

/// Reads everything from `from` to the high watermark, batch by batch.
pub async fn read_all<B: storage::IoBackend>(log: &Log<B>, from: i64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.high_watermark() {
        let r = log.read(offset, 1 << 20).await.expect("read");
        assert!(!r.batches.is_empty(), "empty read at {offset} below hw {}", r.high_watermark);
        for b in r.batches {
            let h = storage::BatchHeader::parse(&b).unwrap();
            offset = h.base_offset + h.last_offset_delta as i64 + 1;
            out.push(b);
        }
    }
    out
}
