//! Leader epoch cache of one log: epoch -> the offset where that epoch's batches start (Kafka's
//! `LeaderEpochFileCache`, KIP-101), and its file `<dir>/leader-epoch-checkpoint`.
//!
//! Every batch carries the epoch of the leader that appended it (`partition_leader_epoch`); the
//! cache records the first offset of each epoch seen, in increasing epoch order. A follower that
//! becomes unsure of its tail (restart, leader change) asks the leader for the end offset of its
//! latest epoch (OffsetsForLeaderEpoch, `end_offset_for`) and truncates to it, so it never keeps
//! batches the new leader does not have (the divergence that high-watermark truncation misses).
//!
//! Durability: the file is rewritten whole (temporary file, rename, directory sync) before the
//! log records a recovery point above a new entry, so every entry below the recovery point is in
//! the file; at open, the batches above it are scanned (segment files, then the journal replay)
//! and assign again what the file may lack. A truncation rewrites the file at once.
//!
//! File (big endian): magic u32, version u16, entry count u32, entries (epoch i32, start offset
//! i64), CRC-32C u32 of everything before it.

use std::path::Path;

use crate::error::Result;
use crate::io::{read_small_file, write_small_file, IoBackend};

pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
const TMP_SUFFIX: &str = ".tmp";
const MAGIC: u32 = 0x5250_4c45; // "RPLE"
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 10;
const ENTRY_BYTES: usize = 12;
const CRC_BYTES: usize = 4;
/// Batches stamped with this epoch (clients send it; a single node without replication keeps
/// it) belong to no epoch.
pub const NO_EPOCH: i32 = -1;

/// The first offset of one leader epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Epochs in increasing order, each with its start offset (increasing too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// A batch of `epoch` starts at `offset`: records the epoch if it is newer than the latest
    /// one (an older or equal epoch changes nothing). Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, offset: i64) -> bool {
        if epoch <= NO_EPOCH || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        debug_assert!(self.entries.last().is_none_or(|e| e.start_offset <= offset));
        self.entries.push(EpochEntry { epoch, start_offset: offset });
        true
    }

    /// The log ends at `end` now (truncation, a lost tail): epochs starting there or later go.
    pub fn truncate_from_end(&mut self, end: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end);
        self.entries.len() != before
    }

    /// The log starts at `start` now (retention, DeleteRecords): epochs wholly below it go, and
    /// the one it falls in starts at `start` (as Kafka's `truncateFromStart`).
    pub fn truncate_from_start(&mut self, start: i64) -> bool {
        let covering = self.entries.partition_point(|e| e.start_offset <= start);
        if covering == 0 {
            return false;
        }
        let changed = covering > 1 || self.entries[0].start_offset != start;
        self.entries.drain(..covering - 1);
        self.entries[0].start_offset = start;
        changed
    }

    /// OffsetsForLeaderEpoch: the largest epoch at or below `epoch` and where it ends (the start
    /// of the next epoch, or `log_end` for the latest); (NO_EPOCH, -1) if `epoch` is older than
    /// every epoch here, or the cache is empty.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> (i32, i64) {
        let after = self.entries.partition_point(|e| e.epoch <= epoch);
        if after == 0 {
            return (NO_EPOCH, -1);
        }
        let end = self.entries.get(after).map_or(log_end, |next| next.start_offset);
        (self.entries[after - 1].epoch, end)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.entries.len() * ENTRY_BYTES + CRC_BYTES);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.start_offset.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<LeaderEpochCache> {
        let body_len = bytes.len().checked_sub(CRC_BYTES)?;
        let (body, crc) = bytes.split_at(body_len);
        if body.len() < HEADER_BYTES || u32::from_be_bytes(crc.try_into().ok()?) != crc32c::crc32c(body) {
            return None;
        }
        let magic = u32::from_be_bytes(body[0..4].try_into().ok()?);
        let version = u16::from_be_bytes(body[4..6].try_into().ok()?);
        let count = u32::from_be_bytes(body[6..10].try_into().ok()?) as usize;
        if magic != MAGIC || version != VERSION || body.len() != HEADER_BYTES + count.checked_mul(ENTRY_BYTES)? {
            return None;
        }
        let mut cache = LeaderEpochCache::default();
        for chunk in body[HEADER_BYTES..].chunks_exact(ENTRY_BYTES) {
            let epoch = i32::from_be_bytes(chunk[0..4].try_into().ok()?);
            let start_offset = i64::from_be_bytes(chunk[4..12].try_into().ok()?);
            if !cache.assign(epoch, start_offset) {
                return None; // not increasing: not a file we wrote
            }
        }
        Some(cache)
    }
}

/// What the file holds (a damaged file is logged; the caller rebuilds from the batches).
pub(crate) async fn load<B: IoBackend>(backend: &B, dir: &Path) -> Result<Loaded> {
    let Some(bytes) = read_small_file(backend, &dir.join(LEADER_EPOCH_FILE)).await? else { return Ok(Loaded::Missing) };
    match LeaderEpochCache::decode(&bytes) {
        Some(cache) => Ok(Loaded::Found(cache)),
        None => {
            tracing::warn!(dir = %dir.display(), "leader epoch checkpoint unreadable: rebuilding it from the batches");
            Ok(Loaded::Damaged)
        }
    }
}

/// The file at open.
pub(crate) enum Loaded {
    Found(LeaderEpochCache),
    /// No file: a new log, or one written before epochs were kept (its batches carry none).
    Missing,
    Damaged,
}

/// Replaces the file with `cache` (durable when this returns; a crash leaves the old or the new
/// file whole).
pub(crate) async fn store<B: IoBackend>(backend: &B, dir: &Path, cache: &LeaderEpochCache) -> Result<()> {
    let path = dir.join(LEADER_EPOCH_FILE);
    let tmp = dir.join(format!("{LEADER_EPOCH_FILE}{TMP_SUFFIX}"));
    write_small_file(backend, &tmp, &cache.encode()).await?;
    backend.rename(&tmp, &path).await?;
    backend.sync_dir(dir).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            assert!(c.assign(epoch, start));
        }
        c
    }

    #[test]
    fn leader_epoch_assign_keeps_only_newer_epochs() {
        let mut c = cache(&[(0, 0), (2, 10)]);
        assert!(!c.assign(2, 15), "same epoch: no new entry");
        assert!(!c.assign(1, 20), "an older epoch never goes after a newer one");
        assert!(!c.assign(NO_EPOCH, 20));
        assert!(c.assign(5, 30));
        assert_eq!(c.entries().len(), 3);
    }

    #[test]
    fn leader_epoch_end_offset_for_follows_kafka() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(c.end_offset_for(0, 40), (NO_EPOCH, -1), "older than every epoch");
        assert_eq!(c.end_offset_for(1, 40), (1, 10));
        assert_eq!(c.end_offset_for(2, 40), (1, 10), "an epoch this log never had: the largest below it");
        assert_eq!(c.end_offset_for(3, 40), (3, 25));
        assert_eq!(c.end_offset_for(4, 40), (4, 40), "the latest epoch ends at the log end");
        assert_eq!(c.end_offset_for(9, 40), (4, 40));
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 5), (NO_EPOCH, -1));
    }

    #[test]
    fn leader_epoch_truncation_from_either_end() {
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert!(c.truncate_from_end(25));
        assert_eq!(c, cache(&[(1, 0), (3, 10)]));
        assert!(!c.truncate_from_end(30));
        assert!(c.truncate_from_start(12));
        assert_eq!(c, cache(&[(3, 12)]));
        assert!(!c.truncate_from_start(12));
        assert!(!c.truncate_from_start(5), "below the first epoch: nothing to drop");
    }

    #[test]
    fn leader_epoch_file_round_trips_and_rejects_damage() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        let bytes = c.encode();
        assert_eq!(LeaderEpochCache::decode(&bytes), Some(c));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert_eq!(LeaderEpochCache::decode(&bad), None, "flipped byte {i} accepted");
        }
        assert_eq!(LeaderEpochCache::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(LeaderEpochCache::decode(&LeaderEpochCache::default().encode()), Some(LeaderEpochCache::default()));
    }
}
