//! `riptide produce` (lines from stdin) and `riptide consume`.

use crate::client::{key_value, CliContext, ClientArgs, Cluster, Delivery};
use crate::error::{failed, is_unreachable, kafka_code, usage, CliError, Result};
use crate::output::{emit, Format, Table};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub topic: String,
    /// Key of every record
    #[arg(short = 'k', long)]
    pub key: Option<String>,
    /// Split each line at the first SEP into key and value
    #[arg(long, value_name = "SEP", conflicts_with = "key")]
    pub key_separator: Option<String>,
    /// none, gzip, snappy, lz4 or zstd
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    pub compression: String,
    /// Partition of every record [default: the key's (librdkafka's partitioner)]
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    /// Header of every record (repeatable)
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub topic: String,
    /// Consume as a member of this consumer group (offsets committed)
    #[arg(short = 'g', long)]
    pub group: Option<String>,
    /// Start at the beginning (with -g: where the group has no committed offset)
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start offset of every partition: N, -N (N before the end), earliest or latest [default: latest]
    #[arg(long, allow_hyphen_values = true, conflicts_with = "group")]
    pub offset: Option<String>,
    /// Only this partition
    #[arg(short = 'p', long, conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Stop after COUNT records
    #[arg(short = 'n', long = "num", value_name = "COUNT")]
    pub count: Option<u64>,
    /// Stop at the end of every partition
    #[arg(short = 'e', long)]
    pub exit_at_end: bool,
}

// ---- produce ----------------------------------------------------------------------------

pub fn produce(args: ProduceArgs) -> Result<()> {
    let format = args.client.output()?;
    let headers: Vec<(String, String)> = args.headers.iter().map(|h| key_value(h, "-H")).collect::<Result<_>>()?;
    if args.key_separator.as_deref() == Some("") {
        return Err(usage("--key-separator must not be empty"));
    }
    let cluster = Cluster::connect(&args.client)?;
    let ms = cluster.timeout.as_millis().to_string();
    let producer: ThreadedProducer<CliContext> = cluster
        .config()?
        .set("acks", "all")
        .set("compression.type", &args.compression)
        .set("linger.ms", "5")
        .set("message.timeout.ms", &ms)
        .set("allow.auto.create.topics", "true")
        .create_with_context(CliContext::default())
        .map_err(|e| usage(format!("cannot create a producer: {e}")))?;
    let stdin = std::io::stdin().lock();
    let mut count = 0usize;
    for (i, line) in stdin.split(b'\n').enumerate() {
        let mut line = line.map_err(|e| failed(format!("reading stdin: {e}")))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let (key, value) = split_line(&line, args.key.as_deref(), args.key_separator.as_deref())
            .ok_or_else(|| usage(format!("line {}: no key separator {:?}", i + 1, args.key_separator.as_deref().unwrap_or(""))))?;
        let mut hdrs = OwnedHeaders::new();
        for (k, v) in &headers {
            hdrs = hdrs.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        let mut record: BaseRecord<'_, [u8], [u8], Box<usize>> =
            BaseRecord::with_opaque_to(&args.topic, Box::new(i)).payload(value).headers(hdrs);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        match send(&producer, record) {
            Ok(()) => {}
            // librdkafka refuses an unknown partition at once when it already has the topic's
            // metadata, else in the delivery report: one answer either way (no timing race).
            Err((Some(RDKafkaErrorCode::UnknownPartition), why)) => producer.context().deliveries.lock().expect("not poisoned").push((i, Err(why))),
            Err((_, why)) => return Err(failed(format!("line {}: cannot produce to {}: {why}", i + 1, args.topic))),
        }
        count += 1;
    }
    producer.flush(cluster.timeout).map_err(|e| cluster.error("cannot deliver the records", &e))?;
    let deliveries = std::mem::take(&mut *producer.context().deliveries.lock().expect("not poisoned"));
    report_produced(format, &args.topic, count, deliveries, &cluster)
}

/// Key and value of one input line; None when a separator is expected and missing.
fn split_line<'a>(line: &'a [u8], key: Option<&'a str>, sep: Option<&str>) -> Option<(Option<&'a [u8]>, &'a [u8])> {
    match (key, sep) {
        (Some(k), _) => Some((Some(k.as_bytes()), line)),
        (None, Some(sep)) => {
            let sep = sep.as_bytes();
            let at = line.windows(sep.len()).position(|w| w == sep)?;
            Some((Some(&line[..at]), &line[at + sep.len()..]))
        }
        (None, None) => Some((None, line)),
    }
}

/// Queues one record, waiting while librdkafka's queue is full; the error's code and text
/// otherwise.
fn send<'a>(producer: &ThreadedProducer<CliContext>, mut record: BaseRecord<'a, [u8], [u8], Box<usize>>) -> std::result::Result<(), (Option<RDKafkaErrorCode>, String)> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => {
                let code = kafka_code(&e);
                return Err((code, code.map_or_else(|| e.to_string(), crate::error::describe_code)));
            }
        }
    }
}

fn report_produced(
    format: Format,
    topic: &str,
    count: usize,
    deliveries: Vec<Delivery>,
    cluster: &Cluster,
) -> Result<()> {
    let mut by_partition: BTreeMap<i32, (usize, i64, i64)> = BTreeMap::new();
    let mut errors: Vec<(usize, String)> = Vec::new();
    for (i, d) in &deliveries {
        match d {
            Ok((p, o)) => {
                let e = by_partition.entry(*p).or_insert((0, i64::MAX, i64::MIN));
                e.0 += 1;
                e.1 = e.1.min(*o);
                e.2 = e.2.max(*o);
            }
            Err(e) => errors.push((*i, e.clone())),
        }
    }
    let undelivered = count - deliveries.len();
    if !errors.is_empty() || undelivered > 0 {
        errors.sort();
        let first = errors.first().map_or_else(|| "no delivery report in time".to_string(), |(i, e)| format!("line {}: {e}", i + 1));
        let msg = format!("{} of {count} records to {topic} not delivered; first: {first}", errors.len() + undelivered);
        let local_timeout = errors.iter().all(|(_, e)| e.contains("MESSAGE_TIMED_OUT") || e.contains("TIMED_OUT"));
        if by_partition.is_empty() && local_timeout {
            if let Some(why) = cluster.consumer.context().last_error() {
                return Err(CliError::Unreachable(format!("{msg} ({why})")));
            }
        }
        return Err(failed(msg));
    }
    emit(
        format,
        || {
            let mut t = Table::new(&["PARTITION", "RECORDS", "FIRST-OFFSET", "LAST-OFFSET"]);
            for (p, (n, first, last)) in &by_partition {
                t.row(vec![p.to_string(), n.to_string(), first.to_string(), last.to_string()]);
            }
            let plural = if count == 1 { "" } else { "s" };
            let mut out = format!("Produced {count} record{plural} to topic {topic}.\n");
            if count > 0 {
                out.push('\n');
                out.push_str(&t.render());
            }
            out
        },
        || {
            json!({
                "topic": topic,
                "records": count,
                "partitions": by_partition.iter().map(|(p, (n, first, last))| json!({
                    "partition": p, "records": n, "first_offset": first, "last_offset": last,
                })).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}

// ---- consume ----------------------------------------------------------------------------

/// How each record is printed.
#[derive(Debug, Clone, PartialEq)]
enum RecordFormat {
    Json,
    Pattern(String),
}

fn record_format(s: &str) -> RecordFormat {
    match s {
        "json" => RecordFormat::Json,
        "text" | "table" => RecordFormat::Pattern("%v".into()),
        pattern => RecordFormat::Pattern(pattern.to_string()),
    }
}

fn start_offset(s: Option<&str>, from_beginning: bool) -> Result<Offset> {
    if from_beginning {
        return Ok(Offset::Beginning);
    }
    match s {
        None | Some("latest") => Ok(Offset::End),
        Some("earliest") | Some("beginning") => Ok(Offset::Beginning),
        Some(n) => match n.parse::<i64>() {
            Ok(v) if v >= 0 => Ok(Offset::Offset(v)),
            Ok(v) => Ok(Offset::OffsetTail(-v)),
            Err(_) => Err(usage(format!("--offset takes N, -N, earliest or latest, not {n:?}"))),
        },
    }
}

pub fn consume(args: ConsumeArgs) -> Result<()> {
    let format = record_format(&args.client.format);
    let start = start_offset(args.offset.as_deref(), args.from_beginning)?;
    let cluster = Cluster::connect(&args.client)?;
    let mut partitions = cluster.partitions(&args.topic)?;
    if let Some(p) = args.partition {
        if !partitions.contains(&p) {
            return Err(failed(format!("topic {} has no partition {p} (UNKNOWN_TOPIC_OR_PARTITION)", args.topic)));
        }
        partitions = vec![p];
    }
    if let Some(g) = &args.group {
        crate::group::require_groups(&cluster, g)?;
    }
    let mut config = cluster.config()?;
    config.set("enable.partition.eof", if args.exit_at_end { "true" } else { "false" });
    match &args.group {
        Some(g) => {
            config
                .set("group.id", g)
                .set("enable.auto.commit", "true")
                .set("auto.offset.reset", if args.from_beginning { "earliest" } else { "latest" });
        }
        None => {
            // librdkafka wants a group id even for assign(); no offsets are committed to it.
            config.set("group.id", "riptide-cli-unused").set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");
        }
    }
    let consumer: BaseConsumer<CliContext> =
        config.create_with_context(CliContext::default()).map_err(|e| usage(format!("cannot create a consumer: {e}")))?;
    match &args.group {
        Some(_) => consumer.subscribe(&[&args.topic]).map_err(|e| cluster.error("cannot subscribe", &e))?,
        None => {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition_offset(&args.topic, *p, start).map_err(|e| cluster.error("bad start offset", &e))?;
            }
            consumer.assign(&tpl).map_err(|e| cluster.error("cannot assign partitions", &e))?;
        }
    }
    let outcome = consume_loop(&consumer, &args, &format, partitions.len());
    if args.group.is_some() {
        // Commit what was printed before leaving the group (auto-commit runs every 5 s).
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => eprintln!("riptide: warning: final commit failed: {e}"),
        }
    }
    outcome.map_err(|e| match e {
        LoopError::Kafka(e) => cluster.error(&format!("consuming {}", args.topic), &e),
        LoopError::Cli(e) => e,
    })
}

enum LoopError {
    Kafka(KafkaError),
    Cli(CliError),
}

fn consume_loop(consumer: &BaseConsumer<CliContext>, args: &ConsumeArgs, format: &RecordFormat, partitions: usize) -> std::result::Result<(), LoopError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| LoopError::Cli(failed(format!("signal handler: {e}"))))?;
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let mut at_end: HashSet<i32> = HashSet::new();
    while !stop.load(Ordering::Relaxed) && args.count.is_none_or(|n| printed < n) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if out.flush().is_err() {
                    return Ok(()); // stdout closed (e.g. `| head`)
                }
            }
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                if write_record(&mut out, format, &m).is_err() {
                    return Ok(());
                }
                printed += 1;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                if args.exit_at_end && at_end.len() >= partitions {
                    break;
                }
            }
            Some(Err(e)) => match kafka_code(&e) {
                Some(code) if fatal(code) => return Err(LoopError::Kafka(e)),
                Some(code) if is_unreachable(code) => {
                    let why = consumer.context().last_error().unwrap_or_else(|| e.to_string());
                    eprintln!("riptide: warning: {why} (retrying)");
                }
                _ => eprintln!("riptide: warning: {e}"),
            },
        }
    }
    let _ = out.flush();
    Ok(())
}

fn fatal(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::UnknownTopicOrPartition | C::UnknownTopic | C::TopicAuthorizationFailed | C::GroupAuthorizationFailed | C::InvalidGroupId | C::OffsetOutOfRange
    )
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(|| "null".to_string(), |b| String::from_utf8_lossy(b).into_owned())
}

fn write_record(out: &mut impl Write, format: &RecordFormat, m: &BorrowedMessage<'_>) -> std::io::Result<()> {
    let headers: Vec<(String, String)> = m
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_string(), text(h.value))).collect())
        .unwrap_or_default();
    let ts = m.timestamp().to_millis().unwrap_or(-1);
    match format {
        RecordFormat::Json => {
            let v = json!({
                "topic": m.topic(), "partition": m.partition(), "offset": m.offset(), "timestamp": ts,
                "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                "value": m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
                "headers": headers.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            });
            writeln!(out, "{v}")
        }
        RecordFormat::Pattern(p) => {
            let fields = Fields { topic: m.topic(), partition: m.partition(), offset: m.offset(), timestamp: ts, key: m.key(), value: m.payload(), headers: &headers };
            writeln!(out, "{}", render(p, &fields))
        }
    }
}

struct Fields<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [(String, String)],
}

/// `%k` key, `%v` value, `%p` partition, `%o` offset, `%t` topic, `%T` timestamp (ms), `%h`
/// headers (k=v,...), `%%` a percent sign; `\n` and `\t` escapes. Null keys and values print
/// as `null`, like Kafka's console consumer.
fn render(pattern: &str, f: &Fields<'_>) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('k') => out.push_str(&text(f.key)),
                Some('v') => out.push_str(&text(f.value)),
                Some('p') => out.push_str(&f.partition.to_string()),
                Some('o') => out.push_str(&f.offset.to_string()),
                Some('t') => out.push_str(f.topic),
                Some('T') => out.push_str(&f.timestamp.to_string()),
                Some('h') => out.push_str(&f.headers.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_renders_every_field() {
        let headers = vec![("h".to_string(), "1".to_string())];
        let f = Fields { topic: "t", partition: 2, offset: 7, timestamp: 99, key: None, value: Some(b"v"), headers: &headers };
        assert_eq!(render("%k %v %p %o %t %T %h %% %x\\t!", &f), "null v 2 7 t 99 h=1 % %x\t!");
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(split_line(b"a:b:c", None, Some(":")), Some((Some(&b"a"[..]), &b"b:c"[..])));
        assert_eq!(split_line(b"abc", None, Some(":")), None);
        assert_eq!(split_line(b"abc", Some("k"), None), Some((Some(&b"k"[..]), &b"abc"[..])));
        assert_eq!(split_line(b"abc", None, None), Some((None, &b"abc"[..])));
    }

    #[test]
    fn start_offsets() {
        assert_eq!(start_offset(None, false).unwrap(), Offset::End);
        assert_eq!(start_offset(Some("5"), false).unwrap(), Offset::Offset(5));
        assert_eq!(start_offset(Some("-5"), false).unwrap(), Offset::OffsetTail(5));
        assert_eq!(start_offset(None, true).unwrap(), Offset::Beginning);
        assert!(start_offset(Some("x"), false).is_err());
    }
}
