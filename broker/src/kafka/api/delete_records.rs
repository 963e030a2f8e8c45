//! DeleteRecords (key 21), v0-2: moves each partition's log start offset forward.

use super::{encode, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::UNKNOWN_TOPIC_OR_PARTITION;
use crate::router::{ShardRequest, ShardResponse};
use crate::scatter::per_partition;
use crate::shard::partitions::{DeleteRecordsAnswer, DeleteRecordsQuery, PartitionReply, PartitionRequest};
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::DeleteRecords,
    versions: VersionRange { min: 0, max: 2 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: DeleteRecordsRequest = req.decode()?;
    // Kafka: "Cannot delete records of internal topic" (INVALID_TOPIC_EXCEPTION, below).
    let queries = body
        .topics
        .iter()
        .filter(|t| !crate::topics::is_internal(t.name.as_str()))
        .flat_map(|t| {
            t.partitions.iter().map(|p| DeleteRecordsQuery { topic: t.name.0.clone(), partition: p.partition_index, before: p.offset })
        })
        .collect();
    let make = |q| ShardRequest::Partitions(PartitionRequest::DeleteRecords(q));
    let take = |r| match r {
        ShardResponse::Partitions(PartitionReply::DeleteRecords(v)) => Some(v),
        _ => None,
    };
    let unknown = DeleteRecordsAnswer::failed(UNKNOWN_TOPIC_OR_PARTITION);
    let mut answers = per_partition(&req.shard, queries, make, take, unknown).await.into_iter();
    let mut resp = DeleteRecordsResponse::default();
    for topic in &body.topics {
        let mut t = DeleteRecordsTopicResult::default();
        t.name = topic.name.clone();
        for p in &topic.partitions {
            let DeleteRecordsAnswer { error, low_watermark } = if crate::topics::is_internal(topic.name.as_str()) {
                DeleteRecordsAnswer::failed(crate::kafka::errors::INVALID_TOPIC_EXCEPTION)
            } else {
                answers.next().expect("one answer per partition")
            };
            let mut r = DeleteRecordsPartitionResult::default();
            r.partition_index = p.partition_index;
            r.error_code = error;
            r.low_watermark = low_watermark;
            t.partitions.push(r);
        }
        resp.topics.push(t);
    }
    Ok(Reply::Now(encode(&resp, req.version)?))
}
