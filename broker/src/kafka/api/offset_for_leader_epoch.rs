//! OffsetForLeaderEpoch (key 23), v2-4: where a leader epoch ends in each partition's log (the
//! leader epoch cache storage keeps), for consumers validating their position after a leader
//! change (KIP-320) and, with replication, for followers finding where to truncate.

use super::{encode, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::UNKNOWN_TOPIC_OR_PARTITION;
use crate::router::{ShardRequest, ShardResponse};
use crate::scatter::per_partition;
use crate::shard::partitions::{EpochAnswer, EpochQuery, PartitionReply, PartitionRequest};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::protocol::VersionRange;

/// Kafka 4.1 serves v2-4 (v0-1 lack the asker's current epoch).
pub const API: Api = Api {
    key: ApiKey::OffsetForLeaderEpoch,
    versions: VersionRange { min: 2, max: 4 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: OffsetForLeaderEpochRequest = req.decode()?;
    let queries = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| EpochQuery {
                topic: t.topic.0.clone(),
                partition: p.partition,
                current_leader_epoch: p.current_leader_epoch,
                leader_epoch: p.leader_epoch,
            })
        })
        .collect();
    let make = |q| ShardRequest::Partitions(PartitionRequest::EpochEndOffsets(q));
    let take = |r| match r {
        ShardResponse::Partitions(PartitionReply::EpochEndOffsets(v)) => Some(v),
        _ => None,
    };
    let unknown = EpochAnswer::failed(UNKNOWN_TOPIC_OR_PARTITION);
    let mut answers = per_partition(&req.shard, queries, make, take, unknown).await.into_iter();
    let mut resp = OffsetForLeaderEpochResponse::default();
    for topic in &body.topics {
        let mut t = OffsetForLeaderTopicResult::default();
        t.topic = topic.topic.clone();
        for p in &topic.partitions {
            let EpochAnswer { error, leader_epoch, end_offset } = answers.next().expect("one answer per partition");
            let mut r = EpochEndOffset::default();
            r.partition = p.partition;
            r.error_code = error;
            r.leader_epoch = leader_epoch;
            r.end_offset = end_offset;
            t.partitions.push(r);
        }
        resp.topics.push(t);
    }
    Ok(Reply::Now(encode(&resp, req.version)?))
}
