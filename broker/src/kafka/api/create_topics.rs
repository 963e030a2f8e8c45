//! CreateTopics (key 19), v2-7. Single node: replication factor must be 1 (or -1 = default).
//! The controller (shard 0) validates, persists and broadcasts the new topics.

use super::{encode, handler, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::{INVALID_REPLICATION_FACTOR, INVALID_REQUEST, KAFKA_STORAGE_ERROR, NONE};
use crate::shard::controller::{TopicResult, TopicSpec};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::CreateTopics,
    versions: VersionRange { min: 2, max: 7 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: CreateTopicsRequest = req.decode()?;
    let shard = req.shard.clone();
    let mut refused = Vec::new();
    let mut specs = Vec::new();
    for t in &body.topics {
        let name = t.name.0.to_string();
        if !matches!(t.replication_factor, -1 | 1) {
            let msg = format!("replication factor {} is not possible: this cluster has 1 broker", t.replication_factor);
            refused.push(TopicResult { name, error: INVALID_REPLICATION_FACTOR, message: Some(msg) });
        } else if !t.assignments.is_empty() {
            refused.push(TopicResult { name, error: INVALID_REQUEST, message: Some("manual replica assignment is not supported".into()) });
        } else {
            let partitions = if t.num_partitions == -1 { shard.config.default_partitions } else { t.num_partitions };
            let configs = t.configs.iter().filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string()))).collect();
            specs.push(TopicSpec { name, partitions, configs });
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
