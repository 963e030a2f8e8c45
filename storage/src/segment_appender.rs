//! Appends batches to the active segment with O_DIRECT-friendly writes.
//!
//! The appender keeps the partial tail block of the file in memory; each write starts at the
//! block containing the end of the file, re-writes the tail bytes, appends the new batches and
//! zero-pads to the block boundary. The file may therefore be longer (zero padding) than its
//! logical size until the segment is sealed (truncated) or recovered.

use std::rc::Rc;

use bytes::Bytes;

use crate::batch::BatchHeader;
use crate::constants::WRITE_CHUNK_BYTES_MAX;
use crate::error::{Error, Result};
use crate::io::{align_down, align_up, IoBuf, IoFile};
use crate::segment::Segment;

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
}

impl<F: IoFile> SegmentAppender<F> {
    /// Appender for `segment` whose file holds `file_end` valid bytes, the last partial block of
    /// which is `tail`.
    pub fn new(segment: Rc<Segment<F>>, file_end: u64, tail: Vec<u8>) -> Self {
        debug_assert_eq!(
            tail.len() as u64,
            file_end - align_down(file_end, segment.file.alignment())
        );
        SegmentAppender { segment, file_end, tail, staged: Vec::new(), staged_bytes: 0 }
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
        let relative = (header.base_offset - self.segment.base_offset) as u32;
        let position = meta.size as u32;
        meta.index.on_batch(relative, position, data.len() as u32, header.max_timestamp);
        meta.size += data.len() as u64;
        meta.next_offset = header.next_offset();
        self.staged_bytes += data.len() as u64;
        self.staged.push(data);
    }

    /// Writes every staged batch (in chunks of at most `WRITE_CHUNK_BYTES_MAX`). Returns bytes
    /// appended. Does not fsync.
    pub async fn write_staged(&mut self) -> Result<u64> {
        let staged = std::mem::take(&mut self.staged);
        let appended = std::mem::take(&mut self.staged_bytes);
        let mut start = 0;
        while start < staged.len() {
            let mut end = start;
            let mut bytes = 0usize;
            while end < staged.len() && (end == start || bytes + staged[end].len() <= WRITE_CHUNK_BYTES_MAX) {
                bytes += staged[end].len();
                end += 1;
            }
            self.write_chunk(&staged[start..end], bytes).await?;
            start = end;
        }
        let mut meta = self.segment.meta.borrow_mut();
        debug_assert_eq!(self.file_end, meta.size);
        meta.readable_size = self.file_end;
        Ok(appended)
    }

    async fn write_chunk(&mut self, batches: &[Bytes], bytes: usize) -> Result<()> {
        let file = &self.segment.file;
        let align = file.alignment();
        let start = align_down(self.file_end, align);
        let used = self.tail.len() + bytes;
        let len = align_up(used as u64, align) as usize;
        let mut buf = file.alloc_buf(len);
        let slice = buf.as_mut_slice();
        slice[..self.tail.len()].copy_from_slice(&self.tail);
        let mut at = self.tail.len();
        for b in batches {
            slice[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        slice[used..].fill(0);
        let new_end = self.file_end + bytes as u64;
        let tail_from = (align_down(new_end, align) - start) as usize;
        let new_tail = slice[tail_from..used].to_vec();
        let written = file.write_at(buf, start).await?;
        if written != len {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {written} of {len} bytes"),
            )));
        }
        self.file_end = new_end;
        self.tail = new_tail;
        Ok(())
    }

    /// fdatasync of the segment file.
    pub async fn sync(&self) -> Result<()> {
        Ok(self.segment.file.sync().await?)
    }

    /// Makes the segment immutable: writes staged data, truncates the zero padding, fsyncs.
    /// Index files are written by the caller.
    pub async fn seal(mut self) -> Result<Rc<Segment<F>>> {
        self.write_staged().await?;
        self.segment.file.truncate(self.file_end).await?;
        self.segment.file.sync().await?;
        let mut meta = self.segment.meta.borrow_mut();
        meta.index.seal();
        meta.sealed = true;
        drop(meta);
        Ok(self.segment)
    }
}
