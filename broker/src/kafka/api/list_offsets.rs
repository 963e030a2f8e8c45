//! ListOffsets (key 2), v0-7: earliest (-2), latest (-1, the high watermark, which is also the
//! last stable offset: no transactions), or the first batch with max timestamp >= T.
//!
//! v0 (sarama 1.22 and the lag monitors built on it) is older than kafka-protocol's codec and
//! coded here: each partition asks for up to `max_num_offsets` offsets and gets a list. Riptide
//! answers at most one: the high watermark, the log start, or for a time the first offset at
//! or after it (Kafka lists segment base offsets before that time; clients ask for one).

use super::{encode, handler, Api, ApiError, Reply, Request, WireReader};
use crate::kafka::errors::UNKNOWN_TOPIC_OR_PARTITION;
use crate::router::{ShardRequest, ShardResponse};
use crate::scatter::per_partition;
use crate::shard::partitions::{OffsetAnswer, OffsetQuery, PartitionReply, PartitionRequest};
use crate::shard::Shard;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::protocol::VersionRange;
use std::rc::Rc;

pub const API: Api = Api {
    key: ApiKey::ListOffsets,
    versions: VersionRange { min: 0, max: 7 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    if req.version == 0 {
        return handle_v0(req).await;
    }
    let body: ListOffsetsRequest = req.decode()?;
    let queries = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetQuery { topic: t.name.0.clone(), partition: p.partition_index, timestamp: p.timestamp })
        })
        .collect();
    let mut answers = query_offsets(&req.shard, queries).await;
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
            r.leader_epoch = if offset >= 0 && req.version >= 4 { crate::constants::SINGLE_NODE_LEADER_EPOCH } else { -1 };
            t.partitions.push(r);
        }
        resp.topics.push(t);
    }
    Ok(Reply::Now(encode(&resp, req.version)?))
}

/// Each query answered by the shard owning its partition, in request order.
async fn query_offsets(shard: &Rc<Shard>, queries: Vec<OffsetQuery>) -> std::vec::IntoIter<OffsetAnswer> {
    let make = |q| ShardRequest::Partitions(PartitionRequest::ListOffsets(q));
    let take = |r| match r {
        ShardResponse::Partitions(PartitionReply::Offsets(v)) => Some(v),
        _ => None,
    };
    per_partition(shard, queries, make, take, OffsetAnswer::failed(UNKNOWN_TOPIC_OR_PARTITION)).await.into_iter()
}

/// One partition of a v0 request: (index, timestamp, max_num_offsets).
type V0Partition = (i32, i64, i32);

pub(crate) fn decode_v0(body: bytes::Bytes) -> Result<Vec<(kafka_protocol::protocol::StrBytes, Vec<V0Partition>)>, ApiError> {
    let mut r = WireReader::new(body);
    let _replica_id = r.i32()?;
    let topics = r.count(6)?;
    let mut out = Vec::new(); // no pre-allocation from a count the client sent
    for _ in 0..topics {
        let name = r.string()?;
        let n = r.count(16)?;
        let mut partitions = Vec::new();
        for _ in 0..n {
            partitions.push((r.i32()?, r.i64()?, r.i32()?));
        }
        out.push((name, partitions));
    }
    Ok(out)
}

async fn handle_v0(req: Request) -> Result<Reply, ApiError> {
    use bytes::BufMut;
    let topics = decode_v0(req.body.clone())?;
    let queries = topics
        .iter()
        .flat_map(|(name, ps)| ps.iter().map(|(p, ts, _)| OffsetQuery { topic: name.clone(), partition: *p, timestamp: *ts }))
        .collect();
    let mut answers = query_offsets(&req.shard, queries).await;
    // v0 response: [topic name, [partition, error code, [offset]]].
    let mut out = bytes::BytesMut::new();
    out.put_i32(topics.len() as i32);
    for (name, partitions) in &topics {
        out.put_i16(name.len() as i16);
        out.put_slice(name.as_bytes());
        out.put_i32(partitions.len() as i32);
        for (p, _, max_offsets) in partitions {
            let OffsetAnswer { error, offset, .. } = answers.next().expect("one answer per partition");
            out.put_i32(*p);
            out.put_i16(error);
            let found = error == crate::kafka::errors::NONE && offset >= 0 && *max_offsets > 0;
            out.put_i32(i32::from(found));
            if found {
                out.put_i64(offset);
            }
        }
    }
    Ok(Reply::Now(vec![out.freeze()]))
}
