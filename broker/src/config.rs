//! Broker configuration: embedded defaults, an optional TOML file, then command-line overrides.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Tests only: every log's syncs run through this stand-in (fault injection) instead of
    /// the device's syncfs or fdatasync. Never set by the command line or the config file.
    pub sync_override: Option<storage::io::Syncer>,
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
    /// `always` (default) or a number of milliseconds between fdatasyncs.
    #[serde(rename = "log.flush")]
    pub flush: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("bad config file {}: {e}", path.display()))
    }
}

/// Parses `always` or a flush interval in ms (`flush.ms` semantics).
pub fn parse_flush(value: &str) -> anyhow::Result<FlushPolicy> {
    if value == "always" {
        return Ok(FlushPolicy::Always);
    }
    let ms: u64 = value
        .parse()
        .map_err(|_| anyhow::anyhow!("log.flush must be `always` or milliseconds, got {value:?}"))?;
    Ok(FlushPolicy::Interval { ms, bytes: u64::MAX })
}

/// Splits `host:port`, resolving it for listening.
pub fn parse_listen(value: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    value
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("bad listen address {value:?}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("listen address {value:?} resolves to nothing"))
}

pub fn parse_advertised(value: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("advertised address must be HOST:PORT, got {value:?}"))?;
    let port = port.parse().map_err(|_| anyhow::anyhow!("bad port in {value:?}"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

pub fn default_log_config() -> LogConfig {
    LogConfig::default()
}
