//! A full disk: acknowledged data stays safe (in the journal and in memory) while the segment
//! files cannot be written; new appends are refused with `DiskFull` once the journal needs the
//! space those logs hold; reads go on; and appends are taken again once space is back, without
//! reopening the log.
extern crate riptide_storage as storage;
mod common;

use common::*;
use riptide_testkit::idempotent_batch;
use storage::io::Faults;
use storage::{Durability, Error, FaultyBackend, Log, LogConfig};

fn full() -> Faults {
    Faults { disk_full: true, ..Faults::default() }
}

/// Appends 50 KiB batches until one is refused; returns the acknowledged ones (as stored).
async fn append_until_refused(log: &Log<FaultyBackend>, tag: i64) -> (Vec<bytes::Bytes>, Error) {
    let mut acked = Vec::new();
    for i in 0..10_000 {
        let b = batch(1, tag + i, 50 << 10);
        match log.append(b.clone()).await {
            Ok(info) => {
                log.wait_appended(&info, Durability::Synced).await.expect("journaled appends are acknowledged");
                acked.push(with_base(&b, info.base_offset));
            }
            Err(e) => return (acked, e),
        }
    }
    panic!("a full disk never refused an append");
}

#[test]
fn disk_full_refuses_appends_keeps_acknowledged_data_and_recovers_without_reopen() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        let first = batch(2, 1, 100);
        let mut want = vec![with_base(&first, append_flushed(&log, first.clone()).await)];
        backend.set_faults(full());
        let (acked, refusal) = append_until_refused(&log, 10).await;
        assert!(matches!(refusal, Error::DiskFull), "{refusal}");
        assert!(!acked.is_empty(), "the journal takes appends until it needs the space");
        assert!(log.poisoned().is_none(), "a full disk does not poison the log");
        want.extend(acked);
        assert_eq!(read_all(&log, 0).await, want, "acknowledged data still readable");
        assert!(matches!(log.append(batch(1, 0, 50 << 10)).await, Err(Error::DiskFull)), "still full: refused at once");
        // Space is back: the flusher's retry writes the segment files and appends go on.
        backend.set_faults(Faults::default());
        let mut resumed = None;
        for _ in 0..100 {
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            let b = batch(1, 5, 100);
            if let Ok(info) = log.append(b.clone()).await {
                log.wait_appended(&info, Durability::Synced).await.unwrap();
                resumed = Some(with_base(&b, info.base_offset));
                break;
            }
        }
        want.push(resumed.expect("appends are taken again once space is back"));
        assert_eq!(read_all(&log, 0).await, want);
        log.flush().await.unwrap();
        drop(log);
        backend.crash();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, want, "after a crash too");
    });
}

/// The disk fills up when a segment must roll: the next segment cannot be created, nothing
/// acknowledged is lost, and rolling works once space is back.
#[test]
fn disk_full_during_roll_loses_nothing_and_rolls_later() {
    run(|| async {
        let backend = FaultyBackend::new();
        let cfg = LogConfig { segment_bytes: 64 << 10, ..config() };
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg.clone()).await.unwrap();
        let mut want = Vec::new();
        for i in 0..3 {
            let b = batch(1, i, 30 << 10);
            want.push(with_base(&b, append_flushed(&log, b.clone()).await));
        }
        let segments = log.segment_count();
        backend.set_faults(full());
        let (acked, refusal) = append_until_refused(&log, 100).await;
        assert!(matches!(refusal, Error::DiskFull), "{refusal}");
        want.extend(acked);
        assert_eq!(log.segment_count(), segments, "no segment could be created");
        assert_eq!(read_all(&log, 0).await, want);
        backend.set_faults(Faults::default());
        log.flush().await.unwrap();
        assert!(log.segment_count() > segments, "rolled once space was back");
        assert_eq!(read_all(&log, 0).await, want);
        log.close().await.unwrap();
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg).await.unwrap();
        assert_eq!(read_all(&log, 0).await, want);
    });
}

/// A refused idempotent batch was never appended: its retry, once space is back, is appended
/// (not answered as a duplicate of nothing).
#[test]
fn disk_full_refused_idempotent_batch_is_appended_on_retry() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        append_flushed(&log, idempotent_batch(42, 0, 0, 2)).await;
        backend.set_faults(full());
        let (acked, _) = append_until_refused(&log, 1).await;
        let end = log.log_end_offset();
        let retry = idempotent_batch(42, 0, 2, 4000); // larger than the refused batch
        assert!(matches!(log.append(retry.clone()).await, Err(Error::DiskFull)));
        backend.set_faults(Faults::default());
        log.flush().await.unwrap();
        let again = log.append(retry).await.unwrap();
        assert!(!again.duplicate, "the refused batch is not in the log: append it");
        log.wait_appended(&again, Durability::Synced).await.unwrap();
        assert_eq!(again.base_offset, end);
        assert_eq!(end, 2 + acked.len() as i64);
        assert_eq!(log.log_end_offset(), end + 4000);
    });
}

/// A direct append (large: straight to the segment files) that the full disk cannot take fails
/// its ack with DiskFull and is taken back: nothing else holds it, so its offsets go to the
/// next append (contiguous, as when the journal refuses an append for want of space), also
/// after a power loss (replay skips the journal's Direct entry for it).
#[test]
fn disk_full_direct_append_is_taken_back() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        let first = batch(1, 0, 100);
        append_synced(&log, first.clone()).await;
        backend.set_faults(full());
        let info = log.append(batch(1, 1, storage::constants::LOG_DIRECT_APPEND_BYTES)).await.unwrap();
        assert_eq!(info.base_offset, 1);
        assert!(matches!(log.wait_appended(&info, Durability::Written).await, Err(Error::DiskFull)));
        assert_eq!(log.log_end_offset(), 1, "taken back");
        backend.set_faults(Faults::default());
        let next = batch(1, 2, 100);
        let again = log.append(next.clone()).await.unwrap();
        assert_eq!(again.base_offset, 1, "the next append gets the offset back");
        log.wait_appended(&again, Durability::Synced).await.expect("space is back");
        assert!(matches!(log.wait_appended(&info, Durability::Written).await, Err(Error::DiskFull)), "still failed, though offset 1 is durable now");
        let want = vec![with_base(&first, 0), with_base(&next, 1)];
        assert_eq!(read_all(&log, 0).await, want);
        drop(log);
        backend.crash();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, want);
    });
}
