//! SyncGroup (key 14), v0-5. Followers wait (second phase) until the leader's assignment has
//! been written to `__consumer_offsets`; then every member gets its own part.

use super::{encode_later, handler, opt_str_bytes, opt_string, Api, ApiError, Reply, Request};
use crate::kafka::errors::COORDINATOR_NOT_AVAILABLE;
use crate::shard::groups::{GroupReply, GroupRequest, SyncRequest, SyncResponse};
use futures::FutureExt;
use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::SyncGroup,
    versions: VersionRange { min: 0, max: 5 },
    handle: handler!(handle),
};

/// From v5 the request and the response carry the protocol type and name.
const PROTOCOL_VERSION: i16 = 5;

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: SyncGroupRequest = req.decode()?;
    let shard = req.shard.clone();
    let version = req.version;
    let args = SyncRequest {
        group_id: body.group_id.to_string(),
        generation: body.generation_id,
        member_id: body.member_id.to_string(),
        instance_id: opt_string(&body.group_instance_id),
        protocol_type: opt_string(&body.protocol_type),
        protocol_name: opt_string(&body.protocol_name),
        assignments: body.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
    };
    Ok(Reply::Later(
        async move {
            let group = args.group_id.clone();
            let answer = match shard.group_call(&group, GroupRequest::Sync(args)).await {
                Some(GroupReply::Sync(r)) => r,
                _ => SyncResponse::error(COORDINATOR_NOT_AVAILABLE),
            };
            let mut resp = SyncGroupResponse::default();
            resp.error_code = answer.error;
            if version >= PROTOCOL_VERSION {
                resp.protocol_type = opt_str_bytes(answer.protocol_type.as_deref());
                resp.protocol_name = opt_str_bytes(answer.protocol_name.as_deref());
            }
            resp.assignment = answer.assignment;
            encode_later(&resp, ApiKey::SyncGroup, version)
        }
        .boxed_local(),
    ))
}
