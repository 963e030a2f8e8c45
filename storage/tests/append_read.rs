//! Round trips of real Kafka batches through append and read.
extern crate riptide_storage as storage;
mod common;

use common::*;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use storage::{DmaBackend, Durability, Error, FaultyBackend, Log};

#[test]
fn append_read_round_trip_dma() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let log = Log::open(DmaBackend::new(), partition_dir(tmp.path()), uncached(config())).await.unwrap();
        let batches: Vec<_> = (0..20).map(|i| batch(1 + i % 5, 1000 + i as i64, 100 * i)).collect();
        let mut expected = Vec::new();
        for b in &batches {
            let base = append_synced(&log, b.clone()).await;
            expected.push(with_base(b, base));
        }
        assert_eq!(log.log_end_offset(), batches.iter().enumerate().map(|(i, _)| 1 + i as i64 % 5).sum::<i64>());
        assert_eq!(read_all(&log, 0).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn append_read_decodes_with_kafka_protocol() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/data/t-0".into(), config()).await.unwrap();
        append_synced(&log, batch(3, 10, 5)).await;
        let lz4 = batch_with(50, 20, 300, Compression::Lz4);
        let base = append_synced(&log, lz4).await;
        assert_eq!(base, 3);
        let r = log.read(3, 1 << 20).await.unwrap();
        let mut buf = r.batches[0].clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(set.compression, Compression::Lz4);
        assert_eq!(set.records.len(), 50);
        assert_eq!(set.records[0].offset, 3);
        assert_eq!(set.records[49].offset, 52);
    });
}

#[test]
fn append_read_several_batches_in_one_append() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/data/t-0".into(), config()).await.unwrap();
        let (a, b) = (batch(2, 1, 10), batch(3, 2, 10));
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        let info = log.append(both.into()).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset, info.log_end_offset), (0, 4, 5));
        log.flush().await.unwrap();
        let r = log.read(3, 1 << 20).await.unwrap();
        assert_eq!(r.batches, vec![with_base(&b, 2)]);
        let r = log.read(0, 1).await.unwrap();
        assert_eq!(r.batches, vec![with_base(&a, 0)], "first batch whole even beyond max_bytes");
    });
}

#[test]
fn append_read_cache_and_disk_agree() {
    run(|| async {
        let cached = Log::open(FaultyBackend::new(), "/c/t-0".into(), config()).await.unwrap();
        let disk = Log::open(FaultyBackend::new(), "/d/t-0".into(), uncached(config())).await.unwrap();
        for i in 0..50 {
            let b = batch(1 + i % 3, i as i64, 50);
            append_synced(&cached, b.clone()).await;
            append_synced(&disk, b).await;
        }
        assert!(cached.cache_bytes() > 0);
        assert_eq!(disk.cache_bytes(), 0);
        for offset in 0..cached.high_watermark() {
            for max in [1, 200, 5000] {
                let a = cached.read(offset, max).await.unwrap();
                let b = disk.read(offset, max).await.unwrap();
                assert_eq!(a.batches, b.batches, "offset {offset} max {max}");
            }
        }
    });
}

#[test]
fn append_read_out_of_range() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), config()).await.unwrap();
        append_synced(&log, batch(4, 1, 10)).await;
        assert!(matches!(log.read(5, 100).await, Err(Error::OffsetOutOfRange { requested: 5, .. })));
        assert!(matches!(log.read(-1, 100).await, Err(Error::OffsetOutOfRange { .. })));
        let r = log.read(4, 100).await.unwrap();
        assert!(r.batches.is_empty());
        assert_eq!(r.high_watermark, 4);
    });
}

#[test]
fn append_read_rejects_bad_batches() {
    run(|| async {
        let mut cfg = config();
        cfg.max_batch_bytes = 1000;
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), cfg).await.unwrap();
        let mut bad = batch(2, 1, 10).to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(log.append(bad.into()).await, Err(Error::CorruptBatch(_))));
        assert!(matches!(log.append(batch(2, 1, 2000)).await, Err(Error::BatchTooLarge { .. })));
        assert_eq!(log.log_end_offset(), 0);
    });
}

#[test]
fn append_read_hw_hides_unflushed_data() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend, "/d/t-0".into(), config()).await.unwrap();
        let info = log.append(batch(2, 1, 10)).await.unwrap();
        // Not yet synced: the high watermark has not moved, reads see nothing.
        assert_eq!(log.high_watermark(), 0);
        assert!(log.read(0, 100).await.unwrap().batches.is_empty());
        log.wait_durable(info.log_end_offset, Durability::Synced).await.unwrap();
        assert_eq!(log.high_watermark(), 2);
        assert_eq!(log.read(0, 100).await.unwrap().batches.len(), 1);
    });
}

#[test]
fn append_read_interval_policy_hw_is_written_end() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), interval(config())).await.unwrap();
        let info = log.append(batch(2, 1, 10)).await.unwrap();
        log.wait_durable(info.log_end_offset, Durability::Written).await.unwrap();
        assert_eq!(log.high_watermark(), 2);
        log.wait_durable(info.log_end_offset, Durability::Synced).await.unwrap();
        assert!(backend.sync_count() >= 1);
    });
}

#[test]
fn append_read_survives_reopen() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = partition_dir(tmp.path());
        let mut expected = Vec::new();
        {
            let log = Log::open(DmaBackend::new(), dir.clone(), config()).await.unwrap();
            for i in 0..10 {
                let b = batch(3, i, 777);
                let base = append_synced(&log, b.clone()).await;
                expected.push(with_base(&b, base));
            }
            log.close().await.unwrap();
        }
        let log = Log::open(DmaBackend::new(), dir.clone(), config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 30);
        assert_eq!(log.high_watermark(), 30);
        assert_eq!(read_all(&log, 0).await, expected);
        let b = batch(1, 99, 10);
        assert_eq!(append_synced(&log, b.clone()).await, 30);
        expected.push(with_base(&b, 30));
        assert_eq!(read_all(&log, 0).await, expected);
        log.remove().await.unwrap();
        assert!(!dir.exists());
    });
}

#[test]
fn append_read_cache_bound_can_shrink() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/data/t-0".into(), config()).await.unwrap();
        for i in 0..40 {
            append_synced(&log, batch(2, i as i64, 200)).await;
        }
        let before = log.cache_bytes();
        assert!(before > 4096);
        log.set_cache_bytes_max(4096);
        assert!(log.cache_bytes() <= 4096, "shrunk to the new bound");
        // Evicted batches are still served, from disk.
        let r = log.read(0, 1 << 20).await.unwrap();
        assert_eq!(r.batches.len(), 40);
        log.set_cache_bytes_max(0);
        assert_eq!(log.cache_bytes(), 0);
    });
}

#[test]
fn append_read_unique_batch_is_not_copied() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/z/t-0".into(), config()).await.unwrap();
        // A batch slice that is the only reference to its buffer (as a produce frame is once
        // the request around it is dropped) gets its offset rewritten in place.
        let frame = bytes::Bytes::from([vec![0u8; 100], batch(3, 1, 50).to_vec()].concat());
        let unique = frame.slice(100..);
        drop(frame);
        let at = unique.as_ptr();
        let first = log.append(batch(2, 1, 50)).await.unwrap(); // the next batch gets a non-zero base
        let info = log.append(unique).await.unwrap();
        log.wait_durable(info.log_end_offset, Durability::Synced).await.unwrap();
        assert_eq!(info.base_offset, first.log_end_offset);
        let read = log.read(info.base_offset, 1 << 20).await.unwrap();
        assert_eq!(read.batches[0].as_ptr(), at, "served from the cache without a copy");
        assert_eq!(i64::from_be_bytes(read.batches[0][..8].try_into().unwrap()), info.base_offset);
        // A shared one is copied: the caller's bytes must not change under it.
        let shared = batch(1, 1, 50);
        let keep = shared.clone();
        let info = log.append(shared).await.unwrap();
        log.wait_durable(info.log_end_offset, Durability::Synced).await.unwrap();
        let read = log.read(info.base_offset, 1 << 20).await.unwrap();
        assert_ne!(read.batches[0].as_ptr(), keep.as_ptr());
        assert_eq!(&keep[..8], &[0u8; 8], "caller's copy untouched");
    });
}

/// acks=1 answers once the write completes, before the high watermark moves: a consumer may
/// ask for an acknowledged offset that is not visible yet. It gets nothing (and waits), not
/// OFFSET_OUT_OF_RANGE; only offsets past the log end are out of range.
#[test]
fn append_read_between_high_watermark_and_log_end_is_empty() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/data/t-0".into(), config()).await.unwrap();
        append_synced(&log, batch(2, 1, 10)).await;
        // Not awaited: the writer has not run, so the high watermark is still 2.
        let a = log.append(batch(3, 2, 10)).await.unwrap();
        let b = log.append(batch(1, 3, 10)).await.unwrap();
        assert_eq!((log.high_watermark(), log.log_end_offset()), (2, 6));
        for offset in [a.base_offset, a.base_offset + 1, b.base_offset, log.log_end_offset()] {
            let r = log.read(offset, 1 << 20).await.unwrap_or_else(|e| panic!("offset {offset}: {e}"));
            assert!(r.batches.is_empty(), "offset {offset}: nothing above the high watermark");
            assert_eq!(r.high_watermark, 2);
        }
        assert!(matches!(log.read(7, 100).await, Err(Error::OffsetOutOfRange { .. })));
        log.flush().await.unwrap();
        assert_eq!(log.read(b.base_offset, 1 << 20).await.unwrap().batches.len(), 1);
    });
}

/// A read that reaches the end of what the segment files hold goes on with the batches still
/// in memory (journaled, not yet flushed) in the same answer.
#[test]
fn append_read_spans_segment_files_and_unflushed_batches() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/data/t-0".into(), uncached(config())).await.unwrap();
        let a = batch(2, 1, 100);
        append_flushed(&log, a.clone()).await;
        let b = batch(3, 2, 100);
        append_synced(&log, b.clone()).await;
        assert_eq!(log.segment_synced_offset(), 2, "the second batch is in memory only");
        let r = log.read(0, 1 << 20).await.unwrap();
        assert_eq!(r.batches, vec![with_base(&a, 0), with_base(&b, 2)]);
        let r = log.read(0, a.len() + 10).await.unwrap();
        assert_eq!(r.batches.len(), 1, "max_bytes still bounds the answer");
    });
}
