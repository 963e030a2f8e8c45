//! OffsetDelete (key 47), v0: removes committed offsets (tombstones in `__consumer_offsets`) of
//! an Empty group, or of topics a consumer group is not subscribed to
//! (GROUP_SUBSCRIBED_TO_TOPIC otherwise).

use super::{encode_later, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::{COORDINATOR_NOT_AVAILABLE, NONE, UNKNOWN_TOPIC_OR_PARTITION};
use crate::shard::groups::{DeleteOffsetsRequest, DeleteOffsetsResponse, GroupReply, GroupRequest};
use futures::FutureExt;
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::OffsetDelete,
    versions: VersionRange { min: 0, max: 0 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: OffsetDeleteRequest = req.decode()?;
    let shard = req.shard.clone();
    let version = req.version;
    let known = |topic: &str, p: i32| shard.topic_partitions(topic).is_some_and(|n| (0..n).contains(&p));
    let topics: Vec<(String, Vec<i32>)> = body
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.partitions.iter().map(|p| p.partition_index).filter(|p| known(t.name.as_str(), *p)).collect()))
        .collect();
    let args = DeleteOffsetsRequest { group_id: body.group_id.to_string(), topics };
    Ok(Reply::Later(
        async move {
            let group = args.group_id.clone();
            let answer = match shard.group_call(&group, GroupRequest::DeleteOffsets(args)).await {
                Some(GroupReply::DeleteOffsets(r)) => r,
                _ => DeleteOffsetsResponse { error: COORDINATOR_NOT_AVAILABLE, topics: vec![] },
            };
            let mut resp = OffsetDeleteResponse::default();
            resp.error_code = answer.error;
            if answer.error == NONE {
                for t in &body.topics {
                    let mut topic = OffsetDeleteResponseTopic::default();
                    topic.name = t.name.clone();
                    let decided = answer.topics.iter().find(|(n, _)| n == t.name.as_str()).map(|(_, ps)| ps.as_slice()).unwrap_or(&[]);
                    for p in &t.partitions {
                        let mut part = OffsetDeleteResponsePartition::default();
                        part.partition_index = p.partition_index;
                        part.error_code =
                            decided.iter().find(|(i, _)| *i == p.partition_index).map_or(UNKNOWN_TOPIC_OR_PARTITION, |(_, e)| *e);
                        topic.partitions.push(part);
                    }
                    resp.topics.push(topic);
                }
            }
            encode_later(&resp, ApiKey::OffsetDelete, version)
        }
        .boxed_local(),
    ))
}
