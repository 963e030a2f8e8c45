//! Metadata (key 3), v0-12: this node leads every partition. Topics named here are auto-created
//! when the request and the broker both allow it.

use super::{encode, handler, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::{INVALID_TOPIC_EXCEPTION, NONE, UNKNOWN_TOPIC_OR_PARTITION};
use crate::shard::Shard;
use crate::topics::{validate_topic_name, TopicMeta};
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use std::rc::Rc;

pub const API: Api = Api {
    key: ApiKey::Metadata,
    versions: VersionRange { min: 0, max: 12 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: MetadataRequest = req.decode()?;
    let shard = req.shard.clone();
    // v0: an empty list means all topics; v1+: null means all topics.
    let requested: Option<Vec<_>> = match body.topics {
        None => None,
        Some(t) if t.is_empty() && req.version == 0 => None,
        Some(t) => Some(t),
    };
    let auto_create = body.allow_auto_topic_creation || req.version < 4;
    let topics = match requested {
        None => shard.all_topics().iter().map(|m| topic_entry(&shard, m)).collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                let name = match (t.name, t.topic_id.is_nil()) {
                    (Some(n), _) => n.0.to_string(),
                    (None, false) => {
                        let id = u128::from_be_bytes(*t.topic_id.as_bytes());
                        match shard.all_topics().into_iter().find(|m| m.id == id) {
                            Some(m) => m.name,
                            None => continue,
                        }
                    }
                    (None, true) => continue,
                };
                out.push(named_topic(&shard, &name, auto_create).await);
            }
            out
        }
    };
    let config = &shard.config;
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(config.node_id);
    broker.host = str_bytes(&config.advertised_host);
    broker.port = i32::from(config.advertised_port);
    let mut resp = MetadataResponse::default();
    resp.brokers = vec![broker];
    resp.cluster_id = Some(str_bytes(&shard.cluster_id));
    resp.controller_id = BrokerId(config.node_id);
    resp.topics = topics;
    resp.cluster_authorized_operations = i32::MIN;
    Ok(Reply::Now(encode(&resp, req.version)?))
}

async fn named_topic(shard: &Rc<Shard>, name: &str, auto_create: bool) -> MetadataResponseTopic {
    if validate_topic_name(name).is_err() {
        return error_entry(name, INVALID_TOPIC_EXCEPTION);
    }
    let exists = if auto_create { shard.ensure_topic(name).await } else { shard.topic(name).is_some() };
    match (exists, shard.topic(name)) {
        (true, Some(meta)) => topic_entry(shard, &meta),
        _ => error_entry(name, UNKNOWN_TOPIC_OR_PARTITION),
    }
}

fn error_entry(name: &str, code: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.error_code = code;
    t.name = Some(TopicName(StrBytes::from_string(name.to_string())));
    t.topic_authorized_operations = i32::MIN;
    t
}

fn topic_entry(shard: &Shard, meta: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(shard.config.node_id);
    let mut t = MetadataResponseTopic::default();
    t.error_code = NONE;
    t.name = Some(TopicName(StrBytes::from_string(meta.name.clone())));
    t.topic_id = uuid::Uuid::from_bytes(meta.uuid_bytes());
    t.is_internal = crate::topics::is_internal(&meta.name);
    t.topic_authorized_operations = i32::MIN;
    t.partitions = (0..meta.partitions)
        .map(|p| {
            let mut part = MetadataResponsePartition::default();
            part.error_code = NONE;
            part.partition_index = p;
            part.leader_id = node;
            part.leader_epoch = crate::constants::SINGLE_NODE_LEADER_EPOCH;
            part.replica_nodes = vec![node];
            part.isr_nodes = vec![node];
            part
        })
        .collect();
    t
}
