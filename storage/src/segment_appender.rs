//! Appends batches to the active segment with O_DIRECT-friendly writes.
//!
//! The appender keeps the partial tail block of the file in memory; each write starts at the
//! block containing the end of the file, re-writes the tail bytes, appends the new batches and
//! zero-pads to the block boundary. Disk space is reserved ahead of the end in steps
//! (`fallocate`), so writes land inside the file and ext4 can run them asynchronously. The file
//! is therefore longer (zero padding, reserved space) than its logical size until the segment is
//! sealed (truncated) or recovered.

use std::rc::Rc;

use bytes::Bytes;

use crate::batch::BatchHeader;
use crate::constants::{SEGMENT_ALLOCATE_AHEAD_MIN_WRITE_BYTES, SEGMENT_ALLOCATE_AHEAD_WRITES};

use crate::error::Result;
use crate::io::{align_down, align_up, IoFile, Pieces};
use crate::segment::Segment;
use crate::segment_index::IndexMark;

/// Segment metadata as it was before the batches now staged, to restore if they are dropped.
#[derive(Clone, Copy, Debug)]
struct StageMark {
    index: IndexMark,
    size: u64,
    next_offset: i64,
}

/// Writer-side handle of the active segment. Contract: `stage` records batches in the segment
/// metadata and index (no I/O); `write_staged` writes them (no fsync); `sync` is fdatasync.
pub struct SegmentAppender<F: IoFile> {
    segment: Rc<Segment<F>>,
    /// Logical bytes written to the file so far.
    file_end: u64,
    /// Bytes `[align_down(file_end), file_end)`, re-written with the next write.
    tail: Vec<u8>,
    staged: Vec<Bytes>,
    staged_bytes: u64,
    /// Set by the first `stage` after a write: what `discard_staged` restores.
    mark: Option<StageMark>,
    /// Offset following the last batch written to the file (`file_end`'s offset).
    file_next_offset: i64,
    /// The file is known to be allocated (and at least this long) up to here.
    allocated_end: u64,
    /// Bytes reserved per allocation (a multiple of the alignment).
    allocate_step: u64,
}

impl<F: IoFile> SegmentAppender<F> {
    /// Appender for `segment` whose file holds `file_end` valid bytes, the last partial block of
    /// which is `tail`. Space is reserved `allocate_step` bytes at a time.
    pub fn new(segment: Rc<Segment<F>>, file_end: u64, tail: Vec<u8>, allocate_step: u64) -> Self {
        let align = segment.file.alignment();
        debug_assert_eq!(tail.len() as u64, file_end - align_down(file_end, align));
        let allocate_step = align_up(allocate_step.max(1), align);
        let file_next_offset = segment.meta.borrow().next_offset;
        SegmentAppender {
            segment,
            file_end,
            tail,
            staged: Vec::new(),
            staged_bytes: 0,
            mark: None,
            file_next_offset,
            allocated_end: 0,
            allocate_step,
        }
    }

    /// Reserves space so that `[0, end)` lies inside the file before this write of `len` bytes:
    /// rounded up to a step, plus room for further writes of a large one
    /// (`SEGMENT_ALLOCATE_AHEAD_MIN_WRITE_BYTES`), if the disk has room; else exactly what this
    /// write needs (a nearly full disk still takes every batch that fits).
    async fn ensure_allocated(&mut self, end: u64, len: u64) -> Result<()> {
        if end <= self.allocated_end {
            return Ok(());
        }
        let ahead = if len >= SEGMENT_ALLOCATE_AHEAD_MIN_WRITE_BYTES { SEGMENT_ALLOCATE_AHEAD_WRITES * len } else { 0 };
        let step = (end + ahead).div_ceil(self.allocate_step) * self.allocate_step;
        let target = match self.segment.file.allocate(step).await {
            Ok(()) => step,
            Err(e) if is_enospc(&e) && step > end => {
                self.segment.file.allocate(end).await?;
                end
            }
            Err(e) => return Err(e.into()),
        };
        self.allocated_end = target;
        Ok(())
    }

    /// Offset following the last batch in the file (staged batches not counted).
    pub fn file_next_offset(&self) -> i64 {
        self.file_next_offset
    }

    /// Drops the staged batches (their write failed or never ran): the segment's size, next
    /// offset and index return to what the file holds.
    pub fn discard_staged(&mut self) {
        self.staged.clear();
        self.staged_bytes = 0;
        if let Some(mark) = self.mark.take() {
            let mut meta = self.segment.meta.borrow_mut();
            meta.size = mark.size;
            meta.next_offset = mark.next_offset;
            meta.index.reset_to(mark.index);
        }
        debug_assert_eq!(self.segment.meta.borrow().size, self.file_end);
        debug_assert_eq!(self.segment.meta.borrow().next_offset, self.file_next_offset);
    }

    pub fn segment(&self) -> &Rc<Segment<F>> {
        &self.segment
    }

    /// Bytes staged but not yet written.
    pub fn staged_len(&self) -> u64 {
        self.staged_bytes
    }

    /// Logical bytes written to the file.
    pub fn file_end(&self) -> u64 {
        self.file_end
    }

    /// Records a batch (already carrying its final base offset) at the end of the segment.
    pub fn stage(&mut self, header: &BatchHeader, data: Bytes) {
        debug_assert_eq!(header.total_size(), data.len());
        let mut meta = self.segment.meta.borrow_mut();
        assert_eq!(header.base_offset, meta.next_offset, "batches must be staged in offset order");
        if self.mark.is_none() {
            self.mark = Some(StageMark { index: meta.index.mark(), size: meta.size, next_offset: meta.next_offset });
        }
        let relative = (header.base_offset - self.segment.base_offset) as u32;
        let position = meta.size as u32;
        meta.index.on_batch(relative, position, data.len() as u32, header.max_timestamp);
        meta.size += data.len() as u64;
        meta.next_offset = header.next_offset();
        self.staged_bytes += data.len() as u64;
        self.staged.push(data);
    }

    /// Writes every staged batch. The byte stream `tail + staged batches` is cut at block-aligned
    /// positions into pieces of at most `IoFile::max_write_bytes` (`Pieces`); pieces never
    /// overlap, so they are submitted concurrently; only the last one is zero-padded. Returns
    /// bytes appended.
    /// Does not fsync.
    pub async fn write_staged(&mut self) -> Result<u64> {
        let appended = self.staged_bytes;
        if appended == 0 {
            return Ok(0);
        }
        let file = self.segment.file.clone();
        let align = file.alignment();
        let start = align_down(self.file_end, align);
        let used = self.tail.len() + appended as usize;
        let padded = align_up(used as u64, align) as usize;
        let chunk = file.max_write_bytes();
        debug_assert_eq!(chunk as u64 % align, 0);
        // On any error below the staged batches stay staged (and counted) until the caller
        // discards them or poisons the log.
        self.ensure_allocated(start + padded as u64, padded as u64).await?;
        let staged = std::mem::take(&mut self.staged);
        let mut pieces = Pieces::new(&*file, padded, chunk);
        pieces.put(&self.tail);
        for batch in &staged {
            pieces.put(batch);
        }
        let new_tail = pieces.copy_range(align_down(used as u64, align) as usize, used);
        pieces.pad();
        pieces.write(&*file, start, "segment").await?;
        self.tail = new_tail;
        self.file_end += appended;
        self.staged_bytes = 0;
        self.mark = None;
        let mut meta = self.segment.meta.borrow_mut();
        debug_assert_eq!(self.file_end, meta.size);
        meta.readable_size = self.file_end;
        self.file_next_offset = meta.next_offset;
        Ok(appended)
    }

    /// fdatasync of the segment file.
    pub async fn sync(&self) -> Result<()> {
        Ok(self.segment.file.sync().await?)
    }

    /// Makes the segment immutable: writes staged data, truncates the zero padding and the
    /// reserved space, syncs. Index files are written by the caller. If the next segment cannot
    /// be created, `unseal` makes this one the active segment again.
    pub async fn seal(&mut self) -> Result<()> {
        self.write_staged().await?;
        self.segment.file.truncate(self.file_end).await?;
        self.allocated_end = 0;
        self.segment.file.sync().await?;
        let mut meta = self.segment.meta.borrow_mut();
        meta.index.seal();
        meta.sealed = true;
        Ok(())
    }

    /// Appends go on in this segment after all (the roll that sealed it failed).
    pub fn unseal(&mut self) {
        self.segment.meta.borrow_mut().sealed = false;
    }
}

fn is_enospc(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == std::io::ErrorKind::StorageFull
}
