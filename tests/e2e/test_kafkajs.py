"""kafkajs (via node): produce with gzip and with no compression, acks=-1; confluent-kafka
reads back (kafkajs consumes through consumer groups: see test_groups.py)."""

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kafka_helpers import (
    assert_same_messages, by_partition, confluent_consume, create_topic, make_messages,
    unique_topic, watermarks,
)

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")
PARTITIONS = 6
N = 1000

pytestmark = pytest.mark.skipif(
    NODE is None or not (JS_DIR / "node_modules" / "kafkajs").is_dir(),
    reason="node or kafkajs missing (run tests/setup.sh)")


def b64(x):
    return None if x is None else base64.b64encode(x).decode()


def kafkajs_produce(bootstrap, topic, msgs, compression, timeout=150):
    payload = {
        "brokers": [bootstrap], "topic": topic, "compression": compression,
        "messages": [{"partition": m.partition, "key": b64(m.key), "value": b64(m.value),
                      "headers": [[k, b64(v)] for k, v in m.headers],
                      "timestamp": m.timestamp_ms} for m in msgs],
    }
    r = subprocess.run([NODE, str(JS_DIR / "produce.js")], input=json.dumps(payload).encode(),
                       capture_output=True, timeout=timeout, cwd=JS_DIR)
    assert r.returncode == 0, f"kafkajs exited {r.returncode}:\n{r.stderr.decode(errors='replace')[-4000:]}"
    return [tuple(x) for x in json.loads(r.stdout)]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_kafkajs_produce_read_by_confluent(broker, compression):
    topic = unique_topic(f"kjs-{compression}")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    msgs = make_messages(N, PARTITIONS, seed=501, tag=f"kjs-{compression}")
    delivered = kafkajs_produce(broker.bootstrap, topic, msgs, compression)
    counts = {p: len(v) for p, v in by_partition(msgs).items()}
    got = confluent_consume(broker.bootstrap, topic, PARTITIONS, counts)
    assert_same_messages(msgs, got, expected_offsets=delivered)
    assert watermarks(broker.bootstrap, topic, PARTITIONS) == {
        p: (0, counts.get(p, 0)) for p in range(PARTITIONS)}
