//! Shared helpers for the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use riptide_testkit::{record_batch, Compression};
use storage::{FlushPolicy, Journal, JournalConfig, JournalKey, Log, LogConfig, ReadResult};

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
    let records = (0..count).map(|i| {
        (Some(Bytes::from(format!("key-{i}"))), Some(Bytes::from(vec![b'a' + (i % 26) as u8; value_len])))
    });
    record_batch(records, ts, compression)
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

/// `batch` with its partition leader epoch (bytes 12..16, outside the CRC) set, as a leader
/// stamps it.
pub fn with_epoch(batch: &Bytes, epoch: i32) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[12..16].copy_from_slice(&epoch.to_be_bytes());
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

/// Appends and waits until synced in the journal; returns the base offset.
pub async fn append_synced<B: storage::IoBackend>(log: &Log<B>, data: Bytes) -> i64 {
    let info = log.append(data).await.expect("append");
    log.wait_durable(info.log_end_offset, storage::Durability::Synced).await.expect("durable");
    info.base_offset
}

/// Appends, then writes everything to the segment files (`flush`); returns the base offset.
/// For tests about segments, indexes and retention, which look at the files.
pub async fn append_flushed<B: storage::IoBackend>(log: &Log<B>, data: Bytes) -> i64 {
    let base = append_synced(log, data).await;
    log.flush().await.expect("flush");
    base
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

/// A started journal in `<dir>/journal`, as a broker shard has one, of `bytes`.
pub async fn shared_journal<B: storage::IoBackend>(backend: &B, dir: &Path, bytes: u64) -> Journal<B> {
    let journal = Journal::open(backend.clone(), dir.join("journal"), JournalConfig::with_capacity(bytes));
    journal.begin(0).await.expect("journal starts");
    journal
}

/// A log writing through `journal` under partition number `p`.
pub async fn open_shared<B: storage::IoBackend>(backend: &B, dir: PathBuf, journal: &Journal<B>, p: i32, config: LogConfig) -> Log<B> {
    let key = JournalKey { topic_id: 1, partition: p };
    Log::open_with_journal(backend.clone(), dir, config, journal.clone(), key, Vec::new()).await.expect("open")
}
