"""Log compaction (cleanup.policy=compact, issue 11) with real clients (confluent-kafka):
a compacted topic keeps exactly the last value per key across segment rolls and a restart
(tombstones stay within delete.retention.ms), a keyless record is refused with INVALID_RECORD
(KIP-467), and `__consumer_offsets` stops growing under one group's many commits."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from group_helpers import committed_offsets, java_partition_for, read_offsets_topic, wait_until
from kafka_helpers import RDLOG, admin, create_topic, unique_topic

# The compactor looks for dirty logs this often in these tests (Kafka's default is 15 s).
CLEANER = {"log.cleaner.backoff.ms": 200}
INVALID_RECORD = 87
KEYS = 20
ROUNDS = 100
FILLERS = 300
TOMBSTONED = {"key-0", "key-1", "key-2"}


def compacted_topic(b, name: str, **extra) -> None:
    config = {"cleanup.policy": "compact", "segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01",
              "delete.retention.ms": "3600000", **extra}
    create_topic(b.bootstrap, name, 1, config=config)


def produce_all(bootstrap: str, topic: str, records: list[tuple[str | None, str | None]]) -> list:
    """Produces (key, value) records in order (idempotent producer); returns the delivery errors."""
    errors = []
    # Small batches (as a steady trickle of updates would send): many batches over many segments.
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 2,
                  "batch.num.messages": 20, "logger": RDLOG})

    def done(err, _msg):
        if err is not None:
            errors.append(err)

    for key, value in records:
        p.produce(topic, key=key, value=value, partition=0, on_delivery=done)
        p.poll(0)
    assert p.flush(30) == 0, "undelivered messages"
    return errors


def consume_all(bootstrap: str, topic: str, timeout: float = 30) -> list[tuple[int, str, str | None]]:
    """Every (offset, key, value) of partition 0 from the beginning."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("reader"), "enable.auto.commit": False,
                  "enable.partition.eof": True, "logger": RDLOG})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"{topic} not read to its end ({len(out)} records)"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(f"consuming {topic}: {m.error()}")
            out.append((m.offset(), m.key().decode(), None if m.value() is None else m.value().decode()))
    finally:
        c.close()


def updates() -> tuple[list[tuple[str, str | None]], dict[str, str | None]]:
    records = []
    for r in range(ROUNDS):
        for k in range(KEYS):
            key = f"key-{k}"
            last = r == ROUNDS - 1
            records.append((key, None if last and key in TOMBSTONED else f"value-{k}-{r}"))
    records += [(f"filler-{i}", f"f{i}") for i in range(FILLERS)]
    return records, dict(records)


def test_compaction_keeps_last_value_per_key_across_rolls_and_restart(broker_factory):
    b = broker_factory(config=CLEANER)
    topic = unique_topic("compacted")
    compacted_topic(b, topic)
    records, want = updates()
    assert produce_all(b.bootstrap, topic, records) == []

    def compacted():
        got = consume_all(b.bootstrap, topic)
        return got if sum(1 for r in got if r[1].startswith("key-")) == KEYS else None

    got = wait_until(compacted, 60, "the updates compacted to one record per key", interval=0.5)
    b.restart()
    after = consume_all(b.bootstrap, topic)
    assert after == got, "the same records after a restart"
    keys = [k for _, k, _ in after]
    assert len(keys) == len(set(keys)), "every key exactly once"
    assert {k: v for _, k, v in after} == want, "the last value per key; tombstones kept within delete.retention.ms"
    offsets = [o for o, _, _ in after]
    assert offsets == sorted(offsets) and offsets[-1] == len(records) - 1, "offsets kept (with gaps)"
    assert offsets[0] > 0, "the first records were compacted away: a gap at the start"
    # The log takes new records at the next offset after the restart.
    assert produce_all(b.bootstrap, topic, [("key-5", "after")]) == []
    assert consume_all(b.bootstrap, topic)[-1] == (len(records), "key-5", "after")


def test_compaction_keyless_produce_is_invalid_record(broker_factory):
    b = broker_factory(config=CLEANER)
    topic = unique_topic("keyed-only")
    compacted_topic(b, topic)
    errors = produce_all(b.bootstrap, topic, [(None, "no key")])
    assert [e.code() for e in errors] == [INVALID_RECORD], errors
    assert produce_all(b.bootstrap, topic, [("k", "with key")]) == []
    assert [(k, v) for _, k, v in consume_all(b.bootstrap, topic)] == [("k", "with key")]


def test_compaction_consumer_offsets_shrinks_under_many_commits(broker_factory):
    b = broker_factory(config=CLEANER)
    group = unique_topic("committer")
    part = java_partition_for(group, 50)
    # Small segments for __consumer_offsets (taken at the next open of its logs: a restart).
    a = admin(b.bootstrap)
    res = ConfigResource("TOPIC", "__consumer_offsets",
                         incremental_configs=[ConfigEntry("segment.bytes", "4096",
                                                          incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=20)
    b.restart()
    topic = unique_topic("committed")
    create_topic(b.bootstrap, topic, 1)
    commits = 2000
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False, "logger": RDLOG})
    try:
        for i in range(commits):
            c.commit(offsets=[TopicPartition(topic, 0, i + 1)], asynchronous=False)
    finally:
        c.close()

    def small():
        ours = [r for r in read_offsets_topic(b.bootstrap) if r[0] == part]
        return ours if len(ours) < commits // 10 else None

    ours = wait_until(small, 60, f"__consumer_offsets-{part} compacted", interval=1)
    assert ours, "the latest commit stays"
    data = b.data_dir / f"__consumer_offsets-{part}"
    size = sum(f.stat().st_size for f in data.glob("*.log"))
    assert size < commits * 50, f"{size} bytes of segments left for {commits} commits"
    b.restart()
    assert committed_offsets(b.bootstrap, group)[(topic, 0)] == commits, "the last commit survives a restart"
