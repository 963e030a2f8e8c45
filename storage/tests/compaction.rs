//! Log compaction (cleanup.policy=compact): the latest value per key survives segment rolls,
//! restarts and crashes at every step of the swap; tombstones go after delete.retention.ms;
//! offsets are kept (reads see gaps); damage is still detected.
extern crate riptide_storage as storage;

mod common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use kafka_protocol::records::RecordBatchDecoder;
use riptide_testkit::{producer_batch, record_batch, Compression};
use storage::io::Faults;
use storage::{BatchHeader, CompactionConfig, Error, FaultyBackend, IoBackend, Log, LogConfig};

const KEYS: usize = 10;
const ROUNDS: usize = 20;
/// Timestamps of the appended records (ms): far in the past of `NOW`, unless a test says.
const T0: i64 = 1_000_000;
const NOW: i64 = T0 + 3_600_000;

fn dir() -> PathBuf {
    PathBuf::from("/data/compacted-0")
}

fn small_segments() -> LogConfig {
    LogConfig { segment_bytes: 1024, index_interval_bytes: 128, cache_bytes_max: 0, ..config() }
}

fn compact_now() -> CompactionConfig {
    CompactionConfig { min_cleanable_dirty_ratio: 0.0, delete_retention_ms: i64::MAX / 2, ..CompactionConfig::default() }
}

/// One batch of (key, value) records; a None value is a tombstone.
fn kvs(records: &[(&str, Option<&str>)], ts: i64) -> Bytes {
    let records: Vec<_> =
        records.iter().map(|(k, v)| (Some(Bytes::from(k.to_string())), v.map(|v| Bytes::from(v.to_string())))).collect();
    record_batch(records, ts, Compression::None)
}

/// (offset, key, value) of every record read from the log, from offset 0.
type Rec = (i64, String, Option<String>);

async fn records_of(log: &Log<FaultyBackend>) -> Vec<Rec> {
    let mut out = Vec::new();
    for batch in read_all(log, log.log_start_offset()).await {
        let set = RecordBatchDecoder::decode(&mut batch.clone()).expect("decodes");
        for r in set.records {
            let key = String::from_utf8(r.key.expect("keyed").to_vec()).unwrap();
            out.push((r.offset, key, r.value.map(|v| String::from_utf8(v.to_vec()).unwrap())));
        }
    }
    out
}

/// The latest record of each key in `appended` (what a compacted log must hold).
fn latest(appended: &[Rec]) -> BTreeMap<String, Rec> {
    appended.iter().map(|r| (r.1.clone(), r.clone())).collect()
}

/// `KEYS` keys updated `ROUNDS` times, one record per batch, then unique filler keys so every
/// update lies in a sealed segment. Returns the log and what was appended.
async fn updated_log(backend: &FaultyBackend) -> (Log<FaultyBackend>, Vec<Rec>) {
    let log = Log::open(backend.clone(), dir(), small_segments()).await.unwrap();
    let mut appended = Vec::new();
    for round in 0..ROUNDS {
        if round == ROUNDS / 2 {
            // A key written once, between updates: compaction leaves gaps on both sides.
            let base = append_synced(&log, kvs(&[("middle", Some("once"))], T0)).await;
            appended.push((base, "middle".to_string(), Some("once".to_string())));
        }
        for k in 0..KEYS {
            let (key, value) = (format!("key-{k}"), format!("value-{k}-{round}"));
            let base = append_synced(&log, kvs(&[(&key, Some(&value))], T0 + round as i64)).await;
            appended.push((base, key, Some(value)));
        }
    }
    append_fillers(&log, &mut appended, 0).await;
    (log, appended)
}

async fn append_fillers(log: &Log<FaultyBackend>, appended: &mut Vec<Rec>, from: usize) {
    for i in from..from + 20 {
        let (key, value) = (format!("filler-{i}"), format!("f{i}"));
        let base = append_synced(log, kvs(&[(&key, Some(&value))], T0 + 1_000)).await;
        appended.push((base, key, Some(value)));
    }
    log.flush().await.unwrap();
}

/// What a compacted log holds: the latest of every key, in the active segment also older ones.
fn assert_compacted(read: &[Rec], appended: &[Rec]) {
    let want = latest(appended);
    for r in want.values() {
        assert!(read.contains(r), "latest record {r:?} missing from {read:?}");
    }
    for r in read {
        assert!(appended.contains(r), "{r:?} was never appended (offsets must be kept)");
    }
    assert!(read.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
}

#[test]
fn compaction_keeps_last_value_per_key_across_segment_rolls() {
    run(|| async {
        let backend = FaultyBackend::new();
        let (log, appended) = updated_log(&backend).await;
        assert!(log.segment_count() > 10, "updates span many segments: {}", log.segment_count());
        let before = log.size_bytes();
        let outcome = log.compact(&compact_now(), NOW).await.unwrap();
        assert_eq!(outcome.records_removed, (KEYS * (ROUNDS - 1)) as u64, "{outcome:?}");
        assert!(outcome.segments_rewritten > 0 && log.size_bytes() < before);
        let read = records_of(&log).await;
        assert_compacted(&read, &appended);
        // Every update key appears exactly once, with its last value.
        for k in 0..KEYS {
            let of_key: Vec<_> = read.iter().filter(|r| r.1 == format!("key-{k}")).collect();
            assert_eq!(of_key.len(), 1, "key-{k}: {of_key:?}");
            assert_eq!(of_key[0].2.as_deref(), Some(format!("value-{k}-{}", ROUNDS - 1).as_str()));
        }
        assert_eq!(log.log_end_offset(), appended.len() as i64, "offsets are kept");
        // A second pass has nothing to do.
        assert_eq!(log.compact(&compact_now(), NOW).await.unwrap().segments_rewritten, 0);
        log.close().await.unwrap();
    });
}

#[test]
fn compaction_result_survives_restart_and_appends_continue() {
    run(|| async {
        let backend = FaultyBackend::new();
        let (log, mut appended) = updated_log(&backend).await;
        log.compact(&compact_now(), NOW).await.unwrap();
        let read = records_of(&log).await;
        log.close().await.unwrap();
        let log = Log::open(backend.clone(), dir(), small_segments()).await.unwrap();
        assert_eq!(records_of(&log).await, read, "the same records after a restart");
        assert_eq!(log.cleaned_to(), Some(*log.segment_base_offsets().last().unwrap()), "clean up to the active segment");
        append_fillers(&log, &mut appended, 100).await;
        assert_compacted(&records_of(&log).await, &appended);
        log.close().await.unwrap();
        // A restart that must rebuild every index file (e.g. they were lost) accepts the gaps.
        for path in backend.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "index")) {
            backend.remove(&path).await.unwrap();
        }
        let log = Log::open(backend.clone(), dir(), small_segments()).await.unwrap();
        assert_compacted(&records_of(&log).await, &appended);
        log.close().await.unwrap();
    });
}

#[test]
fn compaction_keeps_tombstones_until_delete_retention_then_removes_them() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), dir(), small_segments()).await.unwrap();
        let mut appended = Vec::new();
        for round in 0..5 {
            for k in 0..4 {
                let key = format!("key-{k}");
                let value = (k >= 2 || round < 4).then(|| format!("v{k}-{round}"));
                let base = append_synced(&log, kvs(&[(&key, value.as_deref())], T0)).await;
                appended.push((base, key, value));
            }
        }
        append_fillers(&log, &mut appended, 0).await;
        let config = CompactionConfig { delete_retention_ms: 60_000, ..compact_now() };
        // Within delete.retention.ms of the tombstones' segment: they stay, older values go.
        log.compact(&config, T0 + 1_000).await.unwrap();
        let read = records_of(&log).await;
        for k in 0..2 {
            let of_key: Vec<_> = read.iter().filter(|r| r.1 == format!("key-{k}")).collect();
            assert_eq!(of_key.len(), 1, "only the tombstone of key-{k}: {of_key:?}");
            assert_eq!(of_key[0].2, None);
        }
        // New data makes the log dirty again; past delete.retention.ms the tombstones go.
        append_fillers(&log, &mut appended, 100).await;
        let outcome = log.compact(&config, T0 + 120_000).await.unwrap();
        assert_eq!(outcome.tombstones_removed, 2, "{outcome:?}");
        let read = records_of(&log).await;
        assert!(read.iter().all(|r| r.1 != "key-0" && r.1 != "key-1"), "tombstoned keys are gone: {read:?}");
        assert!(read.iter().any(|r| r.1 == "key-2" && r.2.as_deref() == Some("v2-4")));
        log.close().await.unwrap();
    });
}

#[test]
fn compaction_min_lag_and_dirty_ratio_hold_it_back() {
    run(|| async {
        let backend = FaultyBackend::new();
        let (log, _) = updated_log(&backend).await;
        let young = CompactionConfig { min_compaction_lag_ms: 10 * 3_600_000, ..compact_now() };
        assert_eq!(log.compact(&young, NOW).await.unwrap().segments_rewritten, 0, "records younger than the lag stay");
        assert!(log.dirty_ratio(&compact_now(), NOW) > 0.99, "never compacted: all dirty");
        let picky = CompactionConfig { min_cleanable_dirty_ratio: 1.01, ..compact_now() };
        assert_eq!(log.compact(&picky, NOW).await.unwrap().segments_rewritten, 0);
        assert!(log.compact(&compact_now(), NOW).await.unwrap().segments_rewritten > 0);
        assert_eq!(log.dirty_ratio(&compact_now(), NOW), 0.0);
        log.close().await.unwrap();
    });
}

#[test]
fn compaction_reads_return_gaps_and_the_right_records_from_every_offset() {
    run(|| async {
        let backend = FaultyBackend::new();
        let (log, appended) = updated_log(&backend).await;
        log.compact(&compact_now(), NOW).await.unwrap();
        let read = records_of(&log).await;
        assert!(read.windows(2).any(|w| w[1].0 > w[0].0 + 1), "offset gaps: {read:?}");
        for offset in 0..log.high_watermark() {
            let r = log.read(offset, 1).await.unwrap_or_else(|e| panic!("read at {offset}: {e}"));
            let first = BatchHeader::parse(&r.batches[0]).unwrap();
            let want = read.iter().find(|rec| rec.0 >= offset).expect("a record at or after every offset");
            assert!(first.base_offset <= want.0 && want.0 <= first.last_offset(), "read at {offset} gave {first:?}, want {want:?}");
        }
        assert_compacted(&read, &appended);
        log.close().await.unwrap();
    });
}

#[test]
fn compaction_with_a_full_offset_map_cleans_a_prefix_per_pass() {
    run(|| async {
        let backend = FaultyBackend::new();
        let (log, appended) = updated_log(&backend).await;
        let tiny = CompactionConfig { offset_map_entries_max: 3, ..compact_now() };
        let end = *log.segment_base_offsets().last().unwrap();
        let mut passes = 0;
        let mut cleaned_to = 0;
        while cleaned_to < end {
            let outcome = log.compact(&tiny, NOW).await.unwrap();
            assert!(outcome.cleaned_to > cleaned_to, "each pass moves on: {outcome:?}");
            cleaned_to = outcome.cleaned_to;
            passes += 1;
            assert!(passes < 100);
        }
        assert!(passes > 2, "{passes} passes");
        let read = records_of(&log).await;
        assert_compacted(&read, &appended);
        assert_eq!(read.iter().filter(|r| r.1.starts_with("key-")).count(), KEYS, "fully compacted in the end");
        log.close().await.unwrap();
    });
}

#[test]
fn compaction_crash_at_each_step_recovers_the_latest_values() {
    for fault in ["sync", "write"] {
        let mut n = 1;
        loop {
            let (done, files) = crash_during_compaction(fault, n);
            assert!(files.iter().all(|p| !p.to_string_lossy().ends_with(".cleaned")), "leftovers removed: {files:?}");
            if done {
                break;
            }
            n += 1;
            assert!(n < 200, "compaction never finished");
        }
        assert!(n > 3, "{fault}: the faults hit several steps ({n})");
    }
}

/// Compacts with the `n`th sync (or write) after the start failing, then loses power and
/// recovers: every latest value is there and nothing else changed. Returns whether the
/// compaction finished unharmed, and the files after recovery.
fn crash_during_compaction(fault: &'static str, n: u64) -> (bool, Vec<PathBuf>) {
    let (tx, rx) = std::sync::mpsc::channel();
    run(move || async move {
        let backend = FaultyBackend::new();
        let (log, appended) = updated_log(&backend).await;
        let faults = match fault {
            "sync" => Faults { fail_sync_at: Some(backend.sync_count() + n), ..Faults::default() },
            _ => Faults { fail_write_at: Some(backend.write_count() + n), ..Faults::default() },
        };
        backend.set_faults(faults);
        let (syncs, writes) = (backend.sync_count(), backend.write_count());
        let result = log.compact(&compact_now(), NOW).await;
        let used = match fault {
            "sync" => backend.sync_count() - syncs,
            _ => backend.write_count() - writes,
        };
        let done = result.is_ok() && used < n;
        drop(log);
        backend.crash();
        let log = Log::open(backend.clone(), dir(), small_segments()).await.unwrap_or_else(|e| panic!("{fault} {n}: recovery failed: {e}"));
        assert_compacted(&records_of(&log).await, &appended);
        // Whatever the crash left, a new pass finishes the job.
        log.compact(&compact_now(), NOW).await.unwrap();
        let read = records_of(&log).await;
        assert_eq!(read.iter().filter(|r| r.1.starts_with("key-")).count(), KEYS, "{fault} {n}");
        log.close().await.unwrap();
        tx.send((done, backend.files())).unwrap();
    });
    rx.recv().unwrap()
}

#[test]
fn compaction_damage_in_a_compacted_segment_is_still_detected() {
    run(|| async {
        let backend = FaultyBackend::new();
        let (log, _) = updated_log(&backend).await;
        log.compact(&compact_now(), NOW).await.unwrap();
        log.close().await.unwrap();
        // A compacted segment with at least two batches: give the second the first's base
        // offset (outside the CRC), so offsets no longer increase.
        let (path, second) = segment_with_two_batches(&backend).expect("a compacted segment holds two batches");
        let mut data = backend.file_data(&path).unwrap();
        let first_base = data[..8].to_vec();
        data[second..second + 8].copy_from_slice(&first_base);
        backend.write_file(&path, &data);
        let detected = match Log::open(backend.clone(), dir(), small_segments()).await {
            Err(Error::CorruptLog { .. }) => true,
            Err(e) => panic!("unexpected error {e}"),
            Ok(log) => {
                let mut offset = 0;
                let mut corrupt = false;
                while offset < log.high_watermark() {
                    match log.read(offset, 1 << 20).await {
                        Err(Error::CorruptLog { .. }) => {
                            corrupt = true;
                            break;
                        }
                        Err(e) => panic!("unexpected error {e}"),
                        Ok(r) => offset = BatchHeader::parse(r.batches.last().unwrap()).unwrap().next_offset(),
                    }
                }
                corrupt
            }
        };
        assert!(detected, "a misplaced batch in a compacted segment is damage");
    });
}

fn segment_with_two_batches(backend: &FaultyBackend) -> Option<(PathBuf, usize)> {
    let mut logs: Vec<PathBuf> = backend.files().into_iter().filter(|p| p.parent() == Some(Path::new("/data/compacted-0")) && p.extension().is_some_and(|e| e == "log")).collect();
    logs.sort();
    logs.pop(); // the active segment
    logs.into_iter().find_map(|path| {
        let data = backend.file_data(&path)?;
        let first = BatchHeader::parse(&data).ok()?;
        (data.len() > first.total_size() + 61).then_some((path, first.total_size()))
    })
}

#[test]
fn compaction_keeps_an_idempotent_producers_last_batch_for_restarts() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), dir(), small_segments()).await.unwrap();
        let pid = 42;
        let theirs = |seq: i32, v: &str| producer_batch([(Some(Bytes::from("shared")), Some(Bytes::from(v.to_string())))], T0, Compression::None, (pid, 0, seq));
        append_synced(&log, theirs(0, "p0")).await;
        append_synced(&log, theirs(1, "p1")).await;
        // A plain producer overwrites the key: the idempotent producer's batches are emptied.
        append_synced(&log, kvs(&[("shared", Some("plain"))], T0)).await;
        // Fillers up to one roll: rebuilding producer state without a snapshot reads the last
        // two segments.
        let mut i = 0;
        while log.segment_count() < 2 {
            append_flushed(&log, kvs(&[(&format!("filler-{i}"), Some("f"))], T0)).await;
            i += 1;
        }
        log.flush().await.unwrap();
        let outcome = log.compact(&compact_now(), NOW).await.unwrap();
        assert_eq!(outcome.records_removed, 2, "{outcome:?}");
        log.close().await.unwrap();
        // Without snapshots producer state is rebuilt from batch headers: the emptied last batch
        // still tells the producer's sequence.
        for path in backend.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "snapshot")) {
            backend.remove(&path).await.unwrap();
        }
        let log = Log::open(backend.clone(), dir(), small_segments()).await.unwrap();
        let retry = log.append(theirs(1, "p1")).await.unwrap();
        assert!(retry.duplicate && retry.base_offset == 1, "a retry of the last batch is a duplicate: {retry:?}");
        let next = log.append(theirs(2, "p2")).await.unwrap();
        assert!(!next.duplicate);
        let empty = read_all(&log, 0).await.into_iter().map(|b| BatchHeader::parse(&b).unwrap()).find(|h| h.producer_id == pid);
        assert_eq!(empty.map(|h| (h.base_offset, h.records_count)), Some((1, 0)), "only the last batch, empty");
        log.close().await.unwrap();
    });
}

#[test]
fn compaction_reads_skip_segments_left_with_empty_batches() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), dir(), small_segments()).await.unwrap();
        // An idempotent producer updates "k"; then a plain producer updates "z" over a few
        // segments and overwrites "k": the idempotent producer's last batch is emptied (and
        // kept, Kafka's rule), and the segment holding it keeps nothing else.
        let pid = 7;
        let mut last_of_pid = 0;
        for seq in 0..30 {
            let b = producer_batch([(Some(Bytes::from("k")), Some(Bytes::from(format!("v{seq}"))))], T0, Compression::None, (pid, 0, seq));
            last_of_pid = append_flushed(&log, b).await;
        }
        for i in 0..40 {
            append_flushed(&log, kvs(&[("z", Some(&format!("z{i}")))], T0)).await;
        }
        append_flushed(&log, kvs(&[("k", Some("plain"))], T0)).await;
        let mut appended = Vec::new();
        append_fillers(&log, &mut appended, 0).await;
        log.compact(&compact_now(), NOW).await.unwrap();
        let headers: Vec<BatchHeader> = read_all(&log, 0).await.iter().map(|b| BatchHeader::parse(b).unwrap()).collect();
        let emptied: Vec<_> = headers.iter().filter(|h| h.records_count == 0).map(|h| (h.producer_id, h.base_offset)).collect();
        assert_eq!(emptied, vec![(pid, last_of_pid)], "only the producer's last batch is kept emptied");
        for offset in [0, last_of_pid] {
            let r = log.read(offset, 1 << 20).await.unwrap();
            let records: i32 = r.batches.iter().map(|b| BatchHeader::parse(b).unwrap().records_count).sum();
            assert!(records > 0, "a read at {offset} returns records, not only emptied batches ({} batches)", r.batches.len());
        }
        log.close().await.unwrap();
    });
}

/// Throughput on the real (O_DIRECT) backend: `COMPACTION_BENCH_MB` MiB (default 300) of 1 KiB
/// values over 10,000 keys, 64 MiB segments. Run with
/// `cargo test --release -p riptide-storage --test compaction -- --ignored --nocapture`.
#[test]
#[ignore]
fn compaction_throughput_on_disk() {
    run(|| async {
        let mb: usize = std::env::var("COMPACTION_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
        let tmp = tempfile::tempdir_in(std::env::var("COMPACTION_BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
        let config = LogConfig { segment_bytes: 64 << 20, ..config() };
        let log = Log::open(storage::DmaBackend::new(), partition_dir(tmp.path()), config).await.unwrap();
        let value = "x".repeat(1024);
        let per_batch = 64;
        let batches = (mb << 20) / (per_batch * 1060);
        for b in 0..batches {
            let keys: Vec<String> = (0..per_batch).map(|i| format!("key-{}", (b * per_batch + i) % 10_000)).collect();
            let records: Vec<(&str, Option<&str>)> = keys.iter().map(|k| (k.as_str(), Some(value.as_str()))).collect();
            log.append(kvs(&records, T0)).await.unwrap();
        }
        log.flush().await.unwrap();
        let before = log.size_bytes();
        let started = std::time::Instant::now();
        let outcome = log.compact(&compact_now(), NOW).await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "compacted {:.0} MiB ({} segments, {:.0} MiB sealed) to {:.1} MiB in {secs:.2} s: {:.0} MiB/s of sealed input",
            before as f64 / 1048576.0,
            log.segment_count(),
            outcome.bytes_before as f64 / 1048576.0,
            outcome.bytes_after as f64 / 1048576.0,
            outcome.bytes_before as f64 / 1048576.0 / secs
        );
        log.close().await.unwrap();
    });
}

/// A follower's truncation into the compacted part (segments with offset gaps) keeps what lies
/// below the cut, and lowers the clean offset to the new end, also on disk: appends after it are
/// dirty, so the next pass compacts them.
#[test]
fn compaction_truncation_below_the_clean_offset_lowers_it() {
    run(|| async {
        let backend = FaultyBackend::new();
        let (log, _) = updated_log(&backend).await;
        log.compact(&compact_now(), NOW).await.unwrap();
        let clean = log.cleaned_to().expect("compacted");
        let kept: Vec<_> = records_of(&log).await.into_iter().filter(|r| r.0 < clean - 5).collect();
        let end = log.truncate_to(clean - 5).await.unwrap();
        assert!(end <= clean - 5);
        assert_eq!(log.cleaned_to(), Some(end));
        let after: Vec<_> = records_of(&log).await;
        assert_eq!(after.iter().filter(|r| r.0 < end).count(), after.len(), "nothing at or above the new end");
        assert_eq!(after, kept.into_iter().filter(|r| r.0 < end).collect::<Vec<_>>());
        log.close().await.unwrap();
        let log = Log::open(backend.clone(), dir(), small_segments()).await.unwrap();
        assert_eq!(log.cleaned_to(), Some(end), "the clean offset on disk was lowered too");
        assert_eq!(records_of(&log).await, after);
    });
}
