//! The `riptide` command line: parses and dispatches to the crates below (see lib.rs).

use clap::{Parser, Subcommand};
use riptide_cli::error::CliError;
use riptide_cli::{cluster, group, records, start, topic};

#[derive(Parser)]
#[command(name = "riptide", version, about = "Riptide: a Kafka-compatible streaming broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker in the foreground (stop with SIGTERM or Ctrl-C).
    Start(start::StartArgs),
    /// Create, list, describe, delete and configure topics.
    Topic(topic::TopicArgs),
    /// Produce lines from stdin, one record each.
    Produce(records::ProduceArgs),
    /// Print records.
    Consume(records::ConsumeArgs),
    /// Consumer groups: list, describe (lag), reset offsets, delete.
    Group(group::GroupArgs),
    /// Cluster information.
    Cluster(cluster::ClusterArgs),
    /// Measure the data dir's device and write the I/O properties file `start` reads.
    Tune(tuning::cli::TuneArgs),
    /// Check host settings (pass / warn / fail, with fixes); exit 0, 1 (warnings) or 2.
    Check(tuning::cli::CheckArgs),
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

/// The broker and the load generator log at info by default; client commands only with RUST_LOG.
fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into()))
        .init();
}

fn main() {
    let cli = Cli::parse();
    let client = |r: Result<(), CliError>| r.map_err(|e| (e.exit_code(), e.to_string()));
    let server = |r: anyhow::Result<()>| r.map_err(|e| (1, format!("{e:#}")));
    let result = match cli.command {
        Command::Start(_) | Command::Loadgen(_) | Command::Sizing(_) | Command::Bench(_) | Command::Tune(_) | Command::Check(_) => {
            init_logging("info");
            match cli.command {
                Command::Start(args) => server(start::run(args)),
                Command::Tune(args) => server(tuning::cli::run_tune(args)),
                Command::Check(args) => server(tuning::cli::run_check(args)),
                Command::Loadgen(args) => server(loadgen::cli::run_loadgen(args)),
                Command::Sizing(args) => server(loadgen::cli::run_sizing(args)),
                Command::Bench(BenchCommand::NullBroker(args)) => server(loadgen::cli::run_null_broker(args)),
                _ => unreachable!(),
            }
        }
        command => {
            init_logging("off");
            match command {
                Command::Topic(args) => client(topic::run(args)),
                Command::Produce(args) => client(records::produce(args)),
                Command::Consume(args) => client(records::consume(args)),
                Command::Group(args) => client(group::run(args)),
                Command::Cluster(args) => client(cluster::run(args)),
                _ => unreachable!(),
            }
        }
    };
    if let Err((code, message)) = result {
        eprintln!("riptide: error: {message}");
        std::process::exit(code);
    }
}
