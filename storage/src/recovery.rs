//! Opening a log directory: find segments, load or rebuild indexes, truncate torn or corrupt
//! tails at the last valid batch (including the DMA zero padding), keep exactly the valid prefix.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use crate::checkpoint::read_log_start;
use crate::config::LogConfig;
use crate::constants::*;
use crate::error::Result;
use crate::io::{align_down, read_small_file, write_small_file, IoBackend, IoFile};
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
}

/// Result of scanning a segment file batch by batch.
pub(crate) struct SegmentScan {
    pub valid_size: u64,
    pub next_offset: i64,
    pub index: SegmentIndex,
    /// Why the scan stopped before the end of the file, if it did.
    pub invalid: Option<String>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Scans a whole segment file, verifying every batch (shape, CRC, contiguous offsets).
pub(crate) async fn scan_segment<F: IoFile>(file: &F, base: i64, file_size: u64, interval: u32) -> Result<SegmentScan> {
    let mut scanner = BatchScanner::new(file, 0, file_size, RECOVERY_READ_CHUNK_BYTES, true);
    let mut index = SegmentIndex::new(interval);
    let (mut next, mut valid_size, mut invalid) = (base, 0u64, None);
    loop {
        match scanner.next().await? {
            ScanItem::End => break,
            ScanItem::Invalid { position, reason } => {
                invalid = Some(format!("{reason} at position {position}"));
                break;
            }
            ScanItem::Batch { position, header, data } => {
                if header.base_offset != next || header.next_offset() - base > i64::from(u32::MAX) {
                    invalid = Some(format!("unexpected base offset {} at position {position}", header.base_offset));
                    break;
                }
                index.on_batch((next - base) as u32, position as u32, data.len() as u32, header.max_timestamp);
                next = header.next_offset();
                valid_size = position + data.len() as u64;
            }
        }
    }
    Ok(SegmentScan { valid_size, next_offset: next, index, invalid })
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
    let Some(index) = SegmentIndex::decode(config.index_interval_bytes, &offsets, &times, file_size, relative_end)
    else {
        return Ok(None);
    };
    // Spot check: the last indexed position must hold the batch the index claims.
    if let Some(last) = index.offset_entries().last() {
        let head = file.read_at(u64::from(last.position), BATCH_HEADER_BYTES).await?;
        let ok = crate::batch::BatchHeader::parse(&head)
            .is_ok_and(|h| h.base_offset == base + i64::from(last.relative_offset));
        if !ok {
            return Ok(None);
        }
    }
    Ok(Some(index))
}

async fn write_index_files<B: IoBackend>(backend: &B, dir: &Path, base: i64, index: &SegmentIndex) -> Result<()> {
    write_small_file(backend, &segment_path(dir, base, INDEX_SUFFIX), &index.encode_offsets()).await?;
    write_small_file(backend, &segment_path(dir, base, TIME_INDEX_SUFFIX), &index.encode_times()).await?;
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
    let index = segment.meta.borrow().index.clone();
    write_index_files(backend, dir, segment.base_offset, &index).await
}

/// Opens (or creates) the log in `dir`.
pub(crate) async fn recover<B: IoBackend>(backend: &B, dir: &Path, config: &LogConfig) -> Result<Recovered<B::File>> {
    backend.create_dir_all(dir).await?;
    let names = backend.list_dir(dir).await?;
    let mut bases: Vec<i64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    bases.sort_unstable();
    let checkpoint = read_log_start(backend, dir).await?;
    let mut segments = BTreeMap::new();
    let mut last: Option<(u64, Rc<Segment<B::File>>)> = None;
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let (segment, valid_size, intact) = open_segment(backend, dir, base, next_base, config).await?;
        segments.insert(base, segment.clone());
        last = Some((valid_size, segment));
        if !intact {
            for &later in &bases[i + 1..] {
                tracing::warn!(dir = %dir.display(), base = later, "removing segment after corrupt data");
                remove_segment_files(backend, dir, later).await?;
            }
            break;
        }
    }
    let appender = match last {
        Some((valid_size, segment)) => {
            let align = segment.file.alignment();
            let tail_start = align_down(valid_size, align);
            let tail = segment.file.read_at(tail_start, (valid_size - tail_start) as usize).await?.to_vec();
            segment.meta.borrow_mut().sealed = false;
            // The active segment's index lives in memory; stale index files must not survive.
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                let _ = backend.remove(&segment_path(dir, segment.base_offset, suffix)).await;
            }
            SegmentAppender::new(segment, valid_size, tail, config.allocate_step_bytes())
        }
        None => {
            let appender = create_segment(backend, dir, checkpoint.unwrap_or(0).max(0), config).await?;
            segments.insert(appender.segment().base_offset, appender.segment().clone());
            appender
        }
    };
    let first_base = *segments.keys().next().expect("at least one segment");
    let log_end = appender.segment().next_offset();
    let log_start = checkpoint.unwrap_or(first_base).max(first_base).min(log_end);
    Ok(Recovered { segments, appender, log_start, log_end })
}

/// Whether the batch header that would start at `pos` is all zeros (never written).
async fn is_zero_at<F: IoFile>(file: &F, pos: u64) -> Result<bool> {
    let head = file.read_at(pos, BATCH_HEADER_BYTES).await?;
    Ok(head.iter().all(|&b| b == 0))
}

/// Opens one segment; returns it, its valid size, and whether later segments can be trusted.
async fn open_segment<B: IoBackend>(
    backend: &B,
    dir: &Path,
    base: i64,
    next_base: Option<i64>,
    config: &LogConfig,
) -> Result<(Rc<Segment<B::File>>, u64, bool)> {
    let file = backend.open(&segment_path(dir, base, LOG_SUFFIX), false).await?;
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
            let segment = Segment::new(base, file, meta(file_size, next_base, index, true));
            return Ok((Rc::new(segment), file_size, true));
        }
    }
    let mut scan = scan_segment(&file, base, file_size, config.index_interval_bytes).await?;
    let complete = scan.invalid.is_none() && next_base.is_none_or(|nb| nb == scan.next_offset);
    if let Some(reason) = &scan.invalid {
        let garbage = file_size - scan.valid_size;
        // The active segment ends in zeros: block padding and space reserved ahead of the end.
        let unwritten = next_base.is_none() && is_zero_at(&file, scan.valid_size).await?;
        if unwritten {
            tracing::debug!(dir = %dir.display(), base, garbage, "trimming unwritten tail (padding, reserved space)");
        } else {
            tracing::warn!(dir = %dir.display(), base, %reason, garbage, "truncating segment at last valid batch");
        }
    }
    if scan.valid_size != file_size {
        file.truncate(scan.valid_size).await?;
        file.sync().await?;
    }
    let sealed = next_base.is_some() && complete;
    if sealed {
        scan.index.seal();
        write_index_files(backend, dir, base, &scan.index).await?;
    } else if next_base.is_some() {
        tracing::warn!(dir = %dir.display(), base, "segment does not reach the next segment; dropping later segments");
    }
    let segment = Segment::new(base, file, meta(scan.valid_size, scan.next_offset, scan.index, sealed));
    Ok((Rc::new(segment), scan.valid_size, next_base.is_none() || complete))
}
