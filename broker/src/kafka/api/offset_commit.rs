//! OffsetCommit (key 8), v0-9 (v0-1 are older than kafka-protocol's codec and decoded here;
//! their answer has v2's layout). Committed offsets are records of `__consumer_offsets` (Kafka's
//! OffsetCommitKey v1 / OffsetCommitValue v3): the answer comes once the record is synced.
//! Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION and are not stored, as on Kafka.

use super::{encode_later, handler, opt_string, Api, ApiError, Reply, Request, WireReader};
use crate::kafka::errors::{COORDINATOR_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION};
use crate::shard::groups::{CommitRequest, GroupReply, GroupRequest, OffsetCommitPart};
use futures::FutureExt;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::OffsetCommit,
    versions: VersionRange { min: 0, max: 9 },
    handle: handler!(handle),
};

/// First version kafka-protocol decodes; v0 and v1 answer with its layout.
const CODEC_MIN_VERSION: i16 = 2;

/// v0: group, [topic, [partition, offset, metadata]]. v1 adds the generation and member id,
/// and a commit timestamp per partition (ignored: the commit time is the broker's, as for
/// v2+).
fn decode_legacy(body: bytes::Bytes, version: i16) -> Result<OffsetCommitRequest, ApiError> {
    let mut r = WireReader::new(body);
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(r.string()?);
    req.generation_id_or_member_epoch = -1;
    if version == 1 {
        req.generation_id_or_member_epoch = r.i32()?;
        req.member_id = r.string()?;
    }
    for _ in 0..r.count(6)? {
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(r.string()?);
        for _ in 0..r.count(14)? {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = r.i32()?;
            p.committed_offset = r.i64()?;
            if version == 1 {
                let _commit_timestamp = r.i64()?;
            }
            p.committed_metadata = r.nullable_string()?;
            t.partitions.push(p);
        }
        req.topics.push(t);
    }
    Ok(req)
}

/// The request body at `version`, whichever decoder that version needs (also the fuzzer's).
pub(crate) fn decode_body(body: bytes::Bytes, version: i16) -> Result<OffsetCommitRequest, ApiError> {
    if version < CODEC_MIN_VERSION {
        return decode_legacy(body, version);
    }
    let mut body = body;
    <OffsetCommitRequest as kafka_protocol::protocol::Decodable>::decode(&mut body, version).map_err(|e| ApiError::Decode(e.to_string()))
}

async fn handle(req: Request) -> Result<Reply, ApiError> {
    let body = decode_body(req.body.clone(), req.version)?;
    let shard = req.shard.clone();
    let version = req.version;
    let encode_version = version.max(CODEC_MIN_VERSION);
    // Which request partitions go to the coordinator (Some(index in `parts`)), in order.
    let mut slots = Vec::new();
    let mut parts = Vec::new();
    for t in &body.topics {
        let count = shard.topic_partitions(t.name.as_str());
        for p in &t.partitions {
            if count.is_some_and(|n| (0..n).contains(&p.partition_index)) {
                slots.push(Some(parts.len()));
                parts.push(OffsetCommitPart {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: opt_string(&p.committed_metadata),
                });
            } else {
                slots.push(None);
            }
        }
    }
    let n = parts.len();
    let args = CommitRequest {
        group_id: body.group_id.to_string(),
        generation: body.generation_id_or_member_epoch,
        member_id: body.member_id.to_string(),
        instance_id: opt_string(&body.group_instance_id),
        retention_ms: body.retention_time_ms,
        version,
        offsets: parts,
    };
    Ok(Reply::Later(
        async move {
            let group = args.group_id.clone();
            let errors = if n == 0 {
                vec![]
            } else {
                match shard.group_call(&group, GroupRequest::Commit(args)).await {
                    Some(GroupReply::Commit(r)) => r.errors,
                    _ => vec![COORDINATOR_NOT_AVAILABLE; n],
                }
            };
            let mut resp = OffsetCommitResponse::default();
            let mut slots = slots.into_iter();
            for t in &body.topics {
                let mut topic = OffsetCommitResponseTopic::default();
                topic.name = t.name.clone();
                for p in &t.partitions {
                    let mut part = OffsetCommitResponsePartition::default();
                    part.partition_index = p.partition_index;
                    part.error_code = match slots.next().flatten() {
                        Some(i) => errors.get(i).copied().unwrap_or(COORDINATOR_NOT_AVAILABLE),
                        None => UNKNOWN_TOPIC_OR_PARTITION,
                    };
                    topic.partitions.push(part);
                }
                resp.topics.push(topic);
            }
            encode_later(&resp, ApiKey::OffsetCommit, encode_version)
        }
        .boxed_local(),
    ))
}
