//! Broker configuration: embedded defaults, an optional TOML file, then command-line overrides.
//! `build_config` is the one place that merges and validates them (unit-tested below);
//! `main.rs` only turns its flags into `Overrides`.

use crate::constants::*;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use storage::{FlushPolicy, LogConfig};

/// Everything a broker process needs to start. Immutable once the shards run.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub listen: SocketAddr,
    /// Host and port given to clients in Metadata.
    pub advertised_host: String,
    pub advertised_port: u16,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub socket_request_max_bytes: usize,
    /// Defaults for every topic's log; per-topic configs override them.
    pub log: LogConfig,
    /// Bytes of each shard's journal (`log.journal.bytes`); less on a small disk.
    pub journal_bytes: u64,
    /// Tests only: every log's syncs run through this stand-in (fault injection) instead of
    /// the device's syncfs or fdatasync. Never set by the command line or the config file.
    pub sync_override: Option<storage::io::Syncer>,
    /// Connection timeouts (`request.read.timeout.ms`, `connections.max.idle.ms`).
    pub net: NetConfig,
    /// The admin HTTP endpoint (/metrics, /health); None = off.
    pub admin: Option<SocketAddr>,
    /// Per-partition metric series (off: per topic only).
    pub metrics_per_partition: bool,
    /// Memory and I/O knobs: sized from memory, or from the I/O properties file.
    pub resources: tuning::Resources,
    /// Consumer-group coordinator settings.
    pub groups: GroupConfig,
    /// How often each shard's compactor looks for compacted topics' logs dirty enough to
    /// clean (`log.cleaner.backoff.ms`).
    pub cleaner_backoff_ms: u64,
}

/// Consumer-group coordinator settings (Kafka's broker keys of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`: used when `__consumer_offsets` is created; an existing
    /// topic keeps its count (it decides which partition holds each group).
    pub offsets_topic_partitions: i32,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_partitions: OFFSETS_TOPIC_PARTITIONS_DEFAULT,
            initial_rebalance_delay_ms: GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT,
            min_session_timeout_ms: GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT,
            max_session_timeout_ms: GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// Per-connection time limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// How long a request may take to arrive once its size prefix has been read.
    pub request_read_timeout: Duration,
    /// How long a connection may stay with no request in flight and no byte received.
    pub connections_max_idle: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            request_read_timeout: Duration::from_millis(REQUEST_READ_TIMEOUT_MS_DEFAULT),
            connections_max_idle: Duration::from_millis(CONNECTIONS_MAX_IDLE_MS_DEFAULT),
        }
    }
}

/// Why a configuration was refused. Every message names the key or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("bad config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("{key} must be {expected}, got {value}")]
    Invalid { key: &'static str, expected: &'static str, value: String },
    #[error("bad {key} address {value:?}: {reason}")]
    Address { key: &'static str, value: String, reason: String },
    #[error(transparent)]
    Properties(#[from] tuning::PropertiesError),
}

/// The `--config FILE` format. Every key is optional; names follow Kafka's where one exists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub node_id: Option<i32>,
    pub listen: Option<String>,
    pub advertised: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub shards: Option<usize>,
    #[serde(rename = "auto.create.topics.enable")]
    pub auto_create_topics: Option<bool>,
    #[serde(rename = "num.partitions")]
    pub default_partitions: Option<i32>,
    #[serde(rename = "socket.request.max.bytes")]
    pub socket_request_max_bytes: Option<usize>,
    #[serde(rename = "log.segment.bytes")]
    pub segment_bytes: Option<u64>,
    #[serde(rename = "log.retention.ms")]
    pub retention_ms: Option<i64>,
    #[serde(rename = "log.retention.bytes")]
    pub retention_bytes: Option<i64>,
    /// `always` (default), or milliseconds between fdatasyncs (`0` = always, as `flush.ms`).
    #[serde(rename = "log.flush")]
    pub flush: Option<String>,
    #[serde(rename = "request.read.timeout.ms")]
    pub request_read_timeout_ms: Option<i64>,
    #[serde(rename = "connections.max.idle.ms")]
    pub connections_max_idle_ms: Option<i64>,
    /// Bytes of each shard's journal (ring of files preallocated in the data dir).
    #[serde(rename = "log.journal.bytes")]
    pub journal_bytes: Option<i64>,
    /// HOST:PORT of the admin endpoint, or `none`.
    pub admin: Option<String>,
    #[serde(rename = "metrics.per.partition")]
    pub metrics_per_partition: Option<bool>,
    /// The I/O properties file written by `riptide tune`.
    pub io_properties: Option<PathBuf>,
    #[serde(rename = "offsets.topic.num.partitions")]
    pub offsets_topic_partitions: Option<i32>,
    #[serde(rename = "group.initial.rebalance.delay.ms")]
    pub group_initial_rebalance_delay_ms: Option<i64>,
    #[serde(rename = "group.min.session.timeout.ms")]
    pub group_min_session_timeout_ms: Option<i32>,
    #[serde(rename = "group.max.session.timeout.ms")]
    pub group_max_session_timeout_ms: Option<i32>,
    #[serde(rename = "log.cleaner.backoff.ms")]
    pub cleaner_backoff_ms: Option<i64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        FileConfig::parse(&text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })
    }

    pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }
}

/// What the command line sets; each field overrides the file's.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub advertised: Option<String>,
    pub shards: Option<usize>,
    pub node_id: Option<i32>,
    pub config: Option<PathBuf>,
    pub default_partitions: Option<i32>,
    pub auto_create_topics: Option<bool>,
    pub ops: OpsArgs,
}

/// `riptide start`'s operations flags (the CLI crate parses them).
#[derive(Debug, Default, Clone)]
pub struct OpsArgs {
    /// Admin HTTP endpoint serving /metrics and /health, HOST:PORT or `none`.
    pub admin: Option<String>,
    /// Also export per-partition metric series.
    pub metrics_per_partition: bool,
    /// I/O properties file written by `riptide tune`.
    pub io_properties: Option<PathBuf>,
}

/// Reads the `--config` file, if any, and merges it with the command line.
pub fn load(overrides: Overrides) -> Result<BrokerConfig, ConfigError> {
    let file = match &overrides.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    build_config(overrides, file)
}

/// Merges defaults, the file and the command line (which wins), and validates the result.
pub fn build_config(args: Overrides, file: FileConfig) -> Result<BrokerConfig, ConfigError> {
    let (log, net, journal_bytes, groups) = (log_config(&file)?, net_config(&file)?, journal_bytes(&file)?, group_config(&file)?);
    let cleaner_backoff_ms = cleaner_backoff_ms(&file)?;
    let listen_str = args.listen.or(file.listen).unwrap_or_else(|| LISTEN_DEFAULT.to_string());
    let listen = parse_listen(&listen_str)?;
    let (advertised_host, advertised_port) = match args.advertised.or(file.advertised) {
        Some(a) => parse_advertised(&a)?,
        None => (listen.ip().to_string(), listen.port()),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = args.shards.or(file.shards).unwrap_or(cores);
    if !(1..=SHARDS_MAX).contains(&shards) {
        return Err(invalid("shards", "between 1 and 256", shards));
    }
    let default_partitions = args.default_partitions.or(file.default_partitions).unwrap_or(PARTITIONS_DEFAULT);
    crate::topics::validate_partitions(default_partitions)
        .map_err(|e| ConfigError::Invalid { key: "num.partitions", expected: "a valid partition count", value: e.to_string() })?;
    let socket_request_max_bytes = file.socket_request_max_bytes.unwrap_or(SOCKET_REQUEST_BYTES_MAX);
    if socket_request_max_bytes < SOCKET_REQUEST_BYTES_MIN {
        return Err(invalid("socket.request.max.bytes", "at least 1024", socket_request_max_bytes));
    }
    if socket_request_max_bytes as u64 > SHARD_REQUEST_BYTES_IN_FLIGHT_MAX {
        // A request larger than the shard's budget could never be read.
        return Err(invalid("socket.request.max.bytes", "at most 536870912 (the shard's request budget)", socket_request_max_bytes));
    }
    let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT));
    let admin = match args.ops.admin.or(file.admin).unwrap_or_else(|| ADMIN_DEFAULT.to_string()) {
        a if a == "none" => None,
        a => Some(parse_address("admin", &a)?),
    };
    let memory = tuning::HostFacts::probe().memory_bytes;
    let mut resources = tuning::Resources::from_memory(memory, shards, socket_request_max_bytes as u64);
    let default_props = data_dir.join(tuning::resources::IO_PROPERTIES_FILE);
    let props_path = args.ops.io_properties.or(file.io_properties).or_else(|| default_props.exists().then_some(default_props));
    if let Some(path) = props_path {
        resources = resources.with(&tuning::IoProperties::load(&path)?, &path);
    }
    if (socket_request_max_bytes as u64) > resources.request_budget_bytes {
        return Err(ConfigError::Invalid {
            key: "socket.request.max.bytes",
            expected: "at most request.budget.bytes.per.shard (a larger request could never be read)",
            value: format!("{socket_request_max_bytes} > {}", resources.request_budget_bytes),
        });
    }
    Ok(BrokerConfig {
        node_id: args.node_id.or(file.node_id).unwrap_or(0),
        listen,
        advertised_host,
        advertised_port,
        data_dir,
        shards,
        auto_create_topics: args.auto_create_topics.or(file.auto_create_topics).unwrap_or(true),
        default_partitions,
        socket_request_max_bytes,
        journal_bytes,
        log,
        net,
        groups,
        sync_override: None,
        cleaner_backoff_ms,
        admin,
        metrics_per_partition: args.ops.metrics_per_partition || file.metrics_per_partition.unwrap_or(false),
        resources,
    })
}

fn cleaner_backoff_ms(file: &FileConfig) -> Result<u64, ConfigError> {
    match file.cleaner_backoff_ms {
        None => Ok(CLEANER_BACKOFF_MS_DEFAULT),
        Some(v) if v >= CLEANER_BACKOFF_MS_MIN as i64 => Ok(v as u64),
        Some(v) => Err(invalid("log.cleaner.backoff.ms", "at least 10 milliseconds", v)),
    }
}

fn journal_bytes(file: &FileConfig) -> Result<u64, ConfigError> {
    match file.journal_bytes {
        None => Ok(JOURNAL_BYTES_DEFAULT),
        Some(v) if v >= JOURNAL_BYTES_MIN as i64 => Ok(v as u64),
        Some(v) => Err(invalid("log.journal.bytes", "at least 4194304 (4 MiB)", v)),
    }
}

fn group_config(file: &FileConfig) -> Result<GroupConfig, ConfigError> {
    let mut groups = GroupConfig::default();
    if let Some(v) = file.offsets_topic_partitions {
        crate::topics::validate_partitions(v).map_err(|_| invalid("offsets.topic.num.partitions", "between 1 and 10000", v))?;
        groups.offsets_topic_partitions = v;
    }
    if let Some(v) = file.group_initial_rebalance_delay_ms {
        groups.initial_rebalance_delay_ms =
            u64::try_from(v).map_err(|_| invalid("group.initial.rebalance.delay.ms", "0 or more milliseconds", v))?;
    }
    if let Some(v) = file.group_min_session_timeout_ms {
        groups.min_session_timeout_ms = v;
    }
    if let Some(v) = file.group_max_session_timeout_ms {
        groups.max_session_timeout_ms = v;
    }
    if groups.min_session_timeout_ms <= 0 || groups.min_session_timeout_ms > groups.max_session_timeout_ms {
        let value = format!("{}..{}", groups.min_session_timeout_ms, groups.max_session_timeout_ms);
        return Err(invalid("group.min.session.timeout.ms", "positive and at most group.max.session.timeout.ms", value));
    }
    Ok(groups)
}

fn log_config(file: &FileConfig) -> Result<LogConfig, ConfigError> {
    let mut log = default_log_config();
    if let Some(v) = file.segment_bytes {
        if v == 0 {
            return Err(invalid("log.segment.bytes", "positive", v));
        }
        log.segment_bytes = v;
    }
    if let Some(v) = file.retention_ms {
        log.retention_ms = parse_limit("log.retention.ms", v)?;
    }
    if let Some(v) = file.retention_bytes {
        log.retention_bytes = parse_limit("log.retention.bytes", v)?;
    }
    if let Some(v) = &file.flush {
        log.flush = parse_flush(v)?;
    }
    Ok(log)
}

fn net_config(file: &FileConfig) -> Result<NetConfig, ConfigError> {
    let mut net = NetConfig::default();
    if let Some(v) = file.request_read_timeout_ms {
        net.request_read_timeout = parse_positive_ms("request.read.timeout.ms", v)?;
    }
    if let Some(v) = file.connections_max_idle_ms {
        net.connections_max_idle = parse_positive_ms("connections.max.idle.ms", v)?;
    }
    Ok(net)
}

fn invalid(key: &'static str, expected: &'static str, value: impl ToString) -> ConfigError {
    ConfigError::Invalid { key, expected, value: value.to_string() }
}

/// `-1` means unlimited, as in Kafka; any other negative value is a mistake, not "forever".
fn parse_limit(key: &'static str, value: i64) -> Result<Option<u64>, ConfigError> {
    match value {
        -1 => Ok(None),
        v => u64::try_from(v).map(Some).map_err(|_| invalid(key, "-1 (unlimited) or >= 0", v)),
    }
}

fn parse_positive_ms(key: &'static str, value: i64) -> Result<Duration, ConfigError> {
    match u64::try_from(value) {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(invalid(key, "a positive number of milliseconds", value)),
    }
}

/// Parses `always` or a flush interval in ms, with `flush.ms` semantics: `0` means always
/// (fdatasync before acks=all is answered), not a zero-length interval.
pub fn parse_flush(value: &str) -> Result<FlushPolicy, ConfigError> {
    if value == "always" {
        return Ok(FlushPolicy::Always);
    }
    match value.parse::<u64>() {
        Ok(0) => Ok(FlushPolicy::Always),
        Ok(ms) => Ok(FlushPolicy::Interval { ms, bytes: u64::MAX }),
        Err(_) => Err(invalid("log.flush", "`always` or milliseconds", format!("{value:?}"))),
    }
}

/// Splits `host:port`, resolving it for listening.
pub fn parse_listen(value: &str) -> Result<SocketAddr, ConfigError> {
    parse_address("listen", value)
}

fn parse_address(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    let bad = |reason: String| ConfigError::Address { key, value: value.into(), reason };
    value.to_socket_addrs().map_err(|e| bad(e.to_string()))?.next().ok_or_else(|| bad("resolves to nothing".into()))
}

pub fn parse_advertised(value: &str) -> Result<(String, u16), ConfigError> {
    let bad = |reason: &str| ConfigError::Address { key: "advertised", value: value.into(), reason: reason.into() };
    let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("must be HOST:PORT"))?;
    let port = port.parse().map_err(|_| bad("bad port"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

pub fn default_log_config() -> LogConfig {
    LogConfig::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<BrokerConfig, ConfigError> {
        build_config(Overrides::default(), FileConfig::parse(text).expect("valid toml"))
    }

    fn error_of(text: &str) -> String {
        from_toml(text).expect_err("config must be refused").to_string()
    }

    #[test]
    fn config_defaults_without_file() {
        let c = from_toml("").unwrap();
        assert_eq!(c.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("127.0.0.1", 9092));
        assert_eq!(c.data_dir, PathBuf::from("./riptide-data"));
        assert_eq!(c.shards, std::thread::available_parallelism().unwrap().get());
        assert_eq!((c.node_id, c.default_partitions, c.auto_create_topics), (0, 1, true));
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.log.flush, FlushPolicy::Always);
        assert_eq!(c.log.retention_ms, Some(168 * 3600 * 1000));
        assert_eq!(c.log.retention_bytes, None);
        assert_eq!(c.net.request_read_timeout, Duration::from_millis(30_000));
        assert_eq!(c.net.connections_max_idle, Duration::from_millis(600_000));
        assert_eq!(c.admin, Some("127.0.0.1:9644".parse().unwrap()));
        assert!(!c.metrics_per_partition);
        let memory = tuning::HostFacts::probe().memory_bytes;
        assert_eq!(c.resources, tuning::Resources::from_memory(memory, c.shards, 104_857_600), "sized from memory");
        assert_eq!(c.groups, GroupConfig::default());
        assert_eq!(c.groups.offsets_topic_partitions, 50);
    }

    #[test]
    fn config_admin_endpoint_and_metrics_flag() {
        let c = from_toml("admin = \"127.0.0.1:19644\"\n\"metrics.per.partition\" = true").unwrap();
        assert_eq!((c.admin, c.metrics_per_partition), (Some("127.0.0.1:19644".parse().unwrap()), true));
        assert_eq!(from_toml("admin = \"none\"").unwrap().admin, None);
        let args = Overrides { ops: OpsArgs { admin: Some("none".into()), ..OpsArgs::default() }, ..Overrides::default() };
        assert_eq!(build_config(args, FileConfig::parse("admin = \"127.0.0.1:1\"").unwrap()).unwrap().admin, None, "the flag wins");
        assert!(error_of("admin = \"nowhere\"").contains("admin"));
    }

    #[test]
    fn config_io_properties_file_sets_the_knobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("io.toml");
        std::fs::write(&path, "[settings]\n\"io.ring.depth\" = 512\n\"request.budget.bytes.per.shard\" = 209715200\n").unwrap();
        let c = from_toml(&format!("io-properties = {:?}", path.display().to_string())).unwrap();
        assert_eq!((c.resources.ring_depth, c.resources.request_budget_bytes), (512, 200 << 20));
        // Found in the data dir without being named.
        std::fs::write(dir.path().join("io-properties.toml"), "[settings]\n\"io.memory.bytes\" = 33554432\n").unwrap();
        let c = from_toml(&format!("data-dir = {:?}", dir.path().display().to_string())).unwrap();
        assert_eq!(c.resources.io_memory_bytes, 32 << 20);
        // A budget smaller than the largest request is refused, naming both.
        std::fs::write(&path, "[settings]\n\"request.budget.bytes.per.shard\" = 10485760\n").unwrap();
        let e = error_of(&format!("io-properties = {:?}", path.display().to_string()));
        assert!(e.contains("socket.request.max.bytes") && e.contains("request.budget.bytes.per.shard"), "{e}");
        // A malformed file names its bad key.
        std::fs::write(&path, "[settings]\n\"io.ring.dept\" = 512\n").unwrap();
        let e = error_of(&format!("io-properties = {:?}", path.display().to_string()));
        assert!(e.contains("io.ring.dept") && e.contains("io.toml"), "{e}");
    }


    #[test]
    fn config_group_keys_are_read_and_validated() {
        let c = from_toml("\"offsets.topic.num.partitions\" = 8\n\"group.initial.rebalance.delay.ms\" = 0\n\"group.min.session.timeout.ms\" = 1000").unwrap();
        assert_eq!(c.groups.offsets_topic_partitions, 8);
        assert_eq!(c.groups.initial_rebalance_delay_ms, 0);
        assert_eq!(c.groups.min_session_timeout_ms, 1000);
        assert!(error_of("\"offsets.topic.num.partitions\" = 0").contains("offsets.topic.num.partitions"));
        assert!(error_of("\"group.initial.rebalance.delay.ms\" = -1").contains("group.initial.rebalance.delay.ms"));
        assert!(error_of("\"group.min.session.timeout.ms\" = 9000\n\"group.max.session.timeout.ms\" = 8000").contains("session"));
    }

    #[test]
    fn config_flags_override_file() {
        let file = FileConfig::parse("listen = \"127.0.0.1:1000\"\nshards = 3\nnode-id = 4\n\"num.partitions\" = 5").unwrap();
        let args = Overrides { listen: Some("127.0.0.1:2000".into()), shards: Some(2), ..Overrides::default() };
        let c = build_config(args, file).unwrap();
        assert_eq!(c.listen.port(), 2000);
        assert_eq!(c.advertised_port, 2000, "advertised follows the listen address");
        assert_eq!((c.shards, c.node_id, c.default_partitions), (2, 4, 5));
    }

    #[test]
    fn config_log_flush_zero_means_always() {
        assert_eq!(from_toml("\"log.flush\" = \"0\"").unwrap().log.flush, FlushPolicy::Always);
        assert_eq!(from_toml("\"log.flush\" = \"always\"").unwrap().log.flush, FlushPolicy::Always);
        assert_eq!(
            from_toml("\"log.flush\" = \"250\"").unwrap().log.flush,
            FlushPolicy::Interval { ms: 250, bytes: u64::MAX }
        );
        assert!(error_of("\"log.flush\" = \"-5\"").contains("log.flush"));
        assert!(error_of("\"log.flush\" = \"sometimes\"").contains("log.flush"));
    }

    #[test]
    fn config_negative_retention_other_than_minus_one_is_refused() {
        let c = from_toml("\"log.retention.ms\" = -1\n\"log.retention.bytes\" = -1").unwrap();
        assert_eq!((c.log.retention_ms, c.log.retention_bytes), (None, None));
        let c = from_toml("\"log.retention.ms\" = 60000\n\"log.retention.bytes\" = 0").unwrap();
        assert_eq!((c.log.retention_ms, c.log.retention_bytes), (Some(60_000), Some(0)));
        let e = error_of("\"log.retention.ms\" = -2");
        assert!(e.contains("log.retention.ms") && e.contains("-2"), "{e}");
        let e = error_of("\"log.retention.bytes\" = -100");
        assert!(e.contains("log.retention.bytes") && e.contains("-100"), "{e}");
    }

    #[test]
    fn config_connection_timeouts_are_read_and_validated() {
        let c = from_toml("\"request.read.timeout.ms\" = 1500\n\"connections.max.idle.ms\" = 2000").unwrap();
        assert_eq!(c.net.request_read_timeout, Duration::from_millis(1500));
        assert_eq!(c.net.connections_max_idle, Duration::from_millis(2000));
        for key in ["request.read.timeout.ms", "connections.max.idle.ms"] {
            for bad in ["0", "-1"] {
                let e = error_of(&format!("\"{key}\" = {bad}"));
                assert!(e.contains(key), "{e}");
            }
        }
    }

    #[test]
    fn config_refuses_bad_values_naming_the_key() {
        assert!(error_of("shards = 0").contains("shards"));
        assert!(error_of("shards = 257").contains("shards"));
        assert!(error_of("\"num.partitions\" = 0").contains("num.partitions"));
        assert!(error_of("\"socket.request.max.bytes\" = 10").contains("socket.request.max.bytes"));
        assert!(error_of("\"socket.request.max.bytes\" = 1073741824").contains("socket.request.max.bytes"));
        assert!(error_of("\"log.segment.bytes\" = 0").contains("log.segment.bytes"));
        assert!(error_of("listen = \"nowhere\"").contains("listen"));
        assert!(error_of("advertised = \"host-without-port\"").contains("advertised"));
        assert!(FileConfig::parse("\"no.such.key\" = 1").is_err(), "unknown keys are refused");
    }

    #[test]
    fn config_file_errors_name_the_file() {
        let missing = Overrides { config: Some("/nonexistent/riptide.toml".into()), ..Overrides::default() };
        assert!(load(missing).unwrap_err().to_string().contains("/nonexistent/riptide.toml"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "shards = \"two\"").unwrap();
        let e = load(Overrides { config: Some(path.clone()), ..Overrides::default() }).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("shards"), "{e}");
    }
}
