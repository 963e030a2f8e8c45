//! A shard: one glommio executor pinned to one core, and the services it runs.
//!
//! - `partitions`: the logs of the partitions `shard_for` gives this shard (produce, fetch,
//!   offsets, DeleteRecords), touched only by this shard's tasks;
//! - `controller` (shard 0 only): serialises topic metadata changes and broadcasts them;
//! - `groups`: the consumer groups whose `__consumer_offsets` partition this shard owns
//!   (`groups_coordinator` is their protocol, `groups_records` the topic's record formats);
//! - `retention`: periodic segment deletion.
//!
//! Every shard mirrors the topic table in its own `TopicTable`. Other shards reach a service
//! through `ShardRequest`s (one variant per service, with the service's own named request and
//! reply types) carried by the router.

pub mod controller;
pub mod journal;
pub mod groups;
pub mod groups_coordinator;
pub mod groups_records;
pub mod partitions;
pub mod retention;

use crate::config::BrokerConfig;
use crate::router::{Inbound, Router, ShardRequest, ShardResponse, Unreachable};
use crate::topics::{TopicMeta, TopicTable};
use controller::TopicChange;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use partitions::{PartitionReply, PartitionRequest, PartitionService};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use storage::DmaBackend;

pub use partitions::{Partition, PartitionLog};

pub const CONTROLLER_SHARD: usize = 0;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct Shard {
    pub id: usize,
    pub nr_shards: usize,
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub router: Router,
    topics: RefCell<TopicTable>,
    pub partitions: PartitionService,
    pub groups: groups::GroupService,
    next_producer_id: Cell<i64>,
    producer_ids_end: i64,
    /// Serialises metadata changes on the controller (shard 0).
    controller_lock: glommio::sync::Semaphore,
    pub connections: Cell<usize>,
    /// Bytes of requests read but not yet answered, across this shard's connections.
    pub request_budget: Rc<glommio::sync::Semaphore>,
}

impl Shard {
    /// Opens the shard: its journal (not started), the previous run's journal entries of the
    /// partitions it owns, every log it owns (replaying those entries into them), then — once
    /// every shard has done so (`startup`) — starts its journal anew.
    pub async fn open(
        config: BrokerConfig,
        cluster_id: String,
        table: TopicTable,
        router: Router,
        producer_ids: crate::producer_ids::ProducerIdRange,
        startup: &journal::StartupBarrier,
    ) -> anyhow::Result<Rc<Shard>> {
        // Producer ids: this run's range (reserved durably at start, so never reused after a
        // restart, whatever the clock does), interleaved across shards.
        let first_pid = producer_ids.first + router.me as i64;
        let backend = match &config.sync_override {
            Some(syncer) => DmaBackend::with_syncer(syncer.clone()),
            None => DmaBackend::new(),
        }
        .with_max_write_bytes(config.resources.write_bytes);
        let (cache_bytes, request_budget) = (config.resources.cache_bytes, config.resources.request_budget_bytes);
        let shard_journal = journal::open_journal(&backend, &config, router.me, router.nr_shards)?;
        let recovered = journal::read_previous(&backend, &config.data_dir, router.me, router.nr_shards, &table).await?;
        let shard = Rc::new(Shard {
            id: router.me,
            nr_shards: router.nr_shards,
            partitions: PartitionService::new(router.me, router.nr_shards, &config.data_dir, backend, shard_journal.clone(), cache_bytes),
            groups: groups::GroupService::new(router.me, router.nr_shards, config.groups),
            config,
            cluster_id,
            router,
            topics: RefCell::new(TopicTable::default()),
            next_producer_id: Cell::new(first_pid),
            producer_ids_end: producer_ids.end,
            controller_lock: glommio::sync::Semaphore::new(1),
            connections: Cell::new(0),
            request_budget: Rc::new(glommio::sync::Semaphore::new(request_budget)),
        });
        shard.partitions.set_replay(recovered.replay);
        for meta in table.topics.into_values() {
            shard.apply(TopicChange::Upsert(meta)).await;
        }
        // Every shard reads every journal directory (partitions may have moved between shards
        // since the last run): none may start over before all have replayed what they own.
        startup.wait(shard.id)?;
        shard_journal.begin(recovered.own_max_seq).await?;
        if shard.id == CONTROLLER_SHARD {
            journal::remove_unused(&shard.config.data_dir, shard.nr_shards);
        }
        // Groups are reloaded from the `__consumer_offsets` partitions opened above before the
        // shard serves: requests from other shards wait in the mesh meanwhile.
        shard.groups.load(&shard).await;
        glommio::spawn_local(groups::GroupService::write_loop(shard.clone())).detach();
        glommio::spawn_local(groups::GroupService::timer_loop(shard.clone())).detach();
        Ok(shard)
    }

    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        crate::router::shard_for(topic, partition, self.nr_shards) == self.id
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.topics.borrow().get(name).cloned()
    }

    pub fn topic_partitions(&self, name: &str) -> Option<i32> {
        self.topics.borrow().get(name).map(|t| t.partitions)
    }

    /// Whether the topic's `cleanup.policy` has compact (its records need keys).
    pub fn is_compacted(&self, name: &str) -> bool {
        self.topics.borrow().get(name).is_some_and(|t| t.cleanup_policy().compact)
    }

    pub fn all_topics(&self) -> Vec<TopicMeta> {
        let mut all: Vec<_> = self.topics.borrow().topics.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// A producer id never handed out before by this data dir; None once this run's range is
    /// used up (2^40 ids: not in practice).
    pub fn allocate_producer_id(&self) -> Option<i64> {
        let id = self.next_producer_id.get();
        if id >= self.producer_ids_end {
            return None;
        }
        self.next_producer_id.set(id + self.nr_shards as i64);
        Some(id)
    }

    /// Runs `req` here if this shard is the target, else on the target shard.
    pub fn call(self: &Rc<Self>, target: usize, req: ShardRequest) -> LocalBoxFuture<'static, Result<ShardResponse, Unreachable>> {
        let shard = self.clone();
        async move {
            if target == shard.id {
                return Ok(shard.serve(req).await);
            }
            shard.router.call(target, req).await
        }
        .boxed_local()
    }

    /// Executes a request addressed to one of this shard's services.
    pub async fn serve(self: Rc<Self>, req: ShardRequest) -> ShardResponse {
        match req {
            ShardRequest::Partitions(req) => ShardResponse::Partitions(self.partitions.serve(req).await),
            ShardRequest::Controller(cmd) => ShardResponse::Controller(self.controller(cmd).await),
            ShardRequest::Apply(change) => {
                self.apply(change).await;
                ShardResponse::Applied
            }
            ShardRequest::Groups(req) => ShardResponse::Groups(self.groups.serve(req).await),
        }
    }

    /// Serves requests and responses arriving from the other shards until the mesh closes.
    pub fn serve_inbound(self: &Rc<Self>, mut inbound: Inbound) {
        for (peer, rx) in inbound.requests.streams() {
            let shard = self.clone();
            glommio::spawn_local(async move {
                while let Some((id, req)) = rx.recv().await {
                    let shard2 = shard.clone();
                    // Produce appends happen here, in arrival order; only the wait is spawned.
                    let fut: LocalBoxFuture<'static, ShardResponse> = match req {
                        ShardRequest::Partitions(PartitionRequest::Produce { acks, parts }) => {
                            let done = shard.partitions.produce_append(acks, parts).await;
                            async move { ShardResponse::Partitions(PartitionReply::Produce(done.await)) }.boxed_local()
                        }
                        other => shard2.clone().serve(other).boxed_local(),
                    };
                    glommio::spawn_local(async move {
                        let resp = fut.await;
                        shard2.router.respond(peer, id, resp).await;
                    })
                    .detach();
                }
            })
            .detach();
        }
        for (_peer, rx) in inbound.responses.streams() {
            let shard = self.clone();
            glommio::spawn_local(async move {
                while let Some((id, resp)) = rx.recv().await {
                    shard.router.complete(id, resp);
                }
            })
            .detach();
        }
    }

    /// Applies a topic change broadcast by the controller: opens the logs of new partitions this
    /// shard owns, or closes and removes the logs of a deleted topic.
    pub async fn apply(&self, change: TopicChange) {
        match change {
            TopicChange::Upsert(meta) => {
                let old = self.topic_partitions(&meta.name).unwrap_or(0);
                let log_config = meta.log_config(&self.config.log);
                self.topics.borrow_mut().upsert(meta.clone());
                for p in (old..meta.partitions).filter(|p| self.owns(&meta.name, *p)) {
                    self.partitions.open(&meta.name, p, meta.id, log_config.clone()).await;
                }
            }
            TopicChange::Delete(name) => {
                let partitions = self.topic_partitions(&name).unwrap_or(0);
                self.topics.borrow_mut().remove(&name);
                self.partitions.remove_topic(&name, partitions).await;
            }
        }
        self.partitions.rebalance_cache();
    }

    /// Flushes and closes every log (clean shutdown).
    pub async fn close_all(&self) {
        self.partitions.close_all().await;
    }
}
