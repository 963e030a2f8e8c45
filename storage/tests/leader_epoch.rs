//! The leader epoch cache (epoch -> start offset) and its checkpoint file: kept from the
//! batches a follower appends and a leader stamps, cut by truncation, rebuilt after crashes.
extern crate riptide_storage as storage;
mod common;

use std::path::Path;

use bytes::Bytes;
use common::*;
use storage::io::Faults;
use storage::leader_epoch::LEADER_EPOCH_FILE;
use storage::{BatchHeader, Durability, EpochEntry, FaultyBackend, Log, LogConfig};

const DIR: &str = "/d/t-0";

async fn open(backend: &FaultyBackend) -> Log<FaultyBackend> {
    Log::open(backend.clone(), DIR.into(), config()).await.expect("open")
}

/// Three records at `base` stamped with `epoch`, as a leader sends them to a follower.
fn leader_batch(base: i64, epoch: i32) -> Bytes {
    with_epoch(&with_base(&batch(3, base, 200), base), epoch)
}

async fn append_at_synced(log: &Log<FaultyBackend>, data: Bytes) {
    let info = log.append_at(data).await.expect("append_at");
    log.wait_appended(&info, Durability::Synced).await.expect("synced");
}

fn entries(pairs: &[(i32, i64)]) -> Vec<EpochEntry> {
    pairs.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset }).collect()
}

/// A follower's batches of epochs 1, 1, 3: the cache has where each epoch starts, answers
/// OffsetsForLeaderEpoch as Kafka does, and comes back after a clean restart and after a power
/// loss (then from the journal replay).
#[test]
fn leader_epoch_follower_batches_build_the_cache_and_it_survives_restarts() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        for (base, epoch) in [(0, 1), (3, 1), (6, 3)] {
            append_at_synced(&log, leader_batch(base, epoch)).await;
        }
        let want = entries(&[(1, 0), (3, 6)]);
        assert_eq!(log.leader_epochs(), want);
        assert_eq!(log.end_offset_for_epoch(1), (1, 6));
        assert_eq!(log.end_offset_for_epoch(2), (1, 6), "an epoch this log never had");
        assert_eq!(log.end_offset_for_epoch(3), (3, 9));
        assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
        drop(log);
        backend.crash();
        let log = open(&backend).await;
        assert_eq!(log.leader_epochs(), want, "rebuilt from the journal after a power loss");
        log.close().await.unwrap();
        let log = open(&backend).await;
        assert_eq!(log.leader_epochs(), want, "from the file after a clean restart");
    });
}

/// Truncating into epoch 3 drops it; the follower's next batches of epoch 4 start there, and a
/// crash right after does not bring epoch 3 back from the old file.
#[test]
fn leader_epoch_truncation_drops_the_epochs_above_the_cut() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        for (base, epoch) in [(0, 1), (3, 3), (6, 3)] {
            append_at_synced(&log, leader_batch(base, epoch)).await;
        }
        log.flush().await.unwrap(); // the file holds (3, 3)
        assert_eq!(log.truncate_to(3).await.unwrap(), 3);
        assert_eq!(log.leader_epochs(), entries(&[(1, 0)]));
        append_at_synced(&log, leader_batch(3, 4)).await;
        append_at_synced(&log, leader_batch(6, 4)).await;
        drop(log);
        backend.crash();
        let log = open(&backend).await;
        assert_eq!(log.leader_epochs(), entries(&[(1, 0), (4, 3)]));
        assert_eq!(log.end_offset_for_epoch(3), (1, 3));
    });
}

/// A batch as the Java producer sends it: no partition leader epoch (-1).
fn client_batch(ts: i64) -> Bytes {
    with_epoch(&batch(2, ts, 100), -1)
}

/// A leader stamps its epoch into the batches clients send, outside the CRC: the stored
/// batches still validate, and the epoch starts at the log end when it is set.
#[test]
fn leader_epoch_leader_stamps_its_epoch_in_client_batches() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        append_synced(&log, client_batch(0)).await;
        assert_eq!(log.leader_epochs(), Vec::new(), "client batches carry no epoch");
        log.set_leader_epoch(7);
        assert_eq!(log.leader_epochs(), entries(&[(7, 2)]), "the epoch starts at the log end at once");
        append_synced(&log, client_batch(1)).await;
        let read = log.read(2, 1 << 20).await.unwrap();
        let stored = read.batches[0].clone();
        storage::validate_batches(&stored).expect("the CRC does not cover the epoch");
        assert_eq!(BatchHeader::parse(&stored).unwrap().partition_leader_epoch, 7);
        assert_eq!(BatchHeader::parse(&log.read(0, 1 << 20).await.unwrap().batches[0]).unwrap().partition_leader_epoch, -1);
    });
}

/// A damaged epoch file is rebuilt from every batch.
#[test]
fn leader_epoch_damaged_file_is_rebuilt_from_the_batches() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        for (base, epoch) in [(0, 2), (3, 5)] {
            append_at_synced(&log, leader_batch(base, epoch)).await;
        }
        log.close().await.unwrap();
        backend.corrupt_byte(&Path::new(DIR).join(LEADER_EPOCH_FILE), 12);
        let log = open(&backend).await;
        assert_eq!(log.leader_epochs(), entries(&[(2, 0), (5, 3)]));
    });
}

/// Segment data above the recovery point whose epoch never reached the file (the file write
/// failed after the segment sync, then power loss): the open scans those batches for epochs.
#[test]
fn leader_epoch_batches_above_the_recovery_point_are_scanned_at_open() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = open(&backend).await;
        append_at_synced(&log, leader_batch(0, 1)).await;
        log.flush().await.unwrap();
        append_at_synced(&log, leader_batch(3, 2)).await;
        // The flush writes the segment file (write 1) and syncs it, then writes the epoch file
        // (write 2): that write fails, so neither the file nor the recovery point moves.
        backend.set_faults(Faults { fail_write_at: Some(backend.write_count() + 2), ..Faults::default() });
        assert!(log.flush().await.is_err());
        drop(log);
        backend.crash();
        let log = open(&backend).await;
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(log.leader_epochs(), entries(&[(1, 0), (2, 3)]));
    });
}

/// DeleteRecords past an epoch's start moves that epoch's start to the new log start.
#[test]
fn leader_epoch_log_start_moves_cut_the_cache_from_the_start() {
    run(|| async {
        let backend = FaultyBackend::new();
        let log = Log::open(backend.clone(), DIR.into(), LogConfig { ..config() }).await.unwrap();
        for (base, epoch) in [(0, 1), (3, 2), (6, 3)] {
            append_at_synced(&log, leader_batch(base, epoch)).await;
        }
        assert_eq!(log.delete_records(4).await.unwrap(), 4);
        assert_eq!(log.leader_epochs(), entries(&[(2, 4), (3, 6)]));
    });
}

/// The disk fills up after a big write reserved room ahead in the segment: a new epoch's batch
/// still reaches the segment file (written in place) and is synced, but its epoch file cannot be
/// created. The log is not poisoned, the recovery point waits (so a power loss rebuilds the epoch
/// from the batches above it), and the file is written once space is back.
#[test]
fn leader_epoch_file_on_a_full_disk_does_not_poison_and_is_written_later() {
    run(|| async {
        let backend = FaultyBackend::new();
        let big_batches = LogConfig { max_batch_bytes: 2 << 20, ..config() };
        let log = Log::open(backend.clone(), DIR.into(), big_batches.clone()).await.unwrap();
        let big = with_epoch(&with_base(&batch(1, 0, 1_200_000), 0), 1);
        append_at_synced(&log, big).await;
        log.flush().await.unwrap();
        backend.set_faults(Faults { disk_full: true, ..Faults::default() });
        append_at_synced(&log, leader_batch(1, 2)).await;
        log.flush().await.expect("the segment write lands in reserved space");
        assert!(log.poisoned().is_none(), "a full disk does not poison the log");
        let want = entries(&[(1, 0), (2, 1)]);
        assert_eq!(log.leader_epochs(), want);
        drop(log);
        backend.crash();
        let log = Log::open(backend.clone(), DIR.into(), big_batches.clone()).await.unwrap();
        assert_eq!(log.leader_epochs(), want, "epoch 2 rebuilt after a power loss: the recovery point waited for its file");
        backend.set_faults(Faults::default());
        append_at_synced(&log, leader_batch(4, 2)).await;
        log.close().await.unwrap();
        let log = Log::open(backend.clone(), DIR.into(), big_batches).await.unwrap();
        assert_eq!(log.leader_epochs(), want, "from the file written once space was back");
        assert_eq!(log.log_end_offset(), 7);
    });
}
