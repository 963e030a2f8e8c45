//! The `riptide` command line.

use clap::{Parser, Subcommand};
use riptide_broker::config;
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
    /// Measure the data dir's device and write the I/O properties file `start` reads.
    Tune(tuning::cli::TuneArgs),
    /// Check host settings (pass / warn / fail, with fixes); exit 0, 1 (warnings) or 2.
    Check(tuning::cli::CheckArgs),
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
    #[command(flatten)]
    ops: config::OpsArgs,
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
            ops: a.ops,
        }
    }
}

fn start(args: StartArgs) -> anyhow::Result<()> {
    let config = config::load(args.into())?;
    riptide_broker::server::run(config)
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
        Command::Start(args) => start(args),
        Command::Loadgen(args) => loadgen::cli::run_loadgen(args),
        Command::Sizing(args) => loadgen::cli::run_sizing(args),
        Command::Bench(BenchCommand::NullBroker(args)) => loadgen::cli::run_null_broker(args),
        Command::Tune(args) => tuning::cli::run_tune(args),
        Command::Check(args) => tuning::cli::run_check(args),
    };
    if let Err(e) = result {
        eprintln!("riptide: error: {e:#}");
        std::process::exit(1);
    }
}
