"""Fetch offsets between the high watermark and the log end are not out of range.

With acks=1 the broker answers once the O_DIRECT write is done, before the sync that moves
the high watermark; so a producer can know an offset that is (for a moment) at or above
the high watermark. A consumer fetching it must wait for it, not get OFFSET_OUT_OF_RANGE
(which, with auto.offset.reset=error, is a hard error; with earliest/latest a silent
reset). The moment is made long with a ballast writer that keeps the filesystem full of
dirty page cache, so every syncfs takes long.

Fetch offsets above the log end still are out of range."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

import kafka_wire as kw
from fs_faults import Ballast
from kafka_helpers import RDLOG, create_topic, unique_topic

ROUNDS = 20
MESSAGE_WAIT_S = 10.0
OFFSET_OUT_OF_RANGE = 1


@pytest.fixture
def ballast(broker_factory):
    b = broker_factory()
    bal = Ballast(b.workdir / "ballast")
    assert bal.dir.stat().st_dev == b.data_dir.stat().st_dev, "ballast not on the data dir's fs"
    bal.start()
    try:
        yield b, bal
    finally:
        bal.stop()


def _consumer(b):
    return Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"off-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "enable.auto.offset.store": False,
                     "auto.offset.reset": "error", "enable.partition.eof": False,
                     "fetch.wait.max.ms": 100, "logger": RDLOG})


def _produce_acks1(p, topic, values):
    """Produces `values` back to back (one batch each), then flushes; -> their offsets."""
    out = [None] * len(values)

    def cb_for(i):
        return lambda err, m: out.__setitem__(i, (err, m))

    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=0, on_delivery=cb_for(i))
    assert p.flush(30) == 0, "acks=1 produce not delivered within 30 s"
    for err, m in out:
        assert err is None, f"acks=1 produce failed: {err}"
    return [m.offset() for _, m in out]


def _read_at(c, topic, offset, expected_value):
    """Assign at `offset`; -> None if the message arrives within MESSAGE_WAIT_S with no
    error, else a description of what went wrong."""
    c.assign([TopicPartition(topic, 0, offset)])
    deadline = time.monotonic() + MESSAGE_WAIT_S
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            return f"error {m.error().name()} ({m.error().str()})"
        if m.offset() != offset or m.value() != expected_value:
            return f"got offset {m.offset()} value {m.value()[:30]!r}"
        return None
    return f"no message within {MESSAGE_WAIT_S}s"


def test_offsets_fetch_between_high_watermark_and_log_end_waits(ballast):
    """20 rounds. Each: one message with acks=1 (flushed: its sync now runs, slowly), then
    two more sent back to back as separate batches (batch.num.messages=1), so they are
    queued behind that sync and written together; both are acknowledged once written,
    while the high watermark waits for the next sync -- the second one's offset is then
    above the high watermark. A fresh consumer with auto.offset.reset=error, already
    connected, is assigned at that offset: it must get exactly that message, with no
    error, within 10 s."""
    b, bal = ballast
    topic = unique_topic("hw-gap")
    create_topic(b.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": 1, "linger.ms": 0,
                  "batch.num.messages": 1, "enable.idempotence": False, "logger": RDLOG})
    failures = []
    t0 = time.monotonic()
    for r in range(ROUNDS):
        c = _consumer(b)
        try:
            c.list_topics(topic, timeout=10)  # connected before the produce
            time.sleep(0.3)  # let the ballast pile up dirty pages
            first = _produce_acks1(p, topic, [f"first-{r}".encode()])
            value = f"third-{r}-{uuid.uuid4().hex}".encode()
            offsets = _produce_acks1(p, topic, [f"second-{r}".encode(), value])
            assert first + offsets == [3 * r, 3 * r + 1, 3 * r + 2], (
                f"round {r}: acknowledged offsets {first + offsets}")
            problem = _read_at(c, topic, offsets[-1], value)
            if problem:
                failures.append((r, offsets[-1], problem))
        finally:
            c.close()
    elapsed = time.monotonic() - t0
    assert bal.error is None, f"ballast writer failed: {bal.error!r}"
    assert not failures, (
        f"{len(failures)} of {ROUNDS} rounds failed to read an acknowledged (acks=1) offset"
        f" ({elapsed:.0f}s, ballast wrote {bal.written >> 20} MiB): {failures[:6]}")


def test_offsets_fetch_above_log_end_is_out_of_range(broker):
    """May pass on the old code: past the log end is still OFFSET_OUT_OF_RANGE, both in a
    raw Fetch v4 and as a consumer error with auto.offset.reset=error."""
    b = broker
    topic = unique_topic("past-end")
    create_topic(b.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "logger": RDLOG})
    for i in range(5):
        p.produce(topic, value=f"v{i}".encode(), partition=0)
    assert p.flush(30) == 0
    with kw.Conn(b.host, b.port, timeout=15) as conn:
        assert kw.list_offset_one(conn, 1, topic, 0) == (0, 5)
        err, hw, records = kw.fetch_one(conn, 2, topic, 0, 5 + 100)
        assert (err, records) == (OFFSET_OUT_OF_RANGE, b""), f"fetch at end+100: error {err}"
        err, hw, records = kw.fetch_one(conn, 3, topic, 0, 5)
        assert (err, hw, records) == (0, 5, b""), f"fetch at the end: {(err, hw, len(records))}"
    c = _consumer(b)
    try:
        c.assign([TopicPartition(topic, 0, 105)])
        deadline = time.monotonic() + MESSAGE_WAIT_S
        seen = None
        while time.monotonic() < deadline and seen is None:
            m = c.poll(0.2)
            if m is not None:
                seen = m
        assert seen is not None, "no error for an offset past the log end"
        assert seen.error() is not None, f"a message at offset {seen.offset()} past the log end"
        assert seen.error().code() == KafkaError._AUTO_OFFSET_RESET, seen.error()
        assert "out of range" in seen.error().str().lower(), seen.error().str()
    finally:
        c.close()
