//! Partition directories, tied to their topic's incarnation.
//!
//! A partition's log lives in `<data-dir>/<topic>-<partition>` (as in Kafka), and that directory
//! holds `partition.metadata` with the topic's id (Kafka's KIP-516 file). Deleting a topic must
//! never bring its records back when the name is created again, even if the broker crashes
//! between persisting the topic table and removing the directories, or the removal fails:
//! - a deleted partition's directory is first renamed aside (`<topic>-<p>.<id>-delete`, durable
//!   rename) and then removed off the reactor; a leftover `-delete` directory is removed at start;
//! - at start, directories of topics the (atomically written) table does not have are moved
//!   aside the same way;
//! - when a partition is opened, a directory whose `partition.metadata` names another topic id is
//!   a stale incarnation: it is moved aside before a fresh log is created.
//!
//! Directories without the file (data dirs of earlier versions) are adopted by the topic that
//! has their name.

use crate::constants::{META_DIR, PARTITION_METADATA_FILE, RETIRED_DIR_SUFFIX};
use crate::topics::TopicTable;
use std::io;
use std::path::{Path, PathBuf};

/// Kafka's `partition.metadata` text: the topic id as unpadded URL-safe base64.
pub fn metadata_text(topic_id: u128) -> String {
    format!("version: 0\ntopic_id: {}\n", base64_url(&topic_id.to_be_bytes()))
}

/// The topic id a `partition.metadata` text names.
pub fn parse_metadata(text: &str) -> Option<u128> {
    let id = text.lines().find_map(|l| l.strip_prefix("topic_id: "))?;
    let bytes = base64_url_decode(id.trim())?;
    Some(u128::from_be_bytes(bytes.try_into().ok()?))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64_url(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn base64_url_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    Some(out)
}

/// `(topic, partition)` of a directory name `<topic>-<partition>`, if it is one.
pub fn parse_dir_name(name: &str) -> Option<(&str, i32)> {
    let (topic, p) = name.rsplit_once('-')?;
    if topic.is_empty() || p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    crate::topics::validate_topic_name(topic).ok()?;
    Some((topic, p.parse().ok()?))
}

/// The name a directory gets when it is moved aside for removal.
fn retired_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!("{name}.{:016x}{RETIRED_DIR_SUFFIX}", rand::random::<u64>()))
}

/// Moves `dir` aside (durable rename); returns its new path. Blocking: run it off the reactor.
pub fn retire(dir: &Path) -> io::Result<PathBuf> {
    let aside = retired_path(dir);
    std::fs::rename(dir, &aside)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(aside)
}

/// Removes a retired directory, with a log line if it cannot (it is retried at the next start).
pub fn remove_retired(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::debug!(dir = %dir.display(), "removed deleted partition directory"),
        Err(e) => tracing::error!(dir = %dir.display(), "cannot remove deleted partition directory (retried at next start): {e}"),
    }
}

/// Makes `dir` the directory of topic `topic_id`'s partition: creates it with its metadata
/// file, adopts a directory without one, or moves a stale incarnation's directory aside first.
/// Blocking: run it off the reactor. Returns a retired directory to remove, if any.
pub fn claim(dir: &Path, topic_id: u128) -> io::Result<Option<PathBuf>> {
    let meta = dir.join(PARTITION_METADATA_FILE);
    let mut retired = None;
    match std::fs::read_to_string(&meta) {
        Ok(text) if parse_metadata(&text) == Some(topic_id) => return Ok(None),
        Ok(text) => {
            let aside = retire(dir)?;
            tracing::info!(dir = %dir.display(), old_id = ?parse_metadata(&text), aside = %aside.display(),
                "directory belongs to an earlier topic of the same name: moved aside");
            retired = Some(aside);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let existed = dir.exists();
    std::fs::create_dir_all(dir)?;
    crate::topics::write_synced(&meta, metadata_text(topic_id).as_bytes())?;
    std::fs::File::open(dir)?.sync_all()?;
    if !existed {
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(retired)
}

/// At start, before any shard opens a log: moves aside the directories of topics the table does
/// not have (a deletion interrupted by a crash) and returns every retired directory to remove.
/// Refuses to start if partition directories exist but the topic table does not: deleting them
/// all on a missing table would turn a lost file into lost data.
pub fn collect_garbage(data_dir: &Path, table: &TopicTable, table_exists: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut to_remove = Vec::new();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(RETIRED_DIR_SUFFIX) {
            to_remove.push(entry.path());
            continue;
        }
        if name == META_DIR {
            continue;
        }
        let Some((topic, p)) = parse_dir_name(&name) else { continue };
        let known = table.get(topic).is_some_and(|t| p < t.partitions);
        if !known {
            orphans.push(entry.path());
        }
    }
    if !orphans.is_empty() && !table_exists {
        anyhow::bail!(
            "the topic table {} is missing but {} partition directories exist (e.g. {}): restore the table or move those directories away, then start again",
            TopicTable::path(data_dir).display(), orphans.len(), orphans[0].display()
        );
    }
    for dir in orphans {
        let aside = retire(&dir)?;
        tracing::info!(dir = %dir.display(), "directory of a deleted topic moved aside for removal");
        to_remove.push(aside);
    }
    Ok(to_remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dirs_metadata_round_trips() {
        for id in [1u128, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3211] {
            let text = metadata_text(id);
            assert_eq!(parse_metadata(&text), Some(id), "{text}");
        }
        // Kafka's encoding of this UUID's 16 bytes (22 characters, no padding).
        assert_eq!(base64_url(&[0xfb; 16]), "-_v7-_v7-_v7-_v7-_v7-w");
        assert_eq!(parse_metadata("version: 0\n"), None);
    }

    #[test]
    fn partition_dirs_names_parse() {
        assert_eq!(parse_dir_name("orders-3"), Some(("orders", 3)));
        assert_eq!(parse_dir_name("my-topic-12"), Some(("my-topic", 12)));
        for bad in ["orders", "orders-", "-3", "lost+found", "orders-3.0123-delete", "a b-1"] {
            assert_eq!(parse_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn partition_dirs_claim_moves_a_stale_incarnation_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        assert_eq!(claim(&dir, 7).unwrap(), None);
        std::fs::write(dir.join("00000000000000000000.log"), b"old records").unwrap();
        assert_eq!(claim(&dir, 7).unwrap(), None, "same topic: kept");
        assert!(dir.join("00000000000000000000.log").exists());
        let aside = claim(&dir, 8).unwrap().expect("stale dir retired");
        assert!(aside.join("00000000000000000000.log").exists());
        assert!(!dir.join("00000000000000000000.log").exists(), "the new topic starts empty");
        assert_eq!(parse_metadata(&std::fs::read_to_string(dir.join(PARTITION_METADATA_FILE)).unwrap()), Some(8));
    }

    #[test]
    fn partition_dirs_garbage_is_moved_aside_and_a_missing_table_refuses() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["gone-0", "kept-0", "kept-5", "x-0.00ab-delete", "lost+found", META_DIR] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        let mut table = TopicTable::default();
        table.upsert(crate::topics::TopicMeta { name: "kept".into(), id: 1, partitions: 2, configs: Default::default() });
        assert!(collect_garbage(tmp.path(), &TopicTable::default(), false).is_err(), "no table, partition dirs: refuse");
        let removed = collect_garbage(tmp.path(), &table, true).unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        assert!(tmp.path().join("kept-0").exists());
        assert!(!tmp.path().join("gone-0").exists() && !tmp.path().join("kept-5").exists());
        assert!(tmp.path().join("lost+found").exists());
    }
}
