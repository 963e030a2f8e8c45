//! DeleteGroups (key 42), v0-2: only an Empty group can be deleted (NON_EMPTY_GROUP otherwise);
//! its offsets and metadata get tombstones in `__consumer_offsets`.

use super::{encode_later, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::COORDINATOR_NOT_AVAILABLE;
use crate::shard::groups::{GroupReply, GroupRequest};
use futures::future::join_all;
use futures::FutureExt;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::DeleteGroups,
    versions: VersionRange { min: 0, max: 2 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: DeleteGroupsRequest = req.decode()?;
    let shard = req.shard.clone();
    let version = req.version;
    Ok(Reply::Later(
        async move {
            let calls = body.groups_names.iter().map(|g| {
                let shard = shard.clone();
                let id = g.to_string();
                async move {
                    match shard.group_call(&id, GroupRequest::Delete(vec![id.clone()])).await {
                        Some(GroupReply::Delete(codes)) => codes.first().copied().unwrap_or(COORDINATOR_NOT_AVAILABLE),
                        _ => COORDINATOR_NOT_AVAILABLE,
                    }
                }
            });
            let codes = join_all(calls).await;
            let mut resp = DeleteGroupsResponse::default();
            for (g, code) in body.groups_names.iter().zip(codes) {
                let mut r = DeletableGroupResult::default();
                r.group_id = g.clone();
                r.error_code = code;
                resp.results.push(r);
            }
            encode_later(&resp, ApiKey::DeleteGroups, version)
        }
        .boxed_local(),
    ))
}
