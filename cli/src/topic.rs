//! `riptide topic ...`: create, list, describe, delete, alter-config, add-partitions.

use crate::native::{self, Api, Op};
use crate::client::{key_value, no_topic, ClientArgs, Cluster};
use crate::error::{describe_code, failed, usage, Result};
use crate::output::{emit, id_list, summary, Format, Table};
use clap::Subcommand;
use futures::executor::block_on;
use rdkafka::admin::{ConfigSource, NewPartitions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic
    Create {
        name: String,
        /// Partitions [default: the broker's num.partitions]
        #[arg(short = 'p', long, default_value_t = -1, allow_negative_numbers = true, hide_default_value = true)]
        partitions: i32,
        /// Replication factor [default: the broker's]
        #[arg(short = 'r', long, default_value_t = -1, allow_negative_numbers = true, hide_default_value = true)]
        replicas: i32,
        /// Topic config (repeatable), e.g. -c retention.ms=3600000
        #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Broker ids per partition, partitions separated by ',' and replicas by ':' (e.g. 0,0,0)
        #[arg(long, value_name = "B[:B...],...", conflicts_with_all = ["partitions", "replicas"])]
        replica_assignment: Option<String>,
        /// Only validate the request
        #[arg(long)]
        dry_run: bool,
    },
    /// List topics (internal ones, named `__...` like `__consumer_offsets`, with --internal)
    List {
        /// Include internal topics
        #[arg(short = 'i', long)]
        internal: bool,
    },
    /// Partitions (leader, replicas, ISR, log start and end offsets) and configs of a topic
    Describe { name: String },
    /// Delete topics
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Change a topic's configs (IncrementalAlterConfigs; --replace uses AlterConfigs)
    AlterConfig {
        name: String,
        /// Set a config (repeatable)
        #[arg(short = 'c', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Return a config to its default (repeatable)
        #[arg(short = 'd', long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// Add values to a list config (repeatable)
        #[arg(long, value_name = "KEY=VALUE[,VALUE]")]
        append: Vec<String>,
        /// Remove values from a list config (repeatable)
        #[arg(long, value_name = "KEY=VALUE[,VALUE]")]
        subtract: Vec<String>,
        /// Replace all of the topic's overrides with the -c entries (older AlterConfigs API)
        #[arg(long, conflicts_with_all = ["delete", "append", "subtract"])]
        replace: bool,
        /// Only validate the change
        #[arg(long)]
        dry_run: bool,
    },
    /// Add partitions to a topic
    AddPartitions {
        name: String,
        /// How many partitions to add
        #[arg(short = 'n', long = "num")]
        num: usize,
    },
}

pub fn run(args: TopicArgs) -> Result<()> {
    let format = args.client.output()?;
    check_arguments(&args.command)?;
    let cluster = Cluster::connect(&args.client)?;
    match args.command {
        TopicCommand::Create { name, partitions, replicas, configs, replica_assignment, dry_run } => {
            create(&cluster, format, &name, partitions, replicas, &configs, replica_assignment.as_deref(), dry_run)
        }
        TopicCommand::List { internal } => list(&cluster, format, internal),
        TopicCommand::Describe { name } => describe(&cluster, format, &name),
        TopicCommand::Delete { names } => delete(&cluster, format, &names),
        TopicCommand::AlterConfig { name, set, delete, append, subtract, replace, dry_run } => {
            let ops = alter_ops(&set, &delete, &append, &subtract)?;
            alter_config(&cluster, format, &name, &ops, replace, dry_run)
        }
        TopicCommand::AddPartitions { name, num } => add_partitions(&cluster, format, &name, num),
    }
}

/// Bad arguments are reported (exit 2) before any connection is made.
fn check_arguments(command: &TopicCommand) -> Result<()> {
    if let TopicCommand::Create { configs, replica_assignment, .. } = command {
        parse_configs(configs, "-c")?;
        replica_assignment.as_deref().map(parse_assignment).transpose()?;
    }
    if let TopicCommand::AlterConfig { name, set, delete, append, subtract, replace, .. } = command {
        if alter_ops(set, delete, append, subtract)?.is_empty() && !replace {
            return Err(usage(format!("alter-config {name}: nothing to change (give -c, -d, --append or --subtract)")));
        }
    }
    Ok(())
}

fn parse_configs(kvs: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    kvs.iter().map(|kv| key_value(kv, flag)).collect()
}

fn parse_assignment(s: &str) -> Result<Vec<Vec<i32>>> {
    s.split(',')
        .map(|p| {
            p.split(':')
                .map(|b| b.trim().parse::<i32>().map_err(|_| usage(format!("--replica-assignment: {b:?} is not a broker id"))))
                .collect()
        })
        .collect()
}

fn alter_ops(set: &[String], delete: &[String], append: &[String], subtract: &[String]) -> Result<Vec<(String, Op, Option<String>)>> {
    let mut ops = Vec::new();
    for (k, v) in parse_configs(set, "-c")? {
        ops.push((k, Op::Set, Some(v)));
    }
    for k in delete {
        ops.push((k.clone(), Op::Delete, None));
    }
    for (k, v) in parse_configs(append, "--append")? {
        ops.push((k, Op::Append, Some(v)));
    }
    for (k, v) in parse_configs(subtract, "--subtract")? {
        ops.push((k, Op::Subtract, Some(v)));
    }
    Ok(ops)
}

#[allow(clippy::too_many_arguments)]
fn create(
    cluster: &Cluster,
    format: Format,
    name: &str,
    partitions: i32,
    replicas: i32,
    configs: &[String],
    assignment: Option<&str>,
    dry_run: bool,
) -> Result<()> {
    let configs = parse_configs(configs, "-c")?;
    let assignment = assignment.map(parse_assignment).transpose()?;
    let topic = native::NewTopic { name, partitions, replicas, assignment: assignment.as_deref(), configs: &configs };
    native::create_topic(cluster.consumer.client(), &topic, dry_run, cluster.timeout)
        .map_err(|e| e.into_cli(&format!("cannot create topic {name}")))?;
    let verb = if dry_run { "Validated (not created)" } else { "Created" };
    emit(format, || format!("{verb} topic {name}.\n"), || json!({"topic": name, "created": !dry_run, "validate_only": dry_run}));
    Ok(())
}

/// Internal topics by Kafka's naming convention (the metadata's is_internal flag is not
/// exposed by librdkafka): `__consumer_offsets`, `__transaction_state`.
pub fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

fn list(cluster: &Cluster, format: Format, internal: bool) -> Result<()> {
    let md = cluster.metadata(None)?;
    let mut topics: Vec<_> = md.topics().iter().filter(|t| t.error().is_none() && (internal || !is_internal(t.name()))).collect();
    topics.sort_by(|a, b| a.name().cmp(b.name()));
    let replicas = |t: &rdkafka::metadata::MetadataTopic| t.partitions().iter().map(|p| p.replicas().len()).max().unwrap_or(0);
    emit(
        format,
        || {
            let mut t = Table::new(&["NAME", "PARTITIONS", "REPLICAS"]);
            for topic in &topics {
                t.row(vec![topic.name().to_string(), topic.partitions().len().to_string(), replicas(topic).to_string()]);
            }
            t.render()
        },
        || {
            json!(topics
                .iter()
                .map(|t| json!({"name": t.name(), "partitions": t.partitions().len(), "replicas": replicas(t)}))
                .collect::<Vec<_>>())
        },
    );
    Ok(())
}

pub fn source_name(s: &ConfigSource) -> &'static str {
    match s {
        ConfigSource::Unknown => "UNKNOWN",
        ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
        ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
        ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
        ConfigSource::Default => "DEFAULT_CONFIG",
    }
}

fn describe(cluster: &Cluster, format: Format, name: &str) -> Result<()> {
    let md = cluster.metadata(Some(name))?;
    cluster.partitions(name)?; // a clear error for an unknown topic
    let topic = md.topics().iter().find(|t| t.name() == name).ok_or_else(|| no_topic(name))?;
    let mut parts: Vec<_> = topic.partitions().iter().collect();
    parts.sort_by_key(|p| p.id());
    let mut rows = Vec::with_capacity(parts.len());
    for p in &parts {
        let (start, end) = cluster.watermarks(name, p.id())?;
        rows.push((p.id(), p.leader(), p.replicas().to_vec(), p.isr().to_vec(), start, end, p.error().map(RDKafkaErrorCode::from)));
    }
    let spec = ResourceSpecifier::Topic(name);
    let described = block_on(cluster.admin()?.describe_configs([&spec], &cluster.admin_options()))
        .map_err(|e| cluster.error(&format!("cannot describe the configs of {name}"), &e))?;
    let mut configs = Vec::new();
    for r in described {
        let resource = r.map_err(|code| failed(format!("cannot describe the configs of {name}: {}", describe_code(code))))?;
        for e in resource.entries {
            configs.push((e.name, e.value.unwrap_or_default(), source_name(&e.source)));
        }
    }
    configs.sort();
    let replication = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    emit(
        format,
        || {
            let mut out = summary(&[("NAME", name.to_string()), ("PARTITIONS", rows.len().to_string()), ("REPLICAS", replication.to_string())]);
            let mut t = Table::new(&["PARTITION", "LEADER", "REPLICAS", "ISR", "LOG-START-OFFSET", "LOG-END-OFFSET", "ERROR"]);
            for (id, leader, replicas, isr, start, end, err) in &rows {
                let err = err.map(crate::error::code_name).unwrap_or_default();
                t.row(vec![id.to_string(), leader.to_string(), id_list(replicas), id_list(isr), start.to_string(), end.to_string(), err]);
            }
            out.push('\n');
            out.push_str(&t.render());
            let mut c = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
            for (k, v, s) in &configs {
                c.row(vec![k.clone(), v.clone(), s.to_string()]);
            }
            out.push('\n');
            out.push_str(&c.render());
            out
        },
        || {
            json!({
                "name": name,
                "partitions": rows.iter().map(|(id, leader, replicas, isr, start, end, err)| json!({
                    "partition": id, "leader": leader, "replicas": replicas, "isr": isr,
                    "log_start_offset": start, "log_end_offset": end,
                    "error": err.map(crate::error::code_name),
                })).collect::<Vec<_>>(),
                "configs": configs.iter().map(|(k, v, s)| json!({"name": k, "value": v, "source": s})).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}

fn delete(cluster: &Cluster, format: Format, names: &[String]) -> Result<()> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = block_on(cluster.admin()?.delete_topics(&refs, &cluster.admin_options()))
        .map_err(|e| cluster.error("cannot delete topics", &e))?;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(name) => deleted.push(name),
            Err((name, RDKafkaErrorCode::UnknownTopicOrPartition)) => errors.push(format!("topic {name} does not exist (UNKNOWN_TOPIC_OR_PARTITION)")),
            Err((name, code)) => errors.push(format!("cannot delete topic {name}: {}", describe_code(code))),
        }
    }
    emit(
        format,
        || deleted.iter().map(|n| format!("Deleted topic {n}.\n")).collect(),
        || json!({"deleted": deleted, "errors": errors}),
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(failed(errors.join("; ")))
    }
}

fn alter_config(cluster: &Cluster, format: Format, name: &str, ops: &[(String, Op, Option<String>)], replace: bool, dry_run: bool) -> Result<()> {
    let api = if replace { Api::Replace } else { Api::Incremental };
    native::alter_topic(cluster.consumer.client(), name, ops, api, dry_run, cluster.timeout)
        .map_err(|e| e.into_cli(&format!("cannot alter the configs of {name}")))?;
    let verb = if dry_run { "Validated (not applied)" } else { "Altered" };
    emit(
        format,
        || format!("{verb} configs of topic {name}.\n"),
        || {
            json!({
                "topic": name,
                "altered": !dry_run,
                "validate_only": dry_run,
                "api": if replace { "AlterConfigs" } else { "IncrementalAlterConfigs" },
            })
        },
    );
    Ok(())
}

fn add_partitions(cluster: &Cluster, format: Format, name: &str, num: usize) -> Result<()> {
    if num == 0 {
        return Err(usage("add-partitions: -n must be at least 1"));
    }
    let before = cluster.partitions(name)?.len();
    let total = before + num;
    let np = NewPartitions::new(name, total);
    let results = block_on(cluster.admin()?.create_partitions([&np], &cluster.admin_options()))
        .map_err(|e| cluster.error(&format!("cannot add partitions to {name}"), &e))?;
    for r in results {
        if let Err((_, code)) = r {
            return Err(failed(format!("cannot add partitions to {name}: {}", describe_code(code))));
        }
    }
    emit(
        format,
        || format!("Topic {name}: {before} -> {total} partitions.\n"),
        || json!({"topic": name, "partitions_before": before, "partitions": total}),
    );
    Ok(())
}
