"""Durability across restarts: every acknowledged (acks=all) message is still there,
at the offset its producer was told, after SIGTERM or kill -9 and a restart on the same
data dir; offsets continue after the recovered log (no reuse, no gaps)."""

import os
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

from confluent_kafka import Producer

import kafka_wire as kw
from conftest import DEFAULT_RIPTIDE, api_versions_probe, free_port
from kafka_helpers import (
    RDLOG,
    assert_same_messages, by_partition, confluent_consume, confluent_produce, create_topic,
    make_messages, scrape, unique_topic, wait_for_topic, watermarks,
)

PARTITIONS = 6


def consume_all(b, topic, msgs, delivered, first_offset=None):
    counts = {p: len(v) for p, v in by_partition(msgs).items()}
    wm = watermarks(b.bootstrap, topic, PARTITIONS)
    assert wm == {p: (0, counts.get(p, 0)) for p in range(PARTITIONS)}, (
        f"watermarks after restart {wm}, acknowledged counts {counts}")
    got = confluent_consume(b.bootstrap, topic, PARTITIONS, counts)
    assert_same_messages(msgs, got, expected_offsets=delivered, first_offset=first_offset)


def _restart_keeps_acked(broker_factory, sig, expected_code):
    b = broker_factory()
    topic = unique_topic(f"restart-{sig.name.lower()}")
    create_topic(b.bootstrap, topic, PARTITIONS)
    msgs = make_messages(1500, PARTITIONS, seed=600 + sig, tag="r1")
    delivered = confluent_produce(b.bootstrap, topic, msgs[:750], compression="lz4")
    delivered += confluent_produce(b.bootstrap, topic, msgs[750:], compression="none")

    code = b.restart(sig)
    assert code == expected_code, f"broker exit code {code} after {sig.name}, expected {expected_code}"
    wait_for_topic(b.bootstrap, topic, PARTITIONS)
    consume_all(b, topic, msgs, delivered)

    # the log goes on where it stopped: new offsets follow the recovered ones
    more = make_messages(600, PARTITIONS, seed=700 + sig, tag="r2")
    delivered += confluent_produce(b.bootstrap, topic, more)
    msgs += more
    consume_all(b, topic, msgs, delivered)

    # and a second restart keeps both generations
    code = b.restart(sig)
    assert code == expected_code
    wait_for_topic(b.bootstrap, topic, PARTITIONS)
    consume_all(b, topic, msgs, delivered)


def test_restart_sigterm_keeps_acked_messages(broker_factory, require_persistence):
    _restart_keeps_acked(broker_factory, signal.SIGTERM, 0)


def test_restart_sigint_stops_cleanly(broker_factory, require_persistence):
    b = broker_factory()
    topic = unique_topic("restart-int")
    create_topic(b.bootstrap, topic, PARTITIONS)
    msgs = make_messages(200, PARTITIONS, seed=650, tag="int")
    delivered = confluent_produce(b.bootstrap, topic, msgs)
    code = b.restart(signal.SIGINT)
    assert code == 0, f"exit code {code} after SIGINT"
    wait_for_topic(b.bootstrap, topic, PARTITIONS)
    consume_all(b, topic, msgs, delivered)


def test_restart_kill9_after_acks_keeps_acked_messages(broker_factory, require_persistence):
    _restart_keeps_acked(broker_factory, signal.SIGKILL, -signal.SIGKILL)


def test_restart_kill9_during_produce_keeps_acked_messages(broker_factory, require_persistence):
    """kill -9 while a producer is busy: everything acknowledged survives at its offset,
    nothing else but produced messages appears, no offset is used twice, and the log
    accepts appends after recovery."""
    _kill9_during_produce(broker_factory(), "restart-crash", {"acks": "all", "linger.ms": 2})


def test_restart_kill9_during_large_batch_produce_keeps_acked_messages(broker_factory, require_persistence):
    """The same with acks=1 and large batches (linger 50 ms, 1 MB): appends of 256 KiB and
    more go straight to the segment files (direct appends), not through the journal; acks=1
    answers survive kill -9 there too."""
    _kill9_during_produce(broker_factory(), "restart-crash-big",
                          {"acks": "1", "linger.ms": 50, "batch.size": 1_000_000}, expect_direct=True)


def direct_appends(b) -> float:
    """riptide_storage_direct_appends_total from the broker's /metrics."""
    value = scrape(b, timeout=5).get("riptide_storage_direct_appends_total")
    if value is None:
        raise AssertionError("no riptide_storage_direct_appends_total in /metrics")
    return value


def _kill9_during_produce(b, tag, producer_config, expect_direct=False):
    topic = unique_topic(tag)
    create_topic(b.bootstrap, topic, PARTITIONS)
    msgs = make_messages(30000, PARTITIONS, seed=800, tag=tag)
    by_value = {m.value: m for m in msgs if m.value}
    acked = {}  # index -> (partition, offset)
    failed = set()
    stop = threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": b.bootstrap, **producer_config,
                      "message.send.max.retries": 0, "message.timeout.ms": 5000,
                      "socket.timeout.ms": 3000, "reconnect.backoff.max.ms": 200,
                      "logger": RDLOG})

        def cb_for(i):
            def cb(err, m):
                if err is None:
                    acked[i] = (m.partition(), m.offset())
                else:
                    failed.add(i)
            return cb

        for i, m in enumerate(msgs):
            if stop.is_set():
                break
            if not m.value:
                continue  # null/empty values cannot be told apart when checking below
            while not stop.is_set():
                try:
                    p.produce(topic, value=m.value, key=m.key, partition=m.partition,
                              headers=list(m.headers), timestamp=m.timestamp_ms,
                              on_delivery=cb_for(i))
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        p.flush(15)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 3000 and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.01)
    assert len(acked) >= 3000, f"only {len(acked)} acks before the crash"
    if expect_direct:
        assert direct_appends(b) > 0, "no append went straight to the segment files"
    b.kill()
    stop.set()
    t.join(40)
    assert not t.is_alive(), "producer thread did not finish"
    acked_snapshot = dict(acked)

    b.start()
    wait_for_topic(b.bootstrap, topic, PARTITIONS)
    wm = watermarks(b.bootstrap, topic, PARTITIONS)
    got = confluent_consume(b.bootstrap, topic, PARTITIONS,
                            {p: hi for p, (lo, hi) in wm.items()})
    stored = {}
    for p, lst in got.items():
        assert [o for o, _, _ in lst] == list(range(wm[p][1])), f"partition {p}: offset gaps"
        for off, gm, _ in lst:
            src = by_value.get(gm.value)
            assert src is not None and src == gm, f"{p}@{off}: record not produced by us: {gm.short()}"
            stored[(p, off)] = gm
    values = [m.value for m in stored.values()]
    assert len(values) == len(set(values)), "a message is stored twice (retries were off)"
    lost = [(i, po) for i, po in acked_snapshot.items() if stored.get(po) != msgs[i]]
    assert not lost, (f"{len(lost)} of {len(acked_snapshot)} acknowledged messages lost or moved,"
                      f" first: {lost[:5]}")

    # appends after recovery land right after the recovered tail
    more = make_messages(300, PARTITIONS, seed=801, tag=f"after-{uuid.uuid4().hex[:4]}")
    d2 = confluent_produce(b.bootstrap, topic, more)
    next_off = {p: wm[p][1] for p in range(PARTITIONS)}
    for m, (p, off) in zip(more, d2):
        assert off == next_off[p], f"partition {p}: appended at {off}, log end was {next_off[p]}"
        next_off[p] += 1


def test_restart_kill9_port_rebinds_immediately(broker_factory, require_persistence):
    """A broker restarted right after a crash (as a supervisor would) must be able to
    listen on its port again at once."""
    b = broker_factory()
    for round_ in range(5):
        topic = unique_topic(f"rebind{round_}")
        create_topic(b.bootstrap, topic, PARTITIONS)
        msgs = make_messages(50, PARTITIONS, seed=900 + round_, tag="rebind")
        confluent_produce(b.bootstrap, topic, msgs)
        b.kill()
        b.start()  # no grace: EADDRINUSE fails the test


# A supervisor restarts a crashed or stopped broker at once, while its clients keep retrying.
SERVING_WITHIN_S = 2.0


class RetryingProducer:
    """A producer thread that produces `msgs` in a loop of attempts until stopped, retrying
    through broker restarts; `acked[i]` = (partition, offset) of each acknowledged message."""

    def __init__(self, bootstrap, topic, msgs):
        self.topic, self.msgs = topic, msgs
        self.acked, self.failed = {}, set()
        self.stop = threading.Event()
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                           "message.timeout.ms": 60000, "retry.backoff.ms": 50,
                           "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 100,
                           "socket.timeout.ms": 3000, "logger": RDLOG})
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _cb(self, i):
        def cb(err, m):
            if err is None:
                self.acked[i] = (m.partition(), m.offset())
            else:
                self.failed.add(i)
        return cb

    def _run(self):
        for i, m in enumerate(self.msgs):
            if self.stop.is_set():
                break
            while not self.stop.is_set():
                try:
                    self.p.produce(self.topic, value=m.value, key=m.key, partition=m.partition,
                                   headers=list(m.headers), timestamp=m.timestamp_ms,
                                   on_delivery=self._cb(i))
                    break
                except BufferError:
                    self.p.poll(0.05)
            self.p.poll(0)
            time.sleep(0.0005)  # a steady load, not a flood of one restart's worth
        self.p.flush(60)

    def wait_for_acks(self, n, timeout=30.0):
        deadline = time.monotonic() + timeout
        while len(self.acked) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acked) >= n, f"only {len(self.acked)} of {n} acks (failed {len(self.failed)})"

    def finish(self):
        self.stop.set()
        self.thread.join(90)
        assert not self.thread.is_alive(), "producer thread did not finish"


def assert_acked_readable(b, topic, msgs, acked):
    """Every acknowledged message is stored at its acknowledged offset (retries may have
    stored some twice: that is allowed, losing or moving one is not)."""
    wm = watermarks(b.bootstrap, topic, PARTITIONS)
    got = confluent_consume(b.bootstrap, topic, PARTITIONS, {p: hi for p, (lo, hi) in wm.items()})
    stored = {(p, off): gm for p, lst in got.items() for off, gm, _ in lst}
    lost = [(i, po) for i, po in acked.items() if stored.get(po) != msgs[i]]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged messages lost or moved, first: {lost[:5]}"


@pytest.mark.parametrize("sig,rounds", [(signal.SIGKILL, 10), (signal.SIGTERM, 3)],
                         ids=["kill9", "sigterm"])
def test_restart_under_produce_load_serves_again_at_once(broker_factory, require_persistence,
                                                         sig, rounds):
    """Stop the broker (kill -9 or SIGTERM) while a producer is connected and busy, start it
    again on the same port at once: each start serves within SERVING_WITHIN_S, the producer
    carries on, and every acknowledged message is readable at its offset at the end."""
    b = broker_factory()
    topic = unique_topic(f"restart-load-{sig.name.lower()}")
    create_topic(b.bootstrap, topic, PARTITIONS)
    msgs = make_messages(200_000, PARTITIONS, seed=1000 + sig, tag="load")
    msgs = [m for m in msgs if m.value]  # null/empty values cannot be told apart below
    prod = RetryingProducer(b.bootstrap, topic, msgs)
    took = []
    try:
        for round_ in range(rounds):
            prod.wait_for_acks(len(prod.acked) + 200)
            # A client that is connected but quiet when the broker goes down: the broker's end
            # of it is closed with a FIN (not a reset, as unread data would cause) and stays
            # in TIME_WAIT on the port, which a start-up probe bind used to collide with.
            quiet = kw.Conn(b.host, b.port, timeout=5)
            quiet.send(kw.api_versions_v0(round_))
            quiet.recv_frame()
            code = b.stop(sig)
            quiet.close()
            assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), f"exit code {code}"
            t0 = time.monotonic()
            b.start()
            took.append(time.monotonic() - t0)
            assert took[-1] <= SERVING_WITHIN_S, (
                f"round {round_}: serving {took[-1]:.2f}s after the start command")
        prod.wait_for_acks(len(prod.acked) + 200)
    finally:
        prod.finish()
    print(f"{sig.name}: restart to serving (s): {', '.join(f'{t:.2f}' for t in took)};"
          f" {len(prod.acked)} acked, {len(prod.failed)} failed")
    assert_acked_readable(b, topic, msgs, dict(prod.acked))


@pytest.mark.parametrize("reuseport", [True, False], ids=["reuseport", "plain"])
def test_restart_refuses_port_of_a_live_listener(tmp_path, require_persistence, reuseport):
    """Another live process listening on the port (even with SO_REUSEPORT, which would let
    the broker silently share it) makes `riptide start` fail at once, naming port and pid."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as foreign:
        if reuseport:
            foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        foreign.bind(("127.0.0.1", port))
        foreign.listen(8)
        binary = os.environ.get("RIPTIDE_BIN", str(DEFAULT_RIPTIDE))
        t0 = time.monotonic()
        try:
            r = subprocess.run([binary, "start", "--data-dir", str(tmp_path / "data"),
                                "--listen", f"127.0.0.1:{port}", "--shards", "1"],
                               capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("riptide start kept running on a port another process listens on")
        took = time.monotonic() - t0
        assert not api_versions_probe("127.0.0.1", port, timeout=0.5)
    out = r.stdout + r.stderr
    assert r.returncode != 0, f"riptide start succeeded next to a live listener:\n{out}"
    assert f"port {port}" in out and f"pid {os.getpid()}" in out, (
        f"message does not name port {port} and holder pid {os.getpid()}:\n{out}")
    assert took < 5.0, f"took {took:.1f}s to refuse"
