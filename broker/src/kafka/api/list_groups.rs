//! ListGroups (key 16), v0-4: every group of every shard (v4: only those in the given states).

use super::{encode_later, handler, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::{COORDINATOR_NOT_AVAILABLE, NONE};
use crate::shard::groups::{GroupReply, GroupRequest};
use futures::FutureExt;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::ListGroups,
    versions: VersionRange { min: 0, max: 4 },
    handle: handler!(handle),
};

/// Groups carry their state, and the request may filter by state, from v4.
const STATES_VERSION: i16 = 4;

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: ListGroupsRequest = req.decode()?;
    let shard = req.shard.clone();
    let version = req.version;
    let states: Vec<String> = body.states_filter.iter().map(|s| s.to_string()).collect();
    Ok(Reply::Later(
        async move {
            let replies = shard.group_call_all(|| GroupRequest::List(states.clone())).await;
            let mut resp = ListGroupsResponse::default();
            resp.error_code = if replies.len() == shard.nr_shards { NONE } else { COORDINATOR_NOT_AVAILABLE };
            for reply in replies {
                let GroupReply::List(groups) = reply else { continue };
                for g in groups {
                    let mut listed = ListedGroup::default();
                    listed.group_id = GroupId(str_bytes(&g.group_id));
                    listed.protocol_type = str_bytes(&g.protocol_type);
                    if version >= STATES_VERSION {
                        listed.group_state = str_bytes(&g.state);
                    }
                    resp.groups.push(listed);
                }
            }
            encode_later(&resp, ApiKey::ListGroups, version)
        }
        .boxed_local(),
    ))
}
