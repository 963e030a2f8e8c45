//! Riptide broker: a Kafka-compatible broker, thread-per-core on glommio.
//! See ARCHITECTURE.md for the produce and fetch paths and the shard model.

pub mod config;
pub mod constants;
pub mod kafka;
pub mod metrics;
pub mod partition_dirs;
pub mod port;
pub mod producer_ids;
pub mod router;
pub mod scatter;
pub mod server;
pub mod shard;
#[cfg(test)]
mod test_support;
pub mod topics;
