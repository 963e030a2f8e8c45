//! OffsetFetch (key 9), v0-9; v8+ ask for several groups at once. v0 (older than
//! kafka-protocol's codec; Kafka read it from ZooKeeper) has v1's layout and is served like it. A group without commits
//! (or unknown) answers offset -1 for every partition asked, without an error, as Kafka does;
//! "all topics" (null, v2+) lists every committed offset of the group.

use super::{encode_later, handler, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::{COORDINATOR_NOT_AVAILABLE, NONE};
use crate::shard::groups::{FetchOffsetsRequest, FetchOffsetsResponse, FetchedOffset, GroupReply, GroupRequest};
use crate::shard::Shard;
use futures::future::join_all;
use futures::FutureExt;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::VersionRange;
use std::rc::Rc;

pub const API: Api = Api {
    key: ApiKey::OffsetFetch,
    versions: VersionRange { min: 0, max: 9 },
    handle: handler!(handle),
};

/// First version asking for several groups.
const MULTI_GROUP_VERSION: i16 = 8;
/// First version with a top-level error code (before, errors go in every partition).
const TOP_LEVEL_ERROR_VERSION: i16 = 2;
/// First version carrying the committed leader epoch.
const LEADER_EPOCH_VERSION: i16 = 5;

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    // v0 and v1 have the same layout.
    req.version = req.version.max(1);
    let body: OffsetFetchRequest = req.decode()?;
    let shard = req.shard.clone();
    let version = req.version;
    let asks: Vec<FetchOffsetsRequest> = if version >= MULTI_GROUP_VERSION {
        body.groups
            .iter()
            .map(|g| FetchOffsetsRequest {
                group_id: g.group_id.to_string(),
                topics: g.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect()),
            })
            .collect()
    } else {
        vec![FetchOffsetsRequest {
            group_id: body.group_id.to_string(),
            topics: body.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect()),
        }]
    };
    Ok(Reply::Later(
        async move {
            let answers = join_all(asks.iter().cloned().map(|a| fetch(&shard, a))).await;
            let resp = if version >= MULTI_GROUP_VERSION {
                multi_group(version, &asks, answers)
            } else {
                single_group(version, asks.into_iter().next().expect("one group"), answers.into_iter().next().expect("one answer"))
            };
            encode_later(&resp, ApiKey::OffsetFetch, version)
        }
        .boxed_local(),
    ))
}

async fn fetch(shard: &Rc<Shard>, ask: FetchOffsetsRequest) -> FetchOffsetsResponse {
    let group = ask.group_id.clone();
    match shard.group_call(&group, GroupRequest::FetchOffsets(ask)).await {
        Some(GroupReply::FetchOffsets(r)) => r,
        _ => FetchOffsetsResponse { error: COORDINATOR_NOT_AVAILABLE, topics: vec![] },
    }
}

fn single_group(version: i16, ask: FetchOffsetsRequest, answer: FetchOffsetsResponse) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    let mut topics = answer.topics;
    if answer.error != NONE && version < TOP_LEVEL_ERROR_VERSION {
        // v1 has no top-level error: every partition asked carries it.
        topics = ask
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|(t, ps)| {
                let parts = ps
                    .into_iter()
                    .map(|p| FetchedOffset { partition: p, offset: -1, leader_epoch: -1, metadata: String::new(), error: answer.error })
                    .collect();
                (t, parts)
            })
            .collect();
    }
    if version >= TOP_LEVEL_ERROR_VERSION {
        resp.error_code = answer.error;
    }
    for (name, parts) in topics {
        let mut t = OffsetFetchResponseTopic::default();
        t.name = TopicName(str_bytes(&name));
        for f in parts {
            let mut p = OffsetFetchResponsePartition::default();
            p.partition_index = f.partition;
            p.committed_offset = f.offset;
            if version >= LEADER_EPOCH_VERSION {
                p.committed_leader_epoch = f.leader_epoch;
            }
            p.metadata = Some(str_bytes(&f.metadata));
            p.error_code = f.error;
            t.partitions.push(p);
        }
        resp.topics.push(t);
    }
    resp
}

fn multi_group(_version: i16, asks: &[FetchOffsetsRequest], answers: Vec<FetchOffsetsResponse>) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    for (ask, answer) in asks.iter().zip(answers) {
        let mut g = OffsetFetchResponseGroup::default();
        g.group_id = GroupId(str_bytes(&ask.group_id));
        g.error_code = answer.error;
        for (name, parts) in answer.topics {
            let mut t = OffsetFetchResponseTopics::default();
            t.name = TopicName(str_bytes(&name));
            for f in parts {
                let mut p = OffsetFetchResponsePartitions::default();
                p.partition_index = f.partition;
                p.committed_offset = f.offset;
                p.committed_leader_epoch = f.leader_epoch;
                p.metadata = Some(str_bytes(&f.metadata));
                p.error_code = f.error;
                t.partitions.push(p);
            }
            g.topics.push(t);
        }
        resp.groups.push(g);
    }
    resp
}
