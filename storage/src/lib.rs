//! riptide-storage: the per-partition append-only log of the Riptide broker.
//!
//! A [`Log`] owns a directory of segments (`<20-digit base offset>.log` with sparse
//! `.index` / `.timeindex` files), appends Kafka v2 record batches through a group-commit
//! writer task using O_DIRECT writes (glommio DMA files behind [`io::IoBackend`]), serves reads
//! from a bounded batch cache or from disk, and recovers torn tails on open.
//! See `docs/storage-contract.md` for the public contract.

pub mod batch;
pub mod batch_cache;
pub mod checkpoint;
pub mod compaction;
pub mod config;
pub mod constants;
pub mod error;
pub mod io;
pub mod journal;
pub mod leader_epoch;
pub mod log;
pub mod producer_snapshot;
pub mod producer_state;
mod recovery;
pub mod segment;
pub mod segment_appender;
pub mod segment_index;
pub mod segment_reader;
pub mod stats;

pub use batch::{validate_batches, BatchHeader};
pub use compaction::{CompactionConfig, CompactionOutcome};
pub use config::{Durability, FlushPolicy, LogConfig};
pub use error::{Error, Result};
pub use io::{DmaBackend, FaultyBackend, IoBackend, IoFile};
pub use journal::{read_journal, Journal, JournalConfig, JournalContents, JournalEntry, JournalKey, JournalRecord};
pub use leader_epoch::{EpochEntry, LeaderEpochCache};
pub use log::{AppendInfo, Log, ReadResult};
pub use producer_state::{ProducerState, SeqVerdict};
