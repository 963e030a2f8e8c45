//! Heartbeat (key 12), v0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to
//! rejoin.

use super::{encode_later, handler, opt_string, Api, ApiError, Reply, Request};
use crate::kafka::errors::COORDINATOR_NOT_AVAILABLE;
use crate::shard::groups::{GroupReply, GroupRequest, HeartbeatRequest};
use futures::FutureExt;
use kafka_protocol::messages::{ApiKey, HeartbeatRequest as WireRequest, HeartbeatResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::Heartbeat,
    versions: VersionRange { min: 0, max: 4 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: WireRequest = req.decode()?;
    let shard = req.shard.clone();
    let version = req.version;
    let args = HeartbeatRequest {
        group_id: body.group_id.to_string(),
        generation: body.generation_id,
        member_id: body.member_id.to_string(),
        instance_id: opt_string(&body.group_instance_id),
    };
    Ok(Reply::Later(
        async move {
            let group = args.group_id.clone();
            let mut resp = HeartbeatResponse::default();
            resp.error_code = match shard.group_call(&group, GroupRequest::Heartbeat(args)).await {
                Some(GroupReply::Heartbeat(code)) => code,
                _ => COORDINATOR_NOT_AVAILABLE,
            };
            encode_later(&resp, ApiKey::Heartbeat, version)
        }
        .boxed_local(),
    ))
}
