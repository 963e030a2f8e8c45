//! IncrementalAlterConfigs (key 44), v0-1: SET, DELETE, APPEND and SUBTRACT on topic configs
//! (what the Java Admin and librdkafka's AdminClient send). All of a resource's operations
//! apply, or none; APPEND and SUBTRACT only on list configs (`topics::LIST_CONFIG_KEYS`).
//! Errors per resource, as Kafka: a repeated resource, a repeated key, an unknown operation or a
//! missing value for SET/APPEND/SUBTRACT is INVALID_REQUEST; an unknown key, a bad value or
//! APPEND on a non-list config is INVALID_CONFIG; an unknown topic UNKNOWN_TOPIC_OR_PARTITION.

use super::alter_configs::{check_resource, repeated, run, Parsed};
use super::{encode, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::INVALID_REQUEST;
use crate::shard::controller::ConfigChange;
use crate::topics::{ConfigAlteration, ConfigOp};
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::VersionRange;
use std::collections::HashSet;

pub const API: Api = Api {
    key: ApiKey::IncrementalAlterConfigs,
    versions: VersionRange { min: 0, max: 1 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: IncrementalAlterConfigsRequest = req.decode()?;
    let twice = repeated(body.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let parsed = body
        .resources
        .iter()
        .map(|r| {
            let checked = check_resource(r.resource_type, r.resource_name.as_str(), &twice).and_then(|()| operations(r));
            match checked {
                Err((code, msg)) => Parsed::Answer(code, msg),
                Ok(ops) => Parsed::Change(ConfigChange {
                    topic: r.resource_name.to_string(),
                    alteration: ConfigAlteration::Incremental(ops),
                }),
            }
        })
        .collect();
    let answers = run(&req.shard, parsed, body.validate_only).await;
    let mut resp = IncrementalAlterConfigsResponse::default();
    resp.responses = body
        .resources
        .iter()
        .zip(answers)
        .map(|(r, (code, msg))| {
            let mut out = AlterConfigsResourceResponse::default();
            out.resource_type = r.resource_type;
            out.resource_name = r.resource_name.clone();
            out.error_code = code;
            out.error_message = msg.map(|m| super::str_bytes(&m));
            out
        })
        .collect();
    Ok(Reply::Now(encode(&resp, req.version)?))
}

type Ops = Vec<(String, ConfigOp, Option<String>)>;

/// A resource's operations, with the request-shape checks Kafka makes first.
fn operations(r: &AlterConfigsResource) -> Result<Ops, (i16, String)> {
    let mut keys = HashSet::new();
    if !r.configs.iter().all(|c| keys.insert(c.name.as_str())) {
        return Err((INVALID_REQUEST, "Error due to duplicate config keys".into()));
    }
    let mut ops = Vec::with_capacity(r.configs.len());
    let mut null_values = Vec::new();
    for c in &r.configs {
        let op = ConfigOp::from_code(c.config_operation)
            .ok_or_else(|| (INVALID_REQUEST, format!("unknown config operation {} for {}", c.config_operation, c.name.as_str())))?;
        if op != ConfigOp::Delete && c.value.is_none() {
            null_values.push(c.name.to_string());
        }
        ops.push((c.name.to_string(), op, c.value.as_ref().map(|v| v.to_string())));
    }
    if !null_values.is_empty() {
        return Err((INVALID_REQUEST, format!("Null value not supported for : {}", null_values.join(", "))));
    }
    Ok(ops)
}
