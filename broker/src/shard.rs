//! A shard: one glommio executor pinned to one core, owning the partitions `shard_for` gives it.
//!
//! All partition state (logs, producer windows) is owned here and touched only by this shard's
//! tasks; other shards reach it through `ShardRequest`s. Shard 0 additionally acts as controller
//! for topic metadata, which every shard mirrors in its own `TopicTable`.

use crate::config::BrokerConfig;
use crate::kafka::errors::*;
use crate::producers::{last_seq, Producers, SeqCheck};
use crate::router::*;
use crate::topics::{self, partition_dir, TopicMeta, TopicTable};
use futures::future::{join_all, select, Either, LocalBoxFuture};
use futures::FutureExt;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};
use storage::{AppendInfo, BatchHeader, DmaBackend, Durability, FlushPolicy, Log};

pub type PartitionLog = Log<DmaBackend>;

/// One partition's log plus the producer bookkeeping that guards its appends.
pub struct Partition {
    pub log: PartitionLog,
    /// The topic's flush policy: decides what acks=all waits for.
    flush: FlushPolicy,
    producers: RefCell<Producers>,
}

pub struct Shard {
    pub id: usize,
    pub nr_shards: usize,
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub router: Router,
    topics: RefCell<TopicTable>,
    partitions: RefCell<HashMap<String, HashMap<i32, Rc<Partition>>>>,
    /// Owned partitions whose log failed to open: answered with KAFKA_STORAGE_ERROR.
    offline: RefCell<HashSet<(String, i32)>>,
    backend: DmaBackend,
    next_producer_id: Cell<i64>,
    /// Serialises metadata changes on the controller (shard 0).
    controller_lock: glommio::sync::Semaphore,
    pub connections: Cell<usize>,
    /// Bytes of requests read but not yet answered, across this shard's connections.
    pub request_budget: Rc<glommio::sync::Semaphore>,
}

pub const CONTROLLER_SHARD: usize = 0;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Shard {
    pub async fn open(
        config: BrokerConfig,
        cluster_id: String,
        table: TopicTable,
        router: Router,
    ) -> Rc<Shard> {
        // Producer ids: start-up time in ms << 20, interleaved across shards: unique across
        // restarts unless a shard hands out more than ~1M ids per ms of uptime.
        let first_pid = (now_ms() << 20) + router.me as i64;
        let shard = Rc::new(Shard {
            id: router.me,
            nr_shards: router.nr_shards,
            config,
            cluster_id,
            router,
            topics: RefCell::new(TopicTable::default()),
            partitions: RefCell::new(HashMap::new()),
            offline: RefCell::new(HashSet::new()),
            backend: DmaBackend::new(),
            next_producer_id: Cell::new(first_pid),
            controller_lock: glommio::sync::Semaphore::new(1),
            connections: Cell::new(0),
            request_budget: Rc::new(glommio::sync::Semaphore::new(crate::constants::SHARD_REQUEST_BYTES_IN_FLIGHT_MAX)),
        });
        for meta in table.topics.into_values() {
            shard.apply(TopicChange::Upsert(meta)).await;
        }
        shard
    }

    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        shard_for(topic, partition, self.nr_shards) == self.id
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.topics.borrow().get(name).cloned()
    }

    pub fn topic_partitions(&self, name: &str) -> Option<i32> {
        self.topics.borrow().get(name).map(|t| t.partitions)
    }

    pub fn all_topics(&self) -> Vec<TopicMeta> {
        let mut all: Vec<_> = self.topics.borrow().topics.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn partition(&self, topic: &str, partition: i32) -> Result<Rc<Partition>, i16> {
        debug_assert!(self.owns(topic, partition), "{topic}-{partition} routed to wrong shard");
        if let Some(p) = self.partitions.borrow().get(topic).and_then(|m| m.get(&partition)) {
            return Ok(p.clone());
        }
        if self.offline.borrow().contains(&(topic.to_string(), partition)) {
            return Err(KAFKA_STORAGE_ERROR);
        }
        Err(UNKNOWN_TOPIC_OR_PARTITION)
    }

    pub fn allocate_producer_id(&self) -> i64 {
        let id = self.next_producer_id.get();
        self.next_producer_id.set(id + self.nr_shards as i64);
        id
    }

    /// Runs `req` here if this shard is the target, else on the target shard.
    pub fn call(self: &Rc<Self>, target: usize, req: ShardRequest) -> LocalBoxFuture<'static, Result<ShardResponse, Unreachable>> {
        let shard = self.clone();
        async move {
            if target == shard.id {
                return Ok(shard.serve(req).await);
            }
            shard.router.call(target, req).await
        }
        .boxed_local()
    }

    /// Executes a request this shard owns.
    pub async fn serve(self: Rc<Self>, req: ShardRequest) -> ShardResponse {
        match req {
            ShardRequest::Produce { acks, parts } => {
                let done = self.produce_append(acks, parts).await;
                ShardResponse::Produce(done.await)
            }
            ShardRequest::Fetch(parts) => ShardResponse::Fetch(self.fetch_local(&parts).await),
            ShardRequest::WaitForData { parts, wait_ms } => {
                self.wait_local(&parts, wait_ms).await;
                ShardResponse::Woke
            }
            ShardRequest::ListOffsets(q) => ShardResponse::Offsets(self.list_offsets_local(&q).await),
            ShardRequest::DeleteRecords(q) => ShardResponse::DeleteRecords(self.delete_records_local(&q).await),
            ShardRequest::Controller(cmd) => ShardResponse::Controller(self.controller(cmd).await),
            ShardRequest::Apply(change) => {
                self.apply(change).await;
                ShardResponse::Applied
            }
        }
    }

    /// Serves requests and responses arriving from the other shards until the mesh closes.
    pub fn serve_inbound(self: &Rc<Self>, mut inbound: Inbound) {
        for (peer, rx) in inbound.requests.streams() {
            let shard = self.clone();
            glommio::spawn_local(async move {
                while let Some((id, req)) = rx.recv().await {
                    let shard2 = shard.clone();
                    // Produce appends happen here, in arrival order; only the wait is spawned.
                    let fut: LocalBoxFuture<'static, ShardResponse> = match req {
                        ShardRequest::Produce { acks, parts } => {
                            let done = shard.produce_append(acks, parts).await;
                            async move { ShardResponse::Produce(done.await) }.boxed_local()
                        }
                        other => shard2.clone().serve(other).boxed_local(),
                    };
                    glommio::spawn_local(async move {
                        let resp = fut.await;
                        shard2.router.respond(peer, id, resp).await;
                    })
                    .detach();
                }
            })
            .detach();
        }
        for (_peer, rx) in inbound.responses.streams() {
            let shard = self.clone();
            glommio::spawn_local(async move {
                while let Some((id, resp)) = rx.recv().await {
                    shard.router.complete(id, resp);
                }
            })
            .detach();
        }
    }

    // ---- produce -------------------------------------------------------------------------

    /// Phase 1, in request order: validate and append every part. Returns phase 2, which waits
    /// for the durability `acks` asks for and yields one result per part, in order.
    pub async fn produce_append(
        self: &Rc<Self>,
        acks: i16,
        parts: Vec<ProducePart>,
    ) -> LocalBoxFuture<'static, Vec<ProduceResult>> {
        let mut appended = Vec::with_capacity(parts.len());
        for part in &parts {
            appended.push(self.append_one(part).await);
        }
        async move {
            let waits = appended.into_iter().map(|a| async move {
                match a {
                    Appended::Done(r) => r,
                    Appended::Wait(partition, info) => {
                        let level = match (acks, partition.flush) {
                            (-1, FlushPolicy::Always) => Some(Durability::Synced),
                            (0, _) => None,
                            _ => Some(Durability::Written),
                        };
                        let result = match level {
                            Some(level) => partition.log.wait_durable(info.last_offset + 1, level).await,
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
                }
            });
            join_all(waits).await
        }
        .boxed_local()
    }

    async fn append_one(&self, part: &ProducePart) -> Appended {
        let fail = |error| Appended::Done(ProduceResult { error, base_offset: -1, log_start_offset: -1 });
        let partition = match self.partition(&part.topic, part.partition) {
            Ok(p) => p,
            Err(code) => return fail(code),
        };
        let header = match BatchHeader::parse(&part.records) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(topic = %part.topic.as_str(), partition = part.partition, "rejected batch: {e}");
                return fail(from_storage(&e));
            }
        };
        if header.is_transactional() {
            return fail(INVALID_TXN_STATE);
        }
        let idempotent = header.producer_id >= 0;
        let last = last_seq(header.base_sequence, header.last_offset_delta);
        if idempotent {
            let check = partition.producers.borrow().check(header.producer_id, header.producer_epoch, header.base_sequence, last);
            match check {
                SeqCheck::Append => {}
                SeqCheck::Duplicate(base_offset) => {
                    let log_start_offset = partition.log.log_start_offset();
                    return Appended::Done(ProduceResult { error: NONE, base_offset, log_start_offset });
                }
                SeqCheck::Reject(code) => return fail(code),
            }
        }
        match partition.log.append(part.records.clone()).await {
            Ok(info) => {
                if idempotent {
                    partition.producers.borrow_mut().record(
                        header.producer_id, header.producer_epoch, header.base_sequence, last, info.base_offset);
                }
                Appended::Wait(partition, info)
            }
            Err(e) => {
                tracing::warn!(topic = %part.topic.as_str(), partition = part.partition, "append failed: {e}");
                fail(from_storage(&e))
            }
        }
    }

    // ---- fetch ---------------------------------------------------------------------------

    /// Reads every part concurrently: reads that miss the batch cache wait on disk, and a fetch
    /// of many partitions should wait for the slowest read, not for their sum.
    pub async fn fetch_local(&self, parts: &[FetchPart]) -> Vec<FetchResult> {
        join_all(parts.iter().map(|part| self.fetch_one(part))).await
    }

    async fn fetch_one(&self, part: &FetchPart) -> FetchResult {
        let partition = match self.partition(&part.topic, part.partition) {
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
    pub async fn wait_local(&self, parts: &[(kafka_protocol::protocol::StrBytes, i32, i64)], wait_ms: u64) {
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let mut listeners = Vec::with_capacity(parts.len());
            for (topic, p, offset) in parts {
                let Ok(partition) = self.partition(topic, *p) else { return };
                listeners.push(partition.log.listen());
                // Checked after listening, so a move in between is not missed.
                if partition.log.high_watermark() > *offset {
                    return;
                }
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

    pub async fn list_offsets_local(&self, queries: &[(kafka_protocol::protocol::StrBytes, i32, i64)]) -> Vec<(i16, i64, i64)> {
        let mut out = Vec::with_capacity(queries.len());
        for (topic, p, ts) in queries {
            let partition = match self.partition(topic, *p) {
                Ok(p) => p,
                Err(code) => {
                    out.push((code, -1, -1));
                    continue;
                }
            };
            let log = &partition.log;
            out.push(match *ts {
                // -1 latest, -2 earliest; both with timestamp -1 as Kafka answers.
                -1 => (NONE, -1, log.high_watermark()),
                -2 => (NONE, -1, log.log_start_offset()),
                ts if ts >= 0 => match log.offset_for_timestamp(ts).await {
                    Ok(Some((base, batch_ts))) => {
                        let (offset, found_ts) = first_record_at_or_after(log, base, ts).await.unwrap_or((base, batch_ts));
                        (NONE, found_ts, offset)
                    }
                    Ok(None) => (NONE, -1, -1),
                    Err(e) => (from_storage(&e), -1, -1),
                },
                _ => (INVALID_REQUEST, -1, -1),
            });
        }
        out
    }

    pub async fn delete_records_local(&self, queries: &[(kafka_protocol::protocol::StrBytes, i32, i64)]) -> Vec<(i16, i64)> {
        let mut out = Vec::with_capacity(queries.len());
        for (topic, p, before) in queries {
            let result = match self.partition(topic, *p) {
                Err(code) => (code, -1),
                Ok(partition) => {
                    // -1 means "up to the high watermark".
                    let before = if *before == -1 { partition.log.high_watermark() } else { *before };
                    match partition.log.delete_records(before).await {
                        Ok(start) => (NONE, start),
                        Err(e) => (from_storage(&e), -1),
                    }
                }
            };
            out.push(result);
        }
        out
    }

    // ---- metadata ------------------------------------------------------------------------

    /// Applies a topic change broadcast by the controller: opens the logs of new partitions this
    /// shard owns, or closes and deletes the logs of a deleted topic.
    pub async fn apply(&self, change: TopicChange) {
        match change {
            TopicChange::Upsert(meta) => {
                let old = self.topic_partitions(&meta.name).unwrap_or(0);
                let log_config = meta.log_config(&self.config.log);
                self.topics.borrow_mut().upsert(meta.clone());
                for p in old..meta.partitions {
                    if self.owns(&meta.name, p) {
                        self.open_partition(&meta.name, p, log_config.clone()).await;
                    }
                }
                self.rebalance_cache();
            }
            TopicChange::Delete(name) => {
                self.topics.borrow_mut().remove(&name);
                let removed = self.partitions.borrow_mut().remove(&name).unwrap_or_default();
                for (p, partition) in removed {
                    if let Err(e) = partition.log.close().await {
                        tracing::warn!(topic = %name, partition = p, "close on delete: {e}");
                    }
                    let dir = partition.log.dir().to_path_buf();
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::error!(dir = %dir.display(), "cannot delete partition dir: {e}");
                    }
                }
                self.offline.borrow_mut().retain(|(t, _)| *t != name);
                self.rebalance_cache();
            }
        }
    }

    async fn open_partition(&self, topic: &str, p: i32, config: storage::LogConfig) {
        let dir = partition_dir(&self.config.data_dir, topic, p);
        match Log::open(self.backend.clone(), dir.clone(), config.clone()).await {
            Ok(log) => {
                let flush = config.flush;
                let partition = Rc::new(Partition { log, flush, producers: RefCell::new(Producers::default()) });
                self.partitions.borrow_mut().entry(topic.to_string()).or_default().insert(p, partition);
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), "partition offline, cannot open its log: {e}");
                self.offline.borrow_mut().insert((topic.to_string(), p));
            }
        }
    }

    /// Splits the shard's cache budget evenly over its logs (run after partitions come or go).
    fn rebalance_cache(&self) {
        use crate::constants::{LOG_BATCH_CACHE_BYTES_MAX, SHARD_BATCH_CACHE_BYTES};
        let partitions = self.partitions.borrow();
        let count: usize = partitions.values().map(|m| m.len()).sum();
        let share = (SHARD_BATCH_CACHE_BYTES / count.max(1)).min(LOG_BATCH_CACHE_BYTES_MAX);
        for partition in partitions.values().flat_map(|m| m.values()) {
            partition.log.set_cache_bytes_max(share);
        }
    }

    /// Flushes and closes every log (clean shutdown).
    pub async fn close_all(&self) {
        let all: Vec<_> = self.partitions.borrow().values().flat_map(|m| m.values().cloned()).collect();
        for partition in all {
            if let Err(e) = partition.log.close().await {
                tracing::error!(dir = %partition.log.dir().display(), "close failed: {e}");
            }
        }
    }

    /// Applies retention to every owned log; run periodically.
    pub async fn enforce_retention(&self) {
        let all: Vec<_> = self.partitions.borrow().values().flat_map(|m| m.values().cloned()).collect();
        for partition in all {
            match partition.log.apply_retention(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(dir = %partition.log.dir().display(), segments = n, "retention deleted segments"),
                Err(e) => tracing::warn!(dir = %partition.log.dir().display(), "retention failed: {e}"),
            }
        }
    }

    // ---- controller (shard 0) --------------------------------------------------------------

    async fn controller(self: &Rc<Self>, cmd: ControllerCommand) -> Vec<(String, i16, Option<String>)> {
        assert_eq!(self.id, CONTROLLER_SHARD, "controller commands go to shard 0");
        let _permit = self.controller_lock.acquire_permit(1).await.expect("controller lock never closes");
        match cmd {
            ControllerCommand::CreateTopics { topics, validate_only } => self.create_topics(topics, validate_only).await,
            ControllerCommand::DeleteTopics(names) => self.delete_topics(names).await,
            ControllerCommand::CreatePartitions { topics, validate_only } => {
                self.create_partitions(topics, validate_only).await
            }
        }
    }

    fn check_spec(&self, spec: &TopicSpec) -> Result<(), (i16, String)> {
        let err = |e: topics::TopicError| (from_topic(&e), e.to_string());
        topics::validate_topic_name(&spec.name).map_err(err)?;
        topics::validate_partitions(spec.partitions).map_err(err)?;
        for (k, v) in &spec.configs {
            topics::validate_config(k, v).map_err(err)?;
        }
        if self.topic(&spec.name).is_some() {
            return Err((TOPIC_ALREADY_EXISTS, format!("topic {} already exists", spec.name)));
        }
        Ok(())
    }

    async fn create_topics(self: &Rc<Self>, specs: Vec<TopicSpec>, validate_only: bool) -> Vec<(String, i16, Option<String>)> {
        let mut results = Vec::with_capacity(specs.len());
        let mut created = Vec::new();
        let mut seen = HashSet::new();
        for spec in specs {
            let verdict = if !seen.insert(spec.name.clone()) {
                Err((INVALID_REQUEST, format!("topic {} named twice", spec.name)))
            } else {
                self.check_spec(&spec)
            };
            match verdict {
                Err((code, msg)) => results.push((spec.name, code, Some(msg))),
                Ok(()) => {
                    if !validate_only {
                        created.push(TopicMeta {
                            name: spec.name.clone(),
                            id: rand::random::<u128>() | 1,
                            partitions: spec.partitions,
                            configs: spec.configs.into_iter().collect(),
                        });
                    }
                    results.push((spec.name, NONE, None));
                }
            }
        }
        if !created.is_empty() {
            let changes = created.into_iter().map(TopicChange::Upsert).collect();
            if let Err(e) = self.commit(changes).await {
                tracing::error!("cannot persist topic metadata: {e}");
                for r in results.iter_mut().filter(|r| r.1 == NONE) {
                    *r = (r.0.clone(), KAFKA_STORAGE_ERROR, Some(format!("metadata write failed: {e}")));
                }
            }
        }
        for (name, code, _) in &results {
            if *code == NONE && !validate_only {
                tracing::info!(topic = %name, "topic created");
            }
        }
        results
    }

    async fn delete_topics(self: &Rc<Self>, names: Vec<String>) -> Vec<(String, i16, Option<String>)> {
        let mut results = Vec::with_capacity(names.len());
        let mut changes = Vec::new();
        for name in names {
            if self.topic(&name).is_some() {
                changes.push(TopicChange::Delete(name.clone()));
                results.push((name, NONE, None));
            } else {
                results.push((name, UNKNOWN_TOPIC_OR_PARTITION, None));
            }
        }
        if let Err(e) = self.commit(changes).await {
            tracing::error!("cannot persist topic metadata: {e}");
        }
        results
    }

    async fn create_partitions(self: &Rc<Self>, topics: Vec<(String, i32)>, validate_only: bool) -> Vec<(String, i16, Option<String>)> {
        let mut results = Vec::with_capacity(topics.len());
        let mut changes = Vec::new();
        for (name, count) in topics {
            let Some(mut meta) = self.topic(&name) else {
                results.push((name, UNKNOWN_TOPIC_OR_PARTITION, None));
                continue;
            };
            if count <= meta.partitions || topics::validate_partitions(count).is_err() {
                let msg = format!("topic {name} has {} partitions; new count {count} must be larger and <= {}",
                    meta.partitions, crate::constants::TOPIC_PARTITIONS_MAX);
                results.push((name, INVALID_PARTITIONS, Some(msg)));
                continue;
            }
            meta.partitions = count;
            if !validate_only {
                changes.push(TopicChange::Upsert(meta));
            }
            results.push((name, NONE, None));
        }
        if let Err(e) = self.commit(changes).await {
            tracing::error!("cannot persist topic metadata: {e}");
        }
        results
    }

    /// Persists the table with `changes` applied, then applies them on every shard.
    async fn commit(self: &Rc<Self>, changes: Vec<TopicChange>) -> std::io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut table = self.topics.borrow().clone();
        for change in &changes {
            match change {
                TopicChange::Upsert(meta) => table.upsert(meta.clone()),
                TopicChange::Delete(name) => {
                    table.remove(name);
                }
            }
        }
        table.persist(&self.config.data_dir)?;
        for change in changes {
            let calls = (0..self.nr_shards).map(|s| self.call(s, ShardRequest::Apply(change.clone())));
            for result in join_all(calls).await {
                if let Err(e) = result {
                    tracing::warn!("metadata change not applied: {e}");
                }
            }
        }
        Ok(())
    }

    /// Creates topics through the controller; the change is visible on this shard when it returns.
    pub async fn create_topics_via_controller(self: &Rc<Self>, topics: Vec<TopicSpec>, validate_only: bool) -> Vec<(String, i16, Option<String>)> {
        self.controller_call(ControllerCommand::CreateTopics { topics, validate_only }).await
    }

    /// Runs a metadata command on the controller. An unreachable controller (shutting down) gives
    /// an empty answer; handlers report every topic as failed then.
    pub async fn controller_call(self: &Rc<Self>, cmd: ControllerCommand) -> Vec<(String, i16, Option<String>)> {
        match self.call(CONTROLLER_SHARD, ShardRequest::Controller(cmd)).await {
            Ok(ShardResponse::Controller(r)) => r,
            Ok(other) => unreachable!("controller answered {other:?}"),
            Err(e) => {
                tracing::warn!("metadata change failed: {e}");
                vec![]
            }
        }
    }

    /// Auto-creates `name` with the default partition count if allowed; true if it exists after.
    pub async fn ensure_topic(self: &Rc<Self>, name: &str) -> bool {
        if self.topic(name).is_some() {
            return true;
        }
        if !self.config.auto_create_topics || topics::validate_topic_name(name).is_err() {
            return false;
        }
        let spec = TopicSpec { name: name.to_string(), partitions: self.config.default_partitions, configs: vec![] };
        self.create_topics_via_controller(vec![spec], false).await;
        self.topic(name).is_some()
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

enum Appended {
    Done(ProduceResult),
    Wait(Rc<Partition>, AppendInfo),
}
