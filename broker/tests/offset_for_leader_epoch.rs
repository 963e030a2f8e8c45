//! OffsetForLeaderEpoch (key 23): where an epoch ends in a partition's log, as a Kafka leader
//! answers consumers validating their position (KIP-320). One node leads every partition in
//! epoch 0.

mod common;
use common::{batch, produce_request, topic_name, TestBroker};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;

fn ask(c: &mut common::Client, version: i16, topic: &str, parts: &[(i32, i32, i32)]) -> Vec<(i32, i16, i32, i64)> {
    let mut t = OffsetForLeaderTopic::default();
    t.topic = topic_name(topic);
    t.partitions = parts
        .iter()
        .map(|&(partition, current_leader_epoch, leader_epoch)| {
            let mut p = OffsetForLeaderPartition::default();
            p.partition = partition;
            p.current_leader_epoch = current_leader_epoch;
            p.leader_epoch = leader_epoch;
            p
        })
        .collect();
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let resp: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, version, &req);
    assert_eq!(resp.topics.len(), 1);
    resp.topics[0].partitions.iter().map(|p| (p.partition, p.error_code, p.leader_epoch, p.end_offset)).collect()
}

#[test]
fn offset_for_leader_epoch_answers_end_offsets_and_checks_the_current_epoch() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    for _ in 0..3 {
        let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_request("ofle", vec![(1, batch(10, "e", Compression::None))]));
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    for version in 2..=4 {
        let answers = ask(&mut c, version, "ofle", &[(1, 0, 0), (1, -1, 7), (0, 0, 0), (1, 1, 0), (42, 0, 0)]);
        assert_eq!(
            answers,
            vec![
                (1, 0, 0, 30),   // the current epoch ends at the log end
                (1, 0, 0, 30),   // a later epoch: the largest one at or below it, no epoch check
                (0, 0, 0, 0),    // an empty partition
                (1, 76, -1, -1), // the asker knows a newer epoch: UNKNOWN_LEADER_EPOCH
                (42, 3, -1, -1), // UNKNOWN_TOPIC_OR_PARTITION
            ],
            "v{version}"
        );
    }
}
