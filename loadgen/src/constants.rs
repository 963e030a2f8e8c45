//! Named limits and defaults, units last.

/// Default latency SLO for the sizing: p99 produce ack latency must stay under it.
pub const SLO_P99_MS_DEFAULT: f64 = 50.0;
/// Interval at which throughput samples are taken.
pub const SAMPLE_INTERVAL_MS: u64 = 1_000;
/// Highest latency the histograms can record (values above are clamped).
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant figures kept by the latency histograms.
pub const LATENCY_SIGFIG: u8 = 3;
/// Time allowed after the measured window to flush producers and drain consumers.
pub const DRAIN_MS_MAX: u64 = 10_000;
/// Slack added on top of warmup + duration + drain before a run is declared stuck.
pub const HARD_TIMEOUT_SLACK_MS: u64 = 20_000;
/// Time allowed for topic creation and for metadata to show the new topics.
pub const TOPIC_READY_MS_MAX: u64 = 15_000;
/// How long a producer waits when librdkafka's local queue is full before retrying.
pub const PRODUCER_QUEUE_FULL_WAIT_MS: u64 = 1;
/// How long one consumer poll may block.
pub const CONSUMER_POLL_MS: u64 = 100;
/// Largest message a workload may ask for.
pub const MESSAGE_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Number of distinct payload buffers pre-generated per producer (random content).
pub const PAYLOAD_POOL_SIZE: usize = 64;
/// Largest number of producers or consumers in a workload.
pub const CLIENTS_MAX: u32 = 256;
/// Largest partition count per topic accepted by a workload.
pub const PARTITIONS_MAX: u32 = 10_000;
/// Bytes in a megabyte as used in reports (decimal, like the seeds' "MB/s").
pub const BYTES_PER_MB: f64 = 1_000_000.0;
/// Null broker: read buffer per connection.
pub const NULL_BROKER_READ_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Null broker: largest frame accepted.
pub const NULL_BROKER_FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Null broker: partitions given to a topic that Metadata auto-creates.
pub const NULL_BROKER_PARTITIONS_DEFAULT: u32 = 100;
/// Null broker: longest time a Fetch waits before answering empty.
pub const NULL_BROKER_FETCH_WAIT_MS_MAX: u64 = 500;
/// Null broker: connections served at once.
pub const NULL_BROKER_CONNECTIONS_MAX: usize = 1_024;

const _: () = assert!(PRODUCER_QUEUE_FULL_WAIT_MS < SAMPLE_INTERVAL_MS);
const _: () = assert!(CONSUMER_POLL_MS < SAMPLE_INTERVAL_MS);
const _: () = assert!(PAYLOAD_POOL_SIZE.is_power_of_two());
