//! Produce (key 0), v3-9. Batches go to their owner shard untouched; the owner validates the
//! 61-byte header and CRC, assigns offsets and appends. Records are never decoded here.
//!
//! Phase 1 (in request order): auto-create topics, route, append (remote appends are queued on the
//! FIFO mesh before phase 1 returns). Phase 2: wait for the durability `acks` asks for.

use super::{encode, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::*;
use crate::router::{shard_for, ShardRequest, ShardResponse};
use crate::shard::partitions::{PartitionReply, PartitionRequest, ProducePart, ProduceResult};
use bytes::Bytes;
use futures::future::{join_all, LocalBoxFuture};
use futures::FutureExt;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use crate::shard::Shard;
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes, VersionRange};
use std::collections::BTreeMap;
use std::rc::Rc;

pub const API: Api = Api {
    key: ApiKey::Produce,
    versions: VersionRange { min: 3, max: 9 },
    handle: handler!(handle),
};

/// Where each partition's answer comes from.
enum Slot {
    Ready(ProduceResult),
    /// Index into the answer of the shard's sub-request.
    FromShard(usize, usize),
}

fn failed(error: i16) -> Slot {
    Slot::Ready(ProduceResult { error, base_offset: -1, log_start_offset: -1 })
}

/// One partition's index and records, moved out of the request.
type IncomingPartition = (i32, Option<Bytes>);

/// The request taken apart: owned topic names, and each partition's records moved out.
struct Incoming {
    acks: i16,
    transactional: bool,
    topics: Vec<(TopicName, Vec<IncomingPartition>)>,
}

/// Decodes the request and drops every other reference to the frame (header strings, topic
/// names, the request struct): when a batch's slice is then the frame's only user, storage
/// rewrites its base offset in place instead of copying it (librdkafka sends one partition per
/// request, so that is the common case).
fn take_apart(req: Request) -> Result<(Rc<Shard>, i16, Incoming), ApiError> {
    let Request { shard, registry, version, header, body: mut frame, .. } = req;
    drop((registry, header));
    let body = ProduceRequest::decode(&mut frame, version).map_err(|e| ApiError::Decode(e.to_string()))?;
    drop(frame);
    let incoming = Incoming {
        acks: body.acks,
        transactional: body.transactional_id.is_some(),
        topics: body
            .topic_data
            .into_iter()
            .map(|t| {
                let name = TopicName(StrBytes::from_string(t.name.0.to_string()));
                (name, t.partition_data.into_iter().map(|p| (p.index, p.records)).collect())
            })
            .collect(),
    };
    Ok((shard, version, incoming))
}

async fn handle(req: Request) -> Result<Reply, ApiError> {
    let (shard, version, incoming) = take_apart(req)?;
    let acks = incoming.acks;
    let refuse = if !matches!(acks, -1..=1) {
        Some(INVALID_REQUIRED_ACKS)
    } else if incoming.transactional {
        Some(INVALID_TXN_STATE)
    } else {
        None
    };
    let mut slots: Vec<(usize, i32, Slot)> = Vec::new(); // (topic index, partition, slot)
    let mut per_shard: BTreeMap<usize, Vec<ProducePart>> = BTreeMap::new();
    let mut names = Vec::with_capacity(incoming.topics.len());
    for (ti, (topic, partitions_data)) in incoming.topics.into_iter().enumerate() {
        let name = topic.0.as_str();
        // Kafka: "Cannot append to internal topic" (the broker writes __consumer_offsets itself).
        let refuse = if crate::topics::is_internal(name) { refuse.or(Some(INVALID_TOPIC_EXCEPTION)) } else { refuse };
        let partitions = if refuse.is_none() && shard.ensure_topic(name).await { shard.topic_partitions(name) } else { None };
        for (index, records) in partitions_data {
            let slot = match (refuse, partitions, records) {
                (Some(code), _, _) => failed(code),
                (None, Some(n), Some(records)) if (0..n).contains(&index) => {
                    let owner = shard_for(name, index, shard.nr_shards);
                    let queue = per_shard.entry(owner).or_default();
                    queue.push(ProducePart { topic: topic.0.clone(), partition: index, records });
                    Slot::FromShard(owner, queue.len() - 1)
                }
                (None, Some(_), None) => failed(CORRUPT_MESSAGE),
                (None, _, _) => failed(UNKNOWN_TOPIC_OR_PARTITION),
            };
            slots.push((ti, index, slot));
        }
        names.push(topic);
    }
    let record_bytes: u64 = per_shard.values().flatten().map(|p| p.records.len() as u64).sum();
    // Phase 1: append (local) or enqueue on the owner's FIFO (remote), shard by shard in order.
    let mut pending: Vec<(usize, LocalBoxFuture<'static, Vec<ProduceResult>>)> = Vec::new();
    for (owner, parts) in per_shard {
        if owner == shard.id {
            pending.push((owner, shard.partitions.produce_append(acks, parts).await));
        } else {
            let reply = shard.router.send(owner, ShardRequest::Partitions(PartitionRequest::Produce { acks, parts })).await;
            pending.push((owner, async move {
                match reply {
                    Ok(rx) => match rx.await {
                        Ok(ShardResponse::Partitions(PartitionReply::Produce(r))) => r,
                        _ => vec![],
                    },
                    Err(_) => vec![],
                }
            }.boxed_local()));
        }
    }
    if acks == 0 {
        // No response; still drive the appends' completion so errors get logged.
        glommio::spawn_local(join_all(pending.into_iter().map(|(_, f)| f))).detach();
        return Ok(Reply::Nothing);
    }
    let waiting = crate::metrics::ProduceWaiting::new(record_bytes);
    Ok(Reply::Later(async move {
        let _waiting = waiting;
        let owners: Vec<usize> = pending.iter().map(|(o, _)| *o).collect();
        let answers: BTreeMap<usize, Vec<ProduceResult>> =
            owners.into_iter().zip(join_all(pending.into_iter().map(|(_, f)| f)).await).collect();
        let resp = build_response(names, slots, &answers);
        encode(&resp, version).unwrap_or_else(|e| {
            tracing::error!("{e}");
            vec![Bytes::new()]
        })
    }.boxed_local()))
}

fn build_response(names: Vec<TopicName>, slots: Vec<(usize, i32, Slot)>, answers: &BTreeMap<usize, Vec<ProduceResult>>) -> ProduceResponse {
    let mut topics: Vec<TopicProduceResponse> = names
        .into_iter()
        .map(|name| {
            let mut r = TopicProduceResponse::default();
            r.name = name;
            r
        })
        .collect();
    for (ti, partition, slot) in slots {
        let result = match slot {
            Slot::Ready(r) => r,
            // A shard that vanished mid-request (shutdown) leaves no answer: report a retriable error.
            Slot::FromShard(owner, i) => answers.get(&owner).and_then(|a| a.get(i)).copied().unwrap_or(ProduceResult {
                error: NOT_LEADER_OR_FOLLOWER,
                base_offset: -1,
                log_start_offset: -1,
            }),
        };
        crate::metrics::error(ApiKey::Produce as i16, result.error);
        let mut p = PartitionProduceResponse::default();
        p.index = partition;
        p.error_code = result.error;
        p.base_offset = result.base_offset;
        p.log_append_time_ms = -1;
        p.log_start_offset = result.log_start_offset;
        topics[ti].partition_responses.push(p);
    }
    let mut resp = ProduceResponse::default();
    resp.responses = topics;
    resp
}
