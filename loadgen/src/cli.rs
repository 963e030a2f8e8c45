//! Command-line pieces shared by the `riptide` binary (`riptide loadgen|sizing|bench null-broker`)
//! and this crate's own `riptide-loadgen` binary.

use crate::constants::{BYTES_PER_MB, NULL_BROKER_PARTITIONS_DEFAULT, SLO_P99_MS_DEFAULT};
use crate::null_broker::{NullBroker, NullBrokerConfig};
use crate::plot::write_plots;
use crate::report::Report;
use crate::runner::{run_workload, RunOptions};
use crate::sizing::{self, MeasuredPoint, SizingInput, SEED_PER_BROKER_BYTES_PER_S};
use crate::units::{parse_byte_rate, parse_duration};
use crate::workload::{DurationSpec, RateOrSweep, RateSpec, Workload};
use anyhow::{anyhow, bail, Context};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// `loadgen`: run a workload file against a bootstrap list.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Workload file (TOML), e.g. bench/workloads/ci-smoke.toml.
    #[arg(long, short)]
    pub workload: PathBuf,
    /// Bootstrap servers, host:port[,host:port...].
    #[arg(long, short, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Write the JSON report here (plots go beside it as <stem>-throughput.svg / -latency.svg).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Do not write SVG plots next to the report.
    #[arg(long)]
    pub no_plots: bool,
    /// Label of the system under test, stored in the report.
    #[arg(long, default_value = "")]
    pub target_label: String,
    /// Brokers behind the bootstrap list (for per-broker figures and sizing).
    #[arg(long, default_value_t = 1)]
    pub brokers: u32,
    /// Override the workload's measured duration (e.g. 30s).
    #[arg(long)]
    pub duration: Option<String>,
    /// Override the workload's warm-up (e.g. 2s).
    #[arg(long)]
    pub warmup: Option<String>,
    /// Override the target rate: "max", msgs/s, or a byte rate like 50MB/s.
    #[arg(long)]
    pub rate: Option<String>,
    /// Override the message count bound (0 = none).
    #[arg(long)]
    pub message_count: Option<u64>,
    /// Override the number of producers.
    #[arg(long)]
    pub producers: Option<u32>,
    /// Override the number of consumers (0 disables consumption).
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Extra librdkafka property for every client, key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub client_set: Vec<String>,
    /// No live progress line.
    #[arg(long)]
    pub no_progress: bool,
}

impl LoadgenArgs {
    /// The workload with command-line overrides applied and validated.
    pub fn workload(&self) -> anyhow::Result<Workload> {
        let mut w = Workload::from_file(&self.workload)?;
        if let Some(d) = &self.duration {
            w.run.duration = DurationSpec::Text(d.clone());
        }
        if let Some(d) = &self.warmup {
            w.run.warmup = DurationSpec::Text(d.clone());
        }
        if let Some(r) = &self.rate {
            let spec = match r.parse::<f64>() {
                Ok(n) => RateSpec::MessagesPerSecond(n),
                Err(_) => RateSpec::Text(r.clone()),
            };
            w.producer.rate = RateOrSweep::One(spec);
        }
        if let Some(n) = self.message_count {
            w.run.message_count = n;
        }
        if let Some(n) = self.producers {
            w.producer.count = n;
        }
        if let Some(n) = self.consumers {
            w.consumer.count = n;
        }
        w.validate()?;
        Ok(w)
    }

    pub fn run_options(&self) -> anyhow::Result<RunOptions> {
        let mut opts = RunOptions::new(self.bootstrap.clone());
        opts.target_label = if self.target_label.is_empty() {
            self.bootstrap.clone()
        } else {
            self.target_label.clone()
        };
        opts.brokers = self.brokers.max(1);
        opts.progress = !self.no_progress;
        for kv in &self.client_set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--set expects KEY=VALUE, got {kv:?}"))?;
            opts.client_extra.insert(k.to_owned(), v.to_owned());
        }
        Ok(opts)
    }
}

/// Runs `loadgen`: prints the final table, writes the JSON report and plots when `--out` is set.
pub fn run_loadgen(a: LoadgenArgs) -> anyhow::Result<()> {
    let workload = a.workload()?;
    let opts = a.run_options()?;
    eprintln!(
        "riptide-loadgen: {} against {} ({} step(s) of {:?} warm-up + {:?})",
        workload.name,
        opts.bootstrap,
        workload.target_rates()?.len(),
        workload.warmup()?,
        workload.duration()?
    );
    let report = run_workload(&workload, &opts).context("loadgen run failed")?;
    print!("{}", report.table());
    if let Some(out) = &a.out {
        report.write_json(out)?;
        println!("report: {}", out.display());
        if !a.no_plots {
            for p in write_plots(&report, out)? {
                println!("plot:   {}", p.display());
            }
        }
    }
    Ok(())
}

/// `sizing`: how many brokers for an ingress, from a measured report or a per-broker figure.
#[derive(Debug, Clone, clap::Args)]
pub struct SizingArgs {
    /// Client ingress for the whole cluster, e.g. 1GB/s.
    #[arg(long)]
    pub ingress: String,
    /// How many times consumers read every byte.
    #[arg(long, default_value_t = 1.0)]
    pub egress_fanout: f64,
    /// Replication factor.
    #[arg(long, default_value_t = 3)]
    pub rf: u32,
    /// Measured run(s): loadgen reports, or an e2e bench report (pick the system with --system).
    #[arg(long)]
    pub report: Vec<PathBuf>,
    /// In an e2e bench report, the system to size from (default: the first riptide entry).
    #[arg(long)]
    pub system: Option<String>,
    /// p99 produce latency SLO in milliseconds.
    #[arg(long, default_value_t = SLO_P99_MS_DEFAULT)]
    pub slo_p99_ms: f64,
    /// Per-broker sustainable write rate when no report is given (default: the seed's 200MB/s).
    #[arg(long)]
    pub per_broker: Option<String>,
    /// Per-broker sustainable read (egress) rate; default: equal to the write rate.
    #[arg(long)]
    pub per_broker_read: Option<String>,
    /// Print the result as JSON too.
    #[arg(long)]
    pub json: bool,
}

/// Loads the measured points of a loadgen report or of one system of an e2e bench report.
pub fn load_points(path: &Path, system: Option<&str>) -> anyhow::Result<Vec<MeasuredPoint>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    if let Some(systems) = value.get("systems").and_then(|s| s.as_array()) {
        let chosen = systems.iter().find(|s| {
            let name = s.get("name").and_then(|n| n.as_str()).unwrap_or("");
            let has_run = s.get("run").is_some_and(|r| !r.is_null());
            has_run && system.map_or(name.starts_with("riptide"), |want| name == want)
        });
        let Some(chosen) = chosen else {
            let names: Vec<&str> = systems
                .iter()
                .filter_map(|s| s.get("name").and_then(|n| n.as_str()))
                .collect();
            bail!(
                "{}: no measured system {} (have: {}); pass --system",
                path.display(),
                system.unwrap_or("riptide*"),
                names.join(", ")
            );
        };
        let report: Report = serde_json::from_value(chosen["run"].clone())?;
        return Ok(sizing::points_from_report(&report));
    }
    let report: Report = serde_json::from_value(value)?;
    Ok(sizing::points_from_report(&report))
}

fn mb(bytes_per_s: f64) -> String {
    format!("{:.1}", bytes_per_s / BYTES_PER_MB)
}

/// Runs `sizing` and prints the formula beside the seed's rule of thumb.
pub fn run_sizing(a: SizingArgs) -> anyhow::Result<()> {
    let ingress = parse_byte_rate(&a.ingress)?;
    let (write, source) = if a.report.is_empty() {
        let w = match &a.per_broker {
            Some(r) => parse_byte_rate(r)?,
            None => SEED_PER_BROKER_BYTES_PER_S,
        };
        (w, format!("given (--per-broker {})", a.per_broker.as_deref().unwrap_or("200MB/s, the seed's figure")))
    } else {
        let mut points = Vec::new();
        for path in &a.report {
            points.extend(load_points(path, a.system.as_deref())?);
        }
        let s = sizing::sustainable_per_broker(&points, a.slo_p99_ms).ok_or_else(|| {
            anyhow!(
                "no measured step met p99 <= {} ms without errors ({} step(s) read); run lower fixed rates",
                a.slo_p99_ms,
                points.len()
            )
        })?;
        let p = s.point;
        (
            s.write_bytes_per_s,
            format!(
                "measured: {} MB/s produced on {} broker(s) at RF {}, p99 {:.2} ms <= SLO {} ms; best of {} step(s)",
                mb(p.produce_bytes_per_s),
                p.brokers,
                p.replication_factor,
                p.p99_produce_ms,
                a.slo_p99_ms,
                points.len()
            ),
        )
    };
    let (read, read_source) = match &a.per_broker_read {
        Some(r) => (parse_byte_rate(r)?, "given (--per-broker-read)".to_owned()),
        None => (write, "assumed equal to W; pass --per-broker-read to change".to_owned()),
    };
    let input = SizingInput {
        ingress_bytes_per_s: ingress,
        replication_factor: a.rf,
        egress_fanout: a.egress_fanout,
        per_broker_write_bytes_per_s: write,
        per_broker_read_bytes_per_s: read,
    };
    let r = sizing::size_cluster(&input)?;
    let rf = a.rf;
    let f = a.egress_fanout;
    println!("Per-broker sustainable write W = {} MB/s ({source})", mb(write));
    println!("Per-broker sustainable read  R = {} MB/s ({read_source})", mb(read));
    println!();
    println!("Cluster load for ingress {} MB/s, RF {rf}, egress fanout {f}:", mb(ingress));
    println!(
        "  write = ingress x RF                = {} x {rf} = {} MB/s -> ceil({} / {}) = {} brokers",
        mb(ingress),
        mb(r.write_load_bytes_per_s),
        mb(r.write_load_bytes_per_s),
        mb(write),
        r.brokers_for_write
    );
    println!(
        "  read  = ingress x (fanout + RF - 1) = {} x ({f} + {rf} - 1) = {} MB/s -> ceil({} / {}) = {} brokers",
        mb(ingress),
        mb(r.read_load_bytes_per_s),
        mb(r.read_load_bytes_per_s),
        mb(read),
        r.brokers_for_read
    );
    println!("  at least RF                         = {} brokers", r.brokers_for_rf);
    println!("Brokers needed: {}", r.brokers);
    println!();
    let seed = (1000.0 / 200.0) * 3.0;
    println!("Seed rule of thumb (Kafka, ~200 MB/s per broker, RF 3): (1000 / 200) x 3 = {seed:.0} brokers");
    println!(
        "Same rule with these inputs: ({} / {}) x {rf} = {:.2} -> {} brokers (write bound only; ignores egress fanout)",
        mb(ingress),
        mb(write),
        r.rule_of_thumb,
        (r.rule_of_thumb - 1e-9).ceil()
    );
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "input": input, "result": r }))?);
    }
    Ok(())
}

/// `bench null-broker`: a responder that acks every produce and stores nothing.
#[derive(Debug, Clone, clap::Args)]
pub struct NullBrokerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Host advertised in Metadata (default: the listen IP).
    #[arg(long)]
    pub advertised_host: Option<String>,
    /// Partitions of auto-created topics.
    #[arg(long, default_value_t = NULL_BROKER_PARTITIONS_DEFAULT)]
    pub partitions: u32,
    /// Stop after this long (e.g. 60s); default: run until interrupted.
    #[arg(long)]
    pub duration: Option<String>,
    /// Print received MB/s every second.
    #[arg(long)]
    pub verbose: bool,
}

/// Runs the null broker in the foreground.
pub fn run_null_broker(a: NullBrokerArgs) -> anyhow::Result<()> {
    let limit = a.duration.as_deref().map(parse_duration).transpose()?;
    let mut config = NullBrokerConfig::new(a.listen);
    config.advertised_host = a.advertised_host.clone();
    config.partitions_default = a.partitions;
    let mut broker = NullBroker::start(config)?;
    eprintln!("null broker listening on {}", broker.local_addr());
    let started = Instant::now();
    let mut last = 0_u64;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let bytes = broker.stats().produce_bytes.load(Ordering::Relaxed);
        if a.verbose {
            eprintln!(
                "{:>6.0}s produce {:>8.1} MB/s, {} connection(s)",
                started.elapsed().as_secs_f64(),
                (bytes - last) as f64 / BYTES_PER_MB,
                broker.stats().connections.load(Ordering::Relaxed)
            );
        }
        last = bytes;
        if limit.is_some_and(|l| started.elapsed() >= l) {
            break;
        }
    }
    broker.shutdown();
    Ok(())
}
