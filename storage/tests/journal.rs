//! The shard journal: many logs, one sequential write per round; a ring of files reused once
//! the logs' segment files hold their entries; recovery reads back exactly the current run.
extern crate riptide_storage as storage;
mod common;

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use storage::{read_journal, Durability, FaultyBackend, JournalKey, JournalRecord, Log};

/// Ten times the journal's size through a two-file ring: appends wait for the files to be
/// reused (the log is asked to flush) and all complete; the data reads back whole.
#[test]
fn journal_ring_wraps_once_logs_flush() {
    run(|| async {
        let backend = FaultyBackend::new();
        let root = PathBuf::from("/data");
        let journal = shared_journal(&backend, &root, 2 << 20).await;
        assert_eq!(journal.config().files, 2);
        let log = Rc::new(open_shared(&backend, root.join("t-0"), &journal, 0, uncached(config())).await);
        let mut want = Vec::new();
        let total = 10 * journal.config().files as u64 * journal.config().file_bytes;
        let mut sent = 0u64;
        let mut i = 0;
        while sent < total {
            let b = batch(8, i, 8 << 10);
            sent += b.len() as u64;
            want.push(with_base(&b, append_synced(&log, b.clone()).await));
            i += 1;
        }
        assert_eq!(read_all(&log, 0).await, want);
        assert!(log.segment_synced_offset() > 0, "the ring could only wrap because the log flushed");
        let files = backend.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "jnl")).count();
        assert_eq!(files, 2, "the ring is reused, not grown");
    });
}

/// 200 partitions appending small batches at once: the journal writes them in a handful of
/// rounds, not one device write per partition.
#[test]
fn journal_rounds_do_not_grow_with_partitions() {
    run(|| async {
        let backend = FaultyBackend::new();
        let root = PathBuf::from("/data");
        let journal = shared_journal(&backend, &root, 16 << 20).await;
        const LOGS: i32 = 200;
        let mut logs = Vec::new();
        for p in 0..LOGS {
            logs.push(Rc::new(open_shared(&backend, root.join(format!("t-{p}")), &journal, p, config()).await));
        }
        let writes_before = backend.write_count();
        let rounds_before = journal.rounds();
        for step in 0..5 {
            let tasks: Vec<_> = logs
                .iter()
                .map(|log| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        let info = log.append(batch(1, step, 1000)).await.unwrap();
                        log.wait_appended(&info, Durability::Synced).await.unwrap();
                    })
                })
                .collect();
            for t in tasks {
                t.await;
            }
        }
        let appends = 5 * LOGS as u64;
        let rounds = journal.rounds() - rounds_before;
        let writes = backend.write_count() - writes_before;
        assert!(rounds <= 5 * 3, "{appends} appends took {rounds} journal rounds");
        assert!(writes < appends / 20, "{appends} appends took {writes} device writes");
    });
}

/// What `read_journal` returns: the entries of the current run in order, keyed by log; after a
/// new run begins, none of the old ones.
#[test]
fn journal_read_back_is_the_current_run_only() {
    run(|| async {
        let backend = FaultyBackend::new();
        let root = PathBuf::from("/data");
        let journal = shared_journal(&backend, &root, 4 << 20).await;
        let a = open_shared(&backend, root.join("a-0"), &journal, 0, config()).await;
        let b = open_shared(&backend, root.join("b-1"), &journal, 1, config()).await;
        for i in 0..3 {
            append_synced(&a, batch(1, i, 10)).await;
            append_synced(&b, batch(2, i, 10)).await;
        }
        let contents = read_journal(&backend, &root.join("journal")).await.unwrap();
        let keys: Vec<JournalKey> = contents.entries.iter().map(|e| e.key).collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(keys.iter().filter(|k| k.partition == 1).count(), 3);
        let offsets: Vec<i64> = contents.entries.iter().filter(|e| e.key.partition == 1)
            .map(|e| match &e.record {
                JournalRecord::Batch(b) => storage::BatchHeader::parse(b).unwrap().base_offset,
                other => panic!("a small append is journaled: {other:?}"),
            })
            .collect();
        assert_eq!(offsets, vec![0, 2, 4], "in order, offsets assigned");
        // A restart: the logs flush, a new run begins above what was read.
        a.close().await.unwrap();
        b.close().await.unwrap();
        journal.close().await;
        let next = storage::Journal::open(backend.clone(), root.join("journal"), journal.config().clone());
        next.begin(contents.max_seq).await.unwrap();
        let after = read_journal(&backend, &root.join("journal")).await.unwrap();
        assert!(after.entries.is_empty(), "{} stale entries read back", after.entries.len());
        let reopened = Log::open_with_journal(backend.clone(), root.join("a-0"), config(), next, JournalKey { topic_id: 1, partition: 0 }, Vec::new()).await.unwrap();
        assert_eq!(reopened.log_end_offset(), 3);
    });
}

/// Rounds assembled in block-sized pieces (writes cut at 4 KiB) and running from one ring file
/// into the next: every entry reads back whole, in order, with its payload; the logs read back
/// what was appended.
#[test]
fn journal_round_pieces_and_file_switch_keep_every_entry() {
    run(|| async {
        let backend = FaultyBackend::new();
        let root = PathBuf::from("/data");
        let mut c = storage::JournalConfig::with_capacity(2 << 20);
        c.write_bytes_max = 4096;
        let journal = storage::Journal::open(backend.clone(), root.join("journal"), c);
        journal.begin(0).await.expect("journal starts");
        let logs: Vec<_> = futures::future::join_all((0..3).map(|p| open_shared(&backend, root.join(format!("t-{p}")), &journal, p, uncached(config())))).await.into_iter().map(Rc::new).collect();
        let mut want: Vec<Vec<Bytes>> = vec![Vec::new(); logs.len()];
        let mut sent = 0usize;
        let mut i = 0i64;
        // ~1.3 MiB through 1 MiB files: one switch; sizes that straddle pieces at odd points.
        while sent < 1_300_000 {
            let tasks: Vec<_> = logs.iter().enumerate().map(|(p, log)| {
                let (log, b) = (log.clone(), batch(1, i, 37 + ((i as usize * 7919 + p * 3001) % 9000)));
                glommio::spawn_local(async move {
                    let base = log.append(b.clone()).await.unwrap().base_offset;
                    (p, with_base(&b, base))
                })
            }).collect();
            for t in tasks {
                let (p, b) = t.await;
                sent += b.len();
                want[p].push(b);
            }
            i += 1;
        }
        for log in &logs {
            log.wait_durable(log.log_end_offset(), Durability::Synced).await.unwrap();
        }
        let contents = read_journal(&backend, &root.join("journal")).await.unwrap();
        for (p, want) in want.iter().enumerate() {
            let got: Vec<Bytes> = contents.entries.iter().filter(|e| e.key.partition == p as i32)
                .map(|e| match &e.record {
                    JournalRecord::Batch(b) => b.clone(),
                    other => panic!("small appends are journaled: {other:?}"),
                })
                .collect();
            assert_eq!(got.len(), want.len(), "partition {p}: every entry read back");
            assert!(got == *want, "partition {p}: entries read back as appended");
            assert_eq!(read_all(&logs[p], 0).await, *want);
        }
    });
}

/// A journal whose unwaited-for data is synced only every `sync_interval`.
async fn journal_syncing_every<B: storage::IoBackend>(backend: &B, dir: &std::path::Path, sync_interval: Duration) -> storage::Journal<B> {
    let mut c = storage::JournalConfig::with_capacity(8 << 20);
    c.sync_interval = sync_interval;
    let journal = storage::Journal::open(backend.clone(), dir.join("journal"), c);
    journal.begin(0).await.expect("journal starts");
    journal
}

/// acks=1 traffic alone does not pay a device flush per round: written data nobody waits for
/// stays unsynced (invisible to consumers) until the sync interval; a waiter for Synced gets
/// its sync at once.
#[test]
fn journal_syncs_written_data_when_asked_not_per_round() {
    run(|| async {
        let backend = FaultyBackend::new();
        let root = PathBuf::from("/data");
        let journal = journal_syncing_every(&backend, &root, Duration::from_secs(3600)).await;
        let log = open_shared(&backend, root.join("t-0"), &journal, 0, config()).await;
        let syncs = backend.sync_count();
        let mut last = None;
        for i in 0..10 {
            let info = log.append(batch(1, i, 100)).await.unwrap();
            log.wait_appended(&info, Durability::Written).await.unwrap();
            glommio::timer::sleep(Duration::from_millis(2)).await; // a round each
            last = Some(info);
        }
        assert!(journal.rounds() >= 10, "one round per append");
        assert_eq!(backend.sync_count(), syncs, "no sync while nobody waits for one");
        assert_eq!(log.high_watermark(), 0, "consumers see only synced data");
        let started = Instant::now();
        log.wait_appended(&last.unwrap(), Durability::Synced).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "a waiter gets its sync at once, not at the interval");
        assert_eq!(log.high_watermark(), 10);
        assert_eq!(journal.syncs(), 1, "one sync for all ten rounds");
    });
}

/// Written data nobody waits for is synced within the sync interval (the high watermark moves
/// on its own).
#[test]
fn journal_syncs_unwaited_data_within_the_interval() {
    run(|| async {
        let backend = FaultyBackend::new();
        let root = PathBuf::from("/data");
        let journal = journal_syncing_every(&backend, &root, Duration::from_millis(20)).await;
        let log = open_shared(&backend, root.join("t-0"), &journal, 0, config()).await;
        let info = log.append(batch(1, 0, 100)).await.unwrap();
        log.wait_appended(&info, Durability::Written).await.unwrap();
        let started = Instant::now();
        while log.high_watermark() < 1 {
            assert!(started.elapsed() < Duration::from_secs(10), "the interval sync never came");
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(journal.syncs(), 1);
    });
}

/// A large append goes straight to the segment files: the journal gets a Direct entry naming
/// its offsets and none of its bytes; a small append after it is journaled as before; both are
/// acknowledged, readable and (synced) survive power loss.
#[test]
fn journal_large_append_goes_to_the_segment_files_with_a_direct_entry() {
    run(|| async {
        let backend = FaultyBackend::new();
        let dir = PathBuf::from("/d/t-0");
        let log = Log::open(backend.clone(), dir.clone(), config()).await.unwrap();
        let big = batch(1, 0, storage::constants::LOG_DIRECT_APPEND_BYTES);
        let info = log.append(big.clone()).await.unwrap();
        log.wait_appended(&info, Durability::Written).await.unwrap();
        assert!(log.journal().bytes_written() < 4096 * 2, "the batch's bytes are not in the journal: {}", log.journal().bytes_written());
        let small = batch(1, 1, 100);
        let base = append_synced(&log, small.clone()).await;
        assert_eq!(base, 1);
        let records: Vec<JournalRecord> = read_journal(&backend, &dir.join("journal")).await.unwrap().entries.into_iter().map(|e| e.record).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], JournalRecord::Direct { base_offset: 0, end_offset: 1 });
        assert!(matches!(records[1], JournalRecord::Batch(_)), "a small append is journaled");
        assert!(log.segment_synced_offset() >= 1, "acks=all on the small batch waited for the direct one's segment sync");
        assert_eq!(read_all(&log, 0).await, vec![with_base(&big, 0), with_base(&small, 1)]);
        drop(log);
        backend.crash();
        let log = Log::open(backend.clone(), dir, config()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, vec![with_base(&big, 0), with_base(&small, 1)]);
    });
}

/// A direct append nobody waits a sync for is synced within `direct_sync_delay_ms`: under
/// flush=always the high watermark then moves past it on its own.
#[test]
fn journal_direct_append_is_synced_within_its_delay() {
    run(|| async {
        let backend = FaultyBackend::new();
        let mut cfg = config();
        cfg.direct_sync_delay_ms = 20;
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg).await.unwrap();
        let info = log.append(batch(1, 0, storage::constants::LOG_DIRECT_APPEND_BYTES)).await.unwrap();
        log.wait_appended(&info, Durability::Written).await.unwrap();
        let started = Instant::now();
        while log.high_watermark() < 1 {
            assert!(started.elapsed() < Duration::from_secs(10), "the direct append was never synced");
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(log.segment_synced_offset(), 1);
    });
}
