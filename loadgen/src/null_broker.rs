//! A null broker: speaks just enough Kafka to acknowledge every produce and store nothing.
//!
//! Its throughput with a given client is the ceiling of client + loopback on the machine. One
//! thread per connection over `std::net`, codecs from `kafka-protocol`. Supported requests:
//! ApiVersions (0-3, answering error 35 with the list for newer versions so clients step down),
//! Metadata (0-12; unknown topics are auto-created), Produce (3-9; acks=0 gets no response),
//! Fetch (4-12; waits and answers empty), ListOffsets (1-7; offset 0), InitProducerId (0-4),
//! CreateTopics (2-5). librdkafka picks the record format from ApiVersions as a whole, so Produce
//! 3+ and Fetch 4+ are both advertised, else it sends legacy MessageSets.

use crate::constants::{
    NULL_BROKER_CONNECTIONS_MAX, NULL_BROKER_FETCH_WAIT_MS_MAX, NULL_BROKER_FRAME_BYTES_MAX,
    NULL_BROKER_PARTITIONS_DEFAULT, NULL_BROKER_READ_BUFFER_BYTES,
};
use crate::error::{Error, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    FetchResponse, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, ProducerId, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Kafka error code UNSUPPORTED_VERSION.
const ERROR_UNSUPPORTED_VERSION: i16 = 35;
/// The node id of the only broker.
const NODE_ID: i32 = 0;
/// Offset of the record count inside a v2 record batch header.
const BATCH_RECORDS_COUNT_OFFSET: usize = 57;
/// Size of a v2 record batch header.
const BATCH_HEADER_BYTES: usize = 61;
/// Offset of the batch length field (after the 8-byte base offset).
const BATCH_LENGTH_OFFSET: usize = 8;

/// API keys and version ranges advertised, and served.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::InitProducerId, 0, 4),
];

/// Configuration of a null broker.
#[derive(Debug, Clone)]
pub struct NullBrokerConfig {
    pub listen: SocketAddr,
    /// Host advertised in Metadata; defaults to the listen IP.
    pub advertised_host: Option<String>,
    /// Partitions of an auto-created topic.
    pub partitions_default: u32,
}

impl NullBrokerConfig {
    pub fn new(listen: SocketAddr) -> Self {
        NullBrokerConfig {
            listen,
            advertised_host: None,
            partitions_default: NULL_BROKER_PARTITIONS_DEFAULT,
        }
    }
}

/// Counters of what the null broker received.
#[derive(Debug, Default)]
pub struct NullBrokerStats {
    pub requests: AtomicU64,
    pub produce_requests: AtomicU64,
    pub produce_bytes: AtomicU64,
    pub produce_records: AtomicU64,
    pub connections: AtomicUsize,
}

#[derive(Debug)]
struct State {
    host: String,
    port: i32,
    partitions_default: u32,
    topics: Mutex<BTreeMap<String, u32>>,
    next_offset: AtomicI64,
    next_producer_id: AtomicI64,
    stats: NullBrokerStats,
    stop: AtomicBool,
}

/// A running null broker; stops when [`NullBroker::shutdown`] is called or it is dropped.
#[derive(Debug)]
pub struct NullBroker {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl NullBroker {
    /// Binds and starts serving in background threads.
    pub fn start(config: NullBrokerConfig) -> Result<NullBroker> {
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| Error::io(format!("bind {}", config.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("local_addr", e))?;
        let state = Arc::new(State {
            host: config
                .advertised_host
                .unwrap_or_else(|| addr.ip().to_string()),
            port: i32::from(addr.port()),
            partitions_default: config.partitions_default.max(1),
            topics: Mutex::new(BTreeMap::new()),
            next_offset: AtomicI64::new(0),
            next_producer_id: AtomicI64::new(1_000),
            stats: NullBrokerStats::default(),
            stop: AtomicBool::new(false),
        });
        let accept_state = state.clone();
        let accept = thread::Builder::new()
            .name("null-broker-accept".into())
            .spawn(move || accept_loop(listener, accept_state))
            .map_err(|e| Error::io("spawn accept thread", e))?;
        Ok(NullBroker {
            addr,
            state,
            accept: Some(accept),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &NullBrokerStats {
        &self.state.stats
    }

    /// Stops accepting; open connections end when their client closes them.
    pub fn shutdown(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for NullBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    for stream in listener.incoming() {
        if state.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(stream) = stream else { continue };
        if state.stats.connections.load(Ordering::Relaxed) >= NULL_BROKER_CONNECTIONS_MAX {
            continue; // dropped: closes the connection
        }
        state.stats.connections.fetch_add(1, Ordering::Relaxed);
        let s = state.clone();
        let spawned = thread::Builder::new()
            .name("null-broker-conn".into())
            .spawn(move || {
                let _ = serve_connection(stream, &s);
                s.stats.connections.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            state.stats.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn serve_connection(stream: TcpStream, state: &State) -> Result<()> {
    stream.set_nodelay(true).map_err(|e| Error::io("nodelay", e))?;
    let mut writer = stream.try_clone().map_err(|e| Error::io("clone socket", e))?;
    let mut reader = BufReader::with_capacity(NULL_BROKER_READ_BUFFER_BYTES, stream);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let mut len_buf = [0_u8; 4];
        if reader.read_exact(&mut len_buf).is_err() {
            return Ok(()); // client closed
        }
        let len = i32::from_be_bytes(len_buf);
        if len < 8 || len as usize > NULL_BROKER_FRAME_BYTES_MAX {
            return Err(Error::Protocol(format!("bad frame length {len}")));
        }
        let mut frame = vec![0_u8; len as usize];
        reader
            .read_exact(&mut frame)
            .map_err(|e| Error::io("read frame", e))?;
        state.stats.requests.fetch_add(1, Ordering::Relaxed);
        out.clear();
        if handle_frame(Bytes::from(frame), state, &mut out)? {
            writer
                .write_all(&out)
                .map_err(|e| Error::io("write response", e))?;
        }
        if state.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
    }
}

fn proto<T>(r: anyhow::Result<T>) -> Result<T> {
    r.map_err(|e| Error::Protocol(e.to_string()))
}

/// Decodes one request frame and encodes its response into `out` (length prefix included).
/// Returns false when no response is due (Produce with acks=0).
pub fn handle_frame(mut frame: Bytes, state_ref: &impl NullState, out: &mut BytesMut) -> Result<bool> {
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(api_key_raw)
        .map_err(|_| Error::Protocol(format!("unknown api key {api_key_raw}")))?;
    let header = proto(RequestHeader::decode(
        &mut frame,
        api_key.request_header_version(version),
    ))?;
    let supported = SUPPORTED_APIS.iter().find(|(k, _, _)| *k == api_key);
    let Some(&(_, min, max)) = supported else {
        return Err(Error::Protocol(format!("unsupported api {api_key:?}")));
    };
    out.put_i32(0); // length, patched below
    if api_key == ApiKey::ApiVersions {
        // The ApiVersions response header is always v0.
        proto(ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(out, 0))?;
        let (error, v) = if version > max {
            (ERROR_UNSUPPORTED_VERSION, 0)
        } else {
            (0, version)
        };
        let body = ApiVersionsResponse::default()
            .with_error_code(error)
            .with_api_keys(
                SUPPORTED_APIS
                    .iter()
                    .map(|(k, lo, hi)| {
                        ApiVersion::default()
                            .with_api_key(*k as i16)
                            .with_min_version(*lo)
                            .with_max_version(*hi)
                    })
                    .collect(),
            );
        proto(body.encode(out, v))?;
    } else {
        if version < min || version > max {
            return Err(Error::Protocol(format!("{api_key:?} v{version} not supported")));
        }
        proto(ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(out, api_key.response_header_version(version)))?;
        let respond = match api_key {
            ApiKey::Produce => produce(frame, version, state_ref, out)?,
            ApiKey::Metadata => metadata(frame, version, state_ref, out)?,
            ApiKey::Fetch => fetch(frame, version, out)?,
            ApiKey::ListOffsets => list_offsets(frame, version, out)?,
            ApiKey::InitProducerId => {
                let id = state_ref.next_producer_id();
                proto(InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0)
                    .encode(out, version))?;
                true
            }
            ApiKey::CreateTopics => create_topics(frame, version, state_ref, out)?,
            _ => unreachable!("SUPPORTED_APIS and this match agree"),
        };
        if !respond {
            return Ok(false);
        }
    }
    let len = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(true)
}

/// What the request handlers need from the broker state (a trait so tests can supply their own).
pub trait NullState {
    fn host(&self) -> &str;
    fn port(&self) -> i32;
    /// Partitions of `topic`, auto-creating it with the default count.
    fn topic_partitions(&self, topic: &str) -> u32;
    fn create_topic(&self, topic: &str, partitions: u32);
    fn all_topics(&self) -> Vec<(String, u32)>;
    /// Reserves `records` offsets and returns the first.
    fn reserve_offsets(&self, records: i64) -> i64;
    fn next_producer_id(&self) -> i64;
    fn count_produce(&self, bytes: u64, records: u64);
}

impl NullState for State {
    fn host(&self) -> &str {
        &self.host
    }
    fn port(&self) -> i32 {
        self.port
    }
    fn topic_partitions(&self, topic: &str) -> u32 {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        *topics.entry(topic.to_owned()).or_insert(self.partitions_default)
    }
    fn create_topic(&self, topic: &str, partitions: u32) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.insert(topic.to_owned(), partitions.max(1));
    }
    fn all_topics(&self) -> Vec<(String, u32)> {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
    fn reserve_offsets(&self, records: i64) -> i64 {
        self.next_offset.fetch_add(records, Ordering::Relaxed)
    }
    fn next_producer_id(&self) -> i64 {
        self.next_producer_id.fetch_add(1, Ordering::Relaxed)
    }
    fn count_produce(&self, bytes: u64, records: u64) {
        self.stats.produce_requests.fetch_add(1, Ordering::Relaxed);
        self.stats.produce_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.stats.produce_records.fetch_add(records, Ordering::Relaxed);
    }
}

/// Counts the records of the v2 batches in `records` by reading only batch headers.
pub fn count_records(records: &[u8]) -> u64 {
    let mut total = 0_u64;
    let mut rest = records;
    while rest.len() >= BATCH_HEADER_BYTES {
        let mut len_field = &rest[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4];
        let batch_len = len_field.get_i32();
        let mut count_field = &rest[BATCH_RECORDS_COUNT_OFFSET..BATCH_RECORDS_COUNT_OFFSET + 4];
        total += u64::try_from(count_field.get_i32()).unwrap_or(0);
        let whole = 12 + usize::try_from(batch_len).unwrap_or(usize::MAX);
        if whole > rest.len() {
            break;
        }
        rest = &rest[whole..];
    }
    total
}

fn produce(mut frame: Bytes, version: i16, state: &impl NullState, out: &mut BytesMut) -> Result<bool> {
    let request = proto(ProduceRequest::decode(&mut frame, version))?;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic in &request.topic_data {
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for p in &topic.partition_data {
            let records = p.records.as_deref().unwrap_or_default();
            let count = count_records(records);
            state.count_produce(records.len() as u64, count);
            let base = state.reserve_offsets(count as i64);
            partitions.push(
                PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_base_offset(base)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(0),
            );
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(partitions),
        );
    }
    if request.acks == 0 {
        return Ok(false);
    }
    proto(ProduceResponse::default().with_responses(responses).encode(out, version))?;
    Ok(true)
}

fn metadata_topic(name: &str, partitions: u32) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
        .with_partitions(
            (0..partitions as i32)
                .map(|i| {
                    MetadataResponsePartition::default()
                        .with_partition_index(i)
                        .with_leader_id(BrokerId(NODE_ID))
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![BrokerId(NODE_ID)])
                        .with_isr_nodes(vec![BrokerId(NODE_ID)])
                })
                .collect(),
        )
}

fn metadata(mut frame: Bytes, version: i16, state: &impl NullState, out: &mut BytesMut) -> Result<bool> {
    let request = proto(MetadataRequest::decode(&mut frame, version))?;
    let topics = match request.topics {
        // v0: an empty list means all topics; v1+: null means all.
        Some(list) if !(version == 0 && list.is_empty()) => list
            .iter()
            .filter_map(|t| t.name.as_ref())
            .map(|n| metadata_topic(n.0.as_str(), state.topic_partitions(n.0.as_str())))
            .collect(),
        _ => state
            .all_topics()
            .iter()
            .map(|(n, p)| metadata_topic(n, *p))
            .collect(),
    };
    let response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(NODE_ID))
            .with_host(StrBytes::from_string(state.host().to_owned()))
            .with_port(state.port())])
        .with_cluster_id(Some(StrBytes::from_static_str("riptide-null-broker")))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(topics);
    proto(response.encode(out, version))?;
    Ok(true)
}

fn fetch(mut frame: Bytes, version: i16, out: &mut BytesMut) -> Result<bool> {
    let request = proto(FetchRequest::decode(&mut frame, version))?;
    let wait_ms = u64::try_from(request.max_wait_ms).unwrap_or(0);
    thread::sleep(Duration::from_millis(wait_ms.min(NULL_BROKER_FETCH_WAIT_MS_MAX)));
    let responses = request
        .topics
        .iter()
        .map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_high_watermark(0)
                                .with_last_stable_offset(0)
                                .with_log_start_offset(0)
                                .with_records(Some(Bytes::new()))
                        })
                        .collect(),
                )
        })
        .collect();
    proto(FetchResponse::default().with_responses(responses).encode(out, version))?;
    Ok(true)
}

fn list_offsets(mut frame: Bytes, version: i16, out: &mut BytesMut) -> Result<bool> {
    let request = proto(ListOffsetsRequest::decode(&mut frame, version))?;
    let topics = request
        .topics
        .iter()
        .map(|t| {
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_timestamp(-1)
                                .with_offset(0)
                        })
                        .collect(),
                )
        })
        .collect();
    proto(ListOffsetsResponse::default().with_topics(topics).encode(out, version))?;
    Ok(true)
}

fn create_topics(mut frame: Bytes, version: i16, state: &impl NullState, out: &mut BytesMut) -> Result<bool> {
    let request = proto(CreateTopicsRequest::decode(&mut frame, version))?;
    let results = request
        .topics
        .iter()
        .map(|t| {
            let partitions = u32::try_from(t.num_partitions).unwrap_or(1).max(1);
            if !request.validate_only {
                state.create_topic(t.name.0.as_str(), partitions);
            }
            CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_num_partitions(partitions as i32)
                .with_replication_factor(t.replication_factor.max(1))
        })
        .collect();
    proto(CreateTopicsResponse::default().with_topics(results).encode(out, version))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiVersionsRequest, ProduceRequest};

    fn request(api: ApiKey, version: i16, body: impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    fn state() -> State {
        State {
            host: "127.0.0.1".into(),
            port: 9092,
            partitions_default: 3,
            topics: Mutex::new(BTreeMap::new()),
            next_offset: AtomicI64::new(0),
            next_producer_id: AtomicI64::new(1_000),
            stats: NullBrokerStats::default(),
            stop: AtomicBool::new(false),
        }
    }

    fn batch(records: usize) -> Bytes {
        riptide_testkit::unkeyed_batch(records, Bytes::from_static(b"hello"), 0)
    }

    #[test]
    fn null_broker_api_versions_falls_back_to_v0_with_error() {
        let s = state();
        let mut out = BytesMut::new();
        let frame = request(ApiKey::ApiVersions, 4, ApiVersionsRequest::default());
        assert!(handle_frame(frame, &s, &mut out).unwrap());
        let mut body = out.freeze();
        let len = body.get_i32();
        assert_eq!(len as usize, body.len());
        let header = ResponseHeader::decode(&mut body, 0).unwrap();
        assert_eq!(header.correlation_id, 7);
        let r = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(r.error_code, ERROR_UNSUPPORTED_VERSION);
        assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::Fetch as i16 && k.min_version == 4));
    }

    #[test]
    fn null_broker_produce_acks_every_partition() {
        let s = state();
        let body = ProduceRequest::default().with_acks(1).with_timeout_ms(1000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_index(0).with_records(Some(batch(3))),
                    PartitionProduceData::default().with_index(1).with_records(Some(batch(2))),
                ]),
        ]);
        let mut out = BytesMut::new();
        assert!(handle_frame(request(ApiKey::Produce, 9, body.clone()), &s, &mut out).unwrap());
        let mut resp = out.split().freeze();
        resp.advance(4);
        ResponseHeader::decode(&mut resp, ApiKey::Produce.response_header_version(9)).unwrap();
        let r = ProduceResponse::decode(&mut resp, 9).unwrap();
        let parts = &r.responses[0].partition_responses;
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].base_offset, parts[1].base_offset), (0, 3));
        assert_eq!(s.stats.produce_records.load(Ordering::Relaxed), 5);
        // acks=0: nothing to send back.
        let body0 = body.with_acks(0);
        assert!(!handle_frame(request(ApiKey::Produce, 9, body0), &s, &mut out).unwrap());
    }

    #[test]
    fn null_broker_metadata_auto_creates_topics() {
        let s = state();
        let body = MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("auto")))),
        ]));
        let mut out = BytesMut::new();
        assert!(handle_frame(request(ApiKey::Metadata, 12, body), &s, &mut out).unwrap());
        let mut resp = out.freeze();
        resp.advance(4);
        ResponseHeader::decode(&mut resp, ApiKey::Metadata.response_header_version(12)).unwrap();
        let r = MetadataResponse::decode(&mut resp, 12).unwrap();
        assert_eq!(r.topics[0].partitions.len(), 3);
        assert_eq!(r.brokers[0].port, 9092);
    }

    #[test]
    fn null_broker_counts_records_from_batch_headers() {
        let mut two = BytesMut::new();
        two.extend_from_slice(&batch(4));
        two.extend_from_slice(&batch(6));
        assert_eq!(count_records(&two), 10);
        assert_eq!(count_records(&[0_u8; 10]), 0);
    }

    #[test]
    fn null_broker_serves_a_real_socket() {
        let mut broker = NullBroker::start(NullBrokerConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let mut stream = TcpStream::connect(broker.local_addr()).unwrap();
        let frame = request(ApiKey::ApiVersions, 3, ApiVersionsRequest::default());
        stream.write_all(&(frame.len() as i32).to_be_bytes()).unwrap();
        stream.write_all(&frame).unwrap();
        let mut len = [0_u8; 4];
        stream.read_exact(&mut len).unwrap();
        let mut body = vec![0_u8; i32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).unwrap();
        let mut body = Bytes::from(body);
        ResponseHeader::decode(&mut body, 0).unwrap();
        let r = ApiVersionsResponse::decode(&mut body, 3).unwrap();
        assert_eq!(r.error_code, 0);
        drop(stream);
        broker.shutdown();
    }
}
