//! Opening a log directory: find segments, load or rebuild indexes, trim the torn tail of the
//! active segment, rebuild producer state.
//!
//! What may be dropped: only the tail of the LAST segment above the recovery point (the synced
//! end recorded in the checkpoint file), i.e. data a crash may have torn because it was never
//! synced, plus the DMA zero padding and reserved space. Anything else that fails its checks
//! (a sealed segment, or the active segment below the recovery point) is corruption of synced
//! data: recovery fails with `Error::CorruptLog` naming the file and position, deletes nothing,
//! and the broker takes that partition offline.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use crate::batch::BatchHeader;
use crate::checkpoint::CheckpointFile;
use crate::config::LogConfig;
use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::{align_down, read_small_file, write_small_file, IoBackend, IoFile};
use crate::producer_snapshot;
use crate::producer_state::ProducerState;
use crate::segment::{parse_segment_name, segment_path, Segment, SegmentMeta};
use crate::segment_appender::SegmentAppender;
use crate::segment_index::SegmentIndex;
use crate::segment_reader::{BatchScanner, ScanItem};

/// State rebuilt from disk.
pub(crate) struct Recovered<F: IoFile> {
    pub segments: BTreeMap<i64, Rc<Segment<F>>>,
    pub appender: SegmentAppender<F>,
    pub log_start: i64,
    pub log_end: i64,
    pub checkpoint: CheckpointFile<F>,
    pub producers: ProducerState,
    /// The log was compacted (`compaction::load_checkpoint`): its clean offset.
    pub cleaned_to: Option<i64>,
}

/// Result of scanning a segment file batch by batch.
pub(crate) struct SegmentScan {
    pub valid_size: u64,
    pub next_offset: i64,
    pub index: SegmentIndex,
    /// Where and why the scan stopped before the end of the file, if it did.
    pub invalid: Option<(u64, String)>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Producer state being rebuilt: the snapshot it starts from and the batches replayed after it.
struct Replay {
    from: i64,
    state: ProducerState,
    now_ms: i64,
}

impl Replay {
    fn apply(&mut self, h: &BatchHeader) {
        if h.base_offset >= self.from {
            // Replayed producers count as seen now: a batch's own timestamp can be arbitrarily old.
            self.state.on_batch(h, self.now_ms);
        }
    }
}

/// Scans a segment file, verifying every batch (shape, CRC, contiguous offsets; in a
/// compacted log, `gaps`, strictly increasing ones), and replays the producer ids of the valid
/// ones. Stops before the first batch whose last offset is `stop_at` or above (i64::MAX: the
/// whole file), so `valid_size` and `next_offset` then say where that batch starts.
async fn scan_segment<F: IoFile>(file: &F, base: i64, file_size: u64, interval: u32, gaps: bool, stop_at: i64, replay: &mut Replay) -> Result<SegmentScan> {
    let mut scanner = BatchScanner::new(file, 0, file_size, RECOVERY_READ_CHUNK_BYTES, true);
    let mut index = SegmentIndex::new(interval);
    let (mut next, mut valid_size, mut invalid) = (base, 0u64, None);
    loop {
        match scanner.next().await? {
            ScanItem::End => break,
            ScanItem::Invalid { position, reason } => {
                invalid = Some((position, reason));
                break;
            }
            ScanItem::Batch { header, .. } if header.last_offset() >= stop_at => break,
            ScanItem::Batch { position, header, data } => {
                let in_order = if gaps { header.base_offset >= next } else { header.base_offset == next };
                if !in_order || header.next_offset() - base > i64::from(u32::MAX) {
                    let expected = if gaps { "at least " } else { "" };
                    invalid = Some((position, format!("unexpected base offset {} (expected {expected}{next})", header.base_offset)));
                    break;
                }
                index.on_batch((header.base_offset - base) as u32, position as u32, data.len() as u32, header.max_timestamp);
                replay.apply(&header);
                next = header.next_offset();
                valid_size = position + data.len() as u64;
            }
        }
    }
    Ok(SegmentScan { valid_size, next_offset: next, index, invalid })
}

/// Where a truncation to `offset` cuts a segment: before the first batch whose last offset is
/// `offset` or above (a batch is kept whole or dropped whole, as Kafka does). The scan verifies
/// what it keeps, and its index describes the kept part.
pub(crate) async fn scan_for_truncation<F: IoFile>(segment: &Segment<F>, offset: i64, interval: u32, gaps: bool) -> Result<SegmentScan> {
    let mut no_replay = Replay { from: i64::MAX, state: ProducerState::default(), now_ms: 0 };
    let size = segment.size();
    let scan = scan_segment(&*segment.file, segment.base_offset, size, interval, gaps, offset, &mut no_replay).await?;
    if let Some((position, reason)) = scan.invalid.clone() {
        let path = segment_path(Path::new(""), segment.base_offset, LOG_SUFFIX);
        return Err(Error::CorruptLog { path, position, reason });
    }
    Ok(scan)
}

/// Replays the producer ids of a segment already known to be valid (headers only, no CRC).
async fn replay_headers<F: IoFile>(segment: &Segment<F>, replay: &mut Replay) -> Result<()> {
    let size = segment.size();
    let mut scanner = BatchScanner::new(&*segment.file, 0, size, RECOVERY_READ_CHUNK_BYTES, false);
    loop {
        match scanner.next().await? {
            ScanItem::End => return Ok(()),
            ScanItem::Invalid { position, reason } => {
                let path = segment_path(Path::new(""), segment.base_offset, LOG_SUFFIX);
                return Err(Error::CorruptLog { path, position, reason });
            }
            ScanItem::Batch { header, .. } => replay.apply(&header),
        }
    }
}

/// Loads the index files of a sealed segment; None if missing or inconsistent.
async fn load_index<B: IoBackend>(
    backend: &B,
    dir: &Path,
    base: i64,
    next_base: i64,
    file: &B::File,
    file_size: u64,
    config: &LogConfig,
) -> Result<Option<SegmentIndex>> {
    let offsets = read_small_file(backend, &segment_path(dir, base, INDEX_SUFFIX)).await?;
    let times = read_small_file(backend, &segment_path(dir, base, TIME_INDEX_SUFFIX)).await?;
    let (Some(offsets), Some(times)) = (offsets, times) else { return Ok(None) };
    let relative_end = (next_base - base) as u64;
    if (file_size == 0) != (relative_end == 0) {
        return Ok(None);
    }
    let Some(index) = SegmentIndex::decode_sealed(config.index_interval_bytes, &offsets, &times, file_size, relative_end)
    else {
        tracing::info!(dir = %dir.display(), base, "index files missing their footer, damaged or stale: scanning the segment");
        return Ok(None);
    };
    // Spot check: the last indexed position must hold the batch the index claims.
    if let Some(last) = index.offset_entries().last() {
        let head = file.read_at(u64::from(last.position), BATCH_HEADER_BYTES).await?;
        let ok = BatchHeader::parse(&head).is_ok_and(|h| h.base_offset == base + i64::from(last.relative_offset));
        if !ok {
            return Ok(None);
        }
    }
    Ok(Some(index))
}

/// Writes a sealed segment's index files; `size` and `next_offset` describe its segment file.
pub(crate) async fn write_index_files<B: IoBackend>(backend: &B, dir: &Path, base: i64, index: &SegmentIndex, size: u64, next_offset: i64) -> Result<()> {
    let (offsets, times) = index.encode_sealed(size, (next_offset - base) as u64);
    // The time index first: the `.index` file (with the footer covering both) is the commit.
    write_small_file(backend, &segment_path(dir, base, TIME_INDEX_SUFFIX), &times).await?;
    write_small_file(backend, &segment_path(dir, base, INDEX_SUFFIX), &offsets).await?;
    Ok(())
}

/// Removes a segment's files (missing files are fine).
pub(crate) async fn remove_segment_files<B: IoBackend>(backend: &B, dir: &Path, base: i64) -> Result<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        match backend.remove(&segment_path(dir, base, suffix)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// Creates an empty active segment file and makes its directory entry durable.
pub(crate) async fn create_segment<B: IoBackend>(
    backend: &B,
    dir: &Path,
    base: i64,
    config: &LogConfig,
) -> Result<SegmentAppender<B::File>> {
    let file = backend.open(&segment_path(dir, base, LOG_SUFFIX), true).await?;
    file.truncate(0).await?;
    backend.sync_dir(dir).await?;
    let meta = SegmentMeta {
        size: 0,
        readable_size: 0,
        next_offset: base,
        index: SegmentIndex::new(config.index_interval_bytes),
        created_ms: now_ms(),
        sealed: false,
    };
    Ok(SegmentAppender::new(Rc::new(Segment::new(base, file, meta)), 0, Vec::new(), config.allocate_step_bytes()))
}

/// Writes the index files of a freshly sealed segment.
pub(crate) async fn persist_index<B: IoBackend, F: IoFile>(backend: &B, dir: &Path, segment: &Segment<F>) -> Result<()> {
    let (index, size, next_offset) = {
        let meta = segment.meta.borrow();
        (meta.index.clone(), meta.size, meta.next_offset)
    };
    write_index_files(backend, dir, segment.base_offset, &index, size, next_offset).await
}

/// Where producer-state replay starts: the newest snapshot, or (none: a data dir from an older
/// version) the last `PRODUCER_REBUILD_SEGMENTS_MAX` segments.
async fn start_replay<B: IoBackend>(backend: &B, dir: &Path, bases: &[i64]) -> Result<Replay> {
    let now_ms = now_ms();
    if let Some((from, state)) = producer_snapshot::load_latest(backend, dir, i64::MAX).await? {
        return Ok(Replay { from, state, now_ms });
    }
    let from = bases.len().checked_sub(PRODUCER_REBUILD_SEGMENTS_MAX).map_or(0, |i| bases[i]).max(bases.first().copied().unwrap_or(0));
    if bases.len() > PRODUCER_REBUILD_SEGMENTS_MAX {
        tracing::info!(dir = %dir.display(), from, "no producer snapshot: rebuilding producer state from the last segments");
    }
    Ok(Replay { from, state: ProducerState::default(), now_ms })
}

/// Opens (or creates) the log in `dir`.
pub(crate) async fn recover<B: IoBackend>(backend: &B, dir: &Path, config: &LogConfig) -> Result<Recovered<B::File>> {
    backend.create_dir_all(dir).await?;
    let names = backend.list_dir(dir).await?;
    let mut bases: Vec<i64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    bases.sort_unstable();
    remove_cleaned_leftovers(backend, dir, &names).await?;
    let checkpoint = CheckpointFile::open(backend, dir).await?;
    let recorded = checkpoint.get();
    let cleaned_to = crate::compaction::load_checkpoint(backend, dir).await?;
    let gaps = cleaned_to.is_some();
    let mut replay = start_replay(backend, dir, &bases).await?;
    let mut segments = BTreeMap::new();
    let mut last: Option<(u64, Rc<Segment<B::File>>)> = None;
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let (segment, valid_size) = open_segment(backend, dir, base, next_base, Rules { recovery_point: recorded.recovery_point, gaps }, config, &mut replay).await?;
        segments.insert(base, segment.clone());
        last = Some((valid_size, segment));
    }
    let appender = match last {
        Some((valid_size, segment)) => {
            segment.meta.borrow_mut().sealed = false;
            // The active segment's index lives in memory; stale index files must not survive.
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                let _ = backend.remove(&segment_path(dir, segment.base_offset, suffix)).await;
            }
            active_appender(segment, valid_size, config).await?
        }
        None => {
            let appender = create_segment(backend, dir, recorded.log_start.max(0), config).await?;
            segments.insert(appender.segment().base_offset, appender.segment().clone());
            appender
        }
    };
    let first_base = *segments.keys().next().expect("at least one segment");
    let log_end = appender.segment().next_offset();
    let log_start = recorded.log_start.max(first_base).min(log_end);
    let producers = finish_replay(backend, dir, replay, &segments, log_start, log_end).await?;
    Ok(Recovered { segments, appender, log_start, log_end, checkpoint, producers, cleaned_to })
}

/// The appender of `segment` as the active segment, whose file holds `valid_size` valid bytes
/// (its partial last block is read back: the next write rewrites it).
pub(crate) async fn active_appender<F: IoFile>(segment: Rc<Segment<F>>, valid_size: u64, config: &LogConfig) -> Result<SegmentAppender<F>> {
    let tail_start = align_down(valid_size, segment.file.alignment());
    let tail = segment.file.read_at(tail_start, (valid_size - tail_start) as usize).await?.to_vec();
    Ok(SegmentAppender::new(segment, valid_size, tail, config.allocate_step_bytes()))
}

/// A crash during compaction leaves `<segment file>.cleaned` files that were never swapped in:
/// the originals are whole, so these go.
async fn remove_cleaned_leftovers<B: IoBackend>(backend: &B, dir: &Path, names: &[String]) -> Result<()> {
    let suffix = format!(".{CLEANED_SUFFIX}");
    for name in names.iter().filter(|n| n.ends_with(&suffix)) {
        tracing::info!(dir = %dir.display(), file = %name, "removing a cleaned segment file left by an interrupted compaction");
        match backend.remove(&dir.join(name)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    if names.iter().any(|n| n.ends_with(&suffix)) {
        backend.sync_dir(dir).await?;
    }
    Ok(())
}

/// A snapshot beyond the recovered end (the tail it described was lost) cannot be used: drop
/// it and replay from the older one (or the last segments).
async fn finish_replay<B: IoBackend>(
    backend: &B,
    dir: &Path,
    replay: Replay,
    segments: &BTreeMap<i64, Rc<Segment<B::File>>>,
    log_start: i64,
    log_end: i64,
) -> Result<ProducerState> {
    let mut replay = replay;
    if replay.from > log_end {
        producer_snapshot::remove(backend, dir, replay.from).await?;
        let bases: Vec<i64> = segments.keys().copied().collect();
        replay = start_replay(backend, dir, &bases).await?;
        let from = replay.from;
        for segment in segments.values().filter(|s| s.next_offset() > from) {
            replay_headers(segment, &mut replay).await.map_err(|e| with_dir(e, dir))?;
        }
    }
    replay.state.expire(replay.now_ms, log_start);
    Ok(replay.state)
}

pub(crate) fn with_dir(e: Error, dir: &Path) -> Error {
    match e {
        Error::CorruptLog { path, position, reason } => Error::CorruptLog { path: dir.join(path), position, reason },
        other => other,
    }
}

/// Whether the batch header that would start at `pos` is all zeros (never written).
async fn is_zero_at<F: IoFile>(file: &F, pos: u64) -> Result<bool> {
    let head = file.read_at(pos, BATCH_HEADER_BYTES).await?;
    Ok(head.iter().all(|&b| b == 0))
}

/// What recovery may assume of a log's segments.
#[derive(Clone, Copy)]
struct Rules {
    /// Synced end recorded in the checkpoint.
    recovery_point: i64,
    /// The log was compacted: sealed segments may have offset gaps.
    gaps: bool,
}

/// Opens one segment; returns it and its valid size. Trims only what `open_segment`'s caller
/// may lose (see the module comment); everything else that is wrong is `Error::CorruptLog`.
async fn open_segment<B: IoBackend>(
    backend: &B,
    dir: &Path,
    base: i64,
    next_base: Option<i64>,
    rules: Rules,
    config: &LogConfig,
    replay: &mut Replay,
) -> Result<(Rc<Segment<B::File>>, u64)> {
    let Rules { recovery_point, gaps } = rules;
    let path = segment_path(dir, base, LOG_SUFFIX);
    let file = backend.open(&path, false).await?;
    let file_size = file.size().await?;
    let meta = |size: u64, next_offset: i64, index: SegmentIndex, sealed: bool| SegmentMeta {
        size,
        readable_size: size,
        next_offset,
        index,
        created_ms: now_ms(),
        sealed,
    };
    if let Some(next_base) = next_base {
        if let Some(index) = load_index(backend, dir, base, next_base, &file, file_size, config).await? {
            let segment = Rc::new(Segment::new(base, file, meta(file_size, next_base, index, true)));
            if next_base > replay.from {
                replay_headers(&segment, replay).await.map_err(|e| with_dir(e, dir))?;
            }
            return Ok((segment, file_size));
        }
    }
    let mut scan = scan_segment(&file, base, file_size, config.index_interval_bytes, gaps, i64::MAX, replay).await?;
    check_scan(&file, &path, &scan, next_base, recovery_point, gaps).await?;
    if let Some(next_base) = next_base.filter(|_| gaps) {
        // Compaction may have removed the segment's last batches: it still ends where the next
        // one starts.
        scan.next_offset = next_base;
    }
    if scan.valid_size != file_size {
        file.truncate(scan.valid_size).await?;
        file.sync().await?;
    }
    let sealed = next_base.is_some();
    if sealed {
        scan.index.seal();
        write_index_files(backend, dir, base, &scan.index, scan.valid_size, scan.next_offset).await?;
    }
    let segment = Segment::new(base, file, meta(scan.valid_size, scan.next_offset, scan.index, sealed));
    Ok((Rc::new(segment), scan.valid_size))
}

/// Decides whether what the scan found past the valid data may be trimmed (Ok) or is damage to
/// synced data (Err).
async fn check_scan<F: IoFile>(file: &F, path: &Path, scan: &SegmentScan, next_base: Option<i64>, recovery_point: i64, gaps: bool) -> Result<()> {
    let corrupt = |position: u64, reason: String| Err(Error::CorruptLog { path: path.to_path_buf(), position, reason });
    let unwritten = match &scan.invalid {
        Some((position, _)) => is_zero_at(file, *position).await?,
        None => true,
    };
    match next_base {
        // A sealed segment was truncated and synced before the next one was created: it must be
        // whole and reach the next segment; only zeros (an untruncated reservation) may follow.
        Some(next_base) => {
            if let Some((position, reason)) = scan.invalid.as_ref().filter(|_| !unwritten) {
                return corrupt(*position, reason.clone());
            }
            let reaches = if gaps { scan.next_offset <= next_base } else { scan.next_offset == next_base };
            if !reaches {
                return corrupt(scan.valid_size, format!("segment ends at offset {} but the next segment starts at {next_base}", scan.next_offset));
            }
        }
        // The active segment: a damaged batch below the recovery point was synced, not torn.
        None => {
            if let Some((position, reason)) = &scan.invalid {
                if scan.next_offset < recovery_point {
                    return corrupt(*position, format!("{reason} (offset {} is below the recovery point {recovery_point})", scan.next_offset));
                }
                let garbage = scan.valid_size.abs_diff(file.size().await?);
                if unwritten {
                    tracing::debug!(path = %path.display(), garbage, "trimming unwritten tail (padding, reserved space)");
                } else {
                    tracing::warn!(path = %path.display(), position, %reason, garbage, "truncating torn tail above the recovery point");
                }
            } else if scan.next_offset < recovery_point {
                return corrupt(scan.valid_size, format!("segment ends at offset {} below the recovery point {recovery_point}", scan.next_offset));
            }
        }
    }
    Ok(())
}
