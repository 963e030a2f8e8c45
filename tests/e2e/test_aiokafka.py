"""aiokafka: produce with lz4 and with no compression, acks=all; read back by assigned
partitions (group_id=None) from the beginning."""

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from kafka_helpers import (
    Msg, assert_same_messages, by_partition, confluent_consume, create_topic, make_messages,
    unique_topic,
)

PARTITIONS = 6
N = 1200


async def aio_produce(bootstrap, topic, msgs, compression):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=compression,
                         linger_ms=5, request_timeout_ms=30000, max_request_size=2 * 1024 * 1024)
    await asyncio.wait_for(p.start(), 30)
    try:
        futs = []
        for m in msgs:
            futs.append(await p.send(topic, value=m.value, key=m.key, partition=m.partition,
                                     headers=list(m.headers), timestamp_ms=m.timestamp_ms))
        mds = await asyncio.wait_for(asyncio.gather(*futs), 60)
        return [(md.partition, md.offset) for md in mds]
    finally:
        await asyncio.wait_for(p.stop(), 30)


async def aio_consume(bootstrap, topic, partitions, counts, timeout=60):
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", fetch_max_bytes=4 * 1024 * 1024,
                         max_partition_fetch_bytes=1024 * 1024, request_timeout_ms=30000)
    await asyncio.wait_for(c.start(), 30)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(len(got[p]) >= counts.get(p, 0) for p in range(partitions)):
                break
            batch = await c.getmany(timeout_ms=200)
            for tp, recs in batch.items():
                for r in recs:
                    hdrs = tuple((k, v) for k, v in (r.headers or ()))
                    ts_type = 1 if r.timestamp_type == 0 else 100 + r.timestamp_type
                    got[tp.partition].append(
                        (r.offset, Msg(tp.partition, r.key, r.value, hdrs, r.timestamp), ts_type))
        else:
            raise AssertionError(f"timeout: got {({p: len(v) for p, v in got.items()})}"
                                 f" expected {counts}")
        end = await c.end_offsets(tps)
        end = {tp.partition: o for tp, o in end.items()}
        want = {p: counts.get(p, 0) for p in range(partitions)}
        assert end == want, f"end offsets {end} != produced counts {want}"
        return got
    finally:
        await asyncio.wait_for(c.stop(), 30)


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_aiokafka_produce_consume_roundtrip(broker, compression):
    name = compression or "none"
    topic = unique_topic(f"aio-{name}")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    msgs = make_messages(N, PARTITIONS, seed=301, tag=f"aio-{name}")
    counts = {p: len(v) for p, v in by_partition(msgs).items()}

    delivered = asyncio.run(asyncio.wait_for(aio_produce(broker.bootstrap, topic, msgs, compression), 75))
    got = asyncio.run(asyncio.wait_for(aio_consume(broker.bootstrap, topic, PARTITIONS, counts), 75))
    assert_same_messages(msgs, got, expected_offsets=delivered)

    got2 = confluent_consume(broker.bootstrap, topic, PARTITIONS, counts)
    assert_same_messages(msgs, got2, expected_offsets=delivered)
