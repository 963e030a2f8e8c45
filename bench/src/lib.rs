//! riptide-bench: the end-to-end harness (systems under test, raw disk and loopback references,
//! the combined report with its ratios) and the deterministic scenarios measured under callgrind.

pub mod disk;
pub mod diskstats;
pub mod e2e_report;
pub mod error;
pub mod loopback;
pub mod procstat;
pub mod scenarios;
pub mod systems;

pub use error::{Error, Result};
