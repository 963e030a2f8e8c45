"""Bad input over raw sockets: the broker answers with a Kafka error or closes that
connection cleanly -- never crashes, hangs or stops serving other clients."""

import random
import socket
import struct
import time

import pytest

import kafka_wire as kw
from kafka_helpers import (
    assert_same_messages, by_partition, confluent_consume, confluent_produce, create_topic,
    make_messages, unique_topic, watermarks,
)

PARTITIONS = 6
CLOSE_TIMEOUT = 10.0
MAX_RSS_GROWTH_KIB = 256 * 1024  # oversized frames must not be buffered


@pytest.fixture
def fresh_broker(broker_factory):
    return broker_factory()


def assert_serves_clients(b, tag):
    """The process is alive and a normal client still works (produce + consume on all
    partitions, so every shard is involved)."""
    assert b.alive(), f"broker process died (exit {b.proc.returncode})"
    topic = unique_topic(f"ok-{tag}")
    create_topic(b.bootstrap, topic, PARTITIONS)
    msgs = make_messages(60, PARTITIONS, seed=7, tag=tag)
    delivered = confluent_produce(b.bootstrap, topic, msgs, timeout=30)
    counts = {p: len(v) for p, v in by_partition(msgs).items()}
    got = confluent_consume(b.bootstrap, topic, PARTITIONS, counts, timeout=30)
    assert_same_messages(msgs, got, expected_offsets=delivered)
    assert b.alive()


def assert_closed_or_answered(conn, corr=None):
    kind, body = conn.outcome()
    if kind == "frame" and corr is not None:
        (got_corr,) = struct.unpack_from(">i", body, 0)
        assert got_corr == corr, f"answer with correlation id {got_corr}, sent {corr}"
    return kind, body


def test_bad_input_unknown_api_key(fresh_broker):
    b = fresh_broker
    with kw.Conn(b.host, b.port, timeout=CLOSE_TIMEOUT) as c:
        c.send(kw.frame(kw.request_header_v1(api_key=4242, version=0, corr=77) + b"\x00" * 16))
        kind, body = assert_closed_or_answered(c, corr=77)
        if kind == "frame":
            # an answer is only acceptable if the connection stays usable afterwards
            c.send(kw.api_versions_v0(78))
            corr, err, apis = kw.parse_api_versions_v0(c.recv_frame())
            assert (corr, err) == (78, 0)
    assert_serves_clients(b, "unknown-key")


def test_bad_input_unsupported_api_versions_version_gets_error_35(fresh_broker):
    b = fresh_broker
    with kw.Conn(b.host, b.port) as c:
        c.send(kw.api_versions_flexible(corr=91, version=127))
        corr, err, apis = kw.parse_api_versions_v0(c.recv_frame())
        assert corr == 91
        assert err == 35, f"expected UNSUPPORTED_VERSION (35), got {err}"
        assert 18 in apis and apis[18][0] == 0 and apis[18][1] >= 3, apis
        assert 0 in apis and 1 in apis and 3 in apis, f"Produce/Fetch/Metadata missing: {apis}"
        # a v0 request on the same connection still works
        c.send(kw.api_versions_v0(92))
        corr, err, apis0 = kw.parse_api_versions_v0(c.recv_frame())
        assert (corr, err) == (92, 0) and apis0 == apis
    assert_serves_clients(b, "apiver")


GROUP_APIS = {8: (0, 9), 9: (0, 9), 10: (0, 4), 11: (0, 7), 12: (0, 4), 13: (0, 4), 14: (0, 5),
              15: (0, 5), 16: (0, 4), 42: (0, 2), 47: (0, 0)}


def test_bad_input_api_versions_advertises_group_apis_that_answer(fresh_broker):
    """ApiVersions advertises the consumer-group APIs with the ranges Riptide serves (clients
    pick features from it), and the oldest versions of the first steps answer over a raw
    socket: FindCoordinator v0 names this broker, JoinGroup v0 (no KIP-394 step) joins and
    completes the first generation, Heartbeat v0 for another generation is error 22."""
    b = fresh_broker
    with kw.Conn(b.host, b.port) as c:
        c.send(kw.api_versions_v0(5))
        corr, err, apis = kw.parse_api_versions_v0(c.recv_frame())
        assert err == 0
        for key, name in [(0, "Produce"), (1, "Fetch"), (2, "ListOffsets"), (3, "Metadata"),
                          (18, "ApiVersions"), (19, "CreateTopics"), (22, "InitProducerId")]:
            assert key in apis, f"{name} ({key}) not advertised: {apis}"
        assert {k: apis.get(k) for k in GROUP_APIS} == GROUP_APIS
        # FindCoordinator v0: key (group id) -> error, node id, host, port.
        c.send(kw.frame(kw.request_header_v1(10, 0, 6) + kw.string("raw-group")))
        r = kw.Reader(c.recv_frame())
        assert (r.take(">i"), r.take(">h"), r.take(">i")) == (6, 0, 0), "correlation, no error, node 0"
        assert (r.string(), r.take(">i")) == (b.host, b.port)
        # JoinGroup v0: group, session timeout, member id "", protocol type, [(name, metadata)].
        join = (kw.string("raw-group") + kw.i32(10000) + kw.string("") + kw.string("consumer")
                + kw.i32(1) + kw.string("range") + kw.nbytes(b"\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"))
        c.send(kw.frame(kw.request_header_v1(11, 0, 7) + join))
        r = kw.Reader(c.recv_frame(), 4)  # the first join waits group.initial.rebalance.delay.ms
        assert (r.take(">h"), r.take(">i")) == (0, 1), "joined, generation 1"
        protocol, leader, member = r.string(), r.string(), r.string()
        assert protocol == "range" and leader == member and member.startswith("riptide-e2e-")
        # Heartbeat v0: group, generation, member id.
        c.send(kw.frame(kw.request_header_v1(12, 0, 8) + kw.string("raw-group") + kw.i32(99) + kw.string(member)))
        assert kw.Reader(c.recv_frame(), 4).take(">h") == 22, "ILLEGAL_GENERATION"
        c.send(kw.frame(kw.request_header_v1(12, 0, 9) + kw.string("raw-group") + kw.i32(1) + kw.string("nobody")))
        assert kw.Reader(c.recv_frame(), 4).take(">h") == 25, "UNKNOWN_MEMBER_ID"
    assert_serves_clients(b, "groups")


@pytest.mark.parametrize("length", [0x7FFFFFF0, 100 * 1024 * 1024 + 1, -1, -0x7FFFFFFF])
def test_bad_input_oversized_or_negative_length_closes(fresh_broker, length):
    b = fresh_broker
    rss0 = b.rss_kib()
    with kw.Conn(b.host, b.port) as c:
        c.send(struct.pack(">i", length) + b"\xAB" * 4096)
        assert c.wait_closed(CLOSE_TIMEOUT), (
            f"length {length}: connection not closed within {CLOSE_TIMEOUT}s")
    rss1 = b.rss_kib()
    if rss0 is not None and rss1 is not None:
        assert rss1 - rss0 < MAX_RSS_GROWTH_KIB, f"RSS grew {rss0} -> {rss1} KiB"
    assert_serves_clients(b, "oversized")


GARBAGE = {
    "zero-length-frame": kw.i32(0),
    "shorter-than-header": kw.i32(3) + b"\x00\x12\x00",
    "random-bytes": kw.i32(64) + random.Random(1).randbytes(64),
    "client-id-overruns-frame": kw.frame(kw.i16(18) + kw.i16(0) + kw.i32(1) + kw.i16(1000) + b"abc"),
    "produce-body-truncated": kw.frame(kw.request_header_v1(0, 3, 2) + kw.string(None) + kw.i16(-1)),
    "metadata-negative-array": kw.frame(kw.request_header_v1(3, 1, 3) + kw.i32(-5000)),
    "metadata-huge-array": kw.frame(kw.request_header_v1(3, 1, 4) + kw.i32(0x7FFFFFFF)),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_bad_input_malformed_frame_is_rejected(fresh_broker, name):
    b = fresh_broker
    with kw.Conn(b.host, b.port, timeout=CLOSE_TIMEOUT) as c:
        peer = "%s:%d" % c.sock.getsockname()
        c.send(GARBAGE[name])
        kind, body = c.outcome()
        # None of these is a request the broker could answer (no valid header, or a body
        # that does not decode): it closes the connection, with a warning naming the peer.
        assert kind == "closed", f"{name}: broker answered garbage instead of closing: {body!r:.120}"
    deadline = time.monotonic() + 5
    while not any("closing connection" in l and peer in l for l in b.log_text().splitlines()):
        assert time.monotonic() < deadline, f"{name}: no 'closing connection' warning for {peer}"
        time.sleep(0.05)
    assert_serves_clients(b, name)


def test_bad_input_truncated_frames_do_not_block_other_clients(fresh_broker):
    """Half-sent requests left open on many connections (so on every shard) must not
    stall anyone else."""
    b = fresh_broker
    conns = []
    try:
        for _ in range(16):
            c = kw.Conn(b.host, b.port)
            c.send(kw.i32(1000) + b"\x00\x03\x00\x01")
            conns.append(c)
        t0 = time.monotonic()
        assert_serves_clients(b, "halfopen")
        assert time.monotonic() - t0 < 60
    finally:
        for c in conns:
            c.close()
    # and after those clients vanish mid-frame, still fine
    assert_serves_clients(b, "halfopen2")


def test_bad_input_many_idle_connections(fresh_broker):
    b = fresh_broker
    rss0 = b.rss_kib()
    socks = []
    try:
        for _ in range(300):
            socks.append(socket.create_connection((b.host, b.port), timeout=10))
        assert_serves_clients(b, "manyconn")
        rss1 = b.rss_kib()
        if rss0 is not None and rss1 is not None:
            assert rss1 - rss0 < MAX_RSS_GROWTH_KIB, f"RSS grew {rss0} -> {rss1} KiB"
    finally:
        for s in socks:
            s.close()


def test_bad_input_produce_to_missing_partition_errors(fresh_broker):
    b = fresh_broker
    topic = unique_topic("nopart")
    create_topic(b.bootstrap, topic, PARTITIONS)
    batch = kw.record_batch([(b"k", b"v")], int(time.time() * 1000))
    with kw.Conn(b.host, b.port, timeout=15) as c:
        c.send(kw.produce_v3(corr=11, topic=topic, partition=99, batch=batch))
        corr, parts = kw.parse_produce_v3_response(c.recv_frame())
    assert corr == 11
    assert len(parts) == 1 and parts[0][:2] == (topic, 99), parts
    assert parts[0][2] == 3, f"expected UNKNOWN_TOPIC_OR_PARTITION (3), got error {parts[0][2]}"
    # the same hand-made batch to a real partition is accepted (so the request was fine)
    with kw.Conn(b.host, b.port, timeout=15) as c:
        c.send(kw.produce_v3(corr=12, topic=topic, partition=2, batch=batch))
        corr, parts = kw.parse_produce_v3_response(c.recv_frame())
    assert (corr, parts) == (12, [(topic, 2, 0, 0)]), parts
    assert watermarks(b.bootstrap, topic, PARTITIONS)[2] == (0, 1)
    assert_serves_clients(b, "nopart")


def test_bad_input_corrupt_batch_rejected_and_not_stored(fresh_broker):
    b = fresh_broker
    topic = unique_topic("corrupt")
    create_topic(b.bootstrap, topic, 1)
    good = kw.record_batch([(b"k1", b"v1"), (b"k2", b"v2")], int(time.time() * 1000))
    bad = kw.corrupt_crc(good)
    with kw.Conn(b.host, b.port, timeout=15) as c:
        c.send(kw.produce_v3(corr=21, topic=topic, partition=0, batch=bad))
        kind, body = c.outcome()
        if kind == "frame":
            corr, parts = kw.parse_produce_v3_response(body)
            assert corr == 21 and len(parts) == 1
            assert parts[0][2] in (2, 87), (
                f"expected CORRUPT_MESSAGE (2) or INVALID_RECORD (87), got {parts[0][2]}")
    assert watermarks(b.bootstrap, topic, 1)[0] == (0, 0), "corrupt batch was stored"
    with kw.Conn(b.host, b.port, timeout=15) as c:
        c.send(kw.produce_v3(corr=22, topic=topic, partition=0, batch=good))
        corr, parts = kw.parse_produce_v3_response(c.recv_frame())
    assert parts == [(topic, 0, 0, 0)], parts
    got = confluent_consume(b.bootstrap, topic, 1, {0: 2}, timeout=30)
    assert [(o, m.key, m.value) for o, m, _ in got[0]] == [(0, b"k1", b"v1"), (1, b"k2", b"v2")]
    assert_serves_clients(b, "corrupt")
