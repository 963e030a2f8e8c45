//! riptide-loadgen: a Kafka-compatible load generator, the cluster sizing math, and a null broker.
//!
//! - [`workload`]: OpenMessaging-Benchmark-style workload files (TOML).
//! - [`runner`]: drives any bootstrap list with librdkafka (the `rdkafka` crate) and measures.
//! - [`metrics`] / [`report`] / [`plot`]: hdrhistogram latencies, per-interval throughput, the JSON
//!   report, the final table and SVG plots.
//! - [`sizing`]: pure math turning a measured per-broker throughput into a broker count.
//! - [`null_broker`]: speaks just enough Kafka to ack every produce and store nothing: the ceiling
//!   of client + loopback on a machine.
//! - [`cli`]: clap argument structs and entry points for the `riptide` binary and `riptide-loadgen`.

pub mod cli;
pub mod constants;
pub mod error;
pub mod metrics;
pub mod null_broker;
pub mod payload;
pub mod plot;
pub mod report;
pub mod runner;
pub mod sizing;
pub mod units;
pub mod workload;

pub use error::{Error, Result};
pub use report::Report;
pub use runner::{run_workload, RunOptions, WindowEdge, WindowHook};
pub use workload::Workload;
