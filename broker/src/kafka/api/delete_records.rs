//! DeleteRecords (key 21), v0-2: moves each partition's log start offset forward.

use super::{encode, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::UNKNOWN_TOPIC_OR_PARTITION;
use crate::router::{shard_for, ShardRequest, ShardResponse};
use crate::scatter::scatter;
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
    let shard = req.shard.clone();
    let mut items = Vec::new();
    let mut known = Vec::new();
    for topic in &body.topics {
        let count = shard.topic_partitions(topic.name.0.as_str());
        for p in &topic.partitions {
            let ok = count.is_some_and(|n| (0..n).contains(&p.partition_index));
            known.push(ok);
            if ok {
                let owner = shard_for(topic.name.0.as_str(), p.partition_index, shard.nr_shards);
                items.push((owner, (topic.name.0.clone(), p.partition_index, p.offset)));
            }
        }
    }
    let take = |r| match r {
        ShardResponse::DeleteRecords(v) => Some(v),
        _ => None,
    };
    let mut answers = scatter(&shard, items, ShardRequest::DeleteRecords, take, (UNKNOWN_TOPIC_OR_PARTITION, -1)).await.into_iter();
    let mut known = known.into_iter();
    let mut resp = DeleteRecordsResponse::default();
    for topic in &body.topics {
        let mut t = DeleteRecordsTopicResult::default();
        t.name = topic.name.clone();
        for p in &topic.partitions {
            let (error, low_watermark) =
                if known.next() == Some(true) { answers.next().expect("one answer per known partition") } else { (UNKNOWN_TOPIC_OR_PARTITION, -1) };
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
