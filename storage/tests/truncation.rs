//! A follower's write path: `append_at` (offsets the leader assigned) and `truncate_to` (drop
//! the tail above an offset), including crashes during and after a truncation.
extern crate riptide_storage as storage;
mod common;

use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use storage::io::Faults;
use storage::{Durability, Error, FaultyBackend, Log, LogConfig};

const DIR: &str = "/d/t-0";

fn cfg() -> LogConfig {
    let mut c = config();
    c.segment_bytes = 64 << 10;
    c
}

async fn open(backend: &FaultyBackend) -> Log<FaultyBackend> {
    Log::open(backend.clone(), DIR.into(), cfg()).await.expect("open")
}

/// `count` batches of 3 records through the leader path, synced in the journal; returns them
/// as stored. Every other one is also flushed to the segment files, so a truncation meets both.
async fn fill(log: &Log<FaultyBackend>, count: usize, ts: i64) -> Vec<Bytes> {
    let mut stored = Vec::new();
    for i in 0..count {
        let b = batch(3, ts + i as i64, 2000);
        let base = append_synced(log, b.clone()).await;
        if i % 2 == 0 {
            log.flush().await.unwrap();
        }
        stored.push(with_base(&b, base));
    }
    stored
}

/// A batch as a leader sends it to a follower: base offset and partition leader epoch set.
fn leader_batch(base: i64, epoch: i32, ts: i64) -> Bytes {
    with_epoch(&with_base(&batch(3, ts, 500), base), epoch)
}

/// Truncating inside a batch drops that batch whole (Kafka's rule); reads, the high watermark
/// and the next append follow the new end; a clean restart keeps it.
#[test]
fn truncation_drops_the_tail_and_appends_go_on_there() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        let stored = fill(&log, 10, 0).await; // offsets 0..30
        assert_eq!(log.truncate_to(14).await.unwrap(), 12, "the batch [12, 15) straddles 14: dropped whole");
        assert_eq!((log.log_end_offset(), log.high_watermark()), (12, 12));
        assert_eq!(read_all(&log, 0).await, stored[..4].to_vec());
        assert!(matches!(log.read(20, 1 << 20).await, Err(Error::OffsetOutOfRange { .. })));
        let next = batch(2, 100, 100);
        assert_eq!(append_synced(&log, next.clone()).await, 12);
        let mut want = stored[..4].to_vec();
        want.push(with_base(&next, 12));
        assert_eq!(read_all(&log, 0).await, want);
        log.close().await.unwrap();
        let log = open(&backend).await;
        assert_eq!(read_all(&log, 0).await, want);
        assert_eq!(log.truncate_to(100).await.unwrap(), 14, "at or past the end: nothing to do");
        assert!(matches!(log.truncate_to(-1).await, Err(Error::OffsetOutOfRange { .. })));
    });
}

/// Power loss after a truncation and a new append at the cut: the journal still holds the old
/// tail's entries (journaled before the truncation), which must not come back; the new append
/// (synced in the journal only) does.
#[test]
fn truncation_old_journal_entries_are_not_replayed_after_a_crash() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        let stored = fill(&log, 10, 0).await;
        assert_eq!(log.truncate_to(12).await.unwrap(), 12);
        let next = batch(1, 100, 100);
        assert_eq!(append_synced(&log, next.clone()).await, 12);
        drop(log);
        backend.crash();
        let log = open(&backend).await;
        let mut want = stored[..4].to_vec();
        want.push(with_base(&next, 12));
        assert_eq!(read_all(&log, 0).await, want);
        assert_eq!(log.log_end_offset(), 13);
    });
}

/// A truncation that fails half way (the cut segment's sync fails after the later segments
/// were deleted: the log is poisoned) and a power loss, which brings the cut segment back
/// whole: the next open finishes the truncation from the checkpoint's "truncating to" mark.
#[test]
fn truncation_interrupted_by_a_crash_is_finished_at_open() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        let stored = fill(&log, 60, 0).await;
        log.flush().await.unwrap();
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 3, "{bases:?}");
        let cut = bases[1] + 3;
        // Syncs of the truncation: the checkpoint's "begin" (1), then the cut segment (2).
        backend.set_faults(Faults { fail_sync_at: Some(backend.sync_count() + 2), ..Faults::default() });
        assert!(log.truncate_to(cut).await.is_err(), "the injected sync failure fails the truncation");
        assert!(log.append(batch(1, 1, 10)).await.is_err(), "a failed truncation poisons the log");
        drop(log);
        backend.crash();
        let log = open(&backend).await;
        assert_eq!(log.log_end_offset(), cut);
        assert_eq!(read_all(&log, 0).await, stored[..(cut / 3) as usize].to_vec());
        assert_eq!(append_synced(&log, batch(1, 100, 10)).await, cut);
        log.close().await.unwrap();
        let log = open(&backend).await;
        assert_eq!(log.log_end_offset(), cut + 1, "the finished truncation is not redone");
    });
}

/// A cut in an older segment deletes the segments above it and makes it the active one again:
/// appends, rolls and a restart work from there.
#[test]
fn truncation_into_an_older_segment_deletes_the_later_ones() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        let stored = fill(&log, 120, 0).await; // ~6 KiB batches, 64 KiB segments
        log.flush().await.unwrap();
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4, "{bases:?}");
        let cut = bases[1] + 3; // the second batch of the second segment
        assert_eq!(log.truncate_to(cut).await.unwrap(), cut);
        assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
        let logs = backend.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")).count();
        assert_eq!(logs, 2, "the later segment files are gone");
        let kept = (cut / 3) as usize;
        assert_eq!(read_all(&log, 0).await, stored[..kept].to_vec());
        let more = fill(&log, 40, 1000).await;
        log.flush().await.unwrap();
        assert!(log.segment_base_offsets().len() > 2, "the cut segment rolls again");
        let want: Vec<Bytes> = stored[..kept].iter().chain(&more).cloned().collect();
        assert_eq!(read_all(&log, 0).await, want);
        drop(log);
        let log = open(&backend).await;
        assert_eq!(read_all(&log, 0).await, want);
    });
}

/// `append_at` keeps the leader's offsets and partition leader epochs byte for byte, refuses
/// batches that do not start at the log end, and survives a crash like any append.
#[test]
fn truncation_append_at_keeps_the_leaders_offsets() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        let first = leader_batch(0, 5, 1);
        let info = log.append_at(first.clone()).await.unwrap();
        assert_eq!((info.base_offset, info.log_end_offset), (0, 3));
        log.wait_appended(&info, Durability::Synced).await.unwrap();
        match log.append_at(leader_batch(7, 5, 2)).await {
            Err(Error::OffsetMismatch { expected: 3, got: 7 }) => {}
            other => panic!("a gap must be refused: {other:?}"),
        }
        assert!(matches!(log.append_at(leader_batch(0, 5, 2)).await, Err(Error::OffsetMismatch { .. })), "an overlap too");
        let second = leader_batch(3, 6, 3);
        let info = log.append_at(second.clone()).await.unwrap();
        log.wait_appended(&info, Durability::Synced).await.unwrap();
        assert_eq!(read_all(&log, 0).await, vec![first.clone(), second.clone()]);
        drop(log);
        backend.crash();
        let log = open(&backend).await;
        assert_eq!(read_all(&log, 0).await, vec![first, second]);
    });
}

/// After a truncation an idempotent producer's truncated batch is new again: its retry is
/// appended at the new end, not answered as a duplicate of data that is gone.
#[test]
fn truncation_forgets_the_producer_batches_it_drops() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        let batches: Vec<Bytes> = (0..3).map(|seq| riptide_testkit::idempotent_batch(7, 0, seq * 2, 2)).collect();
        for b in &batches {
            append_synced(&log, b.clone()).await;
        }
        assert_eq!(log.truncate_to(4).await.unwrap(), 4);
        let retry = log.append(batches[2].clone()).await.unwrap();
        assert!(!retry.duplicate, "the dropped batch is appended again");
        assert_eq!(retry.base_offset, 4);
        let again = log.append(batches[2].clone()).await.unwrap();
        assert!(again.duplicate, "and then it is a duplicate");
    });
}

/// Two logs on one small journal: after one is truncated (and appends no more), the other
/// keeps appending through many ring wraps: the truncated log's entries from before no longer
/// hold journal files (it registered again), and its data is what the truncation left.
#[test]
fn truncation_leaves_the_shared_journal_and_other_logs_working() {
    run(|| async {
        let backend = FaultyBackend::new();
        let root = PathBuf::from("/data");
        let journal = shared_journal(&backend, &root, 2 << 20).await;
        let a = Rc::new(open_shared(&backend, root.join("t-0"), &journal, 0, config()).await);
        let b = Rc::new(open_shared(&backend, root.join("t-1"), &journal, 1, config()).await);
        for i in 0..20 {
            append_synced(&a, batch(4, i, 1000)).await;
            append_synced(&b, batch(4, i, 1000)).await;
        }
        assert_eq!(a.truncate_to(40).await.unwrap(), 40);
        let total = 6 * journal.config().file_bytes;
        let writer = b.clone();
        let appends = async move {
            let (mut sent, mut n) = (0u64, 0usize);
            while sent < total {
                let x = batch(8, n as i64, 8 << 10);
                sent += x.len() as u64;
                append_synced(&writer, x).await;
                n += 1;
            }
            n
        };
        let deadline = glommio::timer::sleep(std::time::Duration::from_secs(30));
        let n = match futures::future::select(std::pin::pin!(appends), std::pin::pin!(deadline)).await {
            futures::future::Either::Left((n, _)) => n,
            futures::future::Either::Right(_) => panic!("the journal ring is stuck behind the truncated log's old entries"),
        };
        assert_eq!(read_all(&a, 0).await.len(), 10);
        assert_eq!(read_all(&b, 0).await.len(), 20 + n);
    });
}
