//! Scrape-time collection. The admin thread (not a shard) asks every shard for a snapshot over
//! a runtime-agnostic channel (`futures::channel::mpsc`, whose receiver a shard task awaits);
//! each shard answers on a std channel, read with a timeout. Nothing here touches a shard's
//! data: the shard copies its own counters on its own thread.

use super::exposition;
use super::snapshot::{Merged, ShardSnapshot};
use crate::shard::{Shard, CONTROLLER_SHARD};
use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::StreamExt;
use serde::Serialize;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a scrape waits for the shards' answers.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// A scrape's request to one shard.
pub struct SnapshotRequest {
    reply: std::sync::mpsc::Sender<ShardSnapshot>,
}

struct ShardLink {
    tx: UnboundedSender<SnapshotRequest>,
    /// Set once the shard serves clients, cleared when it stops.
    up: AtomicBool,
}

/// The admin thread's handle on the shards (Send + Sync).
pub struct Collector {
    shards: Vec<ShardLink>,
    per_partition: bool,
    data_dir: PathBuf,
    node_id: i32,
}

/// The receiving ends, one per shard; each shard takes its own at start.
pub struct Inboxes(Mutex<Vec<Option<UnboundedReceiver<SnapshotRequest>>>>);

impl Inboxes {
    pub fn take(&self, shard: usize) -> Option<UnboundedReceiver<SnapshotRequest>> {
        self.0.lock().ok()?.get_mut(shard)?.take()
    }
}

/// A collector for `shards` shards and their inboxes.
pub fn channels(shards: usize, per_partition: bool, data_dir: PathBuf, node_id: i32) -> (Arc<Collector>, Arc<Inboxes>) {
    let (links, inboxes): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| {
            let (tx, rx) = unbounded();
            (ShardLink { tx, up: AtomicBool::new(false) }, Some(rx))
        })
        .unzip();
    (Arc::new(Collector { shards: links, per_partition, data_dir, node_id }), Arc::new(Inboxes(Mutex::new(inboxes))))
}

/// What /health answers.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Health {
    /// Every shard up, the data dir writable and the controller known.
    pub ready: bool,
    pub shards: usize,
    pub shards_up: usize,
    pub data_dir: String,
    pub data_dir_writable: bool,
    pub controller_known: bool,
    /// Node id of the active controller (this broker: single node).
    pub controller_id: Option<i32>,
    pub node_id: i32,
}

impl Collector {
    /// Marks a shard as serving (or stopped).
    pub fn set_up(&self, shard: usize, up: bool) {
        if let Some(link) = self.shards.get(shard) {
            link.up.store(up, Ordering::SeqCst);
        }
    }

    fn up(&self, shard: usize) -> bool {
        self.shards[shard].up.load(Ordering::SeqCst)
    }

    /// Asks every shard that is up for its snapshot; returns those that answered in time.
    pub fn collect(&self, timeout: Duration) -> Vec<ShardSnapshot> {
        let (reply, answers) = std::sync::mpsc::channel();
        let mut asked = 0;
        for (i, link) in self.shards.iter().enumerate() {
            if self.up(i) && link.tx.unbounded_send(SnapshotRequest { reply: reply.clone() }).is_ok() {
                asked += 1;
            }
        }
        drop(reply);
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(asked);
        while got.len() < asked {
            match answers.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(s) => got.push(s),
                Err(_) => break,
            }
        }
        if got.len() < asked {
            tracing::warn!(asked, answered = got.len(), "metrics scrape: some shards did not answer in time");
        }
        got.sort_by_key(|s| s.shard);
        got
    }

    /// The /metrics body.
    pub fn metrics(&self) -> String {
        let snapshots = self.collect(SCRAPE_TIMEOUT);
        exposition::render(Merged::of(self.shards.len(), self.per_partition, snapshots))
    }

    /// The /health answer. A shard counts as up if it is serving and answers a snapshot request.
    pub fn health(&self) -> Health {
        let answered = self.collect(SCRAPE_TIMEOUT);
        let shards_up = answered.len();
        let controller_known = answered.iter().any(|s| s.is_controller);
        let data_dir_writable = data_dir_writable(&self.data_dir);
        Health {
            ready: shards_up == self.shards.len() && data_dir_writable && controller_known,
            shards: self.shards.len(),
            shards_up,
            data_dir: self.data_dir.display().to_string(),
            data_dir_writable,
            controller_known,
            controller_id: controller_known.then_some(self.node_id),
            node_id: self.node_id,
        }
    }
}

/// Creates, writes, syncs and removes a small file in the data dir (on the admin thread, never
/// on a shard's reactor).
fn data_dir_writable(dir: &std::path::Path) -> bool {
    use std::io::Write;
    let path = dir.join(".riptide-health-probe");
    let ok = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(b"ok")?;
        f.sync_data()
    });
    let _ = std::fs::remove_file(&path);
    ok.is_ok()
}

/// Shard side: answers snapshot requests until the collector is gone.
pub async fn serve(shard: Rc<Shard>, mut inbox: UnboundedReceiver<SnapshotRequest>) {
    while let Some(req) = inbox.next().await {
        let _ = req.reply.send(snapshot_of(&shard));
    }
}

/// This shard's snapshot: its counters, its storage counters, its logs' gauges.
pub fn snapshot_of(shard: &Shard) -> ShardSnapshot {
    let budget = shard.config.resources.request_budget_bytes;
    ShardSnapshot {
        shard: shard.id,
        counters: super::counters(),
        storage: storage::stats::snapshot(),
        logs: shard.partitions.log_gauges(),
        offline_partitions: shard.partitions.offline_count(),
        connections_open: shard.connections.get() as u64,
        request_budget_bytes: budget,
        request_budget_used_bytes: budget.saturating_sub(shard.request_budget.available()),
        cache_budget_bytes: shard.config.resources.cache_bytes as u64,
        is_controller: shard.id == CONTROLLER_SHARD,
    }
}
