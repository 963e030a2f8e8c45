//! LeaveGroup (key 13), v0-4: one member (v0-2), or several by member id or group instance id
//! (v3+, KIP-345: an administrator may remove static members by instance id).

use super::{encode_later, handler, opt_str_bytes, opt_string, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::{COORDINATOR_NOT_AVAILABLE, NONE};
use crate::shard::groups::{GroupReply, GroupRequest, LeaveRequest, LeaveResponse};
use futures::FutureExt;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::LeaveGroup,
    versions: VersionRange { min: 0, max: 4 },
    handle: handler!(handle),
};

/// First version with a list of members.
const BATCHED_VERSION: i16 = 3;

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: LeaveGroupRequest = req.decode()?;
    let shard = req.shard.clone();
    let version = req.version;
    let members: Vec<(String, Option<String>)> = if version >= BATCHED_VERSION {
        body.members.iter().map(|m| (m.member_id.to_string(), opt_string(&m.group_instance_id))).collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let args = LeaveRequest { group_id: body.group_id.to_string(), members: members.clone() };
    Ok(Reply::Later(
        async move {
            let group = args.group_id.clone();
            let answer = match shard.group_call(&group, GroupRequest::Leave(args)).await {
                Some(GroupReply::Leave(r)) => r,
                _ => LeaveResponse { error: COORDINATOR_NOT_AVAILABLE, members: vec![] },
            };
            let mut resp = LeaveGroupResponse::default();
            if version >= BATCHED_VERSION {
                resp.error_code = answer.error;
                for ((member_id, instance_id), error) in members.iter().zip(&answer.members) {
                    let mut m = MemberResponse::default();
                    m.member_id = str_bytes(member_id);
                    m.group_instance_id = opt_str_bytes(instance_id.as_deref());
                    m.error_code = *error;
                    resp.members.push(m);
                }
            } else {
                // One member: its error is the answer's (Kafka's LeaveGroupResponse for v0-2).
                let member_error = answer.members.first().copied().unwrap_or(NONE);
                resp.error_code = if answer.error != NONE { answer.error } else { member_error };
            }
            encode_later(&resp, ApiKey::LeaveGroup, version)
        }
        .boxed_local(),
    ))
}
