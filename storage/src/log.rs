//! The per-partition log: segments, group-commit writer task, batch cache, reads, retention.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use event_listener::{Event, EventListener};
use futures::future::select;
use glommio::task::JoinHandle;

use crate::batch::{set_base_offset, validate_batches, BatchHeader};
use crate::batch_cache::BatchCache;
use crate::checkpoint::CheckpointFile;
use crate::config::{Durability, FlushPolicy, LogConfig};
use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::{IoBackend, IoFile};
use crate::producer_snapshot;
use crate::producer_state::{ProducerState, SeqVerdict};
use crate::recovery::{create_segment, now_ms, persist_index, recover, remove_segment_files};
use crate::segment::Segment;
use crate::segment_appender::SegmentAppender;
use crate::segment_reader::{read_batches, BatchScanner, ScanItem};

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
    /// The log's rollback generation when this was appended: a rollback since then that cut
    /// below `last_offset` means the data is gone (see `Log::wait_appended`).
    pub generation: u64,
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

/// A batch waiting for the group-commit writer.
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
    /// End of data written to the files.
    written: i64,
    /// End of data written and fdatasync'ed.
    synced: i64,
    hw: i64,
    queue: Vec<Queued>,
    queue_bytes: usize,
    /// Largest end offset some `wait_durable(.., Synced)` caller asked for.
    sync_requested: i64,
    bytes_since_sync: u64,
    last_sync: Instant,
    poisoned: Option<String>,
    closing: bool,
    writer_done: bool,
    /// Idempotent producers' windows; checked and updated in the same step as offsets.
    producers: ProducerState,
    /// Bumped by every rollback of unwritten appends (disk full).
    generation: u64,
    /// (generation after the rollback, offset the log end went back to), newest last.
    rollbacks: VecDeque<(u64, i64)>,
    /// Rollbacks dropped from `rollbacks`: generations below this are judged conservatively.
    rollbacks_forgotten: Option<(u64, i64)>,
    /// The last commit failed for want of space (cleared, with a log line, by the next success).
    disk_full: bool,
    /// Recovery point last written to the checkpoint file, and when.
    checkpointed: i64,
    last_checkpoint: Instant,
}

struct LogInner<B: IoBackend> {
    backend: B,
    dir: PathBuf,
    config: LogConfig,
    checkpoint: CheckpointFile<B::File>,
    state: RefCell<LogState<B::File>>,
    cache: RefCell<BatchCache>,
    /// Fires when written/synced/high watermark move, or the log is poisoned or closed.
    progress: Event,
    /// Wakes the writer task: new batches, sync requests, close.
    writer_wake: Event,
    /// Fires when the write queue drains (backpressure).
    queue_space: Event,
}

/// A per-partition append-only log.
///
/// Append contract: `append` validates, assigns offsets and queues batches for a per-log writer
/// task (spawned with `glommio::spawn_local`) which coalesces everything queued into one DMA
/// write per round (group commit), so data is written even if nobody waits (acks=0).
/// Flush contract: with `FlushPolicy::Always` every round ends with one fdatasync and the high
/// watermark is the synced end; with `Interval` the high watermark is the written end and
/// fdatasync runs every `ms`/`bytes` or when a `wait_durable(.., Synced)` caller asks.
/// A failed write or fsync poisons the log: later appends and waits fail with `Error::Poisoned`.
pub struct Log<B: IoBackend> {
    inner: Rc<LogInner<B>>,
    writer: RefCell<Option<JoinHandle<()>>>,
}

impl<B: IoBackend> Log<B> {
    /// Opens the log in `dir`, creating it or recovering it from disk.
    pub async fn open(backend: B, dir: PathBuf, config: LogConfig) -> Result<Log<B>> {
        let recovered = recover(&backend, &dir, &config).await?;
        let log_end = recovered.log_end;
        tracing::debug!(dir = %dir.display(), log_start = recovered.log_start, log_end, "log opened");
        let state = LogState {
            segments: recovered.segments,
            log_start: recovered.log_start,
            log_end,
            written: log_end,
            synced: log_end,
            hw: log_end,
            queue: Vec::new(),
            queue_bytes: 0,
            sync_requested: log_end,
            bytes_since_sync: 0,
            last_sync: Instant::now(),
            poisoned: None,
            closing: false,
            writer_done: false,
            producers: recovered.producers,
            generation: 0,
            rollbacks: VecDeque::new(),
            rollbacks_forgotten: None,
            disk_full: false,
            checkpointed: recovered.checkpoint.get().recovery_point,
            last_checkpoint: Instant::now(),
        };
        let inner = Rc::new(LogInner {
            backend,
            dir,
            checkpoint: recovered.checkpoint,
            cache: RefCell::new(BatchCache::new(config.cache_bytes_max)),
            config,
            state: RefCell::new(state),
            progress: Event::new(),
            writer_wake: Event::new(),
            queue_space: Event::new(),
        });
        let task = glommio::spawn_local(writer_loop(inner.clone(), recovered.appender)).detach();
        Ok(Log { inner, writer: RefCell::new(Some(task)) })
    }

    /// Validates, checks idempotent producers' sequences, assigns offsets (rewrites base offset,
    /// first 8 bytes), queues for the group-commit writer, inserts into the batch cache. Returns
    /// without waiting for disk (may wait for space in the bounded write queue = backpressure).
    /// Data is written even if nobody awaits it (acks=0). A batch an idempotent producer already
    /// appended is not appended again: the answer carries the original's offsets (`duplicate`).
    pub async fn append(&self, records: Bytes) -> Result<AppendInfo> {
        self.inner.check_writable()?;
        let headers = validate_batches(&records)?;
        let max = self.inner.config.max_batch_bytes;
        if let Some(h) = headers.iter().find(|h| h.total_size() > max) {
            return Err(Error::BatchTooLarge { size: h.total_size(), max });
        }
        self.inner.wait_queue_space(records.len()).await?;
        // No await from here on: the sequence check and the offset assignment are one step, so
        // two copies of a batch (a retry on another connection) cannot both be appended.
        self.inner.check_writable()?;
        self.inner.enqueue(records, headers)
    }

    /// Resolves once everything below `end_offset` has reached `level` (group commit: concurrent
    /// waiters share one write + one fdatasync). Err(Poisoned) if the log was poisoned before
    /// reaching it (data that reached `level` before the failure still resolves Ok);
    /// Err(OffsetOutOfRange) if `end_offset` > log end; Err(Closed) after close.
    pub async fn wait_durable(&self, end_offset: i64, level: Durability) -> Result<()> {
        let generation = self.inner.state.borrow().generation;
        self.inner.wait_durable(end_offset, generation, level).await
    }

    /// Resolves once the batches of `info` (an append's answer, or a duplicate's original) have
    /// reached `level`. Err(DiskFull) if they were rolled back because the disk was full.
    pub async fn wait_appended(&self, info: &AppendInfo, level: Durability) -> Result<()> {
        self.inner.wait_durable(info.last_offset + 1, info.generation, level).await
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

    /// End of data that meets the log's flush policy (Always: fdatasync'ed; Interval: written).
    /// Consumers never see data above it.
    pub fn high_watermark(&self) -> i64 {
        self.inner.state.borrow().hw
    }

    /// Fires (at least) whenever the high watermark moves; for Fetch long polling.
    pub fn listen(&self) -> EventListener {
        self.inner.progress.listen()
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

    /// Writes and fdatasyncs everything appended so far.
    pub async fn flush(&self) -> Result<()> {
        let end = self.log_end_offset();
        self.wait_durable(end, Durability::Synced).await
    }

    /// Flushes, stops the writer task and closes the files.
    pub async fn close(&self) -> Result<()> {
        let flushed = if self.inner.state.borrow().writer_done { Ok(()) } else { self.flush().await };
        self.inner.state.borrow_mut().closing = true;
        self.inner.writer_wake.notify(usize::MAX);
        let task = self.writer.borrow_mut().take();
        if let Some(task) = task {
            task.await;
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

    /// Bytes queued for the writer task (bounded by `WRITE_QUEUE_BYTES_MAX` plus one append).
    pub fn write_queue_bytes(&self) -> usize {
        self.inner.state.borrow().queue_bytes
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
}

impl<B: IoBackend> Drop for Log<B> {
    /// Dropping without `close` lets the writer finish queued writes (and their fsync) in the
    /// background, then exit.
    fn drop(&mut self) {
        if let Some(task) = self.writer.get_mut().take() {
            self.inner.state.borrow_mut().closing = true;
            self.inner.writer_wake.notify(usize::MAX);
            drop(task);
        }
    }
}

impl<B: IoBackend> LogInner<B> {
    fn check_writable(&self) -> Result<()> {
        let st = self.state.borrow();
        if let Some(p) = &st.poisoned {
            return Err(Error::Poisoned(p.clone()));
        }
        if st.closing || st.writer_done {
            return Err(Error::Closed);
        }
        Ok(())
    }

    async fn wait_queue_space(&self, bytes: usize) -> Result<()> {
        loop {
            let listener = self.queue_space.listen();
            self.check_writable()?;
            let queued = self.state.borrow().queue_bytes;
            if queued == 0 || queued + bytes <= WRITE_QUEUE_BYTES_MAX {
                return Ok(());
            }
            listener.await;
        }
    }

    /// Checks producer sequences, assigns offsets and queues the batches; synchronous, so
    /// offset order = queue order and the check cannot race another append.
    fn enqueue(&self, records: Bytes, mut headers: Vec<BatchHeader>) -> Result<AppendInfo> {
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
                    generation: st.generation,
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
            next = h.next_offset();
            pos += h.total_size();
        }
        debug_assert_eq!(pos, data.len());
        let mut data = data.freeze();
        let mut cache = self.cache.borrow_mut();
        let mut max_timestamp = -1;
        let now = now_ms();
        for h in headers {
            let batch = data.split_to(h.total_size());
            cache.insert(h.base_offset, h.last_offset(), batch.clone());
            max_timestamp = max_timestamp.max(h.max_timestamp);
            st.producers.on_batch(&h, now);
            st.queue_bytes += batch.len();
            st.queue.push(Queued { header: h, data: batch });
        }
        st.log_end = next;
        self.writer_wake.notify(1);
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_end_offset: next,
            max_timestamp,
            log_start_offset: st.log_start,
            duplicate: false,
            generation: st.generation,
        })
    }

    /// Whether data below `end_offset`, appended in `generation`, was rolled back since.
    fn rolled_back(st: &LogState<B::File>, end_offset: i64, generation: u64) -> bool {
        let cut = |(g, floor): &(u64, i64)| *g > generation && *floor < end_offset;
        st.rollbacks.iter().any(cut) || st.rollbacks_forgotten.as_ref().is_some_and(cut)
    }

    async fn wait_durable(&self, end_offset: i64, generation: u64, level: Durability) -> Result<()> {
        loop {
            let listener = self.progress.listen();
            {
                let mut st = self.state.borrow_mut();
                if Self::rolled_back(&st, end_offset, generation) {
                    return Err(Error::DiskFull);
                }
                if end_offset > st.log_end {
                    return Err(Error::OffsetOutOfRange {
                        requested: end_offset,
                        log_start: st.log_start,
                        high_watermark: st.hw,
                    });
                }
                let reached = match level {
                    Durability::Written => st.written,
                    Durability::Synced => st.synced,
                };
                if reached >= end_offset {
                    return Ok(()); // durable before any failure: still a valid ack
                }
                if let Some(p) = &st.poisoned {
                    return Err(Error::Poisoned(p.clone()));
                }
                if st.writer_done {
                    return Err(Error::Closed);
                }
                if level == Durability::Synced && st.sync_requested < end_offset {
                    st.sync_requested = end_offset;
                    self.writer_wake.notify(1);
                }
            }
            listener.await;
        }
    }

    fn range_error(&self, offset: i64) -> Error {
        let st = self.state.borrow();
        Error::OffsetOutOfRange { requested: offset, log_start: st.log_start, high_watermark: st.hw }
    }

    async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let (log_start, hw, log_end, segment) = {
            let st = self.state.borrow();
            let segment = st.segments.range(..=offset).next_back().map(|(_, s)| s.clone());
            (st.log_start, st.hw, st.log_end, segment)
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
        let Some(segment) = segment else { return Ok(result) };
        let (position, limit) = {
            let meta = segment.meta.borrow();
            let relative = (offset - segment.base_offset) as u32;
            (u64::from(meta.index.lookup_offset(relative)), meta.readable_size)
        };
        result.batches = read_batches(&*segment.file, position, limit, offset, hw, max_bytes)
            .await
            .map_err(|e| self.on_corruption(e, segment.base_offset))?;
        debug_assert!(result.batches.iter().all(|b| b.len() >= BATCH_HEADER_BYTES));
        Ok(result)
    }

    async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
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
        Ok(None)
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
        }
        self.state.borrow_mut().producers.expire(now_ms, log_start);
        Ok(deleted)
    }

    /// Deletes the oldest non-active segments, fully below the high watermark, that lie below the
    /// log start or satisfy `expired`; stops at the first one that does not. Advances log start.
    async fn delete_segments(&self, mut expired: impl FnMut(&Segment<B::File>, i64) -> bool) -> Result<usize> {
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

    /// Synced data failed its checks when read back: name the file, take the log offline for
    /// writes (poison) so nothing is appended after damage nobody has looked at, and answer the
    /// read with the error. Nothing is deleted.
    fn on_corruption(&self, e: Error, segment_base: i64) -> Error {
        let Error::CorruptLog { position, reason, .. } = e else { return e };
        let path = crate::segment::segment_path(&self.dir, segment_base, LOG_SUFFIX);
        let e = Error::CorruptLog { path, position, reason };
        if self.state.borrow().poisoned.is_none() {
            tracing::error!(error = %e, "corrupt data read back from disk; partition offline for writes");
            self.poison(&e);
        }
        e
    }

    fn poison(&self, error: &Error) {
        let mut st = self.state.borrow_mut();
        let reason = error.to_string();
        tracing::error!(dir = %self.dir.display(), error = %reason, "log write failed; log poisoned");
        st.poisoned = Some(reason);
        st.queue.clear();
        st.queue_bytes = 0;
        drop(st);
        self.progress.notify(usize::MAX);
        self.queue_space.notify(usize::MAX);
    }

    fn sync_due(&self) -> bool {
        let st = self.state.borrow();
        if st.written <= st.synced {
            return false;
        }
        match self.config.flush {
            FlushPolicy::Always => true,
            FlushPolicy::Interval { ms, bytes } => {
                st.sync_requested > st.synced
                    || st.bytes_since_sync >= bytes
                    || st.last_sync.elapsed() >= Duration::from_millis(ms)
                    || st.closing
            }
        }
    }

    /// How long the idle writer may sleep before an interval fsync is due.
    fn sync_deadline(&self) -> Option<Duration> {
        let st = self.state.borrow();
        match self.config.flush {
            FlushPolicy::Interval { ms, .. } if st.written > st.synced => {
                Some(Duration::from_millis(ms).saturating_sub(st.last_sync.elapsed()))
            }
            _ => None,
        }
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
        self.record_recovery_point(base, false).await;
        tracing::debug!(dir = %self.dir.display(), base, "rolled segment");
        Ok(())
    }

    /// One group commit: stage, roll as needed, write, fsync per policy, publish. A full disk
    /// rolls back what could not be written (`roll_back`) instead of poisoning the log.
    async fn commit(&self, appender: &mut SegmentAppender<B::File>, work: Vec<Queued>) -> Result<()> {
        let end = work.last().map(|q| q.header.next_offset()).expect("non-empty work");
        let mut bytes = 0u64;
        match self.stage_and_write(appender, work, &mut bytes).await {
            Ok(()) => {}
            Err(e) if e.is_disk_full() => {
                self.roll_back(appender);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        {
            let mut st = self.state.borrow_mut();
            st.written = end;
            st.bytes_since_sync += bytes;
            if self.config.flush != FlushPolicy::Always {
                st.hw = end;
            }
            if std::mem::take(&mut st.disk_full) {
                tracing::info!(dir = %self.dir.display(), "appends are written again after the disk was full");
            }
        }
        self.progress.notify(usize::MAX);
        if self.sync_due() {
            self.sync(appender).await?;
        }
        Ok(())
    }

    async fn stage_and_write(&self, appender: &mut SegmentAppender<B::File>, work: Vec<Queued>, bytes: &mut u64) -> Result<()> {
        for q in work {
            if self.needs_roll(appender, &q.header) {
                *bytes += appender.staged_len();
                self.roll(appender, q.header.base_offset).await?;
            }
            appender.stage(&q.header, q.data);
        }
        *bytes += appender.write_staged().await?;
        Ok(())
    }

    /// The disk is full: forget every append the files do not hold (the staged batches and the
    /// whole queue), move the log end back to the end of the file, and fail their waiters with
    /// `DiskFull`. Nothing reached disk or was acknowledged, so clients may retry; producer
    /// windows forget them too, so an idempotent retry is appended, not taken for a duplicate.
    fn roll_back(&self, appender: &mut SegmentAppender<B::File>) {
        appender.discard_staged();
        let floor = appender.file_next_offset();
        let mut st = self.state.borrow_mut();
        let discarded = st.log_end - floor;
        debug_assert!(floor >= st.written && floor <= st.log_end);
        st.log_end = floor;
        st.written = floor;
        if self.config.flush != FlushPolicy::Always {
            st.hw = floor;
        }
        st.queue.clear();
        st.queue_bytes = 0;
        st.producers.truncate_to(floor);
        st.generation += 1;
        let generation = st.generation;
        st.disk_full = true;
        st.rollbacks.push_back((generation, floor));
        if st.rollbacks.len() > ROLLBACKS_REMEMBERED {
            let (g, f) = st.rollbacks.pop_front().expect("non-empty");
            let (_, min_floor) = st.rollbacks_forgotten.unwrap_or((g, f));
            st.rollbacks_forgotten = Some((g, f.min(min_floor)));
        }
        drop(st);
        self.cache.borrow_mut().evict_from(floor);
        tracing::warn!(dir = %self.dir.display(), log_end = floor, discarded, "disk full: appends not written were rolled back and failed");
        self.progress.notify(usize::MAX);
        self.queue_space.notify(usize::MAX);
    }

    async fn sync(&self, appender: &SegmentAppender<B::File>) -> Result<()> {
        let written = self.state.borrow().written;
        appender.sync().await?;
        let checkpoint_due = {
            let mut st = self.state.borrow_mut();
            debug_assert!(written >= st.synced);
            st.synced = written;
            st.bytes_since_sync = 0;
            st.last_sync = Instant::now();
            if self.config.flush == FlushPolicy::Always {
                st.hw = written;
            }
            st.synced > st.checkpointed
                && st.last_checkpoint.elapsed() >= Duration::from_millis(self.config.recovery_point_interval_ms)
        };
        self.progress.notify(usize::MAX);
        if checkpoint_due {
            // Not synced here: the next sync round carries it, and until then the older
            // recovery point (also true) stands.
            self.record_recovery_point(written, false).await;
        }
        Ok(())
    }

    /// Writes `offset` (all of it synced) as the recovery point; a failure only leaves the older
    /// recovery point in place, which is still true.
    async fn record_recovery_point(&self, offset: i64, sync: bool) {
        {
            let mut st = self.state.borrow_mut();
            st.checkpointed = st.checkpointed.max(offset);
            st.last_checkpoint = Instant::now();
        }
        if let Err(e) = self.checkpoint.set_recovery_point(offset, sync).await {
            tracing::warn!(dir = %self.dir.display(), offset, "recovery point not recorded: {e}");
        }
    }

    /// Clean shutdown of the writer: truncate the active segment's zero padding; if everything
    /// was synced, record it (recovery point = log end) with a producer snapshot, so the next
    /// start replays nothing and treats any damage as corruption, not as a torn tail.
    async fn finish(&self, appender: &SegmentAppender<B::File>) -> Result<()> {
        let file = &appender.segment().file;
        file.truncate(appender.file_end()).await?;
        file.sync().await?;
        let (clean, synced, snapshot) = {
            let st = self.state.borrow();
            let clean = st.poisoned.is_none() && st.synced == st.log_end && st.queue.is_empty();
            (clean, st.synced, st.producers.clone())
        };
        if clean {
            producer_snapshot::write(&self.backend, &self.dir, &snapshot, synced).await?;
            self.record_recovery_point(synced, true).await;
        }
        Ok(())
    }
}

enum WriterStep {
    Commit(Vec<Queued>),
    Sync,
    Finish,
    Wait(Option<Duration>),
}

/// The per-log group-commit writer task.
async fn writer_loop<B: IoBackend>(inner: Rc<LogInner<B>>, mut appender: SegmentAppender<B::File>) {
    loop {
        let listener = inner.writer_wake.listen();
        let step = next_step(&inner);
        let outcome = match step {
            WriterStep::Commit(work) => inner.commit(&mut appender, work).await,
            WriterStep::Sync => inner.sync(&appender).await,
            WriterStep::Finish => {
                if let Err(e) = inner.finish(&appender).await {
                    tracing::warn!(dir = %inner.dir.display(), error = %e, "closing active segment");
                }
                break;
            }
            WriterStep::Wait(None) => {
                listener.await;
                Ok(())
            }
            WriterStep::Wait(Some(timeout)) => {
                let sleep = std::pin::pin!(glommio::timer::sleep(timeout));
                let _ = select(listener, sleep).await;
                Ok(())
            }
        };
        if let Err(e) = outcome {
            inner.poison(&e);
            break;
        }
    }
    inner.state.borrow_mut().writer_done = true;
    inner.progress.notify(usize::MAX);
    inner.queue_space.notify(usize::MAX);
}

fn next_step<B: IoBackend>(inner: &LogInner<B>) -> WriterStep {
    let mut st = inner.state.borrow_mut();
    if st.poisoned.is_some() {
        return WriterStep::Finish;
    }
    if !st.queue.is_empty() {
        let work = std::mem::take(&mut st.queue);
        st.queue_bytes = 0;
        drop(st);
        inner.queue_space.notify(usize::MAX);
        return WriterStep::Commit(work);
    }
    let closing = st.closing;
    drop(st);
    if inner.sync_due() {
        return WriterStep::Sync;
    }
    if closing {
        return WriterStep::Finish;
    }
    WriterStep::Wait(inner.sync_deadline())
}
