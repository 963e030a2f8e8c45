//! Segment rolling by size and by age; file naming.
extern crate riptide_storage as storage;
mod common;

use common::*;
use storage::{DmaBackend, FaultyBackend, Log};

#[test]
fn segment_roll_by_size_names_files_by_base_offset() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = partition_dir(tmp.path());
        let mut cfg = config();
        cfg.segment_bytes = 10_000;
        let log = Log::open(DmaBackend::new(), dir.clone(), cfg.clone()).await.unwrap();
        let mut expected = Vec::new();
        for i in 0..40 {
            let b = batch(2, i, 1000);
            let base = append_flushed(&log, b.clone()).await;
            expected.push(with_base(&b, base));
        }
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4, "{bases:?}");
        for base in &bases {
            assert!(dir.join(format!("{base:020}.log")).exists());
        }
        for base in &bases[..bases.len() - 1] {
            let size = std::fs::metadata(dir.join(format!("{base:020}.log"))).unwrap().len();
            assert!(size <= cfg.segment_bytes, "sealed segment {base} has {size} bytes");
            assert!(dir.join(format!("{base:020}.index")).exists());
        }
        assert_eq!(read_all(&log, 0).await, expected);
        log.close().await.unwrap();
        let log = Log::open(DmaBackend::new(), dir.clone(), cfg).await.unwrap();
        assert_eq!(log.segment_base_offsets(), bases);
        assert_eq!(read_all(&log, 0).await, expected);
    });
}

#[test]
fn segment_roll_oversized_batch_gets_own_segment() {
    run(|| async {
        let mut cfg = config();
        cfg.segment_bytes = 500;
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), cfg).await.unwrap();
        for i in 0..3 {
            append_flushed(&log, batch(1, i, 2000)).await;
        }
        assert_eq!(log.segment_base_offsets(), vec![0, 1, 2]);
        assert_eq!(read_all(&log, 0).await.len(), 3);
    });
}

#[test]
fn segment_roll_by_age() {
    run(|| async {
        let mut cfg = config();
        cfg.segment_ms = 300;
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), cfg).await.unwrap();
        append_flushed(&log, batch(1, 1, 10)).await;
        append_flushed(&log, batch(1, 2, 10)).await;
        assert_eq!(log.segment_count(), 1);
        glommio::timer::sleep(std::time::Duration::from_millis(350)).await;
        append_flushed(&log, batch(1, 3, 10)).await;
        assert_eq!(log.segment_base_offsets(), vec![0, 2]);
    });
}

/// A little data, then nothing: the segment files still get it after the flush delay (memory
/// and journal replay stay bounded in time, not only in bytes).
#[test]
fn segment_roll_small_appends_reach_the_segment_files_after_the_flush_delay() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), config()).await.unwrap();
        append_synced(&log, batch(1, 1, 10)).await;
        assert_eq!(log.segment_synced_offset(), 0);
        // The flush delay is spread up to 1.5x (`flush_delay`).
        let delay = std::time::Duration::from_millis(storage::constants::LOG_FLUSH_DELAY_MS * 3 / 2 + storage::constants::LOG_SYNC_INTERVAL_MS + 300);
        glommio::timer::sleep(delay).await;
        assert_eq!(log.segment_synced_offset(), 1, "flushed by the delay");
    });
}

/// 1,000 active partitions must not reserve disk space ahead of their data (32 MiB each, 32 GB
/// in all, before): after appends and a flush the active segment is its data, block-padded.
#[test]
fn segment_roll_active_segment_reserves_no_space_ahead() {
    run(|| async {
        let backend = FaultyBackend::new();
        let mut cfg = config();
        cfg.segment_bytes = 1 << 30;
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg).await.unwrap();
        let mut data = 0u64;
        for i in 0..20 {
            let b = batch(2, i, 3000);
            data += b.len() as u64;
            append_flushed(&log, b).await;
        }
        let seg = std::path::PathBuf::from("/d/t-0/00000000000000000000.log");
        let size = backend.file_size(&seg).expect("the active segment exists");
        assert!(size <= data.div_ceil(4096) * 4096, "active segment of {data} data bytes takes {size} bytes on disk");
    });
}

/// A log streaming big writes reserves room for two more of them (fallocate before every third
/// write, not each), and gives it back when the segment is closed.
#[test]
fn segment_roll_big_writes_reserve_two_more_and_give_them_back() {
    run(|| async {
        let backend = FaultyBackend::new();
        let mut cfg = config();
        cfg.segment_bytes = 1 << 30;
        cfg.max_batch_bytes = 4 << 20;
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg).await.unwrap();
        let b = batch(3, 0, 500_000);
        let write = b.len().div_ceil(4096) as u64 * 4096;
        assert!(write >= 1 << 20, "one write of {write} bytes: a big one");
        append_flushed(&log, b.clone()).await;
        let seg = std::path::PathBuf::from("/d/t-0/00000000000000000000.log");
        let size = backend.file_size(&seg).expect("the active segment exists");
        assert!(size >= 3 * write && size <= 3 * write + 4096, "{size} bytes reserved for writes of {write}");
        append_flushed(&log, b.clone()).await;
        assert_eq!(backend.file_size(&seg), Some(size), "the second write lands in the reserved space");
        log.close().await.unwrap();
        assert_eq!(backend.file_size(&seg), Some(2 * b.len() as u64), "closed: the segment is its data");
    });
}
