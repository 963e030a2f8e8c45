//! Runs a workload against a bootstrap list with librdkafka and measures it.
//!
//! Each step (one target rate) has a warm-up and a measured window. Producers are threads, each
//! with its own `BaseProducer`; the delivery callback reads the send timestamp back from the
//! payload header, so ack latency needs no per-message allocation. Consumers are threads with
//! their own `BaseConsumer`, assigned partitions directly (no group coordinator needed) unless a
//! group is configured. The calling thread samples counters every interval, drives the progress
//! line and enforces the bounds: the duration, the optional message count and a hard timeout.

use crate::constants::{
    CONSUMER_POLL_MS, DRAIN_MS_MAX, HARD_TIMEOUT_SLACK_MS, PRODUCER_QUEUE_FULL_WAIT_MS,
    SAMPLE_INTERVAL_MS, TOPIC_READY_MS_MAX,
};
use crate::error::{Error, Result};
use crate::metrics::{interval_sample, lag_messages, Counters, LatencyHistogram, Throughput};
use crate::payload::{self, now_ns};
use crate::report::{Report, StepReport, REPORT_FORMAT_VERSION};
use crate::workload::{KeyDistribution, SizeSampler, StartPosition, TargetRate, Workload};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes of random filler shared by one producer; messages are slices at random offsets so
/// batches do not compress artificially well.
const FILLER_POOL_BYTES: usize = 16 * 1024 * 1024;
/// Distinct error messages kept per step.
const ERROR_SAMPLES_MAX: usize = 5;
/// Producer's local queue bound (librdkafka `queue.buffering.max.kbytes`): 32 MiB, the Java
/// client's `buffer.memory` default. At max rate, ack latency includes the wait in this queue.
const PRODUCER_QUEUE_KBYTES: u64 = 32 * 1024;
/// Producer's local queue bound in messages (`queue.buffering.max.messages`).
const PRODUCER_QUEUE_MESSAGES: u64 = 1_000_000;
/// How often the coordinator checks stop conditions between samples.
const COORDINATOR_TICK_MS: u64 = 50;

/// How to run a workload.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `host:port[,host:port...]`.
    pub bootstrap: String,
    /// What is measured, for the report (e.g. "riptide --shards 2").
    pub target_label: String,
    /// Brokers behind the bootstrap list, for per-broker figures.
    pub brokers: u32,
    /// Show the live progress line (only drawn when stderr is a terminal).
    pub progress: bool,
    /// librdkafka properties applied to every client (admin, producers, consumers).
    pub client_extra: BTreeMap<String, String>,
    /// Called at both edges of every measured window (e.g. to read a broker's CPU time).
    pub window_hook: Option<WindowHook>,
}

/// An edge of a measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEdge {
    Start { step: usize },
    End { step: usize },
}

/// A callback run on the coordinator thread at each [`WindowEdge`].
#[derive(Clone)]
pub struct WindowHook(pub Arc<dyn Fn(WindowEdge) + Send + Sync>);

impl std::fmt::Debug for WindowHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WindowHook")
    }
}

impl RunOptions {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        RunOptions {
            bootstrap: bootstrap.into(),
            target_label: String::new(),
            brokers: 1,
            progress: true,
            client_extra: BTreeMap::new(),
            window_hook: None,
        }
    }
}

/// Runs every step of `workload` and returns the report.
pub fn run_workload(workload: &Workload, opts: &RunOptions) -> Result<Report> {
    workload.validate()?;
    let started_unix_s = now_ns() / 1_000_000_000;
    let suffix = format!("{:x}{:x}", started_unix_s & 0xffff_ffff, std::process::id());
    let topics = workload.topic_names(&suffix);
    if workload.topics.create {
        // A broker without CreateTopics may still auto-create on Metadata: warn and go on;
        // wait_for_topics fails clearly if the topics never show up as asked.
        if let Err(e) = create_topics(workload, opts, &topics) {
            eprintln!("riptide-loadgen: topic creation failed ({e}); relying on auto-creation");
        }
    }
    wait_for_topics(workload, opts, &topics)?;
    let offsets = Arc::new(PartitionOffsets::new(&topics, workload.topics.partitions));
    let mut steps = Vec::new();
    for (i, rate) in workload.target_rates()?.into_iter().enumerate() {
        let step = run_step(workload, opts, &topics, rate, i, &offsets)?;
        steps.push(step);
    }
    Ok(Report {
        format_version: REPORT_FORMAT_VERSION,
        tool: format!("riptide-loadgen {}", env!("CARGO_PKG_VERSION")),
        target: opts.target_label.clone(),
        bootstrap: opts.bootstrap.clone(),
        brokers: opts.brokers,
        started_unix_s,
        topics,
        workload: workload.clone(),
        steps,
    })
}

fn base_config(opts: &RunOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &opts.bootstrap);
    c.set("client.id", "riptide-loadgen");
    for (k, v) in &opts.client_extra {
        c.set(k, v);
    }
    c
}

fn create_topics(workload: &Workload, opts: &RunOptions, topics: &[String]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(opts).create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let replication = TopicReplication::Fixed(i32::from(workload.topics.replication_factor));
            NewTopic::new(t, workload.topics.partitions as i32, replication)
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_millis(TOPIC_READY_MS_MAX)))
        .request_timeout(Some(Duration::from_millis(TOPIC_READY_MS_MAX)));
    let results = futures::executor::block_on(admin.create_topics(&new_topics, &options))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::TopicCreate {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

fn wait_for_topics(workload: &Workload, opts: &RunOptions, topics: &[String]) -> Result<()> {
    let client: BaseConsumer = base_config(opts).create()?;
    let started = Instant::now();
    let deadline = started + Duration::from_millis(TOPIC_READY_MS_MAX);
    for topic in topics {
        loop {
            let ready = client
                .fetch_metadata(Some(topic), Duration::from_millis(2_000))
                .map(|m| {
                    m.topics().iter().any(|t| {
                        t.name() == topic
                            && t.error().is_none()
                            && t.partitions().len() == workload.topics.partitions as usize
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
                .unwrap_or(false);
            if ready {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::TopicNotReady {
                    topic: topic.clone(),
                    partitions: workload.topics.partitions,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// The next offset to read per (topic, partition), from the producers' delivery reports. Later
/// steps start their consumers there, so they do not re-read earlier steps' messages (and need no
/// ListOffsets).
#[derive(Debug)]
struct PartitionOffsets {
    topic_index: HashMap<String, usize>,
    partitions: usize,
    next: Vec<AtomicI64>,
}

impl PartitionOffsets {
    fn new(topics: &[String], partitions: u32) -> Self {
        let partitions = partitions as usize;
        PartitionOffsets {
            topic_index: topics.iter().enumerate().map(|(i, t)| (t.clone(), i)).collect(),
            partitions,
            next: (0..topics.len() * partitions).map(|_| AtomicI64::new(-1)).collect(),
        }
    }

    fn slot(&self, topic: &str, partition: i32) -> Option<&AtomicI64> {
        let t = *self.topic_index.get(topic)?;
        let p = usize::try_from(partition).ok().filter(|p| *p < self.partitions)?;
        self.next.get(t * self.partitions + p)
    }

    fn acked(&self, topic: &str, partition: i32, offset: i64) {
        if let Some(slot) = self.slot(topic, partition) {
            slot.fetch_max(offset + 1, Ordering::Relaxed);
        }
    }

    /// Where a consumer of a later step starts; `None` before any ack.
    fn start(&self, topic: &str, partition: i32) -> Option<i64> {
        self.slot(topic, partition)
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|o| *o >= 0)
    }
}

/// Two histograms behind one lock: the step's total and the current interval's.
#[derive(Debug, Default)]
struct Histograms {
    total: LatencyHistogram,
    interval: LatencyHistogram,
}

impl Histograms {
    fn record(&mut self, send_ns: u64, now: u64) {
        self.total.record_since_ns(send_ns, now);
        self.interval.record_since_ns(send_ns, now);
    }
}

/// State shared by a step's workers and its coordinator.
#[derive(Debug)]
struct Shared {
    counters: Counters,
    /// Messages sent at or after this instant (ns, wall clock) are measured; `u64::MAX` in warm-up.
    measure_start_ns: AtomicU64,
    /// Messages sent at or after this instant are not measured.
    measure_end_ns: AtomicU64,
    stop_producers: AtomicBool,
    stop_consumers: AtomicBool,
    errors: Mutex<Vec<String>>,
    offsets: Arc<PartitionOffsets>,
}

impl Shared {
    fn in_window(&self, send_ns: u64) -> bool {
        send_ns >= self.measure_start_ns.load(Ordering::Relaxed)
            && send_ns < self.measure_end_ns.load(Ordering::Relaxed)
    }

    fn note_error(&self, message: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < ERROR_SAMPLES_MAX && !errors.contains(&message) {
            errors.push(message);
        }
    }
}

struct ProducerCtx {
    shared: Arc<Shared>,
    histograms: Arc<Mutex<Histograms>>,
}

impl ClientContext for ProducerCtx {}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let now = now_ns();
        let c = &self.shared.counters;
        match result {
            Ok(msg) => {
                c.acked_total.fetch_add(1, Ordering::Relaxed);
                self.shared.offsets.acked(msg.topic(), msg.partition(), msg.offset());
                let payload = msg.payload().unwrap_or_default();
                if let Some((send_ns, _)) = payload::read_header(payload) {
                    if self.shared.in_window(send_ns) {
                        let bytes = payload.len() + msg.key().map_or(0, <[u8]>::len);
                        c.produced_msgs.fetch_add(1, Ordering::Relaxed);
                        c.produced_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                        self.histograms
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .record(send_ns, now);
                    }
                }
            }
            Err((e, msg)) => {
                let in_window = msg
                    .payload()
                    .and_then(payload::read_header)
                    .is_some_and(|(send_ns, _)| self.shared.in_window(send_ns));
                if in_window {
                    c.produce_errors.fetch_add(1, Ordering::Relaxed);
                }
                self.shared.note_error(format!("produce: {e}"));
            }
        }
    }
}

/// Everything one producer thread needs.
struct ProducerJob {
    config: ClientConfig,
    topics: Vec<String>,
    partitions: u32,
    sizes: SizeSampler,
    workload: Workload,
    /// Messages per second for this producer, `None` for max.
    rate: Option<f64>,
    message_count: u64,
    index: u32,
}

fn producer_config(workload: &Workload, opts: &RunOptions, step_timeout: Duration) -> ClientConfig {
    let p = &workload.producer;
    let mut c = base_config(opts);
    c.set("acks", &p.acks)
        .set("compression.type", &p.compression)
        .set(
            "batch.size",
            p.batch_size.bytes().unwrap_or(1_000_000).to_string(),
        )
        .set("linger.ms", p.linger_ms.to_string())
        .set("enable.idempotence", p.idempotence.to_string())
        .set("message.timeout.ms", step_timeout.as_millis().to_string())
        .set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KBYTES.to_string())
        .set("queue.buffering.max.messages", PRODUCER_QUEUE_MESSAGES.to_string())
        .set("message.max.bytes", "67108864");
    for (k, v) in &p.extra {
        c.set(k, v);
    }
    c
}

fn run_producer(job: ProducerJob, shared: Arc<Shared>, histograms: Arc<Mutex<Histograms>>) -> Result<()> {
    let ctx = ProducerCtx {
        shared: shared.clone(),
        histograms,
    };
    // ThreadedProducer: a background thread serves delivery reports as they arrive, so ack
    // latency is not inflated by how often the sending loop polls (a zero-timeout poll of
    // BaseProducer handles a single event, one partition's batch).
    let producer: ThreadedProducer<ProducerCtx> = job.config.create_with_context(ctx)?;
    let mut rng = SmallRng::seed_from_u64(u64::from(job.index).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ now_ns());
    let pool_len = FILLER_POOL_BYTES.max(job.sizes.max() as usize * 2);
    let mut pool = payload::filler(job.workload.message.payload, pool_len, &mut rng);
    let key_kind = job.workload.message.key;
    let cardinality = job.workload.message.key_cardinality.max(1);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut sequence: u64 = u64::from(job.index) << 40;
    while !shared.stop_producers.load(Ordering::Relaxed) {
        if let Some(rate) = job.rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if now < due {
                thread::sleep((due - now).min(Duration::from_millis(1)));
                continue;
            }
        }
        if job.message_count > 0
            && shared.counters.produced_msgs.load(Ordering::Relaxed) >= job.message_count
        {
            break;
        }
        let size = job.sizes.sample(&mut rng) as usize;
        let offset = rng.gen_range(0..=pool.len() - size);
        let buf = &mut pool[offset..offset + size];
        sequence += 1;
        payload::write_header(buf, now_ns(), sequence);
        let key_bytes = rng.gen_range(0..cardinality).to_be_bytes();
        let topic = &job.topics[(sent % job.topics.len() as u64) as usize];
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(&*buf);
        match key_kind {
            KeyDistribution::None => {}
            KeyDistribution::Random => record = record.key(&key_bytes[..]),
            KeyDistribution::RoundRobin => {
                record = record.partition((sent % u64::from(job.partitions)) as i32)
            }
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    thread::sleep(Duration::from_millis(PRODUCER_QUEUE_FULL_WAIT_MS));
                    if shared.stop_producers.load(Ordering::Relaxed) {
                        break;
                    }
                    record = r;
                }
                Err((e, _)) => {
                    shared.counters.produce_errors.fetch_add(1, Ordering::Relaxed);
                    shared.note_error(format!("send: {e}"));
                    thread::sleep(Duration::from_millis(PRODUCER_QUEUE_FULL_WAIT_MS));
                    break;
                }
            }
        }
        sent += 1;
    }
    if let Err(e) = producer.flush(Duration::from_millis(DRAIN_MS_MAX)) {
        shared.note_error(format!("flush: {e}"));
    }
    Ok(())
}

/// Everything one consumer thread needs.
struct ConsumerJob {
    config: ClientConfig,
    /// (topic, partition, start) to assign; empty with a group (subscribe instead).
    assignment: Vec<(String, i32, Offset)>,
    subscribe: Vec<String>,
}

fn run_consumer(job: ConsumerJob, shared: Arc<Shared>, histograms: Arc<Mutex<Histograms>>) -> Result<()> {
    let consumer: BaseConsumer<DefaultConsumerContext> = job.config.create()?;
    if job.subscribe.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in &job.assignment {
            tpl.add_partition_offset(topic, *partition, *offset)?;
        }
        consumer.assign(&tpl)?;
    } else {
        let topics: Vec<&str> = job.subscribe.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
    }
    let c = &shared.counters;
    while !shared.stop_consumers.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(CONSUMER_POLL_MS)) {
            None => {}
            Some(Ok(msg)) => {
                let now = now_ns();
                c.consumed_total.fetch_add(1, Ordering::Relaxed);
                let payload = msg.payload().unwrap_or_default();
                if let Some((send_ns, _)) = payload::read_header(payload) {
                    if shared.in_window(send_ns) {
                        let bytes = payload.len() + msg.key().map_or(0, <[u8]>::len);
                        c.consumed_msgs.fetch_add(1, Ordering::Relaxed);
                        c.consumed_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                        histograms
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .record(send_ns, now);
                    }
                }
            }
            Some(Err(e)) => {
                c.consume_errors.fetch_add(1, Ordering::Relaxed);
                shared.note_error(format!("consume: {e}"));
            }
        }
    }
    Ok(())
}

fn consumer_jobs(
    workload: &Workload,
    opts: &RunOptions,
    topics: &[String],
    step: usize,
    offsets: &PartitionOffsets,
) -> Vec<ConsumerJob> {
    let cs = &workload.consumer;
    if cs.count == 0 {
        return Vec::new();
    }
    let start = |t: &str, p: i32| match (offsets.start(t, p), cs.start) {
        (Some(o), _) => Offset::Offset(o),
        (None, StartPosition::Beginning) => Offset::Beginning,
        (None, StartPosition::End) => Offset::End,
    };
    let pairs: Vec<(String, i32, Offset)> = topics
        .iter()
        .flat_map(|t| (0..workload.topics.partitions as i32).map(move |p| (t.clone(), p)))
        .map(|(t, p)| {
            let o = start(&t, p);
            (t, p, o)
        })
        .collect();
    let mut jobs = Vec::new();
    for subscription in 0..cs.subscriptions {
        for i in 0..cs.count {
            let mut config = base_config(opts);
            config
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "false")
                .set("auto.offset.reset", match cs.start {
                    // A group of a later step must not re-read earlier steps' messages.
                    StartPosition::Beginning if step == 0 => "earliest",
                    _ => "latest",
                });
            let (assignment, subscribe) = if cs.group.is_empty() {
                // librdkafka's assign() needs a group.id even though no group is joined
                // (no JoinGroup/SyncGroup; offsets are never committed).
                config.set(
                    "group.id",
                    format!("riptide-loadgen-assign-{}-{step}-{subscription}", std::process::id()),
                );
                let mine = pairs
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k as u32 % cs.count == i)
                    .map(|(_, p)| p.clone())
                    .collect();
                (mine, Vec::new())
            } else {
                config.set("group.id", format!("{}-{step}-{subscription}", cs.group));
                (Vec::new(), topics.to_vec())
            };
            for (k, v) in &cs.extra {
                config.set(k, v);
            }
            jobs.push(ConsumerJob {
                config,
                assignment,
                subscribe,
            });
        }
    }
    jobs
}

/// Worker handles: each worker reports on `done` when it returns.
struct Workers {
    done_rx: mpsc::Receiver<(String, Result<()>)>,
    done_tx: mpsc::Sender<(String, Result<()>)>,
    outstanding: usize,
}

impl Workers {
    fn new() -> Self {
        let (done_tx, done_rx) = mpsc::channel();
        Workers {
            done_rx,
            done_tx,
            outstanding: 0,
        }
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
        let tx = self.done_tx.clone();
        let thread_name = name.clone();
        thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                    .unwrap_or_else(|_| Err(Error::WorkerPanicked(name.clone())));
                let _ = tx.send((name, result));
            })
            .map_err(|e| Error::io("spawn worker", e))?;
        self.outstanding += 1;
        Ok(())
    }

    /// Waits for `count` workers until `deadline`; the first worker error wins.
    fn wait(&mut self, count: usize, deadline: Instant, hard_timeout_s: u64) -> Result<()> {
        let mut first_error = None;
        for _ in 0..count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done_rx.recv_timeout(left) {
                Ok((_, result)) => {
                    self.outstanding -= 1;
                    if let Err(e) = result {
                        first_error.get_or_insert(e);
                    }
                }
                Err(_) => return Err(Error::HardTimeout(hard_timeout_s)),
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn progress_bar(enabled: bool) -> Option<indicatif::ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
        bar.set_style(style);
    }
    Some(bar)
}

fn run_step(
    workload: &Workload,
    opts: &RunOptions,
    topics: &[String],
    rate: TargetRate,
    step: usize,
    offsets: &Arc<PartitionOffsets>,
) -> Result<StepReport> {
    let warmup = workload.warmup()?;
    let duration = workload.duration()?;
    let drain = Duration::from_millis(DRAIN_MS_MAX);
    let hard_timeout = warmup + duration + drain * 2 + Duration::from_millis(HARD_TIMEOUT_SLACK_MS);
    let started = Instant::now();
    let hard_deadline = started + hard_timeout;
    let shared = Arc::new(Shared {
        counters: Counters::default(),
        measure_start_ns: AtomicU64::new(u64::MAX),
        measure_end_ns: AtomicU64::new(u64::MAX),
        stop_producers: AtomicBool::new(false),
        stop_consumers: AtomicBool::new(false),
        errors: Mutex::new(Vec::new()),
        offsets: offsets.clone(),
    });
    let mut workers = Workers::new();
    // Consumers first, so they are assigned before the first message arrives.
    let consumer_jobs = consumer_jobs(workload, opts, topics, step, offsets);
    let consumers_enabled = !consumer_jobs.is_empty();
    let mut e2e_hists = Vec::new();
    for (i, job) in consumer_jobs.into_iter().enumerate() {
        let h = Arc::new(Mutex::new(Histograms::default()));
        e2e_hists.push(h.clone());
        let s = shared.clone();
        workers.spawn(format!("consumer-{i}"), move || run_consumer(job, s, h))?;
    }
    let consumer_count = workers.outstanding;
    let producers = workload.producer.count;
    let per_producer_rate = match rate {
        TargetRate::Max => None,
        TargetRate::MessagesPerSecond(r) => Some(r / f64::from(producers)),
    };
    let producer_config = producer_config(workload, opts, hard_timeout);
    let mut ack_hists = Vec::new();
    for i in 0..producers {
        let h = Arc::new(Mutex::new(Histograms::default()));
        ack_hists.push(h.clone());
        let job = ProducerJob {
            config: producer_config.clone(),
            topics: topics.to_vec(),
            partitions: workload.topics.partitions,
            sizes: workload.size_sampler()?,
            workload: workload.clone(),
            rate: per_producer_rate,
            message_count: workload.run.message_count,
            index: i,
        };
        let s = shared.clone();
        workers.spawn(format!("producer-{i}"), move || run_producer(job, s, h))?;
    }

    let bar = progress_bar(opts.progress);
    let warmup_end = started + warmup;
    let measure_end = warmup_end + duration;
    let mut measuring = false;
    let mut measure_start = warmup_end;
    let mut previous = shared.counters.snapshot();
    let mut previous_at = Instant::now();
    let mut intervals = Vec::new();
    let mut lag_max = 0_u64;
    let stopped_on_count;
    let subscriptions = workload.consumer.subscriptions;
    loop {
        thread::sleep(Duration::from_millis(COORDINATOR_TICK_MS));
        let now = Instant::now();
        if !measuring && now >= warmup_end {
            measuring = true;
            measure_start = now;
            shared.measure_start_ns.store(now_ns(), Ordering::Relaxed);
            if let Some(hook) = &opts.window_hook {
                (hook.0)(WindowEdge::Start { step });
            }
            // Intervals restart at the window's start: warm-up traffic is not attributed to it.
            previous = shared.counters.snapshot();
            previous_at = now;
            continue;
        }
        let worker_died = if workers.outstanding > 0 {
            workers.done_rx.try_recv().ok()
        } else {
            None
        };
        if worker_died.is_some() {
            workers.outstanding -= 1;
        }
        // Read after the worker check: a producer stops by itself once the count is reached,
        // and the counter only grows, so its exit is never mistaken for an early stop.
        let count_reached = workload.run.message_count > 0
            && shared.counters.produced_msgs.load(Ordering::Relaxed) >= workload.run.message_count;
        // A count reached during warm-up ends the run too (with a short or empty window).
        let finished = count_reached || (measuring && now >= measure_end);
        let worker_died = worker_died.filter(|(_, result)| !(count_reached && result.is_ok()));
        if let Some((name, result)) = worker_died {
            shared.stop_producers.store(true, Ordering::Relaxed);
            shared.stop_consumers.store(true, Ordering::Relaxed);
            result?;
            return Err(Error::WorkerPanicked(format!("{name} stopped early")));
        }
        if now.duration_since(previous_at) >= Duration::from_millis(SAMPLE_INTERVAL_MS) || finished {
            let snap = shared.counters.snapshot();
            let seconds = now.duration_since(previous_at).as_secs_f64();
            let lag = lag_messages(&snap, subscriptions, consumers_enabled);
            lag_max = lag_max.max(lag);
            let t_s = if measuring {
                now.duration_since(measure_start).as_secs_f64()
            } else {
                -(warmup_end.duration_since(now).as_secs_f64())
            };
            let mut sample = interval_sample(t_s, &previous, &snap, seconds, lag);
            sample.produce_p99_ms = take_interval_p99(&ack_hists);
            sample.e2e_p99_ms = take_interval_p99(&e2e_hists);
            if let Some(bar) = &bar {
                bar.set_message(format!(
                    "step {step} {} {:>5.1}s | prod {:>8.1} MB/s {:>9.0} msg/s p99 {:>7.2} ms | cons {:>8.1} MB/s e2e p99 {:>7.2} ms | lag {lag} | err {}",
                    if measuring { "measure" } else { "warmup " },
                    t_s,
                    sample.produce_mb_per_s,
                    sample.produce_msgs_per_s,
                    sample.produce_p99_ms,
                    sample.consume_mb_per_s,
                    sample.e2e_p99_ms,
                    snap.produce_errors + snap.consume_errors,
                ));
                bar.tick();
            }
            if measuring && t_s > 0.0 {
                intervals.push(sample);
            }
            previous = snap;
            previous_at = now;
        }
        if finished {
            stopped_on_count = count_reached;
            break;
        }
        if now >= hard_deadline {
            shared.stop_producers.store(true, Ordering::Relaxed);
            shared.stop_consumers.store(true, Ordering::Relaxed);
            return Err(Error::HardTimeout(hard_timeout.as_secs()));
        }
    }
    let measured_s = measure_start.elapsed().as_secs_f64();
    shared.measure_end_ns.store(now_ns(), Ordering::Relaxed);
    if let Some(hook) = &opts.window_hook {
        (hook.0)(WindowEdge::End { step });
    }
    shared.stop_producers.store(true, Ordering::Relaxed);
    let producer_count = workers.outstanding - consumer_count;
    let produced = workers.wait(producer_count, hard_deadline, hard_timeout.as_secs());
    // Let consumers catch up with what was acknowledged, within the drain bound.
    let drain_deadline = Instant::now() + drain;
    while consumers_enabled && Instant::now() < drain_deadline {
        if lag_messages(&shared.counters.snapshot(), subscriptions, true) == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(COORDINATOR_TICK_MS));
    }
    shared.stop_consumers.store(true, Ordering::Relaxed);
    let consumed = workers.wait(consumer_count, hard_deadline, hard_timeout.as_secs());
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    produced?;
    consumed?;

    let snap = shared.counters.snapshot();
    let lag_final = lag_messages(&snap, subscriptions, consumers_enabled);
    let errors = shared.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(StepReport {
        target_rate: rate,
        measured_s,
        produce: Throughput::over(snap.produced_msgs, snap.produced_bytes, measured_s),
        consume: Throughput::over(snap.consumed_msgs, snap.consumed_bytes, measured_s),
        produce_errors: snap.produce_errors,
        consume_errors: snap.consume_errors,
        error_samples: errors,
        produce_latency: merge_totals(&ack_hists).summary(),
        e2e_latency: merge_totals(&e2e_hists).summary(),
        lag_max_msgs: lag_max.max(lag_final),
        lag_final_msgs: lag_final,
        stopped_on_count,
        intervals,
    })
}

fn take_interval_p99(hists: &[Arc<Mutex<Histograms>>]) -> f64 {
    let mut merged = LatencyHistogram::new();
    for h in hists {
        let mut h = h.lock().unwrap_or_else(|e| e.into_inner());
        merged.add(&h.interval);
        h.interval.reset();
    }
    merged.percentile_ms(99.0)
}

fn merge_totals(hists: &[Arc<Mutex<Histograms>>]) -> LatencyHistogram {
    let mut merged = LatencyHistogram::new();
    for h in hists {
        merged.add(&h.lock().unwrap_or_else(|e| e.into_inner()).total);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_partition_offsets_track_next_offset() {
        let o = PartitionOffsets::new(&["a".to_owned(), "b".to_owned()], 2);
        assert_eq!(o.start("a", 0), None);
        o.acked("a", 0, 5);
        o.acked("a", 0, 3);
        o.acked("b", 1, 0);
        o.acked("c", 0, 9); // unknown topic: ignored
        o.acked("a", 7, 9); // unknown partition: ignored
        assert_eq!(o.start("a", 0), Some(6));
        assert_eq!(o.start("b", 1), Some(1));
        assert_eq!(o.start("a", 1), None);
    }
}
