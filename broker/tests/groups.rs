//! Consumer-group protocol edge cases against an in-process broker: golden response frames
//! (expected bytes written by hand from Kafka's schemas) for the error answers clients act on,
//! and decoded flows for the rest.

mod common;
use bytes::Bytes;
use common::{encode_request, Client, TestBroker};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use riptide_broker::config::GroupConfig;

const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const ILLEGAL_GENERATION: i16 = 22;
const INVALID_GROUP_ID: i16 = 24;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;
const _: i16 = COORDINATOR_NOT_AVAILABLE;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// No initial rebalance delay: a group's first join completes at once.
fn broker() -> TestBroker {
    TestBroker::start_groups(2, GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }, None)
}

fn join_request(group: &str, member: &str, instance: Option<&str>, session_ms: i32) -> JoinGroupRequest {
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(s(group));
    r.member_id = s(member);
    r.group_instance_id = instance.map(s);
    r.session_timeout_ms = session_ms;
    r.rebalance_timeout_ms = 10_000;
    r.protocol_type = s("consumer");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("range");
    p.metadata = Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff");
    r.protocols = vec![p];
    r
}

fn join(c: &mut Client, version: i16, group: &str, member: &str, instance: Option<&str>) -> JoinGroupResponse {
    c.call(ApiKey::JoinGroup, version, &join_request(group, member, instance, 10_000))
}

/// A dynamic member through MEMBER_ID_REQUIRED and the join: (member id, response).
fn join_dynamic(c: &mut Client, group: &str) -> (String, JoinGroupResponse) {
    let first = join(c, 5, group, "", None);
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let id = first.member_id.to_string();
    let resp = join(c, 5, group, &id, None);
    assert_eq!(resp.error_code, 0, "join");
    (id, resp)
}

fn sync(c: &mut Client, group: &str, generation: i32, member: &str, assignments: &[(&str, &[u8])]) -> SyncGroupResponse {
    let mut r = SyncGroupRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id = generation;
    r.member_id = s(member);
    r.assignments = assignments
        .iter()
        .map(|(m, a)| {
            let mut x = SyncGroupRequestAssignment::default();
            x.member_id = s(m);
            x.assignment = Bytes::copy_from_slice(a);
            x
        })
        .collect();
    c.call(ApiKey::SyncGroup, 3, &r)
}

fn heartbeat(c: &mut Client, version: i16, group: &str, generation: i32, member: &str, instance: Option<&str>) -> HeartbeatResponse {
    let mut r = HeartbeatRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id = generation;
    r.member_id = s(member);
    r.group_instance_id = instance.map(s);
    c.call(ApiKey::Heartbeat, version, &r)
}

/// A member of `group` that went through join and sync: (member id, generation).
fn stable_member(c: &mut Client, group: &str) -> (String, i32) {
    let (id, j) = join_dynamic(c, group);
    assert_eq!(j.leader.as_str(), id, "the only member leads");
    let s = sync(c, group, j.generation_id, &id, &[(&id, b"assignment")]);
    assert_eq!((s.error_code, &s.assignment[..]), (0, &b"assignment"[..]));
    (id, j.generation_id)
}

fn send<Req: Encodable>(c: &mut Client, key: ApiKey, version: i16, correlation: i32, req: &Req) {
    c.send(&encode_request(key, version, correlation, req));
}

/// The raw response payload; the correlation id must match.
fn recv_raw(c: &mut Client, correlation: i32) -> Vec<u8> {
    let resp = c.recv().expect("answered");
    assert_eq!(i32::from_be_bytes(resp[..4].try_into().unwrap()), correlation);
    resp
}

fn decode<Resp: Decodable>(raw: &[u8], key: ApiKey, version: i16) -> Resp {
    let header = if key.response_header_version(version) >= 1 { 5 } else { 4 };
    Resp::decode(&mut Bytes::copy_from_slice(&raw[header..]), version).expect("decodes")
}

fn string(v: &str) -> Vec<u8> {
    let mut b = (v.len() as i16).to_be_bytes().to_vec();
    b.extend_from_slice(v.as_bytes());
    b
}

#[test]
fn groups_first_join_v4_is_member_id_required_golden() {
    let b = broker();
    let mut c = b.connect();
    send(&mut c, ApiKey::JoinGroup, 4, 41, &join_request("golden-join", "", None, 10_000));
    let raw = recv_raw(&mut c, 41);
    // The id Kafka hands out: client id, "-", a random UUID.
    let id_len = i16::from_be_bytes(raw[18..20].try_into().unwrap()) as usize;
    let id = std::str::from_utf8(&raw[20..20 + id_len]).unwrap().to_string();
    let uuid = id.strip_prefix("riptide-test-").expect("client id prefix");
    assert_eq!(uuid.len(), 36, "{id}");
    assert_eq!(uuid.chars().filter(|c| *c == '-').count(), 4, "{id}");
    // JoinGroup v4 response: correlation, throttle, error 79, generation -1, protocol name "",
    // leader "", member id, no members.
    let mut want = 41i32.to_be_bytes().to_vec();
    want.extend_from_slice(&0i32.to_be_bytes());
    want.extend_from_slice(&MEMBER_ID_REQUIRED.to_be_bytes());
    want.extend_from_slice(&(-1i32).to_be_bytes());
    want.extend(string(""));
    want.extend(string(""));
    want.extend(string(&id));
    want.extend_from_slice(&0i32.to_be_bytes());
    assert_eq!(raw, want);
    // v3 has no KIP-394 step: the first join is the join.
    let v3 = join(&mut c, 3, "golden-join-v3", "", None);
    assert_eq!((v3.error_code, v3.generation_id), (0, 1));
    assert_eq!(v3.leader, v3.member_id);
}

#[test]
fn groups_two_members_join_sync_and_heartbeat() {
    let b = broker();
    let (mut a, mut bc) = (b.connect(), b.connect());
    let (id_a, ja) = join_dynamic(&mut a, "pair");
    assert_eq!((ja.generation_id, ja.members.len()), (1, 1));
    sync(&mut a, "pair", 1, &id_a, &[(&id_a, b"a-all")]);
    // B's join is parked until A rejoins (A learns of the rebalance from its heartbeat).
    let first = join(&mut bc, 5, "pair", "", None);
    let id_b = first.member_id.to_string();
    send(&mut bc, ApiKey::JoinGroup, 5, 900, &join_request("pair", &id_b, None, 10_000));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(heartbeat(&mut a, 3, "pair", 1, &id_a, None).error_code, REBALANCE_IN_PROGRESS);
    let ja2 = join(&mut a, 5, "pair", &id_a, None);
    let jb: JoinGroupResponse = decode(&recv_raw(&mut bc, 900), ApiKey::JoinGroup, 5);
    assert_eq!((ja2.error_code, jb.error_code), (0, 0));
    assert_eq!((ja2.generation_id, jb.generation_id), (2, 2));
    assert_eq!(ja2.leader.as_str(), id_a, "the first member stays leader");
    assert_eq!(jb.leader.as_str(), id_a);
    let mut listed: Vec<String> = ja2.members.iter().map(|m| m.member_id.to_string()).collect();
    listed.sort();
    let mut both = vec![id_a.clone(), id_b.clone()];
    both.sort();
    assert_eq!(listed, both, "the leader gets every member");
    assert!(jb.members.is_empty(), "followers get no member list");
    // The follower's SyncGroup waits for the leader's.
    let mut req = SyncGroupRequest::default();
    req.group_id = GroupId(s("pair"));
    req.generation_id = 2;
    req.member_id = s(&id_b);
    send(&mut bc, ApiKey::SyncGroup, 3, 901, &req);
    let sa = sync(&mut a, "pair", 2, &id_a, &[(&id_a, b"for-a"), (&id_b, b"for-b")]);
    let sb: SyncGroupResponse = decode(&recv_raw(&mut bc, 901), ApiKey::SyncGroup, 3);
    assert_eq!((sa.error_code, &sa.assignment[..]), (0, &b"for-a"[..]));
    assert_eq!((sb.error_code, &sb.assignment[..]), (0, &b"for-b"[..]));
    assert_eq!(heartbeat(&mut bc, 3, "pair", 2, &id_b, None).error_code, 0);
    // DescribeGroups: Stable, both members with their assignments.
    let mut d = DescribeGroupsRequest::default();
    d.groups = vec![GroupId(s("pair")), GroupId(s("nobody"))];
    let desc: DescribeGroupsResponse = a.call(ApiKey::DescribeGroups, 5, &d);
    let g = &desc.groups[0];
    assert_eq!((g.group_state.as_str(), g.protocol_type.as_str(), g.protocol_data.as_str()), ("Stable", "consumer", "range"));
    assert_eq!(g.members.len(), 2);
    assert!(g.members.iter().any(|m| m.member_id.as_str() == id_b && &m.member_assignment[..] == b"for-b"));
    assert!(g.members.iter().all(|m| m.client_host.as_str() == "/127.0.0.1"), "{:?}", g.members);
    assert_eq!((desc.groups[1].error_code, desc.groups[1].group_state.as_str()), (0, "Dead"), "unknown group");
    // LeaveGroup v3 for B: A must rejoin, and is alone in generation 3.
    let mut l = LeaveGroupRequest::default();
    l.group_id = GroupId(s("pair"));
    let mut m = MemberIdentity::default();
    m.member_id = s(&id_b);
    l.members = vec![m];
    let left: LeaveGroupResponse = bc.call(ApiKey::LeaveGroup, 3, &l);
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    assert_eq!(heartbeat(&mut a, 3, "pair", 2, &id_a, None).error_code, REBALANCE_IN_PROGRESS);
    let ja3 = join(&mut a, 5, "pair", &id_a, None);
    assert_eq!((ja3.error_code, ja3.generation_id, ja3.members.len()), (0, 3, 1));
}

#[test]
fn groups_heartbeat_errors_golden() {
    let b = broker();
    let mut c = b.connect();
    let (id, generation) = stable_member(&mut c, "hb");
    let golden = |corr: i32, error: i16| {
        let mut want = corr.to_be_bytes().to_vec();
        want.extend_from_slice(&0i32.to_be_bytes()); // throttle
        want.extend_from_slice(&error.to_be_bytes());
        want
    };
    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(s("hb"));
    hb.generation_id = generation + 1;
    hb.member_id = s(&id);
    send(&mut c, ApiKey::Heartbeat, 2, 61, &hb);
    assert_eq!(recv_raw(&mut c, 61), golden(61, ILLEGAL_GENERATION));
    hb.generation_id = generation;
    hb.member_id = s("someone-else");
    send(&mut c, ApiKey::Heartbeat, 2, 62, &hb);
    assert_eq!(recv_raw(&mut c, 62), golden(62, UNKNOWN_MEMBER_ID));
    hb.group_id = GroupId(s("no-such-group"));
    send(&mut c, ApiKey::Heartbeat, 2, 63, &hb);
    assert_eq!(recv_raw(&mut c, 63), golden(63, UNKNOWN_MEMBER_ID));
    hb.group_id = GroupId(s("hb"));
    hb.member_id = s(&id);
    send(&mut c, ApiKey::Heartbeat, 2, 64, &hb);
    assert_eq!(recv_raw(&mut c, 64), golden(64, 0));
    // SyncGroup of an old generation.
    let old = sync(&mut c, "hb", generation - 1, &id, &[]);
    assert_eq!(old.error_code, ILLEGAL_GENERATION);
}

#[test]
fn groups_rebalance_in_progress_golden() {
    let b = broker();
    let (mut a, mut other) = (b.connect(), b.connect());
    let (id, generation) = stable_member(&mut a, "reb");
    let first = join(&mut other, 5, "reb", "", None);
    send(&mut other, ApiKey::JoinGroup, 5, 70, &join_request("reb", first.member_id.as_str(), None, 10_000));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(s("reb"));
    hb.generation_id = generation;
    hb.member_id = s(&id);
    send(&mut a, ApiKey::Heartbeat, 0, 71, &hb);
    // Heartbeat v0: correlation, error 27 (no throttle before v1).
    let mut want = 71i32.to_be_bytes().to_vec();
    want.extend_from_slice(&REBALANCE_IN_PROGRESS.to_be_bytes());
    assert_eq!(recv_raw(&mut a, 71), want);
    // SyncGroup during the join phase: REBALANCE_IN_PROGRESS too.
    assert_eq!(sync(&mut a, "reb", generation, &id, &[]).error_code, REBALANCE_IN_PROGRESS);
    // A commit of the current generation is accepted while the group prepares to rebalance
    // (members commit what they processed before they rejoin).
    create_topic(&mut a, "t-reb", 1);
    assert_eq!(commit(&mut a, 8, "reb", generation, &id, "t-reb", 0, 5, None), vec![0]);
    assert_eq!(commit(&mut a, 8, "reb", generation, &id, "not-a-topic", 0, 5, None), vec![UNKNOWN_TOPIC_OR_PARTITION]);
}

#[test]
fn groups_static_member_is_fenced_golden() {
    let b = broker();
    let (mut old, mut new) = (b.connect(), b.connect());
    // A static member joins without MEMBER_ID_REQUIRED (its instance id identifies it).
    let j1 = join(&mut old, 5, "static", "", Some("instance-1"));
    assert_eq!((j1.error_code, j1.generation_id), (0, 1));
    let id1 = j1.member_id.to_string();
    assert!(id1.starts_with("instance-1-"), "{id1}");
    assert_eq!(sync(&mut old, "static", 1, &id1, &[(&id1, b"mine")]).error_code, 0);
    // The same instance restarts: it takes the place of the old member id, no rebalance.
    let j2 = join(&mut new, 5, "static", "", Some("instance-1"));
    let id2 = j2.member_id.to_string();
    assert_eq!((j2.error_code, j2.generation_id), (0, 1), "same generation");
    assert_ne!(id1, id2);
    let s2 = sync(&mut new, "static", 1, &id2, &[]);
    assert_eq!((s2.error_code, &s2.assignment[..]), (0, &b"mine"[..]), "the old member's assignment");
    // The old process is fenced.
    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(s("static"));
    hb.generation_id = 1;
    hb.member_id = s(&id1);
    hb.group_instance_id = Some(s("instance-1"));
    send(&mut old, ApiKey::Heartbeat, 3, 81, &hb);
    let mut want = 81i32.to_be_bytes().to_vec();
    want.extend_from_slice(&0i32.to_be_bytes());
    want.extend_from_slice(&FENCED_INSTANCE_ID.to_be_bytes());
    assert_eq!(recv_raw(&mut old, 81), want);
    assert_eq!(heartbeat(&mut new, 3, "static", 1, &id2, Some("instance-1")).error_code, 0);
    assert_eq!(join(&mut old, 5, "static", &id1, Some("instance-1")).error_code, FENCED_INSTANCE_ID);
    // LeaveGroup by instance id (what an administrator does) removes it.
    let mut l = LeaveGroupRequest::default();
    l.group_id = GroupId(s("static"));
    let mut m = MemberIdentity::default();
    m.member_id = s("");
    m.group_instance_id = Some(s("instance-1"));
    l.members = vec![m];
    let left: LeaveGroupResponse = old.call(ApiKey::LeaveGroup, 4, &l);
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    assert_eq!(heartbeat(&mut new, 3, "static", 1, &id2, Some("instance-1")).error_code, UNKNOWN_MEMBER_ID);
}

#[allow(clippy::too_many_arguments)]
fn commit(c: &mut Client, version: i16, group: &str, generation: i32, member: &str, topic: &str, p: i32, offset: i64, meta: Option<&str>) -> Vec<i16> {
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id_or_member_epoch = generation;
    r.member_id = s(member);
    let mut part = OffsetCommitRequestPartition::default();
    part.partition_index = p;
    part.committed_offset = offset;
    part.committed_metadata = meta.map(s);
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s(topic));
    t.partitions = vec![part];
    r.topics = vec![t];
    let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, version, &r);
    resp.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
}

fn fetch_offsets(c: &mut Client, group: &str, topic: &str, partitions: Vec<i32>) -> Vec<(i32, i64, String, i16)> {
    let mut r = OffsetFetchRequest::default();
    r.group_id = GroupId(s(group));
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(s(topic));
    t.partition_indexes = partitions;
    r.topics = Some(vec![t]);
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 5, &r);
    assert_eq!(resp.error_code, 0);
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset, p.metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(), p.error_code))
        .collect()
}

fn create_topic(c: &mut Client, name: &str, partitions: i32) {
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 4, &common::create_topics_request(name, partitions, 1, &[]));
    assert_eq!(resp.topics[0].error_code, 0);
}

#[test]
fn groups_offset_fetch_of_unknown_group_golden() {
    let b = broker();
    let mut c = b.connect();
    let mut r = OffsetFetchRequest::default();
    r.group_id = GroupId(s("nobody"));
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(s("t"));
    t.partition_indexes = vec![0];
    r.topics = Some(vec![t]);
    send(&mut c, ApiKey::OffsetFetch, 5, 91, &r);
    // v5: throttle, [topic "t": [partition 0, offset -1, leader epoch -1, metadata "", error 0]], error 0.
    let mut want = 91i32.to_be_bytes().to_vec();
    want.extend_from_slice(&0i32.to_be_bytes());
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend(string("t"));
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend_from_slice(&0i32.to_be_bytes());
    want.extend_from_slice(&(-1i64).to_be_bytes());
    want.extend_from_slice(&(-1i32).to_be_bytes());
    want.extend(string(""));
    want.extend_from_slice(&0i16.to_be_bytes());
    want.extend_from_slice(&0i16.to_be_bytes());
    assert_eq!(recv_raw(&mut c, 91), want);
    // v8 (several groups): an unknown group asked for all its offsets has none.
    let mut r8 = OffsetFetchRequest::default();
    let mut g = OffsetFetchRequestGroup::default();
    g.group_id = GroupId(s("nobody"));
    g.topics = None;
    let mut g2 = OffsetFetchRequestGroup::default();
    g2.group_id = GroupId(s("nobody-either"));
    let mut t2 = OffsetFetchRequestTopics::default();
    t2.name = TopicName(s("t"));
    t2.partition_indexes = vec![3];
    g2.topics = Some(vec![t2]);
    r8.groups = vec![g, g2];
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 8, &r8);
    assert_eq!(resp.groups.len(), 2);
    assert!(resp.groups[0].topics.is_empty() && resp.groups[0].error_code == 0);
    assert_eq!(resp.groups[1].topics[0].partitions[0].committed_offset, -1);
}

#[test]
fn groups_delete_non_empty_group_is_refused_golden() {
    let b = broker();
    let mut c = b.connect();
    let (id, generation) = stable_member(&mut c, "busy");
    let mut d = DeleteGroupsRequest::default();
    d.groups_names = vec![GroupId(s("busy"))];
    send(&mut c, ApiKey::DeleteGroups, 1, 51, &d);
    // v1: correlation, throttle, [group "busy", error 68].
    let mut want = 51i32.to_be_bytes().to_vec();
    want.extend_from_slice(&0i32.to_be_bytes());
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend(string("busy"));
    want.extend_from_slice(&NON_EMPTY_GROUP.to_be_bytes());
    assert_eq!(recv_raw(&mut c, 51), want);
    // Unknown: GROUP_ID_NOT_FOUND. Once the member left, the group goes.
    d.groups_names = vec![GroupId(s("never-seen"))];
    let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, 1, &d);
    assert_eq!(r.results[0].error_code, GROUP_ID_NOT_FOUND);
    create_topic(&mut c, "busy-t", 2);
    assert_eq!(commit(&mut c, 8, "busy", generation, &id, "busy-t", 1, 42, None), vec![0]);
    let mut l = LeaveGroupRequest::default();
    l.group_id = GroupId(s("busy"));
    l.member_id = s(&id);
    let left: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 1, &l);
    assert_eq!(left.error_code, 0);
    d.groups_names = vec![GroupId(s("busy"))];
    let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, 1, &d);
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(fetch_offsets(&mut c, "busy", "busy-t", vec![1]), vec![(1, -1, String::new(), 0)], "offsets deleted with it");
    let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, 1, &d);
    assert_eq!(r.results[0].error_code, GROUP_ID_NOT_FOUND, "already deleted");
}

#[test]
fn groups_offset_commit_errors_and_simple_groups() {
    let b = broker();
    let mut c = b.connect();
    create_topic(&mut c, "oc", 3);
    // A consumer outside group management (generation -1) commits to a group of its own.
    assert_eq!(commit(&mut c, 8, "simple", -1, "", "oc", 2, 17, Some("hello")), vec![0]);
    assert_eq!(fetch_offsets(&mut c, "simple", "oc", vec![2, 0]), vec![(2, 17, "hello".into(), 0), (0, -1, String::new(), 0)]);
    assert_eq!(commit(&mut c, 8, "simple", -1, "", "oc", 7, 1, None), vec![UNKNOWN_TOPIC_OR_PARTITION], "no partition 7");
    assert_eq!(commit(&mut c, 8, "simple", -1, "", "oc", 0, 1, Some(&"m".repeat(5000))), vec![OFFSET_METADATA_TOO_LARGE]);
    // A generation for a group that does not exist: ILLEGAL_GENERATION before v9, then GROUP_ID_NOT_FOUND.
    assert_eq!(commit(&mut c, 8, "ghost", 3, "m", "oc", 0, 1, None), vec![ILLEGAL_GENERATION]);
    assert_eq!(commit(&mut c, 9, "ghost", 3, "m", "oc", 0, 1, None), vec![GROUP_ID_NOT_FOUND]);
    // A group with members: a commit without membership is refused, a stale generation too.
    let (id, generation) = stable_member(&mut c, "managed");
    assert_eq!(commit(&mut c, 8, "managed", -1, "", "oc", 0, 1, None), vec![UNKNOWN_MEMBER_ID]);
    assert_eq!(commit(&mut c, 8, "managed", generation - 1, &id, "oc", 0, 1, None), vec![ILLEGAL_GENERATION]);
    assert_eq!(commit(&mut c, 8, "managed", generation, "intruder", "oc", 0, 1, None), vec![UNKNOWN_MEMBER_ID]);
    assert_eq!(commit(&mut c, 8, "managed", generation, &id, "oc", 0, 99, None), vec![0]);
    assert_eq!(fetch_offsets(&mut c, "managed", "oc", vec![0])[0].1, 99);
}

#[test]
fn groups_invalid_group_id_and_session_timeout() {
    let b = broker();
    let mut c = b.connect();
    assert_eq!(join(&mut c, 5, "", "", None).error_code, INVALID_GROUP_ID);
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join_request("g", "", None, 1000));
    assert_eq!(r.error_code, INVALID_SESSION_TIMEOUT, "below group.min.session.timeout.ms");
    assert_eq!(heartbeat(&mut c, 3, "", 1, "m", None).error_code, INVALID_GROUP_ID);
}

#[test]
fn groups_find_coordinator_answers_this_broker_golden() {
    let b = broker();
    let mut c = b.connect();
    let mut r = FindCoordinatorRequest::default();
    r.key = s("any-group");
    send(&mut c, ApiKey::FindCoordinator, 0, 31, &r);
    // v0: correlation, error 0, node 0, host, port.
    let mut want = 31i32.to_be_bytes().to_vec();
    want.extend_from_slice(&0i16.to_be_bytes());
    want.extend_from_slice(&0i32.to_be_bytes());
    want.extend(string("127.0.0.1"));
    want.extend_from_slice(&i32::from(b.addr.port()).to_be_bytes());
    assert_eq!(recv_raw(&mut c, 31), want);
    let mut r4 = FindCoordinatorRequest::default();
    r4.coordinator_keys = vec![s("a"), s("b"), s("polygenelubricants")];
    let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 4, &r4);
    assert_eq!(resp.coordinators.len(), 3);
    for co in &resp.coordinators {
        assert_eq!((co.error_code, co.node_id.0, co.port), (0, 0, i32::from(b.addr.port())), "{co:?}");
    }
    r4.key_type = 5;
    let bad: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 4, &r4);
    assert!(bad.coordinators.iter().all(|co| co.error_code == 42), "unknown key type: INVALID_REQUEST");
}

#[test]
fn groups_offsets_and_generations_survive_a_restart() {
    let groups = GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() };
    let b = TestBroker::start_groups(2, groups, None);
    let mut c = b.connect();
    create_topic(&mut c, "kept", 4);
    let (id, generation) = stable_member(&mut c, "kept-group");
    for p in 0..4 {
        assert_eq!(commit(&mut c, 8, "kept-group", generation, &id, "kept", p, 100 + i64::from(p), Some("m")), vec![0]);
        assert_eq!(commit(&mut c, 8, "simple-kept", -1, "", "kept", p, 10 * i64::from(p), None), vec![0]);
    }
    // A later commit replaces the earlier one; a tombstone (OffsetDelete) removes one.
    assert_eq!(commit(&mut c, 8, "simple-kept", -1, "", "kept", 3, 31, None), vec![0]);
    let mut od = OffsetDeleteRequest::default();
    od.group_id = GroupId(s("simple-kept"));
    let mut t = kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default();
    t.name = TopicName(s("kept"));
    let mut p = kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default();
    p.partition_index = 0;
    t.partitions = vec![p];
    od.topics = vec![t];
    let deleted: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &od);
    assert_eq!((deleted.error_code, deleted.topics[0].partitions[0].error_code), (0, 0));
    drop(c);
    let dir = b.stop_keeping_data();
    let b = TestBroker::start_groups(2, groups, Some(dir));
    let mut c = b.connect();
    let kept = fetch_offsets(&mut c, "kept-group", "kept", vec![0, 1, 2, 3]);
    assert_eq!(kept.iter().map(|k| k.1).collect::<Vec<_>>(), vec![100, 101, 102, 103]);
    assert!(kept.iter().all(|k| k.2 == "m"));
    let simple = fetch_offsets(&mut c, "simple-kept", "kept", vec![0, 1, 2, 3]);
    assert_eq!(simple.iter().map(|k| k.1).collect::<Vec<_>>(), vec![-1, 10, 20, 31]);
    // The member is back (Stable, same generation): it can go on heartbeating.
    assert_eq!(heartbeat(&mut c, 3, "kept-group", generation, &id, None).error_code, 0);
    let mut d = DescribeGroupsRequest::default();
    d.groups = vec![GroupId(s("kept-group"))];
    let desc: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &d);
    assert_eq!(desc.groups[0].group_state.as_str(), "Stable");
    assert_eq!(desc.groups[0].members[0].member_id.as_str(), id);
    let mut lg = ListGroupsRequest::default();
    lg.states_filter = vec![s("Empty")];
    let listed: ListGroupsResponse = c.call(ApiKey::ListGroups, 4, &lg);
    let names: Vec<&str> = listed.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(names, vec!["simple-kept"], "filtered by state");
}
