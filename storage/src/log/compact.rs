//! `Log::compact`: one compaction pass over a log's sealed segments (see `compaction.rs` for
//! the record-level rules and ARCHITECTURE.md, "Log compaction", for the design).
//!
//! 1. Cleanable: the sealed segments, oldest first, that lie wholly below the recovery point and
//!    the high watermark (never the active segment), stopping at the first one younger than
//!    `min_compaction_lag_ms`.
//! 2. The offset map: key hash -> latest offset over the dirty part (from the clean offset on),
//!    at most `offset_map_entries_max` keys; if it fills, the pass covers the prefix it holds.
//! 3. Every cleanable segment below the map's end that loses records is rewritten into
//!    `<base>.log.cleaned`, synced, renamed over `<base>.log` (directory synced), then its index
//!    files are rewritten; the swap in memory follows. A crash before the rename leaves the
//!    original and a leftover that recovery removes; after it, the new file with stale index
//!    files, whose footer (size) no longer matches: recovery rebuilds them by a scan.
//! 4. The compaction checkpoint (clean offset) is written: durably before the first swap, since
//!    it also tells recovery and reads that the log's segments may have offset gaps.

use std::collections::HashSet;
use std::rc::Rc;

use crate::batch::BatchHeader;
use crate::compaction::{cleaned_path, is_compressed, records, write_checkpoint, Cleaner, CleanedWriter, OffsetMap, Verdict};
use crate::compaction::{CompactionConfig, CompactionOutcome};
use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::{IoBackend, IoFile};
use crate::recovery::write_index_files;
use crate::segment::{segment_path, Segment, SegmentMeta};
use crate::segment_index::SegmentIndex;
use crate::segment_reader::{BatchScanner, ScanItem};

use super::LogInner;

type Segments<F> = Vec<Rc<Segment<F>>>;

/// Dirty bytes / all bytes of `segments` (those ending at or below `cleaned_to` are clean).
pub(super) fn dirty_ratio<F: IoFile>(segments: &[Rc<Segment<F>>], cleaned_to: i64) -> f64 {
    let (mut clean, mut dirty) = (0u64, 0u64);
    for s in segments {
        if s.next_offset() <= cleaned_to {
            clean += s.size();
        } else {
            dirty += s.size();
        }
    }
    if dirty == 0 {
        return 0.0;
    }
    dirty as f64 / (clean + dirty) as f64
}

/// What cleaning one segment did.
#[derive(Default)]
struct Cleaned {
    size: u64,
    index: Option<SegmentIndex>,
    records_removed: u64,
    tombstones_removed: u64,
}

impl<B: IoBackend> LogInner<B> {
    pub(super) fn clean_offset(&self) -> i64 {
        let st = self.state.borrow();
        st.cleaned_to.unwrap_or(st.log_start)
    }

    /// The segments a pass may clean (step 1), and the clean offset.
    pub(super) fn cleanable(&self, config: &CompactionConfig, now_ms: i64) -> (Segments<B::File>, i64) {
        let st = self.state.borrow();
        let limit = st.segment_synced.min(st.hw);
        let young = now_ms.saturating_sub(config.min_compaction_lag_ms.max(0));
        let active = st.segments.keys().next_back().copied();
        let mut out = Vec::new();
        for (base, segment) in &st.segments {
            let meta = segment.meta.borrow();
            let too_young = config.min_compaction_lag_ms > 0 && meta.index.max_timestamp() > young;
            if Some(*base) == active || !meta.sealed || meta.next_offset > limit || too_young {
                break;
            }
            out.push(segment.clone());
        }
        (out, st.cleaned_to.unwrap_or(st.log_start))
    }

    pub(super) async fn compact(&self, config: &CompactionConfig, now_ms: i64) -> Result<CompactionOutcome> {
        if let Some(e) = self.corrupt_error() {
            return Err(e);
        }
        self.check_writable()?;
        let (segments, cleaned_to) = self.cleanable(config, now_ms);
        let mut outcome = CompactionOutcome { cleaned_to, ..Default::default() };
        let ratio = dirty_ratio(&segments, cleaned_to);
        if ratio == 0.0 || ratio < config.min_cleanable_dirty_ratio {
            return Ok(outcome);
        }
        let (map, map_end) = self.build_offset_map(&segments, cleaned_to, config).await?;
        if map_end <= cleaned_to {
            return Ok(outcome);
        }
        if self.state.borrow().cleaned_to.is_none() {
            // Before any swap: from now on recovery and reads accept offset gaps in this log.
            write_checkpoint(&self.backend, &self.dir, cleaned_to).await?;
            self.state.borrow_mut().cleaned_to = Some(cleaned_to);
        }
        let horizon = now_ms.saturating_sub(config.delete_retention_ms.max(0));
        let remembered = self.remembered_batches();
        for segment in segments.iter().filter(|s| s.base_offset < map_end) {
            let cleaner = Cleaner { map: &map, map_end, drop_tombstones: segment.max_timestamp() < horizon };
            let before = segment.size();
            let cleaned = self.clean_segment(segment, &cleaner, &remembered).await?;
            let Some(index) = cleaned.index else { continue };
            if self.swap_in(segment, index, cleaned.size).await? {
                outcome.segments_rewritten += 1;
                outcome.bytes_before += before;
                outcome.bytes_after += cleaned.size;
                outcome.records_removed += cleaned.records_removed;
                outcome.tombstones_removed += cleaned.tombstones_removed;
            }
        }
        write_checkpoint(&self.backend, &self.dir, map_end).await?;
        {
            let mut st = self.state.borrow_mut();
            st.cleaned_to = Some(st.cleaned_to.unwrap_or(map_end).max(map_end));
        }
        outcome.cleaned_to = map_end;
        tracing::info!(dir = %self.dir.display(), ?outcome, "compacted");
        Ok(outcome)
    }

    /// Step 2: key hash -> latest offset from `from` on; returns the map and the offset it
    /// covers up to (less than the segments' end if it filled up).
    async fn build_offset_map(&self, segments: &[Rc<Segment<B::File>>], from: i64, config: &CompactionConfig) -> Result<(OffsetMap, i64)> {
        let mut map = OffsetMap::new(config.offset_map_entries_max);
        let mut end = from;
        for segment in segments.iter().filter(|s| s.next_offset() > from) {
            let limit = segment.meta.borrow().readable_size;
            let mut scanner = BatchScanner::new(&*segment.file, 0, limit, RECOVERY_READ_CHUNK_BYTES, true);
            while let Some((header, data)) = self.next_batch(&mut scanner, segment).await? {
                if header.last_offset() < from || is_compressed(&header) || header.is_control() {
                    continue;
                }
                for r in records(&data, &header).map_err(|e| self.damaged(segment, e))? {
                    let Some(hash) = r.key.filter(|_| r.offset >= from) else { continue };
                    if !map.put(hash, r.offset) {
                        tracing::info!(dir = %self.dir.display(), keys = map.len(), up_to = r.offset, "compaction offset map full: cleaning the prefix it covers");
                        return Ok((map, r.offset));
                    }
                }
            }
            end = segment.next_offset();
        }
        Ok((map, end))
    }

    /// The next CRC-checked batch of a scan; damage takes the log offline as a read would.
    async fn next_batch(&self, scanner: &mut BatchScanner<'_, B::File>, segment: &Segment<B::File>) -> Result<Option<(BatchHeader, bytes::Bytes)>> {
        match scanner.next().await? {
            ScanItem::End => Ok(None),
            ScanItem::Invalid { position, reason } => {
                let e = Error::CorruptLog { path: Default::default(), position, reason };
                Err(self.on_corruption(e, segment.base_offset))
            }
            ScanItem::Batch { header, data, .. } => Ok(Some((header, data))),
        }
    }

    fn damaged(&self, segment: &Segment<B::File>, e: Error) -> Error {
        let e = Error::CorruptLog { path: Default::default(), position: 0, reason: e.to_string() };
        self.on_corruption(e, segment.base_offset)
    }

    /// (producer id, base offset) of each idempotent producer's last batch: emptied, it stays as
    /// a batch without records, as Kafka keeps it, so that producer state rebuilt from batch
    /// headers (recovery without a usable snapshot) still knows the producer's sequence.
    fn remembered_batches(&self) -> HashSet<(i64, i64)> {
        let st = self.state.borrow();
        st.producers.entries().filter_map(|(id, e)| e.batches.back().map(|b| (*id, b.base_offset))).collect()
    }

    /// Step 3, first half: writes the cleaned copy of `segment` to `<base>.log.cleaned` and
    /// syncs it; `index` None if nothing would change (nothing written).
    async fn clean_segment(&self, segment: &Segment<B::File>, cleaner: &Cleaner<'_>, remembered: &HashSet<(i64, i64)>) -> Result<Cleaned> {
        if !self.changes(segment, cleaner).await? {
            return Ok(Cleaned::default());
        }
        let path = cleaned_path(&segment_path(&self.dir, segment.base_offset, LOG_SUFFIX));
        let file = self.backend.open(&path, true).await?;
        file.truncate(0).await?;
        let mut writer = CleanedWriter::new(file);
        let mut index = SegmentIndex::new(self.config.index_interval_bytes);
        let mut cleaned = Cleaned::default();
        let limit = segment.meta.borrow().readable_size;
        let mut scanner = BatchScanner::new(&*segment.file, 0, limit, RECOVERY_READ_CHUNK_BYTES, true);
        while let Some((header, data)) = self.next_batch(&mut scanner, segment).await? {
            let keep_empty = header.producer_id >= 0 && remembered.contains(&(header.producer_id, header.base_offset));
            let (verdict, removed) = cleaner.filter(&data, &header, keep_empty).map_err(|e| self.damaged(segment, e))?;
            cleaned.records_removed += removed.records;
            cleaned.tombstones_removed += removed.tombstones;
            let kept: &[u8] = match &verdict {
                Verdict::Keep => &data,
                Verdict::Rewrite(batch) => batch,
                Verdict::Drop => continue,
            };
            let relative = (header.base_offset - segment.base_offset) as u32;
            index.on_batch(relative, writer.size() as u32, kept.len() as u32, header.max_timestamp);
            writer.push(kept).await?;
        }
        match writer.finish().await {
            Ok(size) => cleaned.size = size,
            Err(e) => {
                let _ = self.backend.remove(&path).await;
                return Err(e);
            }
        }
        index.seal();
        cleaned.index = Some(index);
        Ok(cleaned)
    }

    /// First read of a segment: whether cleaning changes it (else it is not rewritten).
    async fn changes(&self, segment: &Segment<B::File>, cleaner: &Cleaner<'_>) -> Result<bool> {
        let limit = segment.meta.borrow().readable_size;
        let mut scanner = BatchScanner::new(&*segment.file, 0, limit, RECOVERY_READ_CHUNK_BYTES, true);
        while let Some((header, data)) = self.next_batch(&mut scanner, segment).await? {
            let (verdict, _) = cleaner.filter(&data, &header, true).map_err(|e| self.damaged(segment, e))?;
            if !matches!(verdict, Verdict::Keep) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Step 3, second half: renames the synced cleaned file over the segment's, rewrites its
    /// index files and swaps it in memory. False (and the cleaned file removed) if the segment
    /// went meanwhile (retention, DeleteRecords) or the log is closing.
    async fn swap_in(&self, old: &Rc<Segment<B::File>>, index: SegmentIndex, size: u64) -> Result<bool> {
        let _maintenance = self.maintenance.lock().await;
        let base = old.base_offset;
        let log_path = segment_path(&self.dir, base, LOG_SUFFIX);
        let cleaned = cleaned_path(&log_path);
        let current = {
            let st = self.state.borrow();
            !st.closing && st.segments.get(&base).is_some_and(|s| Rc::ptr_eq(s, old))
        };
        if !current {
            let _ = self.backend.remove(&cleaned).await;
            return Ok(false);
        }
        // Reopened after the rename: the handle then names the file that is the segment.
        if let Err(e) = self.backend.rename(&cleaned, &log_path).await {
            let _ = self.backend.remove(&cleaned).await;
            return Err(e.into());
        }
        let file = self.backend.open(&log_path, false).await?;
        self.backend.sync_dir(&self.dir).await?;
        let next_offset = old.next_offset();
        if let Err(e) = write_index_files(&self.backend, &self.dir, base, &index, size, next_offset).await {
            tracing::warn!(dir = %self.dir.display(), base, "index files of a compacted segment not written (rebuilt on recovery): {e}");
        }
        let created_ms = old.meta.borrow().created_ms;
        let meta = SegmentMeta { size, readable_size: size, next_offset, index, created_ms, sealed: true };
        self.state.borrow_mut().segments.insert(base, Rc::new(Segment::new(base, file, meta)));
        // Cached batches of this range are the uncompacted ones.
        self.cache.borrow_mut().evict_below(next_offset);
        Ok(true)
    }
}
