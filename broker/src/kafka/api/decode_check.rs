//! Decode-only view of the request path, for the fuzzer (`fuzz/`) and the regression tests.
//!
//! It mirrors what a connection does with a frame before a handler touches the shard
//! (`connection::handle`: preamble, registry lookup, version check, header) and what the
//! handler's `Request::decode` does with the body, plus the Produce hot-path parsers
//! (`storage::validate_batches`, `storage::BatchHeader::parse`). Nothing here needs a shard.
//!
//! `decoder` maps every registered API key to its request type; the unit test below fails when
//! an API is added to `REGISTRY` without a decoder here, so the fuzzer cannot forget one.

use super::{Registry, REGISTRY};
use crate::kafka::frame;
use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

/// Decodes a request body of `key` at `version` as the API's handler does.
pub type BodyDecoder = fn(&mut Bytes, i16) -> Result<(), String>;

fn decode_as<T: Decodable>(body: &mut Bytes, version: i16) -> Result<(), String> {
    T::decode(body, version).map(drop).map_err(|e| e.to_string())
}

/// v0 is hand-coded (older than the codec); the rest as the handler does.
fn decode_list_offsets(body: &mut Bytes, version: i16) -> Result<(), String> {
    if version == 0 {
        return super::list_offsets::decode_v0(std::mem::take(body)).map(drop).map_err(|e| e.to_string());
    }
    decode_as::<ListOffsetsRequest>(body, version)
}

fn decode_offset_commit(body: &mut Bytes, version: i16) -> Result<(), String> {
    super::offset_commit::decode_body(std::mem::take(body), version).map(drop).map_err(|e| e.to_string())
}

/// v0 has v1's layout (the handler decodes it as v1).
fn decode_offset_fetch(body: &mut Bytes, version: i16) -> Result<(), String> {
    decode_as::<OffsetFetchRequest>(body, version.max(1))
}

fn decode_produce(body: &mut Bytes, version: i16) -> Result<(), String> {
    let req = ProduceRequest::decode(body, version).map_err(|e| e.to_string())?;
    for topic in &req.topic_data {
        for partition in &topic.partition_data {
            if let Some(records) = &partition.records {
                check_records(records);
            }
        }
    }
    Ok(())
}

/// The body decoder of a registered API key (None: the key is not covered here).
pub fn decoder(key: ApiKey) -> Option<BodyDecoder> {
    let f: BodyDecoder = match key {
        ApiKey::Produce => decode_produce,
        ApiKey::Fetch => decode_as::<FetchRequest>,
        ApiKey::ListOffsets => decode_list_offsets,
        ApiKey::Metadata => decode_as::<MetadataRequest>,
        ApiKey::ApiVersions => decode_as::<ApiVersionsRequest>,
        ApiKey::CreateTopics => decode_as::<CreateTopicsRequest>,
        ApiKey::DeleteTopics => decode_as::<DeleteTopicsRequest>,
        ApiKey::DeleteRecords => decode_as::<DeleteRecordsRequest>,
        ApiKey::OffsetForLeaderEpoch => decode_as::<OffsetForLeaderEpochRequest>,
        ApiKey::InitProducerId => decode_as::<InitProducerIdRequest>,
        ApiKey::DescribeConfigs => decode_as::<DescribeConfigsRequest>,
        ApiKey::CreatePartitions => decode_as::<CreatePartitionsRequest>,
        ApiKey::DescribeCluster => decode_as::<DescribeClusterRequest>,
        ApiKey::AlterConfigs => decode_as::<AlterConfigsRequest>,
        ApiKey::IncrementalAlterConfigs => decode_as::<IncrementalAlterConfigsRequest>,
        ApiKey::FindCoordinator => decode_as::<FindCoordinatorRequest>,
        ApiKey::JoinGroup => decode_as::<JoinGroupRequest>,
        ApiKey::SyncGroup => decode_as::<SyncGroupRequest>,
        ApiKey::Heartbeat => decode_as::<HeartbeatRequest>,
        ApiKey::LeaveGroup => decode_as::<LeaveGroupRequest>,
        ApiKey::OffsetCommit => decode_offset_commit,
        ApiKey::OffsetFetch => decode_offset_fetch,
        ApiKey::DescribeGroups => decode_as::<DescribeGroupsRequest>,
        ApiKey::ListGroups => decode_as::<ListGroupsRequest>,
        ApiKey::DeleteGroups => decode_as::<DeleteGroupsRequest>,
        ApiKey::OffsetDelete => decode_as::<OffsetDeleteRequest>,
        _ => return None,
    };
    Some(f)
}

/// Decodes `body` as the request of `key` at `version` (for Produce, also runs every
/// partition's records through the storage parsers, see [`check_records`]).
pub fn decode_request(key: ApiKey, version: i16, body: &mut Bytes) -> Result<(), String> {
    match decoder(key) {
        Some(decode) => decode(body, version),
        None => Err(format!("{key:?} has no decoder in decode_check")),
    }
}

/// How far a frame got, as the broker would handle it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOutcome {
    /// Shorter than a preamble, unknown or unregistered key, unsupported version, bad header:
    /// the connection closes.
    Rejected,
    /// ApiVersions at a version we do not serve: answered at v0 without decoding anything.
    ApiVersionsFallback,
    /// The header decoded but the body did not: the connection closes.
    BadBody,
    /// Header and body decoded: the handler would run.
    Decoded,
}

/// Runs a frame payload (everything after the 4-byte size) through the steps of
/// `connection::handle` up to the handler's body decode.
pub fn decode_frame(registry: &Registry, mut payload: Bytes) -> FrameOutcome {
    let Ok(pre) = frame::preamble(&payload) else { return FrameOutcome::Rejected };
    let Ok(key) = ApiKey::try_from(pre.api_key) else { return FrameOutcome::Rejected };
    let Some(api) = registry.get(key) else { return FrameOutcome::Rejected };
    if !api.supports(pre.api_version) {
        return if key == ApiKey::ApiVersions { FrameOutcome::ApiVersionsFallback } else { FrameOutcome::Rejected };
    }
    if frame::decode_header(key, pre.api_version, &mut payload).is_err() {
        return FrameOutcome::Rejected;
    }
    match decode_request(key, pre.api_version, &mut payload) {
        Ok(()) => FrameOutcome::Decoded,
        Err(_) => FrameOutcome::BadBody,
    }
}

/// Every registered (key, version) pair, in registry order: the fuzzer's direct targets.
pub fn registered_versions() -> Vec<(ApiKey, i16)> {
    REGISTRY.iter().flat_map(|api| (api.versions.min..=api.versions.max).map(move |v| (api.key, v))).collect()
}

/// Runs one partition's `records` through the broker's hot-path parsers and panics if they
/// disagree with each other (the fuzzer's oracle; hostile input itself never panics here):
/// `validate_batches` accepts only whole, CRC-valid batches that tile the buffer exactly, and
/// each header it returns is what `BatchHeader::parse` reads at that batch's position.
pub fn check_records(records: &Bytes) {
    let first = storage::BatchHeader::parse(records);
    assert_eq!(first.is_ok(), records.len() >= storage::BatchHeader::SIZE, "parse accepts exactly 61+ bytes");
    let Ok(headers) = storage::validate_batches(records) else { return };
    assert!(!headers.is_empty(), "validate_batches accepted an empty record set");
    let mut pos = 0usize;
    for h in &headers {
        assert!(h.records_count > 0, "validate_batches accepted a batch without records");
        assert_eq!(h.magic, 2, "validate_batches accepted magic {}", h.magic);
        let parsed = storage::BatchHeader::parse(&records[pos..]).expect("a validated batch has a header");
        assert_eq!(format!("{parsed:?}"), format!("{h:?}"), "parse and validate_batches disagree at {pos}");
        assert!(h.total_size() >= storage::BatchHeader::SIZE, "batch shorter than its header");
        pos += h.total_size();
        assert!(pos <= records.len(), "validated batch runs past the buffer");
    }
    assert_eq!(pos, records.len(), "validated batches do not tile the record set");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    /// A new API in `REGISTRY` needs a decoder here, or the fuzzer would silently skip it.
    #[test]
    fn decode_check_covers_every_registered_api() {
        for api in REGISTRY {
            assert!(decoder(api.key).is_some(), "{:?} is registered but has no decoder in decode_check", api.key);
        }
        assert!(decode_request(ApiKey::UpdateFeatures, 0, &mut Bytes::new()).is_err());
    }

    fn encoded<T: Encodable + Default>(version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        T::default().encode(&mut buf, version).expect("default request encodes");
        buf.freeze()
    }

    fn encode_default(key: ApiKey, version: i16) -> Bytes {
        match key {
            ApiKey::Produce => encoded::<ProduceRequest>(version),
            ApiKey::Fetch => encoded::<FetchRequest>(version),
            ApiKey::ListOffsets => encoded::<ListOffsetsRequest>(version),
            ApiKey::Metadata => encoded::<MetadataRequest>(version),
            ApiKey::ApiVersions => encoded::<ApiVersionsRequest>(version),
            ApiKey::CreateTopics => encoded::<CreateTopicsRequest>(version),
            ApiKey::DeleteTopics => encoded::<DeleteTopicsRequest>(version),
            ApiKey::DeleteRecords => encoded::<DeleteRecordsRequest>(version),
            ApiKey::OffsetForLeaderEpoch => encoded::<OffsetForLeaderEpochRequest>(version),
            ApiKey::InitProducerId => encoded::<InitProducerIdRequest>(version),
            ApiKey::DescribeConfigs => encoded::<DescribeConfigsRequest>(version),
            ApiKey::CreatePartitions => encoded::<CreatePartitionsRequest>(version),
            ApiKey::DescribeCluster => encoded::<DescribeClusterRequest>(version),
            ApiKey::AlterConfigs => encoded::<AlterConfigsRequest>(version),
            ApiKey::IncrementalAlterConfigs => encoded::<IncrementalAlterConfigsRequest>(version),
            ApiKey::FindCoordinator => encoded::<FindCoordinatorRequest>(version),
            ApiKey::JoinGroup => encoded::<JoinGroupRequest>(version),
            ApiKey::SyncGroup => encoded::<SyncGroupRequest>(version),
            ApiKey::Heartbeat => encoded::<HeartbeatRequest>(version),
            ApiKey::LeaveGroup => encoded::<LeaveGroupRequest>(version),
            ApiKey::OffsetCommit => encoded::<OffsetCommitRequest>(version),
            ApiKey::OffsetFetch => encoded::<OffsetFetchRequest>(version),
            ApiKey::DescribeGroups => encoded::<DescribeGroupsRequest>(version),
            ApiKey::ListGroups => encoded::<ListGroupsRequest>(version),
            ApiKey::DeleteGroups => encoded::<DeleteGroupsRequest>(version),
            ApiKey::OffsetDelete => encoded::<OffsetDeleteRequest>(version),
            other => panic!("{other:?}: add it to encode_default"),
        }
    }

    /// Each decoder is the right type: a default request encoded at every registered version
    /// decodes to the end, and so does the whole frame.
    #[test]
    fn decode_check_round_trips_default_requests() {
        let registry = Registry::new(REGISTRY).unwrap();
        // Hand-coded versions below the codec have golden frames in tests/legacy_versions.rs.
        for (key, version) in registered_versions().into_iter().filter(|(k, v)| *v >= k.valid_versions().min) {
            let body = encode_default(key, version);
            let mut b = body.clone();
            decode_request(key, version, &mut b).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            assert!(b.is_empty(), "{key:?} v{version}: {} bytes left", b.len());
            let mut frame = BytesMut::new();
            let header = RequestHeader::default().with_request_api_key(key as i16).with_request_api_version(version);
            header.encode(&mut frame, key.request_header_version(version)).unwrap();
            frame.extend_from_slice(&body);
            assert_eq!(decode_frame(&registry, frame.freeze()), FrameOutcome::Decoded, "{key:?} v{version}");
        }
    }

    #[test]
    fn decode_check_frame_outcomes() {
        let registry = Registry::new(REGISTRY).unwrap();
        let outcome = |b: &[u8]| decode_frame(&registry, Bytes::copy_from_slice(b));
        assert_eq!(outcome(&[0, 18]), FrameOutcome::Rejected);
        assert_eq!(outcome(&[0, 57, 0, 0, 0, 0, 0, 1, 0xff, 0xff]), FrameOutcome::Rejected);
        assert_eq!(outcome(&[0, 18, 0, 99, 0, 0, 0, 1]), FrameOutcome::ApiVersionsFallback);
        // Metadata v1 claiming 5 topics, then nothing.
        assert_eq!(outcome(&[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 5]), FrameOutcome::BadBody);
    }

    #[test]
    fn decode_check_records_accepts_real_batches() {
        let one = riptide_testkit::unkeyed_batch(3, Bytes::from_static(b"v"), 1);
        let mut two = BytesMut::from(&one[..]);
        two.extend_from_slice(&one);
        check_records(&one);
        check_records(&two.freeze());
        assert!(storage::validate_batches(&one.slice(..one.len() - 1)).is_err());
        check_records(&one.slice(..one.len() - 1));
        check_records(&Bytes::new());
    }
}
