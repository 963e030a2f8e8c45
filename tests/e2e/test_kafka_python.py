"""kafka-python 3.x: produce with lz4 and with no compression, acks=all (idempotence on,
which is kafka-python 3's default with acks=all: it needs InitProducerId); read back by
assigned partitions (group_id=None) from the beginning."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from kafka_helpers import (
    Msg, assert_same_messages, by_partition, confluent_consume, create_topic, make_messages,
    unique_topic, watermarks,
)

PARTITIONS = 6
N = 1200


def kp_produce(bootstrap, topic, msgs, compression):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=compression,
                      linger_ms=5, request_timeout_ms=30000, max_block_ms=30000,
                      max_request_size=2 * 1024 * 1024, delivery_timeout_ms=60000)
    try:
        assert p.config["enable_idempotence"], "kafka-python default changed: expected idempotence"
        futs = [p.send(topic, value=m.value, key=m.key, partition=m.partition,
                       headers=list(m.headers), timestamp_ms=m.timestamp_ms) for m in msgs]
        p.flush(timeout=60)
        out = []
        for f in futs:
            md = f.get(timeout=30)
            out.append((md.partition, md.offset))
        return out
    finally:
        p.close(timeout=10)


def kp_consume(bootstrap, topic, partitions, counts, timeout=90):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_bytes=4 * 1024 * 1024,
                      max_partition_fetch_bytes=1024 * 1024, request_timeout_ms=30000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        got = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(len(got[p]) >= counts.get(p, 0) for p in range(partitions)):
                break
            for tp, recs in c.poll(timeout_ms=200).items():
                for r in recs:
                    hdrs = tuple((k, v) for k, v in (r.headers or []))
                    # kafka-python: timestamp_type 0 = CreateTime; map to librdkafka's 1
                    ts_type = 1 if r.timestamp_type == 0 else 100 + r.timestamp_type
                    got[tp.partition].append(
                        (r.offset, Msg(tp.partition, r.key, r.value, hdrs, r.timestamp), ts_type))
        else:
            raise AssertionError(f"timeout: got {({p: len(v) for p, v in got.items()})}"
                                 f" expected {counts}")
        # nothing beyond what was produced
        end = c.end_offsets(tps)
        end = {tp.partition: o for tp, o in end.items()}
        want = {p: counts.get(p, 0) for p in range(partitions)}
        assert end == want, f"end offsets {end} != produced counts {want}"
        return got
    finally:
        c.close()


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_kafka_python_produce_consume_roundtrip(broker, compression):
    name = compression or "none"
    topic = unique_topic(f"kp-{name}")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    msgs = make_messages(N, PARTITIONS, seed=201, tag=f"kp-{name}")
    delivered = kp_produce(broker.bootstrap, topic, msgs, compression)
    counts = {p: len(v) for p, v in by_partition(msgs).items()}

    got = kp_consume(broker.bootstrap, topic, PARTITIONS, counts)
    assert_same_messages(msgs, got, expected_offsets=delivered)

    # another client (librdkafka) reads the same bytes
    got2 = confluent_consume(broker.bootstrap, topic, PARTITIONS, counts)
    assert_same_messages(msgs, got2, expected_offsets=delivered)
    assert watermarks(broker.bootstrap, topic, PARTITIONS) == {
        p: (0, counts.get(p, 0)) for p in range(PARTITIONS)}
