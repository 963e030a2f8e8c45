//! A shard: one glommio executor pinned to one core, owning the partitions `shard_for` gives it.
//!
//! All partition state (logs, producer windows) is owned here and touched only by this shard's
//! tasks; other shards reach it through `ShardRequest`s. Shard 0 additionally acts as controller
//! for topic metadata, which every shard mirrors in its own `TopicTable`.

use crate::config::BrokerConfig;
use crate::kafka::errors::*;
use crate::router::*;
use crate::topics::{self, partition_dir, TopicMeta, TopicTable};
use futures::future::{join_all, select, Either, LocalBoxFuture};
use futures::FutureExt;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};
use storage::{AppendInfo, BatchHeader, DmaBackend, Durability, FlushPolicy, Log};
use storage::io::blocking;

pub type PartitionLog = Log<DmaBackend>;

/// One partition's log (which also keeps its idempotent producers' windows).
pub struct Partition {
    pub log: PartitionLog,
    /// The topic's flush policy: decides what acks=all waits for.
    flush: FlushPolicy,
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
    producer_ids_end: i64,
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
        producer_ids: crate::producer_ids::ProducerIdRange,
    ) -> Rc<Shard> {
        // Producer ids: this run's range (reserved durably at start, so never reused after a
        // restart, whatever the clock does), interleaved across shards.
        let first_pid = producer_ids.first + router.me as i64;
        let backend = match &config.sync_override {
            Some(syncer) => DmaBackend::with_syncer(syncer.clone()),
            None => DmaBackend::new(),
        };
        let shard = Rc::new(Shard {
            id: router.me,
            nr_shards: router.nr_shards,
            config,
            cluster_id,
            router,
            topics: RefCell::new(TopicTable::default()),
            partitions: RefCell::new(HashMap::new()),
            offline: RefCell::new(HashSet::new()),
            backend,
            next_producer_id: Cell::new(first_pid),
            producer_ids_end: producer_ids.end,
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

    /// A producer id never handed out before by this data dir; None once this run's range is
    /// used up (2^40 ids: not in practice).
    pub fn allocate_producer_id(&self) -> Option<i64> {
        let id = self.next_producer_id.get();
        if id >= self.producer_ids_end {
            return None;
        }
        self.next_producer_id.set(id + self.nr_shards as i64);
        Some(id)
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
        for part in parts {
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
                        // A duplicate waits for its original the same way: it may still be on
                        // its way to disk, and must fail if the original's write does.
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
                }
            });
            join_all(waits).await
        }
        .boxed_local()
    }

    /// Appends one partition's batches. Takes the part by value: when its records are the
    /// frame's only user, storage rewrites the offsets in place instead of copying.
    async fn append_one(&self, part: ProducePart) -> Appended {
        let fail = |error| Appended::Done(ProduceResult { error, base_offset: -1, log_start_offset: -1 });
        let partition = match self.partition(&part.topic, part.partition) {
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
        match partition.log.append(part.records).await {
            Ok(info) => Appended::Wait(partition, info),
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
                        self.open_partition(&meta.name, p, meta.id, log_config.clone()).await;
                    }
                }
                self.rebalance_cache();
            }
            TopicChange::Delete(name) => {
                let partitions = self.topic_partitions(&name).unwrap_or(0);
                self.topics.borrow_mut().remove(&name);
                let removed = self.partitions.borrow_mut().remove(&name).unwrap_or_default();
                for (p, partition) in removed {
                    if let Err(e) = partition.log.close().await {
                        tracing::warn!(topic = %name, partition = p, "close on delete: {e}");
                    }
                }
                // Offline partitions have directories too.
                for p in (0..partitions).filter(|p| self.owns(&name, *p)) {
                    retire_and_remove(partition_dir(&self.config.data_dir, &name, p)).await;
                }
                self.offline.borrow_mut().retain(|(t, _)| *t != name);
                self.rebalance_cache();
            }
        }
    }

    /// Opens (or creates) a partition's log. A directory left by an earlier topic of the same
    /// name is moved aside first (`partition_dirs::claim`). A log that cannot be opened (e.g.
    /// corrupt synced data) leaves the partition offline: KAFKA_STORAGE_ERROR to clients, the
    /// reason in the log, and nothing deleted.
    async fn open_partition(&self, topic: &str, p: i32, topic_id: u128, config: storage::LogConfig) {
        let dir = partition_dir(&self.config.data_dir, topic, p);
        let claim_dir = dir.clone();
        let opened = match blocking(move || crate::partition_dirs::claim(&claim_dir, topic_id)).await {
            Ok(retired) => {
                if let Some(aside) = retired {
                    glommio::spawn_local(remove_dir_off_reactor(aside)).detach();
                }
                Log::open(self.backend.clone(), dir.clone(), config.clone()).await
            }
            Err(e) => Err(storage::Error::Io(e)),
        };
        match opened {
            Ok(log) => {
                let partition = Rc::new(Partition { log, flush: config.flush });
                self.partitions.borrow_mut().entry(topic.to_string()).or_default().insert(p, partition);
            }
            Err(e) => {
                tracing::error!(topic, partition = p, dir = %dir.display(), "partition offline, cannot open its log: {e}");
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
                fail_unpersisted(&mut results, &e);
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
            fail_unpersisted(&mut results, &e);
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
            fail_unpersisted(&mut results, &e);
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
        // Nothing is applied unless the new table is durable: a change that cannot be
        // persisted is reported as failed and leaves every shard as it was.
        let data_dir = self.config.data_dir.clone();
        blocking(move || table.persist(&data_dir)).await?;
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

/// Reports every change that was going to succeed as KAFKA_STORAGE_ERROR: the topic table could
/// not be written, so nothing changed.
fn fail_unpersisted(results: &mut [(String, i16, Option<String>)], e: &std::io::Error) {
    tracing::error!("cannot persist topic metadata, change not applied: {e}");
    for r in results.iter_mut().filter(|r| r.1 == NONE) {
        *r = (r.0.clone(), KAFKA_STORAGE_ERROR, Some(format!("topic metadata write failed: {e}")));
    }
}

/// Moves a deleted partition's directory aside (so a topic created with the same name can never
/// see its records), then removes it; both off the reactor. Failures are logged; a directory
/// left behind is removed at the next start.
async fn retire_and_remove(dir: std::path::PathBuf) {
    let retiring = dir.clone();
    let retired = blocking(move || match retiring.exists() {
        true => crate::partition_dirs::retire(&retiring).map(Some),
        false => Ok(None),
    });
    match retired.await {
        Ok(Some(aside)) => remove_dir_off_reactor(aside).await,
        Ok(None) => {}
        Err(e) => tracing::error!(dir = %dir.display(), "cannot move deleted partition directory aside (it is ignored by a new topic of that name, removed at next start): {e}"),
    }
}

async fn remove_dir_off_reactor(dir: std::path::PathBuf) {
    let _ = blocking(move || {
        crate::partition_dirs::remove_retired(&dir);
        Ok(())
    })
    .await;
}

enum Appended {
    Done(ProduceResult),
    Wait(Rc<Partition>, AppendInfo),
}
