//! The crate's one error type.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the load generator, the sizing math or the null broker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A workload file could not be read.
    #[error("cannot read workload {path}: {source}")]
    WorkloadRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A workload file is not valid TOML or does not match the schema.
    #[error("cannot parse workload {path}: {source}")]
    WorkloadParse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A workload parsed but its values are inconsistent.
    #[error("invalid workload: {0}")]
    WorkloadInvalid(String),
    /// A quantity such as `1GB/s` or `1KiB` could not be parsed.
    #[error("cannot parse quantity {input:?}: {reason}")]
    Quantity { input: String, reason: &'static str },
    /// The Kafka client reported an error.
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Topic creation failed for a reason other than "already exists".
    #[error("cannot create topic {topic}: {reason}")]
    TopicCreate { topic: String, reason: String },
    /// The topic's metadata did not show the expected partitions in time.
    #[error("topic {topic} not visible with {partitions} partitions after {waited_ms} ms")]
    TopicNotReady {
        topic: String,
        partitions: u32,
        waited_ms: u64,
    },
    /// A run exceeded its hard timeout.
    #[error("run exceeded its hard timeout of {0} s")]
    HardTimeout(u64),
    /// A worker thread panicked.
    #[error("worker thread {0} panicked")]
    WorkerPanicked(String),
    /// I/O on a report, plot or socket failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// JSON (de)serialisation of a report failed.
    #[error("report json: {0}")]
    Json(#[from] serde_json::Error),
    /// Drawing a plot failed.
    #[error("plot {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
    /// The sizing inputs are out of range.
    #[error("sizing: {0}")]
    Sizing(String),
    /// The Kafka protocol codec rejected a frame.
    #[error("kafka protocol: {0}")]
    Protocol(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
