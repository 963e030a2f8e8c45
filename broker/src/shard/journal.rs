//! A shard's journal at start: sized, opened, the previous run's entries read back and handed to
//! the partitions this shard owns, and the barrier every shard passes before starting over.

use crate::config::BrokerConfig;
use crate::constants::{JOURNAL_BYTES_MIN, JOURNAL_DIR, JOURNAL_FREE_SPACE_SHARE, JOURNAL_REPLAY_BARRIER_MS};
use crate::router::shard_for;
use crate::topics::TopicTable;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use storage::{read_journal, DmaBackend, Journal, JournalConfig, JournalEntry, JournalKey};

fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(JOURNAL_DIR).join(format!("shard-{shard}"))
}

/// The journal's size: the configured bytes, but no more than its share of the free space (a
/// broker on a small disk still starts), never under the minimum.
fn capacity(config: &BrokerConfig, nr_shards: usize) -> u64 {
    let free = free_bytes(&config.data_dir).unwrap_or(u64::MAX);
    let share = free / JOURNAL_FREE_SPACE_SHARE / nr_shards as u64;
    config.journal_bytes.min(share).max(JOURNAL_BYTES_MIN)
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The shard's journal, not started yet (appends wait until `begin`).
pub fn open_journal(backend: &DmaBackend, config: &BrokerConfig, shard: usize, nr_shards: usize) -> anyhow::Result<Journal<DmaBackend>> {
    let bytes = capacity(config, nr_shards);
    let journal_config = JournalConfig::for_batches(bytes, config.log.max_batch_bytes);
    if bytes < config.journal_bytes {
        tracing::info!(shard, bytes, configured = config.journal_bytes, "journal smaller than log.journal.bytes: the disk has little free space");
    }
    Ok(Journal::open(backend.clone(), shard_dir(&config.data_dir, shard), journal_config))
}

/// What the previous run left in the journals for this shard.
pub struct Previous {
    /// Per log this shard owns, its entries in order.
    pub replay: HashMap<JournalKey, Vec<JournalEntry>>,
    /// Largest sequence number in this shard's own journal directory.
    pub own_max_seq: u64,
}

/// Reads every shard's journal directory (the shard count may have changed) and keeps the
/// entries of the partitions this shard owns now; entries of deleted topics are dropped.
pub async fn read_previous(backend: &DmaBackend, data_dir: &Path, me: usize, nr_shards: usize, table: &TopicTable) -> anyhow::Result<Previous> {
    let by_id: HashMap<u128, (&str, i32)> = table.topics.values().map(|t| (t.id, (t.name.as_str(), t.partitions))).collect();
    let mut previous = Previous { replay: HashMap::new(), own_max_seq: 0 };
    let root = data_dir.join(JOURNAL_DIR);
    let dirs = match std::fs::read_dir(&root) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(anyhow::anyhow!("cannot list {}: {e}", root.display())),
    };
    for dir in dirs {
        let contents = read_journal(backend, &dir).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if dir == shard_dir(data_dir, me) {
            previous.own_max_seq = contents.max_seq;
        }
        for entry in contents.entries {
            let Some((name, partitions)) = by_id.get(&entry.key.topic_id) else { continue };
            let p = entry.key.partition;
            if (0..*partitions).contains(&p) && shard_for(name, p, nr_shards) == me {
                previous.replay.entry(entry.key).or_default().push(entry);
            }
        }
    }
    let entries: usize = previous.replay.values().map(Vec::len).sum();
    if entries > 0 {
        tracing::info!(shard = me, entries, logs = previous.replay.len(), "journal entries to replay");
    }
    Ok(previous)
}

/// Removes the journal directories of shards this run does not have (after every shard has
/// replayed them).
pub fn remove_unused(data_dir: &Path, nr_shards: usize) {
    let Ok(entries) = std::fs::read_dir(data_dir.join(JOURNAL_DIR)) else { return };
    for dir in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let index = dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("shard-")).and_then(|n| n.parse::<usize>().ok());
        if index.is_some_and(|i| i >= nr_shards) {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(dir = %dir.display(), "removed the journal of a shard this run does not have"),
                Err(e) => tracing::warn!(dir = %dir.display(), "cannot remove an unused journal: {e}"),
            }
        }
    }
}

/// Start-up barrier of the shards: none starts its journal over before every shard has opened
/// its logs (and so replayed what it owns of every journal). Bounded: a shard that never
/// arrives (it failed) makes the others fail instead of hang.
pub struct StartupBarrier {
    shards: usize,
    /// (shards arrived, a shard failed)
    state: Mutex<(usize, bool)>,
    all: Condvar,
}

impl StartupBarrier {
    pub fn new(shards: usize) -> StartupBarrier {
        StartupBarrier { shards, state: Mutex::new((0, false)), all: Condvar::new() }
    }

    /// Blocks this shard's thread until every shard has arrived (start-up only).
    pub fn wait(&self, shard: usize) -> anyhow::Result<()> {
        let mut st = self.state.lock().map_err(|_| anyhow::anyhow!("start-up barrier poisoned"))?;
        st.0 += 1;
        self.all.notify_all();
        let (st, timeout) = self
            .all
            .wait_timeout_while(st, Duration::from_millis(JOURNAL_REPLAY_BARRIER_MS), |(n, failed)| *n < self.shards && !*failed)
            .map_err(|_| anyhow::anyhow!("start-up barrier poisoned"))?;
        if st.1 {
            anyhow::bail!("shard {shard}: another shard failed to start");
        }
        if timeout.timed_out() && st.0 < self.shards {
            anyhow::bail!("shard {shard}: only {} of {} shards finished opening their logs in time", st.0, self.shards);
        }
        Ok(())
    }

    /// A shard failed: the others stop waiting.
    pub fn abort(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.1 = true;
        }
        self.all.notify_all();
    }
}
