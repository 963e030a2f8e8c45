//! `Log::truncate_to`: a follower drops its log's tail above an offset (the leader's log ended
//! there for an epoch; Kafka's `Log.truncateTo`).
//!
//! 1. Appends are refused (`Error::Truncating`, retriable) and everything appended is flushed:
//!    synced in the journal and in the segment files, so the journal holds nothing the segment
//!    files lack and the flusher has nothing in hand.
//! 2. The checkpoint file records, durably, a new generation, a recovery point no higher than
//!    the offset, and "truncating to offset". From here on journal entries of the old generation
//!    are never replayed (they are all in the segment files, or truncated), and a crash before
//!    step 4 makes the next open finish the truncation (nothing was appended since step 1).
//! 3. Files: the segments above the cut are deleted (newest first), the segment holding it is
//!    truncated at the first batch whose last offset is the offset or above (whole batches, as
//!    Kafka), its index rebuilt by a scan of what it keeps, synced; producer snapshots above the
//!    new end are deleted; the leader epoch file drops the epochs starting above it.
//! 4. The checkpoint records the truncation done (recovery point = new end); the log state, the
//!    batch cache and the producer windows drop what was above; the log registers with the
//!    journal again under the new generation (its old entries no longer hold journal files).
//!
//! Readers racing the truncation may get OFFSET_OUT_OF_RANGE (never a corruption verdict: see
//! `LogInner::read_failed`); consumers never see data above the high watermark, which drops to
//! the new end if it was higher.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use crate::compaction::write_checkpoint;
use crate::config::LogConfig;
use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::{IoBackend, IoFile};
use crate::producer_snapshot;
use crate::recovery::{active_appender, remove_segment_files, scan_for_truncation, with_dir};
use crate::segment::{segment_path, Segment};
use crate::segment_appender::SegmentAppender;

use super::{Log, LogInner};

/// What the segment files hold after a truncation.
pub(super) struct Truncated<F: IoFile> {
    /// The log's new end (<= the requested offset: a batch straddling it is dropped whole).
    pub end: i64,
    pub segments: BTreeMap<i64, Rc<Segment<F>>>,
    pub appender: SegmentAppender<F>,
    /// The compaction clean offset, no higher than `end`.
    pub cleaned_to: Option<i64>,
}

/// Cuts the segment files at `offset` (step 3). `segments` are the log's segments, all of them
/// synced and none being written. Used by a running log's flusher and by `Log::open` finishing a
/// truncation a crash interrupted.
pub(super) async fn truncate_files<B: IoBackend>(
    backend: &B,
    dir: &Path,
    config: &LogConfig,
    mut segments: BTreeMap<i64, Rc<Segment<B::File>>>,
    offset: i64,
    cleaned_to: Option<i64>,
) -> Result<Truncated<B::File>> {
    let gaps = cleaned_to.is_some();
    let (&cut_base, cut) = segments.range(..=offset).next_back().or_else(|| segments.first_key_value()).expect("a log has a segment");
    let cut = cut.clone();
    let scan = scan_for_truncation(&cut, offset, config.index_interval_bytes, gaps).await.map_err(|e| with_dir(e, dir))?;
    // Readers stop at the cut before the file shrinks under them.
    {
        let mut meta = cut.meta.borrow_mut();
        meta.readable_size = meta.readable_size.min(scan.valid_size);
    }
    let above: Vec<i64> = segments.range(cut_base + 1..).map(|(&base, _)| base).collect();
    for &base in above.iter().rev() {
        tracing::info!(dir = %dir.display(), base, "truncation: deleting segment");
        remove_segment_files(backend, dir, base).await?;
        segments.remove(&base);
    }
    cut.file.truncate(scan.valid_size).await?;
    // The cut segment is the active one now: its index lives in memory.
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        match backend.remove(&segment_path(dir, cut_base, suffix)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    cut.file.sync().await?;
    backend.sync_dir(dir).await?;
    {
        let mut meta = cut.meta.borrow_mut();
        meta.size = scan.valid_size;
        meta.readable_size = scan.valid_size;
        meta.next_offset = scan.next_offset;
        meta.index = scan.index;
        meta.sealed = false;
    }
    let end = scan.next_offset;
    // A clean offset above the new end would count the next appends there as already compacted.
    let cleaned_to = match cleaned_to {
        Some(clean) if clean > end => {
            write_checkpoint(backend, dir, end).await?;
            Some(end)
        }
        other => other,
    };
    for snapshot in producer_snapshot::list(backend, dir).await?.into_iter().filter(|&at| at > end) {
        producer_snapshot::remove(backend, dir, snapshot).await?;
    }
    let appender = active_appender(cut, scan.valid_size, config).await?;
    tracing::info!(dir = %dir.display(), offset, end, deleted_segments = above.len(), "log truncated");
    Ok(Truncated { end, segments, appender, cleaned_to })
}

impl<B: IoBackend> Log<B> {
    /// Drops every batch at or above `offset` (a follower's truncation; a batch straddling it
    /// goes whole) and returns the new log end. `offset` >= the log end changes nothing;
    /// below the log start it is OffsetOutOfRange. Appends meanwhile fail with
    /// `Error::Truncating`. Crash-safe: see the module comment.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64> {
        let inner = &self.inner;
        inner.check_writable()?;
        let _maintenance = inner.maintenance.lock().await;
        {
            let st = inner.state.borrow();
            if offset >= st.log_end {
                return Ok(st.log_end);
            }
            if offset < st.log_start {
                return Err(Error::OffsetOutOfRange { requested: offset, log_start: st.log_start, high_watermark: st.hw });
            }
        }
        inner.state.borrow_mut().truncating = true;
        let outcome = self.truncate_flushed(offset).await;
        inner.state.borrow_mut().truncating = false;
        inner.queue_space.notify(usize::MAX);
        outcome
    }

    async fn truncate_flushed(&self, offset: i64) -> Result<i64> {
        let inner = &self.inner;
        self.flush().await?;
        {
            // DeleteRecords may have moved the log start while the flush ran.
            let mut st = inner.state.borrow_mut();
            if offset < st.log_start {
                return Err(Error::OffsetOutOfRange { requested: offset, log_start: st.log_start, high_watermark: st.hw });
            }
            st.truncate = Some(TruncateJob { offset, outcome: None });
        }
        inner.writer_wake.notify(1);
        loop {
            let listener = inner.flushed.listen();
            {
                let mut st = inner.state.borrow_mut();
                if let Some(outcome) = st.truncate.as_mut().and_then(|job| job.outcome.take()) {
                    st.truncate = None;
                    return outcome;
                }
                if let Some(p) = &st.poisoned {
                    return Err(Error::Poisoned(p.clone()));
                }
                if st.writer_done {
                    return Err(Error::Closed);
                }
            }
            listener.await;
        }
    }
}

/// A truncation the flusher is asked to run (it owns the active segment's appender).
pub(super) struct TruncateJob {
    pub offset: i64,
    pub outcome: Option<Result<i64>>,
}

impl<B: IoBackend> LogInner<B> {
    /// Steps 2-4, run by the flusher with everything synced. A failure poisons the log (the
    /// files may be half cut: the next open finishes the truncation).
    pub(super) async fn truncate(self: &Rc<Self>, appender: &mut SegmentAppender<B::File>, offset: i64) -> Result<i64> {
        self.truncations.set(self.truncations.get() + 1);
        let generation = self.checkpoint.begin_truncation(offset).await?;
        let (segments, cleaned_to) = {
            let st = self.state.borrow();
            debug_assert!(st.unflushed.is_empty() && st.segment_synced == st.log_end, "truncation starts flushed");
            (st.segments.clone(), st.cleaned_to)
        };
        let truncated = truncate_files(&self.backend, &self.dir, &self.config, segments, offset, cleaned_to).await?;
        {
            let mut st = self.state.borrow_mut();
            if st.epochs.truncate_from_end(truncated.end) {
                st.epochs_version += 1;
            }
        }
        // Before new appends: an epoch entry of the dropped tail must not survive a crash. On a
        // full disk the next open cuts it anyway (it starts at or above the log end there).
        self.store_epochs_unless_disk_full().await?;
        self.checkpoint.end_truncation(truncated.end).await?;
        let end = truncated.end;
        *appender = truncated.appender;
        {
            let mut st = self.state.borrow_mut();
            st.segments = truncated.segments;
            (st.log_end, st.written, st.synced, st.journal_written, st.journal_synced) = (end, end, end, end, end);
            (st.segment_written, st.segment_synced, st.flush_requested, st.checkpointed) = (end, end, end, end);
            st.hw = st.hw.min(end);
            st.direct.clear();
            st.direct_written_at = None;
            st.unsynced_since = None;
            st.producers.truncate_to(end);
            st.cleaned_to = truncated.cleaned_to;
        }
        self.cache.borrow_mut().evict_from(end);
        self.register_with_journal(generation);
        self.truncations.set(self.truncations.get() + 1);
        self.progress.notify(usize::MAX);
        Ok(end)
    }
}
