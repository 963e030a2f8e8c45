//! Idempotent-producer bookkeeping for one partition: the last batches of each producer, so a
//! retried batch is acknowledged with its original offset instead of being written twice.
//!
//! State lives in memory only: after a restart a known producer is treated as new (any sequence is
//! accepted). Full idempotence (state rebuilt from the log) comes with replication.

use crate::constants::PRODUCER_BATCHES_REMEMBERED;
use crate::kafka::errors::{INVALID_PRODUCER_EPOCH, OUT_OF_ORDER_SEQUENCE_NUMBER};
use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchSeq {
    first: i32,
    last: i32,
    base_offset: i64,
}

#[derive(Debug, Default)]
struct ProducerState {
    epoch: i16,
    batches: VecDeque<BatchSeq>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SeqCheck {
    Append,
    /// Already written at this base offset.
    Duplicate(i64),
    Reject(i16),
}

#[derive(Debug, Default)]
pub struct Producers {
    by_id: HashMap<i64, ProducerState>,
}

/// Sequence after `seq`; Kafka sequences wrap from i32::MAX to 0.
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

pub fn last_seq(first: i32, last_offset_delta: i32) -> i32 {
    ((i64::from(first) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

impl Producers {
    pub fn check(&self, producer_id: i64, epoch: i16, first: i32, last: i32) -> SeqCheck {
        let Some(state) = self.by_id.get(&producer_id) else { return SeqCheck::Append };
        if epoch < state.epoch {
            return SeqCheck::Reject(INVALID_PRODUCER_EPOCH);
        }
        if epoch > state.epoch {
            return if first == 0 { SeqCheck::Append } else { SeqCheck::Reject(OUT_OF_ORDER_SEQUENCE_NUMBER) };
        }
        if let Some(b) = state.batches.iter().find(|b| b.first == first && b.last == last) {
            return SeqCheck::Duplicate(b.base_offset);
        }
        match state.batches.back() {
            Some(b) if next_seq(b.last) != first => SeqCheck::Reject(OUT_OF_ORDER_SEQUENCE_NUMBER),
            _ => SeqCheck::Append,
        }
    }

    pub fn record(&mut self, producer_id: i64, epoch: i16, first: i32, last: i32, base_offset: i64) {
        let state = self.by_id.entry(producer_id).or_default();
        if epoch != state.epoch {
            state.epoch = epoch;
            state.batches.clear();
        }
        if state.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            state.batches.pop_front();
        }
        state.batches.push_back(BatchSeq { first, last, base_offset });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_detect_duplicates_and_gaps() {
        let mut p = Producers::default();
        assert_eq!(p.check(7, 0, 0, 9), SeqCheck::Append);
        p.record(7, 0, 0, 9, 100);
        assert_eq!(p.check(7, 0, 0, 9), SeqCheck::Duplicate(100));
        assert_eq!(p.check(7, 0, 11, 12), SeqCheck::Reject(OUT_OF_ORDER_SEQUENCE_NUMBER));
        assert_eq!(p.check(7, 0, 10, 12), SeqCheck::Append);
        p.record(7, 1, 0, 0, 200);
        assert_eq!(p.check(7, 0, 13, 13), SeqCheck::Reject(INVALID_PRODUCER_EPOCH));
        assert_eq!(p.check(7, 2, 5, 5), SeqCheck::Reject(OUT_OF_ORDER_SEQUENCE_NUMBER));
    }

    #[test]
    fn producers_remember_a_bounded_window() {
        let mut p = Producers::default();
        for i in 0..10 {
            p.record(1, 0, i, i, i64::from(i));
        }
        assert_eq!(p.check(1, 0, 9, 9), SeqCheck::Duplicate(9));
        assert_eq!(p.check(1, 0, 0, 0), SeqCheck::Reject(OUT_OF_ORDER_SEQUENCE_NUMBER));
        assert_eq!(last_seq(i32::MAX, 1), 0);
    }
}
