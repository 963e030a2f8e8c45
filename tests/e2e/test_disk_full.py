"""Disk full without a restart: on a small filesystem the broker answers produces with
KAFKA_STORAGE_ERROR (56) once space runs out, keeps every acknowledged record readable at
its offset, keeps serving reads and metadata, and accepts writes again -- contiguous
offsets, no restart -- as soon as space is freed (DeleteRecords on another topic)."""

import random
import signal
import time

import pytest
from confluent_kafka import KafkaError, Producer

import kafka_wire as kw
from fs_faults import MiB, LoopFs
from kafka_helpers import (
    RDLOG, Msg, confluent_consume, confluent_produce, create_topic, unique_topic,
    wait_for_topic, watermarks,
)

FS_MIB = 48
SEGMENT = {"segment.bytes": str(1 << 20)}
VALUE_BYTES = 1000
CHUNK = 128
FILL_BOUND_BYTES = 96 * MiB  # twice the filesystem: errors must have come long before
KAFKA_STORAGE_ERROR = 56
RECOVER_S = 15.0


@pytest.fixture
def small_fs(tmp_path):
    fs = LoopFs(tmp_path, FS_MIB)
    try:
        yield fs
    finally:
        fs.close()


def _value(i: int) -> bytes:
    return f"A:{i}:".encode() + random.Random(i).randbytes(VALUE_BYTES)


def _fill(bootstrap, topic):
    """Produces ~1 KiB messages (acks=all, no retries) in chunks until a chunk has
    delivery errors. -> ({offset: value} acknowledged, [(value, KafkaError)] failed)."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "message.send.max.retries": 0, "message.timeout.ms": 10000,
                  "enable.idempotence": False, "logger": RDLOG})
    acked: dict[int, bytes] = {}
    failed: list = []
    i = 0
    while not failed:
        assert i * VALUE_BYTES < FILL_BOUND_BYTES, (
            f"{i} messages ({i * VALUE_BYTES >> 20} MiB) accepted on a {FS_MIB} MiB filesystem")

        def cb(err, m):
            if err is None:
                acked[m.offset()] = m.value()
            else:
                failed.append((m.value(), err))

        for _ in range(CHUNK):
            p.produce(topic, value=_value(i), partition=0, on_delivery=cb)
            i += 1
        assert p.flush(30) == 0, "produce chunk not resolved within 30 s"
    return acked, failed


def _values_of(got):
    return [(o, m.value) for o, m, _ in got[0]]


def test_disk_full_recovers_without_restart(broker_factory, small_fs, require_persistence):
    b = broker_factory.on_data_dir(small_fs.mnt / "data")
    small_fs.own(b)
    spare = small_fs.mnt / "operator-spare"  # 1 MiB an operator can free first
    spare.write_bytes(b"\0" * MiB)
    full, other = unique_topic("full"), unique_topic("other")
    create_topic(b.bootstrap, full, 1, config=SEGMENT)
    create_topic(b.bootstrap, other, 1, config=SEGMENT)

    # another topic takes ~12 MiB: DeleteRecords on it frees whole segments later
    other_values = [b"other:%d:" % i + random.Random(-i).randbytes(VALUE_BYTES)
                    for i in range(12 * 1024)]
    confluent_produce(b.bootstrap, other, [Msg(0, None, v) for v in other_values], timeout=90,
                      extra={"linger.ms": 20})
    other_end = len(other_values)

    acked, failed = _fill(b.bootstrap, full)
    codes = sorted({e.code() for _, e in failed})
    assert acked, "nothing was acknowledged before the disk filled up"
    n_old = len(acked)
    assert sorted(acked) == list(range(n_old)), "acknowledged offsets are not 0..n-1"
    assert set(codes) <= {KafkaError.KAFKA_STORAGE_ERROR, KafkaError._MSG_TIMED_OUT}, (
        f"produce errors on a full disk: {[KafkaError(c).name() for c in codes]}")

    # a clean look at the broker's answer: raw Produce frames (64 KiB) until one is refused;
    # any accepted on the way (space given back after a failed reservation, or room left in the
    # shard's preallocated journal: 4 MiB on this filesystem) count as acked. 160 frames (10 MiB)
    # are more than the journal and the free space together; 64 were just the journal's size.
    with kw.Conn(b.host, b.port, timeout=20) as c:
        for k in range(160):
            values = [f"raw{k}:{j}:".encode() + b"\x5a" * VALUE_BYTES for j in range(64)]
            batch = kw.record_batch([(None, v) for v in values], int(time.time() * 1000))
            err, base = kw.produce_one(c, 100 + k, full, 0, batch)
            if err != 0:
                break
            assert base == n_old, f"raw batch accepted at {base}, log end was {n_old}"
            acked.update((base + j, v) for j, v in enumerate(values))
            n_old += len(values)
    assert err == KAFKA_STORAGE_ERROR, (
        f"produce on a full disk answered error {err}, expected KAFKA_STORAGE_ERROR (56)")

    # still alive, serving metadata and reads of everything acknowledged
    assert b.alive(), "broker died on a full disk"
    wait_for_topic(b.bootstrap, full, 1, timeout=15)
    wait_for_topic(b.bootstrap, other, 1, timeout=15)
    assert watermarks(b.bootstrap, full, 1)[0] == (0, n_old)
    got = confluent_consume(b.bootstrap, full, 1, {0: n_old}, timeout=60)
    assert _values_of(got) == sorted(acked.items()), "acknowledged records differ on a full disk"

    print(f"disk full after {n_old} acked messages; errors {[KafkaError(c).name() for c in codes]}"
          f" x{len(failed)}; {small_fs.free_bytes() >> 10} KiB free")

    # free space: an operator's spare file, then DeleteRecords on the other topic
    free0 = small_fs.free_bytes()
    spare.unlink()
    with kw.Conn(b.host, b.port, timeout=20) as c:
        assert kw.delete_records_one(c, 50, other, 0, other_end) == (0, other_end)
    deadline = time.monotonic() + 10
    while small_fs.free_bytes() < free0 + 8 * MiB and time.monotonic() < deadline:
        time.sleep(0.2)
    assert small_fs.free_bytes() >= free0 + 8 * MiB, (
        f"free space {free0 >> 10} -> {small_fs.free_bytes() >> 10} KiB after DeleteRecords")

    # writes work again without a restart, right after the old end
    probes = []
    deadline = time.monotonic() + RECOVER_S
    with kw.Conn(b.host, b.port, timeout=20) as c:
        while True:
            value = f"probe:{len(probes)}".encode()
            err, base = kw.produce_one(c, 500 + len(probes), full, 0,
                                       kw.record_batch([(None, value)], int(time.time() * 1000)))
            probes.append((err, base, value))
            if err == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    err, base, value = probes[-1]
    assert err == 0, (f"produce still refused {RECOVER_S:.0f}s after space was freed"
                      f" ({small_fs.free_bytes() >> 20} MiB free): errors"
                      f" {sorted({e for e, _, _ in probes})} in {len(probes)} tries")
    assert base == n_old, f"first write after the full disk at offset {base}, log end was {n_old}"
    expected = sorted(acked.items()) + [(n_old, value)]
    more = [Msg(0, None, f"after:{i}:".encode() + b"\x33" * 500) for i in range(300)]
    delivered = confluent_produce(b.bootstrap, full, more, timeout=60)
    assert [o for _, o in delivered] == list(range(n_old + 1, n_old + 301)), (
        f"offsets after recovery: {[o for _, o in delivered][:5]}...")
    expected += [(n_old + 1 + i, m.value) for i, m in enumerate(more)]
    got = confluent_consume(b.bootstrap, full, 1, {0: len(expected)}, timeout=60)
    assert _values_of(got) == expected, "log content after recovery differs"

    # and everything acknowledged is still there after a restart
    code = b.restart(signal.SIGTERM)
    assert code == 0, f"exit code {code} after SIGTERM"
    wait_for_topic(b.bootstrap, full, 1, timeout=15)
    assert watermarks(b.bootstrap, full, 1)[0] == (0, len(expected))
    assert watermarks(b.bootstrap, other, 1)[0] == (other_end, other_end)
    got = confluent_consume(b.bootstrap, full, 1, {0: len(expected)}, timeout=60)
    assert _values_of(got) == expected, "log content after restart differs"
