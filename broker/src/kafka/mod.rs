//! The Kafka wire protocol: framing, the per-connection pipeline, and one handler per API.

pub mod api;
pub mod budget;
pub mod connection;
pub mod errors;
pub mod frame;
pub mod socket_reader;
