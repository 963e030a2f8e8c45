//! FindCoordinator (key 10), v0-4 (v4: several keys at once). Single node: the coordinator of
//! every group is this broker, but the answer is checked with the shard that owns the group's
//! `__consumer_offsets` partition: while that partition cannot be served, the group has no
//! coordinator (COORDINATOR_NOT_AVAILABLE, clients retry). Transactional ids (key type 1) are
//! answered with this broker too; InitProducerId then refuses them (no transactions).

use super::{encode_later, handler, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::{COORDINATOR_NOT_AVAILABLE, INVALID_REQUEST, NONE};
use crate::shard::groups::{GroupReply, GroupRequest};
use crate::shard::Shard;
use futures::future::join_all;
use futures::FutureExt;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::VersionRange;
use std::rc::Rc;

pub const API: Api = Api {
    key: ApiKey::FindCoordinator,
    versions: VersionRange { min: 0, max: 4 },
    handle: handler!(handle),
};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// First version with a list of keys (KIP-699).
const BATCHED_VERSION: i16 = 4;

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: FindCoordinatorRequest = req.decode()?;
    let shard = req.shard.clone();
    let version = req.version;
    let keys: Vec<String> = if version >= BATCHED_VERSION {
        body.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![body.key.to_string()]
    };
    let key_type = body.key_type;
    Ok(Reply::Later(
        async move {
            let errors = join_all(keys.iter().map(|k| coordinator_error(&shard, key_type, k))).await;
            let resp = response(&shard, version, &keys, &errors);
            encode_later(&resp, ApiKey::FindCoordinator, version)
        }
        .boxed_local(),
    ))
}

async fn coordinator_error(shard: &Rc<Shard>, key_type: i8, key: &str) -> i16 {
    match key_type {
        KEY_TYPE_GROUP => match shard.group_call(key, GroupRequest::Coordinator(vec![key.to_string()])).await {
            Some(GroupReply::Coordinator(codes)) => codes.first().copied().unwrap_or(COORDINATOR_NOT_AVAILABLE),
            _ => COORDINATOR_NOT_AVAILABLE,
        },
        KEY_TYPE_TRANSACTION => NONE,
        _ => INVALID_REQUEST,
    }
}

fn message(error: i16) -> Option<&'static str> {
    match error {
        NONE => None,
        COORDINATOR_NOT_AVAILABLE => Some("The coordinator is not available."),
        _ => Some("Invalid coordinator key type."),
    }
}

fn response(shard: &Shard, version: i16, keys: &[String], errors: &[i16]) -> FindCoordinatorResponse {
    let config = &shard.config;
    let node = |error: i16| {
        if error == NONE {
            (BrokerId(config.node_id), str_bytes(&config.advertised_host), i32::from(config.advertised_port))
        } else {
            (BrokerId(-1), str_bytes(""), -1)
        }
    };
    let mut resp = FindCoordinatorResponse::default();
    if version >= BATCHED_VERSION {
        for (key, &error) in keys.iter().zip(errors) {
            let (node_id, host, port) = node(error);
            let mut c = Coordinator::default();
            c.key = str_bytes(key);
            c.node_id = node_id;
            c.host = host;
            c.port = port;
            c.error_code = error;
            c.error_message = message(error).map(str_bytes);
            resp.coordinators.push(c);
        }
    } else {
        let error = errors.first().copied().unwrap_or(INVALID_REQUEST);
        let (node_id, host, port) = node(error);
        resp.error_code = error;
        if version >= 1 {
            resp.error_message = message(error).map(str_bytes);
        }
        resp.node_id = node_id;
        resp.host = host;
        resp.port = port;
    }
    resp
}
