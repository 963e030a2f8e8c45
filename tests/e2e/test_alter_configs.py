"""Topic config changes and manual replica assignment, with confluent-kafka's AdminClient
(librdkafka) and, for what librdkafka refuses to send, raw frames:

- IncrementalAlterConfigs: SET, DELETE, APPEND, SUBTRACT; all of a resource's operations or
  none; per-resource errors (unknown topic, unknown key, bad value, APPEND/SUBTRACT on a
  non-list config, broker resource, repeated resource, repeated key, null value, unknown op);
  validate_only changes nothing.
- AlterConfigs (the older API): the overrides become exactly the entries given.
- Changes are persisted: after a restart they are still there, and the logs then use them; a
  partition added after the change uses it at once.
- CreateTopics with replica_assignment naming this broker is accepted; unknown brokers,
  repeated brokers, gaps and num_partitions/replication_factor set get Kafka's errors.
"""

from __future__ import annotations

import os

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (
    AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions, NewTopic,
)

import kafka_wire as w
from kafka_helpers import RDLOG, admin, create_topic, unique_topic, wait_for_topic

SET, DELETE, APPEND, SUBTRACT = (AlterConfigOpType.SET, AlterConfigOpType.DELETE,
                                 AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT)
THROTTLED = "leader.replication.throttled.replicas"
DYNAMIC = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
DEFAULT = ConfigSource.DEFAULT_CONFIG.value

UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_CONFIG = 40
INVALID_REQUEST = 42


pytestmark = pytest.mark.skipif(os.environ.get("RIPTIDE_E2E_BROKER", "riptide") != "riptide",
                                reason="checks Riptide's own config handling")


def entry(name, value, op):
    return ConfigEntry(name, value, incremental_operation=op)


def incremental(a, topic: str, entries, validate_only=False):
    """IncrementalAlterConfigs on one topic: None on success, else the KafkaError."""
    res = ConfigResource("TOPIC", topic, incremental_configs=entries)
    try:
        a.incremental_alter_configs([res], request_timeout=15, validate_only=validate_only)[res].result(timeout=20)
        return None
    except KafkaException as e:
        return e.args[0]


def configs(a, topic: str) -> dict[str, tuple[str, int]]:
    res = ConfigResource("TOPIC", topic)
    got = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    return {k: (v.value, v.source) for k, v in got.items()}


def test_incremental_alter_configs_set_delete_append_subtract(broker):
    topic = unique_topic("iac")
    create_topic(broker.bootstrap, topic, 2, config={"retention.ms": "3600000", "compression.type": "lz4"})
    a = admin(broker.bootstrap)
    assert incremental(a, topic, [entry("segment.bytes", "16777216", SET),
                                  entry("retention.ms", None, DELETE),
                                  entry(THROTTLED, "0:0,1:0", APPEND)]) is None
    c = configs(a, topic)
    assert c["segment.bytes"] == ("16777216", DYNAMIC)
    assert c["retention.ms"] == ("604800000", DEFAULT), "DELETE returns the key to its default"
    assert c["compression.type"] == ("lz4", DYNAMIC), "keys not named keep their value"
    assert c[THROTTLED] == ("0:0,1:0", DYNAMIC)
    # APPEND adds only what is missing; SUBTRACT removes what is named.
    assert incremental(a, topic, [entry(THROTTLED, "1:0,2:0", APPEND)]) is None
    assert configs(a, topic)[THROTTLED][0] == "0:0,1:0,2:0"
    assert incremental(a, topic, [entry(THROTTLED, "0:0,2:0", SUBTRACT)]) is None
    assert configs(a, topic)[THROTTLED][0] == "1:0"
    # APPEND on cleanup.policy starts from its default (delete) and stays valid.
    assert incremental(a, topic, [entry("cleanup.policy", "delete", APPEND)]) is None
    assert configs(a, topic)["cleanup.policy"] == ("delete", DYNAMIC)


def test_incremental_alter_configs_errors_per_resource(broker):
    """One request, several resources: each gets its own answer, the good one is applied,
    and a resource with one bad operation changes nothing at all."""
    topic = unique_topic("iac-err")
    create_topic(broker.bootstrap, topic, 1)
    a = admin(broker.bootstrap)
    cases = {
        ("TOPIC", topic): ([entry("retention.ms", "7200000", SET)], None),
        ("TOPIC", unique_topic("iac-none")): ([entry("retention.ms", "1", SET)], UNKNOWN_TOPIC_OR_PARTITION),
        ("BROKER", "0"): ([entry("log.retention.ms", "1", SET)], INVALID_CONFIG),
    }
    resources = {ConfigResource(t, n, incremental_configs=e): code for (t, n), (e, code) in cases.items()}
    futs = a.incremental_alter_configs(list(resources), request_timeout=15)
    for res, code in resources.items():
        try:
            futs[res].result(timeout=20)
            got = None
        except KafkaException as e:
            got = e.args[0].code()
        assert got == code, (res, got)
    assert configs(a, topic)["retention.ms"] == ("7200000", DYNAMIC)

    for bad, why in [
        ([entry("no.such.config", "1", SET)], "unknown key"),
        ([entry("segment.bytes", "-5", SET)], "bad value"),
        ([entry("retention.ms", "5", APPEND)], "APPEND on a non-list config"),
        ([entry("retention.ms", "5", SUBTRACT)], "SUBTRACT on a non-list config"),
        ([entry("cleanup.policy", "shred", APPEND)], "not a cleanup policy"),
        ([entry(THROTTLED, "0:x", SET)], "bad throttled-replica list"),
        ([entry("segment.ms", "60000", SET), entry("segment.bytes", "x", SET)], "one bad op of two"),
    ]:
        err = incremental(a, topic, bad)
        assert err is not None and err.code() == INVALID_CONFIG, (why, err)
        assert err.str(), f"{why}: no error message"
    c = configs(a, topic)
    assert c["segment.ms"][1] == DEFAULT, "a resource with a bad operation must change nothing"
    assert c["retention.ms"] == ("7200000", DYNAMIC)


def test_incremental_alter_configs_validate_only(broker):
    topic = unique_topic("iac-vo")
    create_topic(broker.bootstrap, topic, 1)
    a = admin(broker.bootstrap)
    assert incremental(a, topic, [entry("retention.ms", "1000", SET)], validate_only=True) is None
    assert configs(a, topic)["retention.ms"] == ("604800000", DEFAULT), "validate_only applied"
    err = incremental(a, topic, [entry("retention.ms", "soon", SET)], validate_only=True)
    assert err is not None and err.code() == INVALID_CONFIG, err


# -- raw frames for what librdkafka checks itself before sending ------------------------

def incremental_v0(corr: int, resources, validate_only=False) -> bytes:
    """resources: [(type, name, [(key, op, value)])]"""
    body = w.i32(len(resources))
    for rtype, name, ops in resources:
        body += w.i8(rtype) + w.string(name) + w.i32(len(ops))
        for key, op, value in ops:
            body += w.string(key) + w.i8(op) + w.string(value)
    body += w.i8(1 if validate_only else 0)
    return w.frame(w.request_header_v1(44, 0, corr) + body)


def parse_alter_v0(body: bytes) -> list[tuple[int, str | None, int, str]]:
    r = w.Reader(body)
    r.take(">i")  # correlation id
    r.take(">i")  # throttle
    out = []
    for _ in range(r.take(">i")):
        code = r.take(">h")
        msg = r.string()
        rtype = r.take(">b")
        out.append((code, msg, rtype, r.string()))
    r.done()
    return out


def test_incremental_alter_configs_request_shape_errors(broker):
    """Kafka's INVALID_REQUEST cases, per resource: a repeated resource, a repeated key, a
    null value for SET, an unknown operation, an unsupported resource type."""
    topic = unique_topic("iac-raw")
    other = unique_topic("iac-raw2")
    create_topic(broker.bootstrap, topic, 1)
    create_topic(broker.bootstrap, other, 1)
    with w.Conn(broker.host, broker.port) as c:
        c.send(incremental_v0(7, [
            (2, topic, [("retention.ms", 0, "1000")]),
            (2, topic, [("retention.ms", 0, "2000")]),
            (2, other, [("retention.ms", 0, "1"), ("retention.ms", 1, None)]),
        ]))
        res = parse_alter_v0(c.recv_frame())
        assert [r[0] for r in res] == [INVALID_REQUEST] * 3, res
        assert "at most once" in res[0][1] and "duplicate config keys" in res[2][1], res
        c.send(incremental_v0(8, [
            (2, topic, [("retention.ms", 0, None)]),
            (2, other, [("retention.ms", 9, "1")]),
            (8, "0", [("root", 0, "DEBUG")]),  # BROKER_LOGGER
        ]))
        res = parse_alter_v0(c.recv_frame())
        assert [r[0] for r in res] == [INVALID_REQUEST] * 3, res
        assert "Null value" in res[0][1], res
        a = admin(broker.bootstrap)
        assert configs(a, topic)["retention.ms"][1] == DEFAULT
        assert configs(a, other)["retention.ms"][1] == DEFAULT


def test_alter_configs_replaces_the_overrides(broker):
    """The older AlterConfigs: keys not given return to their defaults."""
    topic = unique_topic("ac")
    create_topic(broker.bootstrap, topic, 1, config={"retention.ms": "3600000", "compression.type": "lz4"})
    a = admin(broker.bootstrap)

    def alter(name, set_config, validate_only=False):
        res = ConfigResource("TOPIC", name, set_config=set_config)
        try:
            a.alter_configs([res], request_timeout=15, validate_only=validate_only)[res].result(timeout=20)
            return None
        except KafkaException as e:
            return e.args[0]

    assert alter(topic, {"segment.ms": "60000"}, validate_only=True) is None
    assert configs(a, topic)["segment.ms"][1] == DEFAULT, "validate_only applied"
    assert alter(topic, {"segment.ms": "60000", "max.message.bytes": "500000"}) is None
    c = configs(a, topic)
    assert c["segment.ms"] == ("60000", DYNAMIC) and c["max.message.bytes"] == ("500000", DYNAMIC)
    assert c["retention.ms"] == ("604800000", DEFAULT)
    assert c["compression.type"] == ("producer", DEFAULT)
    err = alter(topic, {"segment.ms": "minute"})
    assert err is not None and err.code() == INVALID_CONFIG, err
    assert configs(a, topic)["segment.ms"] == ("60000", DYNAMIC), "a refused change applied"
    err = alter(unique_topic("ac-none"), {"segment.ms": "1"})
    assert err is not None and err.code() == UNKNOWN_TOPIC_OR_PARTITION, err


def produce_error(bootstrap: str, topic: str, partition: int, size: int):
    """Produce one record of `size` bytes; the delivery error or None."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 15000,
                  "retries": 0, "logger": RDLOG})
    out = []
    p.produce(topic, value=b"x" * size, partition=partition, on_delivery=lambda e, m: out.append(e))
    assert p.flush(20) == 0
    return out[0]


def test_altered_configs_survive_restart_and_apply_at_open(broker_factory, require_persistence):
    """max.message.bytes lowered by IncrementalAlterConfigs: a partition added afterwards
    refuses a big record at once; after a restart the existing partitions do too, and the
    overrides are still reported."""
    b = broker_factory()
    topic = unique_topic("iac-open")
    create_topic(b.bootstrap, topic, 1)
    a = admin(b.bootstrap)
    assert incremental(a, topic, [entry("max.message.bytes", "2000", SET),
                                  entry(THROTTLED, "0:0", APPEND)]) is None
    a.create_partitions([NewPartitions(topic, 2)], request_timeout=15)[topic].result(timeout=20)
    wait_for_topic(b.bootstrap, topic, 2, client=a)
    err = produce_error(b.bootstrap, topic, 1, 5000)
    assert err is not None and err.code() == 10, err  # MESSAGE_TOO_LARGE
    b.restart()
    a = admin(b.bootstrap)
    c = configs(a, topic)
    assert c["max.message.bytes"] == ("2000", DYNAMIC) and c[THROTTLED] == ("0:0", DYNAMIC), c
    err = produce_error(b.bootstrap, topic, 0, 5000)
    assert err is not None and err.code() == 10, err
    assert produce_error(b.bootstrap, topic, 0, 100) is None


# -- manual replica assignment -----------------------------------------------------------

def test_create_topics_manual_assignment_naming_this_broker(broker):
    a = admin(broker.bootstrap)
    topic = unique_topic("ma")
    a.create_topics([NewTopic(topic, 3, replica_assignment=[[0], [0], [0]])],
                    request_timeout=15)[topic].result(timeout=20)
    wait_for_topic(broker.bootstrap, topic, 3, client=a)
    md = a.list_topics(topic=topic, timeout=10).topics[topic]
    assert all(p.replicas == [0] and p.leader == 0 for p in md.partitions.values()), md.partitions
    assert produce_error(broker.bootstrap, topic, 2, 10) is None

    for assignment, code, text in [
        ([[0], [1]], INVALID_REPLICA_ASSIGNMENT, "broker 1, but no such broker is registered"),
        ([[0, 0]], INVALID_REPLICA_ASSIGNMENT, "more than once"),
        ([[7, 0]], INVALID_REPLICA_ASSIGNMENT, "broker 7"),
    ]:
        name = unique_topic("ma-bad")
        with pytest.raises(KafkaException) as ei:
            a.create_topics([NewTopic(name, len(assignment), replica_assignment=assignment)],
                            request_timeout=15)[name].result(timeout=20)
        err = ei.value.args[0]
        assert err.code() == code and text in err.str(), (assignment, err)
        assert name not in a.list_topics(timeout=10).topics


def create_topics_v2(corr: int, name: str, partitions: int, rf: int, assignments) -> bytes:
    body = w.i32(1) + w.string(name) + w.i32(partitions) + w.i16(rf) + w.i32(len(assignments))
    for p, brokers in assignments:
        body += w.i32(p) + w.i32(len(brokers)) + b"".join(w.i32(x) for x in brokers)
    body += w.i32(0) + w.i32(10_000) + w.i8(0)  # no configs, timeout, validate_only
    return w.frame(w.request_header_v1(19, 2, corr) + body)


def parse_create_topics_v2(body: bytes) -> tuple[int, str | None]:
    r = w.Reader(body)
    r.take(">i")  # correlation id
    r.take(">i")  # throttle
    assert r.take(">i") == 1
    r.string()
    code = r.take(">h")
    msg = r.string()
    r.done()
    return code, msg


def test_create_topics_manual_assignment_request_errors(broker):
    """What librdkafka never sends: counts set beside an assignment, partitions named twice
    or not numbered from 0, an empty replica list."""
    with w.Conn(broker.host, broker.port) as c:
        for i, (parts, rf, assignments, code) in enumerate([
            (-1, 1, [(0, [0])], INVALID_REPLICATION_FACTOR),
            (1, -1, [(0, [0])], INVALID_PARTITIONS),
            (-1, -1, [(0, [0]), (0, [0])], INVALID_REPLICA_ASSIGNMENT),
            (-1, -1, [(1, [0])], INVALID_REPLICA_ASSIGNMENT),
            (-1, -1, [(0, [])], INVALID_REPLICA_ASSIGNMENT),
        ]):
            c.send(create_topics_v2(100 + i, unique_topic("ma-raw"), parts, rf, assignments))
            got, msg = parse_create_topics_v2(c.recv_frame())
            assert got == code and msg, (parts, rf, assignments, got, msg)
