//! The retention service of a shard: periodically deletes the old segments of the logs it owns
//! (`retention.ms`, `retention.bytes`) and forgets idle producers; and its compactor, which
//! cleans the logs of topics whose `cleanup.policy` has compact (`__consumer_offsets` among
//! them), one log at a time: a shard owns its logs, so nothing is shared across shards, and one
//! offset map at a time bounds the compactor's memory per shard.

use super::Shard;
use crate::constants::RETENTION_CHECK_INTERVAL_MS;
use std::rc::Rc;
use std::time::Duration;

/// Runs for the life of the shard: every `log.cleaner.backoff.ms`, a pass over the shard's
/// compacted logs.
pub async fn compaction_loop(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(shard.config.cleaner_backoff_ms)).await;
        compact_dirty_logs(&shard).await;
    }
}

/// Compacts every log of a compacted topic whose dirty ratio reaches its topic's
/// `min.cleanable.dirty.ratio`. The topic's configs are read at each pass: AlterConfigs takes
/// effect at the next one.
pub async fn compact_dirty_logs(shard: &Shard) {
    for (topic, p, partition) in shard.partitions.all_named() {
        let Some(config) = shard.topic(&topic).and_then(|meta| meta.compaction_config()) else { continue };
        // Compaction is background work: let requests run between logs.
        glommio::yield_if_needed().await;
        match partition.log.compact(&config, super::now_ms()).await {
            Ok(o) if o.segments_rewritten > 0 => {
                tracing::debug!(topic = %topic, partition = p, segments = o.segments_rewritten, before = o.bytes_before, after = o.bytes_after, "compacted")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(topic = %topic, partition = p, "compaction failed: {e}"),
        }
    }
}

/// Runs for the life of the shard.
pub async fn retention_loop(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(RETENTION_CHECK_INTERVAL_MS)).await;
        enforce_retention(&shard).await;
    }
}

/// Applies retention to every log the shard owns, one after another.
pub async fn enforce_retention(shard: &Shard) {
    for partition in shard.partitions.all() {
        match partition.log.apply_retention(super::now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(dir = %partition.log.dir().display(), segments = n, "retention deleted segments"),
            Err(e) => tracing::warn!(dir = %partition.log.dir().display(), "retention failed: {e}"),
        }
    }
}
