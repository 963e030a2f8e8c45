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
