//! Sequential batch reads from a segment file: used by fetches (CRC verified), timestamp
//! lookups and crash recovery. Parses headers only; returned batches are slices of the read
//! buffer (no per-record work, no extra copy).

use bytes::Bytes;

use crate::batch::{validate_one, BatchHeader};
use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::IoFile;

/// One step of a scan.
#[derive(Debug)]
pub enum ScanItem {
    /// A well-formed batch at `position`.
    Batch { position: u64, header: BatchHeader, data: Bytes },
    /// Reached `limit` exactly.
    End,
    /// Malformed, torn or zero-padded data at `position`.
    Invalid { position: u64, reason: String },
}

/// Reads batches one after another from `position` up to `limit` bytes of the file.
pub struct BatchScanner<'a, F: IoFile> {
    file: &'a F,
    pos: u64,
    limit: u64,
    chunk_bytes: usize,
    verify_crc: bool,
    buf: Bytes,
    buf_start: u64,
}

impl<'a, F: IoFile> BatchScanner<'a, F> {
    pub fn new(file: &'a F, position: u64, limit: u64, chunk_bytes: usize, verify_crc: bool) -> Self {
        BatchScanner { file, pos: position, limit, chunk_bytes, verify_crc, buf: Bytes::new(), buf_start: position }
    }

    /// Position of the next batch.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Makes `[pos, pos + len)` available in the buffer if the file has it; returns the bytes
    /// available from `pos` (maybe fewer).
    async fn fill(&mut self, pos: u64, len: usize) -> Result<Bytes> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        let covered = pos >= self.buf_start && pos + len as u64 <= buf_end;
        if !covered {
            let want = len.max(self.chunk_bytes).min((self.limit - pos) as usize);
            self.buf = self.file.read_at(pos, want).await?;
            self.buf_start = pos;
        }
        let from = (pos - self.buf_start) as usize;
        Ok(self.buf.slice(from..))
    }

    pub async fn next(&mut self) -> Result<ScanItem> {
        let position = self.pos;
        if position >= self.limit {
            return Ok(ScanItem::End);
        }
        let invalid = |reason: String| Ok(ScanItem::Invalid { position, reason });
        if self.limit - position < BATCH_HEADER_BYTES as u64 {
            return invalid("truncated batch header".into());
        }
        let head = self.fill(position, BATCH_HEADER_BYTES).await?;
        let header = match BatchHeader::parse(&head).and_then(|h| h.check_shape().map(|_| h)) {
            Ok(h) => h,
            Err(e) => return invalid(e.to_string()),
        };
        let size = header.total_size();
        if position + size as u64 > self.limit {
            return invalid(format!("batch of {size} bytes runs past the end"));
        }
        let avail = self.fill(position, size).await?;
        if avail.len() < size {
            return invalid(format!("file ends inside a batch of {size} bytes"));
        }
        let data = avail.slice(..size);
        if self.verify_crc {
            if let Err(e) = validate_one(&data) {
                return invalid(e.to_string());
            }
        }
        self.pos += size as u64;
        Ok(ScanItem::Batch { position, header, data })
    }
}

/// Where a fetch read starts: `position` (an index entry at or before the offset asked for)
/// holds the batch whose base offset is `base_offset`.
#[derive(Clone, Copy, Debug)]
pub struct ReadStart {
    pub position: u64,
    pub base_offset: i64,
    /// The segment was compacted: batches may have been removed, so base offsets only
    /// increase (the batch at an index entry still starts exactly at the indexed offset; at the
    /// segment's start, position 0, at or after its base).
    pub gaps: bool,
}

impl ReadStart {
    /// Whether a batch at `position` with `base_offset` may come where `expected` is next.
    fn in_order(&self, position: u64, base_offset: i64, expected: i64) -> bool {
        let at_index_entry = position == self.position && position > 0;
        if !self.gaps || at_index_entry {
            base_offset == expected
        } else {
            base_offset >= expected
        }
    }
}

/// Fetch read: whole batches starting with the one containing `offset`, scanning from `start`
/// up to `limit` bytes; only batches below `hw`; the first batch is whole even beyond
/// `max_bytes`. Every returned batch passed its CRC check, and the batches scanned are
/// contiguous from `start.base_offset` (base offsets are outside the CRC: a damaged one would
/// otherwise skip or misplace data silently); strictly increasing in a compacted segment.
pub async fn read_batches<F: IoFile>(
    file: &F,
    start: ReadStart,
    limit: u64,
    offset: i64,
    hw: i64,
    max_bytes: usize,
) -> Result<Vec<Bytes>> {
    let chunk = (max_bytes + INDEX_INTERVAL_BYTES as usize).clamp(READ_CHUNK_BYTES, READ_CHUNK_BYTES_MAX);
    let mut scanner = BatchScanner::new(file, start.position, limit, chunk, true);
    let mut batches = Vec::new();
    let mut total = 0usize;
    let mut expected = start.base_offset;
    loop {
        match scanner.next().await? {
            ScanItem::End => break,
            // The log fills in the path (and takes itself offline).
            ScanItem::Invalid { position, reason } => {
                return Err(Error::CorruptLog { path: Default::default(), position, reason });
            }
            // Contiguous offsets within a segment; increasing ones where compaction left gaps.
            ScanItem::Batch { position, header, .. } if !start.in_order(position, header.base_offset, expected) => {
                let reason = format!("batch base offset {} where offset {expected} was expected", header.base_offset);
                return Err(Error::CorruptLog { path: Default::default(), position, reason });
            }
            ScanItem::Batch { header, data, .. } => {
                expected = header.next_offset();
                if header.base_offset >= hw {
                    break;
                }
                if header.last_offset() < offset {
                    continue;
                }
                if !batches.is_empty() && total + data.len() > max_bytes {
                    break;
                }
                total += data.len();
                batches.push(data);
                if total >= max_bytes {
                    break;
                }
            }
        }
    }
    Ok(batches)
}
