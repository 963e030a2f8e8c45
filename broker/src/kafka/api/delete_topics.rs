//! DeleteTopics (key 20), v1-6: the controller removes the topics and every shard deletes the
//! logs it owns.

use super::{encode, handler, str_bytes, Api, ApiError, Reply, Request};
use crate::kafka::errors::UNKNOWN_TOPIC_OR_PARTITION;
use crate::shard::controller::ControllerCommand;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::DeleteTopics,
    versions: VersionRange { min: 1, max: 6 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: DeleteTopicsRequest = req.decode()?;
    let shard = req.shard.clone();
    // v0-5 name topics in `topic_names`; v6 in `topics`, by name or id.
    let mut names: Vec<String> = body.topic_names.iter().map(|n| n.0.to_string()).collect();
    for t in &body.topics {
        match &t.name {
            Some(n) => names.push(n.0.to_string()),
            None => {
                let id = u128::from_be_bytes(*t.topic_id.as_bytes());
                match shard.all_topics().into_iter().find(|m| m.id == id) {
                    Some(m) => names.push(m.name),
                    None => names.push(String::new()),
                }
            }
        }
    }
    let results = shard.controller_call(ControllerCommand::DeleteTopics(names.clone())).await;
    let mut resp = DeleteTopicsResponse::default();
    for name in names {
        let (code, msg) = results.iter().find(|r| r.name == name).map_or((UNKNOWN_TOPIC_OR_PARTITION, None), |r| (r.error, r.message.clone()));
        let mut r = DeletableTopicResult::default();
        r.name = Some(TopicName(str_bytes(&name)));
        r.error_code = code;
        r.error_message = msg.map(|m| str_bytes(&m));
        if code == 0 {
            tracing::info!(topic = %name, "topic deleted");
        }
        resp.responses.push(r);
    }
    Ok(Reply::Now(encode(&resp, req.version)?))
}
