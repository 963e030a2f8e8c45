//! Named constants (with units) used across the storage crate.

/// Default segment size before rolling (Kafka `segment.bytes`): 1 GiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Largest segment size we accept; positions in the offset index are `u32`.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Default segment age before rolling (Kafka `segment.ms`): 7 days in milliseconds.
pub const SEGMENT_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Default time-based retention (Kafka `retention.ms`): 168 hours in milliseconds.
pub const RETENTION_MS_DEFAULT: u64 = 168 * 60 * 60 * 1000;
/// Bytes appended between two sparse index entries (Kafka `index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES: u32 = 4096;
/// Default per-log batch cache bound: 8 MiB.
pub const CACHE_BYTES_MAX_DEFAULT: usize = 8 << 20;
/// Default largest record batch (Kafka `max.message.bytes`): 1 MiB + 12 bytes of overhead.
pub const MAX_BATCH_BYTES_DEFAULT: usize = 1_048_588;

/// Size of the v2 record batch header in bytes.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes of a batch not counted by its `batch_length` field (base offset + length).
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// Offset of the CRC-covered region (attributes .. end) inside a batch.
pub const BATCH_CRC_START_BYTES: usize = 21;
/// Record batch format version ("magic") we accept.
pub const BATCH_MAGIC_V2: i8 = 2;

/// Bytes one log keeps in memory before they are in its segment files; `append` waits beyond
/// it (backpressure) while the flusher writes them.
pub const LOG_UNFLUSHED_BYTES_MAX: usize = 16 << 20;
/// A log writes its segment files once this much is waiting (large, sequential writes)...
pub const LOG_FLUSH_BYTES: usize = 1 << 20;
/// ...or once its oldest unflushed batch is about this old (spread +-50% per log and write so
/// the logs of a shard do not flush in one wave; bounds memory and journal replay).
pub const LOG_FLUSH_DELAY_MS: u64 = 2_000;
/// Segment files written but not synced are synced at most this long after the write (unless
/// the journal wants the space sooner, or on flush/close): several writes share one sync.
pub const LOG_SYNC_INTERVAL_MS: u64 = 2_000;
/// An append this large goes straight to the segment files (one device write of its bytes, as
/// before the journal) instead of through the journal (two): for big batches the journal saves
/// no device writes and costs half the disk bandwidth. Also when the log already has
/// `LOG_FLUSH_BYTES` waiting (a large segment write is due anyway) or a direct append waiting.
pub const LOG_DIRECT_APPEND_BYTES: usize = 256 << 10;
/// Direct appends written but not synced are synced (and the high watermark moves past them
/// under `flush=always`) at most this long after their write when nobody asks sooner.
pub const LOG_DIRECT_SYNC_DELAY_MS: u64 = 50;
/// Segment writes in progress at once per shard (the others wait their turn).
pub const SEGMENT_WRITES_CONCURRENT: u64 = 2;
/// One segment write (a flush step) takes at most this much of a log's unflushed batches (at
/// least one batch); the rest goes in the next step, at once if still due. Bounds the DMA
/// memory segment writes hold per shard (`SEGMENT_WRITES_CONCURRENT` x this, 8 MiB) inside the
/// executor's DMA pool (`io.memory.bytes`, 10 MiB by default): a log flushing all of its
/// `LOG_UNFLUSHED_BYTES_MAX` at once took up to 32 MiB with two logs writing, and the buffers the
/// exhausted pool could not give came from fresh heap pages, faulted in by the copy (measured,
/// one rdkafka_performance producer: 28,000-45,000 page faults/s in the broker, 5,000-10,000
/// with the bound; 936 -> 1,021 MB/s, mean of 4 runs each).
pub const LOG_FLUSH_WRITE_BYTES_MAX: usize = 2 * WRITE_CHUNK_BYTES_MAX;
/// A syncfs round's leader waits this long before starting it, so that syncs asked for within
/// the window (logs finishing their segment writes one after another) share the round. Acks
/// never wait on these rounds (the journal's fdatasync makes them durable).
pub const SYNC_GROUP_GATHER_US: u64 = 1_000;
/// After a segment write failed for want of space, the next try comes this much later.
pub const LOG_DISK_FULL_RETRY_MS: u64 = 500;

/// Journal ring file size and count per shard (128 MiB in all by default).
pub const JOURNAL_FILE_BYTES_DEFAULT: u64 = 32 << 20;
pub const JOURNAL_FILES_DEFAULT: usize = 4;
/// Smallest ring file (and the unit file sizes are rounded to).
pub const JOURNAL_FILE_BYTES_MIN: u64 = 1 << 20;
/// Journal rounds start at most this often (unless `JOURNAL_ROUND_BYTES_DEFAULT` wait): at most
/// ~1,000 journal writes per second, whatever the number of partitions, for at most a
/// millisecond of added latency. Measured (10 MB/s over 100 partitions, 1 KiB, linger 1 ms):
/// 500 us gave ~1,870 rounds/s, 2 ms doubled the acks=1 p99 over 1 ms.
pub const JOURNAL_ROUND_INTERVAL_US_DEFAULT: u64 = 1_000;
/// Written journal data is fdatasync'ed at once when someone waits for it (acks=all, a flush, a
/// consumer waiting for the high watermark, a file switch), else at the latest this long after
/// the last sync: acks=1 producers alone do not pay a device flush per round (on virtio every
/// flush is one more device write).
pub const JOURNAL_SYNC_INTERVAL_US_DEFAULT: u64 = 5_000;
/// A round this large starts at once.
pub const JOURNAL_ROUND_BYTES_DEFAULT: usize = 256 << 10;
/// Zero-filling a new ring file writes this much at a time.
pub const JOURNAL_ZERO_FILL_BYTES: usize = 1 << 20;
/// A standalone log (`Log::open`) keeps its own journal in this subdirectory, this large.
pub const PRIVATE_JOURNAL_DIR: &str = "journal";
pub const PRIVATE_JOURNAL_BYTES: u64 = 4 << 20;
/// Disk space is reserved (`fallocate`) before each segment write, in steps of this many bytes,
/// so the O_DIRECT write lands inside the file: ext4 cannot run an extending O_DIRECT write
/// asynchronously (io_uring hands it to a worker that holds the inode lock). Segment writes now
/// come from the lazy flusher, large and at most `SEGMENT_WRITES_CONCURRENT` at once, so the
/// step is one block: nothing is reserved ahead of the data (it used to be 32 MiB per active
/// partition, 32 GB for 1,000 partitions), except for big writes (below).
pub const SEGMENT_ALLOCATE_STEP_BYTES: u64 = 4 << 10;
/// A segment write at least this large (a log streaming big writes) reserves room for
/// `SEGMENT_ALLOCATE_AHEAD_WRITES` more writes of its size: fallocate (~0.5 ms per call on ext4
/// here, and the log's writes wait for it) then runs before every third write, not each one.
/// Smaller writes reserve nothing ahead, so 1,000 partitions flushing small writes hold no
/// space beyond their data; a streaming log holds at most 2 x `LOG_FLUSH_WRITE_BYTES_MAX`
/// ahead (given back when its segment is sealed). Measured (same runs, 3 each): one
/// rdkafka_performance producer 1,331-1,377 MB/s against 1,226-1,274 with a fallocate per write.
pub const SEGMENT_ALLOCATE_AHEAD_MIN_WRITE_BYTES: u64 = 1 << 20;
pub const SEGMENT_ALLOCATE_AHEAD_WRITES: u64 = 2;
/// Largest single DMA write issued by the segment appender: 2 MiB.
pub const WRITE_CHUNK_BYTES_MAX: usize = 2 << 20;
/// Default read chunk for disk reads of batches: 64 KiB.
pub const READ_CHUNK_BYTES: usize = 64 << 10;
/// Read chunk used when scanning segments during recovery: 1 MiB.
pub const RECOVERY_READ_CHUNK_BYTES: usize = 1 << 20;
/// Largest read chunk we issue for a single fetch: 8 MiB.
pub const READ_CHUNK_BYTES_MAX: usize = 8 << 20;
/// Size of the marker file used to prime glommio's iopoll probe: 4 KiB.
pub const DMA_PROBE_FILE_BYTES: usize = 4096;
/// Alignment used by the in-memory faulty backend (mimics a 4 KiB block device).
pub const FAULTY_ALIGNMENT_BYTES: u64 = 4096;

/// Entry size of the sparse offset index: u32 relative offset + u32 position.
pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;
/// Entry size of the time index: i64 timestamp + u32 relative offset.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;
/// Footer of a sealed segment's `.index` file: magic, the segment file's size, its next offset
/// relative to its base, and a CRC-32C over both index files' entries and the footer fields.
pub const INDEX_FOOTER_BYTES: usize = 24;
pub const INDEX_FOOTER_MAGIC: u32 = 0x5249_5831; // "RIX1"

/// File name of a log's checkpoint (log start offset, recovery point), see `checkpoint.rs`.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// The log start file of earlier versions, read once and replaced by `CHECKPOINT_FILE`.
pub const LEGACY_LOG_START_CHECKPOINT_FILE: &str = "log-start-offset";
/// Suffix of producer-state snapshot files (`<offset>.snapshot`).
pub const SNAPSHOT_SUFFIX: &str = "snapshot";
/// Producer snapshots kept per log (the newest; an older one covers a damaged newest one).
pub const SNAPSHOTS_KEPT: usize = 2;
/// Segments whose batch headers rebuild producer state when a log has no snapshot (a data dir
/// from an earlier version): bounded recovery time, as Kafka does when upgrading.
pub const PRODUCER_REBUILD_SEGMENTS_MAX: usize = 2;
/// File name of the glommio iopoll probe marker.
pub const DMA_PROBE_FILE: &str = ".riptide-dma-probe";
/// Segment file suffixes.
pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Digits in a segment file name (zero-padded base offset).
pub const SEGMENT_NAME_DIGITS: usize = 20;

/// Batches remembered per producer and partition for duplicate detection (librdkafka and the
/// Java client keep at most 5 requests in flight when idempotent).
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;
/// Producers one log remembers; beyond it the least recently seen is forgotten (a flood of
/// short-lived producers must not exhaust memory). ~200 bytes each.
pub const PRODUCERS_PER_LOG_MAX: usize = 20_000;
/// A producer not seen for this long is forgotten (Kafka's `producer.id.expiration.ms`).
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

const _: () = assert!(PRODUCER_BATCHES_REMEMBERED <= u8::MAX as usize, "snapshots store the count in a byte");

/// Default time a tombstone stays after its segment's newest record (Kafka
/// `delete.retention.ms`): 1 day in milliseconds.
pub const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;
/// Default dirty share of a log's sealed bytes that triggers compaction
/// (Kafka `min.cleanable.dirty.ratio`).
pub const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: f64 = 0.5;
/// Keys one compaction pass remembers (its key hash -> offset map): at ~50 bytes an entry at
/// most ~25 MiB, allocated for the pass only, one pass at a time per shard. A log with more
/// distinct keys in its dirty part is cleaned a prefix at a time.
pub const COMPACTION_OFFSET_MAP_ENTRIES_MAX: usize = 512 * 1024;
/// A cleaned segment is written this much at a time (bounded memory for any segment size).
pub const COMPACTION_WRITE_BYTES: usize = 1 << 20;
/// Suffix of a cleaned segment's files while they are written, before the swap; leftovers of a
/// crash are removed at open.
pub const CLEANED_SUFFIX: &str = "cleaned";
/// File recording that a log was compacted (its sealed segments may have offset gaps) and the
/// offset below which it is clean. Written, durably, before the first cleaned segment is
/// swapped in; never removed.
pub const COMPACTION_CHECKPOINT_FILE: &str = "cleaner-checkpoint";
