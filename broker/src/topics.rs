//! Topic metadata: names, ids, partition counts and per-topic configs.
//!
//! Every shard keeps its own copy (`TopicTable`); shard 0 is the controller that serialises changes,
//! persists them (`<data-dir>/__riptide_meta/topics.json`, written atomically) and broadcasts them.

use crate::constants::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use storage::{FlushPolicy, LogConfig};

/// Kafka topic configs we store and report. The ones marked `applied` change the log's behaviour.
pub const TOPIC_CONFIG_KEYS: &[(&str, bool)] = &[
    ("retention.ms", true),
    ("retention.bytes", true),
    ("segment.bytes", true),
    ("segment.ms", true),
    ("flush.ms", true),
    ("max.message.bytes", true),
    ("index.interval.bytes", true),
    ("cleanup.policy", true),
    ("compression.type", false),
    ("min.insync.replicas", false),
    ("message.timestamp.type", false),
    ("unclean.leader.election.enable", false),
    ("delete.retention.ms", true),
    ("min.compaction.lag.ms", true),
    ("max.compaction.lag.ms", false),
    ("min.cleanable.dirty.ratio", true),
    ("message.timestamp.difference.max.ms", false),
    ("preallocate", false),
    ("segment.jitter.ms", false),
    ("flush.messages", false),
    ("leader.replication.throttled.replicas", false),
    ("follower.replication.throttled.replicas", false),
];

/// Topic configs of Kafka's LIST type (comma-separated values): the only ones
/// IncrementalAlterConfigs' APPEND and SUBTRACT apply to.
pub const LIST_CONFIG_KEYS: &[&str] =
    &["cleanup.policy", "leader.replication.throttled.replicas", "follower.replication.throttled.replicas"];

/// The value a topic config has when the topic does not set it: the broker's log defaults for the
/// keys we apply, Kafka's defaults for the ones we only store.
pub fn default_config_value(key: &str, log: &LogConfig) -> String {
    let unlimited = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
    match key {
        "retention.ms" => unlimited(log.retention_ms),
        "retention.bytes" => unlimited(log.retention_bytes),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.ms" => log.segment_ms.to_string(),
        "flush.ms" => match log.flush {
            FlushPolicy::Always => "0".to_string(),
            FlushPolicy::Interval { ms, .. } => ms.to_string(),
        },
        "max.message.bytes" => log.max_batch_bytes.to_string(),
        "index.interval.bytes" => log.index_interval_bytes.to_string(),
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "min.insync.replicas" => "1".into(),
        "message.timestamp.type" => "CreateTime".into(),
        "unclean.leader.election.enable" | "preallocate" => "false".into(),
        "delete.retention.ms" => storage::constants::DELETE_RETENTION_MS_DEFAULT.to_string(),
        "min.cleanable.dirty.ratio" => storage::constants::MIN_CLEANABLE_DIRTY_RATIO_DEFAULT.to_string(),
        "min.compaction.lag.ms" | "segment.jitter.ms" => "0".into(),
        "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas" => String::new(),
        _ => i64::MAX.to_string(),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: u128,
    pub partitions: i32,
    /// Only the configs set explicitly for this topic.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TopicError {
    #[error("invalid topic name {0:?}: use 1-249 characters of [a-zA-Z0-9._-], not . or ..")]
    InvalidName(String),
    #[error("invalid partition count {0} (1..={TOPIC_PARTITIONS_MAX})")]
    InvalidPartitions(i32),
    #[error("unknown or unsupported config {0}")]
    UnknownConfig(String),
    #[error("invalid value {value:?} for config {key}")]
    InvalidConfig { key: String, value: String },
    #[error("invalid value {0:?} for config cleanup.policy: a list of compact and delete")]
    CleanupPolicy(String),
}

/// What `cleanup.policy` asks for: Kafka's LIST of `delete` (old segments go by time and size)
/// and `compact` (the latest value of every key stays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub fn parse(value: &str) -> Result<CleanupPolicy, TopicError> {
        let items = list_items(value);
        let known = items.iter().all(|i| i == "delete" || i == "compact");
        if items.is_empty() || !known {
            return Err(TopicError::CleanupPolicy(value.to_string()));
        }
        Ok(CleanupPolicy { delete: items.iter().any(|i| i == "delete"), compact: items.iter().any(|i| i == "compact") })
    }
}

pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let legal = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX || !legal || name == "." || name == ".." {
        return Err(TopicError::InvalidName(name.to_string()));
    }
    if name == META_DIR {
        return Err(TopicError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// Topics the broker writes itself (`__consumer_offsets`). Clients may read them (tools decode
/// the offsets topic as on Kafka) but not produce to them, delete them, change their partition
/// count (which places every group) or delete their records; creating one answers
/// TOPIC_ALREADY_EXISTS, since the broker creates them at start.
pub fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC
}

/// The configs `__consumer_offsets` is created with, as Kafka creates it: compacted (the shard's
/// compactor keeps each group's latest commits and drops tombstones of deleted offsets and
/// groups), 100 MiB segments, producer compression. Nothing is deleted by time or size
/// (`retention.ms=-1`, and a compact-only policy ignores retention anyway): a compacted topic
/// never loses a key's latest value. `flush.ms=0`: commits are answered once synced, whatever
/// the broker's `log.flush`.
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact".to_string()),
        ("compression.type", "producer".to_string()),
        ("segment.bytes", OFFSETS_TOPIC_SEGMENT_BYTES.to_string()),
        ("retention.ms", "-1".to_string()),
        ("flush.ms", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Adds `__consumer_offsets` with `offsets_partitions` partitions if the table lacks it; true if
/// the table changed (the caller persists it). An existing topic keeps its partition count:
/// it decides which partition, hence which shard, holds each group.
pub fn ensure_internal_topics(table: &mut TopicTable, offsets_partitions: i32) -> bool {
    if let Some(existing) = table.get(OFFSETS_TOPIC) {
        if existing.partitions != offsets_partitions {
            tracing::warn!(
                existing = existing.partitions,
                configured = offsets_partitions,
                "offsets.topic.num.partitions differs from the existing {OFFSETS_TOPIC}: keeping its partition count"
            );
        }
        return false;
    }
    table.upsert(TopicMeta {
        name: OFFSETS_TOPIC.to_string(),
        id: rand::random::<u128>() | 1,
        partitions: offsets_partitions,
        configs: offsets_topic_configs(),
    });
    true
}

pub fn validate_partitions(count: i32) -> Result<(), TopicError> {
    if !(1..=TOPIC_PARTITIONS_MAX).contains(&count) {
        return Err(TopicError::InvalidPartitions(count));
    }
    Ok(())
}

/// Checks one config entry; applying it to a default LogConfig proves the value parses.
pub fn validate_config(key: &str, value: &str) -> Result<(), TopicError> {
    if !TOPIC_CONFIG_KEYS.iter().any(|(k, _)| *k == key) {
        return Err(TopicError::UnknownConfig(key.to_string()));
    }
    if key.ends_with(".replication.throttled.replicas") {
        return validate_throttled_replicas(key, value);
    }
    apply_config(&mut LogConfig::default(), key, value)
}

/// Kafka's throttled-replica lists: empty, `*`, or `partition:broker` pairs separated by commas.
fn validate_throttled_replicas(key: &str, value: &str) -> Result<(), TopicError> {
    let pair = |item: &str| {
        item.split_once(':').is_some_and(|(p, b)| p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok())
    };
    if value.trim().is_empty() || value.trim() == "*" || value.split(',').all(pair) {
        return Ok(());
    }
    Err(TopicError::InvalidConfig { key: key.into(), value: value.into() })
}

fn parse_i64(key: &str, value: &str) -> Result<i64, TopicError> {
    value.trim().parse().map_err(|_| TopicError::InvalidConfig { key: key.into(), value: value.into() })
}

fn positive(key: &str, value: &str) -> Result<u64, TopicError> {
    match parse_i64(key, value)? {
        v if v > 0 => Ok(v as u64),
        _ => Err(TopicError::InvalidConfig { key: key.into(), value: value.into() }),
    }
}

fn non_negative(key: &str, value: &str) -> Result<i64, TopicError> {
    match parse_i64(key, value)? {
        v if v >= 0 => Ok(v),
        _ => Err(TopicError::InvalidConfig { key: key.into(), value: value.into() }),
    }
}

/// A ratio in [0, 1], as Kafka's `min.cleanable.dirty.ratio`.
fn dirty_ratio(key: &str, value: &str) -> Result<f64, TopicError> {
    match value.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(TopicError::InvalidConfig { key: key.into(), value: value.into() }),
    }
}

/// `-1` means unlimited for retention settings, as in Kafka.
fn limit(key: &str, value: &str) -> Result<Option<u64>, TopicError> {
    match parse_i64(key, value)? {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v as u64)),
        _ => Err(TopicError::InvalidConfig { key: key.into(), value: value.into() }),
    }
}

pub fn apply_config(log: &mut LogConfig, key: &str, value: &str) -> Result<(), TopicError> {
    match key {
        "retention.ms" => log.retention_ms = limit(key, value)?,
        "retention.bytes" => log.retention_bytes = limit(key, value)?,
        "segment.bytes" => log.segment_bytes = positive(key, value)?,
        "segment.ms" => log.segment_ms = positive(key, value)?,
        "flush.ms" => {
            // Kafka's default flush.ms is Long.MAX_VALUE ("never"); we read it as "interval".
            log.flush = match limit(key, value)? {
                Some(0) => FlushPolicy::Always,
                Some(ms) => FlushPolicy::Interval { ms, bytes: u64::MAX },
                None => return Err(TopicError::InvalidConfig { key: key.into(), value: value.into() }),
            }
        }
        "max.message.bytes" => log.max_batch_bytes = positive(key, value)? as usize,
        "cleanup.policy" => {
            CleanupPolicy::parse(value)?;
        }
        "delete.retention.ms" | "min.compaction.lag.ms" => {
            non_negative(key, value)?;
        }
        "max.compaction.lag.ms" => {
            positive(key, value)?;
        }
        "min.cleanable.dirty.ratio" => {
            dirty_ratio(key, value)?;
        }
        "index.interval.bytes" => {
            log.index_interval_bytes = u32::try_from(positive(key, value)?)
                .map_err(|_| TopicError::InvalidConfig { key: key.into(), value: value.into() })?
        }
        _ => {
            parse_any(key, value)?;
        }
    }
    Ok(())
}

fn parse_any(key: &str, value: &str) -> Result<(), TopicError> {
    if value.is_empty() && !LIST_CONFIG_KEYS.contains(&key) {
        return Err(TopicError::InvalidConfig { key: key.into(), value: value.into() });
    }
    Ok(())
}

/// An IncrementalAlterConfigs operation (Kafka's `AlterConfigOp.OpType`, codes 0-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl ConfigOp {
    pub fn from_code(code: i8) -> Option<ConfigOp> {
        Some(match code {
            0 => ConfigOp::Set,
            1 => ConfigOp::Delete,
            2 => ConfigOp::Append,
            3 => ConfigOp::Subtract,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            ConfigOp::Set => "SET",
            ConfigOp::Delete => "DELETE",
            ConfigOp::Append => "APPEND",
            ConfigOp::Subtract => "SUBTRACT",
        }
    }
}

/// A change to a topic's config overrides.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigAlteration {
    /// IncrementalAlterConfigs: operations applied in order to the current overrides; keys not
    /// named keep their value. A `None` value is only meaningful for DELETE.
    Incremental(Vec<(String, ConfigOp, Option<String>)>),
    /// AlterConfigs (the older API): the overrides become exactly these; keys not named return
    /// to their defaults.
    Replace(Vec<(String, String)>),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlterError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("config value {op} is not allowed for config key {key}: only list configs ({lists}) take it", op = .op.name().to_lowercase(), lists = LIST_CONFIG_KEYS.join(", "))]
    NotAList { key: String, op: ConfigOp },
    #[error("{op} of config {key} needs a value", op = .op.name())]
    MissingValue { key: String, op: ConfigOp },
}

/// The overrides `current` becomes under `alteration`, every resulting value validated. APPEND
/// and SUBTRACT start from the current value (the default when not set), as Kafka does:
/// APPEND adds the items not already there, SUBTRACT removes every copy of the items named.
pub fn alter_configs(
    current: &BTreeMap<String, String>,
    alteration: &ConfigAlteration,
    defaults: &LogConfig,
) -> Result<BTreeMap<String, String>, AlterError> {
    let known = |key: &str| {
        if TOPIC_CONFIG_KEYS.iter().any(|(k, _)| *k == key) {
            Ok(())
        } else {
            Err(AlterError::Topic(TopicError::UnknownConfig(key.to_string())))
        }
    };
    let next = match alteration {
        ConfigAlteration::Replace(entries) => {
            let mut next = BTreeMap::new();
            for (k, v) in entries {
                known(k)?;
                next.insert(k.clone(), v.clone());
            }
            next
        }
        ConfigAlteration::Incremental(ops) => {
            let mut next = current.clone();
            for (key, op, value) in ops {
                known(key)?;
                let value = || value.clone().ok_or(AlterError::MissingValue { key: key.clone(), op: *op });
                let list = |next: &BTreeMap<String, String>| -> Result<Vec<String>, AlterError> {
                    if !LIST_CONFIG_KEYS.contains(&key.as_str()) {
                        return Err(AlterError::NotAList { key: key.clone(), op: *op });
                    }
                    let now = next.get(key).cloned().unwrap_or_else(|| default_config_value(key, defaults));
                    Ok(list_items(&now))
                };
                match op {
                    ConfigOp::Set => {
                        next.insert(key.clone(), value()?);
                    }
                    ConfigOp::Delete => {
                        next.remove(key);
                    }
                    ConfigOp::Append => {
                        let mut items = list(&next)?;
                        for item in list_items(&value()?) {
                            if !items.contains(&item) {
                                items.push(item);
                            }
                        }
                        next.insert(key.clone(), items.join(","));
                    }
                    ConfigOp::Subtract => {
                        let remove = list_items(&value()?);
                        let items: Vec<String> = list(&next)?.into_iter().filter(|i| !remove.contains(i)).collect();
                        next.insert(key.clone(), items.join(","));
                    }
                }
            }
            next
        }
    };
    for (k, v) in &next {
        validate_config(k, v)?;
    }
    Ok(next)
}

fn list_items(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

impl TopicMeta {
    /// The log configuration of this topic: broker defaults with this topic's overrides.
    pub fn log_config(&self, defaults: &LogConfig) -> LogConfig {
        let mut log = defaults.clone();
        for (k, v) in &self.configs {
            // Validated when the topic was created; a bad stored value keeps the default.
            if let Err(e) = apply_config(&mut log, k, v) {
                tracing::warn!(topic = %self.name, "ignoring stored config: {e}");
            }
        }
        if !self.cleanup_policy().delete {
            // Compacted only: nothing is deleted by time or size (a key's latest value stays).
            log.retention_ms = None;
            log.retention_bytes = None;
        }
        log
    }

    /// The topic's `cleanup.policy` (a bad stored value reads as the default, delete).
    pub fn cleanup_policy(&self) -> CleanupPolicy {
        let delete_only = CleanupPolicy { delete: true, compact: false };
        self.configs.get("cleanup.policy").map_or(delete_only, |v| CleanupPolicy::parse(v).unwrap_or(delete_only))
    }

    /// How the compactor treats this topic's logs; None unless `cleanup.policy` has compact.
    pub fn compaction_config(&self) -> Option<storage::CompactionConfig> {
        if !self.cleanup_policy().compact {
            return None;
        }
        let mut config = storage::CompactionConfig::default();
        let get = |key: &str| self.configs.get(key).map(String::as_str);
        if let Some(v) = get("delete.retention.ms").and_then(|v| non_negative("delete.retention.ms", v).ok()) {
            config.delete_retention_ms = v;
        }
        if let Some(v) = get("min.compaction.lag.ms").and_then(|v| non_negative("min.compaction.lag.ms", v).ok()) {
            config.min_compaction_lag_ms = v;
        }
        if let Some(v) = get("min.cleanable.dirty.ratio").and_then(|v| dirty_ratio("min.cleanable.dirty.ratio", v).ok()) {
            config.min_cleanable_dirty_ratio = v;
        }
        Some(config)
    }

    pub fn uuid_bytes(&self) -> [u8; 16] {
        self.id.to_be_bytes()
    }
}

/// One shard's view of all topics.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TopicTable {
    pub topics: HashMap<String, TopicMeta>,
}

impl TopicTable {
    pub fn get(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn upsert(&mut self, meta: TopicMeta) {
        self.topics.insert(meta.name.clone(), meta);
    }

    pub fn remove(&mut self, name: &str) -> Option<TopicMeta> {
        self.topics.remove(name)
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(META_DIR).join("topics.json")
    }

    pub fn load(data_dir: &Path) -> anyhow::Result<TopicTable> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("corrupt topic metadata {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TopicTable::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// Write-to-temp, fsync, rename, fsync dir: a crash leaves the old or the new table, never half.
    pub fn persist(&self, data_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(data_dir);
        let dir = path.parent().expect("meta path has a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_synced(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Directory of one partition's log, as in Kafka: `<data-dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_validation() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "é", META_DIR, &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn topics_config_overrides_defaults() {
        let mut meta = TopicMeta { name: "t".into(), id: 1, partitions: 1, configs: BTreeMap::new() };
        meta.configs.insert("retention.ms".into(), "-1".into());
        meta.configs.insert("segment.bytes".into(), "1048576".into());
        let log = meta.log_config(&LogConfig::default());
        assert_eq!(log.retention_ms, None);
        assert_eq!(log.segment_bytes, 1 << 20);
    }

    #[test]
    fn topics_config_rejects_bad_input() {
        assert!(matches!(validate_config("nope", "1"), Err(TopicError::UnknownConfig(_))));
        assert!(matches!(validate_config("segment.bytes", "-5"), Err(TopicError::InvalidConfig { .. })));
        for good in ["compact", "delete", "compact,delete", "delete, compact"] {
            assert!(validate_config("cleanup.policy", good).is_ok(), "{good}");
        }
        for bad in ["", "shred", "compact,shred", ","] {
            assert!(matches!(validate_config("cleanup.policy", bad), Err(TopicError::CleanupPolicy(_))), "{bad:?}");
        }
        assert!(validate_config("delete.retention.ms", "0").is_ok());
        assert!(matches!(validate_config("delete.retention.ms", "-1"), Err(TopicError::InvalidConfig { .. })));
        assert!(matches!(validate_config("min.compaction.lag.ms", "soon"), Err(TopicError::InvalidConfig { .. })));
        assert!(validate_config("min.cleanable.dirty.ratio", "0.01").is_ok());
        for bad in ["1.5", "-0.1", "half"] {
            assert!(matches!(validate_config("min.cleanable.dirty.ratio", bad), Err(TopicError::InvalidConfig { .. })), "{bad}");
        }
    }

    fn incremental(ops: &[(&str, ConfigOp, Option<&str>)]) -> ConfigAlteration {
        ConfigAlteration::Incremental(ops.iter().map(|(k, op, v)| (k.to_string(), *op, v.map(str::to_string))).collect())
    }

    #[test]
    fn topics_alter_configs_set_delete_append_subtract() {
        let d = LogConfig::default();
        let mut cur = BTreeMap::new();
        cur.insert("retention.ms".to_string(), "1000".to_string());
        let key = "leader.replication.throttled.replicas";
        let next = alter_configs(
            &cur,
            &incremental(&[
                ("segment.bytes", ConfigOp::Set, Some("1048576")),
                ("retention.ms", ConfigOp::Delete, None),
                (key, ConfigOp::Append, Some("0:0,1:0")),
                (key, ConfigOp::Append, Some("1:0,2:0")),
                (key, ConfigOp::Subtract, Some("0:0")),
                ("min.insync.replicas", ConfigOp::Delete, None),
            ]),
            &d,
        )
        .unwrap();
        let want: BTreeMap<String, String> =
            [("segment.bytes", "1048576"), (key, "1:0,2:0")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(next, want);
        // APPEND starts from the default when the key is not set: cleanup.policy=delete.
        let same = alter_configs(&BTreeMap::new(), &incremental(&[("cleanup.policy", ConfigOp::Append, Some("delete"))]), &d);
        assert_eq!(same.unwrap().get("cleanup.policy").map(String::as_str), Some("delete"));
    }

    #[test]
    fn topics_alter_configs_refuses_bad_changes() {
        let d = LogConfig::default();
        let none = BTreeMap::new();
        let err = |a: ConfigAlteration| alter_configs(&none, &a, &d).unwrap_err();
        assert!(matches!(err(incremental(&[("retention.ms", ConfigOp::Append, Some("5"))])), AlterError::NotAList { .. }));
        assert!(matches!(err(incremental(&[("retention.ms", ConfigOp::Subtract, Some("5"))])), AlterError::NotAList { .. }));
        assert!(matches!(err(incremental(&[("retention.ms", ConfigOp::Set, None)])), AlterError::MissingValue { .. }));
        assert!(matches!(err(incremental(&[("nope", ConfigOp::Delete, None)])), AlterError::Topic(TopicError::UnknownConfig(_))));
        assert!(matches!(err(incremental(&[("segment.bytes", ConfigOp::Set, Some("x"))])), AlterError::Topic(TopicError::InvalidConfig { .. })));
        assert!(matches!(err(incremental(&[("cleanup.policy", ConfigOp::Append, Some("shred"))])), AlterError::Topic(TopicError::CleanupPolicy(_))));
        assert!(matches!(err(incremental(&[("cleanup.policy", ConfigOp::Subtract, Some("delete"))])), AlterError::Topic(TopicError::CleanupPolicy(_))), "an empty policy");
        let bad_list = incremental(&[("follower.replication.throttled.replicas", ConfigOp::Set, Some("0:x"))]);
        assert!(matches!(err(bad_list), AlterError::Topic(TopicError::InvalidConfig { .. })));
        assert!(matches!(err(ConfigAlteration::Replace(vec![("nope".into(), "1".into())])), AlterError::Topic(_)));
    }

    #[test]
    fn topics_compaction_configs_are_accepted_and_applied() {
        let d = LogConfig::default();
        let next = alter_configs(&BTreeMap::new(), &incremental(&[("cleanup.policy", ConfigOp::Append, Some("compact"))]), &d).unwrap();
        assert_eq!(next.get("cleanup.policy").map(String::as_str), Some("delete,compact"), "APPEND to the default");
        let mut meta = TopicMeta { name: "t".into(), id: 1, partitions: 1, configs: next };
        assert_eq!(meta.cleanup_policy(), CleanupPolicy { delete: true, compact: true });
        assert_eq!(meta.log_config(&d).retention_ms, d.retention_ms, "compact,delete still deletes by time");
        meta.configs.insert("cleanup.policy".into(), "compact".into());
        meta.configs.insert("delete.retention.ms".into(), "1000".into());
        meta.configs.insert("min.cleanable.dirty.ratio".into(), "0.01".into());
        meta.configs.insert("min.compaction.lag.ms".into(), "5".into());
        assert_eq!(meta.log_config(&d).retention_ms, None, "compact only: nothing deleted by time");
        let c = meta.compaction_config().expect("compacted");
        assert_eq!((c.delete_retention_ms, c.min_cleanable_dirty_ratio, c.min_compaction_lag_ms), (1000, 0.01, 5));
        meta.configs.insert("cleanup.policy".into(), "delete".into());
        assert_eq!(meta.compaction_config(), None);
    }

    #[test]
    fn topics_alter_configs_replace_drops_unnamed_keys() {
        let mut cur = BTreeMap::new();
        cur.insert("retention.ms".to_string(), "1000".to_string());
        let next = alter_configs(&cur, &ConfigAlteration::Replace(vec![("segment.ms".into(), "60000".into())]), &LogConfig::default());
        assert_eq!(next.unwrap().into_iter().collect::<Vec<_>>(), vec![("segment.ms".to_string(), "60000".to_string())]);
    }

    #[test]
    fn topics_internal_offsets_topic_is_added_once_and_kept() {
        let mut t = TopicTable::default();
        assert!(ensure_internal_topics(&mut t, 7));
        let meta = t.get(OFFSETS_TOPIC).cloned().expect("added");
        assert_eq!(meta.partitions, 7);
        assert!(is_internal(&meta.name) && !is_internal("orders"));
        let log = meta.log_config(&LogConfig::default());
        assert_eq!(log.retention_ms, None, "offsets are never deleted by time");
        assert_eq!(log.flush, FlushPolicy::Always, "commits are answered once synced");
        assert_eq!(log.segment_bytes, OFFSETS_TOPIC_SEGMENT_BYTES);
        assert_eq!(meta.configs.get("cleanup.policy").map(String::as_str), Some("compact"));
        assert!(!ensure_internal_topics(&mut t, 50), "an existing topic is kept");
        assert_eq!(t.get(OFFSETS_TOPIC), Some(&meta), "with its partition count and id");
    }

    #[test]
    fn topics_table_persists_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TopicTable::default();
        t.upsert(TopicMeta { name: "a".into(), id: 7, partitions: 3, configs: BTreeMap::new() });
        t.persist(dir.path()).unwrap();
        let back = TopicTable::load(dir.path()).unwrap();
        assert_eq!(back.get("a"), t.get("a"));
        assert!(TopicTable::load(tempfile::tempdir().unwrap().path()).unwrap().topics.is_empty());
    }
}
