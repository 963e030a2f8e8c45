//! Producer ids: each run of the broker takes a fresh range, recorded durably before any id of
//! it is handed out, so an id is never issued twice by one data dir (idempotent producers'
//! windows are rebuilt from the log after a restart, and a reused id would match a stranger's
//! window). The range starts at the larger of the recorded end and `now_ms << 20` (so data dirs
//! of earlier versions, whose ids were time-based, never see one of their ids again).

use crate::constants::{META_DIR, PRODUCER_ID_RANGE_PER_RUN};
use crate::topics::write_synced;
use anyhow::Context;
use std::path::Path;

const FILE: &str = "producer-id-next";

/// The ids this run may hand out: `first..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdRange {
    pub first: i64,
    pub end: i64,
}

/// Reserves this run's range in `<data-dir>/__riptide_meta/producer-id-next`.
pub fn reserve(data_dir: &Path, now_ms: i64) -> anyhow::Result<ProducerIdRange> {
    let path = data_dir.join(META_DIR).join(FILE);
    let recorded = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<i64>().with_context(|| format!("corrupt {}: {text:?}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let first = recorded.max(now_ms.max(0) << 20);
    let end = first.checked_add(PRODUCER_ID_RANGE_PER_RUN).context("producer id space exhausted")?;
    let tmp = path.with_extension("tmp");
    write_synced(&tmp, end.to_string().as_bytes()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::File::open(data_dir.join(META_DIR))?.sync_all()?;
    Ok(ProducerIdRange { first, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_ranges_never_overlap_even_if_the_clock_goes_back() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(META_DIR)).unwrap();
        let a = reserve(tmp.path(), 1_000_000).unwrap();
        assert_eq!(a.first, 1_000_000 << 20);
        assert_eq!(a.end - a.first, PRODUCER_ID_RANGE_PER_RUN);
        let b = reserve(tmp.path(), 5).unwrap(); // clock went back
        assert_eq!(b.first, a.end);
        let c = reserve(tmp.path(), 2_000_000_000_000).unwrap(); // clock jumped ahead
        assert!(c.first >= b.end);
        std::fs::write(tmp.path().join(META_DIR).join(FILE), "garbage").unwrap();
        assert!(reserve(tmp.path(), 1).is_err(), "a corrupt record refuses to start");
    }
}
