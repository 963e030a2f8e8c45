//! Log compaction (Kafka's `cleanup.policy=compact`): keep the latest record of every key.
//!
//! This module holds the record-level pieces: decoding the records of an uncompressed v2 batch
//! (headers of records only: length, offset delta, key, whether the value is null), the bounded
//! key -> latest offset map (keys stored as 128-bit hashes, as Kafka's cleaner stores MD5s) and
//! the rewrite of a batch that loses some records. `Log::compact` (log.rs) drives it segment by
//! segment and swaps the cleaned files in (see ARCHITECTURE.md, "Log compaction").
//!
//! A rewritten batch keeps its base offset, its last offset delta (so the batch still ends at
//! the same offset, as Kafka keeps `lastOffsetDelta`), base timestamp, producer id, epoch and
//! base sequence: the retained records' bytes are copied unchanged (their offset and timestamp
//! deltas stay right), and only the length, the record count and the CRC-32C are recomputed.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::batch::{batch_crc, BatchHeader};
use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::{read_small_file, write_small_file, IoBackend, IoBuf, IoFile};

/// Attribute bits of a v2 batch that name its compression codec (0 = none).
const ATTR_COMPRESSION_MASK: i16 = 0x07;

/// What a compaction may do to one log, from its topic's configs.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactionConfig {
    /// Tombstones (null values) stay this long after their segment's newest record
    /// (`delete.retention.ms`), so consumers catch up on deletes before they vanish.
    pub delete_retention_ms: i64,
    /// Records younger than this are never compacted (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
    /// Compact only when dirty bytes / (clean + dirty) bytes of the sealed segments reach this
    /// (`min.cleanable.dirty.ratio`).
    pub min_cleanable_dirty_ratio: f64,
    /// Keys one pass remembers; beyond it the pass cleans the prefix the map covers.
    pub offset_map_entries_max: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: MIN_CLEANABLE_DIRTY_RATIO_DEFAULT,
            offset_map_entries_max: COMPACTION_OFFSET_MAP_ENTRIES_MAX,
        }
    }
}

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Segments replaced by a cleaned copy.
    pub segments_rewritten: usize,
    /// Sizes of those segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Records dropped because a later record has the same key.
    pub records_removed: u64,
    /// Tombstones dropped because they were older than `delete.retention.ms`.
    pub tombstones_removed: u64,
    /// Offsets below this are clean (the next pass's map starts here).
    pub cleaned_to: i64,
}

/// 128-bit hash of a record key: two SipHash passes with different prefixes. Collisions (which
/// would drop a record whose key only shares the hash) are as unlikely as with Kafka's MD5.
pub(crate) fn key_hash(key: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// Key hash -> offset of its latest record, holding at most `max` keys.
pub(crate) struct OffsetMap {
    map: HashMap<u128, i64>,
    max: usize,
}

impl OffsetMap {
    pub(crate) fn new(max: usize) -> Self {
        OffsetMap { map: HashMap::new(), max: max.max(1) }
    }

    /// Records `offset` as the latest of `hash`; false (nothing recorded) if the map is full and
    /// does not know the key yet.
    pub(crate) fn put(&mut self, hash: u128, offset: i64) -> bool {
        if self.map.len() >= self.max && !self.map.contains_key(&hash) {
            return false;
        }
        self.map.insert(hash, offset);
        true
    }

    pub(crate) fn latest(&self, hash: u128) -> Option<i64> {
        self.map.get(&hash).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// One record of a batch: its bytes in the batch, offset, key hash (None: null key), and
/// whether its value is null (a tombstone).
#[derive(Clone, Debug)]
pub(crate) struct RecordSpan {
    pub range: Range<usize>,
    pub offset: i64,
    pub key: Option<u128>,
    pub tombstone: bool,
}

/// Whether the batch's records are compressed (they are then kept as they are: compaction
/// decodes uncompressed batches only).
pub fn is_compressed(header: &BatchHeader) -> bool {
    header.attributes & ATTR_COMPRESSION_MASK != 0
}

/// Kafka's zigzag varint (records use it for every length and delta).
fn varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Decodes the record framing of an uncompressed batch (`data` is the whole batch, CRC checked).
pub(crate) fn records(data: &[u8], header: &BatchHeader) -> Result<Vec<RecordSpan>> {
    let bad = |what: &str| Error::CorruptBatch(format!("batch at offset {}: {what}", header.base_offset));
    let mut out = Vec::with_capacity(header.records_count.max(0) as usize);
    let mut pos = BATCH_HEADER_BYTES;
    for _ in 0..header.records_count {
        let start = pos;
        let len = varint(data, &mut pos).ok_or_else(|| bad("truncated record length"))?;
        let end = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)).filter(|&e| e <= data.len());
        let end = end.ok_or_else(|| bad("record runs past the batch"))?;
        let mut p = pos + 1; // attributes
        varint(data, &mut p).ok_or_else(|| bad("truncated timestamp delta"))?;
        let offset_delta = varint(data, &mut p).ok_or_else(|| bad("truncated offset delta"))?;
        let key_len = varint(data, &mut p).ok_or_else(|| bad("truncated key length"))?;
        let key = if key_len < 0 {
            None
        } else {
            let key_end = p.checked_add(key_len as usize).filter(|&e| e <= end).ok_or_else(|| bad("key runs past the record"))?;
            let hash = key_hash(&data[p..key_end]);
            p = key_end;
            Some(hash)
        };
        let value_len = varint(data, &mut p).filter(|_| p <= end).ok_or_else(|| bad("truncated value length"))?;
        if offset_delta < 0 || offset_delta > i64::from(header.last_offset_delta) {
            return Err(bad("record offset delta outside the batch"));
        }
        out.push(RecordSpan { range: start..end, offset: header.base_offset + offset_delta, key, tombstone: value_len < 0 });
        pos = end;
    }
    Ok(out)
}

/// What becomes of one batch.
pub(crate) enum Verdict {
    Keep,
    Drop,
    /// The batch with fewer records (possibly none: a producer's last batch, kept empty).
    Rewrite(Vec<u8>),
}

/// Per-batch counts of what a verdict removed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Removed {
    pub records: u64,
    pub tombstones: u64,
}

/// The rules of one pass over one segment.
pub(crate) struct Cleaner<'a> {
    pub map: &'a OffsetMap,
    /// Records at or past this offset are newer than the map: always kept.
    pub map_end: i64,
    /// Tombstones of this segment are older than `delete.retention.ms`: they go.
    pub drop_tombstones: bool,
}

impl Cleaner<'_> {
    /// Whether the record survives: it is the latest of its key (or newer than the map, or
    /// keyless), and not an expired tombstone.
    fn keeps(&self, r: &RecordSpan) -> (bool, Removed) {
        let Some(hash) = r.key else { return (true, Removed::default()) };
        let superseded = r.offset < self.map_end && self.map.latest(hash).is_some_and(|latest| latest > r.offset);
        if superseded {
            return (false, Removed { records: 1, tombstones: 0 });
        }
        if r.tombstone && self.drop_tombstones && r.offset < self.map_end {
            return (false, Removed { records: 0, tombstones: 1 });
        }
        (true, Removed::default())
    }

    /// Filters one CRC-checked batch. Compressed and control batches are kept whole. An emptied
    /// batch is dropped unless `keep_empty` (its producer's last batch in the segment: recovery
    /// rebuilds idempotent producers' state from batch headers).
    pub(crate) fn filter(&self, data: &[u8], header: &BatchHeader, keep_empty: bool) -> Result<(Verdict, Removed)> {
        if is_compressed(header) || header.is_control() || header.records_count == 0 {
            return Ok((Verdict::Keep, Removed::default()));
        }
        let spans = records(data, header)?;
        let mut removed = Removed::default();
        let mut kept = Vec::with_capacity(spans.len());
        for r in &spans {
            let (keep, why) = self.keeps(r);
            removed.records += why.records;
            removed.tombstones += why.tombstones;
            if keep {
                kept.push(r.range.clone());
            }
        }
        let verdict = match kept.len() {
            n if n == spans.len() => Verdict::Keep,
            0 if !keep_empty => Verdict::Drop,
            _ => Verdict::Rewrite(rewrite(data, &kept)),
        };
        Ok((verdict, removed))
    }
}

/// The batch `data` with only the records at `kept`: same header but for the length, the
/// record count and the CRC.
pub(crate) fn rewrite(data: &[u8], kept: &[Range<usize>]) -> Vec<u8> {
    let body: usize = kept.iter().map(|r| r.len()).sum();
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body);
    out.extend_from_slice(&data[..BATCH_HEADER_BYTES]);
    for r in kept {
        out.extend_from_slice(&data[r.clone()]);
    }
    let batch_length = (out.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = batch_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Indexes (within `records`, counted across its batches as KIP-467's `batch_index`) of the
/// records without a key, for uncompressed batches; None if a batch is compressed (the caller
/// decompresses) or malformed.
pub fn keyless_records(records: &[u8]) -> Option<Vec<usize>> {
    let mut pos = 0;
    let mut index = 0;
    let mut keyless = Vec::new();
    while pos < records.len() {
        let header = BatchHeader::parse(&records[pos..]).ok()?;
        let end = pos.checked_add(header.total_size()).filter(|&e| e <= records.len())?;
        if is_compressed(&header) {
            return None;
        }
        for r in records_of(&records[pos..end], &header)? {
            if r.key.is_none() {
                keyless.push(index);
            }
            index += 1;
        }
        pos = end;
    }
    Some(keyless)
}

/// Reads the compaction checkpoint: None if the log was never compacted; Some(clean offset)
/// otherwise (0 if the file is damaged: the next pass recleans from the start, which is safe).
pub(crate) async fn load_checkpoint<B: IoBackend>(backend: &B, dir: &Path) -> Result<Option<i64>> {
    let Some(bytes) = read_small_file(backend, &dir.join(COMPACTION_CHECKPOINT_FILE)).await? else { return Ok(None) };
    let parsed = std::str::from_utf8(&bytes).ok().and_then(|s| s.trim().parse::<i64>().ok());
    Ok(Some(parsed.unwrap_or(0)))
}

/// Writes the compaction checkpoint durably (file and directory entry).
pub(crate) async fn write_checkpoint<B: IoBackend>(backend: &B, dir: &Path, cleaned_to: i64) -> Result<()> {
    write_small_file(backend, &dir.join(COMPACTION_CHECKPOINT_FILE), format!("{cleaned_to}\n").as_bytes()).await?;
    backend.sync_dir(dir).await?;
    Ok(())
}

/// Path of the file `path` is written as before a swap (`<name>.cleaned`).
pub(crate) fn cleaned_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(CLEANED_SUFFIX);
    path.with_file_name(name)
}

/// Writes a cleaned segment file in large aligned writes; bounded memory whatever its size.
pub(crate) struct CleanedWriter<F: IoFile> {
    pub file: F,
    pending: Vec<u8>,
    /// Bytes written to the file (a multiple of the alignment until `finish`).
    flushed: u64,
}

impl<F: IoFile> CleanedWriter<F> {
    pub(crate) fn new(file: F) -> Self {
        CleanedWriter { file, pending: Vec::with_capacity(COMPACTION_WRITE_BYTES), flushed: 0 }
    }

    /// Logical size so far.
    pub(crate) fn size(&self) -> u64 {
        self.flushed + self.pending.len() as u64
    }

    pub(crate) async fn push(&mut self, batch: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(batch);
        if self.pending.len() >= COMPACTION_WRITE_BYTES {
            let align = self.file.alignment() as usize;
            let whole = self.pending.len() / align * align;
            self.write(whole).await?;
        }
        Ok(())
    }

    /// Writes `len` pending bytes (padded with zeros to the alignment) at the file's end.
    async fn write(&mut self, len: usize) -> Result<()> {
        let align = self.file.alignment() as usize;
        let padded = len.div_ceil(align) * align;
        let mut buf = self.file.alloc_buf(padded);
        let slice = buf.as_mut_slice();
        slice[..len].copy_from_slice(&self.pending[..len]);
        slice[len..].fill(0);
        let written = self.file.write_at(buf, self.flushed).await?;
        if written != padded {
            return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::WriteZero, "short write of a cleaned segment")));
        }
        self.pending.drain(..len);
        self.flushed += len as u64;
        Ok(())
    }

    /// Writes the rest, cuts the padding, syncs; returns the file's size.
    pub(crate) async fn finish(&mut self) -> Result<u64> {
        let size = self.size();
        if !self.pending.is_empty() {
            self.write(self.pending.len()).await?;
        }
        self.file.truncate(size).await?;
        self.file.sync().await?;
        Ok(size)
    }
}

fn records_of(data: &[u8], header: &BatchHeader) -> Option<Vec<RecordSpan>> {
    records(data, header).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_varint_decodes_zigzag() {
        for (bytes, want) in [(&[0x00][..], 0i64), (&[0x01], -1), (&[0x02], 1), (&[0xac, 0x02], 150), (&[0x03], -2)] {
            let mut pos = 0;
            assert_eq!(varint(bytes, &mut pos), Some(want));
            assert_eq!(pos, bytes.len());
        }
        assert_eq!(varint(&[0x80], &mut 0), None, "truncated");
    }

    #[test]
    fn compaction_offset_map_is_bounded() {
        let mut m = OffsetMap::new(2);
        assert!(m.put(1, 10) && m.put(2, 11));
        assert!(m.put(1, 12), "a known key may move on");
        assert!(!m.put(3, 13), "full");
        assert_eq!((m.latest(1), m.latest(3), m.len()), (Some(12), None, 2));
    }
}
