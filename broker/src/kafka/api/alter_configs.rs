//! AlterConfigs (key 33), v0-2: the older config API, still sent by clients (librdkafka's
//! `rd_kafka_AlterConfigs`, kafka-python, the Java Admin's deprecated `alterConfigs`). A topic's
//! overrides become exactly the entries given (null values are skipped, as Kafka does; on a
//! repeated key the last wins); keys not named return to their defaults. Broker configs are
//! static here. Also the code IncrementalAlterConfigs shares: resource checks, the controller
//! call and the per-resource answers.

use super::{encode, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::{INVALID_CONFIG, INVALID_REQUEST, KAFKA_STORAGE_ERROR, NONE};
use crate::shard::controller::{ConfigChange, ControllerCommand};
use crate::shard::Shard;
use crate::topics::ConfigAlteration;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey};
use kafka_protocol::protocol::VersionRange;
use std::collections::HashMap;
use std::rc::Rc;

pub const API: Api = Api {
    key: ApiKey::AlterConfigs,
    versions: VersionRange { min: 0, max: 2 },
    handle: handler!(handle),
};

pub(super) const RESOURCE_TOPIC: i8 = 2;
pub(super) const RESOURCE_BROKER: i8 = 4;

/// What a handler made of one resource: a topic change for the controller, or its answer.
pub(super) enum Parsed {
    Change(ConfigChange),
    Answer(i16, String),
}

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: AlterConfigsRequest = req.decode()?;
    let twice = repeated(body.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let parsed = body
        .resources
        .iter()
        .map(|r| match check_resource(r.resource_type, r.resource_name.as_str(), &twice) {
            Err((code, msg)) => Parsed::Answer(code, msg),
            Ok(()) => {
                let mut last: Vec<(String, String)> = Vec::new();
                for c in &r.configs {
                    let Some(value) = &c.value else { continue };
                    last.retain(|(k, _)| k != c.name.as_str());
                    last.push((c.name.to_string(), value.to_string()));
                }
                let alteration = ConfigAlteration::Replace(last);
                Parsed::Change(ConfigChange { topic: r.resource_name.to_string(), alteration })
            }
        })
        .collect();
    let answers = run(&req.shard, parsed, body.validate_only).await;
    let mut resp = AlterConfigsResponse::default();
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

/// The (type, name) pairs named more than once in a request.
pub(super) fn repeated<'a>(resources: impl Iterator<Item = (i8, &'a str)>) -> HashMap<(i8, String), usize> {
    let mut counts: HashMap<(i8, String), usize> = HashMap::new();
    for (t, n) in resources {
        *counts.entry((t, n.to_string())).or_default() += 1;
    }
    counts.retain(|_, n| *n > 1);
    counts
}

/// The checks both APIs make before looking at configs, with Kafka's codes: each resource at
/// most once (INVALID_REQUEST), topics only (broker configs are static: INVALID_CONFIG; other
/// resource types: INVALID_REQUEST).
pub(super) fn check_resource(rtype: i8, name: &str, repeated: &HashMap<(i8, String), usize>) -> Result<(), (i16, String)> {
    if repeated.contains_key(&(rtype, name.to_string())) {
        return Err((INVALID_REQUEST, "Each resource must appear at most once.".into()));
    }
    match rtype {
        RESOURCE_TOPIC => Ok(()),
        RESOURCE_BROKER => Err((
            INVALID_CONFIG,
            "broker configs cannot be changed while Riptide runs: set them in its config file and restart".into(),
        )),
        other => Err((INVALID_REQUEST, format!("resource type {other} is not supported"))),
    }
}

/// Runs the topic changes on the controller (one command, so they are persisted together) and
/// answers every resource in request order.
pub(super) async fn run(shard: &Rc<Shard>, parsed: Vec<Parsed>, validate_only: bool) -> Vec<(i16, Option<String>)> {
    let changes: Vec<ConfigChange> =
        parsed.iter().filter_map(|p| if let Parsed::Change(c) = p { Some(c.clone()) } else { None }).collect();
    let results = if changes.is_empty() {
        vec![]
    } else {
        shard.controller_call(ControllerCommand::AlterConfigs { topics: changes, validate_only }).await
    };
    parsed
        .into_iter()
        .map(|p| match p {
            Parsed::Answer(code, msg) => (code, Some(msg)),
            Parsed::Change(c) => match results.iter().find(|r| r.name == c.topic) {
                Some(r) if r.error == NONE => (NONE, None),
                Some(r) => (r.error, r.message.clone()),
                None => (KAFKA_STORAGE_ERROR, Some("controller unavailable".into())),
            },
        })
        .collect()
}
