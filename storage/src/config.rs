//! Log configuration.

use crate::constants::*;

/// When appended data becomes durable and visible to consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every group commit ends with an fdatasync; the high watermark is the synced end.
    Always,
    /// Data is written at once but fdatasync'ed only every `ms` milliseconds or `bytes` bytes;
    /// the high watermark is the written end.
    Interval { ms: u64, bytes: u64 },
}

/// What a caller of `Log::wait_durable` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Handed to the kernel (O_DIRECT write completed).
    Written,
    /// Written and fdatasync'ed.
    Synced,
}

/// Per-log configuration (Kafka topic configs in parentheses).
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Roll the active segment beyond this many bytes (`segment.bytes`).
    pub segment_bytes: u64,
    /// Roll the active segment after this many milliseconds (`segment.ms`).
    pub segment_ms: u64,
    /// Delete segments whose newest timestamp is older than this (`retention.ms`); None = forever.
    pub retention_ms: Option<u64>,
    /// Keep at most about this many bytes (`retention.bytes`); None = unbounded.
    pub retention_bytes: Option<u64>,
    /// Flush policy.
    pub flush: FlushPolicy,
    /// Bytes between sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Bound of the in-memory batch cache for this log.
    pub cache_bytes_max: usize,
    /// Largest accepted record batch (`max.message.bytes`).
    pub max_batch_bytes: usize,
    /// Direct appends (large, straight to the segment files) are synced at most this long
    /// after their write when nobody asks sooner (`LOG_DIRECT_SYNC_DELAY_MS`).
    pub direct_sync_delay_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            flush: FlushPolicy::Always,
            index_interval_bytes: INDEX_INTERVAL_BYTES,
            cache_bytes_max: CACHE_BYTES_MAX_DEFAULT,
            max_batch_bytes: MAX_BATCH_BYTES_DEFAULT,
            direct_sync_delay_ms: LOG_DIRECT_SYNC_DELAY_MS,
        }
    }
}

impl LogConfig {
    /// Segment size clamped to what the index format can address.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, SEGMENT_BYTES_MAX)
    }

    /// How far ahead of its end the active segment reserves disk space: a step, but never more
    /// than one segment (small test segments must not reserve 32 MiB each).
    pub(crate) fn allocate_step_bytes(&self) -> u64 {
        SEGMENT_ALLOCATE_STEP_BYTES.min(self.effective_segment_bytes())
    }
}
