//! Crash recovery with the journal: every acknowledged batch comes back at its offset, nothing
//! unacknowledged appears half-written. Damage to the segment files above the recovery point
//! (a torn tail) is refilled from the journal; below it (synced data) the log refuses to open;
//! torn and failed journal writes are never acknowledged nor recovered; indexes are rebuilt.
extern crate riptide_storage as storage;
mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use storage::io::Faults;
use storage::{BatchHeader, DmaBackend, Durability, FaultyBackend, FlushPolicy, IoBackend, Log, LogConfig};

const SEED: u64 = 0x5eed_1234;

fn cfg() -> LogConfig {
    let mut c = uncached(config());
    c.segment_bytes = 64 << 10;
    c.index_interval_bytes = 512;
    c
}

/// Appends `n` random batches; returns them as stored (with offsets) and their file positions
/// within the last segment.
async fn fill<B: storage::IoBackend>(log: &Log<B>, rng: &mut StdRng, n: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    for i in 0..n {
        let b = batch(rng.gen_range(1..5), i as i64, rng.gen_range(1..900));
        let base = log.append(b.clone()).await.unwrap().base_offset;
        out.push(with_base(&b, base));
    }
    log.flush().await.unwrap();
    out
}

fn last_segment(files: &[PathBuf]) -> PathBuf {
    files.iter().filter(|p| p.extension().is_some_and(|e| e == "log")).max().unwrap().clone()
}

fn segment_base(path: &Path) -> i64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// File position where the batch holding byte `pos` starts, in the segment starting at
/// `seg_base`: recovery keeps everything before it.
fn start_of_batch_at(expected: &[Bytes], seg_base: i64, pos: u64) -> Option<u64> {
    let mut at = 0u64;
    for b in expected.iter().filter(|b| BatchHeader::parse(b).unwrap().base_offset >= seg_base) {
        if pos < at + b.len() as u64 {
            return Some(at);
        }
        at += b.len() as u64;
    }
    None
}

/// Position of a byte inside a batch header that is not covered by CRC or offset checks.
fn unprotected(expected: &[Bytes], seg_base: i64, pos: u64) -> bool {
    // Bytes 12..16 of a batch hold the partition leader epoch: outside the CRC.
    start_of_batch_at(expected, seg_base, pos).is_some_and(|at| (12..16).contains(&(pos - at)))
}

#[test]
fn crash_recovery_corruption_after_clean_close_refuses_to_open() {
    run(|| async {
        let mut rng = StdRng::seed_from_u64(SEED + 1);
        for round in 0..25 {
            let backend = FaultyBackend::new();
            let dir = PathBuf::from(format!("/data/t-{round}"));
            let log = Log::open(backend.clone(), dir.clone(), cfg()).await.unwrap();
            let n = rng.gen_range(1..120);
            let expected = fill(&log, &mut rng, n).await;
            log.close().await.unwrap();
            let seg = last_segment(&backend.files());
            let base = segment_base(&seg);
            let len = backend.file_len(&seg).unwrap();
            if len == 0 {
                continue;
            }
            let pos = loop {
                let p = rng.gen_range(0..len);
                if !unprotected(&expected, base, p) {
                    break p;
                }
            };
            backend.corrupt_byte(&seg, pos);
            let files_before: Vec<_> = backend.files().into_iter().map(|f| (backend.file_len(&f), f)).collect();
            let err = Log::open(backend.clone(), dir.clone(), cfg()).await.err().expect("corrupt synced data must not open");
            let batch_at = start_of_batch_at(&expected, base, pos).unwrap();
            match &err {
                storage::Error::CorruptLog { path, position, .. } => {
                    assert_eq!((path, *position), (&seg, batch_at), "round {round}: {err}");
                }
                other => panic!("round {round}: {other}"),
            }
            let files_after: Vec<_> = backend.files().into_iter().map(|f| (backend.file_len(&f), f)).collect();
            assert_eq!(files_before, files_after, "round {round}: recovery changed files");
        }
    });
}

/// A sealed (non-last) segment was synced before the next one existed: damage there takes the
/// log offline whatever the recovery point, even after a crash, and no later segment goes.
#[test]
fn crash_recovery_corrupt_sealed_segment_never_deletes_later_segments() {
    run(|| async {
        let mut rng = StdRng::seed_from_u64(SEED + 4);
        for (round, clean) in [(0, true), (1, false), (2, true), (3, false)] {
            let backend = FaultyBackend::new();
            let dir = PathBuf::from(format!("/data/s-{round}"));
            let log = Log::open(backend.clone(), dir.clone(), cfg()).await.unwrap();
            let expected = fill(&log, &mut rng, 300).await;
            assert!(log.segment_count() >= 3);
            if clean {
                log.close().await.unwrap();
            } else {
                drop(log);
                backend.crash();
            }
            let first = segment_path(&dir, 0);
            let pos = loop {
                let p = rng.gen_range(0..backend.file_len(&first).unwrap());
                if !unprotected(&expected, 0, p) {
                    break p;
                }
            };
            backend.corrupt_byte(&first, pos);
            // Lose the index too: recovery then scans the segment and meets the damage (with the
            // index intact it is found by the first read: see fault_injection.rs).
            for suffix in ["index", "timeindex"] {
                backend.remove(&first.with_extension(suffix)).await.unwrap();
            }
            let logs_before: Vec<_> = backend.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")).map(|p| (backend.file_len(&p), p)).collect();
            let err = Log::open(backend.clone(), dir.clone(), cfg()).await.err().expect("must not open");
            assert!(matches!(&err, storage::Error::CorruptLog { path, position, .. }
                if *path == first && Some(*position) == start_of_batch_at(&expected, 0, pos)), "{err}");
            let logs_after: Vec<_> = backend.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")).map(|p| (backend.file_len(&p), p)).collect();
            assert_eq!(logs_before, logs_after, "round {round}: segments deleted or shortened");
        }
    });
}

fn segment_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}


#[test]
fn crash_recovery_rebuilds_missing_and_corrupt_indexes() {
    run(|| async {
        let backend = FaultyBackend::new();
        let mut rng = StdRng::seed_from_u64(SEED + 3);
        let dir = PathBuf::from("/d/t-0");
        let log = Log::open(backend.clone(), dir.clone(), cfg()).await.unwrap();
        let expected = fill(&log, &mut rng, 300).await;
        assert!(log.segment_count() >= 3);
        log.close().await.unwrap();
        let indexes: Vec<_> =
            backend.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "index")).collect();
        assert!(indexes.len() >= 2);
        // Remove one index, corrupt another.
        backend.truncate_file(&indexes[0], 3);
        backend.corrupt_byte(&indexes[1], 5);
        let log = Log::open(backend.clone(), dir.clone(), cfg()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, expected);
        log.close().await.unwrap();
        assert_eq!(backend.file_len(&indexes[0]).unwrap() % 8, 0, "index rebuilt");
    });
}

#[test]
fn crash_recovery_torn_journal_write_keeps_valid_prefix() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg()).await.unwrap();
        let mut acked = Vec::new();
        for i in 0..5 {
            let b = batch(2, i, 300);
            let base = append_synced(&log, b.clone()).await;
            acked.push(with_base(&b, base));
        }
        let n = backend.write_count();
        backend.set_faults(Faults { torn_write_at: Some((n + 1, 4096 + 100)), ..Faults::default() });
        let info = log.append(batch(30, 9, 300)).await.unwrap();
        assert!(log.wait_durable(info.log_end_offset, Durability::Synced).await.is_err());
        drop(log);
        backend.crash();
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, acked);
        assert_eq!(log.log_end_offset(), 10);
    });
}

/// Appends `n` random batches, each acknowledged by the journal (synced), flushing the segment
/// files after the first `flushed` of them only; returns them as stored and the recovery point.
async fn fill_partly_flushed<B: storage::IoBackend>(log: &Log<B>, rng: &mut StdRng, n: usize, flushed: usize) -> (Vec<Bytes>, i64) {
    let mut out = Vec::new();
    for i in 0..n {
        if i == flushed {
            log.flush().await.unwrap();
        }
        let b = batch(rng.gen_range(1..5), i as i64, rng.gen_range(1..900));
        let base = append_synced(log, b.clone()).await;
        out.push(with_base(&b, base));
    }
    let rp = log.segment_synced_offset();
    (out, rp)
}

/// File position where offset `rp` starts in the segment starting at `seg_base` (its length if
/// `rp` is past it).
fn position_of(expected: &[Bytes], seg_base: i64, rp: i64) -> u64 {
    expected
        .iter()
        .filter(|b| {
            let h = BatchHeader::parse(b).unwrap();
            h.base_offset >= seg_base && h.base_offset < rp
        })
        .map(|b| b.len() as u64)
        .sum()
}

/// After a crash the segment files may lose or tear their unsynced tail: anything above the
/// recovery point is refilled from the journal, whatever was cut; a cut below it is damage to
/// synced data and refuses to open.
#[test]
fn crash_recovery_journal_refills_a_truncated_segment_tail() {
    run(|| async {
        let mut rng = StdRng::seed_from_u64(SEED);
        for round in 0..25 {
            let backend = FaultyBackend::new();
            let dir = PathBuf::from(format!("/data/t-{round}"));
            let log = Log::open(backend.clone(), dir.clone(), cfg()).await.unwrap();
            let n = rng.gen_range(2..120);
            let flushed = rng.gen_range(1..n);
            let (expected, rp) = fill_partly_flushed(&log, &mut rng, n, flushed).await;
            drop(log);
            backend.crash();
            let seg = last_segment(&backend.files());
            let base = segment_base(&seg);
            let len = backend.file_data(&seg).unwrap().len() as u64;
            let cut = rng.gen_range(0..=len);
            backend.truncate_file(&seg, cut);
            let protected = position_of(&expected, base, rp);
            match Log::open(backend.clone(), dir, cfg()).await {
                Ok(log) => {
                    assert!(cut >= protected, "round {round}: cut {cut} below the recovery point at {protected} was accepted");
                    assert_eq!(read_all(&log, 0).await, expected, "round {round}: cut {cut} of {len}");
                    let b = batch(2, 7, 10);
                    let next = append_synced(&log, b.clone()).await;
                    assert_eq!(next, BatchHeader::parse(expected.last().unwrap()).unwrap().next_offset());
                }
                Err(e) => {
                    assert!(cut < protected, "round {round}: cut {cut} above the recovery point {protected} refused: {e}");
                    assert!(matches!(e, storage::Error::CorruptLog { .. }), "{e}");
                }
            }
        }
    });
}

/// Flipped bytes in the segment files after a crash: above the recovery point the damaged tail
/// is trimmed and refilled from the journal (all data back); below it, refusal.
#[test]
fn crash_recovery_journal_repairs_corruption_above_the_recovery_point() {
    run(|| async {
        let mut rng = StdRng::seed_from_u64(SEED + 5);
        let mut repaired = 0;
        for round in 0..25 {
            let backend = FaultyBackend::new();
            let dir = PathBuf::from(format!("/data/t-{round}"));
            let log = Log::open(backend.clone(), dir.clone(), cfg()).await.unwrap();
            let n = rng.gen_range(2..120);
            let flushed = rng.gen_range(1..n);
            let (expected, rp) = fill_partly_flushed(&log, &mut rng, n, flushed).await;
            log.flush().await.unwrap(); // the whole tail reaches the segment file...
            drop(log);
            backend.crash();
            let seg = last_segment(&backend.files());
            let base = segment_base(&seg);
            let len = backend.file_data(&seg).unwrap().len() as u64;
            let _ = rp;
            // ...so the recovery point is the end now: damage anywhere is refused.
            let pos = loop {
                let p = rng.gen_range(0..len.max(1));
                if !unprotected(&expected, base, p) && start_of_batch_at(&expected, base, p).is_some() {
                    break p;
                }
                if len == 0 {
                    break 0;
                }
            };
            if len == 0 {
                continue;
            }
            backend.corrupt_byte(&seg, pos);
            match Log::open(backend.clone(), dir, cfg()).await {
                Ok(log) => {
                    repaired += 1;
                    assert_eq!(read_all(&log, 0).await, expected, "round {round}");
                }
                Err(e) => assert!(matches!(e, storage::Error::CorruptLog { .. }), "{e}"),
            }
        }
        assert_eq!(repaired, 0, "after a flush every batch is below the recovery point");
        // Now damage above the recovery point: garbage where the unsynced tail would be (a torn
        // segment write). It is trimmed and the tail comes back from the journal.
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/data/u".into(), cfg()).await.unwrap();
        let (expected, rp) = fill_partly_flushed(&log, &mut rng, 40, 10).await;
        drop(log);
        backend.crash();
        let seg = last_segment(&backend.files());
        let protected = position_of(&expected, segment_base(&seg), rp);
        assert!(rp < BatchHeader::parse(expected.last().unwrap()).unwrap().next_offset(), "a tail above the recovery point");
        let mut torn = backend.file_data(&seg).unwrap();
        torn.truncate(protected as usize);
        torn.extend((0..300u32).map(|i| (i * 7 + 1) as u8));
        backend.truncate_file(&seg, 0);
        backend.write_file(&seg, &torn);
        let log = Log::open(backend.clone(), "/data/u".into(), cfg()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, expected);
    });
}

/// A crash between the journal write and any segment write: every acknowledged batch comes
/// back from the journal at its offset, and is in the segment files once the log is open.
#[test]
fn crash_recovery_between_journal_and_segment_write_keeps_acknowledged_batches() {
    run(|| async {
        let backend = FaultyBackend::new();
        let mut c = cfg();
        c.flush = FlushPolicy::Interval { ms: 60_000, bytes: u64::MAX };
        let log = Log::open(backend.clone(), "/d/t-0".into(), c.clone()).await.unwrap();
        let mut acked = Vec::new();
        for i in 0..20 {
            let b = batch(1, i, 100);
            let info = log.append(b.clone()).await.unwrap();
            // The last wait is for Synced: a power loss may drop Written-only batches written
            // after the last sync (acks=1 is answered before the sync, as on Kafka).
            let level = if i % 2 == 1 { Durability::Synced } else { Durability::Written };
            log.wait_durable(info.log_end_offset, level).await.unwrap();
            acked.push(with_base(&b, info.base_offset));
        }
        assert_eq!(log.segment_synced_offset(), 0, "nothing in the segment files yet");
        backend.crash();
        std::mem::forget(log); // power is gone: the old instance must not run again
        let log = Log::open(backend.clone(), "/d/t-0".into(), c.clone()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, acked);
        assert_eq!(log.segment_synced_offset(), 20, "replayed batches are written to the segment files at open");
        assert_eq!(append_synced(&log, batch(1, 99, 1)).await, 20);
    });
}

/// A journal write or sync that fails: the batches of that round are not acknowledged, and a
/// crash afterwards does not bring them back.
#[test]
fn crash_recovery_failed_journal_sync_is_neither_acknowledged_nor_recovered() {
    run(|| async { failed_journal_round(|backend| Faults { fail_sync_at: Some(backend.sync_count() + 1), ..Faults::default() }).await });
}

#[test]
fn crash_recovery_failed_journal_write_is_neither_acknowledged_nor_recovered() {
    run(|| async { failed_journal_round(|backend| Faults { fail_write_at: Some(backend.write_count() + 1), ..Faults::default() }).await });
}

async fn failed_journal_round(fault: impl FnOnce(&FaultyBackend) -> Faults) {
    {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg()).await.unwrap();
        let mut acked = Vec::new();
        for i in 0..5 {
            let b = batch(2, i, 300);
            acked.push(with_base(&b, append_synced(&log, b.clone()).await));
        }
        backend.set_faults(fault(&backend));
        let info = log.append(batch(3, 9, 300)).await.unwrap();
        assert!(log.wait_durable(info.log_end_offset, Durability::Synced).await.is_err());
        assert_eq!(log.high_watermark(), 10, "never visible");
        drop(log);
        backend.crash();
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, acked);
        assert_eq!(log.log_end_offset(), 10);
    }
}

/// A journal file damaged in the middle, with later journal files holding entries: entries
/// after the damage cannot be recovered, so the log refuses to open (naming the file) instead
/// of silently losing acknowledged data.
#[test]
fn crash_recovery_journal_damaged_in_the_middle_refuses_to_open() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), cfg()).await.unwrap();
        // Enough to fill the first journal file and go on in the second.
        let journal_file_bytes = log.journal().config().file_bytes;
        let mut written = 0u64;
        let mut i = 0;
        while written < journal_file_bytes + (64 << 10) {
            let b = batch(4, i, 800);
            written += b.len() as u64 + 44;
            append_synced(&log, b).await;
            i += 1;
        }
        backend.crash();
        std::mem::forget(log);
        let first = PathBuf::from("/d/t-0/journal/0000.jnl");
        backend.corrupt_byte(&first, 10_000);
        match Log::open(backend.clone(), "/d/t-0".into(), cfg()).await {
            Err(storage::Error::CorruptLog { path, .. }) => assert_eq!(path, first),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a damaged journal was accepted"),
        }
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Real files (DMA backend): a snapshot of a live log's directory (as a crash leaves it) opens
/// with every acknowledged batch, including those only in the journal; damage in the synced
/// part of the segment file is refused. The live log's flusher keeps working between rounds:
/// its last segment may have been written and not synced yet, and damage there is a torn
/// unsynced tail the journal refills (CI once saw that as "damaged synced data accepted").
#[test]
fn crash_recovery_random_damage_dma() {
    const DAMAGE_AT: usize = 100;
    run(|| async {
        let mut rng = StdRng::seed_from_u64(SEED + 2);
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("live-0");
        let log = Log::open(DmaBackend::new(), live.clone(), cfg()).await.unwrap();
        let (expected, _) = fill_partly_flushed(&log, &mut rng, 150, 100).await;
        let mut refused = 0;
        for round in 0..8 {
            // Read with no await before the copy, so the live log cannot move it in between; a
            // checkpoint write in flight can only raise the copy's recovery point above it.
            let synced = log.segment_synced_offset();
            let dir = tmp.path().join(format!("crash-{round}"));
            copy_dir(&live, &dir);
            let seg = last_segment(&std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>());
            let mut data = std::fs::read(&seg).unwrap();
            let damaged = round % 2 == 1 && data.len() > 200;
            let below_synced = (DAMAGE_AT as u64) < position_of(&expected, segment_base(&seg), synced);
            if damaged {
                data[DAMAGE_AT] ^= 0x5a;
                std::fs::write(&seg, &data).unwrap();
            }
            match Log::open(DmaBackend::new(), dir.clone(), cfg()).await {
                Ok(recovered) => {
                    assert!(!(damaged && below_synced), "round {round}: damaged synced data accepted");
                    assert_eq!(read_all(&recovered, 0).await, expected, "round {round}");
                    recovered.close().await.unwrap();
                }
                Err(e) => {
                    assert!(damaged && matches!(e, storage::Error::CorruptLog { .. }), "round {round}: {e}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 0, "no round damaged synced data: the test checked nothing");
        log.close().await.unwrap();
    });
}

fn direct_cfg() -> LogConfig {
    let mut c = cfg();
    c.segment_bytes = 4 << 20;
    c.direct_sync_delay_ms = 3_600_000; // only a crash may come first
    c
}

/// A journaled batch (synced), a direct append (written, not synced) and a small journaled
/// append after it (written), as stored: offsets 0-1, 2 and 3.
async fn journaled_direct_journaled(log: &Log<FaultyBackend>) -> [Bytes; 3] {
    let first = batch(2, 0, 300);
    append_synced(log, first.clone()).await;
    let mut out = vec![with_base(&first, 0)];
    for (ts, len) in [(1, storage::constants::LOG_DIRECT_APPEND_BYTES), (2, 300)] {
        let b = batch(1, ts, len);
        let info = log.append(b.clone()).await.unwrap();
        log.wait_appended(&info, Durability::Written).await.unwrap();
        out.push(with_base(&b, info.base_offset));
    }
    out.try_into().expect("three batches")
}

/// Power loss after a direct append was written (not synced) and a small append after it was
/// journaled and synced there: the segment files lose the direct range, the journal's Direct
/// entry says the gap is the direct append's, so the log ends before it (neither was
/// acknowledged as synced; acks=1 answers are only promised across kill -9) instead of
/// refusing to open.
#[test]
fn crash_recovery_lost_direct_write_ends_the_log_before_it() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), direct_cfg()).await.unwrap();
        let [first, _, _] = journaled_direct_journaled(&log).await;
        assert_eq!(log.high_watermark(), 2, "acks=all and consumers wait for the direct append's sync");
        // The journal syncs written data within 5 ms (a sync in flight at the small append's
        // write may not cover it; the next one does): wait for two, or 200 ms.
        let (syncs, started) = (log.journal().syncs(), std::time::Instant::now());
        while log.journal().syncs() < syncs + 2 && started.elapsed() < std::time::Duration::from_millis(200) {
            glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert!(log.segment_synced_offset() < 3, "the direct append (offset 2) is not synced");
        drop(log);
        backend.crash();
        let journal = storage::read_journal(&backend, Path::new("/d/t-0/journal")).await.unwrap();
        let last = journal.entries.last().map(|e| e.record.clone());
        assert!(
            matches!(&last, Some(storage::JournalRecord::Batch(b)) if BatchHeader::parse(b).unwrap().base_offset == 3),
            "the small append after the direct one is in the synced journal: {last:?}"
        );
        let log = Log::open(backend.clone(), "/d/t-0".into(), direct_cfg()).await.unwrap();
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(read_all(&log, 0).await, vec![first]);
        // The log goes on at the offsets the lost appends had.
        assert_eq!(append_synced(&log, batch(1, 3, 300)).await, 2);
    });
}

/// kill -9 (no power loss) after the same appends: completed writes survive, so both the direct
/// append and the journaled one after it are there.
#[test]
fn crash_recovery_kill_after_direct_write_keeps_it_and_what_followed() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), "/d/t-0".into(), direct_cfg()).await.unwrap();
        let stored = journaled_direct_journaled(&log).await;
        drop(log); // no crash(): the files keep every completed write
        let log = Log::open(backend.clone(), "/d/t-0".into(), direct_cfg()).await.unwrap();
        assert_eq!(read_all(&log, 0).await, stored.to_vec());
    });
}
