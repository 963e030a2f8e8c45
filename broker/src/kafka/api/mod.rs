//! One module per Kafka API. `REGISTRY` lists them once: it drives both dispatch and the
//! ApiVersions answer, so the two cannot drift.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod decode_check;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, VersionRange};
use std::rc::Rc;

/// A decoded request header and its still-encoded body.
pub struct Request {
    pub shard: Rc<Shard>,
    /// The client's address (group members report it as their host).
    pub peer: Option<std::net::SocketAddr>,
    pub registry: Rc<Registry>,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
}

impl Request {
    pub fn decode<T: Decodable>(&mut self) -> Result<T, ApiError> {
        T::decode(&mut self.body, self.version).map_err(|e| ApiError::Decode(e.to_string()))
    }
}

/// What a handler's first (in-order) phase produced.
pub enum Reply {
    Now(Vec<Bytes>),
    /// The response body once the second phase completes (e.g. produce durability, fetch wait).
    Later(LocalBoxFuture<'static, Vec<Bytes>>),
    /// No response at all (Produce with acks=0).
    Nothing,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    Decode(String),
    #[error("cannot encode response: {0}")]
    Encode(String),
}

pub type Handler = fn(Request) -> LocalBoxFuture<'static, Result<Reply, ApiError>>;

pub struct Api {
    pub key: ApiKey,
    pub versions: VersionRange,
    pub handle: Handler,
}

impl Api {
    pub fn supports(&self, version: i16) -> bool {
        (self.versions.min..=self.versions.max).contains(&version)
    }
}

pub const REGISTRY: &[Api] = &[
    produce::API,
    fetch::API,
    list_offsets::API,
    metadata::API,
    api_versions::API,
    create_topics::API,
    delete_topics::API,
    delete_records::API,
    offset_for_leader_epoch::API,
    init_producer_id::API,
    describe_configs::API,
    create_partitions::API,
    describe_cluster::API,
    alter_configs::API,
    incremental_alter_configs::API,
    find_coordinator::API,
    join_group::API,
    sync_group::API,
    heartbeat::API,
    leave_group::API,
    offset_commit::API,
    offset_fetch::API,
    describe_groups::API,
    list_groups::API,
    delete_groups::API,
    offset_delete::API,
];

/// Versions older than kafka-protocol's codec that an API decodes and encodes itself (Kafka 3.x
/// still serves them to old clients, e.g. sarama 1.22 and the lag monitors built on it): the
/// lowest such version per API.
pub const HAND_CODED_BELOW_CODEC: &[(ApiKey, i16)] = &[(ApiKey::ListOffsets, 0), (ApiKey::OffsetCommit, 0), (ApiKey::OffsetFetch, 0)];

const KEY_SLOTS: usize = 128;

/// Dispatch table indexed by API key, built from `REGISTRY` once per shard.
pub struct Registry {
    slots: Vec<Option<&'static Api>>,
}

impl Registry {
    /// Fails if an API is registered twice or claims versions our codec cannot speak.
    pub fn new(apis: &'static [Api]) -> Result<Registry, String> {
        let mut slots = vec![None; KEY_SLOTS];
        for api in apis {
            let slot = &mut slots[api.key as i16 as usize];
            if slot.is_some() {
                return Err(format!("{:?} registered twice", api.key));
            }
            let codec = api.key.valid_versions();
            let codec_min = HAND_CODED_BELOW_CODEC.iter().find(|(k, _)| *k == api.key).map_or(codec.min, |(_, v)| *v);
            if api.versions.min < codec_min || api.versions.max > codec.max || api.versions.is_empty() {
                return Err(format!("{:?} versions {} outside codec range {}", api.key, api.versions, codec));
            }
            *slot = Some(api);
        }
        Ok(Registry { slots })
    }

    pub fn get(&self, key: ApiKey) -> Option<&'static Api> {
        self.slots.get(key as i16 as usize).copied().flatten()
    }

    pub fn apis(&self) -> impl Iterator<Item = &'static Api> + '_ {
        self.slots.iter().flatten().copied()
    }

    pub fn unsupported_version_response(&self) -> Vec<Bytes> {
        api_versions::unsupported_version_body(self)
    }
}

/// Encodes a response body at `version`.
pub fn encode<T: Encodable>(msg: &T, version: i16) -> Result<Vec<Bytes>, ApiError> {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version).map_err(|e| ApiError::Encode(e.to_string()))?;
    Ok(vec![buf.freeze()])
}

/// Boxes an async handler into the registry's function-pointer type.
macro_rules! handler {
    ($f:path) => {{
        fn boxed(req: $crate::kafka::api::Request)
            -> futures::future::LocalBoxFuture<'static, Result<$crate::kafka::api::Reply, $crate::kafka::api::ApiError>> {
            Box::pin($f(req))
        }
        boxed
    }};
}
pub(crate) use handler;

/// Reads the non-flexible wire types of versions older than kafka-protocol's codec.
pub struct WireReader {
    buf: Bytes,
}

impl WireReader {
    pub fn new(buf: Bytes) -> WireReader {
        WireReader { buf }
    }

    fn take(&mut self, n: usize) -> Result<Bytes, ApiError> {
        if self.buf.len() < n {
            return Err(ApiError::Decode(format!("{n} bytes wanted, {} left", self.buf.len())));
        }
        Ok(self.buf.split_to(n))
    }

    pub fn i16(&mut self) -> Result<i16, ApiError> {
        Ok(i16::from_be_bytes(self.take(2)?[..].try_into().expect("2 bytes")))
    }

    pub fn i32(&mut self) -> Result<i32, ApiError> {
        Ok(i32::from_be_bytes(self.take(4)?[..].try_into().expect("4 bytes")))
    }

    pub fn i64(&mut self) -> Result<i64, ApiError> {
        Ok(i64::from_be_bytes(self.take(8)?[..].try_into().expect("8 bytes")))
    }

    pub fn nullable_string(&mut self) -> Result<Option<kafka_protocol::protocol::StrBytes>, ApiError> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let raw = self.take(n as usize)?;
        kafka_protocol::protocol::StrBytes::from_utf8(raw).map(Some).map_err(|_| ApiError::Decode("string is not UTF-8".into()))
    }

    pub fn string(&mut self) -> Result<kafka_protocol::protocol::StrBytes, ApiError> {
        self.nullable_string()?.ok_or_else(|| ApiError::Decode("null string".into()))
    }

    /// An array count; every element takes at least `min_element_bytes`, so a count beyond
    /// the bytes left is malformed (never a huge allocation).
    pub fn count(&mut self, min_element_bytes: usize) -> Result<usize, ApiError> {
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| ApiError::Decode(format!("array count {n}")))?;
        if n.saturating_mul(min_element_bytes.max(1)) > self.buf.len() {
            return Err(ApiError::Decode(format!("array of {n} elements in {} bytes", self.buf.len())));
        }
        Ok(n)
    }
}

pub fn str_bytes(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_string())
}

pub fn opt_str_bytes(s: Option<&str>) -> Option<kafka_protocol::protocol::StrBytes> {
    s.map(str_bytes)
}

pub fn opt_string(s: &Option<kafka_protocol::protocol::StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// Encodes a response built in a handler's second phase. Encoding an in-memory response fails
/// only if a handler set a field its version lacks (a bug): logged, and the client gets an
/// empty body (it fails that request and retries).
pub fn encode_later<T: Encodable>(msg: &T, key: ApiKey, version: i16) -> Vec<Bytes> {
    encode(msg, version).unwrap_or_else(|e| {
        tracing::error!("{key:?} v{version}: {e}");
        vec![Bytes::new()]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds_and_rejects_duplicates() {
        let reg = Registry::new(REGISTRY).expect("registry is consistent");
        assert_eq!(reg.apis().count(), REGISTRY.len());
        static TWICE: &[Api] = &[api_versions::API, api_versions::API];
        assert!(Registry::new(TWICE).err().expect("duplicate refused").contains("twice"));
    }
}
