//! Workload files, in the spirit of the OpenMessaging Benchmark, written in TOML.
//!
//! ```toml
//! name = "1 topic x 100 partitions x 1 KiB, max rate"
//! [topics]
//! count = 1
//! partitions = 100
//! replication_factor = 1
//! [message]
//! size = "1KiB"                       # or { distribution = "uniform", min = "512", max = "2KiB" }
//! key = "none"                        # none | random | round-robin
//! [producer]
//! count = 1
//! rate = "max"                        # or msgs/s (10000), a byte rate ("50MB/s"), or a list: a sweep
//! acks = "1"
//! [consumer]
//! count = 1                           # 0: no consumers
//! [run]
//! warmup = "2s"
//! duration = "10s"
//! ```
//! Every field has a default except `name`; see [`Workload`] for the full list.

use crate::constants::{CLIENTS_MAX, MESSAGE_BYTES_MAX, PARTITIONS_MAX};
use crate::error::{Error, Result};
use crate::payload::PAYLOAD_HEADER_BYTES;
use crate::units::{parse_byte_rate, parse_bytes, parse_duration};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A complete workload description.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Human name, printed in reports.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub topics: TopicsSpec,
    #[serde(default)]
    pub message: MessageSpec,
    #[serde(default)]
    pub producer: ProducerSpec,
    #[serde(default)]
    pub consumer: ConsumerSpec,
    #[serde(default)]
    pub run: RunSpec,
}

/// Topics the workload creates (or expects) and writes to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsSpec {
    /// Number of topics: `<prefix>-0` .. `<prefix>-<count-1>`.
    pub count: u32,
    /// Topic name prefix. A random suffix is appended when `unique_names` is set.
    pub prefix: String,
    /// Append a per-run suffix so reruns against a long-lived cluster start from empty topics.
    pub unique_names: bool,
    pub partitions: u32,
    pub replication_factor: u16,
    /// Create the topics with the admin API before running (already existing is fine).
    pub create: bool,
}

impl Default for TopicsSpec {
    fn default() -> Self {
        TopicsSpec {
            count: 1,
            prefix: "riptide-bench".to_owned(),
            unique_names: true,
            partitions: 1,
            replication_factor: 1,
            create: true,
        }
    }
}

/// A byte size given as a number or a string with a unit (`"1KiB"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    pub fn bytes(&self) -> Result<u64> {
        match self {
            ByteSize::Bytes(b) => Ok(*b),
            ByteSize::Text(s) => parse_bytes(s),
        }
    }
}

/// Message sizes: fixed or drawn from a distribution.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SizeSpec {
    Fixed(ByteSize),
    Distribution(SizeDistribution),
}

/// A size distribution.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "distribution", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SizeDistribution {
    /// Uniform in `[min, max]`.
    Uniform { min: ByteSize, max: ByteSize },
    /// One of `sizes`, with the matching `weights` (relative).
    Weighted { sizes: Vec<ByteSize>, weights: Vec<u32> },
}

/// What the payload bytes after the header contain.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadKind {
    /// Random bytes: incompressible.
    #[default]
    Random,
    /// Zeros: compresses to almost nothing.
    Zeros,
    /// Printable text-like bytes: compresses moderately.
    Text,
}

/// How messages are keyed, which decides partitioning.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDistribution {
    /// No key: the client's partitioner spreads messages (librdkafka: sticky per batch).
    #[default]
    None,
    /// A key drawn uniformly from `key_cardinality` values (hash partitioning).
    Random,
    /// No key, explicit partition chosen round-robin by the load generator.
    RoundRobin,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MessageSpec {
    pub size: SizeSpec,
    pub payload: PayloadKind,
    pub key: KeyDistribution,
    pub key_cardinality: u64,
}

impl Default for MessageSpec {
    fn default() -> Self {
        MessageSpec {
            size: SizeSpec::Fixed(ByteSize::Bytes(1024)),
            payload: PayloadKind::Random,
            key: KeyDistribution::None,
            key_cardinality: 10_000,
        }
    }
}

/// A target rate: `"max"`, messages per second (number), or a byte rate (`"50MB/s"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RateSpec {
    MessagesPerSecond(f64),
    Text(String),
}

/// One rate or a sweep of rates (each step runs warmup + duration).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RateOrSweep {
    One(RateSpec),
    Sweep(Vec<RateSpec>),
}

/// A resolved target rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetRate {
    /// As fast as the client and the broker allow.
    Max,
    /// Total messages per second over all producers.
    MessagesPerSecond(f64),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerSpec {
    /// Producer clients (one thread and one librdkafka instance each).
    pub count: u32,
    pub rate: RateOrSweep,
    /// `"0"`, `"1"` or `"all"`.
    pub acks: String,
    /// `none`, `gzip`, `snappy`, `lz4` (zstd is not compiled in).
    pub compression: String,
    /// librdkafka `batch.size`.
    pub batch_size: ByteSize,
    /// librdkafka `linger.ms`.
    pub linger_ms: u32,
    /// librdkafka `enable.idempotence`.
    pub idempotence: bool,
    /// Any other librdkafka producer property.
    pub extra: BTreeMap<String, String>,
}

impl Default for ProducerSpec {
    fn default() -> Self {
        ProducerSpec {
            count: 1,
            rate: RateOrSweep::One(RateSpec::Text("max".to_owned())),
            acks: "1".to_owned(),
            compression: "none".to_owned(),
            batch_size: ByteSize::Bytes(1_000_000),
            linger_ms: 5,
            idempotence: false,
            extra: BTreeMap::new(),
        }
    }
}

/// Where consumers start reading.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StartPosition {
    /// Offset 0: right for fresh topics, needs no ListOffsets.
    #[default]
    Beginning,
    /// The log end at start.
    End,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSpec {
    /// Consumer clients per subscription; 0 disables consumption.
    pub count: u32,
    /// Number of independent subscriptions (each reads every byte: the egress fanout).
    pub subscriptions: u32,
    /// Consumer group id. Empty: partitions are split with assign() (no group coordinator needed).
    pub group: String,
    pub start: StartPosition,
    /// Any other librdkafka consumer property.
    pub extra: BTreeMap<String, String>,
}

impl Default for ConsumerSpec {
    fn default() -> Self {
        ConsumerSpec {
            count: 1,
            subscriptions: 1,
            group: String::new(),
            start: StartPosition::Beginning,
            extra: BTreeMap::new(),
        }
    }
}

/// A duration given as seconds (number) or text (`"500ms"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum DurationSpec {
    Seconds(f64),
    Text(String),
}

impl DurationSpec {
    pub fn duration(&self) -> Result<Duration> {
        match self {
            DurationSpec::Seconds(s) if s.is_finite() && *s >= 0.0 => Ok(Duration::from_secs_f64(*s)),
            DurationSpec::Seconds(_) => Err(Error::WorkloadInvalid("negative duration".into())),
            DurationSpec::Text(t) => parse_duration(t),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunSpec {
    pub warmup: DurationSpec,
    pub duration: DurationSpec,
    /// Stop once this many messages were acknowledged in the measured window (0: no limit).
    pub message_count: u64,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            warmup: DurationSpec::Seconds(2.0),
            duration: DurationSpec::Seconds(10.0),
            message_count: 0,
        }
    }
}

/// Sizes resolved to bytes, ready for sampling.
#[derive(Debug, Clone, PartialEq)]
pub enum SizeSampler {
    Fixed(u64),
    Uniform { min: u64, max: u64 },
    Weighted { sizes: Vec<u64>, cumulative: Vec<u64> },
}

impl SizeSampler {
    /// Mean message size in bytes.
    pub fn mean(&self) -> f64 {
        match self {
            SizeSampler::Fixed(b) => *b as f64,
            SizeSampler::Uniform { min, max } => (*min as f64 + *max as f64) / 2.0,
            SizeSampler::Weighted { sizes, cumulative } => {
                let total = *cumulative.last().unwrap_or(&1) as f64;
                let mut previous = 0;
                let mut sum = 0.0;
                for (size, c) in sizes.iter().zip(cumulative) {
                    sum += *size as f64 * (c - previous) as f64;
                    previous = *c;
                }
                sum / total
            }
        }
    }

    /// Largest size this sampler can return.
    pub fn max(&self) -> u64 {
        match self {
            SizeSampler::Fixed(b) => *b,
            SizeSampler::Uniform { max, .. } => *max,
            SizeSampler::Weighted { sizes, .. } => sizes.iter().copied().max().unwrap_or(0),
        }
    }

    /// Draws one size.
    pub fn sample<R: rand::Rng>(&self, rng: &mut R) -> u64 {
        match self {
            SizeSampler::Fixed(b) => *b,
            SizeSampler::Uniform { min, max } => rng.gen_range(*min..=*max),
            SizeSampler::Weighted { sizes, cumulative } => {
                let total = *cumulative.last().unwrap_or(&1);
                let x = rng.gen_range(0..total);
                let i = cumulative.partition_point(|c| *c <= x);
                sizes[i.min(sizes.len() - 1)]
            }
        }
    }
}

impl Workload {
    /// Reads and validates a workload file.
    pub fn from_file(path: &Path) -> Result<Workload> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::WorkloadRead {
            path: path.to_owned(),
            source,
        })?;
        let workload: Workload = toml::from_str(&text).map_err(|source| Error::WorkloadParse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        workload.validate()?;
        Ok(workload)
    }

    /// Parses and validates workload text.
    pub fn from_toml_str(text: &str) -> Result<Workload> {
        let workload: Workload = toml::from_str(text).map_err(|source| Error::WorkloadParse {
            path: "<string>".into(),
            source: Box::new(source),
        })?;
        workload.validate()?;
        Ok(workload)
    }

    /// Checks every value and relation; the resolving accessors below rely on it.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::WorkloadInvalid(m));
        let t = &self.topics;
        if t.count == 0 || t.partitions == 0 || t.partitions > PARTITIONS_MAX {
            return invalid(format!(
                "topics.count must be >= 1 and topics.partitions in 1..={PARTITIONS_MAX}"
            ));
        }
        if t.replication_factor == 0 {
            return invalid("topics.replication_factor must be >= 1".into());
        }
        if self.producer.count == 0 || self.producer.count > CLIENTS_MAX {
            return invalid(format!("producer.count must be in 1..={CLIENTS_MAX}"));
        }
        if self.consumer.count > CLIENTS_MAX || self.consumer.subscriptions == 0 {
            return invalid(format!(
                "consumer.count must be <= {CLIENTS_MAX} and consumer.subscriptions >= 1"
            ));
        }
        if !matches!(self.producer.acks.as_str(), "0" | "1" | "all" | "-1") {
            return invalid(format!("producer.acks {:?}: use 0, 1 or all", self.producer.acks));
        }
        if !matches!(
            self.producer.compression.as_str(),
            "none" | "gzip" | "snappy" | "lz4"
        ) {
            return invalid(format!(
                "producer.compression {:?}: use none, gzip, snappy or lz4",
                self.producer.compression
            ));
        }
        let sizes = self.size_sampler()?;
        let (min, max) = match &sizes {
            SizeSampler::Fixed(b) => (*b, *b),
            SizeSampler::Uniform { min, max } => (*min, *max),
            SizeSampler::Weighted { sizes, .. } => (
                sizes.iter().copied().min().unwrap_or(0),
                sizes.iter().copied().max().unwrap_or(0),
            ),
        };
        if min < PAYLOAD_HEADER_BYTES as u64 || max > MESSAGE_BYTES_MAX || min > max {
            return invalid(format!(
                "message sizes must lie in {PAYLOAD_HEADER_BYTES}..={MESSAGE_BYTES_MAX} bytes (the payload carries a {PAYLOAD_HEADER_BYTES}-byte timestamp header)"
            ));
        }
        self.producer.batch_size.bytes()?;
        for rate in self.target_rates()? {
            if let TargetRate::MessagesPerSecond(r) = rate {
                if !(r.is_finite() && r > 0.0) {
                    return invalid("producer.rate must be positive".into());
                }
            }
        }
        if self.duration()?.is_zero() {
            return invalid("run.duration must be > 0".into());
        }
        self.warmup()?;
        Ok(())
    }

    /// The size sampler for messages.
    pub fn size_sampler(&self) -> Result<SizeSampler> {
        Ok(match &self.message.size {
            SizeSpec::Fixed(b) => SizeSampler::Fixed(b.bytes()?),
            SizeSpec::Distribution(SizeDistribution::Uniform { min, max }) => SizeSampler::Uniform {
                min: min.bytes()?,
                max: max.bytes()?,
            },
            SizeSpec::Distribution(SizeDistribution::Weighted { sizes, weights }) => {
                if sizes.is_empty() || sizes.len() != weights.len() || weights.iter().all(|w| *w == 0) {
                    return Err(Error::WorkloadInvalid(
                        "weighted sizes need as many weights as sizes, not all zero".into(),
                    ));
                }
                let mut cumulative = Vec::with_capacity(weights.len());
                let mut total = 0_u64;
                for w in weights {
                    total += u64::from(*w);
                    cumulative.push(total);
                }
                SizeSampler::Weighted {
                    sizes: sizes.iter().map(ByteSize::bytes).collect::<Result<_>>()?,
                    cumulative,
                }
            }
        })
    }

    /// The target rates, one per step (a single rate is a one-step sweep).
    pub fn target_rates(&self) -> Result<Vec<TargetRate>> {
        let specs: Vec<&RateSpec> = match &self.producer.rate {
            RateOrSweep::One(r) => vec![r],
            RateOrSweep::Sweep(v) => v.iter().collect(),
        };
        if specs.is_empty() {
            return Err(Error::WorkloadInvalid("producer.rate sweep is empty".into()));
        }
        let mean = self.size_sampler()?.mean();
        specs
            .into_iter()
            .map(|spec| match spec {
                RateSpec::MessagesPerSecond(r) => Ok(TargetRate::MessagesPerSecond(*r)),
                RateSpec::Text(t) if t.eq_ignore_ascii_case("max") => Ok(TargetRate::Max),
                RateSpec::Text(t) => Ok(TargetRate::MessagesPerSecond(parse_byte_rate(t)? / mean)),
            })
            .collect()
    }

    pub fn warmup(&self) -> Result<Duration> {
        self.run.warmup.duration()
    }

    pub fn duration(&self) -> Result<Duration> {
        self.run.duration.duration()
    }

    /// Topic names for this run; `suffix` is appended when `unique_names` is set.
    pub fn topic_names(&self, suffix: &str) -> Vec<String> {
        (0..self.topics.count)
            .map(|i| {
                if self.topics.unique_names && !suffix.is_empty() {
                    format!("{}-{suffix}-{i}", self.topics.prefix)
                } else {
                    format!("{}-{i}", self.topics.prefix)
                }
            })
            .collect()
    }

    /// Consumer clients in total (count x subscriptions).
    pub fn consumer_clients(&self) -> u32 {
        self.consumer.count * self.consumer.subscriptions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
        name = "full"
        [topics]
        count = 2
        partitions = 100
        replication_factor = 3
        [message]
        size = { distribution = "uniform", min = "512", max = "2KiB" }
        key = "random"
        key_cardinality = 100
        [producer]
        count = 2
        rate = ["10MB/s", 20000, "max"]
        acks = "all"
        compression = "lz4"
        batch_size = "1MiB"
        linger_ms = 10
        [consumer]
        count = 2
        subscriptions = 2
        [run]
        warmup = "1s"
        duration = "500ms"
        message_count = 1000
    "#;

    #[test]
    fn workload_parses_full_file() {
        let w = Workload::from_toml_str(FULL).unwrap();
        assert_eq!(w.topics.count, 2);
        assert_eq!(w.topics.replication_factor, 3);
        assert_eq!(w.size_sampler().unwrap(), SizeSampler::Uniform { min: 512, max: 2048 });
        let rates = w.target_rates().unwrap();
        assert_eq!(rates.len(), 3);
        assert_eq!(rates[0], TargetRate::MessagesPerSecond(10e6 / 1280.0));
        assert_eq!(rates[1], TargetRate::MessagesPerSecond(20000.0));
        assert_eq!(rates[2], TargetRate::Max);
        assert_eq!(w.duration().unwrap(), Duration::from_millis(500));
        assert_eq!(w.warmup().unwrap(), Duration::from_secs(1));
        assert_eq!(w.consumer_clients(), 4);
        assert_eq!(w.producer.batch_size.bytes().unwrap(), 1024 * 1024);
    }

    #[test]
    fn workload_defaults_fill_missing_sections() {
        let w = Workload::from_toml_str("name = \"minimal\"").unwrap();
        assert_eq!(w.size_sampler().unwrap(), SizeSampler::Fixed(1024));
        assert_eq!(w.target_rates().unwrap(), vec![TargetRate::Max]);
        assert_eq!(w.producer.acks, "1");
        assert_eq!(w.topic_names("x"), vec!["riptide-bench-x-0".to_owned()]);
    }

    #[test]
    fn workload_rejects_unknown_fields_and_bad_values() {
        assert!(Workload::from_toml_str("name = \"a\"\n[producer]\nackz = \"1\"").is_err());
        assert!(Workload::from_toml_str("name = \"a\"\n[producer]\nacks = \"2\"").is_err());
        assert!(Workload::from_toml_str("name = \"a\"\n[message]\nsize = 4").is_err());
        assert!(Workload::from_toml_str("name = \"a\"\n[topics]\npartitions = 0").is_err());
        assert!(Workload::from_toml_str("name = \"a\"\n[producer]\ncompression = \"zstd\"").is_err());
        assert!(Workload::from_toml_str("name = \"a\"\n[run]\nduration = 0").is_err());
    }

    #[test]
    fn workload_weighted_sizes_sample_and_average() {
        let w = Workload::from_toml_str(
            "name = \"w\"\n[message]\nsize = { distribution = \"weighted\", sizes = [100, 1000], weights = [3, 1] }",
        )
        .unwrap();
        let s = w.size_sampler().unwrap();
        assert!((s.mean() - 325.0).abs() < 1e-9);
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let v = s.sample(&mut rng);
            assert!(v == 100 || v == 1000);
        }
    }

    #[test]
    fn workload_shipped_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/workloads");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Workload::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 4, "expected the shipped workloads in {}", dir.display());
    }
}
