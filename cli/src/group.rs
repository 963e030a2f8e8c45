//! `riptide group ...`: list, describe (offsets, lag, members), reset offsets, delete.
//!
//! Built on the classic group APIs through librdkafka: ListGroups/DescribeGroups
//! (`fetch_group_list`), OffsetFetch (`committed_offsets`), ListOffsets (watermarks,
//! `offsets_for_times`), OffsetCommit (`commit`, as a consumer that never joins) and DeleteGroups.

use crate::client::{CliContext, ClientArgs, Cluster};
use crate::datetime::parse_iso_ms;
use crate::error::{describe_code, failed, kafka_code, usage, CliError, Result};
use crate::output::{emit, summary, Format, Table};
use bytes::Bytes;
use clap::Subcommand;
use futures::executor::block_on;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use std::collections::BTreeMap;

#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups
    List,
    /// Per partition: committed offset, log end, lag, member and host
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no active members)
    #[command(group(clap::ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"])))]
    Reset {
        group: String,
        /// Topic whose offsets move (repeatable)
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        /// To the log start of every partition
        #[arg(long)]
        to_earliest: bool,
        /// To the log end of every partition
        #[arg(long)]
        to_latest: bool,
        /// To this offset (kept within each partition's log start and end)
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        to_offset: Option<i64>,
        /// To the first record at or after this time (ISO 8601; UTC unless a zone is given)
        #[arg(long, value_name = "ISO")]
        to_datetime: Option<String>,
        /// Show the new offsets without committing them
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete consumer groups (they must have no active members)
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

/// Where `reset` moves offsets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Time(i64),
}

pub fn run(args: GroupArgs) -> Result<()> {
    let format = args.client.output()?;
    let target = match &args.command {
        GroupCommand::Reset { to_earliest, to_latest, to_offset, to_datetime, .. } => Some(match (to_earliest, to_latest, to_offset, to_datetime) {
            (true, _, _, _) => Target::Earliest,
            (_, true, _, _) => Target::Latest,
            (_, _, Some(n), _) if *n >= 0 => Target::Offset(*n),
            (_, _, Some(n), _) => return Err(usage(format!("--to-offset must be >= 0, not {n}"))),
            (_, _, _, Some(t)) => Target::Time(
                parse_iso_ms(t).ok_or_else(|| usage(format!("--to-datetime: {t:?} is not an ISO 8601 date-time (e.g. 2026-12-01T10:00:00Z)")))?,
            ),
            _ => unreachable!("clap requires one --to-*"),
        }),
        _ => None,
    };
    let cluster = Cluster::connect(&args.client)?;
    match args.command {
        GroupCommand::List => list(&cluster, format),
        GroupCommand::Describe { group } => describe(&cluster, format, &group),
        GroupCommand::Reset { group, topics, dry_run, .. } => reset(&cluster, format, &group, &topics, target.expect("parsed above"), dry_run),
        GroupCommand::Delete { groups } => delete(&cluster, format, &groups),
    }
}

/// Fails with a clear message when the cluster has no group APIs (librdkafka would otherwise
/// retry until the timeout, or for ever in a consumer).
pub fn require_groups(cluster: &Cluster, group: &str) -> Result<()> {
    groups(cluster, Some(group)).map(drop)
}

fn group_error(cluster: &Cluster, what: &str, e: &KafkaError) -> CliError {
    match kafka_code(e) {
        Some(RDKafkaErrorCode::UnsupportedVersion | RDKafkaErrorCode::UnsupportedFeature) => {
            let code = describe_code(kafka_code(e).expect("matched"));
            failed(format!("the cluster at {} does not support consumer groups ({what}: {code})", cluster.args.brokers))
        }
        _ => cluster.error(what, e),
    }
}

/// A group as DescribeGroups reports it.
struct GroupInfo {
    name: String,
    state: String,
    protocol: String,
    protocol_type: String,
    members: Vec<MemberInfo>,
}

struct MemberInfo {
    id: String,
    client_id: String,
    host: String,
    assignment: Option<Vec<u8>>,
}

impl GroupInfo {
    fn name(&self) -> &str {
        &self.name
    }
    fn state(&self) -> &str {
        &self.state
    }
    fn protocol(&self) -> &str {
        &self.protocol
    }
    fn protocol_type(&self) -> &str {
        &self.protocol_type
    }
    fn members(&self) -> &[MemberInfo] {
        &self.members
    }
}

fn groups(cluster: &Cluster, group: Option<&str>) -> Result<Vec<GroupInfo>> {
    let list = cluster.consumer.fetch_group_list(group, cluster.timeout).map_err(|e| group_error(cluster, "ListGroups/DescribeGroups", &e))?;
    Ok(list
        .groups()
        .iter()
        .map(|g| GroupInfo {
            name: g.name().into(),
            state: g.state().into(),
            protocol: g.protocol().into(),
            protocol_type: g.protocol_type().into(),
            members: g
                .members()
                .iter()
                .map(|m| MemberInfo {
                    id: m.id().into(),
                    client_id: m.client_id().into(),
                    host: m.client_host().trim_start_matches('/').into(),
                    assignment: m.assignment().map(<[u8]>::to_vec),
                })
                .collect(),
        })
        .collect())
}

fn list(cluster: &Cluster, format: Format) -> Result<()> {
    let mut all = groups(cluster, None)?;
    all.sort_by(|a, b| a.name().cmp(b.name()));
    emit(
        format,
        || {
            let mut t = Table::new(&["GROUP", "STATE", "MEMBERS", "PROTOCOL-TYPE"]);
            for g in &all {
                t.row(vec![g.name().into(), g.state().into(), g.members().len().to_string(), g.protocol_type().into()]);
            }
            t.render()
        },
        || {
            json!(all
                .iter()
                .map(|g| json!({"group": g.name(), "state": g.state(), "members": g.members().len(), "protocol_type": g.protocol_type()}))
                .collect::<Vec<_>>())
        },
    );
    Ok(())
}

/// A consumer that uses `group`'s committed offsets but never joins it.
fn group_consumer(cluster: &Cluster, group: &str) -> Result<BaseConsumer<CliContext>> {
    cluster
        .config()?
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create_with_context(CliContext::default())
        .map_err(|e| usage(format!("cannot create a consumer: {e}")))
}

/// Every partition of every topic but internal ones (`__...`): OffsetFetch needs them named.
fn all_partitions(cluster: &Cluster) -> Result<TopicPartitionList> {
    let md = cluster.metadata(None)?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.error().is_none() && !t.name().starts_with("__")) {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    Ok(tpl)
}

/// Committed offsets of `group` over `tpl`: only partitions that have one.
fn committed(cluster: &Cluster, consumer: &BaseConsumer<CliContext>, tpl: TopicPartitionList) -> Result<BTreeMap<(String, i32), i64>> {
    if tpl.count() == 0 {
        return Ok(BTreeMap::new());
    }
    let got = consumer.committed_offsets(tpl, cluster.timeout).map_err(|e| group_error(cluster, "cannot fetch committed offsets", &e))?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if e.error().is_ok() => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

struct Member {
    id: String,
    host: String,
    client_id: String,
}

/// Which member each partition is assigned to (the consumer protocol's assignment bytes).
fn assignments(g: &GroupInfo) -> BTreeMap<(String, i32), Member> {
    let mut out = BTreeMap::new();
    if g.protocol_type() != "consumer" {
        return out;
    }
    for m in g.members() {
        let Some(raw) = &m.assignment else { continue };
        let Some(a) = decode_assignment(raw) else { continue };
        for tp in a.assigned_partitions {
            for p in tp.partitions {
                let member = Member { id: m.id.clone(), host: m.host.clone(), client_id: m.client_id.clone() };
                out.insert((tp.topic.to_string(), p), member);
            }
        }
    }
    out
}

fn decode_assignment(raw: &[u8]) -> Option<ConsumerProtocolAssignment> {
    if raw.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([raw[0], raw[1]]).clamp(0, 3);
    let mut body = Bytes::copy_from_slice(&raw[2..]);
    ConsumerProtocolAssignment::decode(&mut body, version).ok()
}

fn describe(cluster: &Cluster, format: Format, group: &str) -> Result<()> {
    let info = groups(cluster, Some(group))?.into_iter().find(|g| g.name() == group);
    let consumer = group_consumer(cluster, group)?;
    let offsets = committed(cluster, &consumer, all_partitions(cluster)?)?;
    let owners = info.as_ref().map(assignments).unwrap_or_default();
    let state = info.as_ref().map_or("Dead".to_string(), |g| g.state().to_string());
    let members = info.as_ref().map_or(0, |g| g.members().len());
    if offsets.is_empty() && members == 0 && matches!(state.as_str(), "Dead" | "") {
        return Err(failed(format!("group {group} does not exist (GROUP_ID_NOT_FOUND)")));
    }
    let mut keys: Vec<(String, i32)> = offsets.keys().chain(owners.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let mut rows = Vec::with_capacity(keys.len());
    for (topic, p) in keys {
        let (_, end) = cluster.watermarks(&topic, p)?;
        let current = offsets.get(&(topic.clone(), p)).copied();
        let lag = current.map(|c| (end - c).max(0));
        rows.push((topic.clone(), p, current, end, lag, owners.get(&(topic, p))));
    }
    let total_lag: i64 = rows.iter().filter_map(|r| r.4).sum();
    let dash = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    emit(
        format,
        || {
            let protocol = info.as_ref().map_or(String::new(), |g| g.protocol().to_string());
            let mut out = summary(&[
                ("GROUP", group.to_string()),
                ("STATE", state.clone()),
                ("PROTOCOL", if protocol.is_empty() { "-".into() } else { protocol }),
                ("MEMBERS", members.to_string()),
                ("TOTAL-LAG", total_lag.to_string()),
            ]);
            let mut t = Table::new(&["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]);
            for (topic, p, current, end, lag, owner) in &rows {
                let (id, host, client) = owner.map_or(("-", "-", "-"), |m| (m.id.as_str(), m.host.as_str(), m.client_id.as_str()));
                t.row(vec![group.into(), topic.clone(), p.to_string(), dash(*current), end.to_string(), dash(*lag), id.into(), host.into(), client.into()]);
            }
            out.push('\n');
            out.push_str(&t.render());
            out
        },
        || {
            json!({
                "group": group, "state": state, "members": members, "total_lag": total_lag,
                "partitions": rows.iter().map(|(topic, p, current, end, lag, owner)| json!({
                    "topic": topic, "partition": p, "current_offset": current, "log_end_offset": end, "lag": lag,
                    "consumer_id": owner.map(|m| &m.id), "host": owner.map(|m| &m.host), "client_id": owner.map(|m| &m.client_id),
                })).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}

fn reset(cluster: &Cluster, format: Format, group: &str, topics: &[String], target: Target, dry_run: bool) -> Result<()> {
    if let Some(g) = groups(cluster, Some(group))?.into_iter().find(|g| g.name() == group) {
        if !g.members().is_empty() || !matches!(g.state(), "Empty" | "Dead" | "") {
            return Err(failed(format!(
                "Assignments can only be reset if the group '{group}' is inactive, but the current state is {} ({} members)",
                g.state(),
                g.members().len()
            )));
        }
    }
    let consumer = group_consumer(cluster, group)?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        for p in cluster.partitions(topic)? {
            tpl.add_partition(topic, p);
        }
    }
    let previous = committed(cluster, &consumer, tpl.clone())?;
    let times = match target {
        Target::Time(ms) => Some(offsets_for_time(cluster, &consumer, &tpl, ms)?),
        _ => None,
    };
    let mut new = TopicPartitionList::new();
    let mut rows = Vec::new();
    for e in tpl.elements() {
        let (topic, p) = (e.topic().to_string(), e.partition());
        let (start, end) = cluster.watermarks(&topic, p)?;
        let offset = match target {
            Target::Earliest => start,
            Target::Latest => end,
            Target::Offset(n) => n.clamp(start, end),
            Target::Time(_) => times.as_ref().and_then(|t| t.get(&(topic.clone(), p)).copied()).unwrap_or(end),
        };
        new.add_partition_offset(&topic, p, Offset::Offset(offset)).map_err(|e| cluster.error("bad offset", &e))?;
        rows.push((topic.clone(), p, previous.get(&(topic, p)).copied(), offset));
    }
    if !dry_run {
        consumer.commit(&new, CommitMode::Sync).map_err(|e| group_error(cluster, &format!("cannot commit offsets of group {group}"), &e))?;
    }
    let dash = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    emit(
        format,
        || {
            let mut t = Table::new(&["GROUP", "TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"]);
            for (topic, p, prev, offset) in &rows {
                t.row(vec![group.into(), topic.clone(), p.to_string(), dash(*prev), offset.to_string()]);
            }
            let mut out = t.render();
            if dry_run {
                out.push_str("(dry run: nothing committed)\n");
            }
            out
        },
        || {
            json!({
                "group": group, "dry_run": dry_run,
                "partitions": rows.iter().map(|(topic, p, prev, offset)| json!({
                    "topic": topic, "partition": p, "previous_offset": prev, "new_offset": offset,
                })).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}

/// The first offset at or after `ms` per partition; partitions with none are left out.
fn offsets_for_time(cluster: &Cluster, consumer: &BaseConsumer<CliContext>, tpl: &TopicPartitionList, ms: i64) -> Result<BTreeMap<(String, i32), i64>> {
    let mut query = TopicPartitionList::new();
    for e in tpl.elements() {
        query.add_partition_offset(e.topic(), e.partition(), Offset::Offset(ms)).map_err(|e| cluster.error("bad time", &e))?;
    }
    let got = consumer.offsets_for_times(query, cluster.timeout).map_err(|e| cluster.error("cannot look offsets up by time", &e))?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

fn delete(cluster: &Cluster, format: Format, names: &[String]) -> Result<()> {
    require_groups(cluster, &names[0])?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = block_on(cluster.admin()?.delete_groups(&refs, &cluster.admin_options())).map_err(|e| group_error(cluster, "cannot delete groups", &e))?;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(name) => deleted.push(name),
            Err((name, RDKafkaErrorCode::GroupIdNotFound)) => errors.push(format!("group {name} does not exist (GROUP_ID_NOT_FOUND)")),
            Err((name, code)) => errors.push(format!("cannot delete group {name}: {}", describe_code(code))),
        }
    }
    emit(format, || deleted.iter().map(|n| format!("Deleted group {n}.\n")).collect(), || json!({"deleted": deleted, "errors": errors}));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(failed(errors.join("; ")))
    }
}
