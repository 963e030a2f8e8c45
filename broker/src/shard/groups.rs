//! The group coordinator service of a shard: the consumer groups whose `__consumer_offsets`
//! partition this shard owns, their members and committed offsets.
//!
//! Placement: a group lives in partition `partition_for(group)` of `__consumer_offsets` (Kafka's
//! hash), and that partition's owner (`router::shard_for`) is the group's coordinator; the
//! group's state exists on that shard only. Other shards reach it with
//! `ShardRequest::Groups(GroupRequest)`; `Shard::group_call` routes.
//!
//! The protocol itself is `groups_coordinator` (no I/O). This module runs it: it answers
//! requests, appends the records the coordinator queues to `__consumer_offsets` through the
//! partition service (in queue order, one writer task per shard; an OffsetCommit is answered
//! once its record is synced), fires timers, and reloads every group from the partitions it owns
//! at start (latest record per key wins, tombstones delete), before the shard serves anyone.

use super::groups_coordinator::{Coordinator, WriteResult};
use super::groups_records::{self as rec};
use super::partitions::{FetchPart, ProducePart};
use super::Shard;
use crate::config::GroupConfig;
use crate::constants::{GROUP_LOAD_READ_BYTES, GROUP_TIMER_IDLE_MS, OFFSETS_TOPIC};
use crate::kafka::errors::*;
use crate::router::{shard_for, ShardRequest, ShardResponse};
use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{join_all, select, Either};
use futures::FutureExt;
use kafka_protocol::protocol::StrBytes;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

// ---- requests and replies -------------------------------------------------------------------

/// A request for the group coordinator of the shard that owns the groups named in it.
#[derive(Debug)]
pub enum GroupRequest {
    /// FindCoordinator: can this shard coordinate these groups (their partition is loaded)?
    Coordinator(Vec<String>),
    Join(JoinRequest),
    Sync(SyncRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveRequest),
    Commit(CommitRequest),
    FetchOffsets(FetchOffsetsRequest),
    Describe(Vec<String>),
    /// Every group of this shard in one of these states (all if empty).
    List(Vec<String>),
    Delete(Vec<String>),
    DeleteOffsets(DeleteOffsetsRequest),
}

/// The answer to a `GroupRequest`, one entry per group or partition in request order.
#[derive(Debug)]
pub enum GroupReply {
    Coordinator(Vec<i16>),
    Join(JoinResponse),
    Sync(SyncResponse),
    Heartbeat(i16),
    Leave(LeaveResponse),
    Commit(CommitResponse),
    FetchOffsets(FetchOffsetsResponse),
    Describe(Vec<GroupDescription>),
    List(Vec<GroupListing>),
    Delete(Vec<i16>),
    DeleteOffsets(DeleteOffsetsResponse),
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), most preferred first.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ (KIP-394): a first join is answered MEMBER_ID_REQUIRED with an id.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// The members and their metadata: for the leader only.
    pub members: Vec<JoinMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment: (member id, assignment).
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LeaveRequest {
    pub group_id: String,
    /// (member id, group instance id); v0-2 name one member.
    pub members: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResponse {
    pub error: i16,
    /// One code per member, in request order.
    pub members: Vec<i16>,
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    /// -1 for a consumer outside group management (and for v0-1 without a generation).
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// v2-4 retention override; -1 = the broker's.
    pub retention_ms: i64,
    pub version: i16,
    pub offsets: Vec<OffsetCommitPart>,
}

#[derive(Debug, Clone)]
pub struct OffsetCommitPart {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitResponse {
    /// One code per part, in request order.
    pub errors: Vec<i16>,
}

#[derive(Debug, Clone)]
pub struct FetchOffsetsRequest {
    pub group_id: String,
    /// None = every committed offset of the group.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOffsetsResponse {
    pub error: i16,
    pub topics: Vec<(String, Vec<FetchedOffset>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: i32,
    /// -1 when nothing is committed.
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub error: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub error: i16,
    pub state: String,
    pub protocol_type: String,
    /// The protocol (assignor) name; empty unless Stable.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Empty unless the group is Stable.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
}

#[derive(Debug, Clone)]
pub struct DeleteOffsetsRequest {
    pub group_id: String,
    pub topics: Vec<(String, Vec<i32>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOffsetsResponse {
    pub error: i16,
    pub topics: Vec<(String, Vec<(i32, i16)>)>,
}

// ---- placement -------------------------------------------------------------------------------

/// The `__consumer_offsets` partition of `group_id` and the shard that owns it (its coordinator).
pub fn coordinator_of(group_id: &str, offsets_partitions: i32, nr_shards: usize) -> (i32, usize) {
    let partition = rec::partition_for(group_id, offsets_partitions);
    (partition, shard_for(OFFSETS_TOPIC, partition, nr_shards))
}

impl Shard {
    /// Runs `req` on the coordinator shard of `group_id`. None if that shard cannot be reached
    /// (shutting down) or there is no `__consumer_offsets`: callers answer
    /// COORDINATOR_NOT_AVAILABLE.
    pub async fn group_call(self: &Rc<Self>, group_id: &str, req: GroupRequest) -> Option<GroupReply> {
        let partitions = self.topic_partitions(OFFSETS_TOPIC)?;
        let (_, owner) = coordinator_of(group_id, partitions, self.nr_shards);
        match self.call(owner, ShardRequest::Groups(req)).await {
            Ok(ShardResponse::Groups(reply)) => Some(reply),
            Ok(other) => unreachable!("group coordinator answered {other:?}"),
            Err(e) => {
                tracing::debug!(group = group_id, "group coordinator unreachable: {e}");
                None
            }
        }
    }

    /// Runs `req` on every shard (ListGroups).
    pub async fn group_call_all(self: &Rc<Self>, req: impl Fn() -> GroupRequest) -> Vec<GroupReply> {
        let calls = (0..self.nr_shards).map(|s| self.call(s, ShardRequest::Groups(req())));
        join_all(calls)
            .await
            .into_iter()
            .filter_map(|r| match r {
                Ok(ShardResponse::Groups(reply)) => Some(reply),
                _ => None,
            })
            .collect()
    }
}

// ---- the service -----------------------------------------------------------------------------

pub struct GroupService {
    shard_id: usize,
    nr_shards: usize,
    config: GroupConfig,
    coordinator: RefCell<Coordinator>,
    partitions: Cell<i32>,
    /// Partitions of `__consumer_offsets` this shard owns and has loaded: it coordinates their
    /// groups. One that failed to load is not coordinated (NOT_COORDINATOR).
    loaded: RefCell<HashSet<i32>>,
    writes_queued: event_listener::Event,
    timers_changed: event_listener::Event,
}

fn now_ms() -> i64 {
    super::now_ms()
}

impl GroupService {
    pub fn new(shard_id: usize, nr_shards: usize, config: GroupConfig) -> GroupService {
        GroupService {
            shard_id,
            nr_shards,
            config,
            coordinator: RefCell::new(Coordinator::new(config, config.offsets_topic_partitions)),
            partitions: Cell::new(config.offsets_topic_partitions),
            loaded: RefCell::new(HashSet::new()),
            writes_queued: event_listener::Event::new(),
            timers_changed: event_listener::Event::new(),
        }
    }

    /// Runs one coordinator operation, then wakes the writer and the timer loop.
    fn run<R>(&self, f: impl FnOnce(&mut Coordinator, Instant, i64) -> R) -> R {
        let (result, writes) = {
            let mut c = self.coordinator.borrow_mut();
            let result = f(&mut c, Instant::now(), now_ms());
            (result, c.has_writes())
        };
        if writes {
            self.writes_queued.notify(usize::MAX);
        }
        self.timers_changed.notify(usize::MAX);
        result
    }

    fn coordinates(&self, group_id: &str) -> bool {
        let (partition, owner) = coordinator_of(group_id, self.partitions.get(), self.nr_shards);
        debug_assert_eq!(owner, self.shard_id, "group {group_id} routed to the wrong shard");
        self.loaded.borrow().contains(&partition)
    }

    /// Kafka's `isGroupIdNotEmpty` check of JoinGroup, SyncGroup, Heartbeat, LeaveGroup and
    /// OffsetDelete (OffsetCommit/OffsetFetch/DescribeGroups/DeleteGroups accept "").
    fn refuse(&self, group_id: &str, empty_allowed: bool) -> Option<i16> {
        if group_id.is_empty() && !empty_allowed {
            return Some(INVALID_GROUP_ID);
        }
        (!self.coordinates(group_id)).then_some(NOT_COORDINATOR)
    }

    pub async fn serve(&self, req: GroupRequest) -> GroupReply {
        match req {
            GroupRequest::Coordinator(ids) => GroupReply::Coordinator(
                ids.iter().map(|g| if self.coordinates(g) { NONE } else { COORDINATOR_NOT_AVAILABLE }).collect(),
            ),
            GroupRequest::Join(r) => GroupReply::Join(self.join(r).await),
            GroupRequest::Sync(r) => {
                if let Some(code) = self.refuse(&r.group_id, false) {
                    return GroupReply::Sync(SyncResponse::error(code));
                }
                let (tx, rx) = oneshot::channel();
                self.run(|c, now, ms| c.sync(r, tx, now, ms));
                GroupReply::Sync(rx.await.unwrap_or_else(|_| SyncResponse::error(UNKNOWN_MEMBER_ID)))
            }
            GroupRequest::Heartbeat(r) => {
                if let Some(code) = self.refuse(&r.group_id, false) {
                    return GroupReply::Heartbeat(code);
                }
                GroupReply::Heartbeat(self.run(|c, now, ms| c.heartbeat(r, now, ms)))
            }
            GroupRequest::Leave(r) => {
                if let Some(code) = self.refuse(&r.group_id, false) {
                    return GroupReply::Leave(LeaveResponse { error: code, members: vec![] });
                }
                GroupReply::Leave(self.run(|c, now, ms| c.leave(r, now, ms)))
            }
            GroupRequest::Commit(r) => {
                if let Some(code) = self.refuse(&r.group_id, true) {
                    return GroupReply::Commit(CommitResponse { errors: vec![code; r.offsets.len()] });
                }
                let n = r.offsets.len();
                let (tx, rx) = oneshot::channel();
                self.run(|c, now, ms| c.commit(r, tx, now, ms));
                GroupReply::Commit(rx.await.unwrap_or(CommitResponse { errors: vec![NOT_COORDINATOR; n] }))
            }
            GroupRequest::FetchOffsets(r) => {
                if let Some(code) = self.refuse(&r.group_id, true) {
                    return GroupReply::FetchOffsets(FetchOffsetsResponse { error: code, topics: vec![] });
                }
                GroupReply::FetchOffsets(self.coordinator.borrow().fetch_offsets(r))
            }
            GroupRequest::Describe(ids) => GroupReply::Describe(self.describe(&ids)),
            GroupRequest::List(states) => GroupReply::List(self.coordinator.borrow().list(&states)),
            GroupRequest::Delete(ids) => GroupReply::Delete(self.delete(ids).await),
            GroupRequest::DeleteOffsets(r) => {
                if let Some(code) = self.refuse(&r.group_id, false) {
                    return GroupReply::DeleteOffsets(DeleteOffsetsResponse { error: code, topics: vec![] });
                }
                let (tx, rx) = oneshot::channel();
                self.run(|c, now, ms| c.delete_offsets(r, tx, now, ms));
                GroupReply::DeleteOffsets(rx.await.unwrap_or(DeleteOffsetsResponse { error: NOT_COORDINATOR, topics: vec![] }))
            }
        }
    }

    async fn join(&self, r: JoinRequest) -> JoinResponse {
        if let Some(code) = self.refuse(&r.group_id, false) {
            return JoinResponse::error(&r.member_id, code);
        }
        if r.session_timeout_ms < self.config.min_session_timeout_ms || r.session_timeout_ms > self.config.max_session_timeout_ms {
            return JoinResponse::error(&r.member_id, INVALID_SESSION_TIMEOUT);
        }
        let member_id = r.member_id.clone();
        let (tx, rx) = oneshot::channel();
        self.run(|c, now, ms| c.join(r, tx, now, ms));
        // A dropped answer: the member was replaced or removed while it waited.
        rx.await.unwrap_or_else(|_| JoinResponse::error(&member_id, UNKNOWN_MEMBER_ID))
    }

    fn describe(&self, ids: &[String]) -> Vec<GroupDescription> {
        let mut out = self.coordinator.borrow().describe(ids);
        for d in out.iter_mut().filter(|d| !self.coordinates(&d.group_id)) {
            d.error = NOT_COORDINATOR;
        }
        out
    }

    async fn delete(&self, ids: Vec<String>) -> Vec<i16> {
        let mut waits = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(code) = self.refuse(&id, true) {
                waits.push(async move { code }.boxed_local());
                continue;
            }
            let (tx, rx) = oneshot::channel();
            self.run(|c, now, ms| c.delete(&id, tx, now, ms));
            waits.push(async move { rx.await.unwrap_or(NOT_COORDINATOR) }.boxed_local());
        }
        join_all(waits).await
    }

    // ---- writes, timers, reload ----------------------------------------------------------------

    /// Appends queued records in queue order; each write's completion runs on its own task.
    pub async fn write_loop(shard: Rc<Shard>) {
        loop {
            let listener = shard.groups.writes_queued.listen();
            let next = shard.groups.coordinator.borrow_mut().take_write();
            let Some(mut write) = next else {
                listener.await;
                continue;
            };
            let records = std::mem::take(&mut write.records);
            let batch = rec::encode_batch(&records, now_ms());
            let part = ProducePart { topic: StrBytes::from_static_str(OFFSETS_TOPIC), partition: write.partition, records: batch };
            // acks=-1 on a flush.ms=0 log: the wait resolves once the batch is synced.
            let durable = shard.partitions.produce_append(-1, vec![part]).await;
            let shard2 = shard.clone();
            glommio::spawn_local(async move {
                let result = durable.await.into_iter().next();
                let result = result.map_or(WriteResult { error: NOT_LEADER_OR_FOLLOWER, base_offset: -1 }, |r| WriteResult {
                    error: r.error,
                    base_offset: r.base_offset,
                });
                shard2.groups.run(|c, now, ms| c.after_write(write, result, now, ms));
            })
            .detach();
        }
    }

    /// Fires group timers (session timeouts, join and sync deadlines) as they fall due.
    pub async fn timer_loop(shard: Rc<Shard>) {
        let idle = Duration::from_millis(GROUP_TIMER_IDLE_MS);
        loop {
            let listener = shard.groups.timers_changed.listen();
            let next = shard.groups.coordinator.borrow().timers().next_deadline();
            let wait = next.map_or(idle, |at| at.saturating_duration_since(Instant::now()).min(idle));
            if !wait.is_zero() {
                let timer = pin!(glommio::timer::sleep(wait));
                if let Either::Right(_) = select(timer, listener).await {
                    continue; // a timer was set: look at the deadline again
                }
            }
            let now = Instant::now();
            let due = shard.groups.coordinator.borrow().timers().next_deadline().is_some_and(|at| at <= now);
            if due {
                shard.groups.run(|c, now, ms| c.fire_timers(now, ms));
            }
        }
    }

    /// Reloads the groups of every `__consumer_offsets` partition this shard owns, reading each
    /// from its log start to its high watermark. A partition that cannot be read is not
    /// coordinated (its groups get NOT_COORDINATOR); the others are.
    pub async fn load(&self, shard: &Shard) {
        let Some(partitions) = shard.topic_partitions(OFFSETS_TOPIC) else {
            tracing::error!("{OFFSETS_TOPIC} is missing: no consumer groups on this shard");
            return;
        };
        self.partitions.set(partitions);
        self.coordinator.borrow_mut().set_partitions(partitions);
        let started = Instant::now();
        let mut records = 0usize;
        let topic = StrBytes::from_static_str(OFFSETS_TOPIC);
        for p in (0..partitions).filter(|p| shard_for(OFFSETS_TOPIC, *p, self.nr_shards) == self.shard_id) {
            match self.load_partition(shard, &topic, p).await {
                Ok(n) => {
                    records += n;
                    self.loaded.borrow_mut().insert(p);
                }
                Err(e) => tracing::error!(partition = p, "{OFFSETS_TOPIC} partition not loaded, its groups are not served: {e}"),
            }
        }
        let groups = self.coordinator.borrow_mut().finish_load(Instant::now(), now_ms());
        self.timers_changed.notify(usize::MAX);
        tracing::info!(shard = self.shard_id, groups, records, elapsed_ms = started.elapsed().as_millis() as u64, "consumer groups loaded");
    }

    async fn load_partition(&self, shard: &Shard, topic: &StrBytes, partition: i32) -> Result<usize, String> {
        let mut offset = 0i64;
        let mut records = 0usize;
        loop {
            let part = FetchPart { topic: topic.clone(), partition, offset, max_bytes: GROUP_LOAD_READ_BYTES };
            let result = shard.partitions.fetch(&[part]).await.into_iter().next().ok_or("no fetch result")?;
            match result.error {
                NONE => {}
                OFFSET_OUT_OF_RANGE if offset < result.log_start_offset => {
                    offset = result.log_start_offset;
                    continue;
                }
                code => return Err(format!("read at offset {offset} failed with error {code}")),
            }
            if result.batches.is_empty() || offset >= result.high_watermark {
                return Ok(records);
            }
            for batch in result.batches {
                let next = self.replay_batch(batch, &mut records)?;
                offset = offset.max(next);
            }
        }
    }

    /// Replays one stored batch; returns the offset after it.
    fn replay_batch(&self, mut batch: Bytes, records: &mut usize) -> Result<i64, String> {
        let header = storage::BatchHeader::parse(&batch).map_err(|e| e.to_string())?;
        let next = header.next_offset();
        if header.is_control() {
            return Ok(next);
        }
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch).map_err(|e| e.to_string())?;
        let mut c = self.coordinator.borrow_mut();
        for record in set.records {
            let Some(key) = record.key.as_deref() else { continue };
            match rec::decode_key(key) {
                Ok(Some(key)) => {
                    if let Err(e) = c.replay(key, record.value.as_deref(), record.offset) {
                        tracing::warn!(offset = record.offset, "skipping a {OFFSETS_TOPIC} record: {e}");
                    }
                    *records += 1;
                }
                Ok(None) => {} // a record type classic groups do not use
                Err(e) => tracing::warn!(offset = record.offset, "skipping a {OFFSETS_TOPIC} record: {e}"),
            }
        }
        Ok(next)
    }
}
