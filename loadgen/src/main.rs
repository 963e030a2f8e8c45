//! `riptide-loadgen`: the load generator's own binary, with the same subcommands the `riptide`
//! binary exposes (`loadgen`, `sizing`, `null-broker`).

use clap::{Parser, Subcommand};
use loadgen::cli::{run_loadgen, run_null_broker, run_sizing, LoadgenArgs, NullBrokerArgs, SizingArgs};

#[derive(Debug, Parser)]
#[command(name = "riptide-loadgen", version, about = "Kafka-compatible load generator and sizing")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workload file against a bootstrap list.
    Loadgen(LoadgenArgs),
    /// Brokers needed for an ingress, from a measured report or a per-broker figure.
    Sizing(SizingArgs),
    /// A responder that acks every produce and stores nothing (client + loopback ceiling).
    NullBroker(NullBrokerArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Loadgen(a) => run_loadgen(a),
        Command::Sizing(a) => run_sizing(a),
        Command::NullBroker(a) => run_null_broker(a),
    }
}
