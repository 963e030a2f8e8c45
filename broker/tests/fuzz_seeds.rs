//! Seed inputs of the `request_decode` fuzz target (fuzz/): a valid frame for every registered
//! (key, version) pair, with default and with populated bodies (Produce carries a real record
//! batch). The test checks they all decode the way the broker decodes them; with
//! `RIPTIDE_WRITE_FUZZ_SEEDS=<dir>` it also writes them there (tests/fuzz.sh does, into
//! fuzz/seeds/request_decode, when that directory is missing).

mod common;
use bytes::Bytes;
use common::{batch, encode_request};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;
use riptide_broker::kafka::api::decode_check::{self, FrameOutcome};
use riptide_broker::kafka::api::{Registry, REGISTRY};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn produce() -> ProduceRequest {
    common::produce_request("seed", vec![(0, batch(3, "seed", Compression::None))])
}

fn fetch() -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = 0;
    p.fetch_offset = 7;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = name("seed");
    t.partitions = vec![p];
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = 500;
    req.min_bytes = 1;
    req.max_bytes = 50 << 20;
    req.topics = vec![t];
    req
}

fn list_offsets() -> ListOffsetsRequest {
    let mut p = ListOffsetsPartition::default();
    p.timestamp = -1;
    let mut t = ListOffsetsTopic::default();
    t.name = name("seed");
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    req
}

fn metadata() -> MetadataRequest {
    let mut t = MetadataRequestTopic::default();
    t.name = Some(name("seed"));
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![t]);
    req
}

fn create_topics() -> CreateTopicsRequest {
    common::create_topics_request("seed", 3, 1, &[("retention.ms", "1000")])
}

fn delete_topics() -> DeleteTopicsRequest {
    let mut req = DeleteTopicsRequest::default();
    req.topic_names = vec![name("seed")];
    req
}

fn delete_records() -> DeleteRecordsRequest {
    let mut p = DeleteRecordsPartition::default();
    p.offset = 5;
    let mut t = DeleteRecordsTopic::default();
    t.name = name("seed");
    t.partitions = vec![p];
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    req
}

fn offset_for_leader_epoch() -> OffsetForLeaderEpochRequest {
    let mut p = OffsetForLeaderPartition::default();
    p.current_leader_epoch = 0;
    p.leader_epoch = 0;
    let mut t = OffsetForLeaderTopic::default();
    t.topic = name("seed");
    t.partitions = vec![p];
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    req
}

fn describe_configs() -> DescribeConfigsRequest {
    let mut r = DescribeConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = StrBytes::from_static_str("seed");
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    req
}

fn create_partitions() -> CreatePartitionsRequest {
    let mut t = CreatePartitionsTopic::default();
    t.name = name("seed");
    t.count = 6;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    req
}

fn alter_configs() -> AlterConfigsRequest {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut c = AlterableConfig::default();
    c.name = StrBytes::from_static_str("retention.ms");
    c.value = Some(StrBytes::from_static_str("60000"));
    let mut r = AlterConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = StrBytes::from_static_str("seed");
    r.configs = vec![c];
    let mut req = AlterConfigsRequest::default();
    req.resources = vec![r];
    req
}

fn incremental_alter_configs() -> IncrementalAlterConfigsRequest {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut c = AlterableConfig::default();
    c.name = StrBytes::from_static_str("segment.bytes");
    c.config_operation = 0;
    c.value = Some(StrBytes::from_static_str("1048576"));
    let mut r = AlterConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = StrBytes::from_static_str("seed");
    r.configs = vec![c];
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![r];
    req
}

fn group(id: &str) -> GroupId {
    GroupId(StrBytes::from_string(id.into()))
}

fn join_group() -> JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    let mut p = JoinGroupRequestProtocol::default();
    p.name = StrBytes::from_static_str("range");
    p.metadata = Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 4, b's', b'e', b'e', b'd', 0, 0, 0, 0]);
    let mut req = JoinGroupRequest::default();
    req.group_id = group("seed-group");
    req.session_timeout_ms = 10_000;
    req.rebalance_timeout_ms = 30_000;
    req.protocol_type = StrBytes::from_static_str("consumer");
    req.protocols = vec![p];
    req
}

fn sync_group() -> SyncGroupRequest {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    let mut a = SyncGroupRequestAssignment::default();
    a.member_id = StrBytes::from_static_str("member-1");
    a.assignment = Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 4, b's', b'e', b'e', b'd', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut req = SyncGroupRequest::default();
    req.group_id = group("seed-group");
    req.generation_id = 1;
    req.member_id = StrBytes::from_static_str("member-1");
    req.assignments = vec![a];
    req
}

fn heartbeat() -> HeartbeatRequest {
    let mut req = HeartbeatRequest::default();
    req.group_id = group("seed-group");
    req.generation_id = 1;
    req.member_id = StrBytes::from_static_str("member-1");
    req
}

fn offset_commit() -> OffsetCommitRequest {
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    let mut p = OffsetCommitRequestPartition::default();
    p.committed_offset = 42;
    p.committed_metadata = Some(StrBytes::from_static_str("seed"));
    let mut t = OffsetCommitRequestTopic::default();
    t.name = name("seed");
    t.partitions = vec![p];
    let mut req = OffsetCommitRequest::default();
    req.group_id = group("seed-group");
    req.generation_id_or_member_epoch = -1;
    req.topics = vec![t];
    req
}

fn offset_fetch() -> OffsetFetchRequest {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let mut t = OffsetFetchRequestTopic::default();
    t.name = name("seed");
    t.partition_indexes = vec![0, 1];
    let mut req = OffsetFetchRequest::default();
    req.group_id = group("seed-group");
    req.topics = Some(vec![t]);
    req
}

fn delete_groups() -> DeleteGroupsRequest {
    let mut req = DeleteGroupsRequest::default();
    req.groups_names = vec![group("seed-group")];
    req
}

/// The request of `key` at `version`, default and populated (where the version can carry it).
fn payloads(key: ApiKey, version: i16) -> Vec<Vec<u8>> {
    fn both<T: Encodable + Default>(key: ApiKey, version: i16, rich: T) -> Vec<Vec<u8>> {
        let mut out = vec![encode_request(key, version, 1, &T::default())];
        // A populated field a version cannot carry fails to encode: keep the default only.
        if rich.encode(&mut bytes::BytesMut::new(), version).is_ok() {
            out.push(encode_request(key, version, 2, &rich));
        }
        out
    }
    match key {
        ApiKey::Produce => both(key, version, produce()),
        ApiKey::Fetch => both(key, version, fetch()),
        ApiKey::ListOffsets => both(key, version, list_offsets()),
        ApiKey::Metadata => both(key, version, metadata()),
        ApiKey::ApiVersions => both(key, version, ApiVersionsRequest::default()),
        ApiKey::CreateTopics => both(key, version, create_topics()),
        ApiKey::DeleteTopics => both(key, version, delete_topics()),
        ApiKey::DeleteRecords => both(key, version, delete_records()),
        ApiKey::OffsetForLeaderEpoch => both(key, version, offset_for_leader_epoch()),
        ApiKey::InitProducerId => both(key, version, InitProducerIdRequest::default()),
        ApiKey::DescribeConfigs => both(key, version, describe_configs()),
        ApiKey::CreatePartitions => both(key, version, create_partitions()),
        ApiKey::DescribeCluster => both(key, version, DescribeClusterRequest::default()),
        ApiKey::AlterConfigs => both(key, version, alter_configs()),
        ApiKey::IncrementalAlterConfigs => both(key, version, incremental_alter_configs()),
        ApiKey::FindCoordinator => both(key, version, FindCoordinatorRequest::default()),
        ApiKey::JoinGroup => both(key, version, join_group()),
        ApiKey::SyncGroup => both(key, version, sync_group()),
        ApiKey::Heartbeat => both(key, version, heartbeat()),
        ApiKey::LeaveGroup => both(key, version, LeaveGroupRequest::default()),
        ApiKey::OffsetCommit => both(key, version, offset_commit()),
        ApiKey::OffsetFetch => both(key, version, offset_fetch()),
        ApiKey::DescribeGroups => both(key, version, DescribeGroupsRequest::default()),
        ApiKey::ListGroups => both(key, version, ListGroupsRequest::default()),
        ApiKey::DeleteGroups => both(key, version, delete_groups()),
        ApiKey::OffsetDelete => both(key, version, OffsetDeleteRequest::default()),
        other => panic!("{other:?} is registered: add a seed request for it here"),
    }
}

/// (file name, input) of every seed: whole frames, and (pair index, body) inputs for the
/// fuzz target's direct mode.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let pairs = decode_check::registered_versions();
    let mut out = Vec::new();
    for (i, &(key, version)) in pairs.iter().enumerate() {
        if version < key.valid_versions().min {
            continue; // hand-coded below the codec: golden frames in legacy_versions.rs
        }
        for (n, frame) in payloads(key, version).into_iter().enumerate() {
            let header_len = {
                let mut b = Bytes::from(frame.clone());
                riptide_broker::kafka::frame::decode_header(key, version, &mut b).unwrap();
                frame.len() - b.len()
            };
            let mut direct = vec![i as u8];
            direct.extend_from_slice(&frame[header_len..]);
            out.push((format!("seed-frame-{}-v{version}-{n}", key as i16), frame));
            out.push((format!("seed-body-{}-v{version}-{n}", key as i16), direct));
        }
    }
    // The golden ApiVersions v3 frame from protocol_golden.rs, and a v9 one we answer at v0.
    out.push(("seed-golden-api-versions-v3".into(), vec![0, 18, 0, 3, 0, 0, 0, 5, 0, 1, b'k', 0, 2, b'a', 2, b'1', 0]));
    out.push(("seed-golden-api-versions-v9".into(), vec![0, 18, 0, 9, 0, 0, 0, 11, 0, 6, b'f', b'u', b't', b'u', b'r', b'e', 0, 0, 0]));
    out
}

#[test]
fn fuzz_seeds_decode_like_the_broker() {
    let registry = Registry::new(REGISTRY).unwrap();
    let pairs = decode_check::registered_versions();
    assert!(pairs.len() < 256, "the direct mode picks a pair with one byte");
    let seeds = seeds();
    for (file, input) in &seeds {
        let input = Bytes::from(input.clone());
        if file.starts_with("seed-body-") {
            let (key, version) = pairs[usize::from(input[0])];
            let mut body = input.slice(1..);
            decode_check::decode_request(key, version, &mut body).unwrap_or_else(|e| panic!("{file}: {e}"));
        } else if file.ends_with("-v9") {
            assert_eq!(decode_check::decode_frame(&registry, input), FrameOutcome::ApiVersionsFallback, "{file}");
        } else {
            assert_eq!(decode_check::decode_frame(&registry, input), FrameOutcome::Decoded, "{file}");
        }
    }
    let populated = seeds.iter().filter(|(f, _)| f.starts_with("seed-frame-") && f.ends_with("-1")).count();
    assert!(populated >= REGISTRY.len(), "most APIs have a populated seed ({populated})");
    if let Some(dir) = std::env::var_os("RIPTIDE_WRITE_FUZZ_SEEDS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, input) in &seeds {
            std::fs::write(dir.join(file), input).unwrap();
        }
        eprintln!("wrote {} seeds to {}", seeds.len(), dir.display());
    }
}
