//! Property test: random append / read / timestamp lookup / flush / truncate / reopen sequences
//! against a simple in-memory model (a Vec of batches).
extern crate riptide_storage as storage;
mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use storage::{FaultyBackend, Log, LogConfig};

#[derive(Clone, Debug)]
enum Op {
    Append { records: usize, value_len: usize, ts: i64, wait: bool },
    Read { pick: u16, max_bytes: usize },
    Timestamp { ts: i64 },
    Flush,
    /// A follower's truncation to an offset picked in [0, log end].
    Truncate { pick: u16 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1usize..6, 0usize..700, 0i64..1000, any::<bool>())
            .prop_map(|(records, value_len, ts, wait)| Op::Append { records, value_len, ts, wait }),
        4 => (any::<u16>(), 1usize..6000).prop_map(|(pick, max_bytes)| Op::Read { pick, max_bytes }),
        2 => (-3i64..1100).prop_map(|ts| Op::Timestamp { ts }),
        1 => Just(Op::Flush),
        1 => any::<u16>().prop_map(|pick| Op::Truncate { pick }),
        1 => Just(Op::Reopen),
    ]
}

struct Stored {
    base: i64,
    next: i64,
    max_ts: i64,
    data: Bytes,
}

fn log_config(cache: bool) -> LogConfig {
    let mut c = config();
    c.segment_bytes = 6000;
    c.index_interval_bytes = 700;
    c.cache_bytes_max = if cache { 5000 } else { 0 };
    c
}

async fn check(ops: Vec<Op>, cache: bool) {
    let backend = FaultyBackend::new();
    let dir = std::path::PathBuf::from("/p/t-0");
    let mut log = Log::open(backend.clone(), dir.clone(), log_config(cache)).await.unwrap();
    let mut model: Vec<Stored> = Vec::new();
    for op in ops {
        match op {
            Op::Append { records, value_len, ts, wait } => {
                let b = batch(records, ts, value_len);
                let info = log.append(b.clone()).await.unwrap();
                let expected_base = model.last().map_or(0, |s| s.next);
                assert_eq!(info.base_offset, expected_base);
                model.push(Stored {
                    base: info.base_offset,
                    next: info.log_end_offset,
                    max_ts: ts + records as i64 - 1,
                    data: with_base(&b, info.base_offset),
                });
                if wait {
                    log.wait_durable(info.log_end_offset, storage::Durability::Synced).await.unwrap();
                    assert!(log.high_watermark() >= info.log_end_offset);
                }
            }
            Op::Read { pick, max_bytes } => {
                let hw = log.high_watermark();
                let offset = if hw == 0 { 0 } else { i64::from(pick) % (hw + 1) };
                let r = log.read(offset, max_bytes).await.unwrap();
                assert_eq!(r.high_watermark, hw);
                let start = model.iter().position(|s| s.next > offset);
                let mut expected = Vec::new();
                let mut total = 0;
                for s in start.map_or(&model[..0], |i| &model[i..]) {
                    if s.base >= hw || (!expected.is_empty() && total + s.data.len() > max_bytes) {
                        break;
                    }
                    total += s.data.len();
                    expected.push(s.data.clone());
                    if total >= max_bytes {
                        break;
                    }
                }
                // Disk reads stop at a segment end; they must return a non-empty prefix.
                assert_eq!(r.batches.is_empty(), expected.is_empty(), "offset {offset} hw {hw}");
                assert!(r.batches.len() <= expected.len());
                assert_eq!(r.batches[..], expected[..r.batches.len()], "offset {offset} max {max_bytes}");
            }
            Op::Timestamp { ts } => {
                let hw = log.high_watermark();
                let expected = match ts {
                    -2 => Some((0, -1)),
                    -1 => Some((hw, -1)),
                    _ => model.iter().filter(|s| s.base < hw).find(|s| s.max_ts >= ts).map(|s| (s.base, s.max_ts)),
                };
                assert_eq!(log.offset_for_timestamp(ts).await.unwrap(), expected, "ts {ts}");
            }
            Op::Flush => {
                log.flush().await.unwrap();
                assert_eq!(log.high_watermark(), log.log_end_offset());
            }
            Op::Truncate { pick } => {
                let end = log.log_end_offset();
                let offset = i64::from(pick) % (end + 1);
                // Kafka's rule: the first batch whose last offset is at or above the cut goes,
                // with everything after it.
                model.retain(|s| s.next <= offset);
                let new_end = log.truncate_to(offset).await.unwrap();
                assert_eq!(new_end, model.last().map_or(0, |s| s.next), "truncate to {offset} of {end}");
                assert_eq!(log.log_end_offset(), new_end);
                assert!(log.high_watermark() <= new_end);
            }
            Op::Reopen => {
                log.close().await.unwrap();
                log = Log::open(backend.clone(), dir.clone(), log_config(cache)).await.unwrap();
                assert_eq!(log.log_end_offset(), model.last().map_or(0, |s| s.next));
                assert_eq!(log.high_watermark(), log.log_end_offset());
            }
        }
    }
    log.flush().await.unwrap();
    let all: Vec<Bytes> = model.iter().map(|s| s.data.clone()).collect();
    assert_eq!(read_all(&log, 0).await, all);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn proptest_model_matches_log(ops in proptest::collection::vec(op(), 1..80), cache in any::<bool>()) {
        run(move || check(ops, cache));
    }
}
