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
use bytes::{Buf, Bytes, BytesMut};
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
fn keyless_refusal(topic: &str, partition: i32, records: &[u8]) -> Option<Slot> {
    let keyless = match storage::compaction::keyless_records(records) {
        Some(keyless) => keyless,
        None => match kafka_protocol::records::RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(records)) {
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
type IncomingPartition = (i32, Option<BytesMut>);

/// Where a partition's records are, between decoding the request and splitting its frame.
enum Region {
    /// At [start, start + len) of the frame.
    InFrame(usize, usize),
    /// Not a slice of the frame (not expected from the decoder): copied.
    Owned(BytesMut),
}

fn region_of(frame: &Bytes, records: Bytes) -> Region {
    let start = (records.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
    if start <= frame.len() && records.len() <= frame.len() - start {
        Region::InFrame(start, records.len())
    } else {
        Region::Owned(BytesMut::from(&records[..]))
    }
}

/// Splits each partition's records off the frame as a buffer of its own, so that the owner
/// shard writes the assigned offsets into it in place: a batch slice of a shared frame would
/// be copied whole by storage for that (every batch of a multi-partition request). Falls back
/// to copies if the frame is still shared or the regions are not in frame order.
fn split_regions(frame: Bytes, regions: Vec<Region>) -> Vec<BytesMut> {
    let mut ends = regions.iter().filter_map(|r| match r {
        Region::InFrame(start, len) => Some((*start, start + len)),
        Region::Owned(_) => None,
    });
    let mut at = 0usize;
    let in_order = ends.all(|(start, end)| {
        let ok = start >= at;
        at = end;
        ok
    });
    let mut frame = match frame.try_into_mut() {
        Ok(buf) if in_order => buf,
        Ok(buf) => return copies(&buf, regions),
        Err(shared) => return copies(&shared, regions),
    };
    let mut at = 0usize;
    regions
        .into_iter()
        .map(|r| match r {
            Region::InFrame(start, len) => {
                frame.advance(start - at);
                at = start + len;
                frame.split_to(len)
            }
            Region::Owned(b) => b,
        })
        .collect()
}

fn copies(frame: &[u8], regions: Vec<Region>) -> Vec<BytesMut> {
    regions
        .into_iter()
        .map(|r| match r {
            Region::InFrame(start, len) => BytesMut::from(&frame[start..start + len]),
            Region::Owned(b) => b,
        })
        .collect()
}

/// The request taken apart: owned topic names, and each partition's records moved out.
struct Incoming {
    acks: i16,
    transactional: bool,
    topics: Vec<(TopicName, Vec<IncomingPartition>)>,
}

/// Decodes the request, drops every other reference to the frame (header strings, topic names,
/// the request struct), then splits each partition's records off the frame (`split_regions`):
/// storage writes base offsets in place, with no copy of the batches.
fn take_apart(req: Request) -> Result<(Rc<Shard>, i16, Incoming), ApiError> {
    let Request { shard, registry, version, header, body: frame, .. } = req;
    drop((registry, header));
    Ok((shard, version, decode_incoming(frame, version)?))
}

fn decode_incoming(frame: Bytes, version: i16) -> Result<Incoming, ApiError> {
    // The rest of the request struct (its strings are slices of the frame) is dropped here.
    let (acks, transactional, topic_data) = {
        let body = ProduceRequest::decode(&mut frame.clone(), version).map_err(|e| ApiError::Decode(e.to_string()))?;
        (body.acks, body.transactional_id.is_some(), body.topic_data)
    };
    let mut regions = Vec::new();
    let layout: Vec<(TopicName, Vec<(i32, bool)>)> = topic_data
        .into_iter()
        .map(|t| {
            let name = TopicName(StrBytes::from_string(t.name.0.to_string()));
            let parts = t
                .partition_data
                .into_iter()
                .map(|p| {
                    let present = p.records.is_some();
                    regions.extend(p.records.map(|r| region_of(&frame, r)));
                    (p.index, present)
                })
                .collect();
            (name, parts)
        })
        .collect();
    let mut records = split_regions(frame, regions).into_iter();
    let topics = layout
        .into_iter()
        .map(|(name, parts)| (name, parts.into_iter().map(|(index, present)| (index, if present { records.next() } else { None })).collect()))
        .collect();
    Ok(Incoming { acks, transactional, topics })
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

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::protocol::Encodable;

    fn request_frame(version: i16) -> (Bytes, Vec<Option<Bytes>>) {
        let records = vec![Some(Bytes::from(vec![1u8; 300])), None, Some(Bytes::from(vec![2u8; 5000]))];
        let mut t = TopicProduceData::default();
        t.name = TopicName(StrBytes::from_static_str("orders"));
        t.partition_data = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut p = PartitionProduceData::default();
                p.index = i as i32;
                p.records = r.clone();
                p
            })
            .collect();
        let mut req = ProduceRequest::default();
        req.acks = 1;
        req.timeout_ms = 1000;
        req.topic_data = vec![t];
        let mut buf = BytesMut::new();
        req.encode(&mut buf, version).unwrap();
        (Bytes::from(buf.to_vec()), records)
    }

    fn records_of(incoming: Incoming) -> Vec<Option<BytesMut>> {
        incoming.topics.into_iter().flat_map(|(_, parts)| parts.into_iter().map(|(_, r)| r)).collect()
    }

    /// Each partition's records are split off the frame itself (no copy: they point into it),
    /// so storage can write offsets in place; partitions without records stay None.
    #[test]
    fn produce_records_are_split_off_the_frame_without_copies() {
        for version in [3, 9] {
            let (frame, expected) = request_frame(version);
            let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
            let got = records_of(decode_incoming(frame, version).unwrap());
            assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                assert_eq!(g.as_deref(), e.as_deref(), "v{version}");
                if let Some(g) = g {
                    assert!(range.contains(&(g.as_ptr() as usize)), "v{version}: records were copied");
                }
            }
        }
    }

    /// A frame someone else still references is not split (it cannot be written to): the
    /// records are copied, with the same contents.
    #[test]
    fn produce_records_of_a_shared_frame_are_copied() {
        let (frame, expected) = request_frame(9);
        let keep = frame.clone();
        let got = records_of(decode_incoming(frame, 9).unwrap());
        let range = keep.as_ptr() as usize..keep.as_ptr() as usize + keep.len();
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g.as_deref(), e.as_deref());
            assert!(g.as_ref().is_none_or(|g| !range.contains(&(g.as_ptr() as usize))));
        }
    }
}
