//! Connecting to a Kafka-compatible cluster through librdkafka (rust-rdkafka): the options every
//! client command shares, a quiet client context that keeps the last connection error for the
//! message, and the metadata, offsets and admin calls the commands build on.

use crate::error::{describe_code, failed, is_unreachable, kafka_code, usage, CliError, Result};
use crate::output::Format;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::metadata::Metadata;
use rdkafka::producer::ProducerContext;
use rdkafka::Message;
use std::sync::Mutex;
use std::time::Duration;

pub const BROKERS_DEFAULT: &str = "127.0.0.1:9092";

/// Options of every command that talks to a cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Bootstrap brokers
    #[arg(long, env = "RIPTIDE_BROKERS", default_value = BROKERS_DEFAULT, value_name = "HOST:PORT,...", global = true)]
    pub brokers: String,
    /// Output: text (tables) or json; consume also takes a pattern such as '%k %v %p %o'
    #[arg(long, default_value = "text", global = true)]
    pub format: String,
    /// Seconds to wait for the cluster before giving up
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS", global = true)]
    pub timeout: f64,
    /// Extra librdkafka client property (repeatable), e.g. -X security.protocol=ssl
    #[arg(short = 'X', value_name = "KEY=VALUE", global = true)]
    pub client_config: Vec<String>,
}

impl ClientArgs {
    pub fn output(&self) -> Result<Format> {
        Format::parse(&self.format)
    }

    pub fn timeout(&self) -> Result<Duration> {
        if !(self.timeout > 0.0 && self.timeout <= 3600.0) {
            return Err(usage(format!("--timeout must be between 0 and 3600 seconds, not {}", self.timeout)));
        }
        Ok(Duration::from_secs_f64(self.timeout))
    }
}

/// A produced record's line index, and its partition and offset or the error.
pub type Delivery = (usize, std::result::Result<(i32, i64), String>);

/// Keeps librdkafka's log lines off the terminal (they go to `RUST_LOG=debug`) and remembers
/// the last error, which says why brokers could not be reached. Also collects produce results.
#[derive(Default)]
pub struct CliContext {
    last_error: Mutex<Option<String>>,
    /// From delivery reports.
    pub deliveries: Mutex<Vec<Delivery>>,
}

impl CliContext {
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("not poisoned").clone()
    }
}

impl ClientContext for CliContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(target: "librdkafka", "{fac}: {log_message}");
        use RDKafkaLogLevel as L;
        if matches!(level, L::Emerg | L::Alert | L::Critical | L::Error | L::Warning) {
            // "[thrd:HOST:PORT/bootstrap]: HOST:PORT/bootstrap: Connect to ... failed: ..."
            let text = match log_message.strip_prefix("[thrd:").and_then(|m| m.split_once("]: ")) {
                Some((_, rest)) => rest,
                None => log_message,
            };
            *self.last_error.lock().expect("not poisoned") = Some(text.to_string());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "error {error}: {reason}");
        *self.last_error.lock().expect("not poisoned") = Some(reason.to_string());
    }
}

impl ConsumerContext for CliContext {}

impl ProducerContext for CliContext {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<usize>) {
        let outcome = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(match kafka_code(e) {
                Some(code) => describe_code(code),
                None => e.to_string(),
            }),
        };
        self.deliveries.lock().expect("not poisoned").push((*index, outcome));
    }
}

/// A connection to the cluster: a consumer handle (no group) for metadata and offsets, and
/// an admin client made on first use.
pub struct Cluster {
    pub args: ClientArgs,
    pub timeout: Duration,
    pub consumer: BaseConsumer<CliContext>,
    admin: std::cell::OnceCell<AdminClient<CliContext>>,
}

impl Cluster {
    /// Connects and fetches the cluster's metadata once, so an unreachable cluster is reported
    /// (exit 3) within `--timeout` whatever the command.
    pub fn connect(args: &ClientArgs) -> Result<Cluster> {
        let timeout = args.timeout()?;
        let consumer: BaseConsumer<CliContext> = client_config(args, timeout)?
            .create_with_context(CliContext::default())
            .map_err(|e| usage(format!("cannot create a client: {e}")))?;
        let cluster = Cluster { args: args.clone(), timeout, consumer, admin: Default::default() };
        cluster.metadata(None)?;
        Ok(cluster)
    }

    /// A fresh client configuration with the shared options, for producers and group consumers.
    pub fn config(&self) -> Result<ClientConfig> {
        client_config(&self.args, self.timeout)
    }

    pub fn metadata(&self, topic: Option<&str>) -> Result<Metadata> {
        self.consumer.fetch_metadata(topic, self.timeout).map_err(|e| self.error("cannot fetch metadata", &e))
    }

    /// The partition ids of `topic`, sorted; a clear error if the topic does not exist.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let md = self.metadata(Some(topic))?;
        let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| no_topic(topic))?;
        if let Some(err) = t.error() {
            let code = RDKafkaErrorCode::from(err);
            if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                return Err(no_topic(topic));
            }
            return Err(failed(format!("topic {topic}: {}", describe_code(code))));
        }
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        if ids.is_empty() {
            return Err(no_topic(topic));
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// (log start, log end) of one partition (ListOffsets earliest and latest).
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64)> {
        self.consumer
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(|e| self.error(&format!("cannot read the offsets of {topic}/{partition}"), &e))
    }

    pub fn admin(&self) -> Result<&AdminClient<CliContext>> {
        if let Some(a) = self.admin.get() {
            return Ok(a);
        }
        let a = self.config()?.create_with_context(CliContext::default()).map_err(|e| usage(format!("cannot create an admin client: {e}")))?;
        Ok(self.admin.get_or_init(|| a))
    }

    pub fn admin_options(&self) -> AdminOptions {
        AdminOptions::new().request_timeout(Some(self.timeout)).operation_timeout(Some(self.timeout))
    }

    /// Turns a client error into the CLI's: unreachable brokers (exit 3) or a failure (exit 1).
    pub fn error(&self, what: &str, e: &KafkaError) -> CliError {
        match kafka_code(e) {
            Some(code) if is_unreachable(code) => self.unreachable(code),
            Some(code) => failed(format!("{what}: {}", describe_code(code))),
            None => failed(format!("{what}: {e}")),
        }
    }

    pub fn unreachable(&self, code: RDKafkaErrorCode) -> CliError {
        // Serves queued log lines and errors (the callbacks run on poll), which say why.
        for _ in 0..16 {
            if self.consumer.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        let why = self.consumer.context().last_error().unwrap_or_else(|| describe_code(code));
        CliError::Unreachable(format!(
            "no answer from the brokers {} within {} s: {why}",
            self.args.brokers,
            self.timeout.as_secs_f64()
        ))
    }
}

pub fn no_topic(topic: &str) -> CliError {
    failed(format!("topic {topic} does not exist (UNKNOWN_TOPIC_OR_PARTITION)"))
}

fn client_config(args: &ClientArgs, timeout: Duration) -> Result<ClientConfig> {
    let ms = timeout.as_millis().clamp(10, i32::MAX as u128).to_string();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        .set("client.id", "riptide-cli")
        .set("socket.timeout.ms", &ms)
        .set("socket.connection.setup.timeout.ms", &ms)
        .set("allow.auto.create.topics", "false")
        .set_log_level(RDKafkaLogLevel::Warning);
    for kv in &args.client_config {
        let (k, v) = kv.split_once('=').ok_or_else(|| usage(format!("-X takes KEY=VALUE, not {kv:?}")))?;
        config.set(k, v);
    }
    Ok(config)
}

/// `key=value` arguments (`-c`, `-X`, `-H`).
pub fn key_value(kv: &str, flag: &str) -> Result<(String, String)> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(usage(format!("{flag} takes KEY=VALUE, not {kv:?}"))),
    }
}
