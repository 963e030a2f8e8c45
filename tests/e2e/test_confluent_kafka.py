"""confluent-kafka (librdkafka): produce with lz4 and with no compression, acks=all;
read back by assigned partitions from the beginning."""

import pytest

from kafka_helpers import (
    RDLOG,
    assert_same_messages, by_partition, confluent_consume, confluent_produce, create_topic,
    make_messages, scrape, unique_topic, watermarks,
)

PARTITIONS = 6
N = 1500


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_confluent_produce_consume_roundtrip(broker, compression):
    topic = unique_topic(f"ck-{compression}")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    msgs = make_messages(N, PARTITIONS, seed=101, tag=f"ck-{compression}")
    delivered = confluent_produce(broker.bootstrap, topic, msgs, compression=compression)

    counts = {p: len(v) for p, v in by_partition(msgs).items()}
    wm = watermarks(broker.bootstrap, topic, PARTITIONS)
    assert wm == {p: (0, counts.get(p, 0)) for p in range(PARTITIONS)}, wm

    got = confluent_consume(broker.bootstrap, topic, PARTITIONS, counts)
    assert_same_messages(msgs, got, expected_offsets=delivered)


def test_confluent_read_uncommitted_sees_same_data(broker):
    """isolation.level=read_committed is librdkafka's default (used above); the
    read_uncommitted path must return the same records."""
    topic = unique_topic("ck-ru")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    msgs = make_messages(300, PARTITIONS, seed=102, tag="ck-ru")
    delivered = confluent_produce(broker.bootstrap, topic, msgs)
    counts = {p: len(v) for p, v in by_partition(msgs).items()}
    got = confluent_consume(broker.bootstrap, topic, PARTITIONS, counts,
                            extra={"isolation.level": "read_uncommitted"})
    assert_same_messages(msgs, got, expected_offsets=delivered)


def _consume_assigned(bootstrap, tp, count, extra=None):
    """(offset, value) of the first `count` records a fresh consumer assigned `tp` reads
    (30 s at most); any consumer error fails the test."""
    from confluent_kafka import Consumer
    import time, uuid

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"u-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "logger": RDLOG, **(extra or {})})
    try:
        c.assign([tp])
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline and len(seen) < count:
            m = c.poll(0.2)
            if m is None:
                continue
            assert m.error() is None, m.error()
            seen.append((m.offset(), m.value()))
        return seen
    finally:
        c.close()


def test_confluent_consume_from_middle_offset(broker):
    """Starting in the middle of a batch: records below the requested offset are skipped
    by the client, so the first record seen is exactly the requested one."""
    from confluent_kafka import TopicPartition

    topic = unique_topic("ck-mid")
    create_topic(broker.bootstrap, topic, 1)
    msgs = make_messages(200, 1, seed=103, tag="ck-mid")
    # linger so that many records share a batch
    confluent_produce(broker.bootstrap, topic, msgs, extra={"linger.ms": 50})
    seen = _consume_assigned(broker.bootstrap, TopicPartition(topic, 0, 137), 63)
    assert [o for o, _ in seen] == list(range(137, 200))
    assert [v for _, v in seen] == [m.value for m in msgs[137:]]


def test_confluent_position_with_leader_epoch_is_validated(broker):
    """An assignment carrying a leader epoch (as a committed offset does) makes librdkafka
    validate the position with OffsetForLeaderEpoch (KIP-320) before fetching: the broker's
    answer (epoch 0 ends at the log end) keeps the position, no truncation is detected."""
    from confluent_kafka import TopicPartition

    topic = unique_topic("ck-epoch")
    create_topic(broker.bootstrap, topic, 1)
    msgs = make_messages(100, 1, seed=104, tag="ck-epoch")
    confluent_produce(broker.bootstrap, topic, msgs)
    seen = _consume_assigned(broker.bootstrap, TopicPartition(topic, 0, 40, leader_epoch=0), 60,
                             extra={"auto.offset.reset": "error"})
    assert [o for o, _ in seen] == list(range(40, 100))
    calls = scrape(broker).get('riptide_kafka_requests_total{request="offset_for_leader_epoch"}', 0)
    assert calls >= 1, "librdkafka validated the position"


@pytest.mark.parametrize("extra", [
    {"acks": "1"},
    {"acks": "0"},
    {"enable.idempotence": True},
], ids=["acks1", "acks0", "idempotent"])
def test_confluent_produce_modes_roundtrip(broker, extra):
    """acks=1, acks=0 (fire and forget: no offsets in the reports) and librdkafka's
    idempotent producer (InitProducerId + sequence numbers)."""
    topic = unique_topic("ck-mode")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    msgs = make_messages(600, PARTITIONS, seed=104, tag="ck-mode")
    delivered = confluent_produce(broker.bootstrap, topic, msgs, extra=extra)
    counts = {p: len(v) for p, v in by_partition(msgs).items()}
    got = confluent_consume(broker.bootstrap, topic, PARTITIONS, counts)
    assert_same_messages(msgs, got, expected_offsets=None if extra.get("acks") == "0" else delivered)


def test_confluent_concurrent_producers_same_partitions(broker):
    """Several producers (several connections, so several shards) append to the same
    partitions at once: nothing lost or duplicated, each producer's order kept."""
    import threading

    topic = unique_topic("ck-conc")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    sets = [make_messages(700, PARTITIONS, seed=110 + i, tag=f"conc{i}") for i in range(4)]
    results, errors = {}, []

    def run(i):
        try:
            results[i] = confluent_produce(broker.bootstrap, topic, sets[i], compression="lz4" if i % 2 else "none")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == len(sets)
    counts = {}
    for s in sets:
        for p, v in by_partition(s).items():
            counts[p] = counts.get(p, 0) + len(v)
    got = confluent_consume(broker.bootstrap, topic, PARTITIONS, counts)
    at = {(p, o): m for p, lst in got.items() for o, m, _ in lst}
    for p, lst in got.items():
        assert [o for o, _, _ in lst] == list(range(counts.get(p, 0))), f"partition {p}: offsets"
    for i, s in enumerate(sets):
        for m, (p, o) in zip(s, results[i]):
            assert at.get((p, o)) == m, f"producer {i}: {p}@{o} holds {at.get((p, o))}, expected {m.short()}"
        # per producer, per partition: offsets increase in send order
        for p in range(PARTITIONS):
            offs = [o for m, (pp, o) in zip(s, results[i]) if pp == p]
            assert offs == sorted(offs), f"producer {i} partition {p}: order not kept"


def _cpu_seconds(pid):
    import os
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_confluent_fetch_long_poll_wakes_on_new_data(broker):
    """A consumer waiting at the end of a partition (fetch.wait.max.ms=5000) gets a new
    message well before its wait runs out, and the broker does not spin meanwhile."""
    import threading
    import time
    import uuid
    from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

    topic = unique_topic("ck-poll")
    create_topic(broker.bootstrap, topic, 1)
    confluent_produce(broker.bootstrap, topic, make_messages(5, 1, seed=120, tag="pre"))
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"u-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 5000,
                  "logger": RDLOG})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        # let it reach the end and park in a long poll
        t_end = time.monotonic() + 2.5
        while time.monotonic() < t_end:
            m = c.poll(0.1)
            assert m is None or m.error(), "unexpected message before producing"
        cpu0 = _cpu_seconds(broker.proc.pid)
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            c.poll(0.1)
        idle_cpu = _cpu_seconds(broker.proc.pid) - cpu0
        assert idle_cpu < 1.0, f"broker used {idle_cpu:.2f}s CPU in 3s with one idle long-poll consumer"

        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "logger": RDLOG})
        p.produce(topic, value=b"wake-up", partition=0)
        assert p.flush(10) == 0
        t0 = time.monotonic()
        got = None
        while time.monotonic() - t0 < 10:
            m = c.poll(0.05)
            if m is not None and not m.error():
                got = m
                break
        waited = time.monotonic() - t0
        assert got is not None and got.value() == b"wake-up" and got.offset() == 5
        assert waited < 2.0, f"new data took {waited:.2f}s to reach a long-polling consumer"
    finally:
        c.close()


def test_confluent_out_of_range_offset_resets_to_earliest(broker):
    """Fetching past the log end gets OFFSET_OUT_OF_RANGE, so the consumer applies
    auto.offset.reset=earliest and reads from 0 (an empty answer would stall it)."""
    import time
    import uuid
    from confluent_kafka import Consumer, TopicPartition

    topic = unique_topic("ck-oor")
    create_topic(broker.bootstrap, topic, 1)
    msgs = make_messages(10, 1, seed=130, tag="oor")
    confluent_produce(broker.bootstrap, topic, msgs)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"u-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "logger": RDLOG})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(seen) < 10:
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen.append(m.offset())
        assert seen == list(range(10)), f"after reset got offsets {seen}"
    finally:
        c.close()


def test_confluent_batches_larger_than_fetch_limits(broker):
    """~900 KiB records with a 64 KiB per-partition fetch limit: the broker returns the
    first batch whole even when it exceeds the limit; the consumer gets everything."""
    topic = unique_topic("ck-big")
    create_topic(broker.bootstrap, topic, 2)
    import random
    rng = random.Random(140)
    from kafka_helpers import Msg
    import time
    ts = int(time.time() * 1000)
    msgs = [Msg(i % 2, b"big-%d" % i, rng.randbytes(900 * 1024), (("n", b"%d" % i),), ts + i)
            for i in range(8)]
    delivered = confluent_produce(broker.bootstrap, topic, msgs, compression="none",
                                  extra={"linger.ms": 0})
    got = confluent_consume(broker.bootstrap, topic, 2, {0: 4, 1: 4},
                            extra={"max.partition.fetch.bytes": 65536, "fetch.max.bytes": 65536,
                                   "message.max.bytes": 65536,
                                   "receive.message.max.bytes": 4 * 1024 * 1024})
    assert_same_messages(msgs, got, expected_offsets=delivered)
