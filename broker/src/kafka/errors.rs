//! Kafka error codes Riptide answers with, and the mapping from storage errors.

pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const INVALID_TXN_STATE: i16 = 48;
pub const KAFKA_STORAGE_ERROR: i16 = 56;

/// Per-partition code for a storage failure; the log line says which partition and why.
pub fn from_storage(e: &storage::Error) -> i16 {
    use storage::Error as E;
    match e {
        E::CorruptBatch(_) => CORRUPT_MESSAGE,
        E::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        E::BatchTooLarge { .. } => MESSAGE_TOO_LARGE,
        E::Closed => NOT_LEADER_OR_FOLLOWER,
        E::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
        E::InvalidProducerEpoch { .. } => INVALID_PRODUCER_EPOCH,
        E::CorruptLog { .. } | E::DiskFull | E::Poisoned(_) | E::Io(_) => KAFKA_STORAGE_ERROR,
    }
}

pub fn from_topic(e: &crate::topics::TopicError) -> i16 {
    use crate::topics::TopicError as E;
    match e {
        E::InvalidName(_) => INVALID_TOPIC_EXCEPTION,
        E::InvalidPartitions(_) => INVALID_PARTITIONS,
        E::UnknownConfig(_) | E::InvalidConfig { .. } | E::Compaction(_) => INVALID_CONFIG,
    }
}
