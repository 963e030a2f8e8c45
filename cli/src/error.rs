//! The CLI's one error type and its exit codes.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::fmt;

/// Exit codes (README, "Exit codes"). clap's own usage errors also exit 2.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;

#[derive(Debug)]
pub enum CliError {
    /// The cluster refused or failed the operation (unknown topic, invalid config, ...): exit 1.
    Failed(String),
    /// A bad argument or bad input: exit 2.
    Usage(String),
    /// No broker answered within the timeout: exit 3.
    Unreachable(String),
}

pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Failed(_) => EXIT_FAILED,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Unreachable(_) => EXIT_UNREACHABLE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Failed(m) | CliError::Usage(m) | CliError::Unreachable(m) => f.write_str(m),
        }
    }
}

pub fn failed(msg: impl Into<String>) -> CliError {
    CliError::Failed(msg.into())
}

pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Kafka's name of an error code, as its tools print it: `UnknownTopicOrPartition` becomes
/// `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn code_name(code: RDKafkaErrorCode) -> String {
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// "Broker: Unknown topic or partition (UNKNOWN_TOPIC_OR_PARTITION)".
pub fn describe_code(code: RDKafkaErrorCode) -> String {
    // SAFETY: rd_kafka_err2str returns a static NUL-terminated string for any code.
    let text = unsafe { std::ffi::CStr::from_ptr(rdkafka::bindings::rd_kafka_err2str(code_to_native(code))) };
    format!("{} ({})", text.to_string_lossy(), code_name(code))
}

fn code_to_native(code: RDKafkaErrorCode) -> rdkafka::types::RDKafkaRespErr {
    rdkafka::types::RDKafkaRespErr::try_from(code as i32).unwrap_or(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN)
}

/// Local librdkafka errors that mean no broker could be reached in time.
pub fn is_unreachable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::Resolve
            | C::RequestTimedOut
            | C::NetworkException
            | C::TimedOutQueue
    )
}

pub fn kafka_code(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    match e {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_kafkas() {
        assert_eq!(code_name(RDKafkaErrorCode::UnknownTopicOrPartition), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(code_name(RDKafkaErrorCode::InvalidReplicationFactor), "INVALID_REPLICATION_FACTOR");
        assert_eq!(code_name(RDKafkaErrorCode::TopicAlreadyExists), "TOPIC_ALREADY_EXISTS");
    }
}
