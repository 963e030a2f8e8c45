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

/// The appender's state before a prepared write, restored if it fails.
struct Undo {
    staged: Vec<Bytes>,
    mark: Option<StageMark>,
    file_end: u64,
    tail: Vec<u8>,
}

/// One write copied into its DMA buffers (`SegmentAppender::prepare_staged`), not yet issued.
pub struct PreparedWrite<B> {
    pieces: Pieces<B>,
    start: u64,
    pending: PendingWrite,
}

/// An issued (or prepared) write, until `completed` or `abandon`.
pub struct PendingWrite {
    appended: u64,
    end: u64,
    next_offset: i64,
    undo: Undo,
}

impl PendingWrite {
    /// The offset following the write's last batch.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
}

/// Writer-side handle of the active segment. Contract: `stage` records batches in the segment
/// metadata and index (no I/O); `write_staged` writes them (no fsync); `sync` is fdatasync.
pub struct SegmentAppender<F: IoFile> {
    segment: Rc<Segment<F>>,
    /// Logical bytes written to the file so far, or in a write prepared (`prepare_staged`) and
    /// not yet completed.
    file_end: u64,
    /// Bytes `[align_down(file_end), file_end)`, re-written with the next write.
    tail: Vec<u8>,
    staged: Vec<Bytes>,
    staged_bytes: u64,
    /// Set by the first `stage` after a write: what `discard_staged` restores.
    mark: Option<StageMark>,
    /// Offset following the last batch whose write completed.
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

    /// Logical bytes written to the file (with no write in flight: the caller's flush steps
    /// complete their writes before returning).
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

    /// Writes every staged batch (`prepare_staged`, `issue`, then `completed` or `abandon`).
    /// On an error the batches stay staged (and counted) until the caller discards them or
    /// poisons the log. Returns bytes appended. Does not fsync.
    pub async fn write_staged(&mut self) -> Result<u64> {
        let Some(prepared) = self.prepare_staged().await? else { return Ok(0) };
        let (write, pending) = self.issue(prepared);
        match write.await {
            Ok(()) => Ok(self.completed(pending)),
            Err(e) => {
                self.abandon(pending);
                Err(e)
            }
        }
    }

    /// Copies every staged batch into the DMA buffers of one write (the byte stream `tail +
    /// staged batches`, cut at block-aligned positions into pieces of at most
    /// `IoFile::max_write_bytes`, which never overlap, so they go to the device at once; only
    /// the last one is zero-padded), reserving the space first. No write is issued: the
    /// appender stands at the end of this write, so the next batches can be staged and copied
    /// while it is on the device. That next write re-writes this one's last block, so it must
    /// be issued only once this one completed. On an error nothing moved (batches stay staged).
    pub async fn prepare_staged(&mut self) -> Result<Option<PreparedWrite<F::Buf>>> {
        let appended = self.staged_bytes;
        if appended == 0 {
            return Ok(None);
        }
        let file = self.segment.file.clone();
        let align = file.alignment();
        let start = align_down(self.file_end, align);
        let used = self.tail.len() + appended as usize;
        let padded = align_up(used as u64, align) as usize;
        let chunk = file.max_write_bytes();
        debug_assert_eq!(chunk as u64 % align, 0);
        self.ensure_allocated(start + padded as u64, padded as u64).await?;
        let staged = std::mem::take(&mut self.staged);
        let mut pieces = Pieces::new(&*file, padded, chunk);
        pieces.put(&self.tail);
        for batch in &staged {
            pieces.put(batch);
        }
        let new_tail = pieces.copy_range(align_down(used as u64, align) as usize, used);
        pieces.pad();
        let undo = Undo {
            staged,
            mark: self.mark.take(),
            file_end: self.file_end,
            tail: std::mem::replace(&mut self.tail, new_tail),
        };
        self.file_end += appended;
        self.staged_bytes = 0;
        let pending = PendingWrite { appended, end: self.file_end, next_offset: self.segment.meta.borrow().next_offset, undo };
        Ok(Some(PreparedWrite { pieces, start, pending }))
    }

    /// Issues a prepared write. The future owns what it needs (the next write can be prepared
    /// while it runs); its outcome goes to `completed` or `abandon` with the `PendingWrite`.
    pub fn issue(&self, prepared: PreparedWrite<F::Buf>) -> (impl std::future::Future<Output = Result<()>> + 'static, PendingWrite) {
        let file = self.segment.file.clone();
        let PreparedWrite { pieces, start, pending } = prepared;
        let write = async move {
            pieces.write(&*file, start, "segment").await?;
            Ok(())
        };
        (write, pending)
    }

    /// The write completed: its batches are readable from the file. Writes complete in the
    /// order they were prepared. Returns its bytes.
    pub fn completed(&mut self, pending: PendingWrite) -> u64 {
        let mut meta = self.segment.meta.borrow_mut();
        debug_assert!(pending.end <= meta.size);
        meta.readable_size = pending.end;
        self.file_next_offset = pending.next_offset;
        pending.appended
    }

    /// `abandon` for a write never issued.
    pub fn abandon_prepared(&mut self, prepared: PreparedWrite<F::Buf>) {
        self.abandon(prepared.pending);
    }

    /// The write failed or was never issued: back to the state before it, its batches staged
    /// again (`discard_staged` drops them). Writes prepared after it are abandoned first.
    pub fn abandon(&mut self, pending: PendingWrite) {
        let Undo { mut staged, mark, file_end, tail } = pending.undo;
        staged.append(&mut self.staged);
        self.staged_bytes += pending.appended;
        self.staged = staged;
        self.mark = mark.or(self.mark);
        self.file_end = file_end;
        self.tail = tail;
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
