//! A full disk fails the appends that could not be written, and only those: nothing
//! acknowledged is lost, reads go on, and appends succeed again once space is back, without
//! reopening the log.
extern crate riptide_storage as storage;
mod common;

use common::*;
use riptide_testkit::idempotent_batch;
use storage::io::Faults;
use storage::{Durability, Error, FaultyBackend, Log};

fn full() -> Faults {
    Faults { disk_full: true, ..Faults::default() }
}

#[test]
fn disk_full_fails_unwritten_appends_and_recovers_without_reopen() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        let a = batch(2, 1, 100);
        assert_eq!(append_synced(&log, a.clone()).await, 0);
        backend.set_faults(full());
        let b = log.append(batch(3, 2, 100)).await.unwrap();
        let c = log.append(batch(1, 3, 100)).await.unwrap();
        assert_eq!((b.base_offset, c.base_offset), (2, 5));
        for info in [b, c] {
            assert!(matches!(log.wait_appended(&info, Durability::Synced).await, Err(Error::DiskFull)));
        }
        assert!(log.poisoned().is_none(), "a full disk does not poison the log");
        assert_eq!((log.log_end_offset(), log.high_watermark()), (2, 2), "log end back to what is on disk");
        assert_eq!(read_all(&log, 0).await, vec![with_base(&a, 0)], "acknowledged data still readable");
        // Still full: the next append fails too, without a hang.
        let d = log.append(batch(1, 4, 100)).await.unwrap();
        assert!(matches!(log.wait_appended(&d, Durability::Written).await, Err(Error::DiskFull)));
        // Space is back: appends go on at the end of what is on disk.
        backend.set_faults(Faults::default());
        let e = batch(2, 5, 100);
        assert_eq!(append_synced(&log, e.clone()).await, 2);
        let want = vec![with_base(&a, 0), with_base(&e, 2)];
        assert_eq!(read_all(&log, 0).await, want);
        drop(log);
        backend.crash();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, want, "after a crash too");
    });
}

/// The disk fills up exactly when a segment must roll: the new segment cannot be created, the
/// old one stays active, and rolling works once space is back.
#[test]
fn disk_full_during_roll_keeps_the_active_segment() {
    run(|| async {
        let backend = FaultyBackend::new();
        let mut cfg = config();
        cfg.segment_bytes = 8 << 10;
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg.clone()).await.unwrap();
        let mut want = Vec::new();
        // Batches of one size: the first segment holds `per_segment` of them; the batch after
        // that opened the second segment.
        let mut per_segment = 0;
        while log.segment_count() < 2 {
            let b = batch(1, 1, 1000);
            want.push(with_base(&b, append_synced(&log, b.clone()).await));
            per_segment += 1;
        }
        per_segment -= 1;
        for _ in 1..per_segment {
            let b = batch(1, 2, 1000);
            want.push(with_base(&b, append_synced(&log, b.clone()).await));
        }
        let before = log.segment_count();
        assert_eq!(before, 2, "the second segment is full; the next batch rolls");
        backend.set_faults(full());
        for _ in 0..3 {
            let info = log.append(batch(1, 3, 1000)).await.unwrap();
            assert!(matches!(log.wait_appended(&info, Durability::Synced).await, Err(Error::DiskFull)));
        }
        assert_eq!(read_all(&log, 0).await, want);
        assert_eq!(log.segment_count(), before, "the roll failed: still two segments");
        backend.set_faults(Faults::default());
        for _ in 0..6 {
            let b = batch(1, 4, 1000);
            want.push(with_base(&b, append_synced(&log, b.clone()).await));
        }
        assert!(log.segment_count() > before, "rolled once space was back");
        assert_eq!(read_all(&log, 0).await, want);
        log.close().await.unwrap();
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg).await.unwrap();
        assert_eq!(read_all(&log, 0).await, want);
    });
}

/// An idempotent batch rolled back for want of space is new data when retried: its producer
/// window forgets it, so the retry is appended instead of answered as a duplicate of nothing.
#[test]
fn disk_full_rolled_back_idempotent_batch_is_appended_on_retry() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        let first = idempotent_batch(42, 0, 0, 2);
        append_synced(&log, first).await;
        backend.set_faults(full());
        let retry = idempotent_batch(42, 0, 2, 2);
        let info = log.append(retry.clone()).await.unwrap();
        assert!(!info.duplicate);
        assert!(log.wait_appended(&info, Durability::Synced).await.is_err());
        backend.set_faults(Faults::default());
        let again = log.append(retry).await.unwrap();
        assert!(!again.duplicate, "the rolled-back batch is not in the log: append it");
        log.wait_appended(&again, Durability::Synced).await.unwrap();
        assert_eq!((again.base_offset, log.high_watermark()), (2, 4));
    });
}
