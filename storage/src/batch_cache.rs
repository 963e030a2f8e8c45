//! Bounded in-memory cache of recent batches, keyed by base offset.
//!
//! Filled on append (before the data reaches disk; readers bound themselves by the high
//! watermark) and evicted oldest-first by size, so the cache always holds a contiguous suffix
//! of the log. Hits return `Bytes` clones: no copy of record bytes.

use std::collections::BTreeMap;

use bytes::Bytes;

#[derive(Debug)]
struct CachedBatch {
    last_offset: i64,
    data: Bytes,
}

/// Per-log batch cache bounded by `max_bytes`.
#[derive(Debug)]
pub struct BatchCache {
    batches: BTreeMap<i64, CachedBatch>,
    bytes: usize,
    max_bytes: usize,
}

impl BatchCache {
    pub fn new(max_bytes: usize) -> Self {
        BatchCache { batches: BTreeMap::new(), bytes: 0, max_bytes }
    }

    /// Bytes currently cached.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Inserts a batch (offsets must follow the previous insert) and evicts the oldest batches
    /// beyond the bound.
    pub fn insert(&mut self, base_offset: i64, last_offset: i64, data: Bytes) {
        if data.len() > self.max_bytes {
            self.clear();
            return;
        }
        debug_assert!(self.batches.last_key_value().is_none_or(|(_, b)| b.last_offset < base_offset));
        self.bytes += data.len();
        self.batches.insert(base_offset, CachedBatch { last_offset, data });
        while self.bytes > self.max_bytes {
            self.pop_oldest();
        }
    }

    /// Changes the bound (e.g. when a shard's cache budget is shared by more logs), evicting the
    /// oldest batches beyond it.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
        while self.bytes > self.max_bytes {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, b)) = self.batches.pop_first() {
            self.bytes -= b.data.len();
        }
    }

    /// Batches from the one containing `offset`, below `hw`, within `max_bytes` (the first batch
    /// always whole). None if the batch containing `offset` is not cached.
    pub fn read(&self, offset: i64, hw: i64, max_bytes: usize) -> Option<Vec<Bytes>> {
        let (&first_base, first) = self.batches.range(..=offset).next_back()?;
        if first.last_offset < offset || first_base >= hw {
            return None;
        }
        let mut out = Vec::new();
        let mut total = 0usize;
        let mut expected = first_base;
        for (&base, b) in self.batches.range(first_base..) {
            if base != expected || base >= hw || (!out.is_empty() && total + b.data.len() > max_bytes) {
                break;
            }
            total += b.data.len();
            out.push(b.data.clone());
            expected = b.last_offset + 1;
            if total >= max_bytes {
                break;
            }
        }
        Some(out)
    }

    /// Drops batches that end below `offset`.
    pub fn evict_below(&mut self, offset: i64) {
        while let Some((_, b)) = self.batches.first_key_value() {
            if b.last_offset >= offset {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Drops batches that start at or above `offset` (appends rolled back).
    pub fn evict_from(&mut self, offset: i64) {
        let dropped = self.batches.split_off(&offset);
        self.bytes -= dropped.values().map(|b| b.data.len()).sum::<usize>();
    }

    pub fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }
}
