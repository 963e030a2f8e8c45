//! Idempotent producers: the log checks sequences in the same step as it assigns offsets, and
//! rebuilds producer windows after a crash or a restart, so a retried batch is never written
//! twice and gets its original offsets back.
extern crate riptide_storage as storage;
mod common;

use std::path::PathBuf;
use std::rc::Rc;

use common::*;
use riptide_testkit::idempotent_batch;
use storage::io::Faults;
use storage::{Durability, Error, FaultyBackend, Log, LogConfig};

async fn append_ok<B: storage::IoBackend>(log: &Log<B>, b: bytes::Bytes) -> storage::AppendInfo {
    let info = log.append(b).await.expect("append");
    log.wait_appended(&info, Durability::Synced).await.expect("durable");
    info
}

/// Producer 9 sends 8 batches of 2 records (sequences 0..16); returns their base offsets.
async fn produce_eight<B: storage::IoBackend>(log: &Log<B>) -> Vec<i64> {
    let mut bases = Vec::new();
    for i in 0..8 {
        let info = append_ok(log, idempotent_batch(9, 0, i * 2, 2)).await;
        assert!(!info.duplicate);
        bases.push(info.base_offset);
    }
    bases
}

/// The replay of the last five batches after reopening: originals' offsets, nothing appended;
/// an older batch is refused; the next sequence appends at the end.
async fn check_replay<B: storage::IoBackend>(log: &Log<B>, bases: &[i64]) {
    let end = log.log_end_offset();
    for i in 3..8 {
        let info = log.append(idempotent_batch(9, 0, i * 2, 2)).await.unwrap();
        assert!(info.duplicate, "batch {i} taken for new data");
        assert_eq!(info.base_offset, bases[i as usize], "batch {i}");
        log.wait_appended(&info, Durability::Synced).await.unwrap();
    }
    assert!(matches!(log.append(idempotent_batch(9, 0, 2, 2)).await, Err(Error::OutOfOrderSequence { .. })));
    assert_eq!(log.log_end_offset(), end, "nothing appended twice");
    let next = append_ok(log, idempotent_batch(9, 0, 16, 2)).await;
    assert_eq!((next.base_offset, next.duplicate), (end, false));
}

#[test]
fn idempotence_windows_survive_a_crash() {
    run(|| async {
        let backend = FaultyBackend::new();
        let dir = PathBuf::from("/d/t-0");
        let log = Log::open(backend.clone(), dir.clone(), config()).await.unwrap();
        let bases = produce_eight(&log).await;
        backend.crash();
        std::mem::forget(log); // power is gone: the old instance must not run again
        let log = Log::open(backend.clone(), dir, config()).await.unwrap();
        check_replay(&log, &bases).await;
    });
}

#[test]
fn idempotence_windows_survive_rolls_and_a_clean_restart() {
    run(|| async {
        let backend = FaultyBackend::new();
        let dir = PathBuf::from("/d/t-0");
        let cfg = LogConfig { segment_bytes: 1 << 10, ..config() };
        let log = Log::open(backend.clone(), dir.clone(), cfg.clone()).await.unwrap();
        // Other producers fill several segments first: snapshots get written at each roll.
        for i in 0..40 {
            append_ok(&log, idempotent_batch(100 + i % 3, 0, (i / 3) as i32 * 3, 3)).await;
        }
        let bases = produce_eight(&log).await;
        log.flush().await.unwrap();
        assert!(log.segment_count() > 3);
        log.close().await.unwrap();
        let snapshots = backend.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "snapshot")).count();
        assert!((1..=2).contains(&snapshots), "{snapshots} snapshots kept");
        let log = Log::open(backend.clone(), dir.clone(), cfg.clone()).await.unwrap();
        check_replay(&log, &bases).await;
        // And after a crash that follows (snapshot of the roll + the active segment's headers).
        backend.crash();
        std::mem::forget(log);
        let log = Log::open(backend.clone(), dir, cfg).await.unwrap();
        let dup = log.append(idempotent_batch(9, 0, 16, 2)).await.unwrap();
        assert!(dup.duplicate, "the batch appended after the restart is remembered too");
    });
}

/// A retry that arrives while the original is still on its way to disk gets the original's
/// offsets and the original's fate: here its write fails, so the retry fails too.
#[test]
fn idempotence_duplicate_in_flight_shares_the_original_outcome() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap();
        append_ok(&log, idempotent_batch(5, 0, 0, 1)).await;
        backend.set_faults(Faults { fail_write_at: Some(backend.write_count() + 1), ..Faults::default() });
        let b = idempotent_batch(5, 0, 1, 1);
        let original = log.append(b.clone()).await.unwrap();
        let retry = log.append(b).await.unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (original.base_offset, original.last_offset));
        assert!(matches!(log.wait_appended(&retry, Durability::Written).await, Err(Error::Poisoned(_))));
        assert!(matches!(log.wait_appended(&original, Durability::Written).await, Err(Error::Poisoned(_))));
    });
}

/// Two copies of one batch, both held up by a full write queue, are appended once: the
/// sequence check and the offset assignment happen in one step after the wait.
#[test]
fn idempotence_concurrent_copies_are_appended_once() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Rc::new(Log::open(backend.clone(), "/d/t-0".into(), uncached(config())).await.unwrap());
        // Fill the write queue without letting the writer run (no await in between).
        let mut fillers = Vec::new();
        for i in 0..12 {
            let log = log.clone();
            fillers.push(glommio::spawn_local(async move { log.append(batch(1, i, 1000 << 10)).await.unwrap() }));
        }
        let copies: Vec<_> = (0..2)
            .map(|_| {
                let log = log.clone();
                glommio::spawn_local(async move { log.append(idempotent_batch(77, 0, 0, 3)).await.unwrap() })
            })
            .collect();
        for f in fillers {
            f.await;
        }
        let mut answers = Vec::new();
        for c in copies {
            answers.push(c.await);
        }
        assert_eq!(answers[0].base_offset, answers[1].base_offset, "{answers:?}");
        assert_eq!(answers.iter().filter(|a| a.duplicate).count(), 1);
        log.flush().await.unwrap();
        assert_eq!(log.log_end_offset(), 12 + 3, "the batch is in the log once");
    });
}
