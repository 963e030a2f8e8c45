"""Metrics: a real Prometheus (Debian's package, started here on loopback) scrapes a broker
under a little real traffic; its HTTP API must show the series, and the counters must match
what was sent. Also /health, and the per-partition series behind --metrics-per-partition."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import free_port, _die_with_parent
from kafka_helpers import confluent_consume, confluent_produce, create_topic, http_get, make_messages, scrape, unique_topic

PARTITIONS = 4
MESSAGES = 600
SCRAPE_WAIT_S = 60


class Prometheus:
    """A Prometheus server scraping `target` every second, on a free loopback port."""

    def __init__(self, workdir, target: str):
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus not installed (tests/setup.sh installs Debian's package)")
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
            "scrape_configs:\n  - job_name: riptide\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()[-3000:]}"
            try:
                if http_get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"prometheus not ready in 30 s: {self.log.read_text()[-3000:]}")

    def query(self, expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, body = http_get(url)
        assert status == 200, body
        data = json.loads(body)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, expected: float) -> float | None:
        """Polls until `expr` equals `expected` (scrapes lag behind), bounded in time."""
        deadline = time.monotonic() + SCRAPE_WAIT_S
        got = None
        while time.monotonic() < deadline:
            got = self.value(expr)
            if got == expected:
                return got
            time.sleep(0.5)
        return got

    def target_health(self) -> list[dict]:
        status, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/targets")
        assert status == 200, body
        return json.loads(body)["data"]["activeTargets"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def prometheus_for(tmp_path):
    started = []

    def start(broker):
        p = Prometheus(tmp_path, broker.admin)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_prometheus_scrapes_counters_that_match_the_traffic(broker_factory, prometheus_for):
    broker = broker_factory()
    topic = unique_topic("metrics")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    msgs = make_messages(MESSAGES, PARTITIONS, seed=10, tag="metrics")
    payload = sum(len(m.value or b"") + len(m.key or b"") for m in msgs)
    confluent_produce(broker.bootstrap, topic, msgs)
    confluent_consume(broker.bootstrap, topic, PARTITIONS, {p: sum(1 for m in msgs if m.partition == p) for p in range(PARTITIONS)})

    prom = prometheus_for(broker)
    sel = f'{{topic="{topic}"}}'
    assert prom.wait_for(f"riptide_kafka_messages_in_total{sel}", MESSAGES) == MESSAGES
    assert prom.wait_for(f"riptide_kafka_messages_out_total{sel}", MESSAGES) == MESSAGES, "every record fetched once"
    bytes_in = prom.value(f"riptide_kafka_bytes_in_total{sel}")
    assert bytes_in is not None and bytes_in >= payload, (bytes_in, payload)
    # Independent checks of the byte counters: every appended batch byte is in the segments,
    # and a consumer that read everything once was sent exactly those batches.
    assert prom.value(f"riptide_log_size_bytes{sel}") == bytes_in
    assert prom.value(f"riptide_kafka_bytes_out_total{sel}") == bytes_in
    assert prom.value(f"riptide_log_partitions{sel}") == PARTITIONS

    # Requests: produce requests were answered and timed; each histogram counts its requests.
    produced = prom.value('riptide_kafka_requests_total{request="produce"}')
    assert produced and produced >= 1
    assert prom.value('riptide_kafka_request_latency_seconds_count{request="produce"}') == produced
    assert prom.value('riptide_kafka_requests_total{request="fetch_consumer"}') >= 1
    p99 = prom.value('histogram_quantile(0.99, sum by (le) (riptide_kafka_request_latency_seconds_bucket{request="produce"}))')
    assert p99 is not None and 0 < p99 < 10, p99
    # acks=all: every produce waited for syncs; DMA writes happened; the consumer read the cache or disk.
    assert prom.value("riptide_storage_journal_syncs_total") >= 1
    assert prom.value("riptide_storage_journal_rounds_total") >= prom.value("riptide_storage_journal_syncs_total")
    assert prom.value("riptide_storage_journal_written_bytes_total") >= bytes_in
    assert prom.value("riptide_storage_written_bytes_total") >= bytes_in
    assert prom.value("riptide_storage_cache_hits_total + riptide_storage_cache_misses_total") >= 1
    assert prom.value("riptide_connections_accepted_total") >= 2
    # Cluster-level gauges with the values a single node has.
    assert prom.value("riptide_controller_active") == 1
    assert prom.value("riptide_under_replicated_partitions") == 0
    assert prom.value("riptide_offline_partitions") == 0
    assert prom.value("riptide_shards") == broker.shards
    assert prom.value("riptide_metrics_shards_answered") == broker.shards

    # Every documented default series exists in Prometheus.
    series = prom.query('{job="riptide"}')
    names = {r["metric"]["__name__"] for r in series}
    for name in ["riptide_kafka_bytes_in_total", "riptide_kafka_bytes_out_total", "riptide_kafka_messages_in_total",
                 "riptide_kafka_messages_out_total", "riptide_kafka_requests_total",
                 "riptide_kafka_request_latency_seconds_bucket", "riptide_kafka_requests_in_flight",
                 "riptide_kafka_produce_waiting_requests", "riptide_kafka_produce_waiting_bytes",
                 "riptide_kafka_request_budget_used_bytes", "riptide_storage_write_latency_seconds_bucket",
                 "riptide_storage_sync_latency_seconds_bucket", "riptide_storage_sync_rounds_total",
                 "riptide_storage_written_bytes_total", "riptide_storage_cache_hits_total",
                 "riptide_storage_cache_misses_total", "riptide_storage_write_queue_bytes", "riptide_connections",
                 "riptide_connections_refused_total", "riptide_log_size_bytes", "riptide_controller_active",
                 "riptide_under_replicated_partitions", "riptide_offline_partitions", "riptide_build_info"]:
        assert name in names, f"{name} not in Prometheus: {sorted(names)}"
    assert not any("partition" in r["metric"] for r in series), "no per-partition series by default"
    assert all(t["health"] == "up" for t in prom.target_health())

    # The Grafana dashboard's queries are valid PromQL over series the broker exports, and
    # the throughput and latency panels show this traffic.
    exported = {l.split()[2] for l in http_get(f"http://{broker.admin}/metrics")[1].splitlines() if l.startswith("# TYPE")}
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "ops" / "grafana" / "riptide-dashboard.json").read_text())
    exprs = {t["expr"]: p["title"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert len(exprs) >= 20
    deadline = time.monotonic() + SCRAPE_WAIT_S  # rate() needs a few samples
    while (prom.value("count_over_time(riptide_build_info[30s])") or 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    for expr, title in exprs.items():
        for name in re.findall(r"\b(riptide_[a-z_]+)", expr):
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in exported or family in exported, f"{title}: {name} is not exported"
        result = prom.query(expr.replace("$job", ".*").replace("$__rate_interval", "30s"))
        if title.startswith(("Bytes in", "Messages in", "Produce latency", "Requests per API")):
            assert result, f"{title}: no data for {expr}"


def test_error_codes_are_counted(broker):
    """A raw Produce to a partition that does not exist is answered with error 3: the error
    counter of produce / UNKNOWN_TOPIC_OR_PARTITION moves by exactly one."""
    import kafka_wire as kw
    key = 'riptide_kafka_request_errors_total{request="produce",error="UNKNOWN_TOPIC_OR_PARTITION",code="3"}'
    topic = unique_topic("errs")
    create_topic(broker.bootstrap, topic, 1)
    before = scrape(broker).get(key, 0)
    with kw.Conn(broker.host, broker.port) as c:
        c.send(kw.produce_v3(7, topic, 5, kw.record_batch([(b"k", b"v")], int(time.time() * 1000))))
        _, parts = kw.parse_produce_v3_response(c.recv_frame())
    assert [p[2] for p in parts] == [3]
    assert scrape(broker).get(key, 0) == before + 1


def test_health_reports_ready(broker):
    status, body = http_get(f"http://{broker.admin}/health")
    assert status == 200, body
    health = json.loads(body)
    assert health["ready"] is True
    assert health["shards"] == health["shards_up"] == broker.shards
    assert health["data_dir_writable"] is True and health["controller_known"] is True
    assert health["controller_id"] == 0
    assert http_get(f"http://{broker.admin}/nope")[0] == 404


def test_per_partition_series_behind_the_flag(broker_factory):
    broker = broker_factory(extra_args=["--metrics-per-partition"])
    topic = unique_topic("perpart")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    msgs = make_messages(200, PARTITIONS, seed=11, tag="perpart")
    confluent_produce(broker.bootstrap, topic, msgs)
    m = scrape(broker)
    for p in range(PARTITIONS):
        n = sum(1 for x in msgs if x.partition == p)
        labels = f'{{topic="{topic}",partition="{p}"}}'
        assert m[f"riptide_partition_log_end_offset{labels}"] == n
        assert m[f"riptide_partition_high_watermark{labels}"] == n
        assert m[f"riptide_partition_log_start_offset{labels}"] == 0
        assert m[f"riptide_kafka_partition_messages_in_total{labels}"] == n
    assert sum(m[f'riptide_partition_size_bytes{{topic="{topic}",partition="{p}"}}'] for p in range(PARTITIONS)) \
        == m[f'riptide_log_size_bytes{{topic="{topic}"}}']


def test_admin_port_taken_refuses_start(broker_factory, tmp_path):
    first = broker_factory()
    import os
    binary = os.environ.get("RIPTIDE_BIN", str(first.command()[0]))
    proc = subprocess.run([binary, "start", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{free_port()}",
                           "--admin", first.admin], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "admin" in proc.stderr and first.admin in proc.stderr, proc.stderr


def _group_lag(broker, group: str, topic: str) -> tuple[float | None, float | None]:
    m = scrape(broker)
    labels = f'{{group="{group}",topic="{topic}"}}'
    return m.get(f"riptide_consumer_group_lag{labels}"), m.get(f"riptide_consumer_group_lag_max{labels}")


def _wait_lag(broker, group, topic, want, timeout=30.0):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = _group_lag(broker, group, topic)
        if got == want:
            return got
        time.sleep(0.3)
    return got


def test_consumer_group_lag_follows_commits_produce_and_delete(broker):
    """Committed offsets (an explicit commit, as a simple consumer or a lag monitor makes) show
    as lag = high watermark - committed per partition, summed and max per topic; producing
    more raises it; deleting the group removes its series."""
    from confluent_kafka import Consumer, TopicPartition
    topic = unique_topic("lag")
    create_topic(broker.bootstrap, topic, 2)
    msgs = make_messages(200, 2, seed=12, tag="lag")
    confluent_produce(broker.bootstrap, topic, msgs)
    n = [sum(1 for m in msgs if m.partition == p) for p in range(2)]
    group = unique_topic("lag-group")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 30), TopicPartition(topic, 1, 10)], asynchronous=False)
    finally:
        c.close()
    want = (float(n[0] - 30 + n[1] - 10), float(max(n[0] - 30, n[1] - 10)))
    assert _wait_lag(broker, group, topic, want) == want
    more = make_messages(50, 2, seed=13, tag="lag2")
    confluent_produce(broker.bootstrap, topic, more)
    m0, m1 = (sum(1 for m in more if m.partition == p) for p in range(2))
    want = (float(n[0] + m0 - 30 + n[1] + m1 - 10), float(max(n[0] + m0 - 30, n[1] + m1 - 10)))
    assert _wait_lag(broker, group, topic, want) == want, "lag grows with the high watermark"
    from kafka_helpers import admin
    client = admin(broker.bootstrap)  # kept alive until the futures resolve
    for f in client.delete_consumer_groups([group], request_timeout=15).values():
        f.result(timeout=15)
    assert _wait_lag(broker, group, topic, (None, None)) == (None, None), "a deleted group has no series"
