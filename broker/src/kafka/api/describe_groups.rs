//! DescribeGroups (key 15), v0-5: state, protocol and members of each group, asked of each
//! group's coordinator shard. An unknown group is reported in state Dead without an error
//! (Kafka before v6). Member metadata and assignments are only filled in when Stable.

use super::{encode_later, handler, opt_str_bytes, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::COORDINATOR_NOT_AVAILABLE;
use crate::shard::groups::{GroupDescription, GroupReply, GroupRequest};
use crate::shard::Shard;
use futures::future::join_all;
use futures::FutureExt;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::protocol::VersionRange;
use std::rc::Rc;

pub const API: Api = Api {
    key: ApiKey::DescribeGroups,
    versions: VersionRange { min: 0, max: 5 },
    handle: handler!(handle),
};

/// What an unsecured Kafka reports when asked for a group's authorized operations: READ (3),
/// DELETE (6) and DESCRIBE (8), as bits.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// Authorized operations exist from v3; "not asked" is i32::MIN.
const AUTHORIZED_OPERATIONS_VERSION: i16 = 3;
/// Members carry their group instance id from v4.
const INSTANCE_ID_VERSION: i16 = 4;

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: DescribeGroupsRequest = req.decode()?;
    let shard = req.shard.clone();
    let version = req.version;
    let ids: Vec<String> = body.groups.iter().map(|g| g.to_string()).collect();
    let with_operations = body.include_authorized_operations;
    Ok(Reply::Later(
        async move {
            let described = join_all(ids.iter().map(|id| describe(&shard, id))).await;
            let mut resp = DescribeGroupsResponse::default();
            for d in described {
                resp.groups.push(entry(d, version, with_operations));
            }
            encode_later(&resp, ApiKey::DescribeGroups, version)
        }
        .boxed_local(),
    ))
}

async fn describe(shard: &Rc<Shard>, id: &str) -> GroupDescription {
    match shard.group_call(id, GroupRequest::Describe(vec![id.to_string()])).await {
        Some(GroupReply::Describe(mut v)) if !v.is_empty() => v.remove(0),
        _ => GroupDescription {
            group_id: id.to_string(),
            error: COORDINATOR_NOT_AVAILABLE,
            state: String::new(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: vec![],
        },
    }
}

fn entry(d: GroupDescription, version: i16, with_operations: bool) -> DescribedGroup {
    let mut g = DescribedGroup::default();
    g.error_code = d.error;
    g.group_id = GroupId(str_bytes(&d.group_id));
    g.group_state = str_bytes(&d.state);
    g.protocol_type = str_bytes(&d.protocol_type);
    g.protocol_data = str_bytes(&d.protocol);
    if version >= AUTHORIZED_OPERATIONS_VERSION {
        g.authorized_operations = if with_operations { GROUP_OPERATIONS } else { i32::MIN };
    }
    g.members = d
        .members
        .into_iter()
        .map(|m| {
            let mut member = DescribedGroupMember::default();
            member.member_id = str_bytes(&m.member_id);
            if version >= INSTANCE_ID_VERSION {
                member.group_instance_id = opt_str_bytes(m.instance_id.as_deref());
            }
            member.client_id = str_bytes(&m.client_id);
            member.client_host = str_bytes(&m.client_host);
            member.member_metadata = m.metadata;
            member.member_assignment = m.assignment;
            member
        })
        .collect();
    g
}
