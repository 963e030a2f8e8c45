//! One segment: a `<base>.log` file of concatenated batches plus its in-memory index.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::constants::*;
use crate::io::IoFile;
use crate::segment_index::SegmentIndex;

/// Mutable segment metadata, shared by the writer and readers (borrow briefly, never across
/// an `.await`).
#[derive(Debug)]
pub struct SegmentMeta {
    /// Bytes appended (staged) to the segment: its logical size.
    pub size: u64,
    /// Bytes known to be written to the file; readers never read beyond this.
    pub readable_size: u64,
    /// Offset following the last batch of the segment.
    pub next_offset: i64,
    /// Sparse offset + time index.
    pub index: SegmentIndex,
    /// Wall clock (ms) when the segment was created or recovered, for `segment_ms` rolls.
    pub created_ms: i64,
    /// Sealed segments are immutable, fsync'ed, and have index files on disk.
    pub sealed: bool,
}

/// A segment of the log. Append contract: only the log's writer task appends (through its
/// `SegmentAppender`); a sealed segment is fsync'ed, truncated to its exact size and indexed
/// on disk. Readers only read below `readable_size`.
#[derive(Debug)]
pub struct Segment<F: IoFile> {
    pub base_offset: i64,
    pub file: Rc<F>,
    pub meta: RefCell<SegmentMeta>,
}

impl<F: IoFile> Segment<F> {
    pub fn new(base_offset: i64, file: F, meta: SegmentMeta) -> Self {
        Segment { base_offset, file: Rc::new(file), meta: RefCell::new(meta) }
    }

    pub fn size(&self) -> u64 {
        self.meta.borrow().size
    }

    pub fn next_offset(&self) -> i64 {
        self.meta.borrow().next_offset
    }

    pub fn max_timestamp(&self) -> i64 {
        self.meta.borrow().index.max_timestamp()
    }
}

/// `<dir>/<20-digit base>.<suffix>`.
pub fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{:0width$}.{}", base_offset, suffix, width = SEGMENT_NAME_DIGITS))
}

/// Parses a segment log file name (`00000000000000000042.log`) into its base offset.
pub fn parse_segment_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(LOG_SUFFIX)?.strip_suffix('.')?;
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}
