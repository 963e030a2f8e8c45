//! Retention by time and size, delete_records and the persisted log start offset.
extern crate riptide_storage as storage;
mod common;

use common::*;
use storage::{DmaBackend, Error, FaultyBackend, Log, LogConfig};

fn rolling(segment_bytes: u64) -> LogConfig {
    let mut cfg = config();
    cfg.segment_bytes = segment_bytes;
    cfg
}

#[test]
fn retention_by_time_deletes_old_segments_never_active() {
    run(|| async {
        let mut cfg = rolling(3000);
        cfg.retention_ms = Some(1000);
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), cfg).await.unwrap();
        // 10 segments of 2 batches each (1 offset per batch) with timestamps 0..20 s.
        for i in 0..20 {
            append_flushed(&log, batch(1, i * 1000, 1200)).await;
        }
        let before = log.segment_base_offsets();
        assert_eq!(before.len(), 10);
        // now = 10.5 s: segments whose max timestamp < 9.5 s go (segments with ts <= 9000).
        let deleted = log.apply_retention(10_500).await.unwrap();
        assert_eq!(deleted, 5);
        assert_eq!(log.log_start_offset(), 10);
        assert!(matches!(log.read(0, 100).await, Err(Error::OffsetOutOfRange { .. })));
        assert_eq!(read_all(&log, 10).await.len(), 10);
        // Far future: everything but the active segment.
        log.apply_retention(i64::MAX / 2).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_start_offset(), 18);
    });
}

#[test]
fn retention_by_bytes() {
    run(|| async {
        let mut cfg = rolling(3000);
        cfg.retention_bytes = Some(6000);
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), cfg).await.unwrap();
        for i in 0..20 {
            append_flushed(&log, batch(1, i, 1200)).await;
        }
        let deleted = log.apply_retention(0).await.unwrap();
        assert!(deleted > 0);
        let bases = log.segment_base_offsets();
        assert_eq!(bases.len(), 20 / 2 - deleted);
        assert_eq!(log.log_start_offset(), bases[0]);
        assert!(bases.len() >= 3, "keeps about retention_bytes: {bases:?}");
        assert_eq!(log.apply_retention(0).await.unwrap(), 0);
    });
}

#[test]
fn retention_none_keeps_everything() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), rolling(3000)).await.unwrap();
        for i in 0..10 {
            append_flushed(&log, batch(1, i, 1200)).await;
        }
        assert_eq!(log.apply_retention(i64::MAX / 2).await.unwrap(), 0);
    });
}

#[test]
fn retention_delete_records_persists_log_start() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = partition_dir(tmp.path());
        {
            let log = Log::open(DmaBackend::new(), dir.clone(), rolling(3000)).await.unwrap();
            for i in 0..10 {
                append_flushed(&log, batch(2, i, 1200)).await;
            }
            assert!(matches!(log.delete_records(21).await, Err(Error::OffsetOutOfRange { .. })));
            assert_eq!(log.delete_records(7).await.unwrap(), 7);
            // Segments [0,4) and [4,8)? Segment holding 7 stays; earlier ones go.
            assert!(log.segment_base_offsets()[0] <= 7);
            assert!(log.segment_base_offsets()[0] > 0);
            assert!(matches!(log.read(6, 100).await, Err(Error::OffsetOutOfRange { .. })));
            // Reading 7 returns the whole batch containing it (base 6).
            let r = log.read(7, 100).await.unwrap();
            assert_eq!(storage::BatchHeader::parse(&r.batches[0]).unwrap().base_offset, 6);
            assert_eq!(r.log_start_offset, 7);
            // Moving backwards is a no-op.
            assert_eq!(log.delete_records(3).await.unwrap(), 7);
            log.close().await.unwrap();
        }
        let log = Log::open(DmaBackend::new(), dir.clone(), rolling(3000)).await.unwrap();
        assert_eq!(log.log_start_offset(), 7);
        assert_eq!(log.delete_records(-1).await.unwrap(), 20);
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.read(20, 100).await.unwrap().batches.len(), 0);
        log.close().await.unwrap();
        let log = Log::open(DmaBackend::new(), dir, rolling(3000)).await.unwrap();
        assert_eq!(log.log_start_offset(), 20);
        assert_eq!(append_flushed(&log, batch(1, 1, 1)).await, 20);
    });
}
