//! `log-start-offset` checkpoint: 8-byte big-endian offset + CRC-32C of those 8 bytes.
//! Written to a temporary file, renamed over the old one, directory fsync'ed.

use std::path::Path;

use crate::constants::LOG_START_CHECKPOINT_FILE;
use crate::error::Result;
use crate::io::{read_small_file, write_small_file, IoBackend};

const CHECKPOINT_BYTES: usize = 12;

/// Reads the persisted log start offset; None if absent or unreadable (a corrupt checkpoint is
/// ignored: the log start then falls back to the first segment's base offset).
pub async fn read_log_start<B: IoBackend>(backend: &B, dir: &Path) -> Result<Option<i64>> {
    let Some(data) = read_small_file(backend, &dir.join(LOG_START_CHECKPOINT_FILE)).await? else {
        return Ok(None);
    };
    if data.len() != CHECKPOINT_BYTES {
        tracing::warn!(dir = %dir.display(), "ignoring malformed log start checkpoint");
        return Ok(None);
    }
    let crc = u32::from_be_bytes(data[8..12].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&data[..8]) {
        tracing::warn!(dir = %dir.display(), "ignoring log start checkpoint with bad crc");
        return Ok(None);
    }
    Ok(Some(i64::from_be_bytes(data[..8].try_into().expect("8 bytes"))))
}

/// Durably persists the log start offset.
pub async fn write_log_start<B: IoBackend>(backend: &B, dir: &Path, offset: i64) -> Result<()> {
    let mut data = Vec::with_capacity(CHECKPOINT_BYTES);
    data.extend_from_slice(&offset.to_be_bytes());
    data.extend_from_slice(&crc32c::crc32c(&offset.to_be_bytes()).to_be_bytes());
    let tmp = dir.join(format!("{LOG_START_CHECKPOINT_FILE}.tmp"));
    write_small_file(backend, &tmp, &data).await?;
    backend.rename(&tmp, &dir.join(LOG_START_CHECKPOINT_FILE)).await?;
    backend.sync_dir(dir).await?;
    Ok(())
}
