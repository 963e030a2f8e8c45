//! ListOffsets by time through the time index.
extern crate riptide_storage as storage;
mod common;

use common::*;
use storage::{FaultyBackend, Log};

#[test]
fn offset_for_timestamp_matches_linear_scan() {
    run(|| async {
        let mut cfg = uncached(config());
        cfg.segment_bytes = 4000;
        cfg.index_interval_bytes = 300;
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), cfg).await.unwrap();
        // Non-monotonic timestamps: batch i has records with ts (i * 7919) % 1000 * 10 + j.
        let mut model = Vec::new();
        for i in 0..100i64 {
            let ts = (i * 7919) % 1000 * 10;
            let b = batch(3, ts, 50);
            let base = append_flushed(&log, b).await;
            model.push((base, ts + 2));
        }
        assert!(log.segment_count() > 3);
        for target in (-5..10_020).step_by(37) {
            let expected = model.iter().find(|(_, max)| *max >= target).copied();
            assert_eq!(log.offset_for_timestamp(target).await.unwrap(), expected, "ts {target}");
        }
        assert_eq!(log.offset_for_timestamp(-2).await.unwrap(), Some((0, -1)));
        assert_eq!(log.offset_for_timestamp(-1).await.unwrap(), Some((300, -1)));
        assert_eq!(log.offset_for_timestamp(1_000_000).await.unwrap(), None);
    });
}

#[test]
fn offset_for_timestamp_respects_log_start_and_hw() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), config()).await.unwrap();
        append_flushed(&log, batch(5, 100, 10)).await;
        append_flushed(&log, batch(5, 200, 10)).await;
        log.delete_records(2).await.unwrap();
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((2, 104)));
        assert_eq!(log.offset_for_timestamp(150).await.unwrap(), Some((5, 204)));
        // Appended but not synced: invisible.
        log.append(batch(1, 999, 1)).await.unwrap();
        if log.high_watermark() == 10 {
            assert_eq!(log.offset_for_timestamp(999).await.unwrap(), None);
        }
    });
}
