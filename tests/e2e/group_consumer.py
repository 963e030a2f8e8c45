#!/usr/bin/env python3
"""One consumer-group member, run as its own process by the group tests (test_groups.py).

    group_consumer.py CLIENT BOOTSTRAP GROUP TOPICS OUT [--strategy S] [--session-ms N]
                      [--instance-id ID]

CLIENT is confluent, kafka-python or aiokafka. The member subscribes to TOPICS (comma
separated), consumes from the earliest offset when its group has no commit, and for every
batch it gets: writes each message to OUT (processing), then commits the next offsets
synchronously (no auto-commit) and writes what it committed. SIGTERM closes the consumer
cleanly (LeaveGroup); SIGKILL is how a test makes a member fail.

OUT gets one JSON object per line, flushed at once:
  {"ev": "assigned"|"revoked", "partitions": [[topic, partition], ...], "t": unix time}
      confluent reports incremental changes under cooperative-sticky, full sets otherwise
  {"ev": "msg", "topic", "partition", "offset", "value", "t"}
  {"ev": "committed", "offsets": [[topic, partition, next_offset], ...], "t"}
  {"ev": "commit_failed", "error": str, "t"}
  {"ev": "closed", "t"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time


class Out:
    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1)

    def __call__(self, ev: str, **kw) -> None:
        kw["ev"] = ev
        kw["t"] = time.time()
        self.f.write(json.dumps(kw) + "\n")
        self.f.flush()


STOP = False


def _stop(*_):
    global STOP
    STOP = True


def run_confluent(a, out: Out) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    conf = {
        "bootstrap.servers": a.bootstrap, "group.id": a.group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": a.session_ms,
        "heartbeat.interval.ms": max(500, a.session_ms // 6),
        "partition.assignment.strategy": a.strategy or "range,roundrobin",
        "client.id": f"riptide-e2e-confluent-{a.name}",
    }
    if a.instance_id:
        conf["group.instance.id"] = a.instance_id
    c = Consumer(conf)

    # The callbacks only record: without an assign() call in them, the client applies the
    # change itself (incrementally under cooperative-sticky).
    def on_assign(consumer, parts):
        out("assigned", partitions=[[p.topic, p.partition] for p in parts])

    def on_revoke(consumer, parts):
        out("revoked", partitions=[[p.topic, p.partition] for p in parts])

    c.subscribe(a.topics, on_assign=on_assign, on_revoke=on_revoke)
    while not STOP:
        msgs = c.consume(500, timeout=0.2)
        batch = {}
        for m in msgs:
            if m.error():
                continue
            out("msg", topic=m.topic(), partition=m.partition(), offset=m.offset(),
                value=(m.value() or b"").decode(errors="replace"))
            batch[(m.topic(), m.partition())] = m.offset() + 1
        if batch:
            offsets = [TopicPartition(t, p, o) for (t, p), o in batch.items()]
            try:
                c.commit(offsets=offsets, asynchronous=False)
                out("committed", offsets=[[t, p, o] for (t, p), o in batch.items()])
            except KafkaException as e:
                out("commit_failed", error=str(e))
    c.close()
    out("closed")


def run_kafka_python(a, out: Out) -> None:
    from kafka import KafkaConsumer, OffsetAndMetadata
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.errors import KafkaError

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            out("revoked", partitions=[[tp.topic, tp.partition] for tp in revoked])

        def on_partitions_assigned(self, assigned):
            out("assigned", partitions=[[tp.topic, tp.partition] for tp in assigned])

    assignors = {"range": [RangePartitionAssignor], "roundrobin": [RoundRobinPartitionAssignor]}.get(
        a.strategy or "", [RangePartitionAssignor, RoundRobinPartitionAssignor])
    kw = {}
    if a.instance_id:
        kw["group_instance_id"] = a.instance_id
    c = KafkaConsumer(
        bootstrap_servers=a.bootstrap, group_id=a.group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=a.session_ms,
        heartbeat_interval_ms=max(500, a.session_ms // 6), partition_assignment_strategy=assignors,
        client_id=f"riptide-e2e-kafka-python-{a.name}", **kw)
    c.subscribe(a.topics, listener=Listener())
    while not STOP:
        polled = c.poll(timeout_ms=200, max_records=500)
        batch = {}
        for tp, records in polled.items():
            for r in records:
                out("msg", topic=r.topic, partition=r.partition, offset=r.offset,
                    value=(r.value or b"").decode(errors="replace"))
                batch[tp] = r.offset + 1
        if batch:
            try:
                c.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in batch.items()})
                out("committed", offsets=[[tp.topic, tp.partition, o] for tp, o in batch.items()])
            except KafkaError as e:
                out("commit_failed", error=repr(e))
    c.close()
    out("closed")


async def run_aiokafka(a, out: Out) -> None:
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
    from aiokafka.errors import KafkaError

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            out("revoked", partitions=[[tp.topic, tp.partition] for tp in revoked])

        async def on_partitions_assigned(self, assigned):
            out("assigned", partitions=[[tp.topic, tp.partition] for tp in assigned])

    c = AIOKafkaConsumer(
        bootstrap_servers=a.bootstrap, group_id=a.group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=a.session_ms,
        heartbeat_interval_ms=max(500, a.session_ms // 6),
        client_id=f"riptide-e2e-aiokafka-{a.name}")
    c.subscribe(a.topics, listener=Listener())
    await c.start()
    try:
        while not STOP:
            polled = await c.getmany(timeout_ms=200, max_records=500)
            batch = {}
            for tp, records in polled.items():
                for r in records:
                    out("msg", topic=r.topic, partition=r.partition, offset=r.offset,
                        value=(r.value or b"").decode(errors="replace"))
                    batch[tp] = r.offset + 1
            if batch:
                try:
                    await c.commit(batch)
                    out("committed", offsets=[[tp.topic, tp.partition, o] for tp, o in batch.items()])
                except KafkaError as e:
                    out("commit_failed", error=repr(e))
    finally:
        await c.stop()
    out("closed")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("client", choices=["confluent", "kafka-python", "aiokafka"])
    p.add_argument("bootstrap")
    p.add_argument("group")
    p.add_argument("topics")
    p.add_argument("out")
    p.add_argument("--strategy")
    p.add_argument("--session-ms", type=int, default=10000)
    p.add_argument("--instance-id")
    p.add_argument("--name", default="m")
    a = p.parse_args()
    a.topics = a.topics.split(",")
    out = Out(a.out)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if a.client == "confluent":
        run_confluent(a, out)
    elif a.client == "kafka-python":
        run_kafka_python(a, out)
    else:
        asyncio.run(run_aiokafka(a, out))


if __name__ == "__main__":
    sys.exit(main())
