"""kcat (Debian's kcat + librdkafka): 10,000 keyed messages into a 6-partition topic,
read back with `kcat -C -e`: all there, byte-identical, each key in one partition
(librdkafka's default partitioner: CRC-32(key) % partitions), per-partition order kept."""

import random
import re
import shutil
import subprocess
import zlib

import pytest

from kafka_helpers import create_topic, unique_topic, watermarks

PARTITIONS = 6
TOTAL = 10_000
KEYS = 500
KCAT = shutil.which("kcat") or shutil.which("kafkacat")

pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not installed (run tests/setup.sh)")


def kcat(args, stdin=None, timeout=120):
    r = subprocess.run([KCAT, *args], input=stdin, capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"kcat {args} exited {r.returncode}: {r.stderr.decode(errors='replace')}"
    return r


def make_lines(start, count, rng):
    """(key, value) pairs; values are binary (every byte but the newline delimiter)."""
    alphabet = bytes(b for b in range(256) if b != 0x0A)
    out = []
    for i in range(start, start + count):
        key = f"key-{rng.randrange(KEYS):03d}".encode()
        body = bytes(rng.choice(alphabet) for _ in range(rng.choice([0, 5, 50, 200])))
        out.append((key, f"v{i:05d}|".encode() + body))
    return out


def parse_kcat_output(raw: bytes):
    """Records printed with -f '%p %o %K %S\\n%k%s\\n' (lengths make it binary-safe)."""
    recs = []
    pos = 0
    while pos < len(raw):
        nl = raw.index(b"\n", pos)
        p, o, klen, vlen = (int(x) for x in raw[pos:nl].split(b" "))
        pos = nl + 1
        key = raw[pos:pos + klen] if klen >= 0 else None
        pos += max(klen, 0)
        val = raw[pos:pos + vlen] if vlen >= 0 else None
        pos += max(vlen, 0)
        assert raw[pos:pos + 1] == b"\n", f"bad framing at byte {pos}"
        pos += 1
        recs.append((p, o, key, val))
    return recs


def test_kcat_10k_keyed_roundtrip(broker):
    topic = unique_topic("kcat")
    create_topic(broker.bootstrap, topic, PARTITIONS)

    listing = kcat(["-L", "-b", broker.bootstrap, "-t", topic], timeout=30).stdout.decode()
    assert re.search(rf'topic "{topic}" with {PARTITIONS} partitions', listing), listing

    rng = random.Random(404)
    sent = []
    # two separate producer runs: key->partition must agree across them too
    for run in range(2):
        lines = make_lines(run * TOTAL // 2, TOTAL // 2, rng)
        sent.extend(lines)
        data = b"".join(k + b"\t" + v + b"\n" for k, v in lines)
        kcat(["-P", "-b", broker.bootstrap, "-t", topic, "-K", "\t",
              "-X", "acks=all", "-X", "linger.ms=5"], stdin=data)

    out = kcat(["-C", "-b", broker.bootstrap, "-t", topic, "-e", "-o", "beginning", "-q",
                "-f", "%p %o %K %S\n%k%s\n"]).stdout
    recs = parse_kcat_output(out)

    assert len(recs) == TOTAL, f"consumed {len(recs)} of {TOTAL}"
    assert sorted((k, v) for _, _, k, v in recs) == sorted(sent), "consumed bytes differ from produced"

    key_parts = {}
    per_part = {}
    for p, o, k, v in recs:
        key_parts.setdefault(k, set()).add(p)
        per_part.setdefault(p, []).append((o, int(v[1:6])))
    unstable = {k: ps for k, ps in key_parts.items() if len(ps) != 1}
    assert not unstable, f"keys found in several partitions: {list(unstable.items())[:5]}"
    for k, ps in key_parts.items():
        assert ps == {zlib.crc32(k) % PARTITIONS}, (
            f"key {k!r} in partition {ps}, librdkafka's partitioner chose {zlib.crc32(k) % PARTITIONS}")
    assert set(per_part) == set(range(PARTITIONS)), f"partitions used: {sorted(per_part)}"

    wm = watermarks(broker.bootstrap, topic, PARTITIONS)
    for p, lst in per_part.items():
        offs = [o for o, _ in lst]
        seqs = [s for _, s in lst]
        assert offs == list(range(len(lst))), f"partition {p}: offsets not 0..n-1"
        assert seqs == sorted(seqs), f"partition {p}: produce order not preserved"
        assert wm[p] == (0, len(lst)), f"partition {p}: watermarks {wm[p]}, {len(lst)} records"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_compressed_roundtrip(broker, codec):
    """The broker stores compressed batches as they come (it never decodes them), so
    every codec librdkafka offers comes back intact."""
    topic = unique_topic(f"kcat-{codec}")
    create_topic(broker.bootstrap, topic, 2)
    rng = random.Random(405)
    lines = [(k, v + b"|" + b"compressible " * rng.randrange(50)) for k, v in make_lines(0, 2000, rng)]
    data = b"".join(k + b"\t" + v + b"\n" for k, v in lines)
    kcat(["-P", "-b", broker.bootstrap, "-t", topic, "-K", "\t", "-z", codec,
          "-X", "acks=all", "-X", "linger.ms=20"], stdin=data)
    out = kcat(["-C", "-b", broker.bootstrap, "-t", topic, "-e", "-o", "beginning", "-q",
                "-f", "%p %o %K %S\n%k%s\n"]).stdout
    recs = parse_kcat_output(out)
    assert sorted((k, v) for _, _, k, v in recs) == sorted(lines)
    for p in (0, 1):
        offs = [o for pp, o, _, _ in recs if pp == p]
        assert offs == list(range(len(offs))), f"partition {p}: offsets not 0..n-1"
