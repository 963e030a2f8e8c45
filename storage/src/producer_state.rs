//! Idempotent-producer state of one log: for each producer id, its epoch and its last few
//! batches (sequence range and offsets), so a retried batch is answered with its original
//! offsets instead of being written twice, and a gap in sequences is refused.
//!
//! The log owns this state and updates it in the same synchronous step that assigns offsets, so
//! the sequence check and the append cannot be split by an `.await` (two copies of one batch on
//! two connections cannot both be appended). It is rebuilt on recovery from the latest snapshot
//! (`<offset>.snapshot`, written when a segment rolls and on clean close, as Kafka does) plus the
//! batch headers after it; a follower's appends update it the same way.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::constants::{PRODUCER_BATCHES_REMEMBERED, PRODUCERS_PER_LOG_MAX, PRODUCER_ID_EXPIRATION_MS};

/// One remembered batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSeq {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// What the log knows of one producer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Wall-clock ms of this producer's last append (or of the recovery that replayed it):
    /// drives expiration. Kafka uses the batch's own max timestamp, but client clocks and
    /// CreateTime values can be arbitrarily old, which would forget a live producer.
    pub last_timestamp: i64,
    /// Oldest first, at most `PRODUCER_BATCHES_REMEMBERED`, all of `epoch`.
    pub batches: VecDeque<BatchSeq>,
}

/// Verdict of the sequence check for an incoming batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqVerdict {
    /// New data: append it.
    Append,
    /// Already in the log at these offsets: answer with them, append nothing.
    Duplicate(BatchSeq),
    /// The sequence does not follow the producer's last one (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder { expected: i32, got: i32 },
    /// The epoch is older than the producer's current one (INVALID_PRODUCER_EPOCH).
    StaleEpoch { current: i16, got: i16 },
}

/// Sequence following `seq`; Kafka sequences wrap from i32::MAX to 0.
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// Last sequence of a batch that starts at `first` and spans `last_offset_delta + 1` records.
pub fn last_seq(first: i32, last_offset_delta: i32) -> i32 {
    ((i64::from(first) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

/// Producer windows of one log, keyed by producer id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerState {
    by_id: HashMap<i64, ProducerEntry>,
}

impl ProducerState {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.by_id.get(&producer_id)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&i64, &ProducerEntry)> {
        self.by_id.iter()
    }

    pub(crate) fn insert_entry(&mut self, producer_id: i64, entry: ProducerEntry) {
        self.by_id.insert(producer_id, entry);
    }

    /// Checks one batch (its header as received) against the producer's window. Batches without
    /// a producer id are always `Append`. An unknown producer may start at any sequence: its
    /// state may have expired, and Kafka accepts that too.
    pub fn check(&self, h: &BatchHeader) -> SeqVerdict {
        if h.producer_id < 0 {
            return SeqVerdict::Append;
        }
        let Some(entry) = self.by_id.get(&h.producer_id) else { return SeqVerdict::Append };
        let first = h.base_sequence;
        let last = last_seq(first, h.last_offset_delta);
        if h.producer_epoch < entry.epoch {
            return SeqVerdict::StaleEpoch { current: entry.epoch, got: h.producer_epoch };
        }
        if h.producer_epoch > entry.epoch {
            // A new epoch starts its sequences at 0.
            return if first == 0 { SeqVerdict::Append } else { SeqVerdict::OutOfOrder { expected: 0, got: first } };
        }
        if let Some(b) = entry.batches.iter().find(|b| b.first_seq == first && b.last_seq == last) {
            return SeqVerdict::Duplicate(*b);
        }
        match entry.batches.back() {
            Some(b) if next_seq(b.last_seq) != first => SeqVerdict::OutOfOrder { expected: next_seq(b.last_seq), got: first },
            _ => SeqVerdict::Append,
        }
    }

    /// Checks every batch of one append, each against the state left by the ones before it.
    /// Any duplicate makes the whole append a duplicate (as Kafka answers); any refusal refuses
    /// it all.
    pub fn check_all(&self, headers: &[BatchHeader]) -> SeqVerdict {
        if let [one] = headers {
            return self.check(one);
        }
        let mut scratch: Option<ProducerState> = None;
        for (i, h) in headers.iter().enumerate() {
            let state = scratch.as_ref().unwrap_or(self);
            match state.check(h) {
                SeqVerdict::Append => {}
                other => return other,
            }
            if h.producer_id >= 0 && i + 1 < headers.len() {
                let s = scratch.get_or_insert_with(|| self.clone());
                // Offsets are not assigned yet; only sequences matter for the next check.
                s.on_batch(h, 0);
            }
        }
        SeqVerdict::Append
    }

    /// Records a batch appended at its final offsets (`h.base_offset` set) at `now_ms`.
    pub fn on_batch(&mut self, h: &BatchHeader, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self.by_id.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = entry.last_timestamp.max(now_ms);
        if entry.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchSeq {
            first_seq: h.base_sequence,
            last_seq: last_seq(h.base_sequence, h.last_offset_delta),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        if self.by_id.len() > PRODUCERS_PER_LOG_MAX {
            self.evict_oldest(h.producer_id);
        }
    }

    /// Forgets every batch at or above `offset` (appends rolled back, e.g. after ENOSPC; later a
    /// follower's truncation). A producer left with no batch is forgotten entirely, so its retry
    /// starts afresh instead of matching a batch that is no longer in the log.
    pub fn truncate_to(&mut self, offset: i64) {
        self.by_id.retain(|_, e| {
            while e.batches.back().is_some_and(|b| b.base_offset >= offset) {
                e.batches.pop_back();
            }
            !e.batches.is_empty()
        });
    }

    /// Drops producers whose last batch is older than the expiration (Kafka's
    /// `producer.id.expiration.ms`, one day) or entirely below the log start.
    pub fn expire(&mut self, now_ms: i64, log_start: i64) {
        let horizon = now_ms.saturating_sub(PRODUCER_ID_EXPIRATION_MS);
        self.by_id.retain(|_, e| {
            e.last_timestamp >= horizon && e.batches.back().is_some_and(|b| b.last_offset >= log_start)
        });
    }

    /// Keeps memory bounded when a log sees a flood of short-lived producers.
    fn evict_oldest(&mut self, keep: i64) {
        let victim = self
            .by_id
            .iter()
            .filter(|(id, _)| **id != keep)
            .min_by_key(|(_, e)| e.last_timestamp)
            .map(|(id, _)| *id);
        if let Some(id) = victim {
            tracing::warn!(producer_id = id, limit = PRODUCERS_PER_LOG_MAX, "producer state full: forgetting the oldest producer");
            self.by_id.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000 + PRODUCER_ID_EXPIRATION_MS;

    fn header(pid: i64, epoch: i16, first: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 1,
            max_timestamp: 1,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: first,
            records_count: records,
        }
    }

    #[test]
    fn producer_state_detects_duplicates_and_gaps() {
        let mut p = ProducerState::default();
        assert_eq!(p.check(&header(7, 0, 0, 10, -1)), SeqVerdict::Append);
        p.on_batch(&header(7, 0, 0, 10, 100), NOW);
        let dup = BatchSeq { first_seq: 0, last_seq: 9, base_offset: 100, last_offset: 109 };
        assert_eq!(p.check(&header(7, 0, 0, 10, -1)), SeqVerdict::Duplicate(dup));
        assert_eq!(p.check(&header(7, 0, 11, 2, -1)), SeqVerdict::OutOfOrder { expected: 10, got: 11 });
        assert_eq!(p.check(&header(7, 0, 10, 3, -1)), SeqVerdict::Append);
        p.on_batch(&header(7, 1, 0, 1, 200), NOW);
        assert_eq!(p.check(&header(7, 0, 13, 1, -1)), SeqVerdict::StaleEpoch { current: 1, got: 0 });
        assert_eq!(p.check(&header(7, 2, 5, 1, -1)), SeqVerdict::OutOfOrder { expected: 0, got: 5 });
        assert_eq!(p.check(&header(-1, 0, 5, 1, -1)), SeqVerdict::Append);
    }

    #[test]
    fn producer_state_remembers_a_bounded_window() {
        let mut p = ProducerState::default();
        for i in 0..10 {
            p.on_batch(&header(1, 0, i, 1, i64::from(i)), NOW);
        }
        assert!(matches!(p.check(&header(1, 0, 9, 1, -1)), SeqVerdict::Duplicate(b) if b.base_offset == 9));
        assert!(matches!(p.check(&header(1, 0, 0, 1, -1)), SeqVerdict::OutOfOrder { .. }));
        assert_eq!(p.get(1).unwrap().batches.len(), PRODUCER_BATCHES_REMEMBERED);
        assert_eq!(last_seq(i32::MAX, 1), 0);
    }

    #[test]
    fn producer_state_checks_multi_batch_appends_in_order() {
        let mut p = ProducerState::default();
        p.on_batch(&header(3, 0, 0, 2, 0), NOW);
        let next = [header(3, 0, 2, 2, -1), header(3, 0, 4, 1, -1)];
        assert_eq!(p.check_all(&next), SeqVerdict::Append);
        let gap = [header(3, 0, 2, 2, -1), header(3, 0, 5, 1, -1)];
        assert!(matches!(p.check_all(&gap), SeqVerdict::OutOfOrder { expected: 4, got: 5 }));
        let with_dup = [header(3, 0, 0, 2, -1), header(3, 0, 2, 1, -1)];
        assert!(matches!(p.check_all(&with_dup), SeqVerdict::Duplicate(_)));
    }

    #[test]
    fn producer_state_truncation_forgets_rolled_back_batches() {
        let mut p = ProducerState::default();
        p.on_batch(&header(1, 0, 0, 1, 0), NOW);
        p.on_batch(&header(1, 0, 1, 1, 1), NOW);
        p.on_batch(&header(2, 0, 0, 1, 2), NOW);
        p.truncate_to(1);
        assert_eq!(p.get(1).unwrap().batches.len(), 1);
        assert!(p.get(2).is_none(), "a producer with nothing left is forgotten");
        // The retry of the rolled-back batch is new data again, not a duplicate.
        assert_eq!(p.check(&header(1, 0, 1, 1, -1)), SeqVerdict::Append);
    }

    #[test]
    fn producer_state_expires_idle_producers() {
        let mut p = ProducerState::default();
        p.on_batch(&header(1, 0, 0, 1, 0), 1_000);
        p.on_batch(&header(2, 0, 0, 1, 1), NOW);
        p.expire(1_000 + PRODUCER_ID_EXPIRATION_MS + 1, 0);
        assert!(p.get(1).is_none());
        assert!(p.get(2).is_some());
        p.expire(NOW, 5);
        assert!(p.is_empty(), "producers whose batches are all below the log start go");
    }
}
