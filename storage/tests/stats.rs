//! The per-shard storage counters (`storage::stats`) follow what the DMA backend really did.

extern crate riptide_storage as storage;
mod common;

use common::*;
use storage::{stats, DmaBackend, Durability, Log};

/// Appends through the real O_DIRECT path, reads back from the cache and from disk: every
/// counter moves by what happened, on this thread (shard) only.
#[test]
fn stats_count_dma_writes_syncs_and_cache_lookups() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let before = stats::snapshot();
        let log = Log::open(DmaBackend::new(), partition_dir(tmp.path()), config()).await.unwrap();
        let data = batch(10, 1_000, 100);
        let info = log.append(data.clone()).await.unwrap();
        log.wait_appended(&info, Durability::Synced).await.unwrap();
        let after_write = stats::snapshot();
        assert!(after_write.writes > before.writes);
        assert!(after_write.written_bytes - before.written_bytes >= data.len() as u64);
        assert_eq!((after_write.written_bytes - before.written_bytes) % 4096, 0, "whole O_DIRECT blocks");
        assert!(after_write.sync_rounds > before.sync_rounds, "acks=all waited for a sync (the journal's fdatasync)");
        assert!(after_write.write_latency.count() >= after_write.writes - before.writes);
        assert_eq!(after_write.sync_latency.count(), after_write.sync_rounds);

        log.read(0, 1 << 20).await.unwrap();
        let hit = stats::snapshot();
        assert_eq!((hit.cache_hits - after_write.cache_hits, hit.cache_misses - after_write.cache_misses), (1, 0));
        // Into the segment files (from the journal), then out of the cache: the read goes to disk.
        log.flush().await.unwrap();
        log.set_cache_bytes_max(0);
        let r = log.read(0, 1 << 20).await.unwrap();
        assert_eq!(r.total_bytes(), data.len());
        let miss = stats::snapshot();
        assert_eq!((miss.cache_hits - hit.cache_hits, miss.cache_misses - hit.cache_misses), (0, 1));
        assert!(miss.read_bytes - hit.read_bytes >= data.len() as u64, "the miss was read from disk");
        assert!(log.size_bytes() >= data.len() as u64);
        log.close().await.unwrap();
    });
}

/// `DmaBackend::with_max_write_bytes` cuts a journal round (and a segment write) into pieces of
/// that size.
#[test]
fn stats_write_size_setting_cuts_writes() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let backend = DmaBackend::new().with_max_write_bytes(64 << 10);
        assert_eq!(backend.max_write_bytes(), 64 << 10);
        assert_eq!(DmaBackend::new().with_max_write_bytes(5000).max_write_bytes(), 4096, "whole blocks");
        let log = Log::open(backend, partition_dir(tmp.path()), config()).await.unwrap();
        let data = batch(4, 1_000, 200 << 10); // ~800 KiB in one batch
        let before = stats::snapshot();
        let info = log.append(data.clone()).await.unwrap();
        log.wait_appended(&info, Durability::Written).await.unwrap();
        let after = stats::snapshot();
        let pieces = after.writes - before.writes;
        assert!(pieces >= (data.len() as u64).div_ceil(64 << 10), "{pieces} writes for {} bytes", data.len());
        log.close().await.unwrap();
    });
}
