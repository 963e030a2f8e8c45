"""Idempotent producer state survives kill -9: after a crash and restart, the broker still
recognises the last 5 batches of a producer (a retry is acknowledged with its original
offset and not stored again), rejects older sequences, and appends the next one right
after the end. Hand-made frames (kafka_wire) so the batches are replayed byte for byte."""

import threading
import time

import kafka_wire as kw
from kafka_helpers import confluent_consume, create_topic, unique_topic, watermarks

PRODUCE_VERSION = 7
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
# records per batch: batch i holds RECORDS[i] records, so sequences and offsets differ
RECORDS = [1, 2, 1, 3, 1, 1, 2, 1]


def _values(batch_no: int, n: int) -> list[bytes]:
    return [f"idem-{batch_no}-{j}".encode() + bytes([batch_no, j]) * 50 for j in range(n)]


def _consume_values(b, topic, count):
    got = confluent_consume(b.bootstrap, topic, 1, {0: count}, timeout=30)
    return [(o, m.value) for o, m, _ in got[0]]


def test_idempotence_replay_after_kill9_keeps_original_offsets(broker_factory, require_persistence):
    b = broker_factory()
    topic = unique_topic("idem-restart")
    create_topic(b.bootstrap, topic, 1)
    ts = int(time.time() * 1000)

    with kw.Conn(b.host, b.port, timeout=15) as c:
        err, pid, epoch = kw.init_producer_id_call(c, 1, 1)
        assert (err, epoch) == (0, 0) and pid >= 0, f"InitProducerId v1: {(err, pid, epoch)}"
        batches, bases, expected = [], [], []
        seq = 0
        for i, n in enumerate(RECORDS):
            vals = _values(i, n)
            batch = kw.idempotent_batch(vals, ts + i, pid, 0, seq)
            err, base = kw.produce_one(c, 10 + i, topic, 0, batch, version=PRODUCE_VERSION)
            assert (err, base) == (0, len(expected)), f"batch {i} (seq {seq}): {(err, base)}"
            batches.append(batch)
            bases.append(base)
            expected += [(base + j, v) for j, v in enumerate(vals)]
            seq += n
    end = len(expected)
    assert watermarks(b.bootstrap, topic, 1)[0] == (0, end)

    b.kill()
    b.start()

    with kw.Conn(b.host, b.port, timeout=15) as c:
        # the last 5 batches, byte-identical: acknowledged with their original offsets
        answers = [kw.produce_one(c, 100 + i, topic, 0, batches[i], version=PRODUCE_VERSION)
                   for i in range(3, 8)]
        assert answers == [(0, bases[i]) for i in range(3, 8)], (
            f"replays after kill -9 answered {answers}, expected original offsets "
            f"{[(0, bases[i]) for i in range(3, 8)]} (log end was {end})")
        assert kw.list_offset_one(c, 200, topic, 0) == (0, end), "replays were appended"

        # an older batch (outside the last 5) must not be appended
        for i in (0, 2):
            err, base = kw.produce_one(c, 300 + i, topic, 0, batches[i], version=PRODUCE_VERSION)
            assert err != 0, f"old batch {i} (seq outside the window) accepted at offset {base}"
            assert kw.list_offset_one(c, 310 + i, topic, 0) == (0, end), (
                f"old batch {i} answered error {err} but the log grew")

        # the next sequence appends right after the end
        vals = _values(8, 2)
        nxt = kw.idempotent_batch(vals, ts + 8, pid, 0, seq)
        assert kw.produce_one(c, 400, topic, 0, nxt, version=PRODUCE_VERSION) == (0, end)
        expected += [(end + j, v) for j, v in enumerate(vals)]
        assert kw.list_offset_one(c, 401, topic, 0) == (0, len(expected))

    assert _consume_values(b, topic, len(expected)) == expected, "log content differs"


def test_idempotence_concurrent_duplicates_stored_once(broker_factory):
    """Two connections send the same idempotent batch at the same moment (may pass on
    the old code; a regression guard for the window check): both are acknowledged with
    the same base offset and the batch is stored once. 10 rounds."""
    b = broker_factory()
    topic = unique_topic("idem-race")
    create_topic(b.bootstrap, topic, 1)
    ts = int(time.time() * 1000)
    conns = [kw.Conn(b.host, b.port, timeout=15) for _ in range(2)]
    try:
        err, pid, epoch = kw.init_producer_id_call(conns[0], 1, 1)
        assert (err, epoch) == (0, 0) and pid >= 0
        expected = []
        rounds = 10
        for r in range(rounds):
            vals = _values(r, 3)
            batch = kw.idempotent_batch(vals, ts + r, pid, 0, 3 * r)
            barrier = threading.Barrier(2, timeout=10)
            answers: list = [None, None]

            def send(k):
                barrier.wait()
                try:
                    answers[k] = kw.produce_one(conns[k], 1000 * r + k, topic, 0, batch,
                                                version=PRODUCE_VERSION)
                except Exception as e:  # reported below
                    answers[k] = e

            threads = [threading.Thread(target=send, args=(k,), daemon=True) for k in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            assert not any(t.is_alive() for t in threads), "produce did not return"
            assert answers == [(0, 3 * r)] * 2, f"round {r}: answers {answers}, expected base {3 * r}"
            expected += [(3 * r + j, v) for j, v in enumerate(vals)]
            assert kw.list_offset_one(conns[0], 9000 + r, topic, 0) == (0, 3 * (r + 1)), (
                f"round {r}: log grew by more than one batch")
    finally:
        for c in conns:
            c.close()
    assert _consume_values(b, topic, len(expected)) == expected
