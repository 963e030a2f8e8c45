//! Golden byte-level frames: what a client sends first and exactly what it must get back.

mod common;
use common::{header_v1, TestBroker};

/// Every (key, min, max) we advertise, in key order. Changing it is a compatibility decision:
/// update this list deliberately (and docs/kafka-compat-notes in shared/).
const ADVERTISED: &[(i16, i16, i16)] = &[
    (0, 3, 9),   // Produce
    (1, 4, 12),  // Fetch
    (2, 0, 7),   // ListOffsets
    (3, 0, 12),  // Metadata
    (8, 0, 9),   // OffsetCommit
    (9, 0, 9),   // OffsetFetch
    (10, 0, 4),  // FindCoordinator
    (11, 0, 7),  // JoinGroup
    (12, 0, 4),  // Heartbeat
    (13, 0, 4),  // LeaveGroup
    (14, 0, 5),  // SyncGroup
    (15, 0, 5),  // DescribeGroups
    (16, 0, 4),  // ListGroups
    (18, 0, 4),  // ApiVersions
    (19, 2, 7),  // CreateTopics
    (20, 1, 6),  // DeleteTopics
    (21, 0, 2),  // DeleteRecords
    (22, 0, 4),  // InitProducerId
    (23, 2, 4),  // OffsetForLeaderEpoch
    (32, 1, 4),  // DescribeConfigs
    (33, 0, 2),  // AlterConfigs
    (37, 0, 3),  // CreatePartitions
    (42, 0, 2),  // DeleteGroups
    (44, 0, 1),  // IncrementalAlterConfigs
    (47, 0, 0),  // OffsetDelete
    (60, 0, 1),  // DescribeCluster
];

fn api_versions_v0_body(correlation: i32, error: i16) -> Vec<u8> {
    let mut b = correlation.to_be_bytes().to_vec();
    b.extend_from_slice(&error.to_be_bytes());
    b.extend_from_slice(&(ADVERTISED.len() as i32).to_be_bytes());
    for (k, min, max) in ADVERTISED {
        for v in [k, min, max] {
            b.extend_from_slice(&v.to_be_bytes());
        }
    }
    b
}

#[test]
fn protocol_api_versions_v0_golden() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    let resp = c.roundtrip(&header_v1(18, 0, 7, "golden")).expect("answered");
    assert_eq!(resp, api_versions_v0_body(7, 0));
}

#[test]
fn protocol_api_versions_unsupported_version_falls_back_to_v0() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    // A v9 request (from a newer client) with a flexible header we may not parse: the answer is
    // v0-encoded, error 35 UNSUPPORTED_VERSION, with our ranges so the client can step down.
    let mut req = header_v1(18, 9, 11, "future");
    req.extend_from_slice(&[0, 0, 0]);
    let resp = c.roundtrip(&req).expect("answered");
    assert_eq!(resp, api_versions_v0_body(11, 35));
    // The connection stays usable.
    let resp = c.roundtrip(&header_v1(18, 0, 12, "golden")).expect("answered");
    assert_eq!(resp, api_versions_v0_body(12, 0));
}

#[test]
fn protocol_api_versions_v3_flexible_golden() {
    let broker = TestBroker::start(1);
    let mut c = broker.connect();
    // Header v2: key 18, v3, correlation 5, client id "k", empty tag section; body: compact
    // strings client_software_name "a", version "1", empty tags.
    let req = [0, 18, 0, 3, 0, 0, 0, 5, 0, 1, b'k', 0, 2, b'a', 2, b'1', 0];
    let resp = c.roundtrip(&req).expect("answered");
    // Response header v0 even for flexible ApiVersions (a known Kafka quirk).
    let mut want = 5i32.to_be_bytes().to_vec();
    want.extend_from_slice(&0i16.to_be_bytes());
    want.push(ADVERTISED.len() as u8 + 1); // compact array length
    for (k, min, max) in ADVERTISED {
        for v in [k, min, max] {
            want.extend_from_slice(&v.to_be_bytes());
        }
        want.push(0); // entry tags
    }
    want.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
    want.push(0); // response tags
    assert_eq!(resp, want);
}
