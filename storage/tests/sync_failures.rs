//! The shared sync path with injected faults: no write is acknowledged unless a sync that
//! started after it completed succeeded, with no failed round in between.
extern crate riptide_storage as storage;
mod common;

use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::*;
use storage::io::{SyncGroup, SyncMode, Syncer};
use storage::{DmaBackend, Error, Log};

/// A syncer whose first round waits for `release` and then fails; later rounds succeed.
fn first_round_fails(started: Arc<AtomicBool>, release: mpsc::Receiver<()>) -> Syncer {
    let release = Mutex::new(release);
    let rounds = AtomicU64::new(0);
    Syncer::Injected(Arc::new(move || {
        if rounds.fetch_add(1, Ordering::SeqCst) == 0 {
            started.store(true, Ordering::SeqCst);
            let _ = release.lock().unwrap().recv();
            return Err(io::Error::other("injected: device flush failed"));
        }
        Ok(())
    }))
}

async fn until(flag: &AtomicBool) {
    for _ in 0..500 {
        if flag.load(Ordering::SeqCst) {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    panic!("timed out");
}

/// The race the ticket rule alone misses: a write completes, a round starts and fails, and only
/// then does the writer ask for its sync. The next round succeeds, having nothing left to
/// write; the write may still be lost, so its sync must fail.
#[test]
fn sync_failures_failed_round_fails_writes_completed_before_it() {
    run(|| async {
        let started = Arc::new(AtomicBool::new(false));
        let (release, gate) = mpsc::channel();
        let group = Rc::new(SyncGroup::with_syncer(first_round_fails(started.clone(), gate)));
        // Writer B's write completes now, before any round.
        let mark_b = group.failure_mark();
        // Writer A starts round 1 (its own write, taken just before).
        let mark_a = group.failure_mark();
        let g = group.clone();
        let a = glommio::spawn_local(async move { g.sync(mark_a).await });
        until(&started).await;
        // B asks while round 1 runs: its ticket belongs to round 2.
        let g = group.clone();
        let b = glommio::spawn_local(async move { g.sync(mark_b).await });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        release.send(()).unwrap();
        assert!(a.await.is_err(), "round 1 failed");
        assert!(b.await.is_err(), "B's write completed before the failed round: not durable");
        assert_eq!(group.rounds(), 2);
        // A write that completes after the failure is judged by later rounds only.
        let mark_c = group.failure_mark();
        assert!(group.sync(mark_c).await.is_ok());
    });
}

/// Through a log on the DMA backend: the shared rounds make the segment files durable (the
/// journal's own writes are O_DSYNC). A failed round fails the flush, poisons the log, and
/// takes back nothing that was acknowledged.
#[test]
fn sync_failures_failed_shared_round_poisons_the_log() {
    run(|| async {
        let fail = Arc::new(AtomicBool::new(false));
        let f = fail.clone();
        let syncer = Syncer::Injected(Arc::new(move || match f.load(Ordering::SeqCst) {
            true => Err(io::Error::other("injected: EIO")),
            false => Ok(()),
        }));
        let tmp = tempfile::tempdir().unwrap();
        let log = Log::open(DmaBackend::with_syncer(syncer), partition_dir(tmp.path()), config()).await.unwrap();
        let first = batch(2, 1, 100);
        append_flushed(&log, first.clone()).await;
        let second = batch(2, 2, 100);
        append_synced(&log, second.clone()).await;
        fail.store(true, Ordering::SeqCst);
        assert!(matches!(log.flush().await, Err(Error::Poisoned(_))));
        assert!(log.poisoned().is_some());
        assert!(matches!(log.append(batch(1, 3, 1)).await, Err(Error::Poisoned(_))));
        assert_eq!(read_all(&log, 0).await, vec![with_base(&first, 0), with_base(&second, 2)]);
    });
}

/// Where shared syncfs is not relied upon, each file is fdatasync'ed: same contract.
#[test]
fn sync_failures_per_file_fdatasync_mode_round_trips() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let backend = DmaBackend::with_sync_mode(SyncMode::PerFileFdatasync);
        let dir = partition_dir(tmp.path());
        let log = Log::open(backend.clone(), dir.clone(), config()).await.unwrap();
        let b = batch(3, 1, 500);
        let base = append_synced(&log, b.clone()).await;
        log.close().await.unwrap();
        let log = Log::open(backend, dir, config()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, vec![with_base(&b, base)]);
        assert!(matches!(log.read(5, 100).await, Err(Error::OffsetOutOfRange { .. })));
    });
}
