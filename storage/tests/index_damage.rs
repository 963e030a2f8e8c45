//! Damaged, truncated or stale files of sealed segments (fuzz findings F1-F4, fuzz/README.md):
//! recovery never trusts an index that does not match its segment, and a read never skips,
//! misplaces or silently loses data below the high watermark.
extern crate riptide_storage as storage;

mod common;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use storage::{BatchHeader, Error, FaultyBackend, IoBackend, Log, LogConfig};

const BATCHES: usize = 24;

fn small_segments() -> LogConfig {
    LogConfig { segment_bytes: 2048, index_interval_bytes: 64, cache_bytes_max: 0, ..config() }
}

fn dir() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

/// A closed log of `BATCHES` batches over several sealed segments; returns what was appended
/// (with base offsets) and the backend.
async fn written() -> (FaultyBackend, Vec<Bytes>) {
    written_with(small_segments()).await
}

async fn written_with(config: LogConfig) -> (FaultyBackend, Vec<Bytes>) {
    let backend = FaultyBackend::new();
    let log = Log::open(backend.clone(), dir(), config).await.unwrap();
    let mut appended = Vec::new();
    for i in 0..BATCHES {
        let b = batch(1 + i % 3, 1_000 + 10 * i as i64, 100);
        let base = append_flushed(&log, b.clone()).await;
        appended.push(with_base(&b, base));
    }
    log.close().await.unwrap();
    (backend, appended)
}

/// Sealed segments' files with `suffix`, by base offset (the active segment has none).
fn sealed(backend: &FaultyBackend, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        backend.files().into_iter().filter(|p| p.parent() == Some(&dir()) && p.extension().is_some_and(|e| e == suffix)).collect();
    files.sort();
    files
}

/// Every offset read back as appended, each read starting at the batch holding it.
async fn assert_reads_everything(log: &Log<FaultyBackend>, appended: &[Bytes]) {
    assert_eq!(log.high_watermark(), appended.iter().map(|b| BatchHeader::parse(b).unwrap().next_offset()).max().unwrap());
    for want in appended {
        let h = BatchHeader::parse(want).unwrap();
        for offset in h.base_offset..h.next_offset() {
            let r = log.read(offset, 1).await.unwrap_or_else(|e| panic!("read at {offset}: {e}"));
            assert_eq!(r.batches.first(), Some(want), "read at {offset}");
        }
    }
    assert_eq!(read_all(log, 0).await, appended);
}

async fn reopen(backend: &FaultyBackend) -> storage::Result<Log<FaultyBackend>> {
    Log::open(backend.clone(), dir(), small_segments()).await
}

#[test]
fn index_damage_every_flipped_index_byte_is_rebuilt_not_trusted() {
    run(|| async {
        let (backend, appended) = written().await;
        let files: Vec<PathBuf> = sealed(&backend, "index").into_iter().chain(sealed(&backend, "timeindex")).collect();
        assert!(files.len() >= 4, "several sealed segments: {files:?}");
        // F1/F2: one flipped byte anywhere in an index file, one file at a time.
        for file in &files {
            let len = backend.file_len(file).unwrap();
            for pos in (0..len).step_by(3) {
                backend.corrupt_byte(file, pos);
                let log = reopen(&backend).await.unwrap();
                assert_reads_everything(&log, &appended).await;
                for want in &appended {
                    let h = BatchHeader::parse(want).unwrap();
                    let found = log.offset_for_timestamp(h.base_timestamp).await.unwrap();
                    assert_eq!(found.map(|f| f.0), Some(h.base_offset), "{} byte {pos}: time lookup", file.display());
                }
                log.close().await.unwrap();
            }
        }
    });
}

#[test]
fn index_damage_removed_or_stale_index_files_are_rebuilt() {
    run(|| async {
        let (backend, appended) = written().await;
        // Index files of one segment copied over another's (same shape, wrong segment).
        let index = sealed(&backend, "index");
        let data = backend.file_data(&index[1]).unwrap();
        overwrite(&backend, &index[0], &data).await;
        let log = reopen(&backend).await.unwrap();
        assert_reads_everything(&log, &appended).await;
        log.close().await.unwrap();
        for file in sealed(&backend, "index").iter().chain(&sealed(&backend, "timeindex")) {
            backend.remove(file).await.unwrap();
        }
        let log = reopen(&backend).await.unwrap();
        assert_reads_everything(&log, &appended).await;
        log.close().await.unwrap();
    });
}

/// F4: a sealed segment cut short is refused at open (its index no longer matches its size,
/// and the scan does not reach the next segment), never served as an empty range.
#[test]
fn index_damage_truncated_sealed_segment_is_refused() {
    run(|| async {
        // Cut mid-batch, and cut at the end of the first batch with an index that has no entry
        // past the cut (the fuzz input: large index interval).
        let sparse = LogConfig { index_interval_bytes: 1 << 20, ..small_segments() };
        for (config, at_batch_end) in [(small_segments(), false), (sparse, true)] {
            let (backend, appended) = written_with(config.clone()).await;
            let first = sealed(&backend, "index")[0].with_extension("log");
            let len = backend.file_len(&first).unwrap();
            backend.truncate_file(&first, if at_batch_end { appended[0].len() as u64 } else { len / 2 });
            match Log::open(backend.clone(), dir(), config).await {
                Err(Error::CorruptLog { path, .. }) => assert_eq!(path, first),
                Err(e) => panic!("wrong error: {e}"),
                Ok(_) => panic!("a truncated sealed segment was trusted (cut at batch end: {at_batch_end})"),
            }
        }
    });
}

/// F3: a flipped base offset (bytes 0..8, outside the batch CRC) in a sealed segment whose index
/// is intact: the read that meets it fails (the log goes offline), no batch is skipped or
/// returned at the wrong offset.
#[test]
fn index_damage_flipped_base_offset_fails_the_read() {
    run(|| async {
        let (backend, appended) = written().await;
        let first = sealed(&backend, "index")[0].with_extension("log");
        let second_batch_at = appended[0].len() as u64;
        backend.corrupt_byte(&first, second_batch_at + 7);
        let log = reopen(&backend).await.unwrap();
        let r = log.read(0, 1).await.unwrap();
        assert_eq!(r.batches.first(), Some(&appended[0]));
        let offset = BatchHeader::parse(&appended[1]).unwrap().base_offset;
        match log.read(offset, 1 << 20).await {
            Err(Error::CorruptLog { path, position, .. }) => assert_eq!((path, position), (first.clone(), second_batch_at)),
            Err(e) => panic!("wrong error: {e}"),
            Ok(r) => panic!("read at {offset} returned {} batches past a damaged base offset", r.batches.len()),
        }
        assert!(log.read(0, 1).await.is_err(), "offline after the damage was found");
        let _ = log.close().await;
    });
}

async fn overwrite(backend: &FaultyBackend, path: &Path, data: &[u8]) {
    let f = backend.open(path, false).await.unwrap();
    let align = storage::IoFile::alignment(&f) as usize;
    let mut buf = storage::IoFile::alloc_buf(&f, data.len().div_ceil(align).max(1) * align);
    let image = storage::io::IoBuf::as_mut_slice(&mut buf);
    image.fill(0);
    image[..data.len()].copy_from_slice(data);
    storage::IoFile::write_at(&f, buf, 0).await.unwrap();
    storage::IoFile::truncate(&f, data.len() as u64).await.unwrap();
}
