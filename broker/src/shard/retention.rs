//! The retention service of a shard: periodically deletes the old segments of the logs it owns
//! (`retention.ms`, `retention.bytes`) and forgets idle producers. Compaction will live here too.

use super::Shard;
use crate::constants::RETENTION_CHECK_INTERVAL_MS;
use std::rc::Rc;
use std::time::Duration;

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
