//! Kafka error codes Riptide answers with, and the mapping from storage errors.

pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
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
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNKNOWN_LEADER_EPOCH: i16 = 76;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
pub const INVALID_RECORD: i16 = 87;

/// Per-partition code for a storage failure; the log line says which partition and why.
pub fn from_storage(e: &storage::Error) -> i16 {
    use storage::Error as E;
    match e {
        E::CorruptBatch(_) => CORRUPT_MESSAGE,
        E::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        E::BatchTooLarge { .. } => MESSAGE_TOO_LARGE,
        E::Closed | E::Truncating => NOT_LEADER_OR_FOLLOWER,
        E::OffsetMismatch { .. } => UNKNOWN_SERVER_ERROR,
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
        E::UnknownConfig(_) | E::InvalidConfig { .. } | E::CleanupPolicy(_) => INVALID_CONFIG,
    }
}

/// The answer to a group request whose `__consumer_offsets` write failed with `produce_error`
/// (Kafka's `appendGroupMetadataErrorToResponseError`): clients look the coordinator up again on
/// NOT_COORDINATOR and retry, as after a leader change.
pub fn coordinator_write_error(produce_error: i16) -> i16 {
    match produce_error {
        NONE => NONE,
        UNKNOWN_TOPIC_OR_PARTITION => COORDINATOR_NOT_AVAILABLE,
        NOT_LEADER_OR_FOLLOWER | KAFKA_STORAGE_ERROR => NOT_COORDINATOR,
        MESSAGE_TOO_LARGE => INVALID_COMMIT_OFFSET_SIZE,
        _ => UNKNOWN_SERVER_ERROR,
    }
}
