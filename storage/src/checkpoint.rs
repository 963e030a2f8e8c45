//! Per-log checkpoint file `<dir>/checkpoint`: the log start offset (DeleteRecords, retention),
//! the recovery point (every batch below it was synced), and a follower's truncation state (the
//! log's generation, and a truncation in progress).
//!
//! The file is two blocks long and written in place, one block per write, alternating between
//! the two (each carries a sequence number and a CRC-32C): a torn write damages only the block
//! being written and recovery falls back to the other one. In-place writes allocate nothing, so
//! moving the log start still works on a full disk (that is how space gets freed). A checkpoint
//! is durable after the file's next sync; a recovery point may ride on the log's next sync round
//! because it only ever names data that was already synced when it was written.
//!
//! Slot format (big endian): magic u32, version u16, reserved u16, sequence u64, log start i64,
//! recovery point i64, then version 1: 4 zero bytes and CRC-32C u32 of the 36 bytes before it;
//! version 2: generation u32, truncating-to i64 (-1: none), CRC-32C u32 of the 44 bytes before
//! it. The rest of the block is zero. Version 1 is written while the generation is 0 and no
//! truncation runs, so a log never truncated stays readable by older binaries.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;

use crate::constants::{CHECKPOINT_FILE, LEGACY_LOG_START_CHECKPOINT_FILE};
use crate::error::{Error, Result};
use crate::io::{read_small_file, IoBackend, IoBuf, IoFile};

const MAGIC: u32 = 0x5250_434b; // "RPCK"
const VERSION_1: u16 = 1;
const VERSION_2: u16 = 2;
const V1_CRC_AT: usize = 36;
const V2_CRC_AT: usize = 44;
const SLOT_USED_BYTES_MAX: usize = V2_CRC_AT + 4;
const SLOTS: u64 = 2;
/// Journal entries carry a log's generation in 24 bits (`journal.rs`); generations wrap there.
pub const GENERATION_MASK: u32 = 0x00ff_ffff;

/// What the checkpoint file records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub log_start: i64,
    /// Every batch below this offset was synced when it was recorded (0: nothing known).
    pub recovery_point: i64,
    /// Bumped by every truncation (`Log::truncate_to`): journal entries written under another
    /// generation are from before the last truncation and are not replayed.
    pub generation: u32,
    /// A truncation to this offset was started and may not have finished: the next open
    /// finishes it (nothing was appended since it started).
    pub truncating_to: Option<i64>,
}

fn encode_slot(seq: u64, cp: Checkpoint, out: &mut [u8]) {
    out.fill(0);
    let v2 = cp.generation != 0 || cp.truncating_to.is_some();
    out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&(if v2 { VERSION_2 } else { VERSION_1 }).to_be_bytes());
    out[8..16].copy_from_slice(&seq.to_be_bytes());
    out[16..24].copy_from_slice(&cp.log_start.to_be_bytes());
    out[24..32].copy_from_slice(&cp.recovery_point.to_be_bytes());
    let crc_at = if v2 {
        out[32..36].copy_from_slice(&cp.generation.to_be_bytes());
        out[36..44].copy_from_slice(&cp.truncating_to.unwrap_or(-1).to_be_bytes());
        V2_CRC_AT
    } else {
        V1_CRC_AT
    };
    let crc = crc32c::crc32c(&out[..crc_at]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
}

fn decode_slot(slot: &[u8]) -> Option<(u64, Checkpoint)> {
    let s = slot.get(..SLOT_USED_BYTES_MAX)?;
    let be64 = |at: usize| i64::from_be_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let be32 = |at: usize| u32::from_be_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    let crc_at = match u16::from_be_bytes(s[4..6].try_into().expect("2 bytes")) {
        VERSION_1 => V1_CRC_AT,
        VERSION_2 => V2_CRC_AT,
        _ => return None,
    };
    if be32(0) != MAGIC || be32(crc_at) != crc32c::crc32c(&s[..crc_at]) {
        return None;
    }
    let mut cp = Checkpoint { log_start: be64(16), recovery_point: be64(24), ..Checkpoint::default() };
    if crc_at == V2_CRC_AT {
        cp.generation = be32(32);
        cp.truncating_to = Some(be64(36)).filter(|&t| t >= 0);
    }
    Some((be64(8) as u64, cp))
}

/// The open checkpoint file of one log. Writes are serialised (one in flight), so the newest
/// sequence number always carries the newest values.
pub struct CheckpointFile<F: IoFile> {
    file: Rc<F>,
    seq: Cell<u64>,
    current: Cell<Checkpoint>,
    lock: glommio::sync::Semaphore,
}

impl<F: IoFile> CheckpointFile<F> {
    /// Opens `<dir>/checkpoint`, creating it (and migrating the older `log-start-offset` file) if
    /// missing. Returns the file and what it recorded.
    pub async fn open<B: IoBackend<File = F>>(backend: &B, dir: &Path) -> Result<CheckpointFile<F>> {
        let path = dir.join(CHECKPOINT_FILE);
        let existing = match backend.open(&path, false).await {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(file) = existing {
            let align = file.alignment();
            let bytes = file.read_at(0, (align * SLOTS) as usize).await?;
            let best = (0..SLOTS as usize)
                .filter_map(|i| bytes.get(i * align as usize..(i + 1) * align as usize).and_then(decode_slot))
                .max_by_key(|(seq, _)| *seq);
            if best.is_none() && !bytes.iter().all(|&b| b == 0) {
                tracing::warn!(path = %path.display(), "checkpoint unreadable: log start from the first segment, no recovery point");
            }
            let (seq, cp) = best.unwrap_or_default();
            return Ok(CheckpointFile { file: Rc::new(file), seq: Cell::new(seq), current: Cell::new(cp), lock: glommio::sync::Semaphore::new(1) });
        }
        let legacy = read_legacy_log_start(backend, dir).await?;
        let file = backend.open(&path, true).await?;
        file.allocate(file.alignment() * SLOTS).await?;
        let cp = CheckpointFile { file: Rc::new(file), seq: Cell::new(0), current: Cell::new(Checkpoint::default()), lock: glommio::sync::Semaphore::new(1) };
        let log_start = legacy.unwrap_or(0);
        cp.store(|c| Checkpoint { log_start, ..c }, true).await?;
        backend.sync_dir(dir).await?;
        if legacy.is_some() {
            let _ = backend.remove(&dir.join(LEGACY_LOG_START_CHECKPOINT_FILE)).await;
        }
        Ok(cp)
    }

    /// What was last recorded (or is being recorded).
    pub fn get(&self) -> Checkpoint {
        self.current.get()
    }

    /// Records a new log start; durable when this returns.
    pub async fn set_log_start(&self, log_start: i64) -> Result<()> {
        // Only moves forward: a write started with an older view never moves it back.
        self.store(|c| Checkpoint { log_start: c.log_start.max(log_start), ..c }, true).await
    }

    /// Records a new recovery point; durable after the file's next sync (or now if `sync`).
    pub async fn set_recovery_point(&self, recovery_point: i64, sync: bool) -> Result<()> {
        self.store(|c| Checkpoint { recovery_point: c.recovery_point.max(recovery_point), ..c }, sync).await
    }

    /// A truncation to `offset` starts (durable when this returns): the next generation, the
    /// recovery point no higher than `offset`, and the truncation marked as running.
    pub async fn begin_truncation(&self, offset: i64) -> Result<u32> {
        let generation = (self.current.get().generation + 1) & GENERATION_MASK;
        let update = |c: Checkpoint| Checkpoint { recovery_point: c.recovery_point.min(offset), generation, truncating_to: Some(offset), ..c };
        self.store(update, true).await?;
        Ok(generation)
    }

    /// The truncation finished: the files end at `log_end`, all of it synced.
    pub async fn end_truncation(&self, log_end: i64) -> Result<()> {
        self.store(|c| Checkpoint { recovery_point: log_end, truncating_to: None, ..c }, true).await
    }

    /// Writes `update` applied to the current values (after waiting for the write in flight, so
    /// a field another write just moved is kept).
    async fn store(&self, update: impl FnOnce(Checkpoint) -> Checkpoint, sync: bool) -> Result<()> {
        let _one = self.lock.acquire_permit(1).await.map_err(|_| Error::Closed)?;
        let cp = update(self.current.get());
        let seq = self.seq.get() + 1;
        let align = self.file.alignment();
        let mut buf = self.file.alloc_buf(align as usize);
        encode_slot(seq, cp, buf.as_mut_slice());
        let written = self.file.write_at(buf, (seq % SLOTS) * align).await?;
        if written != align as usize {
            return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::WriteZero, "short checkpoint write")));
        }
        self.seq.set(seq);
        self.current.set(cp);
        if sync {
            self.file.sync().await?;
        }
        Ok(())
    }
}

/// The older `log-start-offset` file: 8-byte offset + CRC-32C of it. None if absent or damaged.
async fn read_legacy_log_start<B: IoBackend>(backend: &B, dir: &Path) -> Result<Option<i64>> {
    let Some(data) = read_small_file(backend, &dir.join(LEGACY_LOG_START_CHECKPOINT_FILE)).await? else {
        return Ok(None);
    };
    if data.len() != 12 || u32::from_be_bytes(data[8..12].try_into().expect("4 bytes")) != crc32c::crc32c(&data[..8]) {
        tracing::warn!(dir = %dir.display(), "ignoring damaged log-start-offset file");
        return Ok(None);
    }
    Ok(Some(i64::from_be_bytes(data[..8].try_into().expect("8 bytes"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_slot_round_trips_and_detects_damage() {
        let plain = Checkpoint { log_start: 17, recovery_point: 99, ..Checkpoint::default() };
        let truncated = Checkpoint { generation: 3, truncating_to: Some(50), ..plain };
        let after = Checkpoint { generation: 3, ..plain };
        for (cp, version, used) in [(plain, VERSION_1, V1_CRC_AT + 4), (truncated, VERSION_2, V2_CRC_AT + 4), (after, VERSION_2, V2_CRC_AT + 4)] {
            let mut slot = vec![0u8; 4096];
            encode_slot(5, cp, &mut slot);
            assert_eq!(u16::from_be_bytes([slot[4], slot[5]]), version);
            assert_eq!(decode_slot(&slot), Some((5, cp)));
            for i in 0..used {
                let mut bad = slot.clone();
                bad[i] ^= 1;
                assert_eq!(decode_slot(&bad), None, "flipped byte {i} accepted ({cp:?})");
            }
        }
        assert_eq!(decode_slot(&[0u8; 4096]), None);
    }
}
