//! Produce (key 0), v3-9. Batches go to their owner shard untouched; the owner validates the
//! 61-byte header and CRC, assigns offsets and appends. Records are decoded here only for
//! compacted topics, whose records need a key (KIP-467: a keyless record is refused with
//! INVALID_RECORD and its index, for that partition only).
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
use kafka_protocol::messages::produce_response::{BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse};
use crate::shard::Shard;
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes, VersionRange};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Produce responses carry `record_errors` and `error_message` from this version on (KIP-467).
const RECORD_ERRORS_MIN_VERSION: i16 = 8;

pub const API: Api = Api {
    key: ApiKey::Produce,
    versions: VersionRange { min: 3, max: 9 },
    handle: handler!(handle),
};

/// Where each partition's answer comes from.
enum Slot {
    Ready(ProduceResult),
    /// Refused before any append, with per-record errors (v8+: `record_errors`).
    Rejected(RecordErrors),
    /// Index into the answer of the shard's sub-request.
    FromShard(usize, usize),
}

/// KIP-467: why a partition's records were refused, record by record.
struct RecordErrors {
    error: i16,
    message: String,
    /// (batch index: the record's position in the partition's records, message)
    records: Vec<(i32, String)>,
}

/// Kafka shows at most this many record errors in a partition's error message.
const RECORD_ERRORS_IN_MESSAGE_MAX: usize = 3;

/// Records without a key, refused on a compacted topic (Kafka's LogValidator); None if every
/// record has one. Uncompressed batches are read in place; compressed ones are decompressed.
fn keyless_refusal(topic: &str, partition: i32, records: &Bytes) -> Option<Slot> {
    let keyless = match storage::compaction::keyless_records(records) {
        Some(keyless) => keyless,
        None => match kafka_protocol::records::RecordBatchDecoder::decode(&mut records.clone()) {
            Ok(set) => set.records.iter().enumerate().filter(|(_, r)| r.key.is_none()).map(|(i, _)| i).collect(),
            Err(_) => return Some(failed(CORRUPT_MESSAGE)),
        },
    };
    if keyless.is_empty() {
        return None;
    }
    let why = format!("Compacted topic cannot accept message without key in topic partition {topic}-{partition}.");
    let records: Vec<(i32, String)> = keyless.iter().map(|&i| (i32::try_from(i).unwrap_or(i32::MAX), why.clone())).collect();
    let shown: Vec<String> = records.iter().take(RECORD_ERRORS_IN_MESSAGE_MAX).map(|(i, m)| format!("{{batch_index: {i}, message: {m}}}")).collect();
    let message = format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first {} errors at most: [{}]",
        records.len(),
        shown.len(),
        shown.join(", ")
    );
    Some(Slot::Rejected(RecordErrors { error: INVALID_RECORD, message, records }))
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
        let compacted = partitions.is_some() && shard.is_compacted(name);
        for (index, records) in partitions_data {
            let refusal = match &records {
                Some(records) if compacted && refuse.is_none() && partitions.is_some_and(|n| (0..n).contains(&index)) => {
                    keyless_refusal(name, index, records)
                }
                _ => None,
            };
            let slot = match (refuse, partitions, records) {
                (Some(code), _, _) => failed(code),
                (None, _, _) if refusal.is_some() => refusal.expect("checked"),
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
        let resp = build_response(names, slots, &answers, version);
        encode(&resp, version).unwrap_or_else(|e| {
            tracing::error!("{e}");
            vec![Bytes::new()]
        })
    }.boxed_local()))
}

fn build_response(names: Vec<TopicName>, slots: Vec<(usize, i32, Slot)>, answers: &BTreeMap<usize, Vec<ProduceResult>>, version: i16) -> ProduceResponse {
    let mut topics: Vec<TopicProduceResponse> = names
        .into_iter()
        .map(|name| {
            let mut r = TopicProduceResponse::default();
            r.name = name;
            r
        })
        .collect();
    for (ti, partition, slot) in slots {
        let mut record_errors = None;
        let result = match slot {
            Slot::Ready(r) => r,
            Slot::Rejected(errors) => {
                let error = errors.error;
                record_errors = Some(errors);
                ProduceResult { error, base_offset: -1, log_start_offset: -1 }
            }
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
        // Older versions carry the error code only.
        if let Some(errors) = record_errors.filter(|_| version >= RECORD_ERRORS_MIN_VERSION) {
            p.error_message = Some(StrBytes::from_string(errors.message));
            p.record_errors = errors
                .records
                .into_iter()
                .map(|(batch_index, message)| {
                    let mut e = BatchIndexAndErrorMessage::default();
                    e.batch_index = batch_index;
                    e.batch_index_error_message = Some(StrBytes::from_string(message));
                    e
                })
                .collect();
        }
        topics[ti].partition_responses.push(p);
    }
    let mut resp = ProduceResponse::default();
    resp.responses = topics;
    resp
}
