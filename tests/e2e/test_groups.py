"""Consumer groups with real clients, each member its own process (group_consumer.py,
tests/js/group_consumer.js): the tutorials' scenario (topics orders, payments, shipments with 3
partitions; groups of 1, 2 and 3 members mixing confluent-kafka, kafka-python, aiokafka and
kafkajs), a member killed, a member added under cooperative-sticky, static membership, the
broker restarted (SIGTERM and kill -9) under committed groups, and `__consumer_offsets`
decoded with Kafka's record formats."""

from __future__ import annotations

import collections
import signal
import time

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import NewPartitions, NewTopic

from group_helpers import (
    KAFKAJS, Member, SteadyProducer, all_partitions, committed_offsets, decode_group_metadata_value,
    decode_offset_commit_value, decode_offsets_key, describe_group, high_watermarks, java_partition_for,
    lag, produce_concurrently, read_offsets_topic, value_of, wait_group_stable, wait_until,
)
from kafka_helpers import RDLOG, admin, create_topic

TOPICS = ["orders", "payments", "shipments"]
PARTITIONS = 3
ALL = all_partitions(TOPICS, PARTITIONS)

needs_kafkajs = pytest.mark.skipif(not KAFKAJS, reason="node or kafkajs missing (run tests/setup.sh)")


def setup_topics(b) -> None:
    for t in TOPICS:
        create_topic(b.bootstrap, t, PARTITIONS)


def start_group(b, tmp_path, group, clients, **kw) -> list[Member]:
    return [Member(c, b.bootstrap, group, TOPICS, tmp_path, f"{c}-{i}", **kw).start() for i, c in enumerate(clients)]


def stop_all(members) -> None:
    codes = {m.name: m.stop() for m in members}
    assert all(c == 0 for c in codes.values()), f"members exited with {codes}"


def log_of(members) -> str:
    return "\n".join(f"--- {m.group}/{m.name}\n{m.log_tail(1500)}" for m in members)


def expected_offsets(b) -> set[tuple[str, int, int]]:
    hw = high_watermarks(b.bootstrap, ALL)
    return {(t, p, o) for (t, p), end in hw.items() for o in range(end)}


def wait_lag_zero(b, group, timeout=60) -> dict:
    return wait_until(lambda: (lambda lg: lg if all(v == 0 for v in lg.values()) else None)(lag(b.bootstrap, group, ALL)),
                      timeout, f"lag 0 for group {group}", interval=0.5)


def consumption(members) -> collections.Counter:
    counts = collections.Counter()
    for m in members:
        counts.update(m.consumed())
    return counts


def assert_exactly_once(members, expected, what) -> None:
    counts = consumption(members)
    missing = expected - set(counts)
    dups = {k: v for k, v in counts.items() if v > 1}
    extra = set(counts) - expected
    assert not missing and not dups and not extra, (
        f"{what}: {len(missing)} missing (e.g. {sorted(missing)[:5]}), {len(dups)} consumed more than once"
        f" (e.g. {sorted(dups.items())[:5]}), {len(extra)} unexpected")


@needs_kafkajs
@pytest.mark.timeout(240)
def test_groups_seed_scenario_mixed_clients_consume_exactly_once(broker_factory, tmp_path):
    """Three producers (confluent-kafka, kafka-python, aiokafka) write orders, payments and
    shipments; groups of 1, 2 and 3 members each consume everything exactly once across their
    members, with balanced assignments, and their lag (committed offsets vs high watermarks,
    through the AdminClient) reaches 0."""
    b = broker_factory()
    setup_topics(b)
    layout = {"seed-g1": ["kafka-python"], "seed-g2": ["kafka-python", "kafkajs"],
              "seed-g3": ["confluent", "aiokafka", "kafkajs"]}
    groups = {g: start_group(b, tmp_path, g, clients) for g, clients in layout.items()}
    try:
        for g, members in groups.items():
            sets = wait_group_stable(b.bootstrap, members, ALL, timeout=90)
            sizes = sorted(len(s) for s in sets)
            assert sizes[-1] - sizes[0] <= 1, f"{g}: unbalanced assignment {sizes}"
            d = describe_group(b.bootstrap, g)
            assert d.partition_assignor == ("range" if len(members) == 1 else "roundrobin"), d.partition_assignor
            assert all(m.host == "/127.0.0.1" for m in d.members), [m.host for m in d.members]
        produce_concurrently(b.bootstrap, TOPICS, 0, 300)
        expected = expected_offsets(b)
        assert len(expected) == 900
        for g, members in groups.items():
            wait_lag_zero(b, g)
            wait_until(lambda: set(consumption(members)) >= expected, 30, f"{g} consumed everything")
            assert_exactly_once(members, expected, g)
            values = {e["value"].encode() for m in members for e in m.events() if e["ev"] == "msg"}
            assert values == {value_of(t, i) for t in TOPICS for i in range(300)}, f"{g}: values differ"
            assert not any(m.failures() for m in members), {m.name: m.failures() for m in members}
            # Nothing moved while they consumed: the group stayed in one generation.
            assert wait_group_stable(b.bootstrap, members, ALL, timeout=5)
        a = admin(b.bootstrap)
        listed = a.list_consumer_groups(request_timeout=15).result(timeout=20)
        assert set(layout) <= {g.group_id for g in listed.valid}, listed.valid
    except AssertionError as e:
        raise AssertionError(f"{e}\n{log_of([m for ms in groups.values() for m in ms])}") from None
    finally:
        for members in groups.values():
            stop_all(members)
    for g in layout:
        d = describe_group(b.bootstrap, g)
        assert str(d.state).endswith("EMPTY") and not d.members, f"{g} after every member left: {d.state}"


@pytest.mark.timeout(180)
def test_groups_killed_member_partitions_move_within_session_timeout(broker_factory, tmp_path):
    """A member of a 3-member group is killed (-9) while producers write: after its session
    timeout (6 s) the coordinator evicts it and its partitions move to the other two; nothing
    is lost, and only what it processed after its last commit is consumed again."""
    b = broker_factory()
    setup_topics(b)
    session_ms = 6000
    members = start_group(b, tmp_path, "kill", ["confluent", "kafka-python", "aiokafka"], session_ms=session_ms)
    survivors, victim = [members[0], members[2]], members[1]
    producer = None
    try:
        wait_group_stable(b.bootstrap, members, ALL, timeout=60)
        producer = SteadyProducer(b.bootstrap, TOPICS).start()
        wait_until(lambda: len(victim.consumed()) >= 20, 30, "the victim consuming")
        lost = victim.assignment()
        assert lost, "the victim owned partitions"
        killed_at = time.time()
        victim.kill()
        sets = wait_group_stable(b.bootstrap, survivors, ALL, timeout=session_ms / 1000 + 20)
        moved_at = max(e["t"] for m in survivors for e in m.events() if e["ev"] == "assigned")
        took = moved_at - killed_at
        assert session_ms / 1000 - 1.5 <= took <= session_ms / 1000 + 6, f"partitions moved {took:.1f}s after the kill"
        assert lost <= set().union(*sets)
        assert "no heartbeat within its session timeout" in b.log_text()
        time.sleep(2)
        producer.stop()
        producer = None
        wait_lag_zero(b, "kill")
        expected = expected_offsets(b)
        wait_until(lambda: set(consumption(members)) >= expected, 30, "everything consumed")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{log_of(members)}") from None
    finally:
        if producer is not None:
            producer.stop()
        stop_all(survivors)
    counts = consumption(members)
    assert set(counts) == expected, "nothing lost, nothing foreign"
    committed_by_victim = victim.last_commits()
    victim_saw = set(victim.consumed())
    for (t, p, o), n in counts.items():
        if n > 1:
            # Consumed again only if the victim processed it and died before committing it.
            assert n == 2 and (t, p, o) in victim_saw and o >= committed_by_victim.get((t, p), 0), (
                f"{t}-{p}@{o} consumed {n} times (victim's last commit {committed_by_victim.get((t, p))})")


@pytest.mark.timeout(180)
def test_groups_cooperative_sticky_new_member_revokes_only_what_moves(broker_factory, tmp_path):
    """Two confluent-kafka members with cooperative-sticky; a third joins while producers
    write: the two revoke only the partitions the newcomer gets (their others stay assigned
    throughout), the group ends 3/3/3, and every message is consumed exactly once."""
    b = broker_factory()
    setup_topics(b)
    coop = {"strategy": "cooperative-sticky"}
    first = start_group(b, tmp_path, "coop", ["confluent", "confluent"], **coop)
    members = list(first)
    producer = None
    try:
        before = wait_group_stable(b.bootstrap, first, ALL, timeout=60)
        assert sorted(len(s) for s in before) == [4, 5]
        producer = SteadyProducer(b.bootstrap, TOPICS).start()
        wait_until(lambda: all(len(m.consumed()) >= 10 for m in first), 30, "both consuming")
        joined_at = time.time()
        newcomer = Member("confluent", b.bootstrap, "coop", TOPICS, tmp_path, "confluent-new", **coop).start()
        members.append(newcomer)
        # Two rebalances: the first revokes what moves, the second hands it to the newcomer.
        after = wait_group_stable(b.bootstrap, members, ALL, timeout=60, accept=lambda sets: len(sets[2]) > 0)
        assert sorted(len(s) for s in after) == [3, 3, 3]
        for m, had, has in zip(first, before, after):
            revoked = [set(map(tuple, e["partitions"])) for e in m.events()
                       if e["ev"] == "revoked" and e["t"] >= joined_at]
            gone = set().union(*revoked) if revoked else set()
            assert gone == had - has, f"{m.name} revoked {sorted(gone)}, lost {sorted(had - has)}"
            assert has <= had, f"{m.name} gained {sorted(has - had)}: only moves to the newcomer"
        assert after[2] == (before[0] - after[0]) | (before[1] - after[1]), "the newcomer got what was revoked"
        time.sleep(2)
        producer.stop()
        producer = None
        wait_lag_zero(b, "coop")
        expected = expected_offsets(b)
        wait_until(lambda: set(consumption(members)) >= expected, 30, "everything consumed")
        assert_exactly_once(members, expected, "coop")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{log_of(members)}") from None
    finally:
        if producer is not None:
            producer.stop()
        stop_all(members)


@pytest.mark.timeout(180)
def test_groups_static_member_restart_keeps_partitions_without_rebalance(broker_factory, tmp_path):
    """Static members (group.instance.id): one restarts within its session timeout and gets
    its partitions back; the group does not rebalance (the other member sees no revocation,
    the generation stays)."""
    b = broker_factory()
    setup_topics(b)
    kw = {"session_ms": 30000}
    one = Member("confluent", b.bootstrap, "static", TOPICS, tmp_path, "s1", instance_id="instance-1", **kw).start()
    two = Member("confluent", b.bootstrap, "static", TOPICS, tmp_path, "s2", instance_id="instance-2", **kw).start()
    again = None
    try:
        sets = wait_group_stable(b.bootstrap, [one, two], ALL, timeout=60)
        generation_log = b.log_text().count("join phase complete")
        events_of_two = len([e for e in two.events() if e["ev"] in ("assigned", "revoked")])
        assert one.stop() == 0  # a static member does not leave the group when it closes
        again = Member("confluent", b.bootstrap, "static", TOPICS, tmp_path, "s1-again", instance_id="instance-1", **kw).start()
        wait_until(lambda: again.assignment() == sets[0], 30, "the restarted static member owning its partitions again")
        d = describe_group(b.bootstrap, "static")
        assert sorted(m.group_instance_id for m in d.members) == ["instance-1", "instance-2"]
        time.sleep(2)
        assert len([e for e in two.events() if e["ev"] in ("assigned", "revoked")]) == events_of_two, "the other member was not disturbed"
        assert b.log_text().count("join phase complete") == generation_log, "no rebalance"
        assert "static member rejoins with a new member id" in b.log_text()
    finally:
        stop_all([m for m in (two, again) if m is not None])


def _start_groups_stable(b, workdir, layout):
    workdir.mkdir()
    groups = {g: start_group(b, workdir, g, clients) for g, clients in layout.items()}
    try:
        for g, ms in groups.items():
            wait_group_stable(b.bootstrap, ms, ALL, timeout=90)
        return groups
    except AssertionError as e:
        for ms in groups.values():
            stop_all(ms)
        raise AssertionError(f"{e}\n{log_of([m for ms in groups.values() for m in ms])}") from None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill9", "sigterm"])
def test_groups_resume_from_committed_offsets_after_broker_restart(broker_factory, tmp_path, require_persistence, sig):
    """Groups commit, every member stops, the broker is killed (-9) or stopped, and restarts:
    the committed offsets are back (reloaded from __consumer_offsets), and new members of each
    group continue exactly from them: nothing consumed twice, nothing skipped."""
    b = broker_factory()
    setup_topics(b)
    clients = ["confluent", "kafka-python", "kafkajs"] if KAFKAJS else ["confluent", "kafka-python", "aiokafka"]
    layout = {"resume-g1": ["aiokafka"], "resume-g2": ["kafka-python", "confluent"], "resume-g3": clients}
    phase_a = _start_groups_stable(b, tmp_path / "a", layout)
    try:
        produce_concurrently(b.bootstrap, TOPICS, 0, 200)
        expected_a = expected_offsets(b)
        for g, ms in phase_a.items():
            wait_lag_zero(b, g)
            wait_until(lambda: set(consumption(ms)) >= expected_a, 30, f"{g} consumed phase A")
            assert_exactly_once(ms, expected_a, f"{g} before the restart")
    finally:
        for ms in phase_a.values():
            stop_all(ms)
    committed_a = {g: committed_offsets(b.bootstrap, g) for g in layout}
    hw_a = high_watermarks(b.bootstrap, ALL)
    assert all(c == hw_a for c in committed_a.values()), committed_a
    b.restart(sig)
    for g in layout:
        assert committed_offsets(b.bootstrap, g) == committed_a[g], f"{g}: committed offsets after the restart"
        d = describe_group(b.bootstrap, g)
        assert str(d.state).endswith("EMPTY"), f"{g} is {d.state} after the restart"
    produce_concurrently(b.bootstrap, TOPICS, 200, 200)
    expected_b = expected_offsets(b) - expected_a
    assert len(expected_b) == 600
    phase_b = _start_groups_stable(b, tmp_path / "b", layout)
    try:
        for g, ms in phase_b.items():
            wait_lag_zero(b, g)
            wait_until(lambda: set(consumption(ms)) >= expected_b, 30, f"{g} consumed phase B")
            assert_exactly_once(ms, expected_b, f"{g} after the restart")
    finally:
        for ms in phase_b.values():
            stop_all(ms)


@pytest.mark.timeout(180)
def test_groups_offsets_topic_holds_kafka_records(broker_factory, tmp_path):
    """__consumer_offsets read with a plain consumer and decoded with Kafka's schemas: the
    group's records are all in partition abs(hashCode) % 50; its latest OffsetCommitValue (v3)
    per partition is the committed offset; GroupMetadataValue (v3) records carry the members
    and their assignments, and the last one the empty group. DeleteGroups then leaves
    tombstones (null values) for the group and each of its offsets."""
    b = broker_factory()
    setup_topics(b)
    members = start_group(b, tmp_path, "decoder", ["confluent", "kafka-python"])
    try:
        wait_group_stable(b.bootstrap, members, ALL, timeout=60)
        produce_concurrently(b.bootstrap, TOPICS, 0, 50)
        wait_lag_zero(b, "decoder")
    finally:
        stop_all(members)
    committed = committed_offsets(b.bootstrap, "decoder")
    assert committed == high_watermarks(b.bootstrap, ALL)
    home = java_partition_for("decoder", 50)
    latest_offsets, group_values = {}, []
    for partition, offset, key, value in read_offsets_topic(b.bootstrap):
        k = decode_offsets_key(key)
        if k[0] == "other" or k[2] != "decoder":
            continue
        assert partition == home, f"record of group decoder in partition {partition}, not {home}"
        if k[0] == "offset":
            assert k[1] == 1, "OffsetCommitKey v1"
            latest_offsets[(k[3], k[4])] = decode_offset_commit_value(value)
        else:
            group_values.append(decode_group_metadata_value(value))
    assert {tp: v["offset"] for tp, v in latest_offsets.items()} == committed
    assert all(v["version"] == 3 and v["metadata"] == "" for v in latest_offsets.values())
    full = [v for v in group_values if len(v["members"]) == 2]
    assert full, "a record of the two-member generation"
    g = full[-1]
    assert g["protocol_type"] == "consumer" and g["protocol"] in ("range", "roundrobin")
    assert g["leader"] in {m["member_id"] for m in g["members"]}
    assert all(m["client_host"] == "/127.0.0.1" and m["assignment"] and m["subscription"] for m in g["members"])
    assert group_values[-1]["members"] == [] and group_values[-1]["generation"] > g["generation"], "the empty group last"
    a = admin(b.bootstrap)
    assert a.delete_consumer_groups(["decoder"], request_timeout=15)["decoder"].result(timeout=20) is None
    latest = {}
    for partition, offset, key, value in read_offsets_topic(b.bootstrap):
        k = decode_offsets_key(key)
        if k[0] != "other" and k[2] == "decoder":
            latest[k] = value
    tombstoned = {k for k, v in latest.items() if v is None}
    assert ("group", 2, "decoder") in tombstoned
    assert {(k[3], k[4]) for k in tombstoned if k[0] == "offset"} == set(committed), "every offset has a tombstone"
    assert committed_offsets(b.bootstrap, "decoder") == {}
    assert str(describe_group(b.bootstrap, "decoder").state).endswith("DEAD")


def test_groups_internal_topic_is_read_only_for_clients(broker_factory):
    """__consumer_offsets is listed as internal; produce (17) and DeleteRecords (17) are refused
    as on Kafka; DeleteTopics and CreatePartitions are refused (29, it places every group);
    CreateTopics answers TOPIC_ALREADY_EXISTS (36)."""
    from kafka import KafkaAdminClient
    from confluent_kafka import TopicPartition
    b = broker_factory()
    create_topic(b.bootstrap, "user-topic", 1)
    ka = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        described = {t.get("topic", t.get("name")): t for t in ka.describe_topics(["__consumer_offsets", "user-topic"])}
    finally:
        ka.close()
    assert described["__consumer_offsets"]["is_internal"] is True
    assert len(described["__consumer_offsets"]["partitions"]) == 50
    assert described["user-topic"]["is_internal"] is False
    errors = []
    p = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 10000, "logger": RDLOG})
    p.produce("__consumer_offsets", value=b"x", partition=0, on_delivery=lambda err, _m: errors.append(err))
    p.flush(15)
    assert errors and errors[0] is not None and errors[0].code() == 17, errors
    a = admin(b.bootstrap)

    def code_of(fut):
        try:
            fut.result(timeout=20)
            return 0
        except KafkaException as e:
            return e.args[0].code()

    assert code_of(a.delete_topics(["__consumer_offsets"], operation_timeout=10)["__consumer_offsets"]) == 29
    assert code_of(a.create_partitions([NewPartitions("__consumer_offsets", 60)])["__consumer_offsets"]) == 29
    assert code_of(a.create_topics([NewTopic("__consumer_offsets", 1, 1)])["__consumer_offsets"]) == 36
    deleted = a.delete_records([TopicPartition("__consumer_offsets", 0, 0)])
    assert code_of(next(iter(deleted.values()))) == 17
    assert "__consumer_offsets" in a.list_topics(timeout=10).topics
