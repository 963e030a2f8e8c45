//! An in-process broker on a free port, and a raw Kafka wire client for golden-frame tests.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use riptide_broker::config::{default_log_config, BrokerConfig, GroupConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct TestBroker {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Compaction runs this often in test brokers (`RIPTIDE_TEST_CLEANER_BACKOFF_MS` changes it).
fn cleaner_backoff_ms() -> u64 {
    std::env::var("RIPTIDE_TEST_CLEANER_BACKOFF_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestBroker {
    pub fn start(shards: usize) -> TestBroker {
        Self::start_with(shards, None)
    }

    /// A broker whose logs sync through `sync_override` (fault injection).
    pub fn start_with(shards: usize, sync_override: Option<storage::io::Syncer>) -> TestBroker {
        Self::start_full(shards, sync_override, GroupConfig::default(), None)
    }

    /// A broker with these group settings, on `data_dir` if given (a restart on the same data).
    pub fn start_groups(shards: usize, groups: GroupConfig, data_dir: Option<tempfile::TempDir>) -> TestBroker {
        Self::start_full(shards, None, groups, data_dir)
    }

    fn start_full(shards: usize, sync_override: Option<storage::io::Syncer>, groups: GroupConfig, dir: Option<tempfile::TempDir>) -> TestBroker {
        // Broker logs go to the test's captured output, shown when a test fails.
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = BrokerConfig {
            node_id: 0,
            listen: addr,
            advertised_host: "127.0.0.1".into(),
            advertised_port: port,
            data_dir: dir.path().to_path_buf(),
            shards,
            auto_create_topics: true,
            default_partitions: 4,
            socket_request_max_bytes: 8 << 20,
            log: default_log_config(),
            journal_bytes: 16 << 20,
            sync_override,
            net: Default::default(),
            admin: None,
            metrics_per_partition: false,
            resources: tuning::Resources::from_memory(Some(4 << 30), shards, 8 << 20),
            groups,
            cleaner_backoff_ms: cleaner_backoff_ms(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || riptide_broker::server::run_until(config, stop2));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "broker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let every shard reach accept() before the tests rely on SO_REUSEPORT spreading.
        std::thread::sleep(Duration::from_millis(100));
        TestBroker { addr, dir, stop, thread: Some(thread) }
    }

    pub fn connect(&self) -> Client {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { stream: s, correlation: 0 }
    }
}

impl TestBroker {
    /// Stops the broker cleanly and hands back its data dir (to start another on it).
    pub fn stop_keeping_data(mut self) -> tempfile::TempDir {
        self.shutdown();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let r = t.join().expect("broker thread panicked");
            if !std::thread::panicking() {
                r.expect("broker stopped with an error");
            }
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub struct Client {
    pub stream: TcpStream,
    correlation: i32,
}

impl Client {
    /// Sends one frame (size prefix added) and returns the response payload, or None if the
    /// broker closed the connection.
    pub fn roundtrip(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        self.send(payload);
        self.recv()
    }

    pub fn send(&mut self, payload: &[u8]) {
        let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(body)
    }

    /// True if the broker closed the connection (EOF or reset) instead of answering; panics if
    /// it did neither within the read timeout (a hang is not a close).
    pub fn closed(&mut self) -> bool {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, TimedOut, WouldBlock};
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => panic!("the broker neither answered nor closed the connection"),
            Err(e) => matches!(e.kind(), ConnectionReset | ConnectionAborted),
        }
    }

    /// Encodes `req` at `version` with the right header, sends it, decodes the response.
    pub fn call<Req: Encodable, Resp: Decodable>(&mut self, key: ApiKey, version: i16, req: &Req) -> Resp {
        self.correlation += 1;
        let resp = self.roundtrip(&encode_request(key, version, self.correlation, req)).expect("broker answered");
        let mut resp = Bytes::from(resp);
        let corr = i32::from_be_bytes(resp[..4].try_into().unwrap());
        assert_eq!(corr, self.correlation, "correlation id echoed");
        let header_len = if key.response_header_version(version) >= 1 { 5 } else { 4 };
        let _ = resp.split_to(header_len);
        Resp::decode(&mut resp, version).expect("response decodes")
    }
}

/// One request frame payload: the header `key` and `version` call for, then `req`.
pub fn encode_request<Req: Encodable>(key: ApiKey, version: i16, correlation: i32, req: &Req) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation;
    header.client_id = Some(StrBytes::from_static_str("riptide-test"));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

/// Request header v1 (non-flexible): key, version, correlation id, client id.
pub fn header_v1(key: i16, version: i16, correlation: i32, client: &str) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&correlation.to_be_bytes());
    h.extend_from_slice(&(client.len() as i16).to_be_bytes());
    h.extend_from_slice(client.as_bytes());
    h
}

/// A v2 record batch of `n` records, encoded by the kafka-protocol crate as a client would.
pub fn batch(n: usize, tag: &str, compression: Compression) -> Bytes {
    let records = (0..n).map(|i| (Some(Bytes::from(format!("key-{i}"))), Some(Bytes::from(format!("{tag}-{i}")))));
    riptide_testkit::record_batch(records, 1_700_000_000_000, compression)
}

impl TestBroker {
    pub fn connect_to(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { stream: s, correlation: 0 }
    }
}

/// A topic name for request bodies.
pub fn topic_name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_string(s.into()))
}

/// CreateTopics of one topic with `configs` overrides.
pub fn create_topics_request(topic: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) -> kafka_protocol::messages::CreateTopicsRequest {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    let mut t = CreatableTopic::default();
    t.name = topic_name(topic);
    t.num_partitions = partitions;
    t.replication_factor = rf;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = StrBytes::from_string(k.to_string());
            c.value = Some(StrBytes::from_string(v.to_string()));
            c
        })
        .collect();
    let mut req = kafka_protocol::messages::CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    req
}

/// Produce (acks=all) of one record set per listed partition of `topic`.
pub fn produce_request(topic: &str, parts: Vec<(i32, Bytes)>) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let mut t = TopicProduceData::default();
    t.name = topic_name(topic);
    t.partition_data = parts
        .into_iter()
        .map(|(i, r)| {
            let mut p = PartitionProduceData::default();
            p.index = i;
            p.records = Some(r);
            p
        })
        .collect();
    let mut req = kafka_protocol::messages::ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 5000;
    req.topic_data = vec![t];
    req
}
