//! Bootstrap: one glommio executor per shard, each pinned to a core, all listening on the same
//! port (SO_REUSEPORT, so the kernel spreads connections), joined by the channel mesh.

use crate::config::BrokerConfig;
use crate::constants::{META_DIR, SHARD_CONNECTIONS_MAX};
use crate::kafka::api::{Registry, REGISTRY};
use crate::kafka::budget::RequestBudget;
use crate::kafka::connection;
use crate::router::Meshes;
use crate::shard::Shard;
use crate::topics::{write_synced, TopicTable};
use anyhow::Context;
use futures::future::{select, FutureExt};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a shard checks whether SIGTERM/SIGINT arrived.
const STOP_POLL_MS: u64 = 50;

/// Runs the broker until SIGTERM or SIGINT; returns once every shard has flushed and closed.
pub fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handler")?;
    }
    run_until(config, stop)
}

/// Runs the broker until `stop` becomes true (tests embed a broker this way).
pub fn run_until(config: BrokerConfig, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let cluster_id = cluster_id(&config.data_dir)?;
    let table = TopicTable::load(&config.data_dir)?;
    let table_exists = TopicTable::path(&config.data_dir).exists();
    let retired = crate::partition_dirs::collect_garbage(&config.data_dir, &table, table_exists)?;
    remove_in_background(retired);
    let mut table = table;
    if crate::topics::ensure_internal_topics(&mut table, config.groups.offsets_topic_partitions) {
        table.persist(&config.data_dir).context("cannot persist the topic table with __consumer_offsets")?;
        tracing::info!(partitions = config.groups.offsets_topic_partitions, "created __consumer_offsets");
    }
    let producer_ids = crate::producer_ids::reserve(&config.data_dir, now_ms())?;
    crate::port::ensure_free(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    raise_memlock_limit();
    let host = tuning::HostFacts::probe();
    tracing::info!(cores = host.cores, memory_bytes = ?host.memory_bytes, memlock_bytes = ?host.memlock_bytes, "host");
    if !host.memlock_fits(config.shards) {
        anyhow::bail!(
            "locked-memory limit {:?} bytes is too low for {} shards (io_uring needs about {} per shard): \
             raise it with `ulimit -l` or run as root",
            host.memlock_bytes, config.shards, tuning::MEMLOCK_PER_SHARD_BYTES_MIN
        );
    }
    let io_memory_total = config.resources.io_memory_bytes as u64 * config.shards as u64;
    if host.memlock_bytes.is_some_and(|limit| limit < io_memory_total) {
        tracing::warn!(
            memlock_bytes = ?host.memlock_bytes, io_memory_bytes = config.resources.io_memory_bytes, shards = config.shards,
            "locked-memory limit below the shards' I/O memory: io_uring may not register their buffers (slower I/O); raise `ulimit -l`, or lower io.memory.bytes (riptide tune does)"
        );
    }
    let r = &config.resources;
    tracing::info!(
        write_bytes = r.write_bytes, io_memory_bytes = r.io_memory_bytes, ring_depth = r.ring_depth,
        cache_bytes_per_shard = r.cache_bytes, request_budget_bytes_per_shard = r.request_budget_bytes, source = %r.source, "resources"
    );
    // The admin endpoint is bound before the shards start: a taken port fails start-up at once.
    let (collector, inboxes) = crate::metrics::collect::channels(config.shards, config.metrics_per_partition, config.data_dir.clone(), config.node_id);
    let _admin = match config.admin {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on the admin address {addr} (--admin, or `none`)"))?;
            let handler = Arc::new(crate::metrics::admin::BrokerAdmin { collector: collector.clone() });
            let server = crate::metrics::admin::AdminServer::start(listener, handler).context("starting the admin endpoint")?;
            tracing::info!(admin = %server.local_addr(), "admin endpoint: /metrics, /health");
            Some(server)
        }
        None => None,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let placement = if config.shards <= cores {
        PoolPlacement::MaxSpread(config.shards, None)
    } else {
        tracing::warn!(shards = config.shards, cores, "more shards than cores: shards are not pinned");
        PoolPlacement::Unbound(config.shards)
    };
    tracing::info!(
        listen = %config.listen, shards = config.shards, data_dir = %config.data_dir.display(),
        topics = table.topics.len(), "starting riptide"
    );
    let meshes = Meshes::new(config.shards);
    let startup = Arc::new(crate::shard::journal::StartupBarrier::new(config.shards));
    let stop_all = stop.clone();
    let (io_memory, ring_depth) = (config.resources.io_memory_bytes, config.resources.ring_depth);
    let boot = ShardBoot { config, cluster_id, table, producer_ids, metrics: ShardMetricsLinks { collector, inboxes } };
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("riptide-shard")
        .io_memory(io_memory)
        .ring_depth(ring_depth)
        .on_all_shards(move || async move {
            let result = shard_main(boot, meshes, &startup, stop.clone()).await;
            if let Err(e) = &result {
                tracing::error!("shard failed: {e:#}");
                startup.abort();
                stop.store(true, Ordering::SeqCst);
            }
            result.map_err(|e| format!("{e:#}"))
        })
        .map_err(|e| anyhow::anyhow!("starting shard executors: {e}"))?;
    let mut failures = Vec::new();
    for joined in handles.join_all() {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("shard thread: {e}")),
        }
    }
    stop_all.store(true, Ordering::SeqCst);
    if !failures.is_empty() {
        anyhow::bail!("broker stopped with errors: {}", failures.join("; "));
    }
    tracing::info!("riptide stopped cleanly");
    Ok(())
}

/// What every shard starts from; each shard gets its own clone.
#[derive(Clone)]
struct ShardBoot {
    config: BrokerConfig,
    cluster_id: String,
    table: TopicTable,
    producer_ids: crate::producer_ids::ProducerIdRange,
    metrics: ShardMetricsLinks,
}

/// What a shard needs to answer scrapes: the collector (to say it is up) and its inbox.
#[derive(Clone)]
struct ShardMetricsLinks {
    collector: Arc<crate::metrics::collect::Collector>,
    inboxes: Arc<crate::metrics::collect::Inboxes>,
}

async fn shard_main(
    boot: ShardBoot,
    meshes: Meshes,
    startup: &crate::shard::journal::StartupBarrier,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let ShardBoot { config, cluster_id, table, producer_ids, metrics } = boot;
    let (router, inbound) = meshes.join().await?;
    crate::metrics::set_per_partition(config.metrics_per_partition);
    let listen = config.listen;
    let shard = Shard::open(config, cluster_id, table, router, producer_ids, startup).await?;
    shard.serve_inbound(inbound);
    let registry = Rc::new(Registry::new(REGISTRY).map_err(anyhow::Error::msg)?);
    let listener = glommio::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("shard {} cannot listen on {listen}: {e}", shard.id))?;
    tracing::info!(shard = shard.id, %listen, "shard ready");
    if let Some(inbox) = metrics.inboxes.take(shard.id) {
        glommio::spawn_local(crate::metrics::collect::serve(shard.clone(), inbox)).detach();
        metrics.collector.set_up(shard.id, true);
    }
    glommio::spawn_local(crate::shard::retention::retention_loop(shard.clone())).detach();
    glommio::spawn_local(crate::shard::retention::compaction_loop(shard.clone())).detach();
    let budget = RequestBudget::new(shard.request_budget.clone());
    let accept = accept_loop(shard.clone(), registry, budget, listener).boxed_local();
    let stopped = async move {
        while !stop.load(Ordering::SeqCst) {
            glommio::timer::sleep(Duration::from_millis(STOP_POLL_MS)).await;
        }
    }
    .boxed_local();
    select(accept, stopped).await;
    metrics.collector.set_up(shard.id, false);
    tracing::info!(shard = shard.id, "stopping: flushing logs");
    shard.close_all().await;
    Ok(())
}

async fn accept_loop(shard: Rc<Shard>, registry: Rc<Registry>, budget: Rc<RequestBudget>, listener: glommio::net::TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(shard = shard.id, "accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.connections.get() >= SHARD_CONNECTIONS_MAX {
            tracing::warn!(shard = shard.id, limit = SHARD_CONNECTIONS_MAX, "connection limit reached, refusing a client");
            crate::metrics::connection_refused();
            continue;
        }
        crate::metrics::connection_accepted();
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let (shard, registry, budget) = (shard.clone(), registry.clone(), budget.clone());
        glommio::spawn_local(async move {
            shard.connections.set(shard.connections.get() + 1);
            connection::serve(shard.clone(), registry, budget, stream, peer).await;
            shard.connections.set(shard.connections.get() - 1);
        })
        .detach();
    }
}

/// Removes directories of deleted partitions left by an earlier run, off the start-up path.
fn remove_in_background(dirs: Vec<std::path::PathBuf>) {
    if dirs.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new().name("riptide-remove".into()).spawn(move || {
        for dir in dirs {
            crate::partition_dirs::remove_retired(&dir);
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the removal of deleted partition directories: {e}");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One broker per data dir: a second one would corrupt the logs.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        anyhow::bail!("data dir {} is in use by another riptide process", dir.display());
    }
    Ok(file)
}

fn cluster_id(dir: &Path) -> anyhow::Result<String> {
    let meta = dir.join(META_DIR);
    std::fs::create_dir_all(&meta)?;
    let path = meta.join("cluster_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = format!("riptide-{:016x}", rand::random::<u64>());
            write_synced(&path, id.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
    }
}

/// io_uring registers buffers in locked memory; lift the limit when we may (root), else keep the
/// default, which glommio's defaults fit in.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads the struct we pass; no aliasing.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!("RLIMIT_MEMLOCK left as is: {}", std::io::Error::last_os_error());
    }
}
