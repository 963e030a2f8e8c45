//! InitProducerId (key 22), v0-4: hands out producer ids for idempotent producers.
//! Transactions are not supported: a transactional id is refused.

use super::{encode, handler, Api, ApiError, Reply, Request};
use crate::kafka::errors::{INVALID_REQUEST, NONE};
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
    if body.transactional_id.is_some() {
        tracing::warn!("InitProducerId with a transactional id: transactions are not supported");
        resp.error_code = INVALID_REQUEST;
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
    } else if body.producer_id.0 >= 0 && body.producer_epoch >= 0 && body.producer_epoch < i16::MAX - 1 {
        // A producer re-initialising (KIP-360) keeps its id with the next epoch.
        resp.error_code = NONE;
        resp.producer_id = body.producer_id;
        resp.producer_epoch = body.producer_epoch + 1;
    } else {
        resp.error_code = NONE;
        resp.producer_id = ProducerId(req.shard.allocate_producer_id());
        resp.producer_epoch = 0;
    }
    Ok(Reply::Now(encode(&resp, req.version)?))
}
