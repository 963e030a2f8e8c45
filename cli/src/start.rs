//! `riptide start`: run a broker in the foreground.

use broker::config;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Directory for logs and metadata [default: ./riptide-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9092]
    #[arg(long)]
    listen: Option<String>,
    /// HOST:PORT given to clients in metadata [default: the listen address]
    #[arg(long)]
    advertised: Option<String>,
    /// Number of shards (cores) [default: all cores]
    #[arg(long)]
    shards: Option<usize>,
    /// Broker id [default: 0]
    #[arg(long)]
    node_id: Option<i32>,
    /// TOML config file; command-line flags override it
    #[arg(long)]
    config: Option<PathBuf>,
    /// Partitions of auto-created topics [default: 1]
    #[arg(long)]
    default_partitions: Option<i32>,
    /// Create topics on first produce or metadata request [default: true]
    #[arg(long)]
    auto_create_topics: Option<bool>,
    /// Admin HTTP endpoint serving /metrics and /health, HOST:PORT or `none` [default: 127.0.0.1:9644]
    #[arg(long)]
    admin: Option<String>,
    /// Also export per-partition metric series (offsets, sizes, traffic, group lag)
    #[arg(long)]
    metrics_per_partition: bool,
    /// I/O properties file written by `riptide tune` [default: DATA_DIR/io-properties.toml if present]
    #[arg(long)]
    io_properties: Option<PathBuf>,
}

impl From<StartArgs> for config::Overrides {
    fn from(a: StartArgs) -> Self {
        config::Overrides {
            data_dir: a.data_dir,
            listen: a.listen,
            advertised: a.advertised,
            shards: a.shards,
            node_id: a.node_id,
            config: a.config,
            default_partitions: a.default_partitions,
            auto_create_topics: a.auto_create_topics,
            ops: config::OpsArgs { admin: a.admin, metrics_per_partition: a.metrics_per_partition, io_properties: a.io_properties },
        }
    }
}

pub fn run(args: StartArgs) -> anyhow::Result<()> {
    let config = config::load(args.into())?;
    broker::server::run(config)
}
