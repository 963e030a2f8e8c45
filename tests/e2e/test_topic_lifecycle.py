"""Topic deletion is crash-safe and never resurrects records; a topic-table write that
fails is reported as an error, not as success.

Faults are made with immutable files (chattr +i: unlink, and creating files in an
immutable directory, fail with EPERM even for root). The fixture clears the flag on
everything under the data dir at teardown, whatever happened."""

import os
import signal
import time

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewPartitions, NewTopic

from fs_faults import clear_immutable_tree, set_immutable
from kafka_helpers import (
    admin, assert_same_messages, by_partition, confluent_consume, confluent_produce,
    create_topic, make_messages, unique_topic, wait_for_topic, watermarks,
)

GONE_WAIT_S = 10.0


@pytest.fixture
def lc_broker(broker_factory):
    b = broker_factory()
    try:
        yield b
    finally:
        clear_immutable_tree(b.data_dir)


def _produce(b, topic, partitions, n, seed):
    msgs = make_messages(n, partitions, seed=seed, tag=f"lc{seed}")
    delivered = confluent_produce(b.bootstrap, topic, msgs)
    return msgs, delivered


def _check(b, topic, partitions, msgs, delivered):
    counts = {p: len(v) for p, v in by_partition(msgs).items()}
    got = confluent_consume(b.bootstrap, topic, partitions, counts)
    assert_same_messages(msgs, got, expected_offsets=delivered)


def _topics(b) -> dict:
    """All topics (a Metadata request for all topics: never auto-creates one)."""
    return admin(b.bootstrap).list_topics(timeout=15).topics


def _wait_topic_gone(b, topic, why):
    deadline = time.monotonic() + GONE_WAIT_S
    while topic in _topics(b):
        assert time.monotonic() < deadline, f"{topic} still listed {GONE_WAIT_S}s after {why}"
        time.sleep(0.2)


def _delete(b, topic):
    """DeleteTopics -> error code (0 = success)."""
    a = admin(b.bootstrap)  # kept alive until the future resolves
    fut = a.delete_topics([topic], operation_timeout=20, request_timeout=20)[topic]
    try:
        fut.result(timeout=30)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def _create_partitions(b, topic, count):
    a = admin(b.bootstrap)
    fut = a.create_partitions([NewPartitions(topic, count)], request_timeout=20)[topic]
    try:
        fut.result(timeout=30)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def _create(b, topic, partitions):
    a = admin(b.bootstrap)
    fut = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                          request_timeout=20)[topic]
    try:
        fut.result(timeout=30)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def _leftovers(data_dir, topic):
    """Paths under the data dir (3 levels) whose name mentions the topic."""
    found = []
    base_depth = str(data_dir).count(os.sep)
    for dirpath, dirnames, filenames in os.walk(data_dir):
        if dirpath.count(os.sep) - base_depth >= 3:
            dirnames[:] = []
        for n in dirnames + filenames:
            if topic in n:
                found.append(os.path.relpath(os.path.join(dirpath, n), data_dir))
    return sorted(found)


def _assert_empty_and_usable(b, topic, partitions, seed):
    try:
        wm = watermarks(b.bootstrap, topic, partitions)
    except KafkaException as e:
        raise AssertionError(f"re-created {topic}: watermarks fail: {e.args[0]}") from e
    assert wm == {p: (0, 0) for p in range(partitions)}, f"re-created {topic} is not empty: {wm}"
    got = confluent_consume(b.bootstrap, topic, partitions, {p: 0 for p in range(partitions)},
                            timeout=30)
    assert got == {p: [] for p in range(partitions)}, (
        f"re-created {topic} serves old records: { {p: len(v) for p, v in got.items()} }")
    msgs, delivered = _produce(b, topic, partitions, 60, seed)
    _check(b, topic, partitions, msgs, delivered)


@pytest.mark.parametrize("flag", ["still-immutable", "cleared-before-recreate"])
def test_topic_lifecycle_recreate_after_failed_removal_is_empty(lc_broker, flag):
    """T-0's segment file is immutable, so removing T's directory fails. Deleting T may
    answer success or an error, but once T is gone and created again (same name, 2
    partitions), the new T is empty -- the old records never come back -- and works.
    "still-immutable": the flag stays on while T is re-created; "cleared-before-recreate":
    it is cleared first (what is left of the old directory is readable again)."""
    b = lc_broker
    t = unique_topic("lc-resurrect")
    create_topic(b.bootstrap, t, 2)
    _produce(b, t, 2, 200, seed=1)
    set_immutable(b.data_dir / f"{t}-0" / "00000000000000000000.log")
    code = _delete(b, t)
    _wait_topic_gone(b, t, f"DeleteTopics answered error {code}")
    if flag == "cleared-before-recreate":
        clear_immutable_tree(b.data_dir)
    assert _create(b, t, 2) == 0, "re-creating the deleted topic failed"
    wait_for_topic(b.bootstrap, t, 2)
    _assert_empty_and_usable(b, t, 2, seed=2)


def test_topic_lifecycle_meta_write_failure_is_reported(lc_broker):
    """With __riptide_meta immutable the topic table cannot be rewritten: DeleteTopics and
    CreatePartitions (and CreateTopics) must answer an error and change nothing; once the
    directory is writable again both succeed."""
    b = lc_broker
    t, t_new = unique_topic("lc-meta"), unique_topic("lc-meta-new")
    create_topic(b.bootstrap, t, 2)
    msgs, delivered = _produce(b, t, 2, 200, seed=3)
    meta = b.data_dir / "__riptide_meta"
    set_immutable(meta)
    try:
        code = _delete(b, t)
        assert code != 0, "DeleteTopics reported success although the topic table could not be written"
        assert t in _topics(b) and len(_topics(b)[t].partitions) == 2, "topic gone after a failed delete"
        _check(b, t, 2, msgs, delivered)
        code = _create_partitions(b, t, 4)
        assert code != 0, ("CreatePartitions reported success although the topic table could not be"
                           " written")
        assert len(_topics(b)[t].partitions) == 2, "partition count changed by a failed CreatePartitions"
        assert _create(b, t_new, 1) != 0, "CreateTopics reported success without a table write"
        assert t_new not in _topics(b)
    finally:
        clear_immutable_tree(meta)
    assert _create_partitions(b, t, 4) == 0
    wait_for_topic(b.bootstrap, t, 4)
    _check(b, t, 4, msgs, delivered)
    assert _delete(b, t) == 0
    _wait_topic_gone(b, t, "DeleteTopics")
    # and the table on disk says the same after a restart
    assert b.restart(signal.SIGTERM) == 0
    assert t not in _topics(b)


def _assert_gone_after_restart(b, t, keep, keep_data):
    deadline = time.monotonic() + GONE_WAIT_S
    while _leftovers(b.data_dir, t):
        assert time.monotonic() < deadline, (
            f"deleted topic {t}: {_leftovers(b.data_dir, t)} still in the data dir"
            f" {GONE_WAIT_S}s after the restart")
        time.sleep(0.2)
    assert t not in _topics(b), f"deleted topic {t} is back after the restart"
    _check(b, keep, 2, *keep_data)
    time.sleep(2)  # nothing comes back later either
    assert not _leftovers(b.data_dir, t), f"{_leftovers(b.data_dir, t)} came back"
    assert t not in _topics(b)
    dirs = sorted(e.name for e in os.scandir(b.data_dir)
                   if e.is_dir() and not e.name.startswith(".") and e.name not in ("__riptide_meta", "__riptide_journal")
                   and not e.name.startswith("__consumer_offsets-"))
    assert dirs == [f"{keep}-0", f"{keep}-1"], f"data dir holds {dirs}"


def test_topic_lifecycle_deleted_topic_stays_deleted_after_restart(lc_broker):
    """Plain delete, SIGTERM, restart (may pass on the old code): the topic stays deleted,
    its directories are gone, the other topic keeps its data."""
    b = lc_broker
    t, keep = unique_topic("lc-del"), unique_topic("lc-keep")
    create_topic(b.bootstrap, t, 2)
    create_topic(b.bootstrap, keep, 2)
    _produce(b, t, 2, 200, seed=4)
    keep_data = _produce(b, keep, 2, 200, seed=5)
    assert _delete(b, t) == 0
    _wait_topic_gone(b, t, "DeleteTopics")
    assert b.restart(signal.SIGTERM) == 0
    _assert_gone_after_restart(b, t, keep, keep_data)


def test_topic_lifecycle_failed_removal_finished_after_kill9(lc_broker):
    """Removing T's directory fails (immutable segment file) during DeleteTopics; the flag
    is cleared, the broker is killed (-9) and restarted: T stays deleted and its
    directories are removed (in the background is fine), nothing of it comes back, and
    T created again is empty."""
    b = lc_broker
    t, keep = unique_topic("lc-crash"), unique_topic("lc-keep")
    create_topic(b.bootstrap, t, 2)
    create_topic(b.bootstrap, keep, 2)
    _produce(b, t, 2, 200, seed=6)
    keep_data = _produce(b, keep, 2, 200, seed=7)
    set_immutable(b.data_dir / f"{t}-0" / "00000000000000000000.log")
    code = _delete(b, t)
    _wait_topic_gone(b, t, f"DeleteTopics answered error {code}")
    clear_immutable_tree(b.data_dir)
    b.kill()
    b.start()
    _assert_gone_after_restart(b, t, keep, keep_data)
    assert _create(b, t, 2) == 0
    wait_for_topic(b.bootstrap, t, 2)
    _assert_empty_and_usable(b, t, 2, seed=8)
