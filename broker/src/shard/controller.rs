//! The controller service (shard 0): serialises topic metadata changes, persists the topic
//! table, then broadcasts each change to every shard (`ShardRequest::Apply`), which applies it
//! to its own copy of the table and to the partitions it owns.

use super::{Shard, CONTROLLER_SHARD};
use crate::kafka::errors::*;
use crate::router::{ShardRequest, ShardResponse};
use crate::topics::{self, TopicMeta};
use futures::future::join_all;
use std::collections::HashSet;
use std::rc::Rc;
use storage::io::blocking;

/// A metadata change asked of the controller.
#[derive(Debug)]
pub enum ControllerCommand {
    CreateTopics { topics: Vec<TopicSpec>, validate_only: bool },
    DeleteTopics(Vec<String>),
    CreatePartitions { topics: Vec<PartitionCount>, validate_only: bool },
    /// AlterConfigs / IncrementalAlterConfigs: each topic's config overrides change as one
    /// (all of a topic's changes apply, or none).
    AlterConfigs { topics: Vec<ConfigChange>, validate_only: bool },
}

/// One topic's config change. The new overrides are worked out on the controller, under its
/// lock, from the table as it is then: concurrent changes to one topic do not lose each other.
#[derive(Debug, Clone)]
pub struct ConfigChange {
    pub topic: String,
    pub alteration: topics::ConfigAlteration,
}

#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub configs: Vec<(String, String)>,
}

/// CreatePartitions: the new total partition count of a topic.
#[derive(Debug, Clone)]
pub struct PartitionCount {
    pub topic: String,
    pub count: i32,
}

/// A change every shard applies, broadcast by the controller once it is persisted.
#[derive(Debug, Clone)]
pub enum TopicChange {
    Upsert(TopicMeta),
    Delete(String),
}

/// The controller's answer for one topic of a command, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub error: i16,
    pub message: Option<String>,
}

impl TopicResult {
    fn ok(name: String) -> TopicResult {
        TopicResult { name, error: NONE, message: None }
    }

    fn failed(name: String, error: i16, message: Option<String>) -> TopicResult {
        TopicResult { name, error, message }
    }
}

impl Shard {
    pub(super) async fn controller(self: &Rc<Self>, cmd: ControllerCommand) -> Vec<TopicResult> {
        assert_eq!(self.id, CONTROLLER_SHARD, "controller commands go to shard 0");
        let _permit = self.controller_lock.acquire_permit(1).await.expect("controller lock never closes");
        match cmd {
            ControllerCommand::CreateTopics { topics, validate_only } => self.create_topics(topics, validate_only).await,
            ControllerCommand::DeleteTopics(names) => self.delete_topics(names).await,
            ControllerCommand::CreatePartitions { topics, validate_only } => self.create_partitions(topics, validate_only).await,
            ControllerCommand::AlterConfigs { topics, validate_only } => self.alter_configs(topics, validate_only).await,
        }
    }

    fn check_spec(&self, spec: &TopicSpec) -> Result<(), (i16, String)> {
        let err = |e: topics::TopicError| (from_topic(&e), e.to_string());
        topics::validate_topic_name(&spec.name).map_err(err)?;
        topics::validate_partitions(spec.partitions).map_err(err)?;
        for (k, v) in &spec.configs {
            topics::validate_config(k, v).map_err(err)?;
        }
        if self.topic(&spec.name).is_some() {
            return Err((TOPIC_ALREADY_EXISTS, format!("topic {} already exists", spec.name)));
        }
        Ok(())
    }

    async fn create_topics(self: &Rc<Self>, specs: Vec<TopicSpec>, validate_only: bool) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(specs.len());
        let mut created = Vec::new();
        let mut seen = HashSet::new();
        for spec in specs {
            let verdict = if !seen.insert(spec.name.clone()) {
                Err((INVALID_REQUEST, format!("topic {} named twice", spec.name)))
            } else {
                self.check_spec(&spec)
            };
            match verdict {
                Err((code, msg)) => results.push(TopicResult::failed(spec.name, code, Some(msg))),
                Ok(()) => {
                    if !validate_only {
                        created.push(TopicMeta {
                            name: spec.name.clone(),
                            id: rand::random::<u128>() | 1,
                            partitions: spec.partitions,
                            configs: spec.configs.into_iter().collect(),
                        });
                    }
                    results.push(TopicResult::ok(spec.name));
                }
            }
        }
        if !created.is_empty() {
            let changes = created.into_iter().map(TopicChange::Upsert).collect();
            if let Err(e) = self.commit(changes).await {
                fail_unpersisted(&mut results, &e);
            }
        }
        for r in results.iter().filter(|r| r.error == NONE && !validate_only) {
            tracing::info!(topic = %r.name, "topic created");
        }
        results
    }

    async fn delete_topics(self: &Rc<Self>, names: Vec<String>) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(names.len());
        let mut changes = Vec::new();
        for name in names {
            if topics::is_internal(&name) {
                let msg = format!("internal topic {name} cannot be deleted");
                results.push(TopicResult::failed(name, TOPIC_AUTHORIZATION_FAILED, Some(msg)));
            } else if self.topic(&name).is_some() {
                changes.push(TopicChange::Delete(name.clone()));
                results.push(TopicResult::ok(name));
            } else {
                results.push(TopicResult::failed(name, UNKNOWN_TOPIC_OR_PARTITION, None));
            }
        }
        if let Err(e) = self.commit(changes).await {
            fail_unpersisted(&mut results, &e);
        }
        results
    }

    async fn create_partitions(self: &Rc<Self>, counts: Vec<PartitionCount>, validate_only: bool) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(counts.len());
        let mut changes = Vec::new();
        for PartitionCount { topic: name, count } in counts {
            let Some(mut meta) = self.topic(&name) else {
                results.push(TopicResult::failed(name, UNKNOWN_TOPIC_OR_PARTITION, None));
                continue;
            };
            if topics::is_internal(&name) {
                let msg = format!("the partition count of internal topic {name} places every group: it cannot change");
                results.push(TopicResult::failed(name, TOPIC_AUTHORIZATION_FAILED, Some(msg)));
                continue;
            }
            if count <= meta.partitions || topics::validate_partitions(count).is_err() {
                let msg = format!(
                    "topic {name} has {} partitions; new count {count} must be larger and <= {}",
                    meta.partitions,
                    crate::constants::TOPIC_PARTITIONS_MAX
                );
                results.push(TopicResult::failed(name, INVALID_PARTITIONS, Some(msg)));
                continue;
            }
            meta.partitions = count;
            if !validate_only {
                changes.push(TopicChange::Upsert(meta));
            }
            results.push(TopicResult::ok(name));
        }
        if let Err(e) = self.commit(changes).await {
            fail_unpersisted(&mut results, &e);
        }
        results
    }

    /// New config overrides are persisted and broadcast as an `Upsert` of the topic: every
    /// shard's table (DescribeConfigs, the config of partitions opened from then on) has them at
    /// once. Logs already open keep the `LogConfig` they were opened with until the next open
    /// (a restart): storage takes its config at `Log::open` only (see README, "Topic configs").
    async fn alter_configs(self: &Rc<Self>, alterations: Vec<ConfigChange>, validate_only: bool) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(alterations.len());
        let mut changes = Vec::new();
        for ConfigChange { topic: name, alteration } in alterations {
            let Some(mut meta) = self.topic(&name) else {
                let msg = format!("topic {name} does not exist");
                results.push(TopicResult::failed(name, UNKNOWN_TOPIC_OR_PARTITION, Some(msg)));
                continue;
            };
            match topics::alter_configs(&meta.configs, &alteration, &self.config.log) {
                Err(e) => {
                    let code = match &e {
                        topics::AlterError::Topic(t) => from_topic(t),
                        _ => INVALID_CONFIG,
                    };
                    results.push(TopicResult::failed(name, code, Some(e.to_string())));
                }
                Ok(configs) => {
                    if !validate_only && configs != meta.configs {
                        meta.configs = configs;
                        changes.push(TopicChange::Upsert(meta));
                    }
                    results.push(TopicResult::ok(name));
                }
            }
        }
        let altered: Vec<String> = changes.iter().filter_map(|c| match c {
            TopicChange::Upsert(m) => Some(m.name.clone()),
            TopicChange::Delete(_) => None,
        }).collect();
        if let Err(e) = self.commit(changes).await {
            fail_unpersisted(&mut results, &e);
        } else {
            for name in altered {
                tracing::info!(topic = %name, "topic configs altered");
            }
        }
        results
    }

    /// Persists the table with `changes` applied, then applies them on every shard. Nothing is
    /// applied unless the new table is durable: a change that cannot be persisted is reported
    /// as failed and leaves every shard as it was.
    async fn commit(self: &Rc<Self>, changes: Vec<TopicChange>) -> std::io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut table = self.topics.borrow().clone();
        for change in &changes {
            match change {
                TopicChange::Upsert(meta) => table.upsert(meta.clone()),
                TopicChange::Delete(name) => {
                    table.remove(name);
                }
            }
        }
        let data_dir = self.config.data_dir.clone();
        blocking(move || table.persist(&data_dir)).await?;
        for change in changes {
            let calls = (0..self.nr_shards).map(|s| self.call(s, ShardRequest::Apply(change.clone())));
            for result in join_all(calls).await {
                if let Err(e) = result {
                    tracing::warn!("metadata change not applied: {e}");
                }
            }
        }
        Ok(())
    }

    /// Creates topics through the controller; the change is visible on this shard when it returns.
    pub async fn create_topics_via_controller(self: &Rc<Self>, topics: Vec<TopicSpec>, validate_only: bool) -> Vec<TopicResult> {
        self.controller_call(ControllerCommand::CreateTopics { topics, validate_only }).await
    }

    /// Runs a metadata command on the controller. An unreachable controller (shutting down) gives
    /// an empty answer; handlers report every topic as failed then.
    pub async fn controller_call(self: &Rc<Self>, cmd: ControllerCommand) -> Vec<TopicResult> {
        match self.call(CONTROLLER_SHARD, ShardRequest::Controller(cmd)).await {
            Ok(ShardResponse::Controller(r)) => r,
            Ok(other) => unreachable!("controller answered {other:?}"),
            Err(e) => {
                tracing::warn!("metadata change failed: {e}");
                vec![]
            }
        }
    }

    /// Auto-creates `name` with the default partition count if allowed; true if it exists after.
    pub async fn ensure_topic(self: &Rc<Self>, name: &str) -> bool {
        if self.topic(name).is_some() {
            return true;
        }
        if !self.config.auto_create_topics || topics::validate_topic_name(name).is_err() {
            return false;
        }
        let spec = TopicSpec { name: name.to_string(), partitions: self.config.default_partitions, configs: vec![] };
        self.create_topics_via_controller(vec![spec], false).await;
        self.topic(name).is_some()
    }
}

/// Reports every change that was going to succeed as KAFKA_STORAGE_ERROR: the topic table could
/// not be written, so nothing changed.
fn fail_unpersisted(results: &mut [TopicResult], e: &std::io::Error) {
    tracing::error!("cannot persist topic metadata, change not applied: {e}");
    for r in results.iter_mut().filter(|r| r.error == NONE) {
        r.error = KAFKA_STORAGE_ERROR;
        r.message = Some(format!("topic metadata write failed: {e}"));
    }
}
