//! DescribeCluster (key 60), v0-1: this node is the whole cluster and its controller.

use super::{encode, handler, str_bytes, Api, ApiError, Reply, Request};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::DescribeCluster,
    versions: VersionRange { min: 0, max: 1 },
    handle: handler!(handle),
};

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let _: DescribeClusterRequest = req.decode()?;
    let config = &req.shard.config;
    let mut broker = DescribeClusterBroker::default();
    broker.broker_id = BrokerId(config.node_id);
    broker.host = str_bytes(&config.advertised_host);
    broker.port = i32::from(config.advertised_port);
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = str_bytes(&req.shard.cluster_id);
    resp.controller_id = BrokerId(config.node_id);
    resp.endpoint_type = 1;
    resp.brokers = vec![broker];
    resp.cluster_authorized_operations = i32::MIN;
    Ok(Reply::Now(encode(&resp, req.version)?))
}
