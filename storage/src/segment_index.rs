//! Sparse offset index and time index of one segment.
//!
//! Kept in memory while the segment is active; written to `<base>.index` (u32 relative offset,
//! u32 position, big endian) and `<base>.timeindex` (i64 max timestamp so far, u32 relative
//! offset) when the segment is sealed. The `.index` file ends with a footer that ties both files
//! to the segment file they describe (its size and next offset) under a CRC-32C: damaged,
//! truncated or stale index files, and a segment file that changed size since, are detected at
//! open and the segment is scanned (and the index rebuilt) instead of trusted. Files without a
//! footer (written by earlier versions) are rebuilt the same way.

use crate::constants::{INDEX_FOOTER_BYTES, INDEX_FOOTER_MAGIC, OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES};

/// One sparse offset index entry: batch base offset relative to the segment, file position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time index entry: the segment's running max timestamp at a batch, that batch's offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// Where an index stood before a group of batches was staged, so a failed write can undo them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexMark {
    offsets: usize,
    times: usize,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    max_timestamp: i64,
    max_timestamp_offset: u32,
}

/// Sparse offset + time index of a segment.
#[derive(Clone, Debug)]
pub struct SegmentIndex {
    interval_bytes: u64,
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    max_timestamp: i64,
    max_timestamp_offset: u32,
}

impl SegmentIndex {
    pub fn new(interval_bytes: u32) -> Self {
        SegmentIndex {
            interval_bytes: u64::from(interval_bytes.max(1)),
            offsets: Vec::new(),
            times: Vec::new(),
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
            max_timestamp: -1,
            max_timestamp_offset: 0,
        }
    }

    /// Records a batch appended at `position` (called for every batch, in order).
    pub fn on_batch(&mut self, relative_offset: u32, position: u32, size: u32, max_timestamp: i64) {
        if self.bytes_since_offset_entry >= self.interval_bytes {
            debug_assert!(self.offsets.last().is_none_or(|e| e.relative_offset < relative_offset));
            self.offsets.push(OffsetEntry { relative_offset, position });
            self.bytes_since_offset_entry = 0;
        }
        let raises_max = max_timestamp > self.max_timestamp;
        if raises_max {
            self.max_timestamp = max_timestamp;
            self.max_timestamp_offset = relative_offset;
        }
        if raises_max && self.bytes_since_time_entry >= self.interval_bytes {
            self.times.push(TimeEntry { timestamp: max_timestamp, relative_offset });
            self.bytes_since_time_entry = 0;
        }
        self.bytes_since_offset_entry += u64::from(size);
        self.bytes_since_time_entry += u64::from(size);
    }

    /// The current state, to return to with `reset_to` if the batches staged next are dropped.
    pub fn mark(&self) -> IndexMark {
        IndexMark {
            offsets: self.offsets.len(),
            times: self.times.len(),
            bytes_since_offset_entry: self.bytes_since_offset_entry,
            bytes_since_time_entry: self.bytes_since_time_entry,
            max_timestamp: self.max_timestamp,
            max_timestamp_offset: self.max_timestamp_offset,
        }
    }

    /// Forgets every batch recorded since `mark` was taken.
    pub fn reset_to(&mut self, mark: IndexMark) {
        debug_assert!(mark.offsets <= self.offsets.len() && mark.times <= self.times.len());
        self.offsets.truncate(mark.offsets);
        self.times.truncate(mark.times);
        self.bytes_since_offset_entry = mark.bytes_since_offset_entry;
        self.bytes_since_time_entry = mark.bytes_since_time_entry;
        self.max_timestamp = mark.max_timestamp;
        self.max_timestamp_offset = mark.max_timestamp_offset;
    }

    /// Adds a final time entry for the segment's max timestamp (on seal).
    pub fn seal(&mut self) {
        let last = self.times.last().map_or(-1, |e| e.timestamp);
        if self.max_timestamp > last {
            self.times.push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: self.max_timestamp_offset,
            });
        }
    }

    /// Largest max timestamp of the batches seen (-1 if none).
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// File position of the last indexed batch whose base offset <= `relative_offset` (0 if none).
    pub fn lookup_offset(&self, relative_offset: u32) -> u32 {
        let idx = self.offsets.partition_point(|e| e.relative_offset <= relative_offset);
        if idx == 0 {
            0
        } else {
            self.offsets[idx - 1].position
        }
    }

    /// (relative offset, file position) of the last indexed batch whose base offset <=
    /// `relative_offset`; (0, 0) if none (the segment's first batch).
    pub fn lookup_entry(&self, relative_offset: u32) -> (u32, u32) {
        let idx = self.offsets.partition_point(|e| e.relative_offset <= relative_offset);
        if idx == 0 {
            (0, 0)
        } else {
            (self.offsets[idx - 1].relative_offset, self.offsets[idx - 1].position)
        }
    }

    /// Relative offset of a batch at or before the first batch whose max timestamp >= `ts`
    /// (0 if the scan must start at the segment start).
    pub fn lookup_time(&self, ts: i64) -> u32 {
        let idx = self.times.partition_point(|e| e.timestamp < ts);
        if idx == 0 {
            0
        } else {
            self.times[idx - 1].relative_offset
        }
    }

    pub fn offset_entries(&self) -> &[OffsetEntry] {
        &self.offsets
    }

    pub fn time_entries(&self) -> &[TimeEntry] {
        &self.times
    }

    pub fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_INDEX_ENTRY_BYTES);
        for e in &self.offsets {
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        out
    }

    pub fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_INDEX_ENTRY_BYTES);
        for e in &self.times {
            out.extend_from_slice(&e.timestamp.to_be_bytes());
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        out
    }

    /// The two index files of a sealed segment of `segment_size` bytes whose next offset is
    /// `relative_end` past its base: (`.index` with its footer, `.timeindex`).
    pub fn encode_sealed(&self, segment_size: u64, relative_end: u64) -> (Vec<u8>, Vec<u8>) {
        let (mut offsets, times) = (self.encode_offsets(), self.encode_times());
        offsets.extend_from_slice(&INDEX_FOOTER_MAGIC.to_be_bytes());
        offsets.extend_from_slice(&segment_size.to_be_bytes());
        offsets.extend_from_slice(&relative_end.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&offsets), &times);
        offsets.extend_from_slice(&crc.to_be_bytes());
        (offsets, times)
    }

    /// Loads a sealed segment's index from files written by `encode_sealed`, for a segment file
    /// of `segment_size` bytes ending at `relative_end`. None if the footer is missing, its CRC
    /// fails, it describes another size or end, or the entries are malformed.
    pub fn decode_sealed(interval_bytes: u32, offsets: &[u8], times: &[u8], segment_size: u64, relative_end: u64) -> Option<Self> {
        let split = offsets.len().checked_sub(INDEX_FOOTER_BYTES)?;
        let (entries, footer) = offsets.split_at(split);
        let field = |at: usize| u64::from_be_bytes(footer[at..at + 8].try_into().expect("8 bytes"));
        let magic = u32::from_be_bytes(footer[..4].try_into().ok()?);
        let crc = u32::from_be_bytes(footer[20..].try_into().ok()?);
        let computed = crc32c::crc32c_append(crc32c::crc32c(&offsets[..split + 20]), times);
        if magic != INDEX_FOOTER_MAGIC || crc != computed || field(4) != segment_size || field(12) != relative_end {
            return None;
        }
        SegmentIndex::decode(interval_bytes, entries, times, segment_size, relative_end)
    }

    /// Loads a sealed segment's index from its two files. Returns None if either is malformed:
    /// wrong length, entries not strictly increasing, positions beyond `segment_size`, or
    /// offsets beyond `relative_end` (the segment's next offset relative to its base).
    pub fn decode(
        interval_bytes: u32,
        offsets: &[u8],
        times: &[u8],
        segment_size: u64,
        relative_end: u64,
    ) -> Option<Self> {
        if offsets.len() % OFFSET_INDEX_ENTRY_BYTES != 0 || times.len() % TIME_INDEX_ENTRY_BYTES != 0 {
            return None;
        }
        let mut index = SegmentIndex::new(interval_bytes);
        for chunk in offsets.chunks_exact(OFFSET_INDEX_ENTRY_BYTES) {
            let e = OffsetEntry {
                relative_offset: u32::from_be_bytes(chunk[..4].try_into().ok()?),
                position: u32::from_be_bytes(chunk[4..].try_into().ok()?),
            };
            let increasing = index.offsets.last().is_none_or(|p| {
                p.relative_offset < e.relative_offset && p.position < e.position
            });
            if !increasing || u64::from(e.position) >= segment_size || u64::from(e.relative_offset) >= relative_end {
                return None;
            }
            index.offsets.push(e);
        }
        for chunk in times.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let e = TimeEntry {
                timestamp: i64::from_be_bytes(chunk[..8].try_into().ok()?),
                relative_offset: u32::from_be_bytes(chunk[8..].try_into().ok()?),
            };
            let increasing = index.times.last().is_none_or(|p| {
                p.timestamp < e.timestamp && p.relative_offset < e.relative_offset
            });
            if !increasing || u64::from(e.relative_offset) >= relative_end {
                return None;
            }
            index.times.push(e);
        }
        if let Some(last) = index.times.last() {
            index.max_timestamp = last.timestamp;
            index.max_timestamp_offset = last.relative_offset;
        }
        Some(index)
    }
}
