//! `riptide tune`: measures the data dir's device the way the broker uses it, through the same
//! I/O path (storage's `DmaBackend`: glommio DMA files, O_DIRECT, io_uring, and its sync — one
//! `syncfs` round on ext4/XFS), and turns the figures into settings.
//!
//! Measured: sequential O_DIRECT writes, then reads, at each block size x queue depth (depth =
//! writes in flight at once, each task taking the next stripe of one preallocated file, as a
//! commit's pieces are), for an equal share of `--duration`; then write + sync rounds. The file
//! is removed at the end. Nothing else on the system changes.
//!
//! Settings chosen (every rule here, with its constants):
//! - `storage.write.bytes`: the smallest block size whose best write bandwidth reaches
//!   `KNEE_FRACTION` of the best of all, between 64 KiB and 8 MiB: commits larger than that
//!   are cut into pieces the device takes at full speed, submitted together.
//! - `io.ring.depth`: the smallest queue depth whose best bandwidth reaches `KNEE_FRACTION` of
//!   the best (the device's useful depth), times `RING_DEPTH_PER_DEVICE_DEPTH` (reads, writes of
//!   many logs and sockets share the ring), as a power of two, at least glommio's 128.
//! - `io.memory.bytes`: room for the writes in flight at that depth (write size x useful depth
//!   x 4), at least glommio's 10 MiB, at most 256 MiB, and within the memlock limit per shard
//!   (as `start` will have it), so the buffers can be registered with io_uring.
//! - `cache.bytes.per.shard`, `request.budget.bytes.per.shard`: the memory-sized defaults
//!   (`Resources::from_memory`) for the shards `start` will run, written out explicitly.

use crate::resources::{IoProperties, Resources, Settings, IO_MEMORY_BYTES_DEFAULT, RING_DEPTH_DEFAULT};
use serde::Serialize;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};
use storage::io::{IoBackend, IoFile};

pub const BLOCK_SIZES: [usize; 5] = [4 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];
pub const QUEUE_DEPTHS: [usize; 3] = [1, 4, 16];
/// A setting's "good enough" point: this share of the best bandwidth.
pub const KNEE_FRACTION: f64 = 0.9;
pub const RING_DEPTH_PER_DEVICE_DEPTH: usize = 16;
pub const RING_DEPTH_MAX: usize = 4096;
pub const WRITE_BYTES_MIN: usize = 64 << 10;
pub const WRITE_BYTES_MAX: usize = 8 << 20;
pub const IO_MEMORY_BYTES_MAX: usize = 256 << 20;
/// Sync rounds measured at most (each after a 64 KiB write).
pub const SYNC_ROUNDS_MAX: usize = 50;

/// One measured point.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Point {
    pub op: &'static str,
    pub block_bytes: usize,
    pub depth: usize,
    pub mb_per_s: f64,
    pub iops: f64,
    pub ops: u64,
}

/// The host as `tune` saw it.
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    pub data_dir: PathBuf,
    pub measured_in: PathBuf,
    pub kernel: String,
    pub filesystem: String,
    pub cores: usize,
    pub numa_nodes: Vec<String>,
    pub memory_bytes: Option<u64>,
    pub memlock_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub host: Host,
    pub points: Vec<Point>,
    pub sync_rounds: usize,
    pub sync_p50_us: u64,
    pub sync_p99_us: u64,
}

#[derive(Clone, Debug)]
pub struct TuneOptions {
    pub data_dir: PathBuf,
    pub duration: Duration,
    pub file_bytes: u64,
    pub shards: usize,
}

/// Reports progress (a bar on a terminal).
pub trait Progress {
    fn step(&self, what: &str);
}

impl Progress for () {
    fn step(&self, _: &str) {}
}

/// NUMA nodes and their cpus, "node0: 0-1".
pub fn numa_nodes() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/devices/system/node") else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.strip_prefix("node").is_some_and(|n| n.parse::<u32>().is_ok()) {
            let cpus = std::fs::read_to_string(e.path().join("cpulist")).unwrap_or_default();
            out.push(format!("{name}: {}", cpus.trim()));
        }
    }
    out.sort();
    out
}

fn fs_name(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return "unknown".into() };
    // SAFETY: statfs writes into the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    match st.f_type as i64 {
        storage::io::sync_group::EXT4_SUPER_MAGIC => "ext4".into(),
        storage::io::sync_group::XFS_SUPER_MAGIC => "xfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794c_7630 => "overlayfs".into(),
        0x9123_683e => "btrfs".into(),
        m => format!("{m:#x}"),
    }
}

/// Runs the measurement on one glommio executor (one shard's worth of I/O).
pub fn measure(opts: &TuneOptions, progress: &dyn Progress) -> anyhow::Result<Measurement> {
    let facts = crate::HostFacts::probe();
    let dir = crate::check::existing_ancestor(&opts.data_dir);
    let host = Host {
        data_dir: opts.data_dir.clone(),
        measured_in: dir.clone(),
        kernel: crate::check::kernel_release(),
        filesystem: fs_name(&dir),
        cores: facts.cores,
        numa_nodes: numa_nodes(),
        memory_bytes: facts.memory_bytes,
        memlock_bytes: crate::memlock_as_start_sees(),
    };
    let points_total = 2 * BLOCK_SIZES.len() * QUEUE_DEPTHS.len() + 1;
    let share = opts.duration.div_f64(points_total as f64).max(Duration::from_millis(20));
    // The scratch file sits one directory down, as a partition's segments do: storage's DMA
    // backend primes glommio's iopoll probe with a marker in the file's parent's parent (the
    // data dir), which must be on the measured device. Both are removed afterwards.
    let scratch_dir = dir.join(format!(".riptide-tune-{}", std::process::id()));
    let marker = dir.join(storage::constants::DMA_PROBE_FILE);
    let _cleanup = RemoveOnDrop { dir: scratch_dir.clone(), marker: (!marker.exists()).then_some(marker) };
    std::fs::create_dir(&scratch_dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", scratch_dir.display()))?;
    let path = scratch_dir.join("scratch");
    let file_bytes = opts.file_bytes.max(*BLOCK_SIZES.iter().max().unwrap() as u64 * 2);
    // The progress reporter is not Send: report from here, through a channel.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let worker_path = path.clone();
    let worker = glommio::LocalExecutorBuilder::default()
        .name("riptide-tune")
        .io_memory(64 << 20)
        .spawn(move || async move { run_points(worker_path, file_bytes, share, tx).await })
        .map_err(|e| anyhow::anyhow!("starting the I/O executor: {e}"))?;
    for what in rx {
        progress.step(&what);
    }
    let (points, syncs) = worker.join().map_err(|e| anyhow::anyhow!("I/O executor: {e}"))??;
    let mut syncs = syncs;
    syncs.sort();
    let pct = |p: f64| syncs.get(((syncs.len() as f64 * p) as usize).min(syncs.len().saturating_sub(1))).copied().unwrap_or(0);
    Ok(Measurement { host, points, sync_rounds: syncs.len(), sync_p50_us: pct(0.5), sync_p99_us: pct(0.99) })
}

struct RemoveOnDrop {
    dir: PathBuf,
    /// The DMA probe marker, when `tune` created it.
    marker: Option<PathBuf>,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(m) = &self.marker {
            let _ = std::fs::remove_file(m);
        }
    }
}

async fn run_points(path: PathBuf, file_bytes: u64, share: Duration, tx: std::sync::mpsc::Sender<String>) -> anyhow::Result<(Vec<Point>, Vec<u64>)> {
    let backend = storage::DmaBackend::new();
    let file = Rc::new(backend.open(&path, true).await.map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?);
    file.allocate(file_bytes).await.map_err(|e| anyhow::anyhow!("cannot reserve {file_bytes} bytes in {}: {e}", path.display()))?;
    let mut points = Vec::new();
    for op in ["write", "read"] {
        for &bs in &BLOCK_SIZES {
            for &depth in &QUEUE_DEPTHS {
                let _ = tx.send(format!("{op} {} KiB x {depth}", bs >> 10));
                points.push(run_point(&file, op, bs, depth, file_bytes, share).await?);
            }
        }
    }
    let _ = tx.send("write + sync rounds".into());
    let mut syncs = Vec::new();
    let started = Instant::now();
    while syncs.len() < SYNC_ROUNDS_MAX && (started.elapsed() < share || syncs.len() < 3) {
        let buf = file.alloc_buf(64 << 10);
        file.write_at(buf, (syncs.len() as u64 * (64 << 10)) % file_bytes).await?;
        let t = Instant::now();
        file.sync().await?;
        syncs.push(t.elapsed().as_micros() as u64);
    }
    Ok((points, syncs))
}

/// `depth` tasks issue `op`s of `bs` bytes at consecutive stripes of the file for `share`.
async fn run_point<F: IoFile>(file: &Rc<F>, op: &'static str, bs: usize, depth: usize, file_bytes: u64, share: Duration) -> anyhow::Result<Point> {
    let stripes = (file_bytes / bs as u64).max(1);
    let cursor = Rc::new(Cell::new(0u64));
    let ops = Rc::new(Cell::new(0u64));
    let started = Instant::now();
    let deadline = started + share;
    let tasks = (0..depth).map(|_| {
        let (file, cursor, ops) = (file.clone(), cursor.clone(), ops.clone());
        async move {
            while Instant::now() < deadline {
                let stripe = cursor.get();
                cursor.set((stripe + 1) % stripes);
                let pos = stripe * bs as u64;
                if op == "write" {
                    let mut buf = file.alloc_buf(bs);
                    buf_fill(&mut buf, stripe);
                    let n = file.write_at(buf, pos).await?;
                    anyhow::ensure!(n == bs, "short write: {n} of {bs}");
                } else {
                    file.read_at(pos, bs).await?;
                }
                ops.set(ops.get() + 1);
            }
            Ok::<(), anyhow::Error>(())
        }
    });
    for r in futures::future::join_all(tasks).await {
        r?;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let n = ops.get();
    Ok(Point { op, block_bytes: bs, depth, mb_per_s: n as f64 * bs as f64 / secs / 1e6, iops: n as f64 / secs, ops: n })
}

fn buf_fill<B: storage::io::IoBuf>(buf: &mut B, stripe: u64) {
    let s = buf.as_mut_slice();
    s.fill(0);
    s[..8].copy_from_slice(&stripe.to_le_bytes());
}

/// The settings the measurement calls for (see the module comment for each rule).
pub fn choose(m: &Measurement, shards: usize, request_max_bytes: u64) -> Settings {
    let writes: Vec<&Point> = m.points.iter().filter(|p| p.op == "write").collect();
    let best = |pts: &[&Point]| pts.iter().map(|p| p.mb_per_s).fold(0.0, f64::max);
    let all_best = best(&m.points.iter().collect::<Vec<_>>());
    let write_best = best(&writes);
    let write_bytes = BLOCK_SIZES
        .iter()
        .copied()
        .find(|&bs| best(&writes.iter().copied().filter(|p| p.block_bytes == bs).collect::<Vec<_>>()) >= KNEE_FRACTION * write_best)
        .unwrap_or(crate::resources::WRITE_BYTES_DEFAULT)
        .clamp(WRITE_BYTES_MIN, WRITE_BYTES_MAX);
    let knee_depth = QUEUE_DEPTHS
        .iter()
        .copied()
        .find(|&d| best(&m.points.iter().filter(|p| p.depth == d).collect::<Vec<_>>()) >= KNEE_FRACTION * all_best)
        .unwrap_or(1);
    let ring_depth = (knee_depth * RING_DEPTH_PER_DEVICE_DEPTH).next_power_of_two().clamp(RING_DEPTH_DEFAULT, RING_DEPTH_MAX);
    let mut io_memory = (write_bytes * knee_depth * 4).clamp(IO_MEMORY_BYTES_DEFAULT, IO_MEMORY_BYTES_MAX);
    if let Some(limit) = m.host.memlock_bytes {
        let per_shard = (limit / shards.max(1) as u64) as usize;
        io_memory = io_memory.min(per_shard).max(crate::resources::IO_MEMORY_BYTES_RANGE.0);
    }
    let memory = Resources::from_memory(m.host.memory_bytes, shards, request_max_bytes);
    Settings {
        write_bytes: Some(write_bytes),
        io_memory_bytes: Some(io_memory),
        ring_depth: Some(ring_depth),
        cache_bytes_per_shard: Some(memory.cache_bytes as u64),
        request_budget_bytes_per_shard: Some(memory.request_budget_bytes),
    }
}

/// The properties file for a measurement and its settings.
pub fn properties(m: &Measurement, settings: Settings) -> IoProperties {
    let mut measured = toml::Table::new();
    let mut put = |k: &str, v: toml::Value| {
        measured.insert(k.into(), v);
    };
    put("data_dir", m.host.data_dir.display().to_string().into());
    put("measured_in", m.host.measured_in.display().to_string().into());
    put("kernel", m.host.kernel.clone().into());
    put("filesystem", m.host.filesystem.clone().into());
    put("cores", (m.host.cores as i64).into());
    put("numa_nodes", toml::Value::Array(m.host.numa_nodes.iter().map(|n| n.clone().into()).collect()));
    put("memory_bytes", m.host.memory_bytes.map_or(-1, |b| b as i64).into());
    put("memlock_bytes", m.host.memlock_bytes.map_or(-1, |b| b as i64).into());
    put("sync_p50_us", (m.sync_p50_us as i64).into());
    put("sync_p99_us", (m.sync_p99_us as i64).into());
    let points = m
        .points
        .iter()
        .map(|p| {
            let mut t = toml::Table::new();
            t.insert("op".into(), p.op.into());
            t.insert("block_bytes".into(), (p.block_bytes as i64).into());
            t.insert("depth".into(), (p.depth as i64).into());
            t.insert("mb_per_s".into(), ((p.mb_per_s * 10.0).round() / 10.0).into());
            t.insert("iops".into(), (p.iops.round() as i64).into());
            toml::Value::Table(t)
        })
        .collect();
    put("points", toml::Value::Array(points));
    IoProperties { settings, measured }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(f: impl Fn(&'static str, usize, usize) -> f64) -> Measurement {
        let mut points = Vec::new();
        for op in ["write", "read"] {
            for &bs in &BLOCK_SIZES {
                for &depth in &QUEUE_DEPTHS {
                    let mb = f(op, bs, depth);
                    points.push(Point { op, block_bytes: bs, depth, mb_per_s: mb, iops: mb * 1e6 / bs as f64, ops: 1 });
                }
            }
        }
        Measurement {
            host: Host {
                data_dir: "/d".into(),
                measured_in: "/d".into(),
                kernel: "6.1".into(),
                filesystem: "ext4".into(),
                cores: 2,
                numa_nodes: vec!["node0: 0-1".into()],
                memory_bytes: Some(16 << 30),
                memlock_bytes: None,
            },
            points,
            sync_rounds: 3,
            sync_p50_us: 900,
            sync_p99_us: 2000,
        }
    }

    #[test]
    fn tune_choice_follows_the_knees() {
        // Bandwidth saturates at 256 KiB blocks and at depth 4.
        let m = measurement(|_, bs, depth| (bs.min(256 << 10) as f64 / 1024.0) * depth.min(4) as f64);
        let s = choose(&m, 2, 100 << 20);
        assert_eq!(s.write_bytes, Some(256 << 10));
        assert_eq!(s.ring_depth, Some(128), "4 x 16 = 64, at least glommio's 128");
        assert_eq!(s.io_memory_bytes, Some(10 << 20), "256 KiB x 4 x 4 = 4 MiB, at least 10 MiB");
        let r = Resources::from_memory(Some(16 << 30), 2, 100 << 20);
        assert_eq!(s.cache_bytes_per_shard, Some(r.cache_bytes as u64));
        // A device that wants depth 16 and 4 MiB writes.
        let m = measurement(|_, bs, depth| bs as f64 / 1024.0 * depth as f64);
        let s = choose(&m, 2, 100 << 20);
        assert_eq!((s.write_bytes, s.ring_depth), (Some(4 << 20), Some(256)));
        assert_eq!(s.io_memory_bytes, Some(256 << 20), "4 MiB x 16 x 4, capped");
        // The file round-trips through the parser `start` uses.
        let props = properties(&m, s.clone());
        let text = props.render("test");
        let back = IoProperties::parse(&text, Path::new("x.toml")).unwrap();
        assert_eq!(back.settings, s, "{text}");
    }
}
