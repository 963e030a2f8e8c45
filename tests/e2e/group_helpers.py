"""Helpers for the consumer-group tests: member processes, their event logs, producers, lag,
and a decoder for `__consumer_offsets` written from Kafka's record schemas."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, OFFSET_BEGINNING, Producer, TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions

from kafka_helpers import RDLOG, admin

HERE = Path(__file__).resolve().parent
JS_DIR = HERE.parent / "js"
NODE = shutil.which("node")
KAFKAJS = NODE is not None and (JS_DIR / "node_modules" / "kafkajs").is_dir()


def wait_until(cond, timeout: float, what: str, interval: float = 0.2):
    """Polls `cond()` until it returns something truthy (returned) or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Member:
    """One consumer-group member in its own process (group_consumer.py or group_consumer.js)."""

    def __init__(self, client: str, bootstrap: str, group: str, topics: list[str], workdir: Path,
                 name: str, strategy: str | None = None, session_ms: int = 10000,
                 instance_id: str | None = None):
        self.client, self.group, self.name = client, group, name
        self.incremental = strategy == "cooperative-sticky"
        self.out = workdir / f"{group}-{name}.jsonl"
        self.log = workdir / f"{group}-{name}.log"
        topics_arg = ",".join(topics)
        if client == "kafkajs":
            self.cmd = [NODE, str(JS_DIR / "group_consumer.js"), bootstrap, group, topics_arg,
                        str(self.out), "--session-ms", str(session_ms), "--name", name]
            self.cwd = JS_DIR
        else:
            self.cmd = [sys.executable, str(HERE / "group_consumer.py"), client, bootstrap, group,
                        topics_arg, str(self.out), "--session-ms", str(session_ms), "--name", name]
            if strategy:
                self.cmd += ["--strategy", strategy]
            if instance_id:
                self.cmd += ["--instance-id", instance_id]
            self.cwd = HERE
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Member":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM: the member leaves the group cleanly. Returns its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(f"{self.name} did not stop within {timeout}s:\n{self.log_tail()}")
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the member fails without leaving."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def events(self) -> list[dict]:
        try:
            lines = self.out.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line being written
        return out

    def assignment(self, events: list[dict] | None = None) -> set[tuple[str, int]]:
        """The current assignment: eager clients report whole sets, cooperative ones changes."""
        current: set[tuple[str, int]] = set()
        for e in events if events is not None else self.events():
            parts = {(t, p) for t, p in e.get("partitions", [])}
            if e["ev"] == "assigned":
                current = current | parts if self.incremental else parts
            elif e["ev"] == "revoked":
                current = current - parts if self.incremental else set()
        return current

    def consumed(self) -> list[tuple[str, int, int]]:
        return [(e["topic"], e["partition"], e["offset"]) for e in self.events() if e["ev"] == "msg"]

    def last_commits(self) -> dict[tuple[str, int], int]:
        """The last offset this member committed successfully, per partition."""
        last: dict[tuple[str, int], int] = {}
        for e in self.events():
            if e["ev"] == "committed":
                for t, p, o in e["offsets"]:
                    last[(t, p)] = max(o, last.get((t, p), 0))
        return last

    def failures(self) -> list[str]:
        return [e["error"] for e in self.events() if e["ev"] == "commit_failed"]


def all_partitions(topics: list[str], partitions: int) -> set[tuple[str, int]]:
    return {(t, p) for t in topics for p in range(partitions)}


def stable_assignment(members: list[Member], expected: set[tuple[str, int]]):
    """The members' assignments if they cover `expected` exactly once, else None."""
    sets = [m.assignment() for m in members]
    union = set().union(*sets)
    if union != expected or sum(len(s) for s in sets) != len(expected):
        return None
    return sets


def describe_group(bootstrap: str, group: str):
    a = admin(bootstrap)  # kept alive until the future resolves
    return a.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=20)


def wait_group_stable(bootstrap: str, members: list[Member], expected, timeout: float = 60, accept=None):
    """Waits until the members own `expected` between them and the coordinator reports the
    group Stable with exactly these members (and `accept(assignments)` holds, if given: a
    cooperative rebalance passes through a Stable generation before the newcomer gets
    anything). Returns the members' assignments."""
    def check():
        for m in members:
            assert m.alive(), f"member {m.name} died:\n{m.log_tail()}"
        sets = stable_assignment(members, expected)
        if sets is None or (accept is not None and not accept(sets)):
            return None
        d = describe_group(bootstrap, members[0].group)
        if str(d.state).split(".")[-1] != "STABLE" or len(d.members) != len(members):
            return None
        return sets
    return wait_until(check, timeout, f"group {members[0].group} stable with {len(members)} members")


def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """OffsetFetch of every committed offset of `group` (through the AdminClient)."""
    req = ConsumerGroupTopicPartitions(group)
    a = admin(bootstrap)  # kept alive until the future resolves
    res = a.list_consumer_group_offsets([req], request_timeout=15)[group].result(timeout=20)
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions if tp.offset >= 0}


def high_watermarks(bootstrap: str, partitions: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw-probe", "enable.auto.commit": False,
                  "logger": RDLOG})
    try:
        return {tp: c.get_watermark_offsets(TopicPartition(*tp), timeout=15, cached=False)[1] for tp in partitions}
    finally:
        c.close()


def lag(bootstrap: str, group: str, partitions: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Per partition: high watermark minus committed offset (the whole log if nothing is committed)."""
    hw = high_watermarks(bootstrap, partitions)
    committed = committed_offsets(bootstrap, group)
    return {tp: hw[tp] - committed.get(tp, 0) for tp in partitions}


# -- producers ---------------------------------------------------------------------------

def value_of(topic: str, i: int) -> bytes:
    return f"{topic}:{i}".encode()


def produce_confluent(bootstrap: str, topic: str, start: int, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "logger": RDLOG})
    errors = []
    for i in range(start, start + n):
        p.produce(topic, key=f"k{i}".encode(), value=value_of(topic, i),
                  on_delivery=lambda err, _m: err and errors.append(err))
        p.poll(0)
    assert p.flush(60) == 0 and not errors, f"confluent producer: {errors[:3]}"


def produce_kafka_python(bootstrap: str, topic: str, start: int, n: int) -> None:
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [p.send(topic, key=f"k{i}".encode(), value=value_of(topic, i)) for i in range(start, start + n)]
    p.flush(60)
    for f in futures:
        f.get(timeout=30)
    p.close()


def produce_aiokafka(bootstrap: str, topic: str, start: int, n: int) -> None:
    async def run():
        from aiokafka import AIOKafkaProducer
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await p.start()
        try:
            futures = [await p.send(topic, key=f"k{i}".encode(), value=value_of(topic, i))
                       for i in range(start, start + n)]
            for f in futures:
                await f
        finally:
            await p.stop()
    asyncio.run(run())


PRODUCERS = [produce_confluent, produce_kafka_python, produce_aiokafka]


def produce_concurrently(bootstrap: str, topics: list[str], start: int, n: int) -> None:
    """Three producers at once, one per topic (confluent-kafka, kafka-python, aiokafka)."""
    errors = []

    def run(fn, topic):
        try:
            fn(bootstrap, topic, start, n)
        except Exception as e:  # reported below
            errors.append(f"{fn.__name__}({topic}): {e!r}")

    threads = [threading.Thread(target=run, args=(fn, t)) for fn, t in zip(PRODUCERS, topics)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors and not any(th.is_alive() for th in threads), f"producers: {errors}"


class SteadyProducer:
    """Produces to every topic in a background thread (confluent-kafka, acks=all) until
    stopped; counts what was acknowledged."""

    def __init__(self, bootstrap: str, topics: list[str], rate_per_s: int = 200):
        self.bootstrap, self.topics, self.rate = bootstrap, topics, rate_per_s
        self.sent = 0
        self.errors: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "SteadyProducer":
        self._thread.start()
        return self

    def _run(self):
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 5, "logger": RDLOG})
        i = 0
        while not self._stop.is_set():
            for t in self.topics:
                p.produce(t, key=f"s{i}".encode(), value=value_of(t, 100_000 + i),
                          on_delivery=lambda err, _m: err and self.errors.append(err))
            i += 1
            p.poll(0)
            time.sleep(len(self.topics) / self.rate)
        assert p.flush(60) == 0
        self.sent = i * len(self.topics)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=90)
        assert not self.errors, f"steady producer: {self.errors[:3]}"
        return self.sent


# -- __consumer_offsets, decoded from Kafka's schemas ---------------------------------------

def java_partition_for(group: str, partitions: int) -> int:
    """Kafka's partition of a group: Utils.abs(String.hashCode) % partitions."""
    h = 0
    raw = group.encode("utf-16-be")
    for i in range(0, len(raw), 2):
        h = (31 * h + int.from_bytes(raw[i:i + 2], "big")) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % partitions


class _Buf:
    def __init__(self, b: bytes):
        self.b, self.i = b, 0

    def take(self, n):
        out = self.b[self.i:self.i + n]
        assert len(out) == n, "truncated record"
        self.i += n
        return out

    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def bytes_(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def done(self):
        return self.i == len(self.b)


def decode_offsets_key(key: bytes):
    """('offset', version, group, topic, partition) or ('group', version, group)."""
    b = _Buf(key)
    version = b.i16()
    if version in (0, 1):
        rec = ("offset", version, b.string(), b.string(), b.i32())
    elif version == 2:
        rec = ("group", version, b.string())
    else:
        return ("other", version)
    assert b.done(), f"trailing bytes in key {key!r}"
    return rec


def decode_offset_commit_value(value: bytes) -> dict:
    b = _Buf(value)
    v = {"version": b.i16()}
    assert v["version"] in (1, 3), f"value version {v['version']}"
    v["offset"] = b.i64()
    v["leader_epoch"] = b.i32() if v["version"] >= 3 else -1
    v["metadata"] = b.string()
    v["commit_timestamp"] = b.i64()
    if v["version"] == 1:
        v["expire_timestamp"] = b.i64()
    assert b.done(), "trailing bytes in offset commit value"
    return v


def decode_group_metadata_value(value: bytes) -> dict:
    b = _Buf(value)
    v = {"version": b.i16()}
    assert v["version"] == 3, f"group metadata value version {v['version']}"
    v["protocol_type"] = b.string()
    v["generation"] = b.i32()
    v["protocol"] = b.string()
    v["leader"] = b.string()
    v["current_state_timestamp"] = b.i64()
    members = []
    for _ in range(b.i32()):
        members.append({"member_id": b.string(), "group_instance_id": b.string(), "client_id": b.string(),
                        "client_host": b.string(), "rebalance_timeout": b.i32(), "session_timeout": b.i32(),
                        "subscription": b.bytes_(), "assignment": b.bytes_()})
    v["members"] = members
    assert b.done(), "trailing bytes in group metadata value"
    return v


def read_offsets_topic(bootstrap: str, partitions: int = 50, timeout: float = 60) -> list[tuple[int, int, bytes, bytes | None]]:
    """Every record of `__consumer_offsets`, read with a plain consumer by assignment:
    (partition, offset, key, value)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-reader", "enable.auto.commit": False,
                  "enable.partition.eof": True, "logger": RDLOG})
    try:
        c.assign([TopicPartition("__consumer_offsets", p, OFFSET_BEGINNING) for p in range(partitions)])
        records, eof = [], set()
        deadline = time.monotonic() + timeout
        while len(eof) < partitions:
            assert time.monotonic() < deadline, f"__consumer_offsets not read to its end: eof on {sorted(eof)}"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                raise AssertionError(f"reading __consumer_offsets: {m.error()}")
            eof.discard(m.partition())
            records.append((m.partition(), m.offset(), m.key(), m.value()))
        return records
    finally:
        c.close()
