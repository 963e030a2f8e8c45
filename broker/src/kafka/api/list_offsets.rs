//! ListOffsets (key 2), v1-7: earliest (-2), latest (-1, the high watermark, which is also the
//! last stable offset: no transactions), or the first batch with max timestamp >= T.

use super::{encode, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::UNKNOWN_TOPIC_OR_PARTITION;
use crate::router::{ShardRequest, ShardResponse};
use crate::scatter::per_partition;
use crate::shard::partitions::{OffsetAnswer, OffsetQuery, PartitionReply, PartitionRequest};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::ListOffsets,
    versions: VersionRange { min: 1, max: 7 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: ListOffsetsRequest = req.decode()?;
    let queries = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetQuery { topic: t.name.0.clone(), partition: p.partition_index, timestamp: p.timestamp })
        })
        .collect();
    let make = |q| ShardRequest::Partitions(PartitionRequest::ListOffsets(q));
    let take = |r| match r {
        ShardResponse::Partitions(PartitionReply::Offsets(v)) => Some(v),
        _ => None,
    };
    let unknown = OffsetAnswer::failed(UNKNOWN_TOPIC_OR_PARTITION);
    let mut answers = per_partition(&req.shard, queries, make, take, unknown).await.into_iter();
    let mut resp = ListOffsetsResponse::default();
    for topic in &body.topics {
        let mut t = ListOffsetsTopicResponse::default();
        t.name = topic.name.clone();
        for p in &topic.partitions {
            let OffsetAnswer { error, timestamp, offset } = answers.next().expect("one answer per partition");
            let mut r = ListOffsetsPartitionResponse::default();
            r.partition_index = p.partition_index;
            r.error_code = error;
            r.timestamp = timestamp;
            r.offset = offset;
            // leader_epoch exists from v4; the codec refuses it set below that.
            r.leader_epoch = if offset >= 0 && req.version >= 4 { 0 } else { -1 };
            t.partitions.push(r);
        }
        resp.topics.push(t);
    }
    Ok(Reply::Now(encode(&resp, req.version)?))
}
