"""Corruption outside the torn tail never deletes data.

A partition whose log has a bad batch anywhere the broker had synced (a sealed segment,
or the active segment after a clean shutdown) is taken offline: Produce and Fetch to it
answer KAFKA_STORAGE_ERROR (56), the broker log names the segment file and the byte
position of the bad batch, no file of it is deleted or shortened, and every other
partition and topic keeps serving. Only a torn tail after a crash (kill -9) is trimmed."""

import random
import re
import signal
import time

import pytest

import kafka_wire as kw
from fs_faults import batches_in, dir_listing, flip_byte, segment_logs
from kafka_helpers import confluent_consume, create_topic, unique_topic, wait_for_topic

SEGMENT = {"segment.bytes": "65536"}
RECORDS_PER_BATCH = 8
VALUE_BYTES = 1000
BATCHES_P0 = 29  # ~8.2 KiB each: 7-8 per 64 KiB segment -> 4 segments, the last with >= 3
BATCHES_P1 = 6
KAFKA_STORAGE_ERROR = 56
SEGMENT_FLUSH_DELAY_S = 3.0  # storage's LOG_FLUSH_DELAY_MS (2 s) + margin


def _values(tag, k):
    rng = random.Random(f"{tag}-{k}")
    return [f"{tag}:{k}:{j}:".encode() + rng.randbytes(VALUE_BYTES) for j in range(RECORDS_PER_BATCH)]


def _produce(b, topic, partition, n, tag, first_offset=0):
    """n raw batches (acks=-1), one request each -> [(offset, value)] acknowledged."""
    out = []
    with kw.Conn(b.host, b.port, timeout=20) as c:
        for k in range(n):
            values = _values(tag, k)
            batch = kw.record_batch([(None, v) for v in values], int(time.time() * 1000))
            err, base = kw.produce_one(c, 1 + k, topic, partition, batch)
            assert (err, base) == (0, first_offset + len(out)), (
                f"{topic}-{partition} batch {k}: {(err, base)}")
            out += [(base + j, v) for j, v in enumerate(values)]
    return out


def _consume(b, topic, partition_count, expected: dict[int, list]):
    got = confluent_consume(b.bootstrap, topic, partition_count,
                            {p: len(v) for p, v in expected.items()}, timeout=60)
    for p, exp in expected.items():
        assert [(o, m.value) for o, m, _ in got[p]] == exp, f"{topic}-{p}: content differs"


@pytest.fixture
def corrupt_setup(broker_factory):
    """A broker with topic T (2 partitions, 64 KiB segments; p0 has >= 4 segments) and a
    bystander topic, all produced with acks=-1."""
    b = broker_factory()
    t, other = unique_topic("corrupt"), unique_topic("bystander")
    create_topic(b.bootstrap, t, 2, config=SEGMENT)
    create_topic(b.bootstrap, other, 1)
    data = {
        (t, 0): _produce(b, t, 0, BATCHES_P0, "p0"),
        (t, 1): _produce(b, t, 1, BATCHES_P1, "p1"),
        (other, 0): _produce(b, other, 0, 4, "by"),
    }
    return b, t, other, data


def _read_until_error(b, t, end):
    """Fetches t-0 from offset 0 onwards, batch by batch, until an error; -> (error, offset)."""
    off = 0
    with kw.Conn(b.host, b.port, timeout=20) as c:
        for k in range(1000):
            err, hw, records = kw.fetch_one(c, 800 + k, t, 0, off)
            if err != 0:
                return err, off
            got = kw.batch_positions(records)
            assert got, f"empty fetch at {off} below hw {hw}"
            off = got[-1][2] + got[-1][3]
            if off >= end:
                return 0, off
    raise AssertionError("fetch walk did not end")


def _assert_offline_and_rest_serves(b, t, other, data, seg, bad_pos, before, found_by_read=False):
    """`found_by_read`: the broker opened the partition (its index was intact, so start-up did
    not re-read the segment); the first read that reaches the damaged batch finds it, and from
    then on the partition is offline as if start-up had found it."""
    pdir = seg.parent
    if found_by_read:
        err, off = _read_until_error(b, t, len(data[(t, 0)]))
        assert err == KAFKA_STORAGE_ERROR, (
            f"reading {t}-0 from 0 gave error {err} at offset {off}: the damaged batch was served")
    # 1. nothing of that partition deleted or shortened
    after = dir_listing(pdir)
    missing = sorted(set(before) - set(after))
    shorter = {n: (before[n], after[n]) for n in before if n in after and after[n] < before[n]}
    assert not missing and not shorter, (
        f"{pdir.name}: files deleted {missing}, shortened {shorter} (before {before}, after {after})")
    # 2. the partition is offline: Produce and Fetch answer 56
    with kw.Conn(b.host, b.port, timeout=20) as c:
        batch = kw.record_batch([(None, b"after-corruption")], int(time.time() * 1000))
        err, base = kw.produce_one(c, 900, t, 0, batch)
        assert err == KAFKA_STORAGE_ERROR, (
            f"produce to {t}-0 (corrupt batch at {seg.name}:{bad_pos}) answered error {err}"
            f" base {base}; expected KAFKA_STORAGE_ERROR (56)")
        for k, off in enumerate((0, len(data[(t, 0)]) - 1)):
            err, hw, records = kw.fetch_one(c, 910 + k, t, 0, off)
            assert err == KAFKA_STORAGE_ERROR, (
                f"fetch {t}-0 at {off} answered error {err} (hw {hw}, {len(records)} bytes);"
                f" expected KAFKA_STORAGE_ERROR (56)")
        # 3. the other partition of T still serves, and takes writes
        p1_end = len(data[(t, 1)])
        err, base = kw.produce_one(c, 920, t, 1, batch)
        assert (err, base) == (0, p1_end), f"produce to {t}-1: {(err, base)}"
    _consume(b, other, 1, {0: data[(other, 0)]})
    with kw.Conn(b.host, b.port, timeout=20) as c:
        err, hw, records = kw.fetch_one(c, 930, t, 1, 0, partition_max_bytes=8 << 20,
                                        max_bytes=8 << 20)
        assert (err, hw) == (0, p1_end + 1), f"fetch {t}-1: error {err}, hw {hw}"
        got_batches = kw.batch_positions(records)
        assert [(base, n) for _, _, base, n in got_batches] == (
            [(k * RECORDS_PER_BATCH, RECORDS_PER_BATCH) for k in range(BATCHES_P1)] + [(p1_end, 1)]), (
            f"{t}-1 batches: {[(base, n) for _, _, base, n in got_batches]}")
    # 4. an ERROR line names the segment file and the bad batch's position
    lines = [ln for ln in b.log_text().splitlines() if "ERROR" in ln]
    pos_re = re.compile(rf"(?<![0-9]){bad_pos}(?![0-9])")
    named = [ln for ln in lines if str(pdir) in ln and seg.name in ln and pos_re.search(ln)]
    assert named, (f"no ERROR line names {seg} and position {bad_pos}; ERROR lines:\n"
                   + "\n".join(lines[-10:]))
    assert b.alive()


def _pick_middle_batch(seg):
    batches = batches_in(seg)
    assert len(batches) >= 3, f"{seg.name}: only {len(batches)} batches"
    pos, size, base, count = batches[len(batches) // 2]
    assert len(batches) // 2 < len(batches) - 1  # not the tail batch
    return pos, size


@pytest.mark.parametrize("index", ["with-index", "index-lost"])
def test_corruption_sealed_segment_takes_partition_offline(corrupt_setup, index):
    """A byte of a record value flipped in the middle of the FIRST (sealed) segment, after
    a clean stop. "index-lost": its .index/.timeindex are removed too, so the broker has
    to scan the segment at start and keeps the partition offline from the start.
    "with-index": start-up trusts the intact index (no re-read of sealed data, as Kafka);
    the first read of the damaged batch finds it and takes the partition offline."""
    b, t, other, data = corrupt_setup
    assert b.stop(signal.SIGTERM) == 0
    pdir = b.data_dir / f"{t}-0"
    segs = segment_logs(pdir)
    assert len(segs) >= 3, f"{t}-0 has {len(segs)} segments: {[s.name for s in segs]}"
    seg = segs[0]
    assert seg.name == "00000000000000000000.log"
    pos, size = _pick_middle_batch(seg)
    flip_byte(seg, pos + 61 + 200)  # inside the first record's value: covered by the CRC
    if index == "index-lost":
        for suffix in (".index", ".timeindex"):
            p = seg.with_suffix(suffix)
            if p.exists():
                p.unlink()
    before = dir_listing(pdir)
    b.start()
    wait_for_topic(b.bootstrap, other, 1, timeout=20)
    _assert_offline_and_rest_serves(b, t, other, data, seg, pos, before, found_by_read=index == "with-index")


def test_corruption_active_segment_after_clean_stop_takes_partition_offline(corrupt_setup):
    """After SIGTERM (everything synced, recorded as such), a flipped byte in the middle of
    the LAST (active) segment's data -- not its tail batch -- is corruption, not a torn
    tail: offline, nothing truncated."""
    b, t, other, data = corrupt_setup
    assert b.stop(signal.SIGTERM) == 0
    pdir = b.data_dir / f"{t}-0"
    segs = segment_logs(pdir)
    assert len(segs) >= 3, f"{t}-0 has {len(segs)} segments"
    seg = segs[-1]
    pos, size = _pick_middle_batch(seg)
    flip_byte(seg, pos + 61 + 200)
    before = dir_listing(pdir)
    b.start()
    wait_for_topic(b.bootstrap, other, 1, timeout=20)
    _assert_offline_and_rest_serves(b, t, other, data, seg, pos, before)


@pytest.mark.parametrize("tail", ["garbage", "partial-batch", "zeros-appended"])
def test_corruption_torn_tail_after_kill9_is_trimmed(corrupt_setup, tail):
    """Passes on the old code (a regression guard): after kill -9 the end of the last
    segment holds a torn write; the broker trims it and serves everything acknowledged,
    and appends continue right after it. The broker writes segment files lazily (the journal
    makes acknowledged data durable first): wait for its flush delay so the segment file
    holds the data before the crash."""
    b, t, other, data = corrupt_setup
    time.sleep(SEGMENT_FLUSH_DELAY_S)
    b.kill()
    pdir = b.data_dir / f"{t}-0"
    seg = segment_logs(pdir)[-1]
    raw = seg.read_bytes()
    batches = kw.batch_positions(raw)
    end = batches[-1][0] + batches[-1][1]
    if tail == "garbage":
        junk = random.Random(5).randbytes(300)
        junk = b"\x7f" + junk[1:]  # a base offset far away: never a valid header
        with open(seg, "r+b") as f:
            f.seek(end)
            f.write(junk)
    elif tail == "partial-batch":
        pos, size, base, count = batches[-1]
        torn = bytearray(raw[pos:pos + size])
        torn[0:8] = (base + count).to_bytes(8, "big")
        with open(seg, "r+b") as f:
            f.seek(end)
            f.write(bytes(torn[: size // 2]))
    else:
        with open(seg, "ab") as f:
            f.write(b"\0" * 8192)
    b.start()
    wait_for_topic(b.bootstrap, t, 2, timeout=20)
    _consume(b, t, 2, {0: data[(t, 0)], 1: data[(t, 1)]})
    _consume(b, other, 1, {0: data[(other, 0)]})
    more = _produce(b, t, 0, 2, "more", first_offset=len(data[(t, 0)]))
    _consume(b, t, 2, {0: data[(t, 0)] + more, 1: data[(t, 1)]})
