"""Admin and metadata paths through confluent-kafka's AdminClient and clients:
CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, DescribeCluster,
ListOffsets (earliest/latest/by time), auto-create on first use."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, ConfigSource, NewPartitions, NewTopic

from kafka_helpers import (
    RDLOG,
    Msg, admin, assert_same_messages, by_partition, confluent_consume, confluent_produce,
    create_topic, make_messages, unique_topic, wait_for_topic, watermarks,
)


def test_admin_create_existing_topic_fails(broker):
    topic = unique_topic("adm-dup")
    create_topic(broker.bootstrap, topic, 3)
    a = admin(broker.bootstrap)  # keep the client alive until the future resolves
    futs = a.create_topics([NewTopic(topic, 3, 1)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        futs[topic].result(timeout=20)
    assert ei.value.args[0].code() == 36, ei.value  # TOPIC_ALREADY_EXISTS


def test_admin_delete_topic_then_recreate_is_empty(broker):
    topic = unique_topic("adm-del")
    create_topic(broker.bootstrap, topic, 3)
    confluent_produce(broker.bootstrap, topic, make_messages(90, 3, seed=1, tag="del"))
    a = admin(broker.bootstrap)
    a.delete_topics([topic], request_timeout=15)[topic].result(timeout=20)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if topic not in a.list_topics(timeout=10).topics:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("deleted topic still listed")
    create_topic(broker.bootstrap, topic, 2)
    assert watermarks(broker.bootstrap, topic, 2) == {0: (0, 0), 1: (0, 0)}, "old data came back"
    msgs = make_messages(40, 2, seed=2, tag="re")
    d = confluent_produce(broker.bootstrap, topic, msgs)
    got = confluent_consume(broker.bootstrap, topic, 2, {p: len(v) for p, v in by_partition(msgs).items()})
    assert_same_messages(msgs, got, expected_offsets=d)


def test_admin_create_partitions_extends_topic(broker):
    topic = unique_topic("adm-parts")
    create_topic(broker.bootstrap, topic, 3)
    first = make_messages(90, 3, seed=3, tag="first")
    d1 = confluent_produce(broker.bootstrap, topic, first)
    a = admin(broker.bootstrap)
    a.create_partitions([NewPartitions(topic, 6)], request_timeout=15)[topic].result(timeout=20)
    wait_for_topic(broker.bootstrap, topic, 6)
    second = make_messages(120, 6, seed=4, tag="second")
    d2 = confluent_produce(broker.bootstrap, topic, second)
    allm = first + second
    counts = {p: len(v) for p, v in by_partition(allm).items()}
    got = confluent_consume(broker.bootstrap, topic, 6, counts)
    assert_same_messages(allm, got, expected_offsets=d1 + d2)


# What a topic reports for the configs it does not set: the broker's log defaults (Kafka's
# where Riptide has the same) and Kafka's defaults for the keys only stored.
TOPIC_DEFAULTS = {
    "retention.ms": "604800000",     # 168 h
    "retention.bytes": "-1",
    "segment.bytes": "1073741824",   # 1 GiB
    "segment.ms": "604800000",
    "flush.ms": "0",                 # fdatasync before acks=all is answered
    "max.message.bytes": "1048588",
    "index.interval.bytes": "4096",
    "cleanup.policy": "delete",
    "compression.type": "producer",
    "min.insync.replicas": "1",
    "message.timestamp.type": "CreateTime",
}


def test_admin_describe_configs_topic(broker):
    topic = unique_topic("adm-cfg")
    a = admin(broker.bootstrap)
    overrides = {"retention.ms": "3600000", "segment.bytes": "16777216", "compression.type": "lz4"}
    a.create_topics([NewTopic(topic, 1, 1, config=overrides)], request_timeout=15)[topic].result(timeout=20)
    wait_for_topic(broker.bootstrap, topic, 1, client=a)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    got = {name: entry.value for name, entry in configs.items()}
    expected = {**TOPIC_DEFAULTS, **overrides}
    assert {k: got.get(k) for k in expected} == expected
    for name in overrides:
        assert configs[name].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, (name, configs[name])
        assert not configs[name].is_default
    assert configs["flush.ms"].source == ConfigSource.DEFAULT_CONFIG.value, configs["flush.ms"]


def test_admin_describe_cluster(broker):
    a = admin(broker.bootstrap)
    desc = a.describe_cluster(request_timeout=15).result(timeout=20)
    assert len(desc.nodes) == 1, desc.nodes
    node = desc.nodes[0]
    assert (node.host, node.port) == (broker.host, broker.port), node
    assert desc.cluster_id, "empty cluster id"


def test_admin_auto_create_on_produce(broker):
    """A producer writing to an unknown topic creates it (auto.create.topics.enable
    defaults to on) with the default partition count."""
    topic = unique_topic("adm-auto")
    msgs = [Msg(0, b"k", b"auto-created", (), int(time.time() * 1000))]
    d = confluent_produce(broker.bootstrap, topic, msgs, timeout=30)
    assert d == [(0, 0)]
    md = admin(broker.bootstrap).list_topics(topic=topic, timeout=10)
    assert topic in md.topics and len(md.topics[topic].partitions) >= 1
    got = confluent_consume(broker.bootstrap, topic, 1, {0: 1}, timeout=30)
    assert_same_messages(msgs, got, expected_offsets=d)


def test_admin_list_offsets_by_time(broker):
    """offsets_for_times: the first offset whose timestamp is >= the target, exact to the
    record even inside a batch; -1 past the last timestamp."""
    topic = unique_topic("adm-time")
    create_topic(broker.bootstrap, topic, 1)
    base = int(time.time() * 1000) - 1_000_000
    msgs = [Msg(0, None, b"t%d" % i, (), base + i * 1000) for i in range(100)]
    confluent_produce(broker.bootstrap, topic, msgs, extra={"linger.ms": 100})  # few big batches
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"u-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "logger": RDLOG})
    try:
        def lookup(ts):
            (tp,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=15)
            assert tp.error is None, tp.error
            return tp.offset

        targets = [base - 5000, base + 42_000, base + 41_500, base + 99_000, base + 99_001]
        assert [lookup(t) for t in targets] == [0, 42, 42, 99, -1]
    finally:
        c.close()
