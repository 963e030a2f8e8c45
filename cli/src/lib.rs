//! The `riptide` binary's commands; `main.rs` only parses and dispatches.
//!
//! - `start` runs the broker (`broker` crate);
//! - `loadgen`, `sizing`, `bench` come from the load generator (`loadgen` crate);
//! - `topic`, `produce`, `consume`, `group`, `cluster` are the admin CLI: a Kafka client like any
//!   other (librdkafka through rust-rdkafka), so they work against any Kafka-compatible cluster.

pub mod client;
pub mod cluster;
pub mod datetime;
pub mod error;
pub mod group;
pub mod native;
pub mod output;
pub mod records;
pub mod start;
pub mod topic;
