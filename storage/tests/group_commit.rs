//! Group commit: concurrent appends share writes and fsyncs; acks=0 data still gets written;
//! the bounded write queue applies backpressure.
extern crate riptide_storage as storage;
mod common;

use std::rc::Rc;

use common::*;
use storage::{DmaBackend, Durability, FaultyBackend, Log};

#[test]
fn group_commit_coalesces_concurrent_appends() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Rc::new(Log::open(backend.clone(), "/d/t-0".into(), config()).await.unwrap());
        let syncs_before = backend.sync_count();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let info = log.append(batch(1, i, 100)).await.unwrap();
                log.wait_durable(info.log_end_offset, Durability::Synced).await.unwrap();
                info.base_offset
            }));
        }
        let mut offsets = Vec::new();
        for t in tasks {
            offsets.push(t.await);
        }
        offsets.sort();
        assert_eq!(offsets, (0..200).collect::<Vec<_>>());
        let syncs = backend.sync_count() - syncs_before;
        assert!(syncs < 20, "{syncs} fsyncs for 200 concurrent appends");
        assert_eq!(log.high_watermark(), 200);
    });
}

#[test]
fn group_commit_writes_without_waiters() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = partition_dir(tmp.path());
        let log = Log::open(DmaBackend::new(), dir.clone(), config()).await.unwrap();
        for i in 0..50 {
            log.append(batch(2, i, 500)).await.unwrap(); // acks=0: nobody waits
        }
        // The writer task writes and syncs on its own.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while log.high_watermark() < 100 {
            assert!(std::time::Instant::now() < deadline, "writer did not flush");
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Dropping without close still finishes the writes.
        log.append(batch(1, 99, 10)).await.unwrap();
        drop(log);
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        let log = Log::open(DmaBackend::new(), dir, config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 101);
    });
}

#[test]
fn group_commit_backpressure_bounds_queue() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Rc::new(Log::open(backend, "/d/t-0".into(), uncached(config())).await.unwrap());
        // 64 MB through an 8 MiB queue from concurrent producers.
        let mut tasks = Vec::new();
        for p in 0..4 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                for i in 0..16 {
                    log.append(batch(1, p * 100 + i, 1_000_000)).await.unwrap();
                    let queued = log.write_queue_bytes();
                    assert!(queued <= storage::constants::LOG_UNFLUSHED_BYTES_MAX, "{queued}");
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        log.flush().await.unwrap();
        assert_eq!(log.high_watermark(), 64);
        assert_eq!(read_all(&log, 0).await.len(), 64);
    });
}

#[test]
fn group_commit_listen_fires_on_hw_move() {
    run(|| async {
        let log = Rc::new(Log::open(FaultyBackend::new(), "/d/t-0".into(), config()).await.unwrap());
        let listener = log.listen();
        let l2 = log.clone();
        glommio::spawn_local(async move {
            l2.append(batch(1, 1, 1)).await.unwrap();
        })
        .detach();
        listener.await;
        while log.high_watermark() < 1 {
            log.listen().await;
        }
        assert_eq!(log.high_watermark(), 1);
    });
}

/// Many logs of one shard write through one journal: a handful of journal rounds (device
/// writes) for all their appends, not one per log; their segment writes later share syncfs
/// rounds too.
#[test]
fn group_commit_many_logs_share_journal_rounds() {
    use std::os::unix::fs::MetadataExt;
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        const LOGS: usize = 60;
        let backend = DmaBackend::new();
        let journal = shared_journal(&backend, tmp.path(), 16 << 20).await;
        let mut logs = Vec::new();
        for p in 0..LOGS {
            let dir = tmp.path().join(format!("t-{p}"));
            logs.push(Rc::new(open_shared(&backend, dir, &journal, p as i32, config()).await));
        }
        let rounds_before = journal.rounds();
        let mut tasks = Vec::new();
        for (i, log) in logs.iter().enumerate() {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let info = log.append(batch(2, i as i64, 300)).await.unwrap();
                log.wait_durable(info.log_end_offset, Durability::Synced).await.unwrap();
                assert_eq!(log.high_watermark(), 2, "synced data is visible");
            }));
        }
        for t in tasks {
            t.await;
        }
        let rounds = journal.rounds() - rounds_before;
        assert!(rounds >= 1, "durability needs at least one journal round");
        assert!(rounds < (LOGS / 10) as u64, "{LOGS} logs took {rounds} journal rounds: not coalesced");
        let dev = std::fs::metadata(tmp.path()).unwrap().dev();
        let group = storage::io::sync_group::SyncGroup::for_device(dev, tmp.path()).unwrap();
        let syncfs_before = group.rounds();
        let flushes: Vec<_> = logs.iter().map(|l| { let l = l.clone(); glommio::spawn_local(async move { l.flush().await.unwrap() }) }).collect();
        for f in flushes {
            f.await;
        }
        let syncfs = group.rounds() - syncfs_before;
        assert!(syncfs < (LOGS / 2) as u64, "{LOGS} segment flushes took {syncfs} syncfs rounds: not coalesced");
        for log in &logs {
            assert_eq!(read_all(log, 0).await.len(), 1);
            log.close().await.unwrap();
        }
    });
}
