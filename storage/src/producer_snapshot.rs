//! Producer-state snapshots: `<dir>/<20-digit offset>.snapshot` holds the producer windows as of
//! that offset (everything below it applied). Written when a segment rolls (offset = the new
//! segment's base, so recovery replays only the active segment's headers) and on clean close
//! (offset = log end). Recovery loads the newest valid snapshot at or below the log end and
//! replays the batch headers after it.
//!
//! Format (big endian): magic u32, version u16, offset i64, producer count u32, then per
//! producer: id i64, epoch i16, last timestamp i64, batch count u8, and per batch first
//! sequence i32, last sequence i32, base offset i64, last offset i64; then CRC-32C of all of it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::constants::{PRODUCER_BATCHES_REMEMBERED, SEGMENT_NAME_DIGITS, SNAPSHOT_SUFFIX, SNAPSHOTS_KEPT};
use crate::error::Result;
use crate::io::{read_small_file, write_small_file, IoBackend};
use crate::producer_state::{BatchSeq, ProducerEntry, ProducerState};

const MAGIC: u32 = 0x5250_534e; // "RPSN"
const VERSION: u16 = 1;

pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{:0width$}.{}", offset, SNAPSHOT_SUFFIX, width = SEGMENT_NAME_DIGITS))
}

/// Offset of a snapshot file name (`00000000000000000042.snapshot`).
pub fn parse_snapshot_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?.strip_suffix('.')?;
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub fn encode(state: &ProducerState, offset: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + state.len() * 64);
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(state.len() as u32).to_be_bytes());
    let mut ids: Vec<_> = state.entries().collect();
    ids.sort_by_key(|(id, _)| **id); // deterministic bytes for the same state
    for (id, e) in ids {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.last_timestamp.to_be_bytes());
        out.push(e.batches.len() as u8);
        for b in &e.batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.buf.split_first_chunk::<N>()?;
        self.buf = rest;
        Some(*head)
    }
}

/// The snapshot's offset and state; None if the bytes are not a valid snapshot.
pub fn decode(bytes: &[u8]) -> Option<(i64, ProducerState)> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
        return None;
    }
    let mut r = Reader { buf: body };
    if u32::from_be_bytes(r.take()?) != MAGIC || u16::from_be_bytes(r.take()?) != VERSION {
        return None;
    }
    let offset = i64::from_be_bytes(r.take()?);
    let count = u32::from_be_bytes(r.take()?);
    let mut state = ProducerState::default();
    for _ in 0..count {
        let id = i64::from_be_bytes(r.take()?);
        let epoch = i16::from_be_bytes(r.take()?);
        let last_timestamp = i64::from_be_bytes(r.take()?);
        let n = r.take::<1>()?[0] as usize;
        if n == 0 || n > PRODUCER_BATCHES_REMEMBERED {
            return None;
        }
        let mut batches = VecDeque::with_capacity(n);
        for _ in 0..n {
            batches.push_back(BatchSeq {
                first_seq: i32::from_be_bytes(r.take()?),
                last_seq: i32::from_be_bytes(r.take()?),
                base_offset: i64::from_be_bytes(r.take()?),
                last_offset: i64::from_be_bytes(r.take()?),
            });
        }
        state.insert_entry(id, ProducerEntry { epoch, last_timestamp, batches });
    }
    r.buf.is_empty().then_some((offset, state))
}

/// Writes the snapshot of `state` as of `offset` (durable when this returns), then removes all
/// but the newest `SNAPSHOTS_KEPT` snapshots.
pub async fn write<B: IoBackend>(backend: &B, dir: &Path, state: &ProducerState, offset: i64) -> Result<()> {
    write_small_file(backend, &snapshot_path(dir, offset), &encode(state, offset)).await?;
    let mut offsets = list(backend, dir).await?;
    offsets.sort_unstable();
    let stale = offsets.len().saturating_sub(SNAPSHOTS_KEPT);
    for old in &offsets[..stale] {
        remove(backend, dir, *old).await?;
    }
    Ok(())
}

pub async fn remove<B: IoBackend>(backend: &B, dir: &Path, offset: i64) -> Result<()> {
    match backend.remove(&snapshot_path(dir, offset)).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Offsets of the snapshots in `dir`, unsorted.
pub async fn list<B: IoBackend>(backend: &B, dir: &Path) -> Result<Vec<i64>> {
    Ok(backend.list_dir(dir).await?.iter().filter_map(|n| parse_snapshot_name(n)).collect())
}

/// The newest valid snapshot at or below `log_end`; snapshots above it (the log lost its tail)
/// or unreadable ones are removed, with a log line.
pub async fn load_latest<B: IoBackend>(backend: &B, dir: &Path, log_end: i64) -> Result<Option<(i64, ProducerState)>> {
    let mut offsets = list(backend, dir).await?;
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    for offset in offsets {
        if offset > log_end {
            tracing::warn!(dir = %dir.display(), offset, log_end, "removing producer snapshot beyond the log end");
            remove(backend, dir, offset).await?;
            continue;
        }
        let bytes = read_small_file(backend, &snapshot_path(dir, offset)).await?;
        match bytes.as_deref().and_then(decode) {
            Some((at, state)) if at == offset => return Ok(Some((offset, state))),
            _ => {
                tracing::warn!(dir = %dir.display(), offset, "removing unreadable producer snapshot");
                remove(backend, dir, offset).await?;
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchHeader;

    #[test]
    fn producer_snapshot_round_trips_and_rejects_damage() {
        let mut state = ProducerState::default();
        for (pid, seq) in [(5i64, 0i32), (5, 1), (9, 0)] {
            let h = BatchHeader {
                base_offset: i64::from(seq) * 10 + pid,
                batch_length: 80,
                partition_leader_epoch: 0,
                magic: 2,
                crc: 0,
                attributes: 0,
                last_offset_delta: 0,
                base_timestamp: 0,
                max_timestamp: 0,
                producer_id: pid,
                producer_epoch: 3,
                base_sequence: seq,
                records_count: 1,
            };
            state.on_batch(&h, 77);
        }
        let bytes = encode(&state, 42);
        assert_eq!(decode(&bytes), Some((42, state.clone())));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad), None, "flipped byte {i} accepted");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(parse_snapshot_name("00000000000000000042.snapshot"), Some(42));
        assert_eq!(parse_snapshot_name("42.snapshot"), None);
    }
}
