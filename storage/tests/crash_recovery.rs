//! Crash recovery: torn/corrupt tails at random (seeded) points, zero padding, lost unsynced
//! data, missing or corrupt index files. Recovery must keep exactly the valid prefix.
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

/// Batches of `expected` that lie entirely in the intact part, given the damage at byte `cut`
/// of the segment starting at `seg_base`.
fn surviving(expected: &[Bytes], seg_base: i64, cut: u64) -> Vec<Bytes> {
    let mut pos = 0u64;
    expected
        .iter()
        .filter(|b| {
            let h = BatchHeader::parse(b).unwrap();
            if h.base_offset < seg_base {
                return true;
            }
            let end = pos + b.len() as u64;
            pos = end;
            end <= cut
        })
        .cloned()
        .collect()
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
fn crash_recovery_random_truncation_faulty() {
    run(|| async {
        let mut rng = StdRng::seed_from_u64(SEED);
        for round in 0..25 {
            let backend = FaultyBackend::new();
            let dir = PathBuf::from(format!("/data/t-{round}"));
            let log = Log::open(backend.clone(), dir.clone(), cfg()).await.unwrap();
            let n = rng.gen_range(1..120);
            let expected = fill(&log, &mut rng, n).await;
            drop(log);
            backend.crash();
            let seg = last_segment(&backend.files());
            // Cut inside what was written (data + block padding), not the reserved space beyond.
            let len = backend.file_data(&seg).unwrap().len() as u64;
            assert!(backend.file_len(&seg).unwrap() >= len);
            let cut = rng.gen_range(0..=len);
            backend.truncate_file(&seg, cut);
            let log = Log::open(backend.clone(), dir, cfg()).await.unwrap();
            let want = surviving(&expected, segment_base(&seg), cut);
            assert_eq!(read_all(&log, 0).await, want, "round {round} cut {cut} of {len}");
            // The log keeps working after recovery.
            let b = batch(2, 7, 10);
            let base = append_synced(&log, b.clone()).await;
            let mut want = want;
            want.push(with_base(&b, base));
            assert_eq!(read_all(&log, 0).await, want);
        }
    });
}

/// After a clean close everything was synced (the recovery point is the log end): a damaged
/// batch anywhere is corruption of acknowledged data, never a torn tail. The log refuses to
/// open, names the file and the batch's position, and deletes nothing.
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

/// After a crash, the active segment's data above the recovery point may be torn: damage there
/// is trimmed at the damaged batch, as before.
#[test]
fn crash_recovery_random_corruption_above_recovery_point_is_trimmed() {
    run(|| async {
        let mut rng = StdRng::seed_from_u64(SEED + 5);
        for round in 0..25 {
            let backend = FaultyBackend::new();
            let dir = PathBuf::from(format!("/data/t-{round}"));
            let log = Log::open(backend.clone(), dir.clone(), cfg()).await.unwrap();
            let n = rng.gen_range(1..120);
            let expected = fill(&log, &mut rng, n).await;
            drop(log);
            backend.crash();
            let seg = last_segment(&backend.files());
            let base = segment_base(&seg);
            let len = backend.file_data(&seg).unwrap().len() as u64;
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
            let log = Log::open(backend.clone(), dir, cfg()).await.unwrap();
            let cut = start_of_batch_at(&expected, base, pos).unwrap_or(len);
            assert_eq!(read_all(&log, 0).await, surviving(&expected, base, cut), "round {round} pos {pos}");
        }
    });
}

fn segment_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn crash_recovery_random_damage_dma() {
    run(|| async {
        let mut rng = StdRng::seed_from_u64(SEED + 2);
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("live-0");
        let log = Log::open(DmaBackend::new(), live.clone(), cfg()).await.unwrap();
        let expected = fill(&log, &mut rng, 150).await;
        // Snapshot while the log is open: the active segment is zero-padded to the block size.
        for round in 0..12 {
            let dir = tmp.path().join(format!("crash-{round}"));
            copy_dir(&live, &dir);
            let seg = last_segment(&std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>());
            let base = segment_base(&seg);
            let mut data = std::fs::read(&seg).unwrap();
            let logical: u64 = expected
                .iter()
                .filter(|b| BatchHeader::parse(b).unwrap().base_offset >= base)
                .map(|b| b.len() as u64)
                .sum();
            assert!(data.len() as u64 >= logical);
            assert_eq!(data.len() % 512, 0, "DMA tail writes pad to the block size");
            assert_eq!(data.len() as u64 % cfg().segment_bytes, 0, "space is reserved a step (here: a segment) at a time");
            assert!(data[logical as usize..].iter().all(|&b| b == 0), "padding and reserved space read as zeros");
            let cut = if round % 2 == 0 {
                let cut = rng.gen_range(0..=logical);
                data.truncate(cut as usize);
                cut
            } else if round == 1 {
                logical // only the zero padding
            } else {
                let pos = loop {
                    let p = rng.gen_range(0..logical);
                    if !unprotected(&expected, base, p) {
                        break p;
                    }
                };
                data[pos as usize] ^= 0x5a;
                start_of_batch_at(&expected, base, pos).unwrap_or(logical)
            };
            std::fs::write(&seg, &data).unwrap();
            let recovered = Log::open(DmaBackend::new(), dir.clone(), cfg()).await.unwrap();
            let want = surviving(&expected, base, cut);
            assert_eq!(read_all(&recovered, 0).await, want, "round {round}");
            recovered.close().await.unwrap();
            let valid: u64 = want
                .iter()
                .filter(|b| BatchHeader::parse(b).unwrap().base_offset >= base)
                .map(|b| b.len() as u64)
                .sum();
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), valid, "tail truncated at last valid batch");
        }
        log.close().await.unwrap();
    });
}

#[test]
fn crash_recovery_loses_only_unsynced_data() {
    run(|| async {
        let backend = FaultyBackend::new();
        let mut c = cfg();
        c.flush = FlushPolicy::Interval { ms: 60_000, bytes: u64::MAX };
        let log = Log::open(backend.clone(), "/d/t-0".into(), c.clone()).await.unwrap();
        let mut acked = Vec::new();
        for i in 0..10 {
            let b = batch(1, i, 100);
            let info = log.append(b.clone()).await.unwrap();
            log.wait_durable(info.log_end_offset, Durability::Synced).await.unwrap();
            acked.push(with_base(&b, info.base_offset));
        }
        for i in 0..10 {
            let info = log.append(batch(1, i, 100)).await.unwrap();
            log.wait_durable(info.log_end_offset, Durability::Written).await.unwrap();
        }
        assert_eq!(log.high_watermark(), 20);
        backend.crash();
        // Power is gone: the old log instance must not run again.
        std::mem::forget(log);
        let log = Log::open(backend.clone(), "/d/t-0".into(), c).await.unwrap();
        assert_eq!(read_all(&log, 0).await, acked);
    });
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
fn crash_recovery_torn_write_keeps_valid_prefix() {
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
