//! Topic administration through the Kafka APIs: create, grow, describe, delete records, delete.

mod common;
use common::{batch, TestBroker};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

fn name(s: &str) -> TopicName {
    common::topic_name(s)
}

fn create(topic: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) -> CreateTopicsRequest {
    common::create_topics_request(topic, partitions, rf, configs)
}

fn partitions_of(c: &mut common::Client, topic: &str) -> (i16, usize) {
    let mut t = MetadataRequestTopic::default();
    t.name = Some(name(topic));
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![t]);
    req.allow_auto_topic_creation = false;
    let resp: MetadataResponse = c.call(ApiKey::Metadata, 12, &req);
    (resp.topics[0].error_code, resp.topics[0].partitions.len())
}

#[test]
fn admin_create_grow_describe_delete() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &create("orders", 3, 1, &[("retention.ms", "3600000")]));
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].num_partitions, 3);
    assert!(!resp.topics[0].topic_id.is_nil());
    let again: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 4, &create("orders", 3, 1, &[]));
    assert_eq!(again.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");
    let rf3: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &create("rf3", 3, 3, &[]));
    assert_eq!(rf3.topics[0].error_code, 38, "INVALID_REPLICATION_FACTOR on one node");
    let bad: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &create("cfg", 1, 1, &[("cleanup.policy", "shred")]));
    assert_eq!(bad.topics[0].error_code, 40, "INVALID_CONFIG");
    assert_eq!(partitions_of(&mut c, "orders"), (0, 3));

    let mut grow = CreatePartitionsTopic::default();
    grow.name = name("orders");
    grow.count = 5;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![grow.clone()];
    let resp: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, 3, &req);
    assert_eq!(resp.results[0].error_code, 0);
    assert_eq!(partitions_of(&mut c, "orders"), (0, 5));
    grow.count = 2;
    req.topics = vec![grow];
    let resp: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, 3, &req);
    assert_eq!(resp.results[0].error_code, 37, "INVALID_PARTITIONS when shrinking");

    let mut res = DescribeConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = StrBytes::from_static_str("orders");
    res.configuration_keys = None; // null = all (an empty list selects none, as in Kafka)
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req);
    let retention = resp.results[0].configs.iter().find(|c| c.name.as_str() == "retention.ms").unwrap();
    assert_eq!(retention.value.as_ref().unwrap().as_str(), "3600000");
    assert_eq!(retention.config_source, 1, "set on the topic");

    let mut req = DeleteTopicsRequest::default();
    req.topic_names = vec![name("orders"), name("nope")];
    let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 5, &req);
    assert_eq!(resp.responses.iter().map(|r| r.error_code).collect::<Vec<_>>(), vec![0, 3]);
    assert_eq!(partitions_of(&mut c, "orders").0, 3, "gone");
    assert!(!broker.dir.path().join("orders-0").exists(), "logs deleted");
}

#[test]
fn admin_delete_records_moves_log_start() {
    let broker = TestBroker::start(2);
    let mut c = broker.connect();
    for _ in 0..5 {
        let mut p = PartitionProduceData::default();
        p.index = 1;
        p.records = Some(batch(10, "d", Compression::None));
        let mut t = TopicProduceData::default();
        t.name = name("dr");
        t.partition_data = vec![p];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.topic_data = vec![t];
        let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req);
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    let mut p = DeleteRecordsPartition::default();
    p.partition_index = 1;
    p.offset = 20;
    let mut missing = DeleteRecordsPartition::default();
    missing.partition_index = 42;
    missing.offset = 1;
    let mut t = DeleteRecordsTopic::default();
    t.name = name("dr");
    t.partitions = vec![p, missing];
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req);
    let parts = &resp.topics[0].partitions;
    assert_eq!((parts[0].error_code, parts[0].low_watermark), (0, 20));
    assert_eq!(parts[1].error_code, 3, "unknown partition");
}
