//! CreatePartitions (key 37), v0-3: grows a topic's partition count (never shrinks it).

use super::{encode, handler, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::{INVALID_REQUEST, KAFKA_STORAGE_ERROR};
use crate::shard::controller::{ControllerCommand, PartitionCount};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::CreatePartitions,
    versions: VersionRange { min: 0, max: 3 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: CreatePartitionsRequest = req.decode()?;
    let shard = req.shard.clone();
    let manual: Vec<bool> = body.topics.iter().map(|t| t.assignments.as_ref().is_some_and(|a| !a.is_empty())).collect();
    let wanted: Vec<PartitionCount> = body
        .topics
        .iter()
        .zip(&manual)
        .filter(|(_, m)| !**m)
        .map(|(t, _)| PartitionCount { topic: t.name.0.to_string(), count: t.count })
        .collect();
    let results = if wanted.is_empty() {
        vec![]
    } else {
        shard.controller_call(ControllerCommand::CreatePartitions { topics: wanted, validate_only: body.validate_only }).await
    };
    let mut resp = CreatePartitionsResponse::default();
    for (t, manual) in body.topics.iter().zip(manual) {
        let name = t.name.0.as_str();
        let (code, msg) = if manual {
            (INVALID_REQUEST, Some("manual replica assignment is not supported".to_string()))
        } else {
            results.iter().find(|r| r.name == name).map_or((KAFKA_STORAGE_ERROR, Some("controller unavailable".into())), |r| (r.error, r.message.clone()))
        };
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        r.error_code = code;
        r.error_message = msg.map(|m| str_bytes(&m));
        resp.results.push(r);
    }
    Ok(Reply::Now(encode(&resp, req.version)?))
}
