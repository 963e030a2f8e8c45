//! A real librdkafka producer against the in-process null broker: the whole loadgen path
//! (topic creation, produce, delivery reports, report, plots) in a few seconds.

use loadgen::null_broker::{NullBroker, NullBrokerConfig};
use loadgen::{run_workload, RunOptions, Workload};

const WORKLOAD: &str = r#"
name = "null-broker smoke"
[topics]
partitions = 4
[message]
size = 512
[producer]
rate = 2000
[consumer]
count = 0
[run]
warmup = "300ms"
duration = "1s"
"#;

#[test]
fn loadgen_runs_against_null_broker_and_reports() {
    let broker = NullBroker::start(NullBrokerConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let workload = Workload::from_toml_str(WORKLOAD).unwrap();
    let mut opts = RunOptions::new(broker.local_addr().to_string());
    opts.progress = false;
    let report = run_workload(&workload, &opts).unwrap();
    let step = &report.steps[0];
    assert_eq!(step.produce_errors, 0, "{:?}", step.error_samples);
    assert!(step.produce.messages > 500, "{:?}", step.produce);
    assert!(step.produce_latency.count > 0);
    assert!(step.produce_latency.p99_ms < 5_000.0);
    assert!(broker.stats().produce_records.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.json");
    report.write_json(&out).unwrap();
    assert_eq!(loadgen::plot::write_plots(&report, &out).unwrap().len(), 2);
}

#[test]
fn loadgen_stops_on_message_count() {
    let broker = NullBroker::start(NullBrokerConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let mut workload = Workload::from_toml_str(WORKLOAD).unwrap();
    workload.run.message_count = 300;
    workload.run.duration = loadgen::workload::DurationSpec::Seconds(30.0);
    let mut opts = RunOptions::new(broker.local_addr().to_string());
    opts.progress = false;
    let started = std::time::Instant::now();
    let report = run_workload(&workload, &opts).unwrap();
    assert!(report.steps[0].stopped_on_count);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
