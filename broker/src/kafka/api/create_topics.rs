//! CreateTopics (key 19), v2-7. Single node: replication factor must be 1 (or -1 = default).
//! A manual replica assignment is accepted when it names only this broker, once per partition,
//! for partitions 0..n (with num_partitions and replication_factor -1, as Kafka requires);
//! otherwise Kafka's errors and messages. The controller (shard 0) validates, persists and
//! broadcasts the new topics.

use super::{encode, handler, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::{INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_REQUEST, KAFKA_STORAGE_ERROR, NONE};
use crate::shard::controller::{TopicResult, TopicSpec};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::CreateTopics,
    versions: VersionRange { min: 2, max: 7 },
    handle: handler!(handle),
};

/// Kafka's INVALID_REPLICA_ASSIGNMENT (39); only this API answers it.
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: CreateTopicsRequest = req.decode()?;
    let shard = req.shard.clone();
    let mut refused = Vec::new();
    let mut specs = Vec::new();
    for t in &body.topics {
        let name = t.name.0.to_string();
        if !t.assignments.is_empty() {
            match assigned_partitions(t, shard.config.node_id) {
                Ok(partitions) => specs.push(TopicSpec { name, partitions, configs: configs_of(t) }),
                Err((error, msg)) => refused.push(TopicResult { name, error, message: Some(msg) }),
            }
        } else if !matches!(t.replication_factor, -1 | 1) {
            let msg = format!("replication factor {} is not possible: this cluster has 1 broker", t.replication_factor);
            refused.push(TopicResult { name, error: INVALID_REPLICATION_FACTOR, message: Some(msg) });
        } else {
            let partitions = if t.num_partitions == -1 { shard.config.default_partitions } else { t.num_partitions };
            specs.push(TopicSpec { name, partitions, configs: configs_of(t) });
        }
    }
    let mut results = if specs.is_empty() { vec![] } else { shard.create_topics_via_controller(specs.clone(), body.validate_only).await };
    for spec in &specs {
        if !results.iter().any(|r| r.name == spec.name) {
            results.push(TopicResult { name: spec.name.clone(), error: KAFKA_STORAGE_ERROR, message: Some("controller unavailable".into()) });
        }
    }
    results.extend(refused);
    let mut resp = CreateTopicsResponse::default();
    for t in &body.topics {
        let name = t.name.0.as_str();
        let (code, msg) = results.iter().find(|r| r.name == name).map_or((INVALID_REQUEST, None), |r| (r.error, r.message.clone()));
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.error_code = code;
        r.error_message = msg.map(|m| str_bytes(&m));
        if code == NONE {
            if let Some(meta) = shard.topic(name) {
                r.topic_id = uuid::Uuid::from_bytes(meta.uuid_bytes());
                r.num_partitions = meta.partitions;
            } else {
                r.num_partitions = specs.iter().find(|s| s.name == name).map_or(-1, |s| s.partitions);
            }
            r.replication_factor = 1;
        } else {
            r.num_partitions = -1;
            r.replication_factor = -1;
        }
        r.configs = Some(vec![]);
        resp.topics.push(r);
    }
    Ok(Reply::Now(encode(&resp, req.version)?))
}

fn configs_of(t: &CreatableTopic) -> Vec<(String, String)> {
    t.configs.iter().filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string()))).collect()
}

/// The partition count of a manual assignment, checked as Kafka's controller does
/// (`ReplicationControlManager`): num_partitions and replication_factor -1, every partition
/// once, numbered 0..n, each with a non-empty list of registered brokers, none twice. The only
/// registered broker here is `node_id`.
fn assigned_partitions(t: &CreatableTopic, node_id: i32) -> Result<i32, (i16, String)> {
    let refuse = |msg: String| Err((INVALID_REPLICA_ASSIGNMENT, msg));
    if t.replication_factor != -1 {
        let msg = "A manual partition assignment was specified, but replication factor was not set to -1.";
        return Err((INVALID_REPLICATION_FACTOR, msg.into()));
    }
    if t.num_partitions != -1 {
        let msg = "A manual partition assignment was specified, but numPartitions was not set to -1.";
        return Err((INVALID_PARTITIONS, msg.into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in &t.assignments {
        if !seen.insert(a.partition_index) {
            return refuse(format!("Found multiple manual partition assignments for partition {}", a.partition_index));
        }
        if a.broker_ids.is_empty() {
            return refuse("The manual partition assignment includes an empty replica list.".into());
        }
        let mut brokers: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        brokers.sort_unstable();
        if let Some(unknown) = brokers.iter().find(|b| **b != node_id) {
            return refuse(format!("The manual partition assignment includes broker {unknown}, but no such broker is registered."));
        }
        if brokers.len() > 1 {
            return refuse(format!("The manual partition assignment includes the broker {node_id} more than once."));
        }
    }
    let count = seen.len() as i32;
    if seen.iter().copied().ne(0..count) {
        return refuse("partitions should be a consecutive 0-based integer sequence".into());
    }
    Ok(count)
}
