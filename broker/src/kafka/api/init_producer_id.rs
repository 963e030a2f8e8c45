//! InitProducerId (key 22), v0-4: hands out producer ids for idempotent producers.
//! Transactions are not supported: a transactional id is refused.
//!
//! Without a transactional id, Kafka (and Redpanda) always answer with a fresh producer id and
//! epoch 0, whatever producer id and epoch the request carries (v3+, KIP-360): the client takes
//! what it is given. Riptide does the same, so an id this broker did not issue is never bumped
//! and adopted (its producer windows in the logs belong to someone else, or to nobody).

use super::{encode, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::{INVALID_REQUEST, NONE, UNKNOWN_SERVER_ERROR};
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::InitProducerId,
    versions: VersionRange { min: 0, max: 4 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let body: InitProducerIdRequest = req.decode()?;
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if body.transactional_id.is_some() {
        tracing::warn!("InitProducerId with a transactional id: transactions are not supported");
        resp.error_code = INVALID_REQUEST;
    } else if let Some(id) = req.shard.allocate_producer_id() {
        if body.producer_id.0 >= 0 {
            tracing::debug!(old = body.producer_id.0, epoch = body.producer_epoch, new = id, "producer re-initialised with a new id");
        }
        resp.error_code = NONE;
        resp.producer_id = ProducerId(id);
        resp.producer_epoch = 0;
    } else {
        tracing::error!("producer id range of this run exhausted: restart the broker to reserve a new one");
        resp.error_code = UNKNOWN_SERVER_ERROR;
    }
    Ok(Reply::Now(encode(&resp, req.version)?))
}
