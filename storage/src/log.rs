//! The per-partition log: segments, journaled appends, a lazy segment flusher, batch cache,
//! reads, retention.
//!
//! Appends go to the shard's journal (`journal.rs`), which makes them durable in shared,
//! group-committed writes; acknowledgements and the high watermark follow the journal. The log
//! keeps the batches in memory (`unflushed`, readable) and its flusher task writes them to the
//! segment files in large writes when enough has gathered, when the journal needs its file
//! back, after `LOG_FLUSH_DELAY_MS`, or on `flush`/`close`; then it syncs them and tells the
//! journal. The segment files hold everything below `segment_synced` (the recovery point).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use event_listener::{Event, EventListener};
use futures::future::select;
use glommio::task::JoinHandle;

use crate::batch::{set_base_offset, set_partition_leader_epoch, validate_batches, BatchHeader};
use crate::batch_cache::BatchCache;
use crate::checkpoint::CheckpointFile;
use crate::compaction::{CompactionConfig, CompactionOutcome};
use crate::config::{Durability, FlushPolicy, LogConfig};
use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::{IoBackend, IoFile};
use crate::leader_epoch::{self, EpochEntry, LeaderEpochCache};
use crate::journal::{read_journal, Journal, JournalClient, JournalConfig, JournalEntry, JournalKey, JournalRecord, DIRECT_PAYLOAD_BYTES};
use crate::producer_snapshot;
use crate::producer_state::{ProducerState, SeqVerdict};
use crate::recovery::{create_segment, now_ms, persist_index, recover, remove_segment_files};
use crate::segment::Segment;
use crate::segment_appender::{PreparedWrite, SegmentAppender};
use crate::segment_reader::{read_batches, BatchScanner, ReadStart, ScanItem};

mod compact;
mod truncate;
use compact::dirty_ratio;
use truncate::{truncate_files, TruncateJob};

/// Result of an append: offsets assigned to the appended batches, or (`duplicate`) the offsets
/// an idempotent producer's earlier copy of them already has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_end_offset: i64,
    pub max_timestamp: i64,
    pub log_start_offset: i64,
    /// Nothing was appended: these are the offsets of the original, which may still be on its
    /// way to disk; wait for it like for a new append (`Log::wait_appended`).
    pub duplicate: bool,
    /// Rollbacks of the log before this append (`LogState::rollback_bases`): `wait_appended`
    /// fails with DiskFull if a later one took these batches back.
    pub rollbacks: usize,
}

/// Batches returned by a read, plus the log bounds at the time of the read.
#[derive(Clone, Debug, Default)]
pub struct ReadResult {
    pub batches: Vec<Bytes>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

impl ReadResult {
    pub fn total_bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }
}

/// A batch in the journal but not yet in the segment files.
#[derive(Clone)]
struct Queued {
    header: BatchHeader,
    data: Bytes,
}

/// Mutable log state. Never borrowed across an `.await`.
struct LogState<F: IoFile> {
    segments: BTreeMap<i64, Rc<Segment<F>>>,
    log_start: i64,
    /// Next offset to assign.
    log_end: i64,
    /// End of data written (in the journal or the segment files), and synced there: what
    /// acks wait for (`settle` computes them).
    written: i64,
    synced: i64,
    hw: i64,
    /// Ends the journal reported for this log's entries, written and synced. They cover the
    /// journaled batches below them, not the direct ranges.
    journal_written: i64,
    journal_synced: i64,
    /// Direct appends (straight to the segment files) not yet synced there: [base, end), in
    /// offset order. Only the segment files can make them durable.
    direct: VecDeque<(i64, i64)>,
    /// When the oldest written-but-unsynced direct append was written.
    direct_written_at: Option<Instant>,
    /// Journaled batches not yet written to the segment files, oldest first (readable).
    unflushed: VecDeque<Queued>,
    unflushed_bytes: usize,
    oldest_unflushed: Option<Instant>,
    /// How old the oldest unflushed batch may get before the flusher writes (`flush_delay`).
    flush_delay: Duration,
    /// The journal (or `flush`) wants the segment files synced up to here.
    flush_requested: i64,
    /// End of data written to the segment files, and synced there (the recovery point).
    segment_written: i64,
    segment_synced: i64,
    /// When data was first written to the segment files since their last sync.
    unsynced_since: Option<Instant>,
    /// The last segment write failed for want of space: retried at this time.
    disk_full_until: Option<Instant>,
    /// Segment writes that failed for want of space so far.
    disk_full_failures: u64,
    /// Where each rollback (`roll_back_direct_tail`) cut the log, oldest first.
    rollback_bases: Vec<i64>,
    poisoned: Option<String>,
    closing: bool,
    writer_done: bool,
    /// `truncate_to` runs: appends fail with `Error::Truncating`.
    truncating: bool,
    /// A truncation for the flusher to run, and its outcome.
    truncate: Option<TruncateJob>,
    /// Idempotent producers' windows; checked and updated in the same step as offsets.
    producers: ProducerState,
    /// Leader epoch -> start offset of the batches here; `epochs_version` counts its changes,
    /// `epochs_stored` is the version the file holds.
    epochs: LeaderEpochCache,
    epochs_version: u64,
    epochs_stored: u64,
    /// This replica leads the partition in this epoch: `append` stamps it in every batch.
    leader_epoch: Option<i32>,
    /// Synced data was found damaged by a read (file, position, reason): every read and write
    /// fails from then on, as if recovery had refused the log.
    corrupt: Option<(PathBuf, u64, String)>,
    /// Recovery point last written (durably) to the checkpoint file.
    checkpointed: i64,
    /// Some once the log was compacted: offsets below are clean. Its sealed segments may then
    /// have offset gaps (reads and recovery accept increasing offsets there).
    cleaned_to: Option<i64>,
}

struct LogInner<B: IoBackend> {
    backend: B,
    dir: PathBuf,
    config: LogConfig,
    checkpoint: CheckpointFile<B::File>,
    journal: Journal<B>,
    key: JournalKey,
    journal_id: Cell<u64>,
    /// The log owns its journal (`Log::open`) rather than sharing its shard's.
    private_journal: bool,
    state: RefCell<LogState<B::File>>,
    cache: RefCell<BatchCache>,
    /// Fires when written/synced/high watermark move, or the log is poisoned or closed.
    progress: Event,
    /// Wakes the flusher task: enough data, flush requests, close.
    writer_wake: Event,
    /// Fires when unflushed data drains (backpressure).
    queue_space: Event,
    /// Fires when the segment files' synced end moves.
    flushed: Event,
    /// Held while segment files are swapped (compaction) or deleted (retention, DeleteRecords):
    /// neither may act on a segment the other is replacing.
    maintenance: futures::lock::Mutex<()>,
    /// A compaction pass is running (one at a time per log).
    compacting: Cell<bool>,
    /// Bumped when a truncation starts and when it ends: a read that fails while it ran raced
    /// the files shrinking, which is no damage (`read_failed`).
    truncations: Cell<u64>,
}

/// A per-partition append-only log.
///
/// Append contract: `append` validates, checks producer sequences, assigns offsets, hands the
/// batches to the journal and keeps them in memory; data is written even if nobody waits
/// (acks=0). Durability: `Written` = in the journal file, `Synced` = and fdatasync'ed there;
/// with `FlushPolicy::Always` the high watermark is the synced end, with `Interval` the written
/// end. A failed journal write or sync, or a failed segment write (other than for want of
/// space), poisons the log: later appends and waits fail with `Error::Poisoned`.
pub struct Log<B: IoBackend> {
    inner: Rc<LogInner<B>>,
    writer: RefCell<Option<JoinHandle<()>>>,
}

impl<B: IoBackend> Log<B> {
    /// Opens the log in `dir` with a journal of its own (`<dir>/journal`), creating it or
    /// recovering it from disk: segment files first, then the journal's entries past them.
    pub async fn open(backend: B, dir: PathBuf, config: LogConfig) -> Result<Log<B>> {
        let journal_dir = dir.join(PRIVATE_JOURNAL_DIR);
        let contents = read_journal(&backend, &journal_dir).await?;
        let journal = Journal::open(backend.clone(), journal_dir, JournalConfig::for_batches(PRIVATE_JOURNAL_BYTES, config.max_batch_bytes));
        let key = JournalKey { topic_id: 0, partition: 0 };
        let log = Self::open_inner(backend, dir, config, journal.clone(), key, contents.entries, true).await?;
        journal.begin(contents.max_seq).await?;
        Ok(log)
    }

    /// Opens the log in `dir`, writing through `journal` (the shard's) under `key`. `replay`
    /// are this log's entries read from the journal before it restarted (`read_journal`), in
    /// order: those of its current generation past the segment files are appended and written
    /// to the segment files before this returns, so the journal may start over once every log
    /// is open.
    pub async fn open_with_journal(
        backend: B,
        dir: PathBuf,
        config: LogConfig,
        journal: Journal<B>,
        key: JournalKey,
        replay: Vec<JournalEntry>,
    ) -> Result<Log<B>> {
        Self::open_inner(backend, dir, config, journal, key, replay, false).await
    }

    async fn open_inner(
        backend: B,
        dir: PathBuf,
        config: LogConfig,
        journal: Journal<B>,
        key: JournalKey,
        replay: Vec<JournalEntry>,
        private_journal: bool,
    ) -> Result<Log<B>> {
        let mut recovered = recover(&backend, &dir, &config).await?;
        let recorded = recovered.checkpoint.get();
        if let Some(offset) = recorded.truncating_to {
            // A truncation was interrupted: nothing was appended since it started, so whatever
            // the segment files hold above `offset` is what it was cutting.
            tracing::info!(dir = %dir.display(), offset, log_end = recovered.log_end, "finishing an interrupted truncation");
            let truncated = truncate_files(&backend, &dir, &config, recovered.segments, offset, recovered.cleaned_to).await?;
            recovered.checkpoint.end_truncation(truncated.end).await?;
            (recovered.segments, recovered.appender, recovered.log_end) = (truncated.segments, truncated.appender, truncated.end);
            recovered.cleaned_to = truncated.cleaned_to;
            recovered.producers.truncate_to(truncated.end);
        }
        let (epochs, epochs_stored) = open_epochs(&backend, &dir, &recovered).await?;
        let generation = recorded.generation;
        let replay: Vec<JournalRecord> = replay.into_iter().filter(|e| e.generation == generation).map(|e| e.record).collect();
        let log_end = recovered.log_end;
        tracing::debug!(dir = %dir.display(), log_start = recovered.log_start, log_end, replay = replay.len(), "log opened");
        let state = LogState {
            segments: recovered.segments,
            log_start: recovered.log_start,
            log_end,
            written: log_end,
            synced: log_end,
            hw: log_end,
            journal_written: log_end,
            journal_synced: log_end,
            direct: VecDeque::new(),
            direct_written_at: None,
            unflushed: VecDeque::new(),
            unflushed_bytes: 0,
            oldest_unflushed: None,
            flush_delay: flush_delay(),
            flush_requested: log_end,
            segment_written: log_end,
            segment_synced: log_end,
            unsynced_since: None,
            disk_full_until: None,
            disk_full_failures: 0,
            rollback_bases: Vec::new(),
            poisoned: None,
            closing: false,
            writer_done: false,
            truncating: false,
            truncate: None,
            producers: recovered.producers,
            epochs,
            epochs_version: u64::from(!epochs_stored),
            epochs_stored: 0,
            leader_epoch: None,
            corrupt: None,
            checkpointed: recovered.checkpoint.get().recovery_point,
            cleaned_to: recovered.cleaned_to,
        };
        let inner = Rc::new(LogInner {
            backend,
            dir,
            checkpoint: recovered.checkpoint,
            cache: RefCell::new(BatchCache::new(config.cache_bytes_max)),
            config,
            journal,
            key,
            journal_id: Cell::new(0),
            private_journal,
            state: RefCell::new(state),
            progress: Event::new(),
            writer_wake: Event::new(),
            queue_space: Event::new(),
            flushed: Event::new(),
            maintenance: futures::lock::Mutex::new(()),
            compacting: Cell::new(false),
            truncations: Cell::new(0),
        });
        inner.register_with_journal(generation);
        let task = glommio::spawn_local(writer_loop(inner.clone(), recovered.appender)).detach();
        let log = Log { inner, writer: RefCell::new(Some(task)) };
        if !replay.is_empty() {
            log.inner.replay(replay)?;
            log.flush_segments().await?;
        }
        Ok(log)
    }

    /// Validates, then (after waiting for room: backpressure) in one synchronous step: checks
    /// idempotent producers' sequences (a duplicate returns the original's offsets with
    /// `duplicate`; gaps and old epochs are errors), assigns offsets (rewrites base offset, first
    /// 8 bytes), hands the batches to the journal, inserts them into the batch cache.
    pub async fn append(&self, records: Bytes) -> Result<AppendInfo> {
        let (headers, direct) = self.prepare(&records).await?;
        // No await from here on: the sequence check and the offset assignment are one step, so
        // two copies of a batch (a retry on another connection) cannot both be appended.
        self.inner.enqueue(records, headers, direct)
    }

    /// A follower's append: the batches keep the offsets (and partition leader epochs) the
    /// leader gave them and must start at the log end and follow each other
    /// (`Error::OffsetMismatch` otherwise: the fetcher truncates or refetches). Producer
    /// windows are updated, not checked (the leader checked them), so this replica can take
    /// over as leader with them. Durability and acks as for `append`.
    pub async fn append_at(&self, records: Bytes) -> Result<AppendInfo> {
        let (headers, direct) = self.prepare(&records).await?;
        self.inner.enqueue_at(records, headers, direct)
    }

    /// Validates `records` and waits for room (backpressure); says whether they go direct.
    async fn prepare(&self, records: &Bytes) -> Result<(Vec<BatchHeader>, bool)> {
        self.inner.check_writable()?;
        let headers = validate_batches(records)?;
        let max = self.inner.config.max_batch_bytes;
        if let Some(h) = headers.iter().find(|h| h.total_size() > max) {
            return Err(Error::BatchTooLarge { size: h.total_size(), max });
        }
        // Decided before waiting for journal space (a direct append needs room for its Direct
        // entry only); either way is correct, so a change of state meanwhile does not matter.
        let direct = self.inner.goes_direct(records.len());
        self.inner.wait_space(records.len(), direct).await?;
        self.inner.check_writable()?;
        Ok((headers, direct))
    }

    /// This replica leads the partition in `epoch` from now on: the epoch starts at the log end
    /// (so OffsetsForLeaderEpoch answers for it before anything is appended) and `append`
    /// stamps it in every batch, as a Kafka leader does. Without it batches keep the epoch
    /// their producer sent (-1 from clients: no epoch).
    pub fn set_leader_epoch(&self, epoch: i32) {
        let mut st = self.inner.state.borrow_mut();
        st.leader_epoch = Some(epoch);
        let end = st.log_end;
        if st.epochs.assign(epoch, end) {
            st.epochs_version += 1;
        }
    }

    /// The leader epochs of this log's batches and where each starts.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.inner.state.borrow().epochs.entries().to_vec()
    }

    /// OffsetsForLeaderEpoch: the largest epoch at or below `epoch` and its end offset (the next
    /// epoch's start, or the log end); (-1, -1) if the log has no epoch that old.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let st = self.inner.state.borrow();
        st.epochs.end_offset_for(epoch, st.log_end)
    }

    /// Resolves once everything below `end_offset` has reached `level` (group commit: concurrent
    /// waiters share one journal write + sync). Err(Poisoned) if the log was poisoned before
    /// reaching it (data that reached `level` before the failure still resolves Ok);
    /// Err(OffsetOutOfRange) if `end_offset` > log end; Err(Closed) after close.
    pub async fn wait_durable(&self, end_offset: i64, level: Durability) -> Result<()> {
        self.inner.wait_durable(end_offset, level).await
    }

    /// Resolves once the batches of `info` (an append's answer, or a duplicate's original) have
    /// reached `level`.
    pub async fn wait_appended(&self, info: &AppendInfo, level: Durability) -> Result<()> {
        let rolled_back = || {
            let st = self.inner.state.borrow();
            st.rollback_bases.get(info.rollbacks..).is_some_and(|later| later.iter().any(|&base| info.last_offset >= base))
        };
        if rolled_back() {
            return Err(Error::DiskFull);
        }
        let outcome = self.inner.wait_durable(info.last_offset + 1, level).await;
        // Offsets a rollback freed may be taken by new appends: those reaching `level` say
        // nothing about these batches.
        if rolled_back() {
            return Err(Error::DiskFull);
        }
        outcome
    }

    /// Whole batches starting at the one containing `offset`, only below the high watermark. The
    /// first batch is whole even if larger than max_bytes; stops before exceeding max_bytes
    /// otherwise. Offsets in [high watermark, log end] -> empty (acks=1 answers before the high
    /// watermark moves, so a consumer may ask for an acknowledged offset not yet visible);
    /// outside [log_start, log end] -> OffsetOutOfRange.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        self.inner.read(offset, max_bytes).await
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.state.borrow().log_start
    }

    /// Next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.inner.state.borrow().log_end
    }

    /// End of data that meets the log's flush policy (Always: synced in the journal; Interval:
    /// written there). Consumers never see data above it.
    pub fn high_watermark(&self) -> i64 {
        self.inner.state.borrow().hw
    }

    /// End of what the segment files hold, synced (the recovery point).
    pub fn segment_synced_offset(&self) -> i64 {
        self.inner.state.borrow().segment_synced
    }

    /// Fires (at least) whenever the high watermark moves; for Fetch long polling.
    pub fn listen(&self) -> EventListener {
        self.inner.progress.listen()
    }

    /// A consumer waits for data past `offset`: if some is written but not yet visible (the
    /// high watermark waits for its sync), ask the journal to sync it now rather than at its
    /// next interval.
    pub fn want_visible(&self, offset: i64) {
        let st = self.inner.state.borrow();
        if st.hw <= offset && st.written > offset {
            let (direct, written) = (st.direct_unsynced_below(st.written), st.written);
            drop(st);
            self.inner.journal.want_sync();
            if direct {
                self.inner.request_flush(written);
            }
        }
    }

    /// ListOffsets by time: first batch whose max_timestamp >= ts -> (its base offset, clamped to
    /// the log start offset, and its max_timestamp). Only batches below the high watermark count.
    /// `ts` = -2 (earliest) gives (log_start, -1); `ts` = -1 (latest) gives (high watermark, -1).
    pub async fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<(i64, i64)>> {
        self.inner.offset_for_timestamp(ts_ms).await
    }

    /// Moves the log start offset to `before_offset` (-1 = high watermark), persists it, and
    /// deletes segments entirely below it. Returns the new log start.
    pub async fn delete_records(&self, before_offset: i64) -> Result<i64> {
        self.inner.delete_records(before_offset).await
    }

    /// Deletes whole non-active segments past `retention_ms` / `retention_bytes`. Returns the
    /// number of segments deleted.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        self.inner.apply_retention(now_ms).await
    }

    /// One compaction pass (cleanup.policy=compact) over the sealed segments below the recovery
    /// point and the high watermark, if their dirty ratio reaches the configured one: keeps the
    /// latest record of every key, drops tombstones older than `delete_retention_ms`, keeps
    /// offsets. Each cleaned segment is written aside, synced, then swapped in by a rename.
    /// Returns what was done (nothing if not dirty enough, or already running).
    pub async fn compact(&self, config: &CompactionConfig, now_ms: i64) -> Result<CompactionOutcome> {
        if self.inner.compacting.replace(true) {
            return Ok(CompactionOutcome { cleaned_to: self.inner.clean_offset(), ..Default::default() });
        }
        // Cleared however the pass ends, also if its future is dropped (shutdown).
        struct Running<'a>(&'a Cell<bool>);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _running = Running(&self.inner.compacting);
        self.inner.compact(config, now_ms).await
    }

    /// Share of the cleanable sealed bytes not compacted yet (what `min_cleanable_dirty_ratio`
    /// is compared with); 0 when nothing is cleanable.
    pub fn dirty_ratio(&self, config: &CompactionConfig, now_ms: i64) -> f64 {
        let (segments, cleaned_to) = self.inner.cleanable(config, now_ms);
        dirty_ratio(&segments, cleaned_to)
    }

    /// Offsets below this were compacted (None: never compacted).
    pub fn cleaned_to(&self) -> Option<i64> {
        self.inner.state.borrow().cleaned_to
    }

    /// Makes everything appended so far durable in the journal and in the segment files.
    pub async fn flush(&self) -> Result<()> {
        let end = self.log_end_offset();
        self.wait_durable(end, Durability::Synced).await?;
        self.flush_segments().await
    }

    /// Writes and syncs every unflushed batch to the segment files.
    async fn flush_segments(&self) -> Result<()> {
        self.inner.wait_segments(self.log_end_offset()).await
    }

    /// Flushes, stops the flusher and closes the files.
    pub async fn close(&self) -> Result<()> {
        let flushed = if self.inner.state.borrow().writer_done { Ok(()) } else { self.flush().await };
        self.inner.state.borrow_mut().closing = true;
        self.inner.writer_wake.notify(usize::MAX);
        let task = self.writer.borrow_mut().take();
        if let Some(task) = task {
            task.await;
        }
        self.inner.journal.unregister(self.inner.journal_id.get());
        if self.inner.private_journal {
            self.inner.journal.close().await;
        }
        self.inner.progress.notify(usize::MAX);
        self.inner.queue_space.notify(usize::MAX);
        flushed
    }

    /// Closes the log and deletes its directory (DeleteTopics).
    pub async fn remove(self) -> Result<()> {
        let _ = self.close().await;
        self.inner.state.borrow_mut().segments.clear();
        self.inner.cache.borrow_mut().clear();
        match self.inner.backend.remove_dir_all(&self.inner.dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Number of segments (including the active one).
    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    /// Base offsets of all segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.inner.state.borrow().segments.keys().copied().collect()
    }

    /// Bytes in the log's segments (their logical sizes; reserved space not counted).
    pub fn size_bytes(&self) -> u64 {
        self.inner.state.borrow().segments.values().map(|s| s.size()).sum()
    }

    /// Bytes in memory not yet written to the segment files.
    pub fn write_queue_bytes(&self) -> usize {
        self.inner.state.borrow().unflushed_bytes
    }

    /// Re-bounds the batch cache (the broker shares one budget among a shard's logs).
    pub fn set_cache_bytes_max(&self, bytes: usize) {
        self.inner.cache.borrow_mut().set_max_bytes(bytes);
    }

    /// Bytes held by the batch cache.
    pub fn cache_bytes(&self) -> usize {
        self.inner.cache.borrow().bytes()
    }

    /// The poison reason, if a write or fsync failed.
    pub fn poisoned(&self) -> Option<String> {
        self.inner.state.borrow().poisoned.clone()
    }

    /// The journal this log writes through.
    pub fn journal(&self) -> &Journal<B> {
        &self.inner.journal
    }
}

impl<B: IoBackend> Drop for Log<B> {
    /// Dropping without `close` lets the flusher finish writing what it holds to the segment
    /// files in the background, then exit.
    fn drop(&mut self) {
        if let Some(task) = self.writer.get_mut().take() {
            self.inner.state.borrow_mut().closing = true;
            self.inner.writer_wake.notify(usize::MAX);
            drop(task);
        }
    }
}

impl<B: IoBackend> JournalClient for LogInner<B> {
    fn journal_progress(&self, end_offset: i64, synced: bool) {
        {
            let mut st = self.state.borrow_mut();
            st.journal_written = st.journal_written.max(end_offset);
            if synced {
                st.journal_synced = st.journal_synced.max(end_offset);
            }
            st.settle(&self.config.flush);
        }
        self.progress.notify(usize::MAX);
    }

    fn journal_failed(&self, reason: &str) {
        self.poison(&Error::Poisoned(format!("journal: {reason}")));
    }

    fn request_flush(&self, end_offset: i64) {
        let mut st = self.state.borrow_mut();
        if end_offset > st.flush_requested {
            st.flush_requested = end_offset;
            drop(st);
            self.writer_wake.notify(1);
        }
    }

    fn segment_synced(&self) -> i64 {
        let st = self.state.borrow();
        // A poisoned or closed log will never flush: its entries must not hold files forever.
        if st.poisoned.is_some() || st.writer_done {
            return i64::MAX;
        }
        st.segment_synced
    }

    fn flush_blocked(&self) -> bool {
        self.state.borrow().disk_full_until.is_some()
    }
}

/// First offset of a journal record (None: a batch entry that does not parse).
fn record_base(record: &JournalRecord) -> Option<i64> {
    match record {
        JournalRecord::Batch(b) => BatchHeader::parse(b).ok().map(|h| h.base_offset),
        JournalRecord::Direct { base_offset, .. } => Some(*base_offset),
    }
}

/// The leader epoch cache at open: the file (entries below the recovery point are all there),
/// cut to the log's bounds, plus the epochs of the batches above the recovery point (all of
/// them if the file was damaged). Written back at once if that changed it, so entries of a lost
/// or truncated tail cannot outlive a later crash.
async fn open_epochs<B: IoBackend>(backend: &B, dir: &Path, recovered: &crate::recovery::Recovered<B::File>) -> Result<(LeaderEpochCache, bool)> {
    let (log_start, log_end) = (recovered.log_start, recovered.log_end);
    let (mut epochs, scan_from) = match leader_epoch::load(backend, dir).await? {
        leader_epoch::Loaded::Found(cache) => (cache, recovered.checkpoint.get().recovery_point),
        leader_epoch::Loaded::Missing => (LeaderEpochCache::default(), recovered.checkpoint.get().recovery_point),
        leader_epoch::Loaded::Damaged => (LeaderEpochCache::default(), log_start),
    };
    let before = epochs.clone();
    epochs.truncate_from_end(log_end);
    epochs.truncate_from_start(log_start);
    let scan_from = scan_from.clamp(log_start, log_end);
    for segment in recovered.segments.values().filter(|s| s.next_offset() > scan_from) {
        let position = {
            let meta = segment.meta.borrow();
            let relative = (scan_from.max(segment.base_offset) - segment.base_offset) as u32;
            u64::from(meta.index.lookup_offset(relative))
        };
        let mut scanner = BatchScanner::new(&*segment.file, position, segment.size(), RECOVERY_READ_CHUNK_BYTES, false);
        while let ScanItem::Batch { header, .. } = scanner.next().await? {
            epochs.assign(header.partition_leader_epoch, header.base_offset);
        }
    }
    // On a full disk the file stays as it was until the log's next sync writes it; its extra
    // entries start at or above this log end, so the next open cuts them again.
    let stored = match epochs != before {
        false => true,
        true => match leader_epoch::store(backend, dir, &epochs).await {
            Ok(()) => true,
            Err(e) if e.is_disk_full() => false,
            Err(e) => return Err(e),
        },
    };
    Ok((epochs, stored))
}

impl<F: IoFile> LogState<F> {
    /// Recomputes what acks and the high watermark follow. Below the first direct range the
    /// segment files have not written (synced), every batch was journaled or is in the segment
    /// files, so the journal's end counts up to that range's base; the segment files' end
    /// counts whole. Returns whether acks or the high watermark may move (waiters to wake).
    fn settle(&mut self, flush: &FlushPolicy) -> bool {
        let before = (self.written, self.synced, self.hw);
        while self.direct.front().is_some_and(|&(_, end)| end <= self.segment_synced) {
            self.direct.pop_front();
        }
        if self.direct.front().is_none_or(|&(base, _)| base >= self.segment_written) {
            self.direct_written_at = None;
        }
        let covered = |journal: i64, segments: i64| {
            let gap = self.direct.iter().find(|&&(_, end)| end > segments).map(|&(base, _)| base);
            segments.max(gap.map_or(journal, |base| journal.min(base)))
        };
        self.written = self.written.max(covered(self.journal_written, self.segment_written));
        self.synced = self.synced.max(covered(self.journal_synced, self.segment_synced));
        self.hw = match flush {
            FlushPolicy::Always => self.synced,
            FlushPolicy::Interval { .. } => self.written,
        };
        (self.written, self.synced, self.hw) != before
    }

    /// Some direct append below `end` is not synced in the segment files yet.
    fn direct_unsynced_below(&self, end: i64) -> bool {
        self.direct.front().is_some_and(|&(base, _)| base < end)
    }

    /// A direct append waits for its segment write.
    fn direct_unwritten(&self) -> bool {
        self.direct.back().is_some_and(|&(_, end)| end > self.segment_written)
    }

    /// A direct append below `end` waits for its segment write.
    fn direct_unwritten_below(&self, end: i64) -> bool {
        self.direct.iter().any(|&(base, range_end)| base < end && range_end > self.segment_written)
    }

    /// A waiter found the disk full: the first time it makes the flusher's retry due now; if a
    /// retry has failed since (`retried_after` holds the failure count it saw), DiskFull.
    fn retry_full_disk_once(&mut self, retried_after: &mut Option<u64>) -> Result<()> {
        if retried_after.is_some_and(|n| self.disk_full_failures > n) {
            return Err(Error::DiskFull);
        }
        *retried_after = Some(self.disk_full_failures);
        self.disk_full_until = Some(Instant::now()); // due now
        Ok(())
    }
}

impl<B: IoBackend> LogInner<B> {
    /// Whether an append of `bytes` goes straight to the segment files (see
    /// `LOG_DIRECT_APPEND_BYTES`): large appends, and appends to a log that has a large segment
    /// write due or a direct append waiting (its next write comes at once anyway).
    fn goes_direct(&self, bytes: usize) -> bool {
        let st = self.state.borrow();
        // On a full disk appends go to the journal, which holds them or refuses them at once.
        let big = bytes >= LOG_DIRECT_APPEND_BYTES || st.unflushed_bytes >= LOG_FLUSH_BYTES;
        st.disk_full_until.is_none() && (big || st.direct_unwritten())
    }

    fn check_writable(&self) -> Result<()> {
        let st = self.state.borrow();
        if let Some(p) = &st.poisoned {
            return Err(Error::Poisoned(p.clone()));
        }
        if st.closing || st.writer_done {
            return Err(Error::Closed);
        }
        if st.truncating {
            return Err(Error::Truncating);
        }
        Ok(())
    }

    /// Registers (again, after a truncation) with the journal, whose entries for this log then
    /// carry `generation`.
    fn register_with_journal(self: &Rc<Self>, generation: u32) {
        let weak: Weak<LogInner<B>> = Rc::downgrade(self);
        let client: Weak<dyn JournalClient> = weak;
        let old = self.journal_id.replace(self.journal.register(client, generation));
        if old != 0 {
            self.journal.unregister(old);
        }
    }

    /// Backpressure: the log's unflushed bytes (memory) and the journal's space.
    async fn wait_space(&self, bytes: usize, direct: bool) -> Result<()> {
        loop {
            let listener = self.queue_space.listen();
            self.check_writable()?;
            let queued = self.state.borrow().unflushed_bytes;
            if queued == 0 || queued + bytes <= LOG_UNFLUSHED_BYTES_MAX {
                break;
            }
            self.writer_wake.notify(1);
            listener.await;
        }
        self.journal.wait_space(if direct { DIRECT_PAYLOAD_BYTES } else { bytes }).await
    }

    /// Checks producer sequences, assigns offsets, journals and keeps the batches; synchronous,
    /// so offset order = journal order and the check cannot race another append.
    fn enqueue(&self, records: Bytes, mut headers: Vec<BatchHeader>, direct: bool) -> Result<AppendInfo> {
        let mut st = self.state.borrow_mut();
        match st.producers.check_all(&headers) {
            SeqVerdict::Append => {}
            SeqVerdict::Duplicate(b) => {
                return Ok(AppendInfo {
                    base_offset: b.base_offset,
                    last_offset: b.last_offset,
                    log_end_offset: st.log_end,
                    max_timestamp: -1,
                    log_start_offset: st.log_start,
                    duplicate: true,
                    rollbacks: st.rollback_bases.len(),
                })
            }
            SeqVerdict::OutOfOrder { expected, got } => {
                return Err(Error::OutOfOrderSequence { producer_id: headers[0].producer_id, expected, got })
            }
            SeqVerdict::StaleEpoch { current, got } => {
                return Err(Error::InvalidProducerEpoch { producer_id: headers[0].producer_id, current, got })
            }
        }
        let mut data = records.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let base_offset = st.log_end;
        let mut next = base_offset;
        let mut pos = 0;
        for h in headers.iter_mut() {
            set_base_offset(&mut data[pos..], next);
            h.base_offset = next;
            if let Some(epoch) = st.leader_epoch {
                set_partition_leader_epoch(&mut data[pos..], epoch);
                h.partition_leader_epoch = epoch;
            }
            next = h.next_offset();
            pos += h.total_size();
        }
        debug_assert_eq!(pos, data.len());
        self.journal_and_keep(&mut st, data.freeze(), headers, direct)
    }

    /// `enqueue` for batches whose offsets are set (a follower's): they must start at the log
    /// end and be contiguous.
    fn enqueue_at(&self, records: Bytes, headers: Vec<BatchHeader>, direct: bool) -> Result<AppendInfo> {
        let mut st = self.state.borrow_mut();
        let mut expected = st.log_end;
        for h in &headers {
            if h.base_offset != expected {
                return Err(Error::OffsetMismatch { expected, got: h.base_offset });
            }
            expected = h.next_offset();
        }
        self.journal_and_keep(&mut st, records, headers, direct)
    }

    /// Hands batches at the log end (offsets set) to the journal, or as a direct append to the
    /// flusher, and keeps them in memory.
    fn journal_and_keep(&self, st: &mut LogState<B::File>, data: Bytes, headers: Vec<BatchHeader>, direct: bool) -> Result<AppendInfo> {
        let base_offset = headers[0].base_offset;
        let next = headers.last().expect("validated: at least one batch").next_offset();
        debug_assert_eq!(base_offset, st.log_end);
        if direct {
            self.journal.submit_direct(self.journal_id.get(), self.key, base_offset, next)?;
            st.direct.push_back((base_offset, next));
            crate::stats::record_direct_append(data.len() as u64);
        } else {
            self.journal.submit(self.journal_id.get(), self.key, data.clone(), next)?;
        }
        let max_timestamp = self.keep(st, data, headers, now_ms());
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_end_offset: next,
            max_timestamp,
            log_start_offset: st.log_start,
            duplicate: false,
            rollbacks: st.rollback_bases.len(),
        })
    }

    /// Keeps appended batches (offsets assigned) in memory for the segment flusher and the
    /// cache; returns their max timestamp.
    fn keep(&self, st: &mut LogState<B::File>, mut data: Bytes, headers: Vec<BatchHeader>, now: i64) -> i64 {
        let mut cache = self.cache.borrow_mut();
        let mut max_timestamp = -1;
        for h in headers {
            let batch = data.split_to(h.total_size());
            cache.insert(h.base_offset, h.last_offset(), batch.clone());
            max_timestamp = max_timestamp.max(h.max_timestamp);
            st.producers.on_batch(&h, now);
            if st.epochs.assign(h.partition_leader_epoch, h.base_offset) {
                st.epochs_version += 1;
            }
            st.unflushed_bytes += batch.len();
            st.unflushed.push_back(Queued { header: h, data: batch });
            st.log_end = h.next_offset();
        }
        // Wake the flusher when its timer must start (the first unflushed batch), when enough
        // has gathered for a large write, and for a direct append (written at once).
        if st.oldest_unflushed.is_none() || st.unflushed_bytes >= LOG_FLUSH_BYTES || st.direct_unwritten() {
            self.writer_wake.notify(1);
        }
        if st.oldest_unflushed.is_none() {
            st.oldest_unflushed = Some(Instant::now());
        }
        max_timestamp
    }

    /// Entries read back from the journal at start: batches past the segment files are appended
    /// at their own offsets (already durable: they count as synced), those below are skipped.
    /// A Direct range the segment files lack (its write was lost, so never acknowledged through
    /// the journal) ends the replay: later entries would follow a gap and were not acknowledged
    /// either (acks wait for the direct range's segment write).
    fn replay(&self, records: Vec<JournalRecord>) -> Result<()> {
        let mut st = self.state.borrow_mut();
        let (mut appended, mut skipped) = (0usize, 0usize);
        let mut records = records.into_iter().peekable();
        while let Some(record) = records.next() {
            let records = match record {
                JournalRecord::Batch(records) => records,
                JournalRecord::Direct { base_offset, end_offset } => {
                    if end_offset <= st.log_end {
                        skipped += 1;
                        continue;
                    }
                    if base_offset > st.log_end {
                        return Err(self.replay_gap(base_offset, st.log_end));
                    }
                    if records.peek().is_some_and(|next| record_base(next) == Some(base_offset)) {
                        skipped += 1; // taken back on a full disk (`roll_back_direct_tail`)
                        continue;
                    }
                    tracing::warn!(dir = %self.dir.display(), base_offset, end_offset, log_end = st.log_end, "a direct append's segment write was lost (never acknowledged): the log ends before it");
                    break;
                }
            };
            let headers = validate_batches(&records)?;
            let (first, last) = (headers[0], *headers.last().expect("validated: at least one batch"));
            if last.next_offset() <= st.log_end {
                skipped += 1;
                continue;
            }
            if first.base_offset != st.log_end {
                return Err(self.replay_gap(first.base_offset, st.log_end));
            }
            self.keep(&mut st, records, headers, now_ms());
            appended += 1;
        }
        let dropped = records.count();
        let end = st.log_end;
        (st.written, st.synced, st.hw, st.journal_written, st.journal_synced) = (end, end, end, end, end);
        if appended > 0 || dropped > 0 {
            tracing::info!(dir = %self.dir.display(), appended, skipped, dropped, log_end = end, "replayed journal entries");
        }
        Ok(())
    }

    fn replay_gap(&self, entry_offset: i64, log_end: i64) -> Error {
        Error::CorruptLog {
            path: self.dir.join(PRIVATE_JOURNAL_DIR),
            position: 0,
            reason: format!("journal entry at offset {entry_offset} does not follow the log end {log_end}: acknowledged data is missing"),
        }
    }

    async fn wait_durable(&self, end_offset: i64, level: Durability) -> Result<()> {
        let mut retried_after: Option<u64> = None;
        loop {
            let listener = self.progress.listen();
            let retry_now = {
                let mut st = self.state.borrow_mut();
                if end_offset > st.log_end {
                    return Err(Error::OffsetOutOfRange { requested: end_offset, log_start: st.log_start, high_watermark: st.hw });
                }
                let reached = match level {
                    Durability::Written => st.written,
                    Durability::Synced => st.synced,
                };
                if reached >= end_offset {
                    return Ok(()); // durable before any failure: still a valid ack
                }
                // A direct append below `end_offset` the segment files could not take for want
                // of space: the journal does not hold it, so nothing acknowledges it until the
                // disk has space. One retry at once (as `wait_segments`), then DiskFull.
                if st.disk_full_until.is_some() && st.direct_unwritten_below(end_offset) {
                    st.retry_full_disk_once(&mut retried_after)?;
                    true
                } else {
                    if let Some(p) = &st.poisoned {
                        return Err(Error::Poisoned(p.clone()));
                    }
                    if st.writer_done {
                        return Err(Error::Closed);
                    }
                    false
                }
            };
            if retry_now {
                self.writer_wake.notify(1);
            } else if level == Durability::Synced {
                self.journal.want_sync();
                if self.state.borrow().direct_unsynced_below(end_offset) {
                    self.request_flush(end_offset);
                }
            }
            listener.await;
        }
    }

    /// Waits until the segment files hold `end_offset` synced, asking the flusher for it. On a
    /// full disk it asks for one retry at once and fails with `DiskFull` if that fails too.
    async fn wait_segments(&self, end_offset: i64) -> Result<()> {
        let mut retried_after: Option<u64> = None;
        loop {
            let listener = self.flushed.listen();
            {
                let mut st = self.state.borrow_mut();
                if st.segment_synced >= end_offset {
                    return Ok(());
                }
                if let Some(p) = &st.poisoned {
                    return Err(Error::Poisoned(p.clone()));
                }
                if st.writer_done {
                    return Err(Error::Closed);
                }
                if st.disk_full_until.is_some() {
                    st.retry_full_disk_once(&mut retried_after)?;
                }
                st.flush_requested = st.flush_requested.max(end_offset);
            }
            self.writer_wake.notify(1);
            listener.await;
        }
    }

    /// Batches of `unflushed` from the one containing `offset`, below `hw`, within `max_bytes`
    /// (the first whole); None if `offset` is not in memory.
    /// With `at_or_after` (a compacted log, `offset` in a gap) the first batch may start later.
    fn read_unflushed(&self, offset: i64, hw: i64, max_bytes: usize, at_or_after: bool) -> Option<Vec<Bytes>> {
        let st = self.state.borrow();
        let q = &st.unflushed;
        let i = q.partition_point(|b| b.header.last_offset() < offset);
        let first = q.get(i)?;
        if (first.header.base_offset > offset && !at_or_after) || first.header.base_offset >= hw {
            return None;
        }
        let mut out = Vec::new();
        let mut total = 0usize;
        for b in q.range(i..) {
            if b.header.base_offset >= hw || (!out.is_empty() && total + b.data.len() > max_bytes) {
                break;
            }
            total += b.data.len();
            out.push(b.data.clone());
            if total >= max_bytes {
                break;
            }
        }
        Some(out)
    }

    fn range_error(&self, offset: i64) -> Error {
        let st = self.state.borrow();
        Error::OffsetOutOfRange { requested: offset, log_start: st.log_start, high_watermark: st.hw }
    }

    fn corrupt_error(&self) -> Option<Error> {
        let st = self.state.borrow();
        let (path, position, reason) = st.corrupt.clone()?;
        Some(Error::CorruptLog { path, position, reason })
    }

    async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        if let Some(e) = self.corrupt_error() {
            return Err(e);
        }
        let (log_start, hw, log_end, segment, gaps) = {
            let st = self.state.borrow();
            let segment = st.segments.range(..=offset).next_back().map(|(_, s)| s.clone());
            (st.log_start, st.hw, st.log_end, segment, st.cleaned_to.is_some())
        };
        if offset < log_start || offset > log_end {
            return Err(self.range_error(offset));
        }
        let mut result = ReadResult { batches: Vec::new(), high_watermark: hw, log_start_offset: log_start };
        if offset >= hw {
            return Ok(result);
        }
        let cached = self.cache.borrow().read(offset, hw, max_bytes);
        crate::stats::record_cache(cached.is_some());
        if let Some(batches) = cached {
            result.batches = batches;
            return Ok(result);
        }
        // Not in the cache: still in memory if the segment files do not have it yet.
        if let Some(batches) = self.read_unflushed(offset, hw, max_bytes, false) {
            result.batches = batches;
            return Ok(result);
        }
        let Some(mut segment) = segment else { return Ok(result) };
        let truncations = self.truncations.get();
        loop {
            let (start, limit, sealed_end) = {
                let meta = segment.meta.borrow();
                let relative = (offset.max(segment.base_offset) - segment.base_offset) as u32;
                let (relative, position) = meta.index.lookup_entry(relative);
                let start = ReadStart { position: u64::from(position), base_offset: segment.base_offset + i64::from(relative), gaps };
                (start, meta.readable_size, meta.sealed.then_some(meta.next_offset))
            };
            let room = max_bytes.saturating_sub(result.total_bytes()).max(1);
            let batches = read_batches(&*segment.file, start, limit, offset, hw, room)
                .await
                .map_err(|e| self.read_failed(e, segment.base_offset, truncations, offset))?;
            let no_records = batches.iter().all(|b| BatchHeader::parse(b).is_ok_and(|h| h.records_count == 0));
            result.batches.extend(batches);
            let Some(end) = sealed_end else { break };
            // A sealed segment holds every offset up to its end: nothing found below it is
            // damage (a consumer would otherwise be stuck below the high watermark)...
            if !gaps {
                if result.batches.is_empty() && offset < end {
                    let reason = format!("offset {offset} not found in a sealed segment ending at {end}");
                    let e = Error::CorruptLog { path: Default::default(), position: limit, reason };
                    return Err(self.on_corruption(e, segment.base_offset));
                }
                break;
            }
            // ...unless compaction removed the rest of it, or left only emptied batches: the
            // next records are further on. (An answer of empty batches alone makes librdkafka
            // grow its fetch size, and after a few fail with MSG_SIZE_TOO_LARGE.)
            let next = self.state.borrow().segments.range(segment.base_offset + 1..).next().map(|(_, s)| s.clone());
            match next {
                Some(next) if no_records && next.base_offset < hw && result.total_bytes() < max_bytes => segment = next,
                _ => break,
            }
        }
        if result.batches.is_empty() && gaps {
            // Every sealed segment past `offset` was emptied: the next records are in memory.
            if let Some(batches) = self.read_unflushed(offset, hw, max_bytes, true) {
                result.batches = batches;
                return Ok(result);
            }
        }
        debug_assert!(result.batches.iter().all(|b| b.len() >= BATCH_HEADER_BYTES));
        // The segment file ended; what follows may still be in memory only: carry on there
        // (up to max_bytes) rather than answer short.
        let read = result.total_bytes();
        if let Some(last) = result.batches.last().and_then(|b| BatchHeader::parse(b).ok()) {
            if read < max_bytes && last.next_offset() < hw {
                if let Some(more) = self.read_unflushed(last.next_offset(), hw, max_bytes - read, gaps) {
                    let fits: Vec<Bytes> = more
                        .into_iter()
                        .scan(read, |total, b| {
                            *total += b.len();
                            (*total <= max_bytes).then_some(b)
                        })
                        .collect();
                    result.batches.extend(fits);
                }
            }
        }
        Ok(result)
    }

    async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        if let Some(e) = self.corrupt_error() {
            return Err(e);
        }
        let (log_start, hw, segments) = {
            let st = self.state.borrow();
            (st.log_start, st.hw, st.segments.values().cloned().collect::<Vec<_>>())
        };
        match ts {
            -2 => return Ok(Some((log_start, -1))),
            -1 => return Ok(Some((hw, -1))),
            _ => {}
        }
        for segment in segments {
            if segment.max_timestamp() < ts || segment.next_offset() <= log_start {
                continue;
            }
            if segment.base_offset >= hw {
                break;
            }
            if let Some(found) = self.find_timestamp_in(&segment, ts, hw).await? {
                return Ok(Some((found.0.max(log_start), found.1)));
            }
        }
        // Batches not in the segment files yet.
        let st = self.state.borrow();
        let found = st.unflushed.iter().take_while(|b| b.header.base_offset < hw).find(|b| b.header.max_timestamp >= ts);
        Ok(found.map(|b| (b.header.base_offset.max(log_start), b.header.max_timestamp)))
    }

    async fn find_timestamp_in(&self, segment: &Segment<B::File>, ts: i64, hw: i64) -> Result<Option<(i64, i64)>> {
        let (position, limit) = {
            let meta = segment.meta.borrow();
            let relative = meta.index.lookup_time(ts);
            (u64::from(meta.index.lookup_offset(relative)), meta.readable_size)
        };
        let mut scanner = BatchScanner::new(&*segment.file, position, limit, READ_CHUNK_BYTES, false);
        loop {
            match scanner.next().await? {
                ScanItem::End => return Ok(None),
                ScanItem::Invalid { position, reason } => {
                    let e = Error::CorruptLog { path: Default::default(), position, reason };
                    return Err(self.on_corruption(e, segment.base_offset));
                }
                ScanItem::Batch { header, .. } => {
                    if header.base_offset >= hw {
                        return Ok(None);
                    }
                    if header.max_timestamp >= ts {
                        return Ok(Some((header.base_offset, header.max_timestamp)));
                    }
                }
            }
        }
    }

    async fn delete_records(&self, before_offset: i64) -> Result<i64> {
        let (log_start, hw) = {
            let st = self.state.borrow();
            if st.truncating {
                return Err(Error::Truncating); // the high watermark is about to drop
            }
            (st.log_start, st.hw)
        };
        let target = if before_offset == -1 { hw } else { before_offset };
        if target < 0 || target > hw {
            return Err(self.range_error(before_offset));
        }
        if target > log_start {
            self.checkpoint.set_log_start(target).await?;
            let mut st = self.state.borrow_mut();
            st.log_start = st.log_start.max(target);
            let start = st.log_start;
            if st.epochs.truncate_from_start(start) {
                st.epochs_version += 1;
            }
        }
        self.cache.borrow_mut().evict_below(target);
        self.delete_segments(|_, _| false).await?;
        Ok(self.state.borrow().log_start)
    }

    async fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let retention_ms = self.config.retention_ms.map(|ms| ms.min(i64::MAX as u64) as i64);
        let mut excess = match self.config.retention_bytes {
            Some(limit) => {
                let total: u64 = self.state.borrow().segments.values().map(|s| s.size()).sum();
                total.saturating_sub(limit)
            }
            None => 0,
        };
        let expired = |segment: &Segment<B::File>, _: i64| {
            let too_old = retention_ms.is_some_and(|ms| segment.max_timestamp() < now_ms.saturating_sub(ms));
            let size = segment.size();
            let too_big = excess > 0 && size <= excess;
            if too_big {
                excess -= size;
            }
            too_old || too_big
        };
        let deleted = self.delete_segments(expired).await?;
        let log_start = self.state.borrow().log_start;
        if deleted > 0 {
            self.checkpoint.set_log_start(log_start).await?;
            self.cache.borrow_mut().evict_below(log_start);
            let mut st = self.state.borrow_mut();
            if st.epochs.truncate_from_start(log_start) {
                st.epochs_version += 1;
            }
        }
        self.state.borrow_mut().producers.expire(now_ms, log_start);
        Ok(deleted)
    }

    /// Deletes the oldest non-active segments, fully below the high watermark, that lie below the
    /// log start or satisfy `expired`; stops at the first one that does not. Advances log start.
    async fn delete_segments(&self, mut expired: impl FnMut(&Segment<B::File>, i64) -> bool) -> Result<usize> {
        let _maintenance = self.maintenance.lock().await;
        let victims = {
            let mut st = self.state.borrow_mut();
            let mut victims = Vec::new();
            while st.segments.len() > 1 {
                let (_, first) = st.segments.first_key_value().expect("non-empty");
                let end = first.next_offset();
                let below_start = end <= st.log_start;
                if end > st.hw || !(below_start || expired(first, end)) {
                    break;
                }
                let (_, segment) = st.segments.pop_first().expect("non-empty");
                let new_first = *st.segments.keys().next().expect("active segment remains");
                st.log_start = st.log_start.max(new_first);
                victims.push(segment.base_offset);
            }
            victims
        };
        for &base in &victims {
            tracing::info!(dir = %self.dir.display(), base, "deleting segment");
            remove_segment_files(&self.backend, &self.dir, base).await?;
        }
        Ok(victims.len())
    }

    /// A segment read failed. If a truncation ran meanwhile (`truncations` is the count the
    /// read started with) the file shrank under it: the offset is gone, not damaged.
    fn read_failed(&self, e: Error, segment_base: i64, truncations: u64, offset: i64) -> Error {
        if self.truncations.get() != truncations || self.state.borrow().truncating {
            return self.range_error(offset);
        }
        self.on_corruption(e, segment_base)
    }

    /// Synced data failed its checks when read back: name the file and take the log offline
    /// (every read and append fails from now on, as if recovery had refused it), so nothing is
    /// served or appended around damage nobody has looked at. Nothing is deleted.
    fn on_corruption(&self, e: Error, segment_base: i64) -> Error {
        let Error::CorruptLog { position, reason, .. } = e else { return e };
        let path = crate::segment::segment_path(&self.dir, segment_base, LOG_SUFFIX);
        let first = self.state.borrow().corrupt.is_none();
        if first {
            self.state.borrow_mut().corrupt = Some((path.clone(), position, reason.clone()));
        }
        let e = Error::CorruptLog { path, position, reason };
        if first {
            tracing::error!(error = %e, "corrupt data read back from disk; partition offline");
            self.poison(&e);
        }
        e
    }

    fn poison(&self, error: &Error) {
        let mut st = self.state.borrow_mut();
        if st.poisoned.is_some() {
            return;
        }
        let reason = error.to_string();
        tracing::error!(dir = %self.dir.display(), error = %reason, "log write failed; log poisoned");
        st.poisoned = Some(reason);
        drop(st);
        self.progress.notify(usize::MAX);
        self.queue_space.notify(usize::MAX);
        self.flushed.notify(usize::MAX);
        self.writer_wake.notify(usize::MAX);
    }

    fn needs_roll(&self, appender: &SegmentAppender<B::File>, header: &BatchHeader) -> bool {
        let segment = appender.segment();
        let meta = segment.meta.borrow();
        if meta.size == 0 {
            return false;
        }
        let full = meta.size + header.total_size() as u64 > self.config.effective_segment_bytes();
        let old = now_ms() - meta.created_ms >= self.config.segment_ms.min(i64::MAX as u64) as i64;
        let overflow = header.next_offset() - segment.base_offset > i64::from(u32::MAX);
        full || old || overflow
    }

    /// Seals the active segment and starts the one at `base`. On a full disk the sealed segment
    /// stays the active one (`unseal`) and the error tells the caller to roll back what it had
    /// staged; a failure to sync poisons as usual. Index files, the producer snapshot and the
    /// recovery point are best effort: recovery rebuilds them from the segments.
    async fn roll(&self, appender: &mut SegmentAppender<B::File>, base: i64) -> Result<()> {
        appender.seal().await?;
        let next = match create_segment(&self.backend, &self.dir, base, &self.config).await {
            Ok(next) => next,
            Err(e) => {
                appender.unseal();
                return Err(e);
            }
        };
        let sealed = std::mem::replace(appender, next);
        self.state.borrow_mut().segments.insert(base, appender.segment().clone());
        if let Err(e) = persist_index(&self.backend, &self.dir, sealed.segment()).await {
            tracing::warn!(dir = %self.dir.display(), base = sealed.segment().base_offset, "index files not written (rebuilt on recovery): {e}");
        }
        // Everything below `base` is synced now (seal): a snapshot and a recovery point there
        // make the next recovery replay and check only the new segment.
        let snapshot = {
            let mut state = self.state.borrow().producers.clone();
            state.truncate_to(base);
            state
        };
        if let Err(e) = producer_snapshot::write(&self.backend, &self.dir, &snapshot, base).await {
            tracing::warn!(dir = %self.dir.display(), base, "producer snapshot not written: {e}");
        }
        tracing::debug!(dir = %self.dir.display(), base, "rolled segment");
        Ok(())
    }

    /// Writes `work` (the oldest unflushed batches) to the segment files, then goes on with
    /// the next flush steps while they are due, each copied into its DMA buffers while the
    /// step before it is on the device (one log's writes were copy, write, copy, write: the
    /// device idled during every copy and space reservation). A full disk keeps the batches in
    /// memory and in the journal, retried after `LOG_DISK_FULL_RETRY_MS`: nothing acknowledged
    /// is lost, and the journal refuses new appends once it needs this log's space.
    async fn flush(&self, appender: &mut SegmentAppender<B::File>, work: Vec<Queued>) -> Result<()> {
        // A few segment writes at a time per shard: a burst of every log writing at once would
        // queue far more on the device than the journal's next write, and acks wait for that.
        let _permit = self.journal.segment_write_permit().await;
        let mut prepared = match self.stage_and_prepare(appender, work, true).await {
            Ok(p) => p,
            Err(e) => return self.flush_failed(appender, e),
        };
        while let Some(step) = prepared.take() {
            let (write, pending) = appender.issue(step);
            let mut write = std::pin::pin!(write);
            // Let the reactor submit this write before the next step's copy: glommio queues
            // DMA writes and submits them when the executor next polls its rings.
            let early = match select(write.as_mut(), std::pin::pin!(glommio::timer::sleep(Duration::from_micros(1)))).await {
                futures::future::Either::Left((result, _)) => Some(result),
                futures::future::Either::Right(_) => None,
            };
            let next = match (early.is_none(), self.next_step_work(pending.next_offset())) {
                (true, Some(work)) => self.stage_and_prepare(appender, work, false).await,
                _ => Ok(None),
            };
            let result = match early {
                Some(result) => result,
                None => write.await,
            };
            if let Err(e) = result {
                if let Ok(Some(next)) = next {
                    appender.abandon_prepared(next);
                }
                appender.abandon(pending);
                return self.flush_failed(appender, e);
            }
            let end = pending.next_offset();
            appender.completed(pending);
            self.written_to_segments(end);
            prepared = match next {
                Ok(p) => p,
                Err(e) => return self.flush_failed(appender, e),
            };
        }
        // The sync comes later (`next_step`): when the journal wants the space, on flush or
        // close, or `LOG_SYNC_INTERVAL_MS` after the write; several writes share it.
        Ok(())
    }

    /// A flush step failed: on a full disk its batches stay in memory and the journal (retried
    /// later); any other error poisons the log (the caller's).
    fn flush_failed(&self, appender: &mut SegmentAppender<B::File>, e: Error) -> Result<()> {
        if !e.is_disk_full() {
            return Err(e);
        }
        appender.discard_staged();
        self.written_to_segments(appender.file_next_offset());
        self.roll_back_direct_tail();
        self.on_disk_full();
        Ok(())
    }

    /// The next flush step after the batches below `end` (being written), if one is due now:
    /// a segment write's worth waiting, a direct append, a flush or close asked for.
    fn next_step_work(&self, end: i64) -> Option<Vec<Queued>> {
        let st = self.state.borrow();
        if st.poisoned.is_some() || st.truncate.is_some() {
            return None;
        }
        let rest = st.unflushed.iter().skip_while(|q| q.header.base_offset < end);
        let bytes: usize = rest.clone().map(|q| q.data.len()).sum();
        let due = bytes >= LOG_FLUSH_BYTES
            || st.direct.iter().any(|&(_, direct_end)| direct_end > end)
            || st.flush_requested > end
            || st.closing;
        (bytes > 0 && due).then(|| flush_work(rest))
    }

    /// Stages `work` and copies it into one write's DMA buffers. With `may_roll` false (a write
    /// is in flight) staging stops at the first batch that needs a new segment: it waits for
    /// the next flush step, after that write.
    async fn stage_and_prepare(&self, appender: &mut SegmentAppender<B::File>, work: Vec<Queued>, may_roll: bool) -> Result<Option<PreparedWrite<<B::File as IoFile>::Buf>>> {
        for q in work {
            if self.needs_roll(appender, &q.header) {
                if !may_roll {
                    break;
                }
                self.roll(appender, q.header.base_offset).await?;
            }
            appender.stage(&q.header, q.data);
        }
        appender.prepare_staged().await
    }

    /// The segment files hold everything below `end`: drop those batches from memory.
    fn written_to_segments(&self, end: i64) {
        let mut st = self.state.borrow_mut();
        if end <= st.segment_written {
            return;
        }
        while st.unflushed.front().is_some_and(|b| b.header.next_offset() <= end) {
            let b = st.unflushed.pop_front().expect("non-empty");
            st.unflushed_bytes -= b.data.len();
        }
        st.oldest_unflushed = if st.unflushed.is_empty() { None } else { Some(Instant::now()) };
        st.flush_delay = flush_delay();
        st.segment_written = end;
        st.unsynced_since.get_or_insert_with(Instant::now);
        if st.direct_unsynced_below(end) {
            st.direct_written_at.get_or_insert_with(Instant::now);
        }
        let moved = st.settle(&self.config.flush); // a direct append is written now
        if st.disk_full_until.take().is_some() {
            tracing::info!(dir = %self.dir.display(), "segment files are written again after the disk was full");
        }
        drop(st);
        self.queue_space.notify(usize::MAX);
        if moved {
            self.progress.notify(usize::MAX);
        }
    }

    /// The disk refused a write, and the log ends with direct appends nothing holds but memory
    /// (not in the segment files, only a Direct entry in the journal): take them back, so their
    /// offsets go to the next appends, as when the journal refuses an append for want of space.
    /// Nothing in them or after them was acknowledged (acks wait for a direct range's write) and
    /// nothing after them is in the journal, so replay cannot miss them; it skips a Direct
    /// entry whose range a later entry starts again (`replay`). Their waiters get DiskFull
    /// (`wait_appended`). A direct append followed by a journaled one stays, and is written
    /// once the disk has space (its waiters got DiskFull after one retry).
    fn roll_back_direct_tail(&self) {
        let mut st = self.state.borrow_mut();
        let mut cut = st.log_end;
        for &(base, end) in st.direct.iter().rev() {
            if end != cut || base < st.segment_written {
                break;
            }
            cut = base;
        }
        if cut == st.log_end {
            return;
        }
        while st.direct.back().is_some_and(|&(base, _)| base >= cut) {
            st.direct.pop_back();
        }
        while st.unflushed.back().is_some_and(|q| q.header.base_offset >= cut) {
            let q = st.unflushed.pop_back().expect("non-empty");
            st.unflushed_bytes -= q.data.len();
        }
        if st.unflushed.is_empty() {
            st.oldest_unflushed = None;
        }
        debug_assert!(st.written <= cut, "nothing at or above an unwritten direct range is acknowledged");
        tracing::warn!(dir = %self.dir.display(), from = cut, to = st.log_end, "disk full: direct appends taken back (their producers get KAFKA_STORAGE_ERROR)");
        st.log_end = cut;
        st.producers.truncate_to(cut);
        if st.epochs.truncate_from_end(cut) {
            st.epochs_version += 1;
        }
        st.rollback_bases.push(cut);
        drop(st);
        self.cache.borrow_mut().evict_from(cut);
        self.progress.notify(usize::MAX);
        self.queue_space.notify(usize::MAX);
    }

    fn on_disk_full(&self) {
        let mut st = self.state.borrow_mut();
        if st.disk_full_until.is_none() {
            tracing::warn!(dir = %self.dir.display(), unflushed = st.unflushed_bytes, "disk full: segment files cannot be written; data stays in memory and the journal, new appends are refused once the journal is full");
        }
        st.disk_full_until = Some(Instant::now() + Duration::from_millis(LOG_DISK_FULL_RETRY_MS));
        st.disk_full_failures += 1;
        drop(st);
        self.flushed.notify(usize::MAX);
        self.progress.notify(usize::MAX); // direct appends' waiters fail (`wait_durable`)
    }

    /// Syncs the segment files, then records their end as the recovery point (durably), and
    /// only then lets the journal reuse the space of those entries. So below the recovery
    /// point the segment files are synced (damage there is corruption), and above it the
    /// journal still holds every acknowledged batch (a torn segment tail is refilled from it).
    async fn sync(&self, appender: &SegmentAppender<B::File>) -> Result<()> {
        let written = self.state.borrow().segment_written;
        appender.sync().await?;
        // Every epoch starting below a recovery point must be in the epoch file (recovery scans
        // only the batches above it): on a full disk the recovery point waits (the file is
        // replaced through a new one); a lower recovery point only makes recovery scan more.
        let epochs_stored = self.store_epochs_unless_disk_full().await?;
        if epochs_stored && written > self.state.borrow().checkpointed {
            self.checkpoint.set_recovery_point(written, true).await?;
        }
        let moved = {
            let mut st = self.state.borrow_mut();
            st.checkpointed = st.checkpointed.max(written);
            st.segment_synced = st.segment_synced.max(written);
            if st.segment_synced >= st.segment_written {
                st.unsynced_since = None;
            }
            st.settle(&self.config.flush) // a direct append is synced now
        };
        if moved {
            self.progress.notify(usize::MAX);
        }
        self.flushed.notify(usize::MAX);
        self.journal.on_flushed();
        Ok(())
    }

    /// `store_epochs`, false instead of an error on a full disk (retried at the next sync).
    async fn store_epochs_unless_disk_full(&self) -> Result<bool> {
        match self.store_epochs().await {
            Ok(()) => Ok(true),
            Err(e) if e.is_disk_full() => {
                tracing::debug!(dir = %self.dir.display(), "leader epoch file not written: disk full");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the leader epoch file if the cache changed since it was last written.
    async fn store_epochs(&self) -> Result<()> {
        let (cache, version) = {
            let st = self.state.borrow();
            if st.epochs_version == st.epochs_stored {
                return Ok(());
            }
            (st.epochs.clone(), st.epochs_version)
        };
        leader_epoch::store(&self.backend, &self.dir, &cache).await?;
        let mut st = self.state.borrow_mut();
        st.epochs_stored = st.epochs_stored.max(version);
        Ok(())
    }

    /// Writes `offset` (all of it synced) as the recovery point; a failure only leaves the older
    /// recovery point in place, which is still true.
    async fn record_recovery_point(&self, offset: i64, sync: bool) {
        {
            let mut st = self.state.borrow_mut();
            st.checkpointed = st.checkpointed.max(offset);
        }
        if let Err(e) = self.checkpoint.set_recovery_point(offset, sync).await {
            tracing::warn!(dir = %self.dir.display(), offset, "recovery point not recorded: {e}");
        }
    }

    /// Clean shutdown of the flusher: truncate the active segment's zero padding; if everything
    /// is in the segment files, record it (recovery point = log end) with a producer snapshot,
    /// so the next start replays nothing and treats any damage as corruption, not a torn tail.
    async fn finish(&self, appender: &SegmentAppender<B::File>) -> Result<()> {
        let file = &appender.segment().file;
        file.truncate(appender.file_end()).await?;
        file.sync().await?;
        let (clean, synced, snapshot) = {
            let st = self.state.borrow();
            let clean = st.poisoned.is_none() && st.segment_synced == st.log_end && st.unflushed.is_empty();
            (clean, st.segment_synced, st.producers.clone())
        };
        if clean && self.store_epochs_unless_disk_full().await? {
            producer_snapshot::write(&self.backend, &self.dir, &snapshot, synced).await?;
            self.record_recovery_point(synced, true).await;
        }
        Ok(())
    }
}

/// How long a log's oldest unflushed batch waits for more before the flusher writes:
/// `LOG_FLUSH_DELAY_MS` spread uniformly over +-50%, drawn again after each write. With one fixed
/// delay the logs of a shard stay in step (each starts its next wait when the previous write
/// ends): at 1,000 partitions x 10 MB/s all of them flushed within ~300 ms every 2 s (~6,000
/// device writes/s in that window against ~1,400 otherwise), and acks queued behind the wave.
/// Measured (same runs, acks=1, 10 MB/s over 1,000 partitions, 4 runs): ack p99 3.7-12 ms with
/// the spread against 81-211 ms without; device writes/s 5,000-5,300 against 3,600-3,800, since
/// the segment syncs (`LOG_SYNC_INTERVAL_MS` after each write) now come spread too and share
/// fewer `syncfs` rounds. Putting those syncs back on a shared 250 ms grid restored the device
/// writes and the tail (p99 10 and 107 ms): not kept.
fn flush_delay() -> Duration {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0x9e37_79b9, |d| d.as_nanos() as u64) | 1,
        );
    }
    // xorshift64: cheap, and the spread only has to break the lockstep, not be unpredictable.
    let r = STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    let base = LOG_FLUSH_DELAY_MS;
    Duration::from_millis(base / 2 + r % (base + 1))
}

enum FlushStep {
    Flush(Vec<Queued>),
    Sync,
    Truncate(i64),
    Finish,
    Wait(Option<Duration>),
}

/// The oldest unflushed batches, at most `LOG_FLUSH_WRITE_BYTES_MAX` of them (at least one).
fn flush_work<'a>(unflushed: impl IntoIterator<Item = &'a Queued>) -> Vec<Queued> {
    let mut bytes = 0;
    unflushed
        .into_iter()
        .take_while(|q| {
            let first = bytes == 0;
            bytes += q.data.len();
            first || bytes <= LOG_FLUSH_WRITE_BYTES_MAX
        })
        .cloned()
        .collect()
}

/// The per-log segment flusher task.
async fn writer_loop<B: IoBackend>(inner: Rc<LogInner<B>>, mut appender: SegmentAppender<B::File>) {
    loop {
        let listener = inner.writer_wake.listen();
        let outcome = match next_step(&inner) {
            FlushStep::Flush(work) => inner.flush(&mut appender, work).await,
            FlushStep::Sync => inner.sync(&appender).await,
            FlushStep::Truncate(offset) => {
                let outcome = inner.truncate(&mut appender, offset).await;
                let failed = outcome.as_ref().err().map(|e| Error::Poisoned(format!("truncation to {offset}: {e}")));
                if let Some(job) = inner.state.borrow_mut().truncate.as_mut() {
                    job.outcome = Some(outcome);
                }
                inner.flushed.notify(usize::MAX);
                failed.map_or(Ok(()), Err)
            }
            FlushStep::Finish => {
                if let Err(e) = inner.finish(&appender).await {
                    tracing::warn!(dir = %inner.dir.display(), error = %e, "closing active segment");
                }
                break;
            }
            FlushStep::Wait(None) => {
                listener.await;
                Ok(())
            }
            FlushStep::Wait(Some(timeout)) => {
                let sleep = std::pin::pin!(glommio::timer::sleep(timeout));
                let _ = select(listener, sleep).await;
                Ok(())
            }
        };
        if let Err(e) = outcome {
            inner.poison(&e);
        }
    }
    inner.state.borrow_mut().writer_done = true;
    inner.progress.notify(usize::MAX);
    inner.queue_space.notify(usize::MAX);
    inner.flushed.notify(usize::MAX);
    inner.journal.on_flushed();
}

fn next_step<B: IoBackend>(inner: &LogInner<B>) -> FlushStep {
    let st = inner.state.borrow();
    if st.poisoned.is_some() {
        return FlushStep::Finish;
    }
    // `truncate_to` flushed everything before asking and appends wait meanwhile.
    if let Some(job) = st.truncate.as_ref().filter(|job| job.outcome.is_none()) {
        if st.unflushed.is_empty() && st.segment_synced == st.log_end {
            return FlushStep::Truncate(job.offset);
        }
    }
    let now = Instant::now();
    let backoff = st.disk_full_until.filter(|t| *t > now).map(|t| t - now);
    let age_left = st.oldest_unflushed.map(|t| st.flush_delay.saturating_sub(t.elapsed()));
    let due = !st.unflushed.is_empty()
        && (st.unflushed_bytes >= LOG_FLUSH_BYTES
            || st.direct_unwritten()
            || st.flush_requested > st.segment_written
            || st.closing
            || age_left.is_some_and(|d| d.is_zero()));
    if due && backoff.is_none() {
        return FlushStep::Flush(flush_work(&st.unflushed));
    }
    let sync_left = st.unsynced_since.map(|t| Duration::from_millis(LOG_SYNC_INTERVAL_MS).saturating_sub(t.elapsed()));
    // Written direct appends are synced soon: until then acks=all and (flush=always) the high
    // watermark wait for them, and nothing else would sync them before the interval.
    let direct_left = st.direct_written_at.map(|t| Duration::from_millis(inner.config.direct_sync_delay_ms).saturating_sub(t.elapsed()));
    let sync_left = [sync_left, direct_left].into_iter().flatten().min();
    if st.segment_written > st.segment_synced
        && (st.flush_requested > st.segment_synced || st.closing || sync_left.is_some_and(|d| d.is_zero()))
    {
        return FlushStep::Sync;
    }
    if st.closing && (st.unflushed.is_empty() || backoff.is_some()) {
        // On a full disk what is left stays in the journal and is replayed at the next start.
        return FlushStep::Finish;
    }
    let age_left = age_left.filter(|_| !st.unflushed.is_empty());
    let wait = match backoff {
        Some(b) => Some(b),
        None => [age_left, sync_left].into_iter().flatten().min(),
    };
    FlushStep::Wait(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_flush_delay_is_spread_around_its_constant() {
        let delays: Vec<Duration> = (0..1000).map(|_| flush_delay()).collect();
        let (lo, hi) = (Duration::from_millis(LOG_FLUSH_DELAY_MS / 2), Duration::from_millis(LOG_FLUSH_DELAY_MS * 3 / 2));
        assert!(delays.iter().all(|d| (lo..=hi).contains(d)), "within +-50%");
        let below = delays.iter().filter(|d| **d < Duration::from_millis(LOG_FLUSH_DELAY_MS)).count();
        assert!((300..700).contains(&below), "spread over the range: {below} of 1000 below the middle");
    }

    fn queued(value_len: usize) -> Queued {
        let data = riptide_testkit::unkeyed_batch(1, Bytes::from(vec![7u8; value_len]), 0);
        Queued { header: BatchHeader::parse(&data).unwrap(), data }
    }

    #[test]
    fn log_flush_step_takes_at_most_its_bound() {
        let unflushed: VecDeque<Queued> = (0..40).map(|_| queued(300 << 10)).collect();
        let work = flush_work(&unflushed);
        let bytes: usize = work.iter().map(|q| q.data.len()).sum();
        assert!(bytes <= LOG_FLUSH_WRITE_BYTES_MAX, "{bytes} bytes in one step");
        assert!(bytes + unflushed[work.len()].data.len() > LOG_FLUSH_WRITE_BYTES_MAX, "as much as fits");
        // A batch larger than the bound still goes, alone.
        let big: VecDeque<Queued> = [queued(LOG_FLUSH_WRITE_BYTES_MAX + 1), queued(10)].into_iter().collect();
        assert_eq!(flush_work(&big).len(), 1);
        assert!(flush_work(&VecDeque::new()).is_empty());
    }
}
