//! Split per-partition work by owner shard, run it there, and gather answers in request order.

use crate::router::{shard_for, ShardRequest, ShardResponse};
use crate::shard::partitions::PartitionKeyed;
use crate::shard::Shard;
use futures::future::join_all;
use std::collections::BTreeMap;
use std::rc::Rc;

/// `items` are (owner shard, work). Answers come back in `items` order; an owner that cannot
/// answer (shutting down) yields `missing` for its items.
pub async fn scatter<T, R: Clone>(
    shard: &Rc<Shard>,
    items: Vec<(usize, T)>,
    make: fn(Vec<T>) -> ShardRequest,
    take: fn(ShardResponse) -> Option<Vec<R>>,
    missing: R,
) -> Vec<R> {
    let n = items.len();
    let mut per_shard: BTreeMap<usize, (Vec<usize>, Vec<T>)> = BTreeMap::new();
    for (i, (owner, item)) in items.into_iter().enumerate() {
        let entry = per_shard.entry(owner).or_default();
        entry.0.push(i);
        entry.1.push(item);
    }
    let calls = per_shard.into_iter().map(|(owner, (idx, work))| {
        let call = shard.call(owner, make(work));
        async move { (idx, call.await.ok().and_then(take).unwrap_or_default()) }
    });
    let mut out = vec![missing; n];
    for (idx, answers) in join_all(calls).await {
        for (i, a) in idx.into_iter().zip(answers) {
            out[i] = a;
        }
    }
    out
}

/// Per-partition work: queries for partitions that exist go to their owner shards (as
/// `make(queries)` batches), the others get `unknown`. Answers come back in request order.
pub async fn per_partition<Q: PartitionKeyed, R: Clone>(
    shard: &Rc<Shard>,
    requests: Vec<Q>,
    make: fn(Vec<Q>) -> ShardRequest,
    take: fn(ShardResponse) -> Option<Vec<R>>,
    unknown: R,
) -> Vec<R> {
    let exists: Vec<bool> = requests
        .iter()
        .map(|q| shard.topic_partitions(q.topic()).is_some_and(|n| (0..n).contains(&q.partition())))
        .collect();
    let items = requests
        .into_iter()
        .zip(&exists)
        .filter(|(_, ok)| **ok)
        .map(|(q, _)| (shard_for(q.topic(), q.partition(), shard.nr_shards), q))
        .collect();
    let mut answers = scatter(shard, items, make, take, unknown.clone()).await.into_iter();
    exists.into_iter().map(|ok| if ok { answers.next().expect("one answer per partition") } else { unknown.clone() }).collect()
}
