//! `riptide cluster info`: brokers, controller, cluster id, topic count.

use crate::native::controller_id;
use crate::client::{ClientArgs, Cluster};
use crate::error::Result;
use crate::output::{emit, summary, Table};
use clap::Subcommand;
use rdkafka::consumer::Consumer;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Brokers, controller and topic count
    Info,
}

pub fn run(args: ClusterArgs) -> Result<()> {
    let format = args.client.output()?;
    let cluster = Cluster::connect(&args.client)?;
    match args.command {
        ClusterCommand::Info => info(&cluster, format),
    }
}

fn info(cluster: &Cluster, format: crate::output::Format) -> Result<()> {
    let md = cluster.metadata(None)?;
    let client = cluster.consumer.client();
    let id = client.fetch_cluster_id(cluster.timeout).unwrap_or_default();
    let controller = controller_id(client, cluster.timeout);
    let mut brokers: Vec<(i32, String, i32)> = md.brokers().iter().map(|b| (b.id(), b.host().to_string(), b.port())).collect();
    brokers.sort();
    // User topics, as `topic list` shows them.
    let topics = md.topics().iter().filter(|t| t.error().is_none() && !crate::topic::is_internal(t.name())).count();
    emit(
        format,
        || {
            let mut out = summary(&[
                ("CLUSTER", if id.is_empty() { "-".into() } else { id.clone() }),
                ("CONTROLLER", controller.map_or("-".into(), |c| c.to_string())),
                ("BROKERS", brokers.len().to_string()),
                ("TOPICS", topics.to_string()),
            ]);
            let mut t = Table::new(&["ID", "HOST", "PORT"]);
            for (bid, host, port) in &brokers {
                let mark = if Some(*bid) == controller { "*" } else { "" };
                t.row(vec![format!("{bid}{mark}"), host.clone(), port.to_string()]);
            }
            out.push('\n');
            out.push_str(&t.render());
            out
        },
        || {
            json!({
                "cluster_id": if id.is_empty() { None } else { Some(&id) },
                "controller": controller,
                "topics": topics,
                "brokers": brokers.iter().map(|(bid, host, port)| json!({"id": bid, "host": host, "port": port})).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}
