//! Typed storage errors; each maps to one Kafka error code in the broker.

/// Result alias used by the storage crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A batch failed validation (magic, lengths, CRC) -> CORRUPT_MESSAGE (2).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// Requested offset outside `[log_start, high_watermark]` -> OFFSET_OUT_OF_RANGE (1).
    #[error("offset {requested} out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange { requested: i64, log_start: i64, high_watermark: i64 },
    /// A batch is larger than `max_batch_bytes` -> MESSAGE_TOO_LARGE (10).
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },
    /// No space left on device -> KAFKA_STORAGE_ERROR (56).
    #[error("disk full")]
    DiskFull,
    /// An earlier write or fsync failed; the log refuses writes -> KAFKA_STORAGE_ERROR (56).
    #[error("log poisoned: {0}")]
    Poisoned(String),
    /// Any other I/O failure -> KAFKA_STORAGE_ERROR (56).
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    /// The log was closed.
    #[error("log closed")]
    Closed,
    /// The log is being truncated (a follower's `truncate_to`): appends wait for the caller to
    /// retry -> NOT_LEADER_OR_FOLLOWER (6), retriable.
    #[error("log is being truncated")]
    Truncating,
    /// A follower's batches (`append_at`) do not start at the log end -> UNKNOWN_SERVER_ERROR
    /// (-1): the replica fetcher must truncate or refetch, never skip or overlap offsets.
    #[error("batches start at offset {got}, the log ends at {expected}")]
    OffsetMismatch { expected: i64, got: i64 },
    /// Data on disk that was synced (below the recovery point, or in a sealed segment) is
    /// damaged: the log refuses to open rather than drop it -> KAFKA_STORAGE_ERROR (56).
    #[error("corrupt log data in {} at position {position}: {reason}; recovery does not delete synced data: move the damaged segment aside or restore it from a copy, then restart", path.display())]
    CorruptLog { path: std::path::PathBuf, position: u64, reason: String },
    /// An idempotent producer's batch does not follow its last sequence -> 45.
    #[error("producer {producer_id}: sequence {got}, expected {expected}")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    /// An idempotent producer's epoch is older than its current one -> 47.
    #[error("producer {producer_id}: epoch {got} is older than its current epoch {current}")]
    InvalidProducerEpoch { producer_id: i64, current: i16, got: i16 },
}

impl Error {
    /// ENOSPC: the appends are rolled back and the log goes on (not poisoned).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::DiskFull)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == std::io::ErrorKind::StorageFull {
            Error::DiskFull
        } else {
            Error::Io(e)
        }
    }
}
