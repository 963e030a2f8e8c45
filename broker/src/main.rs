//! The `riptide` command line.

use clap::{Parser, Subcommand};
use riptide_broker::config::{self, BrokerConfig, FileConfig};
use riptide_broker::constants::*;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "riptide", version, about = "Riptide: a Kafka-compatible streaming broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker in the foreground (stop with SIGTERM or Ctrl-C).
    Start(StartArgs),
    /// Drive any Kafka-compatible cluster with a workload and report throughput and latency.
    Loadgen(loadgen::cli::LoadgenArgs),
    /// Turn measured per-broker throughput into the number of brokers a target ingress needs.
    Sizing(loadgen::cli::SizingArgs),
    /// Benchmark helpers.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// A responder that acks every produce and stores nothing: the client + loopback ceiling.
    NullBroker(loadgen::cli::NullBrokerArgs),
}

#[derive(clap::Args)]
struct StartArgs {
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
}

fn build_config(args: StartArgs) -> anyhow::Result<BrokerConfig> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let listen_str = args.listen.or(file.listen).unwrap_or_else(|| LISTEN_DEFAULT.to_string());
    let listen = config::parse_listen(&listen_str)?;
    let (advertised_host, advertised_port) = match args.advertised.or(file.advertised) {
        Some(a) => config::parse_advertised(&a)?,
        None => (listen.ip().to_string(), listen.port()),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = args.shards.or(file.shards).unwrap_or(cores);
    anyhow::ensure!((1..=256).contains(&shards), "--shards must be between 1 and 256, got {shards}");
    let default_partitions = args.default_partitions.or(file.default_partitions).unwrap_or(PARTITIONS_DEFAULT);
    riptide_broker::topics::validate_partitions(default_partitions).map_err(|e| anyhow::anyhow!("num.partitions: {e}"))?;
    let mut log = config::default_log_config();
    if let Some(v) = file.segment_bytes {
        log.segment_bytes = v;
    }
    if let Some(v) = file.retention_ms {
        log.retention_ms = u64::try_from(v).ok();
    }
    if let Some(v) = file.retention_bytes {
        log.retention_bytes = u64::try_from(v).ok();
    }
    if let Some(v) = &file.flush {
        log.flush = config::parse_flush(v)?;
    }
    let socket_request_max_bytes = file.socket_request_max_bytes.unwrap_or(SOCKET_REQUEST_BYTES_MAX);
    anyhow::ensure!(socket_request_max_bytes >= 1024, "socket.request.max.bytes must be at least 1024");
    Ok(BrokerConfig {
        node_id: args.node_id.or(file.node_id).unwrap_or(0),
        listen,
        advertised_host,
        advertised_port,
        data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT)),
        shards,
        auto_create_topics: args.auto_create_topics.or(file.auto_create_topics).unwrap_or(true),
        default_partitions,
        socket_request_max_bytes,
        log,
        sync_override: None,
    })
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start(args) => build_config(args).and_then(riptide_broker::server::run),
        Command::Loadgen(args) => loadgen::cli::run_loadgen(args),
        Command::Sizing(args) => loadgen::cli::run_sizing(args),
        Command::Bench(BenchCommand::NullBroker(args)) => loadgen::cli::run_null_broker(args),
    };
    if let Err(e) = result {
        eprintln!("riptide: error: {e:#}");
        std::process::exit(1);
    }
}
