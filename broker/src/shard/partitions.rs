//! The partition service of a shard: the logs of the partitions `shard_for` gives it, and the
//! requests other shards (and this one) send about them. Nothing else touches these logs.

use crate::kafka::errors::*;
use crate::partition_dirs;
use crate::router::shard_for;
use crate::topics::partition_dir;
use bytes::Bytes;
use futures::future::{join_all, select, Either, LocalBoxFuture};
use futures::FutureExt;
use kafka_protocol::protocol::StrBytes;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};
use storage::io::blocking;
use storage::{AppendInfo, BatchHeader, DmaBackend, Durability, FlushPolicy, Journal, JournalEntry, JournalKey, Log};

pub type PartitionLog = Log<DmaBackend>;

/// A request for the partition service of the shard that owns the partitions named in it.
#[derive(Debug)]
pub enum PartitionRequest {
    /// Appended in the order requests arrive (the mesh queue is FIFO), answered once durable.
    Produce { acks: i16, parts: Vec<ProducePart> },
    Fetch(Vec<FetchPart>),
    /// Answer as soon as any partition's high watermark passes its offset, or after `wait_ms`.
    WaitForData { parts: Vec<WaitPart>, wait_ms: u64 },
    ListOffsets(Vec<OffsetQuery>),
    DeleteRecords(Vec<DeleteRecordsQuery>),
    EpochEndOffsets(Vec<EpochQuery>),
}

/// The answer to a `PartitionRequest`: one entry per partition, in request order.
#[derive(Debug)]
pub enum PartitionReply {
    Produce(Vec<ProduceResult>),
    Fetch(Vec<FetchResult>),
    Woke,
    Offsets(Vec<OffsetAnswer>),
    DeleteRecords(Vec<DeleteRecordsAnswer>),
    EpochEndOffsets(Vec<EpochAnswer>),
}

#[derive(Debug)]
pub struct ProducePart {
    pub topic: StrBytes,
    pub partition: i32,
    pub records: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceResult {
    pub error: i16,
    pub base_offset: i64,
    pub log_start_offset: i64,
}

impl ProduceResult {
    pub fn failed(error: i16) -> ProduceResult {
        ProduceResult { error, base_offset: -1, log_start_offset: -1 }
    }
}

#[derive(Debug, Clone)]
pub struct FetchPart {
    pub topic: StrBytes,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
}

#[derive(Debug, Clone, Default)]
pub struct FetchResult {
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub batches: Vec<Bytes>,
}

impl FetchResult {
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }
}

/// Wake when this partition's high watermark passes `offset`.
#[derive(Debug, Clone)]
pub struct WaitPart {
    pub topic: StrBytes,
    pub partition: i32,
    pub offset: i64,
}

/// ListOffsets for one partition: `timestamp` -1 = latest, -2 = earliest, else the first record
/// at or after it.
#[derive(Debug, Clone)]
pub struct OffsetQuery {
    pub topic: StrBytes,
    pub partition: i32,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAnswer {
    pub error: i16,
    pub timestamp: i64,
    pub offset: i64,
}

impl OffsetAnswer {
    pub fn failed(error: i16) -> OffsetAnswer {
        OffsetAnswer { error, timestamp: -1, offset: -1 }
    }
}

/// DeleteRecords for one partition: move its log start to `before` (-1 = high watermark).
#[derive(Debug, Clone)]
pub struct DeleteRecordsQuery {
    pub topic: StrBytes,
    pub partition: i32,
    pub before: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteRecordsAnswer {
    pub error: i16,
    pub low_watermark: i64,
}

impl DeleteRecordsAnswer {
    pub fn failed(error: i16) -> DeleteRecordsAnswer {
        DeleteRecordsAnswer { error, low_watermark: -1 }
    }
}

/// OffsetForLeaderEpoch for one partition: where `leader_epoch` ends in its log, checked
/// against the epoch the asker believes current (-1 = no check).
#[derive(Debug, Clone)]
pub struct EpochQuery {
    pub topic: StrBytes,
    pub partition: i32,
    pub current_leader_epoch: i32,
    pub leader_epoch: i32,
}

/// The largest epoch at or below the asked one and the offset it ends at (the next epoch's
/// start, or the log end for the latest), -1 and -1 if the log has none that old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochAnswer {
    pub error: i16,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

impl EpochAnswer {
    pub fn failed(error: i16) -> EpochAnswer {
        EpochAnswer { error, leader_epoch: -1, end_offset: -1 }
    }
}

impl PartitionKeyed for EpochQuery {
    fn topic(&self) -> &str {
        self.topic.as_str()
    }
    fn partition(&self) -> i32 {
        self.partition
    }
}

/// Work addressed to one partition (routed to its owner by `scatter::per_partition`).
pub trait PartitionKeyed {
    fn topic(&self) -> &str;
    fn partition(&self) -> i32;
}

impl PartitionKeyed for OffsetQuery {
    fn topic(&self) -> &str {
        self.topic.as_str()
    }
    fn partition(&self) -> i32 {
        self.partition
    }
}

impl PartitionKeyed for DeleteRecordsQuery {
    fn topic(&self) -> &str {
        self.topic.as_str()
    }
    fn partition(&self) -> i32 {
        self.partition
    }
}

/// One partition's log; its flush policy decides what acks=all waits for.
pub struct Partition {
    pub log: PartitionLog,
    flush: FlushPolicy,
}

/// The partitions one shard owns.
pub struct PartitionService {
    shard_id: usize,
    nr_shards: usize,
    data_dir: PathBuf,
    backend: DmaBackend,
    /// The shard's journal, which every log of the shard writes through.
    journal: Journal<DmaBackend>,
    /// At start: each log's entries read back from the journals, replayed when it opens.
    replay: RefCell<HashMap<JournalKey, Vec<JournalEntry>>>,
    partitions: RefCell<HashMap<String, HashMap<i32, Rc<Partition>>>>,
    /// Owned partitions whose log failed to open: answered with KAFKA_STORAGE_ERROR.
    offline: RefCell<HashSet<(String, i32)>>,
    /// Batch cache bytes shared by this shard's logs (`cache.bytes.per.shard`).
    cache_bytes: usize,
}

enum Appended {
    Done(ProduceResult),
    Wait(Rc<Partition>, AppendInfo),
}

impl PartitionService {
    pub fn new(shard_id: usize, nr_shards: usize, data_dir: &Path, backend: DmaBackend, journal: Journal<DmaBackend>, cache_bytes: usize) -> PartitionService {
        PartitionService {
            shard_id,
            nr_shards,
            data_dir: data_dir.to_path_buf(),
            backend,
            journal,
            replay: RefCell::new(HashMap::new()),
            partitions: RefCell::new(HashMap::new()),
            offline: RefCell::new(HashSet::new()),
            cache_bytes,
        }
    }

    /// The shard's journal.
    pub fn journal(&self) -> &Journal<DmaBackend> {
        &self.journal
    }

    /// Entries read back from the journals at start, by log, replayed as the logs open.
    pub fn set_replay(&self, replay: HashMap<JournalKey, Vec<JournalEntry>>) {
        *self.replay.borrow_mut() = replay;
    }

    /// Every open log's offsets and sizes (metrics).
    pub fn log_gauges(&self) -> Vec<crate::metrics::snapshot::LogGauges> {
        let partitions = self.partitions.borrow();
        let mut out = Vec::with_capacity(partitions.values().map(HashMap::len).sum());
        for (topic, logs) in partitions.iter() {
            for (&partition, p) in logs {
                let log = &p.log;
                out.push(crate::metrics::snapshot::LogGauges {
                    topic: topic.clone(),
                    partition,
                    log_start: log.log_start_offset(),
                    log_end: log.log_end_offset(),
                    high_watermark: log.high_watermark(),
                    size_bytes: log.size_bytes(),
                    cache_bytes: log.cache_bytes() as u64,
                    write_queue_bytes: log.write_queue_bytes() as u64,
                });
            }
        }
        out
    }

    /// Owned partitions that cannot serve: their log did not open, or it is poisoned.
    pub fn offline_count(&self) -> u64 {
        let poisoned = self.partitions.borrow().values().flat_map(|m| m.values()).filter(|p| p.log.poisoned().is_some()).count();
        (self.offline.borrow().len() + poisoned) as u64
    }

    /// Every request but Produce (whose append must run in arrival order before its wait).
    pub async fn serve(&self, req: PartitionRequest) -> PartitionReply {
        match req {
            PartitionRequest::Produce { acks, parts } => PartitionReply::Produce(self.produce_append(acks, parts).await.await),
            PartitionRequest::Fetch(parts) => PartitionReply::Fetch(self.fetch(&parts).await),
            PartitionRequest::WaitForData { parts, wait_ms } => {
                self.wait(&parts, wait_ms).await;
                PartitionReply::Woke
            }
            PartitionRequest::ListOffsets(q) => PartitionReply::Offsets(self.list_offsets(&q).await),
            PartitionRequest::DeleteRecords(q) => PartitionReply::DeleteRecords(self.delete_records(&q).await),
            PartitionRequest::EpochEndOffsets(q) => PartitionReply::EpochEndOffsets(self.epoch_end_offsets(&q)),
        }
    }

    fn get(&self, topic: &str, partition: i32) -> Result<Rc<Partition>, i16> {
        debug_assert_eq!(shard_for(topic, partition, self.nr_shards), self.shard_id, "{topic}-{partition} routed to wrong shard");
        if let Some(p) = self.partitions.borrow().get(topic).and_then(|m| m.get(&partition)) {
            return Ok(p.clone());
        }
        if self.offline.borrow().contains(&(topic.to_string(), partition)) {
            return Err(KAFKA_STORAGE_ERROR);
        }
        Err(UNKNOWN_TOPIC_OR_PARTITION)
    }

    /// Every open log of the shard with its topic and partition (compaction).
    pub fn all_named(&self) -> Vec<(String, i32, Rc<Partition>)> {
        let partitions = self.partitions.borrow();
        partitions.iter().flat_map(|(t, m)| m.iter().map(move |(p, part)| (t.clone(), *p, part.clone()))).collect()
    }

    /// Every open log of the shard (retention, shutdown).
    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().flat_map(|m| m.values().cloned()).collect()
    }

    // ---- produce -------------------------------------------------------------------------

    /// Phase 1, in request order: validate and append every part. Returns phase 2, which waits
    /// for the durability `acks` asks for and yields one result per part, in order.
    pub async fn produce_append(&self, acks: i16, parts: Vec<ProducePart>) -> LocalBoxFuture<'static, Vec<ProduceResult>> {
        let mut appended = Vec::with_capacity(parts.len());
        for part in parts {
            appended.push(self.append_one(part).await);
        }
        join_all(appended.into_iter().map(move |a| wait_for_acks(a, acks))).boxed_local()
    }

    /// Appends one partition's batches. Takes the part by value: when its records are the
    /// frame's only user, storage rewrites the offsets in place instead of copying.
    async fn append_one(&self, part: ProducePart) -> Appended {
        let fail = |error| Appended::Done(ProduceResult::failed(error));
        let partition = match self.get(&part.topic, part.partition) {
            Ok(p) => p,
            Err(code) => return fail(code),
        };
        match BatchHeader::parse(&part.records) {
            Ok(h) if h.is_transactional() => return fail(INVALID_TXN_STATE),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(topic = %part.topic.as_str(), partition = part.partition, "rejected batch: {e}");
                return fail(from_storage(&e));
            }
        }
        // The log checks idempotent producers' sequences in the same step as it assigns
        // offsets: a retry is answered with the original's offsets, never appended twice.
        let bytes = part.records.len() as u64;
        match partition.log.append(part.records).await {
            Ok(info) => {
                if !info.duplicate {
                    crate::metrics::produced(&part.topic, part.partition, bytes, (info.last_offset - info.base_offset + 1) as u64);
                }
                Appended::Wait(partition, info)
            }
            Err(e) => {
                match &e {
                    storage::Error::OutOfOrderSequence { .. } | storage::Error::InvalidProducerEpoch { .. } => {
                        tracing::debug!(topic = %part.topic.as_str(), partition = part.partition, "refused batch: {e}")
                    }
                    _ => tracing::warn!(topic = %part.topic.as_str(), partition = part.partition, "append failed: {e}"),
                }
                fail(from_storage(&e))
            }
        }
    }

    // ---- fetch ---------------------------------------------------------------------------

    /// Reads every part concurrently: reads that miss the batch cache wait on disk, and a fetch
    /// of many partitions should wait for the slowest read, not for their sum.
    pub async fn fetch(&self, parts: &[FetchPart]) -> Vec<FetchResult> {
        join_all(parts.iter().map(|part| self.fetch_one(part))).await
    }

    async fn fetch_one(&self, part: &FetchPart) -> FetchResult {
        let partition = match self.get(&part.topic, part.partition) {
            Ok(p) => p,
            Err(error) => return FetchResult { error, high_watermark: -1, log_start_offset: -1, batches: vec![] },
        };
        let log = &partition.log;
        match log.read(part.offset, part.max_bytes).await {
            Ok(r) => FetchResult {
                error: NONE,
                high_watermark: r.high_watermark,
                log_start_offset: r.log_start_offset,
                batches: r.batches,
            },
            Err(e) => {
                if !matches!(e, storage::Error::OffsetOutOfRange { .. }) {
                    tracing::warn!(dir = %log.dir().display(), "read failed: {e}");
                }
                FetchResult {
                    error: from_storage(&e),
                    high_watermark: log.high_watermark(),
                    log_start_offset: log.log_start_offset(),
                    batches: vec![],
                }
            }
        }
    }

    /// Waits until one of `parts` has data past its offset, or `wait_ms` passes. Never spins: it
    /// sleeps on the logs' high-watermark events and a timer.
    pub async fn wait(&self, parts: &[WaitPart], wait_ms: u64) {
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let mut listeners = Vec::with_capacity(parts.len());
            for part in parts {
                let Ok(partition) = self.get(&part.topic, part.partition) else { return };
                listeners.push(partition.log.listen());
                // Checked after listening, so a move in between is not missed.
                if partition.log.high_watermark() > part.offset {
                    return;
                }
                partition.log.want_visible(part.offset);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if listeners.is_empty() || remaining.is_zero() {
                return;
            }
            let timer = glommio::timer::Timer::new(remaining);
            if let Either::Right(_) = select(futures::future::select_all(listeners), timer).await {
                return;
            }
        }
    }

    // ---- offsets -------------------------------------------------------------------------

    pub async fn list_offsets(&self, queries: &[OffsetQuery]) -> Vec<OffsetAnswer> {
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            let answer = match self.get(&q.topic, q.partition) {
                Ok(partition) => offset_of(&partition.log, q.timestamp).await,
                Err(code) => OffsetAnswer::failed(code),
            };
            out.push(answer);
        }
        out
    }

    /// As a Kafka leader answers OffsetForLeaderEpoch: an asker behind this node's epoch is
    /// fenced, one ahead of it knows an epoch this node does not (yet).
    pub fn epoch_end_offsets(&self, queries: &[EpochQuery]) -> Vec<EpochAnswer> {
        let current = crate::constants::SINGLE_NODE_LEADER_EPOCH;
        queries
            .iter()
            .map(|q| match self.get(&q.topic, q.partition) {
                Err(code) => EpochAnswer::failed(code),
                Ok(_) if q.current_leader_epoch >= 0 && q.current_leader_epoch < current => EpochAnswer::failed(FENCED_LEADER_EPOCH),
                Ok(_) if q.current_leader_epoch > current => EpochAnswer::failed(UNKNOWN_LEADER_EPOCH),
                Ok(partition) => {
                    let (leader_epoch, end_offset) = partition.log.end_offset_for_epoch(q.leader_epoch);
                    EpochAnswer { error: NONE, leader_epoch, end_offset }
                }
            })
            .collect()
    }

    pub async fn delete_records(&self, queries: &[DeleteRecordsQuery]) -> Vec<DeleteRecordsAnswer> {
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            let answer = match self.get(&q.topic, q.partition) {
                Err(code) => DeleteRecordsAnswer::failed(code),
                Ok(partition) => {
                    // -1 means "up to the high watermark".
                    let before = if q.before == -1 { partition.log.high_watermark() } else { q.before };
                    match partition.log.delete_records(before).await {
                        Ok(start) => DeleteRecordsAnswer { error: NONE, low_watermark: start },
                        Err(e) => DeleteRecordsAnswer::failed(from_storage(&e)),
                    }
                }
            };
            out.push(answer);
        }
        out
    }

    // ---- lifecycle -----------------------------------------------------------------------

    /// Opens (or creates) a partition's log. A directory left by an earlier topic of the same
    /// name is moved aside first (`partition_dirs::claim`). A log that cannot be opened (e.g.
    /// corrupt synced data) leaves the partition offline: KAFKA_STORAGE_ERROR to clients, the
    /// reason in the log, and nothing deleted.
    pub async fn open(&self, topic: &str, p: i32, topic_id: u128, config: storage::LogConfig) {
        let dir = partition_dir(&self.data_dir, topic, p);
        let claim_dir = dir.clone();
        let opened = match blocking(move || partition_dirs::claim(&claim_dir, topic_id)).await {
            Ok(retired) => {
                if let Some(aside) = retired {
                    glommio::spawn_local(remove_dir_off_reactor(aside)).detach();
                }
                let key = JournalKey { topic_id, partition: p };
                let replay = self.replay.borrow_mut().remove(&key).unwrap_or_default();
                Log::open_with_journal(self.backend.clone(), dir.clone(), config.clone(), self.journal.clone(), key, replay).await
            }
            Err(e) => Err(storage::Error::Io(e)),
        };
        match opened {
            Ok(log) => {
                log.set_leader_epoch(crate::constants::SINGLE_NODE_LEADER_EPOCH);
                let partition = Rc::new(Partition { log, flush: config.flush });
                self.partitions.borrow_mut().entry(topic.to_string()).or_default().insert(p, partition);
            }
            Err(e) => {
                tracing::error!(topic, partition = p, dir = %dir.display(), "partition offline, cannot open its log: {e}");
                self.offline.borrow_mut().insert((topic.to_string(), p));
            }
        }
    }

    /// A deleted topic: closes its logs and removes the directories of the `partitions` it had
    /// that this shard owns (offline ones have directories too).
    pub async fn remove_topic(&self, name: &str, partitions: i32) {
        let removed = self.partitions.borrow_mut().remove(name).unwrap_or_default();
        for (p, partition) in removed {
            if let Err(e) = partition.log.close().await {
                tracing::warn!(topic = %name, partition = p, "close on delete: {e}");
            }
        }
        for p in (0..partitions).filter(|p| shard_for(name, *p, self.nr_shards) == self.shard_id) {
            retire_and_remove(partition_dir(&self.data_dir, name, p)).await;
        }
        self.offline.borrow_mut().retain(|(t, _)| t != name);
    }

    /// Splits the shard's cache budget evenly over its logs (run after partitions come or go).
    pub fn rebalance_cache(&self) {
        use crate::constants::LOG_BATCH_CACHE_BYTES_MAX;
        let partitions = self.partitions.borrow();
        let count: usize = partitions.values().map(|m| m.len()).sum();
        let share = (self.cache_bytes / count.max(1)).min(LOG_BATCH_CACHE_BYTES_MAX);
        for partition in partitions.values().flat_map(|m| m.values()) {
            partition.log.set_cache_bytes_max(share);
        }
    }

    /// Flushes and closes every log (clean shutdown).
    pub async fn close_all(&self) {
        for partition in self.all() {
            if let Err(e) = partition.log.close().await {
                tracing::error!(dir = %partition.log.dir().display(), "close failed: {e}");
            }
        }
    }
}

/// Phase 2 of one part: waits for the durability `acks` asks for. A duplicate waits for its
/// original the same way: it may still be on its way to disk, and must fail if the original's
/// write does.
async fn wait_for_acks(appended: Appended, acks: i16) -> ProduceResult {
    let (partition, info) = match appended {
        Appended::Done(r) => return r,
        Appended::Wait(partition, info) => (partition, info),
    };
    let level = match (acks, partition.flush) {
        (-1, FlushPolicy::Always) => Some(Durability::Synced),
        (0, _) => None,
        _ => Some(Durability::Written),
    };
    let result = match level {
        Some(level) => partition.log.wait_appended(&info, level).await,
        None => Ok(()),
    };
    let error = match result {
        Ok(()) => NONE,
        Err(e) => {
            tracing::error!(dir = %partition.log.dir().display(), "append not durable: {e}");
            from_storage(&e)
        }
    };
    ProduceResult { error, base_offset: info.base_offset, log_start_offset: info.log_start_offset }
}

async fn offset_of(log: &PartitionLog, timestamp: i64) -> OffsetAnswer {
    let ok = |timestamp, offset| OffsetAnswer { error: NONE, timestamp, offset };
    match timestamp {
        // -1 latest, -2 earliest; both with timestamp -1 as Kafka answers.
        -1 => ok(-1, log.high_watermark()),
        -2 => ok(-1, log.log_start_offset()),
        ts if ts >= 0 => match log.offset_for_timestamp(ts).await {
            Ok(Some((base, batch_ts))) => {
                let (offset, found_ts) = first_record_at_or_after(log, base, ts).await.unwrap_or((base, batch_ts));
                ok(found_ts, offset)
            }
            Ok(None) => ok(-1, -1),
            Err(e) => OffsetAnswer::failed(from_storage(&e)),
        },
        _ => OffsetAnswer::failed(INVALID_REQUEST),
    }
}

/// Kafka answers a time query with the first *record* at or after `ts`; the index finds the batch,
/// and this decodes that one batch (ListOffsets only, never the produce/fetch path).
async fn first_record_at_or_after(log: &PartitionLog, base: i64, ts: i64) -> Option<(i64, i64)> {
    let read = log.read(base, 1).await.ok()?;
    let mut batch = read.batches.into_iter().next()?;
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch).ok()?;
    set.records.iter().find(|r| r.timestamp >= ts && r.offset >= base).map(|r| (r.offset, r.timestamp))
}

/// Moves a deleted partition's directory aside (so a topic created with the same name can never
/// see its records), then removes it; both off the reactor. Failures are logged; a directory
/// left behind is removed at the next start.
async fn retire_and_remove(dir: PathBuf) {
    let retiring = dir.clone();
    let retired = blocking(move || match retiring.exists() {
        true => partition_dirs::retire(&retiring).map(Some),
        false => Ok(None),
    });
    match retired.await {
        Ok(Some(aside)) => remove_dir_off_reactor(aside).await,
        Ok(None) => {}
        Err(e) => tracing::error!(dir = %dir.display(), "cannot move deleted partition directory aside (it is ignored by a new topic of that name, removed at next start): {e}"),
    }
}

async fn remove_dir_off_reactor(dir: PathBuf) {
    let _ = blocking(move || {
        partition_dirs::remove_retired(&dir);
        Ok(())
    })
    .await;
}
