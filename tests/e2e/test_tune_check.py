"""`riptide check` and `riptide tune` on this machine, and `riptide start` reading (or
refusing) the I/O properties file `tune` writes."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from conftest import DEFAULT_RIPTIDE, free_port
from kafka_helpers import confluent_produce, create_topic, make_messages, unique_topic

GOLDEN = Path(__file__).parent / "golden" / "check.txt"
LINE = re.compile(r"^(PASS|WARN|FAIL)  (.{16}) (.*)$")


def riptide(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    binary = os.environ.get("RIPTIDE_BIN", str(DEFAULT_RIPTIDE))
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def mask(line: str) -> str:
    """The golden form of a line: status, the check's name, the rest masked."""
    m = LINE.match(line)
    if m:
        return f"<STATUS>  {m.group(2)} <DETAIL>"
    line = re.sub(r"data dir \S+ \(\d+ shards\)", "data dir <DIR> (<N> shards)", line)
    return re.sub(r"\d+ (pass|warn|fail)", r"<N> \1", line)


def test_check_output_matches_golden_and_exit_status(tmp_path):
    started = time.monotonic()
    proc = riptide("check", "--data-dir", str(tmp_path / "data"), "--shards", "2")
    assert time.monotonic() - started < 30, "check must finish well under a minute"
    lines = proc.stdout.splitlines()
    assert [mask(l) for l in lines] == GOLDEN.read_text().splitlines(), proc.stdout + proc.stderr
    statuses = {LINE.match(l).group(2).strip(): LINE.match(l).group(1) for l in lines if LINE.match(l)}
    # The broker runs its tests here, so these hold on this machine.
    assert statuses["io_uring"] == "PASS" and statuses["O_DIRECT"] == "PASS", proc.stdout
    for l in lines:
        m = LINE.match(l)
        if m and m.group(1) != "PASS":
            assert "  -> fix: " in l, f"no fix command: {l}"
    worst = max(statuses.values(), key=["PASS", "WARN", "FAIL"].index)
    assert proc.returncode == {"PASS": 0, "WARN": 1, "FAIL": 2}[worst], (proc.returncode, proc.stdout)
    counts = re.search(r"(\d+) pass, (\d+) warn, (\d+) fail", proc.stdout).groups()
    assert [int(c) for c in counts] == [list(statuses.values()).count(s) for s in ("PASS", "WARN", "FAIL")]
    assert not (tmp_path / "data").exists(), "check creates nothing"


def test_tune_writes_a_file_that_start_accepts(broker_factory, tmp_path):
    data = tmp_path / "tuned"
    data.mkdir()
    props = data / "io-properties.toml"
    started = time.monotonic()
    proc = riptide("tune", "--data-dir", str(data), "--duration", "2s", "--file-size", "16MiB",
                   "--shards", "2", "--write", str(props))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - started < 30
    text = props.read_text()
    for key in ["storage.write.bytes", "io.memory.bytes", "io.ring.depth", "cache.bytes.per.shard",
                "request.budget.bytes.per.shard"]:
        assert re.search(rf'^"{re.escape(key)}" = \d+$', text, re.M), f"{key} missing:\n{text}"
    assert "[measured]" in text and "mb_per_s" in text
    assert sorted(p.name for p in data.iterdir()) == ["io-properties.toml"], "the scratch file is removed"
    # `start` finds it in the data dir, logs where its knobs come from, and serves.
    b = broker_factory.on_data_dir(data, shards=2)
    assert f"source={props}" in b.log_text(), b.log_tail()
    topic = unique_topic("tuned")
    create_topic(b.bootstrap, topic, 2)
    confluent_produce(b.bootstrap, topic, make_messages(100, 2, seed=3, tag="tuned"))


def test_malformed_properties_file_is_refused_naming_the_key(tmp_path):
    bad = tmp_path / "io.toml"
    bad.write_text('[settings]\n"io.ring.depth" = 128\n"storage.write.byts" = 65536\n')
    proc = riptide("start", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{free_port()}",
                   "--admin", "none", "--io-properties", str(bad), timeout=30)
    assert proc.returncode != 0
    assert "storage.write.byts" in proc.stderr and str(bad) in proc.stderr, proc.stderr
    bad.write_text('[settings]\n"io.ring.depth" = 100\n')
    proc = riptide("start", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{free_port()}",
                   "--admin", "none", "--io-properties", str(bad), timeout=30)
    assert proc.returncode != 0 and "io.ring.depth" in proc.stderr and "power of two" in proc.stderr, proc.stderr
