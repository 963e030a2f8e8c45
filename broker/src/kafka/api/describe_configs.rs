//! DescribeConfigs (key 32), v1-4: topic configs (overrides and defaults) and the broker's main
//! settings.

use super::{encode, handler, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::{INVALID_REQUEST, NONE, UNKNOWN_TOPIC_OR_PARTITION};
use crate::shard::Shard;
use crate::topics::{default_config_value, TOPIC_CONFIG_KEYS};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::DescribeConfigs,
    versions: VersionRange { min: 1, max: 4 },
    handle: handler!(handle),
};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: DescribeConfigsRequest = req.decode()?;
    let mut resp = DescribeConfigsResponse::default();
    resp.results = body.resources.iter().map(|r| describe(&req.shard, r)).collect();
    Ok(Reply::Now(encode(&resp, req.version)?))
}

fn describe(shard: &Shard, res: &DescribeConfigsResource) -> DescribeConfigsResult {
    let mut out = DescribeConfigsResult::default();
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name.clone();
    let entries: Vec<(String, String, i8)> = match res.resource_type {
        RESOURCE_TOPIC => match shard.topic(res.resource_name.as_str()) {
            Some(meta) => TOPIC_CONFIG_KEYS
                .iter()
                .map(|(k, _)| match meta.configs.get(*k) {
                    Some(v) => (k.to_string(), v.clone(), SOURCE_TOPIC),
                    None => (k.to_string(), default_config_value(k, &shard.config.log), SOURCE_DEFAULT),
                })
                .collect(),
            None => {
                out.error_code = UNKNOWN_TOPIC_OR_PARTITION;
                return out;
            }
        },
        RESOURCE_BROKER => broker_entries(shard),
        other => {
            out.error_code = INVALID_REQUEST;
            out.error_message = Some(str_bytes(&format!("resource type {other} is not supported")));
            return out;
        }
    };
    let wanted = |k: &str| res.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|w| w.as_str() == k));
    out.error_code = NONE;
    out.configs = entries
        .into_iter()
        .filter(|(k, _, _)| wanted(k))
        .map(|(k, v, source)| {
            let mut c = DescribeConfigsResourceResult::default();
            c.name = str_bytes(&k);
            c.value = Some(str_bytes(&v));
            c.read_only = res.resource_type == RESOURCE_BROKER;
            c.config_source = source;
            c
        })
        .collect();
    out
}

fn broker_entries(shard: &Shard) -> Vec<(String, String, i8)> {
    let c = &shard.config;
    let log = &c.log;
    [
        ("broker.id", c.node_id.to_string()),
        ("log.dirs", c.data_dir.display().to_string()),
        ("num.partitions", c.default_partitions.to_string()),
        ("auto.create.topics.enable", c.auto_create_topics.to_string()),
        ("socket.request.max.bytes", c.socket_request_max_bytes.to_string()),
        ("log.retention.ms", default_config_value("retention.ms", log)),
        ("log.retention.bytes", default_config_value("retention.bytes", log)),
        ("log.segment.bytes", default_config_value("segment.bytes", log)),
        ("log.flush.interval.ms", default_config_value("flush.ms", log)),
        ("riptide.shards", shard.nr_shards.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v, SOURCE_STATIC_BROKER))
    .collect()
}
