"""Shared helpers: test data, topic creation, consuming with confluent-kafka, checks."""

from __future__ import annotations

import logging
import random
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic


# librdkafka's own log lines go through Python logging (pytest shows them for failing
# tests only) instead of straight to stderr.
RDLOG = logging.getLogger("librdkafka")


@dataclass(frozen=True)
class Msg:
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple = field(default_factory=tuple)  # ((str, bytes), ...) in order
    timestamp_ms: int = 0

    def short(self) -> str:
        def b(x):
            if x is None:
                return "None"
            return repr(x[:24]) + (f"...({len(x)}B)" if len(x) > 24 else "")
        return (f"Msg(p={self.partition}, key={b(self.key)}, value={b(self.value)}, "
                f"headers={[(k, b(v)) for k, v in self.headers]}, ts={self.timestamp_ms})")


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_messages(n: int, partitions: int, seed: int, tag: str) -> list[Msg]:
    """`n` deterministic messages spread over `partitions` with varied shapes: binary
    values of many sizes (incl. empty and ~100 KiB), null keys/values now and then,
    0-3 headers (duplicate header keys included), out-of-order create timestamps."""
    rng = random.Random(seed)
    base_ts = (int(time.time() * 1000) // 1000) * 1000 - 3_600_000
    out = []
    for i in range(n):
        p = rng.randrange(partitions)
        key: bytes | None = f"{tag}-key-{i % 97}".encode()
        if i % 53 == 7:
            key = None
        size = rng.choice([0, 1, 10, 100, 300, 1000, 4000])
        if i % 211 == 13:
            size = 100 * 1024 + rng.randrange(1000)
        value: bytes | None = f"{tag}:{i}:".encode() + rng.randbytes(size)
        if i % 61 == 11:
            value = None
        elif i % 59 == 5:
            value = b""
        nh = i % 4
        headers = []
        for h in range(nh):
            hk = "dup" if (i % 5 == 0 and h > 0) else f"h{h}"
            headers.append((hk, rng.randbytes(rng.choice([0, 3, 40]))))
        ts = base_ts + (i * 7919) % 200_000  # not monotonic: negative deltas in batches
        out.append(Msg(p, key, value, tuple(headers), ts))
    return out


def by_partition(msgs: list[Msg]) -> dict[int, list[Msg]]:
    d: dict[int, list[Msg]] = {}
    for m in msgs:
        d.setdefault(m.partition, []).append(m)
    return d


# -- admin ------------------------------------------------------------------

def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000, "logger": RDLOG})


def create_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0,
                 config: dict[str, str] | None = None) -> None:
    a = admin(bootstrap)
    futs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                     config=config or {})],
                           request_timeout=timeout)
    futs[name].result(timeout=timeout)
    wait_for_topic(bootstrap, name, partitions, timeout=timeout, client=a)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0,
                   client: AdminClient | None = None) -> None:
    a = client or admin(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 and p.error is None for p in t.partitions.values()):
            return
        last = t
        time.sleep(0.2)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions: {last!r}"
                         f" {getattr(last, 'partitions', None)}")


# -- confluent-kafka produce / consume ------------------------------------------

def confluent_produce(bootstrap: str, topic: str, msgs: list[Msg], compression: str = "none",
                      timeout: float = 90.0, extra: dict | None = None) -> list[tuple[int, int]]:
    """Produce with acks=all; return (partition, offset) from each delivery report, in
    the order of `msgs`. Fails on any delivery error."""
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "compression.type": compression,
            "linger.ms": 5, "message.timeout.ms": int(timeout * 1000 * 0.8), "logger": RDLOG}
    conf.update(extra or {})
    p = Producer(conf)
    reports: list = [None] * len(msgs)

    def cb_for(i):
        def cb(err, m):
            reports[i] = (err, None if err else (m.partition(), m.offset()))
        return cb

    deadline = time.monotonic() + timeout
    for i, m in enumerate(msgs):
        while True:
            try:
                p.produce(topic, value=m.value, key=m.key, partition=m.partition,
                          headers=list(m.headers), timestamp=m.timestamp_ms, on_delivery=cb_for(i))
                break
            except BufferError:
                p.poll(0.05)
                assert time.monotonic() < deadline, "producer queue stayed full"
        p.poll(0)
    remaining = p.flush(max(1.0, deadline - time.monotonic()))
    assert remaining == 0, f"{remaining} messages not delivered within {timeout}s"
    errs = [(i, r[0]) for i, r in enumerate(reports) if r is None or r[0] is not None]
    assert not errs, f"{len(errs)} delivery errors, first: {errs[:5]}"
    return [r[1] for r in reports]


def confluent_consume(bootstrap: str, topic: str, partitions: int, expected_counts: dict[int, int],
                      timeout: float = 90.0, extra: dict | None = None) -> dict[int, list]:
    """Read partitions 0..partitions-1 from the beginning by assignment (no group
    membership: group.id is only set because the Python client insists on one) until
    each has `expected_counts[p]` records and is at its end. Returns
    {partition: [(offset, Msg, timestamp_type)]}."""
    conf = {"bootstrap.servers": bootstrap, "group.id": f"unused-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "enable.partition.eof": True, "auto.offset.reset": "earliest", "logger": RDLOG}
    conf.update(extra or {})
    c = Consumer(conf)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got: dict[int, list] = {p: [] for p in range(partitions)}
        at_eof: set[int] = set()
        other_errors = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = all(len(got[p]) >= expected_counts.get(p, 0) for p in range(partitions))
            if done and len(at_eof) == partitions:
                break
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(m.partition())
                    continue
                if m.topic() == topic or m.error().fatal():
                    raise AssertionError(f"consumer error on {m.topic()}/{m.partition()}: {m.error()}")
                other_errors.append(str(m.error()))
                continue
            at_eof.discard(m.partition())
            ts_type, ts = m.timestamp()
            hdrs = tuple((k, v) for k, v in (m.headers() or []))
            got[m.partition()].append((m.offset(), Msg(m.partition(), m.key(), m.value(), hdrs, ts),
                                       ts_type))
        else:
            counts = {p: len(v) for p, v in got.items()}
            raise AssertionError(f"timed out after {timeout}s consuming {topic}: got {counts},"
                                 f" expected {expected_counts}, eof={sorted(at_eof)},"
                                 f" unrelated errors={other_errors[:5]}")
        return got
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"unused-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "logger": RDLOG})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)
                for p in range(partitions)}
    finally:
        c.close()


# -- checks -------------------------------------------------------------------

def assert_same_messages(expected: list[Msg], got: dict[int, list], *, check_ts_type=True,
                         expected_offsets: list[tuple[int, int]] | None = None,
                         first_offset: dict[int, int] | None = None) -> None:
    """Every partition holds exactly the expected messages, in produce order, at
    consecutive offsets (from `first_offset[p]`, default 0); keys, values, headers and
    create timestamps byte-identical. If `expected_offsets` (delivery reports) is given,
    each message sits at the offset its producer was told."""
    exp = by_partition(expected)
    parts = set(exp) | {p for p, v in got.items() if v}
    for p in sorted(parts):
        e = exp.get(p, [])
        g = got.get(p, [])
        assert len(g) == len(e), f"partition {p}: expected {len(e)} messages, got {len(g)}"
        start = (first_offset or {}).get(p, 0)
        offsets = [o for o, _, _ in g]
        assert offsets == list(range(start, start + len(e))), (
            f"partition {p}: offsets not consecutive from {start}: {offsets[:10]}...")
        for idx, (em, (off, gm, ts_type)) in enumerate(zip(e, g)):
            if em != gm:
                raise AssertionError(
                    f"partition {p} index {idx} offset {off} differs:\n expected {em.short()}\n"
                    f"      got {gm.short()}")
            if check_ts_type:
                assert ts_type == TIMESTAMP_CREATE_TIME, f"p{p}@{off}: timestamp type {ts_type}"
    if expected_offsets is not None:
        pos = {}
        for p, lst in got.items():
            for off, gm, _ in lst:
                pos[(p, off)] = gm
        for m, (p, off) in zip(expected, expected_offsets):
            assert p == m.partition, f"delivered to partition {p}, asked for {m.partition}"
            assert pos.get((p, off)) == m, (
                f"acknowledged offset {p}@{off} holds {pos.get((p, off))}, expected {m.short()}")


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(broker, timeout: float = 10.0) -> dict[str, float]:
    """The broker's /metrics as {series (name + labels): value}."""
    status, text = http_get(f"http://{broker.admin}/metrics", timeout)
    assert status == 200, text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out
