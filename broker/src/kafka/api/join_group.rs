//! JoinGroup (key 11), v0-7. The request goes to the group's coordinator shard and waits there
//! (second phase) until the join phase of the rebalance completes, bounded by the rebalance
//! timeout. v4+ first joins get MEMBER_ID_REQUIRED with a member id (KIP-394); v5+ carry the
//! static member's group.instance.id.

use super::{encode_later, handler, opt_str_bytes, opt_string, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::COORDINATOR_NOT_AVAILABLE;
use crate::shard::groups::{GroupReply, GroupRequest, JoinRequest, JoinResponse};
use futures::FutureExt;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::JoinGroup,
    versions: VersionRange { min: 0, max: 7 },
    handle: handler!(handle),
};

/// From v4 a member must join with the id the coordinator hands out (KIP-394).
const REQUIRE_KNOWN_MEMBER_ID_VERSION: i16 = 4;
/// From v7 the protocol type and name are nullable (null before a rebalance completed);
/// before, they are strings.
const NULLABLE_PROTOCOL_VERSION: i16 = 7;

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: JoinGroupRequest = req.decode()?;
    let shard = req.shard.clone();
    let version = req.version;
    let args = JoinRequest {
        group_id: body.group_id.to_string(),
        member_id: body.member_id.to_string(),
        instance_id: opt_string(&body.group_instance_id),
        client_id: req.header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        client_host: req.peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
        session_timeout_ms: body.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version == 0 { body.session_timeout_ms } else { body.rebalance_timeout_ms },
        protocol_type: body.protocol_type.to_string(),
        protocols: body.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= REQUIRE_KNOWN_MEMBER_ID_VERSION,
    };
    Ok(Reply::Later(
        async move {
            let group = args.group_id.clone();
            let member = args.member_id.clone();
            let answer = match shard.group_call(&group, GroupRequest::Join(args)).await {
                Some(GroupReply::Join(r)) => r,
                _ => JoinResponse::error(&member, COORDINATOR_NOT_AVAILABLE),
            };
            encode_later(&response(answer, version), ApiKey::JoinGroup, version)
        }
        .boxed_local(),
    ))
}

fn response(r: JoinResponse, version: i16) -> JoinGroupResponse {
    let nullable = version >= NULLABLE_PROTOCOL_VERSION;
    let mut resp = JoinGroupResponse::default();
    resp.error_code = r.error;
    resp.generation_id = r.generation;
    resp.protocol_type = if nullable { opt_str_bytes(r.protocol_type.as_deref()) } else { None };
    resp.protocol_name = match (r.protocol_name, nullable) {
        (Some(name), _) => Some(str_bytes(&name)),
        (None, true) => None,
        (None, false) => Some(str_bytes("")),
    };
    resp.leader = str_bytes(&r.leader);
    resp.member_id = str_bytes(&r.member_id);
    resp.members = r
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = str_bytes(&m.member_id);
            if version >= 5 {
                member.group_instance_id = opt_str_bytes(m.instance_id.as_deref());
            }
            member.metadata = m.metadata;
            member
        })
        .collect();
    resp
}
