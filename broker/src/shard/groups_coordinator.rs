//! The classic consumer-group protocol, as Kafka's group coordinator runs it (`ClassicGroup`,
//! `GroupMetadataManager`, `OffsetMetadataManager`), for the groups one shard coordinates.
//!
//! No I/O here: every operation takes the current time, answers through a oneshot sender, and
//! queues the `__consumer_offsets` records it needs written as `Write`s; the service
//! (`shard::groups`) appends them in queue order and reports back through `after_write`, which
//! finishes what waited for durability (a SyncGroup's assignment, an OffsetCommit). Timers
//! (session timeouts, join and sync deadlines) are `Timers` entries the service fires.
//!
//! States: Empty -> PreparingRebalance -> CompletingRebalance -> Stable, and back to
//! PreparingRebalance whenever membership or metadata changes; Dead once deleted.
//! - JoinGroup parks in PreparingRebalance until every known member has rejoined (or the
//!   rebalance timeout removes those that did not; a new group waits
//!   `group.initial.rebalance.delay.ms` first). The generation then increments, the leader gets
//!   the member list, everyone gets the generation, and the group waits for SyncGroup.
//! - The leader's SyncGroup carries the assignment; it is written to `__consumer_offsets`, then
//!   handed to every member and the group is Stable. Members that never sync within the
//!   rebalance timeout are removed and the group rebalances.
//! - A member whose session timeout passes without a heartbeat (or commit) is removed, which
//!   rebalances the group; LeaveGroup does the same at once.
//! - Static members (group.instance.id) keep their place across restarts: a rejoin with the
//!   same instance id replaces the old member id (fencing it) without a rebalance when nothing
//!   else changed.

use super::groups::*;
use super::groups_records::{self as rec, GroupValue, MemberValue, OffsetValue, RecordKey};
use crate::config::GroupConfig;
use crate::constants::{GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS, OFFSET_METADATA_BYTES_MAX};
use crate::kafka::errors::*;
use bytes::Bytes;
use futures::channel::oneshot;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

pub type Responder<T> = oneshot::Sender<T>;

fn respond<T>(tx: Responder<T>, value: T) {
    // The requester may be gone (connection closed): nothing to do.
    let _ = tx.send(value);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names Kafka reports (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

// ---- timers ----------------------------------------------------------------------------------

/// What a timer is for; scheduling a slot again replaces its previous timer (Kafka's timer keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum TimerSlot {
    Heartbeat(String),
    Join,
    Sync,
}

#[derive(Clone, Debug)]
enum TimerAction {
    ExpireHeartbeat(String),
    CompleteJoin,
    InitialJoin { delay_ms: u64, remaining_ms: u64 },
    ExpireSync(i32),
}

/// Deadlines of every group of the shard: a heap of (deadline, sequence); a slot's newest
/// sequence is the live one, older entries are skipped when they come up.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    entries: HashMap<u64, (String, TimerSlot, TimerAction)>,
    active: HashMap<(String, TimerSlot), u64>,
    next_seq: u64,
}

impl Timers {
    fn schedule(&mut self, group: &str, slot: TimerSlot, at: Instant, action: TimerAction) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(old) = self.active.insert((group.to_string(), slot.clone()), seq) {
            self.entries.remove(&old);
        }
        self.entries.insert(seq, (group.to_string(), slot, action));
        self.heap.push(Reverse((at, seq)));
    }

    fn cancel(&mut self, group: &str, slot: TimerSlot) {
        if let Some(old) = self.active.remove(&(group.to_string(), slot)) {
            self.entries.remove(&old);
        }
    }

    fn cancel_group(&mut self, group: &str) {
        let slots: Vec<_> = self.active.keys().filter(|(g, _)| g == group).cloned().collect();
        for key in slots {
            if let Some(seq) = self.active.remove(&key) {
                self.entries.remove(&seq);
            }
        }
    }

    /// Removes and returns the live timers due at `now`, earliest first.
    fn pop_due(&mut self, now: Instant) -> Vec<(String, TimerAction)> {
        let mut due = Vec::new();
        while let Some(Reverse((at, seq))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if let Some((group, slot, action)) = self.entries.remove(&seq) {
                self.active.remove(&(group.clone(), slot));
                due.push((group, action));
            }
        }
        due
    }

    /// The earliest deadline (possibly of a replaced timer: waking early is harmless).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }
}

// ---- writes ----------------------------------------------------------------------------------

/// Records for one `__consumer_offsets` partition, and what to finish once they are durable.
pub struct Write {
    pub partition: i32,
    pub records: Vec<(Bytes, Option<Bytes>)>,
    /// The group that asked for it, and which incarnation of that name.
    pub group: String,
    pub incarnation: u64,
    pub then: AfterWrite,
}

/// How an append to `__consumer_offsets` ended: its Kafka error code, and the offset of its
/// first record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteResult {
    pub error: i16,
    pub base_offset: i64,
}

pub enum AfterWrite {
    /// Nothing waits (an empty group's metadata); a failure is logged.
    Logged,
    /// The leader's assignment: handed out once durable.
    Sync { generation: i32, assignment: HashMap<String, Bytes> },
    /// A static member rejoined a Stable group in place of its old member id.
    StaticJoin(Box<StaticJoin>),
    Commit {
        offsets: Vec<(String, i32, OffsetValue)>,
        errors: Vec<i16>,
        reply: Responder<CommitResponse>,
    },
    Deleted { reply: Responder<i16> },
    OffsetsDeleted {
        keys: Vec<(String, i32)>,
        response: DeleteOffsetsResponse,
        reply: Responder<DeleteOffsetsResponse>,
    },
}

pub struct StaticJoin {
    generation: i32,
    instance_id: String,
    old_member: String,
    new_member: String,
    old_protocols: Vec<(String, Bytes)>,
    old_rebalance_timeout_ms: i32,
    old_session_timeout_ms: i32,
    leader: String,
}

/// A committed offset, with the `__consumer_offsets` offset of the record that set it: a
/// record only replaces an older one (commits of one key can complete out of order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub value: OffsetValue,
    pub log_offset: i64,
}

// ---- members and groups -----------------------------------------------------------------------

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    awaiting_join: Option<Responder<JoinResponse>>,
    awaiting_sync: Option<Responder<SyncResponse>>,
    /// Joined in the current rebalance and not yet through it.
    is_new: bool,
}

impl Member {
    fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol.and_then(|p| self.protocols.iter().find(|(n, _)| n == p)).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    /// Kafka's `hasSatisfiedHeartbeat`: a member waiting in a rebalance needs no heartbeat
    /// (the rebalance timeout bounds it), except a new one (its JoinGroup may be abandoned).
    fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }

    fn summary(&self, protocol: Option<&str>, with_data: bool) -> MemberDescription {
        MemberDescription {
            member_id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            metadata: if with_data { self.metadata(protocol) } else { Bytes::new() },
            assignment: if with_data { self.assignment.clone() } else { Bytes::new() },
        }
    }
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    prev_state: GroupState,
    /// Wall-clock time of the last transition (Kafka's currentStateTimestamp).
    state_since_ms: i64,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet.
    pending_join: HashSet<String>,
    /// Members of this generation that have not sent SyncGroup yet.
    pending_sync: HashSet<String>,
    new_member_added: bool,
    subscribed_topics: Option<HashSet<String>>,
    pub offsets: HashMap<(String, i32), Committed>,
    /// Distinguishes this group from a deleted one of the same name (late write completions).
    incarnation: u64,
    /// Writes queued or in flight for it: a group with one is never dropped as unused.
    writes_in_flight: usize,
}

/// What group operations need besides the group: timers, the write queue, settings, the time.
struct Ctx<'a> {
    timers: &'a mut Timers,
    writes: &'a mut VecDeque<Write>,
    config: GroupConfig,
    partitions: i32,
    now: Instant,
    now_ms: i64,
}

impl Ctx<'_> {
    fn after(&self, ms: u64) -> Instant {
        self.now + Duration::from_millis(ms)
    }

    fn schedule(&mut self, group: &str, slot: TimerSlot, ms: u64, action: TimerAction) {
        let at = self.after(ms);
        self.timers.schedule(group, slot, at, action);
    }

    fn heartbeat_in(&mut self, group: &str, member: &str, ms: u64) {
        self.schedule(group, TimerSlot::Heartbeat(member.to_string()), ms, TimerAction::ExpireHeartbeat(member.to_string()));
    }

}

fn millis(ms: i32) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

/// Java's `UUID.randomUUID().toString()`: a random (version 4) UUID, lowercase and hyphenated.
fn random_uuid() -> String {
    let mut b = rand::random::<u128>().to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).hyphenated().to_string()
}

impl Group {
    fn new(id: &str, incarnation: u64, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            prev_state: GroupState::Dead,
            state_since_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_join: HashSet::new(),
            pending_sync: HashSet::new(),
            new_member_added: false,
            subscribed_topics: None,
            offsets: HashMap::new(),
            incarnation,
            writes_in_flight: 0,
        }
    }

    /// Queues records for this group's `__consumer_offsets` partition.
    fn write(&mut self, ctx: &mut Ctx, records: Vec<(Bytes, Option<Bytes>)>, then: AfterWrite) {
        self.writes_in_flight += 1;
        let partition = rec::partition_for(&self.id, ctx.partitions);
        ctx.writes.push_back(Write { partition, records, group: self.id.clone(), incarnation: self.incarnation, then });
    }

    fn transition(&mut self, to: GroupState, now_ms: i64) {
        use GroupState::*;
        let valid = match to {
            Empty => matches!(self.state, PreparingRebalance),
            PreparingRebalance => matches!(self.state, Stable | CompletingRebalance | Empty),
            CompletingRebalance => matches!(self.state, PreparingRebalance),
            Stable => matches!(self.state, CompletingRebalance),
            Dead => true,
        };
        debug_assert!(valid, "group {}: {:?} -> {to:?}", self.id, self.state);
        self.prev_state = self.state;
        self.state = to;
        self.state_since_ms = now_ms;
        tracing::debug!(group = %self.id, from = self.prev_state.name(), to = to.name(), generation = self.generation, "group state");
    }

    pub fn is_leader(&self, member: &str) -> bool {
        self.leader.as_deref() == Some(member)
    }

    fn awaiting_join_count(&self) -> usize {
        self.members.values().filter(|m| m.awaiting_join.is_some()).count()
    }

    fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.awaiting_join_count() && self.pending_join.is_empty()
    }

    fn can_rebalance(&self) -> bool {
        matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty)
    }

    fn rebalance_timeout_ms(&self) -> u64 {
        self.members.values().map(|m| millis(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some("consumer")
    }

    /// Nothing was ever written for it and nothing refers to it: it can vanish silently.
    fn is_unused(&self) -> bool {
        self.state == GroupState::Empty
            && self.generation == 0
            && self.members.is_empty()
            && self.pending_join.is_empty()
            && self.offsets.is_empty()
            && self.writes_in_flight == 0
    }

    fn add(&mut self, member: Member) {
        if let Some(instance) = &member.instance_id {
            let previous = self.static_members.insert(instance.clone(), member.id.clone());
            debug_assert!(previous.is_none(), "static member {instance} added twice");
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.pending_join.remove(&member.id);
        self.members.insert(member.id.clone(), member);
    }

    fn remove(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.remove(member_id);
        if let Some(m) = &removed {
            if let Some(instance) = &m.instance_id {
                self.static_members.remove(instance);
            }
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.pending_join.remove(member_id);
        self.pending_sync.remove(member_id);
        removed
    }

    /// Kafka's `supportsProtocols`: any protocol when Empty, else the same protocol type and at
    /// least one protocol every member supports.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    /// Every member votes for its most preferred protocol that all members support; the most
    /// votes win (ties: the name first in order, so the choice is stable).
    fn select_protocol(&self) -> Option<String> {
        let candidates: HashSet<&str> = self
            .members
            .values()
            .flat_map(|m| m.protocols.iter().map(|(n, _)| n.as_str()))
            .filter(|name| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n.as_str())) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes.into_iter().find(|(_, v)| *v == best).map(|(n, _)| n.to_string())
    }

    fn compute_subscribed_topics(&self) -> Option<HashSet<String>> {
        if !self.uses_consumer_protocol() {
            return None;
        }
        if self.members.is_empty() {
            return Some(HashSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            topics.extend(rec::subscribed_topics(&m.metadata(Some(protocol)))?);
        }
        Some(topics)
    }

    fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => self.uses_consumer_protocol(),
        }
    }

    /// Kafka's `validateMember`: a static member must be the instance's current member id.
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                None => return Err(UNKNOWN_MEMBER_ID),
                Some(current) if current != member_id => {
                    tracing::info!(group = %self.id, instance, member_id, current = %current, "fenced static member");
                    return Err(FENCED_INSTANCE_ID);
                }
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(UNKNOWN_MEMBER_ID);
        }
        Ok(())
    }

    fn current_generation_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
        JoinResponse {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members { self.members_for_leader() } else { vec![] },
        }
    }

    fn members_for_leader(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.as_deref();
        self.members
            .values()
            .map(|m| JoinMember { member_id: m.id.clone(), instance_id: m.instance_id.clone(), metadata: m.metadata(protocol) })
            .collect()
    }

    fn complete_join_future(&mut self, member_id: &str, response: JoinResponse) -> bool {
        match self.members.get_mut(member_id).and_then(|m| m.awaiting_join.take()) {
            Some(tx) => {
                respond(tx, response);
                true
            }
            None => false,
        }
    }

    // ---- JoinGroup ---------------------------------------------------------------------------

    fn join_new_member(&mut self, ctx: &mut Ctx, req: JoinRequest, tx: Responder<JoinResponse>) {
        if self.state == GroupState::Dead {
            return respond(tx, JoinResponse::error("", COORDINATOR_NOT_AVAILABLE));
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return respond(tx, JoinResponse::error("", INCONSISTENT_GROUP_PROTOCOL));
        }
        let prefix = req.instance_id.as_deref().unwrap_or(&req.client_id);
        let new_id = format!("{prefix}-{}", random_uuid());
        if let Some(instance) = req.instance_id.clone() {
            match self.static_members.get(&instance).cloned() {
                Some(existing) => {
                    tracing::info!(group = %self.id, instance, old = %existing, new = %new_id, "static member rejoins with a new member id");
                    self.update_static_member(ctx, req, instance, existing, new_id, tx)
                }
                None => self.add_member_and_rebalance(ctx, req, new_id, tx),
            }
        } else if req.require_known_member_id {
            // KIP-394: hand out the id, expect the member back with it within its session.
            self.pending_join.insert(new_id.clone());
            ctx.heartbeat_in(&self.id, &new_id, millis(req.session_timeout_ms));
            respond(tx, JoinResponse::error(&new_id, MEMBER_ID_REQUIRED));
        } else {
            self.add_member_and_rebalance(ctx, req, new_id, tx)
        }
    }

    fn join_existing_member(&mut self, ctx: &mut Ctx, req: JoinRequest, tx: Responder<JoinResponse>) {
        let member_id = req.member_id.clone();
        if self.state == GroupState::Dead {
            return respond(tx, JoinResponse::error(&member_id, COORDINATOR_NOT_AVAILABLE));
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return respond(tx, JoinResponse::error(&member_id, INCONSISTENT_GROUP_PROTOCOL));
        }
        if self.pending_join.contains(&member_id) {
            if req.instance_id.is_some() {
                // Kafka treats this as an internal error: pending ids are only given to dynamic members.
                return respond(tx, JoinResponse::error(&member_id, UNKNOWN_SERVER_ERROR));
            }
            return self.add_member_and_rebalance(ctx, req, member_id, tx);
        }
        if let Err(code) = self.validate_member(&member_id, req.instance_id.as_deref()) {
            return respond(tx, JoinResponse::error(&member_id, code));
        }
        let (matches, is_leader) = {
            let m = &self.members[&member_id];
            (m.protocols == req.protocols, self.is_leader(&member_id))
        };
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(ctx, req, tx),
            GroupState::CompletingRebalance if matches => {
                // It missed its JoinGroup answer: the current generation again.
                respond(tx, self.current_generation_response(&member_id, is_leader))
            }
            GroupState::CompletingRebalance => self.update_member_and_rebalance(ctx, req, tx),
            // The leader rejoining forces a rebalance (it may have seen a metadata change).
            GroupState::Stable if is_leader || !matches => self.update_member_and_rebalance(ctx, req, tx),
            GroupState::Stable => respond(tx, self.current_generation_response(&member_id, false)),
            GroupState::Empty | GroupState::Dead => respond(tx, JoinResponse::error(&member_id, UNKNOWN_MEMBER_ID)),
        }
    }

    fn update_member_and_rebalance(&mut self, ctx: &mut Ctx, req: JoinRequest, tx: Responder<JoinResponse>) {
        let member = self.members.get_mut(&req.member_id).expect("validated member");
        member.protocols = req.protocols;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.awaiting_join = Some(tx);
        self.maybe_prepare_rebalance_or_complete_join(ctx);
    }

    fn add_member_and_rebalance(&mut self, ctx: &mut Ctx, req: JoinRequest, member_id: String, tx: Responder<JoinResponse>) {
        let member = Member {
            id: member_id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            is_new: true,
        };
        if self.state == GroupState::PreparingRebalance && self.prev_state == GroupState::Empty {
            self.new_member_added = true;
        }
        self.add(member);
        // Its session timeout does not apply yet: it cannot heartbeat before it has joined.
        ctx.heartbeat_in(&self.id, &member_id, GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS);
        tracing::info!(group = %self.id, member = %member_id, state = self.state.name(), "member joins");
        self.maybe_prepare_rebalance_or_complete_join(ctx);
    }

    fn update_static_member(
        &mut self,
        ctx: &mut Ctx,
        req: JoinRequest,
        instance: String,
        old_id: String,
        new_id: String,
        tx: Responder<JoinResponse>,
    ) {
        let leader = self.leader.clone().unwrap_or_default();
        self.replace_static_member(&instance, &old_id, &new_id);
        let (old_protocols, old_rebalance, old_session) = {
            let m = self.members.get_mut(&new_id).expect("replaced member");
            let old = (std::mem::take(&mut m.protocols), m.rebalance_timeout_ms, m.session_timeout_ms);
            ctx.heartbeat_in(&self.id, &new_id, millis(m.session_timeout_ms));
            m.protocols = req.protocols;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.awaiting_join = Some(tx);
            old
        };
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol_name => {
                // Nothing the assignment depends on changed: persist the new member id, then
                // answer with the current generation; no rebalance.
                let record = self.metadata_record(&self.current_assignment(), ctx.now_ms);
                let then = AfterWrite::StaticJoin(Box::new(StaticJoin {
                    generation: self.generation,
                    instance_id: instance,
                    old_member: old_id,
                    new_member: new_id,
                    old_protocols,
                    old_rebalance_timeout_ms: old_rebalance,
                    old_session_timeout_ms: old_session,
                    leader,
                }));
                self.write(ctx, vec![record], then);
            }
            GroupState::Stable => self.maybe_prepare_rebalance_or_complete_join(ctx),
            // The leader may already have assigned to the old member id (KAFKA-9801).
            GroupState::CompletingRebalance => self.prepare_rebalance(ctx),
            _ => self.maybe_complete_join_phase(ctx),
        }
    }

    /// The static member `instance` gets `new_id`; requests still parked for the old id are
    /// answered FENCED_INSTANCE_ID.
    fn replace_static_member(&mut self, instance: &str, old_id: &str, new_id: &str) {
        let Some(mut member) = self.members.remove(old_id) else { return };
        if let Some(tx) = member.awaiting_join.take() {
            respond(tx, JoinResponse::error(old_id, FENCED_INSTANCE_ID));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            respond(tx, SyncResponse::error(FENCED_INSTANCE_ID));
        }
        member.id = new_id.to_string();
        member.is_new = false;
        self.members.insert(new_id.to_string(), member);
        if self.is_leader(old_id) {
            self.leader = Some(new_id.to_string());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_string());
        }
        self.static_members.insert(instance.to_string(), new_id.to_string());
    }

    fn maybe_prepare_rebalance_or_complete_join(&mut self, ctx: &mut Ctx) {
        if self.can_rebalance() {
            self.prepare_rebalance(ctx);
        } else {
            self.maybe_complete_join_phase(ctx);
        }
    }

    fn maybe_complete_join_phase(&mut self, ctx: &mut Ctx) {
        if self.state == GroupState::PreparingRebalance
            && self.prev_state != GroupState::Empty // the initial rebalance waits for its delay
            && self.has_all_members_joined()
        {
            self.complete_join(ctx);
        }
    }

    fn prepare_rebalance(&mut self, ctx: &mut Ctx) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment(REBALANCE_IN_PROGRESS, ctx);
        }
        self.pending_sync.clear();
        ctx.timers.cancel(&self.id, TimerSlot::Sync);
        let initial = self.state == GroupState::Empty;
        if initial {
            let delay_ms = ctx.config.initial_rebalance_delay_ms;
            let remaining_ms = self.rebalance_timeout_ms().saturating_sub(delay_ms);
            ctx.schedule(&self.id, TimerSlot::Join, delay_ms, TimerAction::InitialJoin { delay_ms, remaining_ms });
        }
        tracing::info!(group = %self.id, from = self.state.name(), generation = self.generation, members = self.members.len(), "preparing to rebalance");
        self.transition(GroupState::PreparingRebalance, ctx.now_ms);
        if !initial {
            if self.has_all_members_joined() {
                self.complete_join(ctx);
            } else {
                let timeout = self.rebalance_timeout_ms();
                ctx.schedule(&self.id, TimerSlot::Join, timeout, TimerAction::CompleteJoin);
            }
        }
    }

    /// The initial delay ran out: wait another delay if members kept arriving (up to the
    /// rebalance timeout), else complete the join phase.
    fn initial_join_timer(&mut self, ctx: &mut Ctx, delay_ms: u64, remaining_ms: u64) {
        if self.new_member_added && remaining_ms != 0 {
            self.new_member_added = false;
            let next_delay = ctx.config.initial_rebalance_delay_ms.min(remaining_ms);
            let next_remaining = remaining_ms.saturating_sub(delay_ms);
            let action = TimerAction::InitialJoin { delay_ms: next_delay, remaining_ms: next_remaining };
            ctx.schedule(&self.id, TimerSlot::Join, next_delay, action);
        } else {
            self.complete_join(ctx);
        }
    }

    /// Ends the join phase: dynamic members that did not rejoin are removed, the generation
    /// moves on, and every member gets its JoinGroup answer (the leader with the member list).
    fn complete_join(&mut self, ctx: &mut Ctx) {
        ctx.timers.cancel(&self.id, TimerSlot::Join);
        let missing: Vec<String> =
            self.members.values().filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none()).map(|m| m.id.clone()).collect();
        for id in &missing {
            self.remove(id);
            ctx.timers.cancel(&self.id, TimerSlot::Heartbeat(id.clone()));
        }
        if !missing.is_empty() {
            tracing::info!(group = %self.id, removed = ?missing, "removed members that did not rejoin in time");
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined: wait for session timeouts to remove the silent members.
            let timeout = self.rebalance_timeout_ms();
            ctx.schedule(&self.id, TimerSlot::Join, timeout, TimerAction::CompleteJoin);
            return;
        }
        self.init_next_generation(ctx.now_ms);
        if self.state == GroupState::Empty {
            tracing::info!(group = %self.id, generation = self.generation, "group is now empty");
            let record = self.metadata_record(&HashMap::new(), ctx.now_ms);
            self.write(ctx, vec![record], AfterWrite::Logged);
            return;
        }
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(),
            protocol = self.protocol_name.as_deref().unwrap_or(""), "join phase complete, waiting for the leader's assignment");
        let leader_view = self.members_for_leader();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let mut response = self.current_generation_response(&id, false);
            if self.is_leader(&id) {
                response.members = leader_view.clone();
            }
            self.complete_join_future(&id, response);
            let m = self.members.get_mut(&id).expect("member");
            m.is_new = false;
            ctx.heartbeat_in(&self.id, &id, millis(m.session_timeout_ms));
            self.pending_sync.insert(id);
        }
        let timeout = self.rebalance_timeout_ms();
        ctx.schedule(&self.id, TimerSlot::Sync, timeout, TimerAction::ExpireSync(self.generation));
    }

    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else { return false };
        if self.members.get(&leader).is_some_and(|m| m.awaiting_join.is_some()) {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                tracing::info!(group = %self.id, old = %leader, new = %m.id, "leader did not rejoin: new leader elected");
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self, now_ms: i64) {
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(GroupState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(GroupState::CompletingRebalance, now_ms);
        }
        self.pending_sync.clear();
    }

    /// Members that have not sent SyncGroup within the rebalance timeout are removed.
    fn expire_sync(&mut self, ctx: &mut Ctx, generation: i32) {
        if generation != self.generation || !matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable) {
            return;
        }
        if self.pending_sync.is_empty() {
            return;
        }
        let late: Vec<String> = self.pending_sync.iter().cloned().collect();
        for id in &late {
            self.remove(id);
            ctx.timers.cancel(&self.id, TimerSlot::Heartbeat(id.clone()));
        }
        tracing::info!(group = %self.id, removed = ?late, "removed members that did not sync in time");
        self.prepare_rebalance(ctx);
    }

    // ---- SyncGroup ---------------------------------------------------------------------------

    fn validate_sync(&self, req: &SyncRequest) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        self.validate_member(&req.member_id, req.instance_id.as_deref())?;
        if req.generation != self.generation {
            return Err(ILLEGAL_GENERATION);
        }
        let inconsistent = |asked: &Option<String>, ours: &Option<String>| matches!((asked, ours), (Some(a), Some(o)) if a != o);
        if inconsistent(&req.protocol_type, &self.protocol_type) || inconsistent(&req.protocol_name, &self.protocol_name) {
            return Err(INCONSISTENT_GROUP_PROTOCOL);
        }
        Ok(())
    }

    fn sync(&mut self, ctx: &mut Ctx, req: SyncRequest, tx: Responder<SyncResponse>) {
        if let Err(code) = self.validate_sync(&req) {
            return respond(tx, SyncResponse::error(code));
        }
        match self.state {
            GroupState::PreparingRebalance => respond(tx, SyncResponse::error(REBALANCE_IN_PROGRESS)),
            GroupState::CompletingRebalance => {
                self.members.get_mut(&req.member_id).expect("validated").awaiting_sync = Some(tx);
                self.remove_pending_sync(ctx, &req.member_id);
                if self.is_leader(&req.member_id) {
                    let mut assignment: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for id in self.members.keys() {
                        assignment.entry(id.clone()).or_default();
                    }
                    assignment.retain(|id, _| self.members.contains_key(id));
                    tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), "assignment received from the leader");
                    let record = self.metadata_record(&assignment, ctx.now_ms);
                    let then = AfterWrite::Sync { generation: self.generation, assignment };
                    self.write(ctx, vec![record], then);
                }
            }
            GroupState::Stable => {
                self.remove_pending_sync(ctx, &req.member_id);
                let assignment = self.members[&req.member_id].assignment.clone();
                respond(tx, SyncResponse { error: NONE, protocol_type: self.protocol_type.clone(), protocol_name: self.protocol_name.clone(), assignment });
            }
            GroupState::Empty | GroupState::Dead => respond(tx, SyncResponse::error(UNKNOWN_MEMBER_ID)),
        }
    }

    fn remove_pending_sync(&mut self, ctx: &mut Ctx, member_id: &str) {
        self.pending_sync.remove(member_id);
        let done = match self.state {
            GroupState::CompletingRebalance | GroupState::Stable => self.pending_sync.is_empty(),
            _ => true,
        };
        if done {
            ctx.timers.cancel(&self.id, TimerSlot::Sync);
        }
    }

    fn after_sync_write(&mut self, ctx: &mut Ctx, generation: i32, assignment: HashMap<String, Bytes>, error: i16) {
        if self.state != GroupState::CompletingRebalance || self.generation != generation {
            return; // another rebalance started meanwhile
        }
        if error != NONE {
            tracing::warn!(group = %self.id, error, "cannot store the group's assignment");
            self.reset_and_propagate_assignment(coordinator_write_error(error), ctx);
            self.maybe_prepare_rebalance_or_complete_join(ctx);
            return;
        }
        for (id, m) in self.members.iter_mut() {
            m.assignment = assignment.get(id).cloned().unwrap_or_default();
        }
        self.propagate_assignment(NONE, ctx);
        self.transition(GroupState::Stable, ctx.now_ms);
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), "group is stable");
    }

    fn reset_and_propagate_assignment(&mut self, error: i16, ctx: &mut Ctx) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(error, ctx);
    }

    fn propagate_assignment(&mut self, error: i16, ctx: &mut Ctx) {
        let (protocol_type, protocol_name) =
            if error == NONE { (self.protocol_type.clone(), self.protocol_name.clone()) } else { (None, None) };
        let group = self.id.clone();
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                let assignment = m.assignment.clone();
                respond(tx, SyncResponse { error, protocol_type: protocol_type.clone(), protocol_name: protocol_name.clone(), assignment });
                ctx.heartbeat_in(&group, &m.id, millis(m.session_timeout_ms));
            }
        }
    }

    fn after_static_join_write(&mut self, ctx: &mut Ctx, s: StaticJoin, error: i16) {
        let Some(member) = self.members.get_mut(&s.new_member) else { return };
        let Some(tx) = member.awaiting_join.take() else { return };
        if error != NONE {
            tracing::warn!(group = %self.id, instance = %s.instance_id, error, "cannot persist a static member's new id: keeping the old one");
            member.protocols = s.old_protocols;
            member.rebalance_timeout_ms = s.old_rebalance_timeout_ms;
            member.session_timeout_ms = s.old_session_timeout_ms;
            let session = millis(member.session_timeout_ms);
            self.replace_static_member(&s.instance_id, &s.new_member, &s.old_member);
            ctx.heartbeat_in(&self.id, &s.old_member, session);
            let mut response = JoinResponse::error("", coordinator_write_error(error));
            response.generation = self.generation;
            return respond(tx, response);
        }
        if self.state != GroupState::Stable || self.generation != s.generation {
            // A rebalance started meanwhile: the member takes part in it.
            self.members.get_mut(&s.new_member).expect("member").awaiting_join = Some(tx);
            return self.maybe_complete_join_phase(ctx);
        }
        let mut response = self.current_generation_response(&s.new_member, false);
        response.leader = s.leader;
        respond(tx, response);
    }

    // ---- Heartbeat, LeaveGroup, expiry ---------------------------------------------------------

    fn heartbeat(&mut self, ctx: &mut Ctx, req: &HeartbeatRequest) -> i16 {
        if self.state == GroupState::Dead {
            return COORDINATOR_NOT_AVAILABLE;
        }
        if let Err(code) = self.validate_member(&req.member_id, req.instance_id.as_deref()) {
            return code;
        }
        if req.generation != self.generation {
            return ILLEGAL_GENERATION;
        }
        let session = millis(self.members[&req.member_id].session_timeout_ms);
        match self.state {
            GroupState::PreparingRebalance => {
                ctx.heartbeat_in(&self.id, &req.member_id, session);
                REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                ctx.heartbeat_in(&self.id, &req.member_id, session);
                NONE
            }
            GroupState::Empty | GroupState::Dead => UNKNOWN_MEMBER_ID,
        }
    }

    fn leave(&mut self, ctx: &mut Ctx, members: &[(String, Option<String>)]) -> LeaveResponse {
        if self.state == GroupState::Dead {
            return LeaveResponse { error: COORDINATOR_NOT_AVAILABLE, members: vec![] };
        }
        let mut errors = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let error = if member_id.is_empty() {
                // Removal by instance id (an administrator, or a static member's shutdown).
                match instance_id.as_ref().and_then(|i| self.static_members.get(i)).cloned() {
                    Some(id) => {
                        self.remove_current_member(ctx, &id);
                        NONE
                    }
                    None => UNKNOWN_MEMBER_ID,
                }
            } else if self.pending_join.remove(member_id) {
                ctx.timers.cancel(&self.id, TimerSlot::Heartbeat(member_id.clone()));
                NONE
            } else {
                match self.validate_member(member_id, instance_id.as_deref()) {
                    Ok(()) => {
                        self.remove_current_member(ctx, member_id);
                        NONE
                    }
                    Err(code) => code,
                }
            };
            errors.push(error);
        }
        if errors.contains(&NONE) {
            match self.state {
                GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance_or_complete_join(ctx),
                GroupState::PreparingRebalance => self.maybe_complete_join_phase(ctx),
                _ => {}
            }
        }
        LeaveResponse { error: NONE, members: errors }
    }

    fn remove_current_member(&mut self, ctx: &mut Ctx, member_id: &str) {
        ctx.timers.cancel(&self.id, TimerSlot::Heartbeat(member_id.to_string()));
        tracing::info!(group = %self.id, member = member_id, "member leaves the group");
        self.complete_join_future(member_id, JoinResponse::error("", UNKNOWN_MEMBER_ID));
        self.remove(member_id);
    }

    fn expire_heartbeat(&mut self, ctx: &mut Ctx, member_id: &str) {
        if self.state == GroupState::Dead {
            return;
        }
        if self.pending_join.remove(member_id) {
            tracing::info!(group = %self.id, member = member_id, "pending member removed: it did not rejoin within its session timeout");
            if self.state == GroupState::PreparingRebalance && self.has_all_members_joined() {
                self.complete_join(ctx);
            }
            return;
        }
        let Some(member) = self.members.get(member_id) else { return };
        if member.has_satisfied_heartbeat() {
            return;
        }
        tracing::info!(group = %self.id, member = member_id, session_timeout_ms = member.session_timeout_ms, "member failed (no heartbeat within its session timeout), removing it");
        self.complete_join_future(member_id, JoinResponse::error("", UNKNOWN_MEMBER_ID));
        self.remove(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance_or_complete_join(ctx),
            GroupState::PreparingRebalance if self.has_all_members_joined() => self.complete_join(ctx),
            _ => {}
        }
    }

    // ---- offsets -----------------------------------------------------------------------------

    /// Kafka's `validateOffsetCommit` (non-transactional).
    fn validate_commit(&self, req: &CommitRequest) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        if req.generation < 0 && self.state == GroupState::Empty {
            return Ok(()); // a consumer that assigns partitions itself, or an admin client
        }
        if req.generation >= 0 || !req.member_id.is_empty() || req.instance_id.is_some() {
            self.validate_member(&req.member_id, req.instance_id.as_deref())?;
            if req.generation != self.generation {
                return Err(ILLEGAL_GENERATION);
            }
        } else if self.state != GroupState::Empty {
            return Err(UNKNOWN_MEMBER_ID);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(REBALANCE_IN_PROGRESS);
        }
        Ok(())
    }

    fn commit(&mut self, ctx: &mut Ctx, req: CommitRequest, tx: Responder<CommitResponse>) {
        if let Err(code) = self.validate_commit(&req) {
            return respond(tx, CommitResponse { errors: vec![code; req.offsets.len()] });
        }
        // In the classic protocol a commit keeps the member's session alive.
        if matches!(self.state, GroupState::Stable | GroupState::PreparingRebalance) {
            if let Some(m) = self.members.get(&req.member_id) {
                let session = millis(m.session_timeout_ms);
                ctx.heartbeat_in(&self.id, &req.member_id, session);
            }
        }
        let mut errors = vec![NONE; req.offsets.len()];
        let mut records = Vec::new();
        let mut offsets = Vec::new();
        for (i, part) in req.offsets.into_iter().enumerate() {
            let metadata = part.metadata.unwrap_or_default();
            if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                errors[i] = OFFSET_METADATA_TOO_LARGE;
                continue;
            }
            let value = OffsetValue {
                offset: part.offset,
                leader_epoch: part.leader_epoch,
                metadata,
                commit_timestamp: ctx.now_ms,
                expire_timestamp: if req.retention_ms >= 0 { ctx.now_ms.saturating_add(req.retention_ms) } else { -1 },
            };
            let key = RecordKey::Offset { group: self.id.clone(), topic: part.topic.clone(), partition: part.partition };
            records.push((rec::encode_key(&key), Some(rec::encode_offset_value(&value))));
            offsets.push((part.topic, part.partition, value));
        }
        if records.is_empty() {
            return respond(tx, CommitResponse { errors });
        }
        self.write(ctx, records, AfterWrite::Commit { offsets, errors, reply: tx });
    }

    fn apply_offset(&mut self, topic: String, partition: i32, value: Option<OffsetValue>, log_offset: i64) {
        let key = (topic, partition);
        if self.offsets.get(&key).is_some_and(|c| c.log_offset >= log_offset) {
            return; // a later record already decided this key
        }
        match value {
            Some(value) => {
                crate::metrics::groups::committed(&self.id, &key.0, key.1, value.offset);
                self.offsets.insert(key, Committed { value, log_offset });
            }
            None => {
                crate::metrics::groups::forget(&self.id, &key.0, key.1);
                self.offsets.remove(&key);
            }
        }
    }

    fn fetch_offsets(&self, topics: Option<Vec<(String, Vec<i32>)>>) -> FetchOffsetsResponse {
        let found = |topic: &str, p: i32| self.offsets.get(&(topic.to_string(), p)).map(|c| &c.value);
        let topics = match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let parts = partitions.into_iter().map(|p| FetchedOffset::from(p, found(&topic, p))).collect();
                    (topic, parts)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<&str, Vec<FetchedOffset>> = BTreeMap::new();
                for ((topic, p), c) in &self.offsets {
                    by_topic.entry(topic).or_default().push(FetchedOffset::from(*p, Some(&c.value)));
                }
                by_topic
                    .into_iter()
                    .map(|(t, mut parts)| {
                        parts.sort_by_key(|f| f.partition);
                        (t.to_string(), parts)
                    })
                    .collect()
            }
        };
        FetchOffsetsResponse { error: NONE, topics }
    }

    fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.as_deref();
        GroupDescription {
            group_id: self.id.clone(),
            error: NONE,
            state: self.state.name().to_string(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if stable { self.protocol_name.clone().unwrap_or_default() } else { String::new() },
            members: self.members.values().map(|m| m.summary(protocol, stable)).collect(),
        }
    }

    /// The group's metadata record: with `assignment` for every member, or the empty group.
    fn metadata_record(&self, assignment: &HashMap<String, Bytes>, now_ms: i64) -> (Bytes, Option<Bytes>) {
        let protocol = self.protocol_name.as_deref();
        let members = self
            .members
            .values()
            .map(|m| MemberValue {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout: m.rebalance_timeout_ms,
                session_timeout: m.session_timeout_ms,
                subscription: m.metadata(protocol),
                assignment: assignment.get(&m.id).cloned().unwrap_or_default(),
            })
            .collect();
        let value = GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol_name.clone(),
            leader: if self.members.is_empty() { None } else { self.leader.clone() },
            current_state_timestamp: now_ms,
            members,
        };
        (rec::encode_key(&RecordKey::Group { group: self.id.clone() }), Some(rec::encode_group_value(&value)))
    }

    fn current_assignment(&self) -> HashMap<String, Bytes> {
        self.members.iter().map(|(id, m)| (id.clone(), m.assignment.clone())).collect()
    }

    /// A group as its latest metadata record left it: Stable with its members, or Empty.
    fn from_record(id: &str, v: GroupValue, incarnation: u64) -> Group {
        let mut g = Group::new(id, incarnation, v.current_state_timestamp);
        g.generation = v.generation;
        g.protocol_type = Some(v.protocol_type).filter(|t| !t.is_empty());
        g.protocol_name = v.protocol;
        g.leader = v.leader;
        for m in v.members {
            let protocols = g.protocol_name.clone().map(|p| vec![(p, m.subscription)]).unwrap_or_default();
            let member = Member {
                id: m.member_id.clone(),
                instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout,
                session_timeout_ms: m.session_timeout,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocols,
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
            };
            if let Some(instance) = &member.instance_id {
                g.static_members.insert(instance.clone(), member.id.clone());
            }
            g.members.insert(member.id.clone(), member);
        }
        if !g.members.is_empty() {
            if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
                g.leader = g.members.keys().next().cloned();
            }
            g.state = GroupState::Stable;
        } else {
            g.leader = None;
        }
        g.subscribed_topics = g.compute_subscribed_topics();
        g
    }
}

// ---- the coordinator of one shard -----------------------------------------------------------

/// What the reload found for one group: its latest metadata and offsets, in log order.
#[derive(Default)]
struct Loaded {
    metadata: Option<GroupValue>,
    offsets: HashMap<(String, i32), Committed>,
}

pub struct Coordinator {
    config: GroupConfig,
    /// Partition count of `__consumer_offsets` (places groups on partitions).
    partitions: i32,
    groups: HashMap<String, Group>,
    timers: Timers,
    writes: VecDeque<Write>,
    next_incarnation: u64,
    loading: HashMap<String, Loaded>,
}

impl Coordinator {
    pub fn new(config: GroupConfig, partitions: i32) -> Coordinator {
        Coordinator {
            config,
            partitions: partitions.max(1),
            groups: HashMap::new(),
            timers: Timers::default(),
            writes: VecDeque::new(),
            next_incarnation: 1,
            loading: HashMap::new(),
        }
    }

    pub fn set_partitions(&mut self, partitions: i32) {
        self.partitions = partitions.max(1);
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    pub fn take_write(&mut self) -> Option<Write> {
        self.writes.pop_front()
    }

    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    fn create_group(&mut self, id: &str, now_ms: i64) {
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        self.groups.insert(id.to_string(), Group::new(id, incarnation, now_ms));
    }

    /// Runs `f` on group `id` with a context; afterwards a Dead or unused group is dropped.
    fn with_group<R>(&mut self, id: &str, now: Instant, now_ms: i64, f: impl FnOnce(&mut Group, &mut Ctx) -> R) -> Option<R> {
        let group = self.groups.get_mut(id)?;
        let mut ctx = Ctx { timers: &mut self.timers, writes: &mut self.writes, config: self.config, partitions: self.partitions, now, now_ms };
        let result = f(group, &mut ctx);
        if group.state == GroupState::Dead || group.is_unused() {
            self.groups.remove(id);
            self.timers.cancel_group(id);
        }
        Some(result)
    }

    pub fn join(&mut self, req: JoinRequest, tx: Responder<JoinResponse>, now: Instant, now_ms: i64) {
        let unknown_member = req.member_id.is_empty();
        if !self.groups.contains_key(&req.group_id) {
            if !unknown_member {
                return respond(tx, JoinResponse::error(&req.member_id, UNKNOWN_MEMBER_ID));
            }
            self.create_group(&req.group_id, now_ms);
        }
        let id = req.group_id.clone();
        self.with_group(&id, now, now_ms, |g, ctx| {
            if unknown_member {
                g.join_new_member(ctx, req, tx)
            } else {
                g.join_existing_member(ctx, req, tx)
            }
        });
    }

    pub fn sync(&mut self, req: SyncRequest, tx: Responder<SyncResponse>, now: Instant, now_ms: i64) {
        if self.groups.get(&req.group_id).is_none_or(|g| g.state == GroupState::Empty) {
            return respond(tx, SyncResponse::error(UNKNOWN_MEMBER_ID));
        }
        let id = req.group_id.clone();
        self.with_group(&id, now, now_ms, |g, ctx| g.sync(ctx, req, tx));
    }

    pub fn heartbeat(&mut self, req: HeartbeatRequest, now: Instant, now_ms: i64) -> i16 {
        let id = req.group_id.clone();
        self.with_group(&id, now, now_ms, |g, ctx| g.heartbeat(ctx, &req)).unwrap_or(UNKNOWN_MEMBER_ID)
    }

    pub fn leave(&mut self, req: LeaveRequest, now: Instant, now_ms: i64) -> LeaveResponse {
        let unknown = || LeaveResponse { error: NONE, members: vec![UNKNOWN_MEMBER_ID; req.members.len()] };
        let id = req.group_id.clone();
        self.with_group(&id, now, now_ms, |g, ctx| g.leave(ctx, &req.members)).unwrap_or_else(unknown)
    }

    pub fn commit(&mut self, req: CommitRequest, tx: Responder<CommitResponse>, now: Instant, now_ms: i64) {
        if !self.groups.contains_key(&req.group_id) {
            if req.generation >= 0 {
                // Kafka: GROUP_ID_NOT_FOUND from v9 on, ILLEGAL_GENERATION before.
                let code = if req.version >= 9 { GROUP_ID_NOT_FOUND } else { ILLEGAL_GENERATION };
                return respond(tx, CommitResponse { errors: vec![code; req.offsets.len()] });
            }
            tracing::info!(group = %req.group_id, "creating a simple group for a manual offset commit");
            self.create_group(&req.group_id, now_ms);
        }
        let id = req.group_id.clone();
        self.with_group(&id, now, now_ms, |g, ctx| g.commit(ctx, req, tx));
    }

    pub fn fetch_offsets(&self, req: FetchOffsetsRequest) -> FetchOffsetsResponse {
        match self.groups.get(&req.group_id).filter(|g| g.state != GroupState::Dead) {
            Some(g) => g.fetch_offsets(req.topics),
            None => {
                let topics = req.topics.unwrap_or_default();
                let topics = topics.into_iter().map(|(t, ps)| (t, ps.into_iter().map(|p| FetchedOffset::from(p, None)).collect())).collect();
                FetchOffsetsResponse { error: NONE, topics }
            }
        }
    }

    /// Unknown groups are reported Dead without an error, as Kafka does before DescribeGroups v6.
    pub fn describe(&self, ids: &[String]) -> Vec<GroupDescription> {
        ids.iter().map(|id| self.groups.get(id).map_or_else(|| GroupDescription::dead(id), Group::describe)).collect()
    }

    pub fn list(&self, states: &[String]) -> Vec<GroupListing> {
        let mut out: Vec<GroupListing> = self
            .groups
            .values()
            .filter(|g| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(g.state.name())))
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name().to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// DeleteGroups for one group: only an Empty group, with tombstones for its offsets and its
    /// metadata. It leaves memory at once (a member joining meanwhile creates a new group);
    /// the answer waits for the tombstones.
    pub fn delete(&mut self, id: &str, tx: Responder<i16>, now: Instant, now_ms: i64) {
        let verdict = match self.groups.get(id) {
            None => Err(GROUP_ID_NOT_FOUND),
            Some(g) => match g.state {
                GroupState::Dead => Err(GROUP_ID_NOT_FOUND),
                GroupState::Empty => Ok(()),
                _ => Err(NON_EMPTY_GROUP),
            },
        };
        if let Err(code) = verdict {
            return respond(tx, code);
        }
        self.with_group(id, now, now_ms, |g, ctx| {
            let mut records: Vec<(Bytes, Option<Bytes>)> = g
                .offsets
                .keys()
                .map(|(topic, partition)| {
                    (rec::encode_key(&RecordKey::Offset { group: g.id.clone(), topic: topic.clone(), partition: *partition }), None)
                })
                .collect();
            records.push((rec::encode_key(&RecordKey::Group { group: g.id.clone() }), None));
            g.offsets.clear();
            crate::metrics::groups::forget_group(&g.id);
            g.transition(GroupState::Dead, ctx.now_ms);
            tracing::info!(group = %g.id, "group deleted");
            g.write(ctx, records, AfterWrite::Deleted { reply: tx });
        });
    }

    pub fn delete_offsets(&mut self, req: DeleteOffsetsRequest, tx: Responder<DeleteOffsetsResponse>, now: Instant, now_ms: i64) {
        let failed = |error| DeleteOffsetsResponse { error, topics: vec![] };
        let Some(g) = self.groups.get(&req.group_id) else { return respond(tx, failed(GROUP_ID_NOT_FOUND)) };
        match g.state {
            GroupState::Dead => return respond(tx, failed(GROUP_ID_NOT_FOUND)),
            GroupState::Empty => {}
            _ if !g.uses_consumer_protocol() => return respond(tx, failed(NON_EMPTY_GROUP)),
            _ => {}
        }
        let id = req.group_id.clone();
        self.with_group(&id, now, now_ms, |g, ctx| {
            let mut records = Vec::new();
            let mut keys = Vec::new();
            let mut topics = Vec::with_capacity(req.topics.len());
            for (topic, partitions) in req.topics {
                let subscribed = g.is_subscribed_to_topic(&topic);
                let mut parts = Vec::with_capacity(partitions.len());
                for p in partitions {
                    if subscribed {
                        parts.push((p, GROUP_SUBSCRIBED_TO_TOPIC));
                        continue;
                    }
                    parts.push((p, NONE));
                    if g.offsets.contains_key(&(topic.clone(), p)) {
                        let key = RecordKey::Offset { group: g.id.clone(), topic: topic.clone(), partition: p };
                        records.push((rec::encode_key(&key), None));
                        keys.push((topic.clone(), p));
                    }
                }
                topics.push((topic, parts));
            }
            let response = DeleteOffsetsResponse { error: NONE, topics };
            if records.is_empty() {
                return respond(tx, response);
            }
            g.write(ctx, records, AfterWrite::OffsetsDeleted { keys, response, reply: tx });
        });
    }

    /// Finishes what waited for `write` (its records are gone): `result` is how its append
    /// ended.
    pub fn after_write(&mut self, write: Write, result: WriteResult, now: Instant, now_ms: i64) {
        let WriteResult { error, base_offset } = result;
        let Write { group, incarnation, then, .. } = write;
        let group = group.as_str();
        let live = match self.groups.get_mut(group) {
            Some(g) if g.incarnation == incarnation => {
                g.writes_in_flight -= 1;
                true
            }
            _ => false,
        };
        let mut run = |f: &mut dyn FnMut(&mut Group, &mut Ctx)| {
            if live {
                self.with_group(group, now, now_ms, |g, ctx| f(g, ctx));
            }
        };
        match then {
            AfterWrite::Logged => {
                if error != NONE {
                    tracing::warn!(group, error, "cannot write the group's metadata (a restart would bring back its previous generation)");
                }
            }
            AfterWrite::Sync { generation, assignment } => {
                let mut assignment = Some(assignment);
                run(&mut |g, ctx| g.after_sync_write(ctx, generation, assignment.take().unwrap_or_default(), error));
            }
            AfterWrite::StaticJoin(s) => {
                let mut s = Some(*s);
                run(&mut |g, ctx| {
                    if let Some(s) = s.take() {
                        g.after_static_join_write(ctx, s, error)
                    }
                });
            }
            AfterWrite::Commit { offsets, mut errors, reply } => {
                if error != NONE {
                    tracing::warn!(group, error, "offset commit not stored");
                    for e in errors.iter_mut().filter(|e| **e == NONE) {
                        *e = coordinator_write_error(error);
                    }
                } else {
                    let mut offsets = Some(offsets);
                    run(&mut |g, _| {
                        for (i, (topic, partition, value)) in offsets.take().unwrap_or_default().into_iter().enumerate() {
                            g.apply_offset(topic, partition, Some(value), base_offset + i as i64);
                        }
                    });
                }
                respond(reply, CommitResponse { errors });
            }
            AfterWrite::Deleted { reply } => {
                if error != NONE {
                    tracing::warn!(group, error, "group tombstones not written: the group comes back at the next start");
                }
                respond(reply, coordinator_write_error(error));
            }
            AfterWrite::OffsetsDeleted { keys, mut response, reply } => {
                if error != NONE {
                    response.error = coordinator_write_error(error);
                } else {
                    let mut keys = Some(keys);
                    run(&mut |g, _| {
                        for (i, (topic, partition)) in keys.take().unwrap_or_default().into_iter().enumerate() {
                            g.apply_offset(topic, partition, None, base_offset + i as i64);
                        }
                    });
                }
                respond(reply, response);
            }
        }
        // A write that failed may leave a group that was only waiting for it.
        if live {
            self.with_group(group, now, now_ms, |_, _| ());
        }
    }

    /// Fires every timer due at `now`.
    pub fn fire_timers(&mut self, now: Instant, now_ms: i64) {
        for (group, action) in self.timers.pop_due(now) {
            self.with_group(&group, now, now_ms, |g, ctx| match action {
                TimerAction::ExpireHeartbeat(member) => g.expire_heartbeat(ctx, &member),
                TimerAction::CompleteJoin => {
                    if g.state == GroupState::PreparingRebalance {
                        g.complete_join(ctx)
                    }
                }
                TimerAction::InitialJoin { delay_ms, remaining_ms } => {
                    if g.state == GroupState::PreparingRebalance {
                        g.initial_join_timer(ctx, delay_ms, remaining_ms)
                    }
                }
                TimerAction::ExpireSync(generation) => g.expire_sync(ctx, generation),
            });
        }
    }

    // ---- reload ------------------------------------------------------------------------------

    /// One record of `__consumer_offsets` at `log_offset`, in log order (reload at start).
    pub fn replay(&mut self, key: RecordKey, value: Option<&[u8]>, log_offset: i64) -> Result<(), rec::DecodeError> {
        match key {
            RecordKey::Offset { group, topic, partition } => {
                let loaded = self.loading.entry(group).or_default();
                match value {
                    Some(raw) => {
                        let value = rec::decode_offset_value(raw)?;
                        loaded.offsets.insert((topic, partition), Committed { value, log_offset });
                    }
                    None => {
                        loaded.offsets.remove(&(topic, partition));
                    }
                }
            }
            RecordKey::Group { group } => {
                let metadata = value.map(rec::decode_group_value).transpose()?;
                self.loading.entry(group).or_default().metadata = metadata;
            }
        }
        Ok(())
    }

    /// Builds the groups the replay found; members restored as Stable must heartbeat within
    /// their session timeout (they may still be running), or they are removed.
    pub fn finish_load(&mut self, now: Instant, now_ms: i64) -> usize {
        let mut count = 0;
        for (id, loaded) in std::mem::take(&mut self.loading) {
            if loaded.metadata.is_none() && loaded.offsets.is_empty() {
                continue; // deleted
            }
            let incarnation = self.next_incarnation;
            self.next_incarnation += 1;
            let mut group = match loaded.metadata {
                Some(v) => Group::from_record(&id, v, incarnation),
                None => Group::new(&id, incarnation, now_ms),
            };
            group.offsets = loaded.offsets;
            for ((topic, partition), c) in &group.offsets {
                crate::metrics::groups::committed(&id, topic, *partition, c.value.offset);
            }
            for m in group.members.values() {
                let at = now + Duration::from_millis(millis(m.session_timeout_ms));
                self.timers.schedule(&id, TimerSlot::Heartbeat(m.id.clone()), at, TimerAction::ExpireHeartbeat(m.id.clone()));
            }
            tracing::debug!(group = %id, state = group.state.name(), generation = group.generation, members = group.members.len(),
                offsets = group.offsets.len(), "group loaded");
            self.groups.insert(id, group);
            count += 1;
        }
        count
    }
}

impl JoinResponse {
    pub fn error(member_id: &str, error: i16) -> JoinResponse {
        JoinResponse {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: vec![],
        }
    }
}

impl SyncResponse {
    pub fn error(error: i16) -> SyncResponse {
        SyncResponse { error, protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

impl FetchedOffset {
    fn from(partition: i32, value: Option<&OffsetValue>) -> FetchedOffset {
        match value {
            Some(v) => FetchedOffset { partition, offset: v.offset, leader_epoch: v.leader_epoch, metadata: v.metadata.clone(), error: NONE },
            None => FetchedOffset { partition, offset: -1, leader_epoch: -1, metadata: String::new(), error: NONE },
        }
    }
}

impl GroupDescription {
    fn dead(id: &str) -> GroupDescription {
        GroupDescription {
            group_id: id.to_string(),
            error: NONE,
            state: GroupState::Dead.name().to_string(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    const SESSION: i32 = 10_000;
    const REBALANCE: i32 = 20_000;

    fn config() -> GroupConfig {
        GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }
    }

    fn join_req(group: &str, member: &str) -> JoinRequest {
        JoinRequest {
            group_id: group.into(),
            member_id: member.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            require_known_member_id: false,
        }
    }

    struct Clock {
        start: Instant,
        ms: u64,
    }

    impl Clock {
        fn now(&self) -> Instant {
            self.start + Duration::from_millis(self.ms)
        }
        fn advance(&mut self, c: &mut Coordinator, ms: u64) {
            self.ms += ms;
            c.fire_timers(self.now(), self.ms as i64);
        }
    }

    fn join(c: &mut Coordinator, clock: &Clock, req: JoinRequest) -> oneshot::Receiver<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        c.join(req, tx, clock.now(), clock.ms as i64);
        rx
    }

    fn ready<T>(rx: &mut oneshot::Receiver<T>) -> Option<T> {
        rx.now_or_never().map(|r| r.expect("answered, not dropped"))
    }

    /// Completes every queued write successfully, at consecutive log offsets from `next`.
    fn flush(c: &mut Coordinator, clock: &Clock, next: &mut i64) {
        while let Some(w) = c.take_write() {
            let n = w.records.len() as i64;
            let result = WriteResult { error: NONE, base_offset: *next };
            *next += n;
            c.after_write(w, result, clock.now(), clock.ms as i64);
        }
    }

    fn stable_single(c: &mut Coordinator, clock: &mut Clock, group: &str) -> String {
        let mut rx = join(c, clock, join_req(group, ""));
        clock.advance(c, 0);
        let j = ready(&mut rx).expect("joined");
        let (tx, mut srx) = oneshot::channel();
        let sync = SyncRequest {
            group_id: group.into(),
            generation: j.generation,
            member_id: j.member_id.clone(),
            instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: vec![(j.member_id.clone(), Bytes::from_static(b"a"))],
        };
        c.sync(sync, tx, clock.now(), clock.ms as i64);
        assert!(ready(&mut srx).is_none(), "the leader's sync waits for its write");
        flush(c, clock, &mut 0);
        assert_eq!(ready(&mut srx).expect("synced").error, NONE);
        j.member_id
    }

    #[test]
    fn groups_coordinator_member_that_does_not_rejoin_is_removed_after_the_rebalance_timeout() {
        let mut c = Coordinator::new(config(), 50);
        let mut clock = Clock { start: Instant::now(), ms: 0 };
        let old = stable_single(&mut c, &mut clock, "g");
        // A second member joins; the first keeps heartbeating but never rejoins.
        let mut rx = join(&mut c, &clock, join_req("g", ""));
        for _ in 0..3 {
            clock.advance(&mut c, 5_000);
            let hb = HeartbeatRequest { group_id: "g".into(), generation: 1, member_id: old.clone(), instance_id: None };
            assert_eq!(c.heartbeat(hb, clock.now(), clock.ms as i64), REBALANCE_IN_PROGRESS);
        }
        assert!(ready(&mut rx).is_none(), "still waiting for the old member");
        clock.advance(&mut c, 5_001); // 20 s: the rebalance timeout
        let j = ready(&mut rx).expect("join completed without it");
        assert_eq!((j.error, j.generation, j.members.len()), (NONE, 2, 1));
        assert_eq!(j.leader, j.member_id, "the new member leads");
        let hb = HeartbeatRequest { group_id: "g".into(), generation: 1, member_id: old, instance_id: None };
        assert_eq!(c.heartbeat(hb, clock.now(), clock.ms as i64), UNKNOWN_MEMBER_ID);
    }

    #[test]
    fn groups_coordinator_silent_member_is_evicted_after_its_session_timeout() {
        let mut c = Coordinator::new(config(), 50);
        let mut clock = Clock { start: Instant::now(), ms: 0 };
        let id = stable_single(&mut c, &mut clock, "g");
        clock.advance(&mut c, SESSION as u64 - 1);
        assert_eq!(c.group("g").expect("group").state, GroupState::Stable);
        clock.advance(&mut c, 2);
        let g = c.group("g").expect("group stays (it has a generation)");
        assert_eq!((g.state, g.generation), (GroupState::Empty, 2), "evicted, then the join phase completes empty");
        let hb = HeartbeatRequest { group_id: "g".into(), generation: 1, member_id: id, instance_id: None };
        assert_eq!(c.heartbeat(hb, clock.now(), clock.ms as i64), UNKNOWN_MEMBER_ID);
        // The empty generation is written (group metadata without members).
        let w = c.take_write().expect("empty group record");
        assert_eq!(w.records.len(), 1);
    }

    #[test]
    fn groups_coordinator_members_that_never_sync_are_removed() {
        let mut c = Coordinator::new(config(), 50);
        let mut clock = Clock { start: Instant::now(), ms: 0 };
        let mut rx = join(&mut c, &clock, join_req("g", ""));
        clock.advance(&mut c, 0);
        let j = ready(&mut rx).expect("joined");
        assert_eq!(c.group("g").unwrap().state, GroupState::CompletingRebalance);
        // The leader never sends SyncGroup (it heartbeats, so its session is fine).
        for _ in 0..4 {
            clock.advance(&mut c, 5_000);
            let hb = HeartbeatRequest { group_id: "g".into(), generation: j.generation, member_id: j.member_id.clone(), instance_id: None };
            c.heartbeat(hb, clock.now(), clock.ms as i64);
        }
        clock.advance(&mut c, 1);
        let g = c.group("g").expect("group");
        assert_eq!((g.state, g.generation), (GroupState::Empty, 2), "removed at the sync deadline");
    }

    #[test]
    fn groups_coordinator_initial_delay_is_extended_while_members_arrive() {
        let mut c = Coordinator::new(GroupConfig { initial_rebalance_delay_ms: 3_000, ..GroupConfig::default() }, 50);
        let mut clock = Clock { start: Instant::now(), ms: 0 };
        let mut a = join(&mut c, &clock, join_req("g", ""));
        clock.advance(&mut c, 2_000);
        let mut b = join(&mut c, &clock, join_req("g", ""));
        clock.advance(&mut c, 1_000); // the first delay ends: a member arrived during it
        assert!(ready(&mut a).is_none() && ready(&mut b).is_none());
        clock.advance(&mut c, 3_000); // nobody new during the second: done
        let (ja, jb) = (ready(&mut a).expect("a"), ready(&mut b).expect("b"));
        assert_eq!((ja.generation, jb.generation), (1, 1));
        assert_eq!(ja.members.len() + jb.members.len(), 2, "one of them leads with both");
    }

    #[test]
    fn groups_coordinator_later_commit_wins_even_if_its_write_completes_first() {
        let mut c = Coordinator::new(config(), 50);
        let clock = Clock { start: Instant::now(), ms: 0 };
        let commit = |c: &mut Coordinator, offset| {
            let (tx, rx) = oneshot::channel();
            let part = OffsetCommitPart { topic: "t".into(), partition: 0, offset, leader_epoch: -1, metadata: None };
            let req = CommitRequest {
                group_id: "simple".into(),
                generation: -1,
                member_id: String::new(),
                instance_id: None,
                retention_ms: -1,
                version: 8,
                offsets: vec![part],
            };
            c.commit(req, tx, clock.now(), 0);
            rx
        };
        let mut first = commit(&mut c, 10);
        let mut second = commit(&mut c, 20);
        let (w1, w2) = (c.take_write().unwrap(), c.take_write().unwrap());
        // Appended in order (log offsets 0 and 1); the second's durability is reported first.
        c.after_write(w2, WriteResult { error: NONE, base_offset: 1 }, clock.now(), 0);
        c.after_write(w1, WriteResult { error: NONE, base_offset: 0 }, clock.now(), 0);
        assert_eq!(ready(&mut first).unwrap().errors, vec![NONE]);
        assert_eq!(ready(&mut second).unwrap().errors, vec![NONE]);
        let fetched = c.fetch_offsets(FetchOffsetsRequest { group_id: "simple".into(), topics: None });
        assert_eq!(fetched.topics[0].1[0].offset, 20, "the record later in the log decides");
    }

    #[test]
    fn groups_coordinator_failed_assignment_write_fails_the_sync_and_rebalances() {
        let mut c = Coordinator::new(config(), 50);
        let mut clock = Clock { start: Instant::now(), ms: 0 };
        let mut rx = join(&mut c, &clock, join_req("g", ""));
        clock.advance(&mut c, 0);
        let j = ready(&mut rx).unwrap();
        let (tx, mut srx) = oneshot::channel();
        let sync = SyncRequest {
            group_id: "g".into(),
            generation: j.generation,
            member_id: j.member_id.clone(),
            instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: vec![],
        };
        c.sync(sync, tx, clock.now(), 0);
        let w = c.take_write().unwrap();
        c.after_write(w, WriteResult { error: KAFKA_STORAGE_ERROR, base_offset: -1 }, clock.now(), 0);
        assert_eq!(ready(&mut srx).unwrap().error, NOT_COORDINATOR, "the client looks the coordinator up again");
        assert_eq!(c.group("g").unwrap().state, GroupState::PreparingRebalance);
        // A failed commit is reported the same way and changes nothing.
        let (tx, mut crx) = oneshot::channel();
        let part = OffsetCommitPart { topic: "t".into(), partition: 0, offset: 5, leader_epoch: -1, metadata: None };
        let req = CommitRequest {
            group_id: "g".into(),
            generation: j.generation,
            member_id: j.member_id.clone(),
            instance_id: None,
            retention_ms: -1,
            version: 8,
            offsets: vec![part],
        };
        c.commit(req, tx, clock.now(), 0);
        let w = c.take_write().unwrap();
        c.after_write(w, WriteResult { error: KAFKA_STORAGE_ERROR, base_offset: -1 }, clock.now(), 0);
        assert_eq!(ready(&mut crx).unwrap().errors, vec![NOT_COORDINATOR]);
        assert!(c.group("g").unwrap().offsets.is_empty());
    }

    #[test]
    fn groups_coordinator_reload_takes_the_latest_value_per_key() {
        let mut c = Coordinator::new(config(), 50);
        let key = |g: &str, p| RecordKey::Offset { group: g.into(), topic: "t".into(), partition: p };
        let value = |o| rec::encode_offset_value(&OffsetValue { offset: o, leader_epoch: -1, metadata: String::new(), commit_timestamp: 1, expire_timestamp: -1 });
        c.replay(key("a", 0), Some(&value(1)), 0).unwrap();
        c.replay(key("a", 0), Some(&value(2)), 1).unwrap();
        c.replay(key("a", 1), Some(&value(9)), 2).unwrap();
        c.replay(key("a", 1), None, 3).unwrap(); // tombstone
        c.replay(key("gone", 0), Some(&value(4)), 4).unwrap();
        c.replay(key("gone", 0), None, 5).unwrap();
        c.replay(RecordKey::Group { group: "gone".into() }, None, 6).unwrap();
        assert_eq!(c.finish_load(Instant::now(), 0), 1, "a deleted group does not come back");
        let a = c.group("a").expect("loaded");
        assert_eq!(a.state, GroupState::Empty);
        assert_eq!(a.offsets.len(), 1);
        assert_eq!(a.offsets[&("t".to_string(), 0)].value.offset, 2);
    }
}
