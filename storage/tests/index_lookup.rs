//! Sparse index lookups at every boundary, read from disk (cache disabled).
extern crate riptide_storage as storage;
mod common;

use common::*;
use storage::segment_index::SegmentIndex;
use storage::{BatchHeader, DmaBackend, FaultyBackend, Log, LogConfig};

fn small_index_config() -> LogConfig {
    let mut cfg = uncached(config());
    cfg.index_interval_bytes = 256;
    cfg.segment_bytes = 16 << 10;
    cfg
}

async fn check_every_offset<B: storage::IoBackend>(log: &Log<B>, expected: &[bytes::Bytes]) {
    for b in expected {
        let h = BatchHeader::parse(b).unwrap();
        for offset in h.base_offset..=h.base_offset + h.last_offset_delta as i64 {
            let r = log.read(offset, 1).await.unwrap();
            assert_eq!(r.batches, vec![b.clone()], "offset {offset}");
        }
    }
}

#[test]
fn index_lookup_every_offset_faulty() {
    run(|| async {
        let log = Log::open(FaultyBackend::new(), "/d/t-0".into(), small_index_config()).await.unwrap();
        let mut expected = Vec::new();
        for i in 0..120 {
            let b = batch(1 + i % 4, i as i64, 10 + (i * 37) % 400);
            let base = append_flushed(&log, b.clone()).await;
            expected.push(with_base(&b, base));
        }
        assert!(log.segment_count() > 2, "expected several segments");
        check_every_offset(&log, &expected).await;
    });
}

#[test]
fn index_lookup_every_offset_dma_after_reopen() {
    run(|| async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = partition_dir(tmp.path());
        let mut expected = Vec::new();
        {
            let log = Log::open(DmaBackend::new(), dir.clone(), small_index_config()).await.unwrap();
            for i in 0..80 {
                let b = batch(1 + i % 3, i as i64, 20 + (i * 53) % 600);
                let base = log.append(b.clone()).await.unwrap().base_offset;
                expected.push(with_base(&b, base));
            }
            log.close().await.unwrap();
        }
        let log = Log::open(DmaBackend::new(), dir.clone(), small_index_config()).await.unwrap();
        assert!(log.segment_count() > 2);
        assert!(dir.join("00000000000000000000.index").exists());
        assert!(dir.join("00000000000000000000.timeindex").exists());
        check_every_offset(&log, &expected).await;
    });
}

#[test]
fn index_lookup_segment_index_boundaries() {
    let mut index = SegmentIndex::new(100);
    // Batches of 60 bytes, 2 offsets each: entries every other batch once 100 bytes accumulate.
    for i in 0..10u32 {
        index.on_batch(i * 2, i * 60, 60, i as i64 * 10);
    }
    let entries = index.offset_entries().to_vec();
    assert!(!entries.is_empty());
    assert_eq!(index.lookup_offset(0), 0);
    for e in &entries {
        assert_eq!(index.lookup_offset(e.relative_offset), e.position);
        assert_eq!(index.lookup_offset(e.relative_offset + 1), e.position);
        if e.relative_offset > 0 {
            assert!(index.lookup_offset(e.relative_offset - 1) < e.position);
        }
    }
    assert_eq!(index.lookup_offset(u32::MAX), entries.last().unwrap().position);
    let encoded = (index.encode_offsets(), index.encode_times());
    let decoded = SegmentIndex::decode(100, &encoded.0, &encoded.1, 600, 20).unwrap();
    assert_eq!(decoded.offset_entries(), index.offset_entries());
    assert!(SegmentIndex::decode(100, &encoded.0[1..], &encoded.1, 600, 20).is_none());
    assert!(SegmentIndex::decode(100, &encoded.0, &encoded.1, 100, 20).is_none());
    index_footer_catches_damage_and_stale_files(&index);
}

/// The sealed form: trusted only for the segment size and end it was written for, and any
/// changed byte of either file (entries, footer) makes it untrusted (the segment is scanned).
fn index_footer_catches_damage_and_stale_files(index: &SegmentIndex) {
    let (offsets, times) = index.encode_sealed(600, 20);
    let decoded = SegmentIndex::decode_sealed(100, &offsets, &times, 600, 20).expect("intact files load");
    assert_eq!(decoded.offset_entries(), index.offset_entries());
    assert_eq!(decoded.time_entries(), index.time_entries());
    assert!(SegmentIndex::decode_sealed(100, &offsets, &times, 599, 20).is_none(), "segment file changed size");
    assert!(SegmentIndex::decode_sealed(100, &offsets, &times, 600, 21).is_none(), "next segment moved");
    assert!(SegmentIndex::decode_sealed(100, &index.encode_offsets(), &times, 600, 20).is_none(), "no footer (older files)");
    for i in 0..offsets.len() {
        let mut bad = offsets.clone();
        bad[i] ^= 0x01;
        assert!(SegmentIndex::decode_sealed(100, &bad, &times, 600, 20).is_none(), ".index byte {i} flipped");
    }
    for i in 0..times.len() {
        let mut bad = times.clone();
        bad[i] ^= 0x80;
        assert!(SegmentIndex::decode_sealed(100, &offsets, &bad, 600, 20).is_none(), ".timeindex byte {i} flipped");
    }
    assert!(SegmentIndex::decode_sealed(100, &offsets[..offsets.len() - 8], &times, 600, 20).is_none(), "truncated");
    assert!(SegmentIndex::decode_sealed(100, &offsets, &times[..times.len().saturating_sub(12)], 600, 20).is_none() || times.is_empty());
}
