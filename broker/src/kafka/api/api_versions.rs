//! ApiVersions (key 18), v0-4. Built from the registry, so it lists exactly what we dispatch.
//! An unsupported request version is answered at v0 with UNSUPPORTED_VERSION and our ranges.

use super::{encode, handler, Api, ApiError, Registry, Reply, Request};
use crate::kafka::errors::{NONE, UNSUPPORTED_VERSION};
use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

pub const API: Api = Api {
    key: ApiKey::ApiVersions,
    versions: VersionRange { min: 0, max: 4 },
    handle: handler!(handle),
};

fn response(registry: &Registry, error_code: i16) -> ApiVersionsResponse {
    let mut resp = ApiVersionsResponse::default();
    resp.error_code = error_code;
    resp.api_keys = registry
        .apis()
        .map(|api| {
            let mut v = ApiVersion::default();
            v.api_key = api.key as i16;
            v.min_version = api.versions.min;
            v.max_version = api.versions.max;
            v
        })
        .collect();
    resp
}

pub fn unsupported_version_body(registry: &Registry) -> Vec<Bytes> {
    encode(&response(registry, UNSUPPORTED_VERSION), 0).expect("v0 ApiVersions always encodes")
}

async fn handle(mut req: Request) -> Result<Reply, ApiError> {
    let _: ApiVersionsRequest = req.decode()?;
    Ok(Reply::Now(encode(&response(&req.registry, NONE), req.version)?))
}
