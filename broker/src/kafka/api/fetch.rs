//! Fetch (key 1), v4-12. Stored batches go to the socket as they are: the response is encoded
//! around them, and each partition's batches are separate `Bytes` chunks of the reply, so record
//! bytes are neither decoded nor copied on this path.
//!
//! Long polling: if less than `min_bytes` is available, wait (on the logs' high-watermark events,
//! never spinning) until any fetched partition grows or `max_wait_ms` passes.

use super::{handler, Api, ApiError, Reply, Request};
use crate::constants::FETCH_WAIT_MS_MAX;
use crate::kafka::errors::{NONE, UNKNOWN_TOPIC_OR_PARTITION};
use crate::router::{shard_for, ShardRequest, ShardResponse};
use crate::shard::partitions::{FetchPart, FetchResult, PartitionReply, PartitionRequest, WaitPart};
use crate::shard::Shard;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::{join_all, select_all, LocalBoxFuture};
use futures::FutureExt;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchRequest};
use kafka_protocol::protocol::{Encodable, StrBytes, VersionRange};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub const API: Api = Api {
    key: ApiKey::Fetch,
    versions: VersionRange { min: 4, max: 12 },
    handle: handler!(handle),
};

/// First version with flexible encoding (compact arrays, tagged fields).
const FLEXIBLE_VERSION: i16 = 12;

/// One requested partition; `part` is None when the topic or partition does not exist.
struct Slot {
    topic: StrBytes,
    partition: i32,
    part: Option<FetchPart>,
}

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: FetchRequest = req.decode()?;
    let shard = req.shard.clone();
    let max_wait = Duration::from_millis((body.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MS_MAX));
    let min_bytes = body.min_bytes.max(0) as usize;
    let max_bytes = if body.max_bytes <= 0 { i32::MAX as usize } else { body.max_bytes as usize };
    // Partitions are read concurrently, so give each a fair share of the response up front:
    // reading every partition up to its own limit and trimming afterwards read (from disk, for
    // a lagging consumer) twice what was sent.
    let requested: usize = body.topics.iter().map(|t| t.partitions.len()).sum();
    let share = (max_bytes / requested.max(1)).max(1);
    let mut slots = Vec::new();
    for topic in &body.topics {
        let name = topic.topic.0.clone();
        let count = shard.topic_partitions(name.as_str());
        for p in &topic.partitions {
            let exists = count.is_some_and(|n| (0..n).contains(&p.partition));
            let part = exists.then(|| FetchPart {
                topic: name.clone(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: (p.partition_max_bytes.max(0) as usize).min(share),
            });
            slots.push(Slot { topic: name.clone(), partition: p.partition, part });
        }
    }
    let version = req.version;
    Ok(Reply::Later(async move {
        let deadline = Instant::now() + max_wait;
        let mut results = read_all(&shard, &slots).await;
        loop {
            let total: usize = results.iter().map(FetchResult::bytes).sum();
            let errors = results.iter().any(|r| r.error != NONE);
            let remaining = deadline.saturating_duration_since(Instant::now());
            if total >= min_bytes || errors || remaining.is_zero() || slots.is_empty() {
                break;
            }
            wait_any(&shard, &slots, &results, remaining).await;
            results = read_all(&shard, &slots).await;
        }
        trim(&mut results, max_bytes);
        record_metrics(&slots, &results);
        encode_response(version, &slots, &results)
    }.boxed_local()))
}

/// Reads every slot from its owner shard, concurrently; results in slot order.
async fn read_all(shard: &Rc<Shard>, slots: &[Slot]) -> Vec<FetchResult> {
    let mut per_shard: BTreeMap<usize, Vec<(usize, FetchPart)>> = BTreeMap::new();
    for (i, slot) in slots.iter().enumerate() {
        if let Some(part) = &slot.part {
            per_shard.entry(shard_for(part.topic.as_str(), part.partition, shard.nr_shards)).or_default().push((i, part.clone()));
        }
    }
    let reads = per_shard.into_iter().map(|(owner, items)| {
        let shard = shard.clone();
        async move {
            let (idx, parts): (Vec<usize>, Vec<FetchPart>) = items.into_iter().unzip();
            let results = if owner == shard.id {
                shard.partitions.fetch(&parts).await
            } else {
                match shard.router.call(owner, ShardRequest::Partitions(PartitionRequest::Fetch(parts))).await {
                    Ok(ShardResponse::Partitions(PartitionReply::Fetch(r))) => r,
                    _ => vec![],
                }
            };
            (idx, results)
        }
    });
    let mut out: Vec<FetchResult> = slots
        .iter()
        .map(|_| FetchResult { error: UNKNOWN_TOPIC_OR_PARTITION, high_watermark: -1, log_start_offset: -1, batches: vec![] })
        .collect();
    for (idx, results) in join_all(reads).await {
        for (i, r) in idx.into_iter().zip(results) {
            out[i] = r;
        }
    }
    out
}

/// Returns when any slot's partition has data past what was just read, or after `wait`.
async fn wait_any(shard: &Rc<Shard>, slots: &[Slot], results: &[FetchResult], wait: Duration) {
    let mut per_shard: BTreeMap<usize, Vec<WaitPart>> = BTreeMap::new();
    for (slot, result) in slots.iter().zip(results) {
        if let Some(part) = &slot.part {
            // Wait for growth beyond what we have already seen, not for data we just found
            // too small for min_bytes (that would spin).
            let seen = part.offset.max(result.high_watermark);
            per_shard.entry(shard_for(part.topic.as_str(), part.partition, shard.nr_shards)).or_default().push(WaitPart { topic: part.topic.clone(), partition: part.partition, offset: seen });
        }
    }
    let wait_ms = wait.as_millis() as u64;
    let waits: Vec<LocalBoxFuture<'static, ()>> = per_shard
        .into_iter()
        .map(|(owner, parts)| {
            let shard = shard.clone();
            async move {
                if owner == shard.id {
                    shard.partitions.wait(&parts, wait_ms).await;
                } else {
                    let _ = shard.router.call(owner, ShardRequest::Partitions(PartitionRequest::WaitForData { parts, wait_ms })).await;
                }
            }
            .boxed_local()
        })
        .collect();
    if !waits.is_empty() {
        select_all(waits).await;
    }
}

/// Enforces the response-wide `max_bytes`: the first partition with data is always whole (clients
/// need at least one batch to progress); later partitions are emptied once the budget is spent.
fn trim(results: &mut [FetchResult], max_bytes: usize) {
    let mut used = 0usize;
    for r in results.iter_mut() {
        let size = r.bytes();
        if size == 0 {
            continue;
        }
        if used > 0 && used + size > max_bytes {
            r.batches.clear();
            continue;
        }
        used += size;
    }
}

/// What is sent: bytes and records per partition, and error codes (metrics).
fn record_metrics(slots: &[Slot], results: &[FetchResult]) {
    for (slot, r) in slots.iter().zip(results) {
        crate::metrics::error(ApiKey::Fetch as i16, r.error);
        if !r.batches.is_empty() {
            crate::metrics::fetched(slot.topic.as_str(), slot.partition, r.bytes() as u64, crate::metrics::records_in(&r.batches));
        }
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_array_len(buf: &mut BytesMut, version: i16, n: usize) {
    if version >= FLEXIBLE_VERSION {
        put_uvarint(buf, n as u64 + 1);
    } else {
        buf.put_i32(n as i32);
    }
}

fn put_string(buf: &mut BytesMut, version: i16, s: &str) {
    if version >= FLEXIBLE_VERSION {
        put_uvarint(buf, s.len() as u64 + 1);
    } else {
        buf.put_i16(s.len() as i16);
    }
    buf.put_slice(s.as_bytes());
}

fn partition_header(result: &FetchResult, partition: i32) -> PartitionData {
    let mut p = PartitionData::default();
    p.partition_index = partition;
    p.error_code = result.error;
    p.high_watermark = result.high_watermark;
    // No transactions: the last stable offset is the high watermark (read_committed consumers
    // stall if it lags).
    p.last_stable_offset = result.high_watermark;
    p.log_start_offset = result.log_start_offset;
    p.aborted_transactions = None;
    p.preferred_read_replica = kafka_protocol::messages::BrokerId(-1);
    p.records = None;
    p
}

/// Encodes the response as chunks: our framing in small buffers, record batches as stored.
/// Byte-identical to kafka-protocol's own encoding (see the golden tests).
fn encode_response(version: i16, slots: &[Slot], results: &[FetchResult]) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // throttle_time_ms
    buf.put_i16(NONE); // error_code (v7+)
    buf.put_i32(0); // session_id (v7+): 0 = no fetch session, clients send full fetches
    if version < 7 {
        buf.truncate(4);
    }
    // Group consecutive slots of the same topic, keeping request order.
    let mut topics: Vec<(&StrBytes, Vec<usize>)> = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        match topics.last_mut() {
            Some((t, idx)) if *t == &slot.topic => idx.push(i),
            _ => topics.push((&slot.topic, vec![i])),
        }
    }
    put_array_len(&mut buf, version, topics.len());
    for (topic, idx) in &topics {
        put_string(&mut buf, version, topic.as_str());
        put_array_len(&mut buf, version, idx.len());
        for &i in idx {
            let result = &results[i];
            partition_header(result, slots[i].partition)
                .encode(&mut buf, version)
                .expect("fetch partition header encodes");
            // Drop the encoded null records (and the empty tag section, when flexible) ...
            buf.truncate(buf.len() - if version >= FLEXIBLE_VERSION { 2 } else { 4 });
            // ... and write the records field around the stored batches.
            let len = result.bytes();
            if version >= FLEXIBLE_VERSION {
                put_uvarint(&mut buf, len as u64 + 1);
            } else {
                buf.put_i32(len as i32);
            }
            if len > 0 {
                chunks.push(buf.split().freeze());
                chunks.extend(result.batches.iter().cloned());
            }
            if version >= FLEXIBLE_VERSION {
                buf.put_u8(0); // partition tagged fields
            }
        }
        if version >= FLEXIBLE_VERSION {
            buf.put_u8(0); // topic tagged fields
        }
    }
    if version >= FLEXIBLE_VERSION {
        buf.put_u8(0); // response tagged fields
    }
    chunks.push(buf.freeze());
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
    use kafka_protocol::messages::{FetchResponse, TopicName};

    fn reference(version: i16, slots: &[Slot], results: &[FetchResult]) -> Bytes {
        let mut resp = FetchResponse::default();
        for (slot, result) in slots.iter().zip(results) {
            if resp.responses.last().is_none_or(|t: &FetchableTopicResponse| t.topic.0 != slot.topic) {
                let mut t = FetchableTopicResponse::default();
                t.topic = TopicName(slot.topic.clone());
                resp.responses.push(t);
            }
            let mut p = partition_header(result, slot.partition);
            let mut records = BytesMut::new();
            for b in &result.batches {
                records.extend_from_slice(b);
            }
            p.records = Some(records.freeze());
            resp.responses.last_mut().unwrap().partitions.push(p);
        }
        let mut buf = BytesMut::new();
        resp.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn fetch_response_matches_codec_at_every_version() {
        let t = |s: &str| StrBytes::from_string(s.to_string());
        let slots = vec![
            Slot { topic: t("a"), partition: 0, part: None },
            Slot { topic: t("a"), partition: 1, part: None },
            Slot { topic: t("b"), partition: 0, part: None },
        ];
        let results = vec![
            FetchResult { error: 0, high_watermark: 10, log_start_offset: 0, batches: vec![Bytes::from_static(b"batch-one"), Bytes::from_static(b"two")] },
            FetchResult { error: 1, high_watermark: 5, log_start_offset: 2, batches: vec![] },
            FetchResult { error: 0, high_watermark: 7, log_start_offset: 0, batches: vec![Bytes::from(vec![9u8; 300])] },
        ];
        for version in 4..=12 {
            let ours: Vec<u8> = encode_response(version, &slots, &results).concat();
            assert_eq!(ours, reference(version, &slots, &results).to_vec(), "v{version}");
        }
    }

    #[test]
    fn fetch_response_shares_batch_memory() {
        let batch = Bytes::from(vec![1u8; 1000]);
        let slots = vec![Slot { topic: StrBytes::from_static_str("t"), partition: 0, part: None }];
        let results = vec![FetchResult { error: 0, high_watermark: 1, log_start_offset: 0, batches: vec![batch.clone()] }];
        let chunks = encode_response(12, &slots, &results);
        assert!(chunks.iter().any(|c| c.as_ptr() == batch.as_ptr()), "batch must be sent from its own buffer");
    }

    #[test]
    fn fetch_trim_keeps_first_batch_whole() {
        let r = |n| FetchResult { batches: vec![Bytes::from(vec![0u8; n])], ..Default::default() };
        let mut results = vec![r(0), r(500), r(400), r(10)];
        results[0].batches.clear();
        trim(&mut results, 100);
        assert_eq!(results.iter().map(FetchResult::bytes).collect::<Vec<_>>(), vec![0, 500, 0, 0]);
    }
}
