//! Storage benchmarks: append throughput (flush Always / Interval), read throughput (cache /
//! disk), each beside a raw glommio DMA sequential-write baseline of the same write size.
//! Writes a JSON summary with MB/s and append/raw ratios to `target/storage-bench.json`.

extern crate riptide_storage as storage;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use glommio::io::OpenOptions;
use glommio::LocalExecutor;
use storage::{DmaBackend, Durability, FlushPolicy, Log, LogConfig};

const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (16 * 1024, "16KiB")];
const PRODUCERS: usize = 4;
const ACKS_ALL_PRODUCERS: usize = 64;
const READ_DATA_BYTES: usize = 64 << 20;
const READ_MAX_BYTES: usize = 1 << 20;

thread_local! {
    /// name -> (bytes, nanoseconds) accumulated over every timed run.
    static STATS: RefCell<BTreeMap<String, (u64, u128)>> = const { RefCell::new(BTreeMap::new()) };
    /// name -> what the appends cost the device, accumulated over every timed run.
    static DEVICE: RefCell<BTreeMap<String, Device>> = const { RefCell::new(BTreeMap::new()) };
}

/// Device writes behind a run of appends (storage's own counters, journal and segments).
#[derive(Clone, Copy, Default)]
struct Device {
    payload_bytes: u64,
    written_bytes: u64,
    journal_bytes: u64,
    direct_bytes: u64,
    writes: u64,
}

fn record_device(name: &str, payload_bytes: u64, before: &storage::stats::StorageSnapshot, after: &storage::stats::StorageSnapshot) {
    DEVICE.with(|d| {
        let mut d = d.borrow_mut();
        let e = d.entry(name.to_string()).or_default();
        e.payload_bytes += payload_bytes;
        e.written_bytes += after.written_bytes - before.written_bytes;
        e.journal_bytes += after.journal_bytes - before.journal_bytes;
        e.direct_bytes += after.direct_bytes - before.direct_bytes;
        e.writes += after.writes - before.writes;
    });
}

fn record(name: &str, bytes: u64, elapsed: Duration) {
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        let e = s.entry(name.to_string()).or_insert((0, 0));
        e.0 += bytes;
        e.1 += elapsed.as_nanos();
    });
}

/// One v2 batch of exactly `size` bytes (one record).
fn batch_of(size: usize) -> Bytes {
    let encode = |value_len: usize| riptide_testkit::unkeyed_batch(1, Bytes::from(vec![0x42; value_len]), 1_700_000_000_000);
    let mut value_len = size - 80;
    for _ in 0..8 {
        let b = encode(value_len);
        if b.len() == size {
            return b;
        }
        value_len = (value_len as isize + size as isize - b.len() as isize) as usize;
    }
    panic!("cannot build a batch of {size} bytes");
}

fn bench_config(flush: FlushPolicy) -> LogConfig {
    LogConfig { flush, retention_ms: None, segment_bytes: 512 << 20, ..LogConfig::default() }
}

fn fresh_dir(root: &Path) -> PathBuf {
    thread_local!(static N: RefCell<u64> = const { RefCell::new(0) });
    let n = N.with(|n| {
        *n.borrow_mut() += 1;
        *n.borrow()
    });
    root.join(format!("bench-{n}"))
}

/// Appends `iters` batches from `producers` tasks; acks=1 style (no per-batch wait) unless
/// `acks_all`; ends with a flush. Returns elapsed time and the storage counters before and
/// after (opening the log, which zero-fills its journal, is not counted).
async fn run_append(root: &Path, flush: FlushPolicy, batch: &Bytes, iters: u64, producers: usize, acks_all: bool) -> (Duration, [storage::stats::StorageSnapshot; 2]) {
    let log = Rc::new(Log::open(DmaBackend::new(), fresh_dir(root), bench_config(flush)).await.unwrap());
    let before = storage::stats::snapshot();
    let start = Instant::now();
    let per = iters.div_ceil(producers as u64);
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (log, batch) = (log.clone(), batch.clone());
        tasks.push(glommio::spawn_local(async move {
            for _ in 0..per {
                let info = log.append(batch.clone()).await.unwrap();
                if acks_all {
                    log.wait_durable(info.log_end_offset, Durability::Synced).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    log.flush().await.unwrap();
    let elapsed = start.elapsed();
    let after = storage::stats::snapshot();
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    log.remove().await.unwrap();
    (elapsed, [before, after])
}

/// Raw baseline: `iters` sequential O_DIRECT writes of `size` bytes (queue depth 1) on a fresh
/// file, then one fdatasync.
async fn run_raw(root: &Path, size: usize, iters: u64) -> Duration {
    std::fs::create_dir_all(root).unwrap();
    let path = fresh_dir(root).with_extension("raw");
    let file = OpenOptions::new().read(true).write(true).create(true).dma_open(&path).await.unwrap();
    let start = Instant::now();
    for i in 0..iters {
        let mut buf = file.alloc_dma_buffer(size);
        buf.as_bytes_mut().fill(0x42);
        let n = file.write_at(buf, i * size as u64).await.unwrap();
        assert_eq!(n, size);
    }
    file.fdatasync().await.unwrap();
    let elapsed = start.elapsed();
    file.close().await.unwrap();
    std::fs::remove_file(&path).unwrap();
    elapsed
}

/// Primes glommio's iopoll probe with a non-empty file (see DmaBackend) before raw DMA opens.
fn prime(ex: &LocalExecutor, root: &Path) {
    ex.run(async {
        let log = Log::open(DmaBackend::new(), root.join("prime-0"), LogConfig::default()).await.unwrap();
        log.remove().await.unwrap();
    });
}

fn bench_append(c: &mut Criterion, ex: &LocalExecutor, root: &Path) {
    let mut group = c.benchmark_group("append");
    // Device ceiling: raw sequential writes as large as the appender's largest write.
    let large = storage::constants::WRITE_CHUNK_BYTES_MAX;
    group.throughput(Throughput::Bytes(large as u64));
    group.bench_function(BenchmarkId::new("raw_dma_write", "2MiB"), |b| {
        b.iter_custom(|iters| {
            let d = ex.run(run_raw(root, large, iters));
            record("raw_dma_write/2MiB", iters * large as u64, d);
            d
        })
    });
    for (size, label) in SIZES {
        let batch = batch_of(size);
        group.throughput(Throughput::Bytes(size as u64));
        let name = format!("raw_dma_write/{label}");
        group.bench_function(BenchmarkId::new("raw_dma_write", label), |b| {
            b.iter_custom(|iters| {
                let d = ex.run(run_raw(root, size, iters));
                record(&name, iters * size as u64, d);
                d
            })
        });
        let policies = [
            ("always", FlushPolicy::Always, false, PRODUCERS),
            ("interval", FlushPolicy::Interval { ms: 10, bytes: 8 << 20 }, false, PRODUCERS),
            ("always_acks_all_64", FlushPolicy::Always, true, ACKS_ALL_PRODUCERS),
        ];
        for (pname, policy, acks_all, producers) in policies {
            let name = format!("log_append_{pname}/{label}");
            group.bench_function(BenchmarkId::new(format!("log_append_{pname}"), label), |b| {
                b.iter_custom(|iters| {
                    let (d, [before, after]) = ex.run(run_append(root, policy, &batch, iters, producers, acks_all));
                    let done = iters.div_ceil(producers as u64) * producers as u64;
                    record(&name, done * size as u64, d);
                    record_device(&name, done * size as u64, &before, &after);
                    d.mul_f64(iters as f64 / done as f64)
                })
            });
        }
    }
    group.finish();
}

fn bench_read(c: &mut Criterion, ex: &LocalExecutor, root: &Path) {
    let mut group = c.benchmark_group("read");
    for (size, label) in SIZES {
        let batch = batch_of(size);
        for (source, cache_bytes) in [("cache", READ_DATA_BYTES + (8 << 20)), ("disk", 0)] {
            let dir = root.join(format!("read-{source}-{label}"));
            let config = LogConfig { cache_bytes_max: cache_bytes, ..bench_config(FlushPolicy::Always) };
            let log = ex.run(async {
                let log = Log::open(DmaBackend::new(), dir.clone(), config).await.unwrap();
                for _ in 0..READ_DATA_BYTES / size {
                    log.append(batch.clone()).await.unwrap();
                }
                log.flush().await.unwrap();
                log
            });
            let cursor = std::cell::Cell::new(0i64);
            let name = format!("log_read_{source}/{label}");
            group.throughput(Throughput::Bytes(READ_MAX_BYTES as u64));
            group.bench_function(BenchmarkId::new(format!("log_read_{source}"), label), |b| {
                b.iter_custom(|iters| {
                    let (bytes, d) = ex.run(async {
                        let start = Instant::now();
                        let mut bytes = 0u64;
                        for _ in 0..iters {
                            let mut at = cursor.get();
                            if at >= log.high_watermark() {
                                at = 0;
                            }
                            let r = log.read(at, READ_MAX_BYTES).await.unwrap();
                            bytes += r.total_bytes() as u64;
                            cursor.set(at + r.batches.len() as i64);
                        }
                        (bytes, start.elapsed())
                    });
                    record(&name, bytes, d);
                    d
                })
            });
            ex.run(async { log.remove().await.unwrap() });
        }
    }
    group.finish();
}

fn write_summary() {
    let stats = STATS.with(|s| s.borrow().clone());
    let mbps = |name: &str| {
        stats.get(name).map(|(bytes, nanos)| *bytes as f64 / 1e6 / (*nanos as f64 / 1e9)).unwrap_or(0.0)
    };
    let mut results = serde_json::Map::new();
    for name in stats.keys() {
        let mut entry = serde_json::Map::new();
        entry.insert("mb_per_s".into(), serde_json::json!((mbps(name) * 10.0).round() / 10.0));
        if name.starts_with("log_append") {
            let label = name.split('/').nth(1).unwrap_or("");
            let raw = mbps(&format!("raw_dma_write/{label}"));
            if raw > 0.0 {
                entry.insert("ratio_vs_raw".into(), serde_json::json!((mbps(name) / raw * 1000.0).round() / 1000.0));
            }
            let large = mbps("raw_dma_write/2MiB");
            if large > 0.0 {
                entry.insert("ratio_vs_raw_2MiB".into(), serde_json::json!((mbps(name) / large * 1000.0).round() / 1000.0));
            }
        }
        if let Some(dev) = DEVICE.with(|d| d.borrow().get(name).copied()).filter(|d| d.payload_bytes > 0) {
            let per_payload = |bytes: u64| serde_json::json!((bytes as f64 / dev.payload_bytes as f64 * 1000.0).round() / 1000.0);
            entry.insert("device_bytes_per_payload_byte".into(), per_payload(dev.written_bytes));
            entry.insert("journal_bytes_per_payload_byte".into(), per_payload(dev.journal_bytes));
            entry.insert("direct_bytes_per_payload_byte".into(), per_payload(dev.direct_bytes));
            entry.insert("mean_write_bytes".into(), serde_json::json!(dev.written_bytes / dev.writes.max(1)));
        }
        results.insert(name.clone(), serde_json::Value::Object(entry));
    }
    let summary = serde_json::json!({
        "benchmark": "riptide-storage append/read",
        "raw_baseline": "sequential O_DIRECT glommio DmaFile writes of the batch size (ratio_vs_raw) and of 2 MiB = the appender's largest write (ratio_vs_raw_2MiB), queue depth 1, one fdatasync at the end",
        "append_workload": format!("{PRODUCERS} producer tasks appending without per-batch waits, final flush; acks_all variant: {ACKS_ALL_PRODUCERS} tasks each awaiting Synced per batch"),
        "read_workload": format!("sequential reads of {READ_MAX_BYTES} bytes over {READ_DATA_BYTES} bytes of data"),
        "results": results,
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/storage-bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    println!("\nstorage bench summary written to {}\n{}", path.display(), serde_json::to_string_pretty(&summary).unwrap());
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let tmp = tempfile::tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")).unwrap();
    // glommio's default DMA pool (10 MiB), the broker's default `io.memory.bytes` too.
    let ex = LocalExecutor::default();
    prime(&ex, tmp.path());
    bench_append(&mut c, &ex, tmp.path());
    bench_read(&mut c, &ex, tmp.path());
    c.final_summary();
    write_summary();
}
