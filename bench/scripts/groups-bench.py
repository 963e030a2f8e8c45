#!/usr/bin/env python3
"""Consumer-group benchmark (not a timed test): consume throughput of a 3-member group against
3 consumers that assign() the same partitions, and the time a 1 -> 3 member rebalance takes.

    .venv/bin/python bench/scripts/groups-bench.py [--messages 200000] [--size 1024] [--shards 2]

Starts its own broker (target/release/riptide) on a free port with a temporary data dir,
preloads one topic of 9 partitions, then:
  assign   3 processes, each assign()s 3 partitions from the start and reads them to the end;
  group    3 processes subscribe as one group (auto-commit, the clients' defaults) and read
           everything; throughput counts from each member's first message to its last;
  rebalance one member consumes; two more subscribe at once: time until all three own their
           new assignment (client side) and from the first new JoinGroup to Stable (broker log).
Each consumer is confluent-kafka (librdkafka) in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOPIC = "bench"
PARTITIONS = 9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(args) -> None:
    """One consumer process: prints one JSON line with bytes, messages, first and last times."""
    from confluent_kafka import Consumer, TopicPartition
    conf = {"bootstrap.servers": args.bootstrap, "group.id": args.group, "auto.offset.reset": "earliest",
            "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760}
    if args.mode == "assign":
        conf["enable.auto.commit"] = False
    c = Consumer(conf)
    targets = json.loads(args.targets)  # {partition: end offset}
    assigned_at = None

    def on_assign(consumer, parts):
        nonlocal assigned_at
        assigned_at = time.time()

    while time.time() < args.start_at:
        time.sleep(0.001)
    if args.mode == "assign":
        c.assign([TopicPartition(TOPIC, int(p), 0) for p in targets])
        remaining = {int(p): end for p, end in targets.items()}
    else:
        c.subscribe([TOPIC], on_assign=on_assign)
        remaining = None
    n = nbytes = 0
    first = last = None
    deadline = time.time() + args.timeout
    done_parts = set()
    while time.time() < deadline:
        msgs = c.consume(10000, timeout=0.5)
        for m in msgs:
            if m.error():
                continue
            if first is None:
                first = time.time()
            n += 1
            nbytes += len(m.value() or b"")
            if remaining is not None and m.offset() + 1 >= remaining[m.partition()]:
                done_parts.add(m.partition())
        if msgs:
            last = time.time()
        if remaining is not None and len(done_parts) == len(remaining):
            break
        if args.mode == "group" and args.expect_total and os.path.exists(args.stop_file):
            break
    print(json.dumps({"n": n, "bytes": nbytes, "first": first, "last": last, "assigned_at": assigned_at}), flush=True)
    c.close()


def spawn(bootstrap, mode, group, targets, start_at, timeout, stop_file="", expect_total=0) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "worker", "--bootstrap", bootstrap, "--mode", mode, "--group", group,
           "--targets", json.dumps(targets), "--start-at", str(start_at), "--timeout", str(timeout),
           "--stop-file", stop_file, "--expect-total", str(expect_total)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def results(procs) -> list[dict]:
    out = []
    for p in procs:
        line, _ = p.communicate(timeout=600)
        out.append(json.loads(line.strip().splitlines()[-1]))
    return out


def throughput(rs) -> tuple[float, float, int]:
    total = sum(r["bytes"] for r in rs)
    first = min(r["first"] for r in rs if r["first"])
    last = max(r["last"] for r in rs if r["last"])
    return total / (last - first) / 1e6, last - first, sum(r["n"] for r in rs)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    for a in ("--bootstrap", "--mode", "--group", "--targets", "--stop-file"):
        w.add_argument(a, default="")
    w.add_argument("--start-at", type=float, default=0)
    w.add_argument("--timeout", type=float, default=300)
    w.add_argument("--expect-total", type=int, default=0)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--binary", default=str(REPO / "target" / "release" / "riptide"))
    args = ap.parse_args()
    if args.cmd == "worker":
        return worker(args)

    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    work = Path(tempfile.mkdtemp(prefix="riptide-groups-bench-"))
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    log = open(work / "broker.log", "w")
    broker = subprocess.Popen([args.binary, "start", "--data-dir", str(work / "data"), "--listen", bootstrap,
                               "--shards", str(args.shards)], stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)
        a = AdminClient({"bootstrap.servers": bootstrap})
        a.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(30)
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20, "batch.size": 1_000_000,
                      "queue.buffering.max.messages": 1_000_000})
        value = os.urandom(args.size)
        t0 = time.time()
        for i in range(args.messages):
            while True:
                try:
                    p.produce(TOPIC, value=value, partition=i % PARTITIONS)
                    break
                except BufferError:
                    p.poll(0.01)
        p.flush(300)
        print(f"preloaded {args.messages} x {args.size} B in {time.time() - t0:.1f}s")
        probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
        ends = {q: probe.get_watermark_offsets(TopicPartition(TOPIC, q), timeout=10)[1] for q in range(PARTITIONS)}
        probe.close()

        # assign(): 3 consumers x 3 partitions.
        start_at = time.time() + 1.5
        procs = [spawn(bootstrap, "assign", "bench-assign", {q: ends[q] for q in range(i, PARTITIONS, 3)}, start_at, 300)
                 for i in range(3)]
        mbps, secs, n = throughput(results(procs))
        print(f"assign(): 3 consumers read {n} messages in {secs:.2f}s: {mbps:.0f} MB/s")

        # A 3-member group.
        stop = work / "stop-group"
        start_at = time.time() + 1.5
        procs = [spawn(bootstrap, "group", "bench-group", ends, start_at, 300, str(stop), args.messages) for _ in range(3)]
        total_expected = sum(ends.values())
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(0.5)
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-group-probe"})
            md = AdminClient({"bootstrap.servers": bootstrap})
            from confluent_kafka import ConsumerGroupTopicPartitions
            res = md.list_consumer_group_offsets([ConsumerGroupTopicPartitions("bench-group")])["bench-group"].result(20)
            c.close()
            if sum(tp.offset for tp in res.topic_partitions if tp.offset > 0) >= total_expected:
                break
        stop.touch()
        rs = results(procs)
        mbps_g, secs_g, n_g = throughput(rs)
        join_s = min(r["first"] for r in rs if r["first"]) - start_at
        print(f"group: 3 members read {n_g} messages in {secs_g:.2f}s: {mbps_g:.0f} MB/s "
              f"(first message {join_s:.1f}s after subscribe, incl. the 3 s initial rebalance delay)")

        # Rebalance 1 -> 3: the existing member learns of it from its next heartbeat
        # (heartbeat.interval.ms=3000), so the new members arrive at several phases of it.
        totals, protocol = [], []
        for trial, phase in enumerate([0.0, 0.75, 1.5, 2.25]):
            group = f"bench-rebalance-{trial}"
            stop = work / f"stop-{group}"
            one = spawn(bootstrap, "group", group, ends, time.time(), 120, str(stop), args.messages)
            time.sleep(8 + phase)  # stable, consumed
            t_new = time.time() + 1.0
            more = [spawn(bootstrap, "group", group, ends, t_new, 120, str(stop), args.messages) for _ in range(2)]
            time.sleep(6)
            stop.touch()
            rs = results([one] + more)
            assigned = [r["assigned_at"] for r in rs[1:]]
            totals.append(max(assigned) - t_new if all(assigned) else float("nan"))
            text = re.sub(r"\x1b\[[0-9;]*m", "", (work / "broker.log").read_text())
            stamps = {}
            for line in text.splitlines():
                if f"group={group} " not in line:
                    continue
                ts = line.split()[0]
                t = time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + ts[20:26])
                marks = {"preparing to rebalance": 'from="Stable" generation=1 ',
                         "join phase complete": "generation=2 ", "group is stable": "generation=2 "}
                for what, generation in marks.items():
                    if what in line and generation in line:
                        stamps.setdefault(what, t)
            if len(stamps) == 3:
                protocol.append((stamps["join phase complete"] - stamps["preparing to rebalance"],
                                 stamps["group is stable"] - stamps["join phase complete"]))
            if os.environ.get("BENCH_VERBOSE"):
                print("  ", group, stamps)
        print("rebalance 1 -> 3: new members own their partitions " + ", ".join(f"{t:.2f}" for t in totals)
              + f" s after subscribing (mean {sum(totals) / len(totals):.2f} s; arrivals at 4 phases of the"
              " existing member's 3 s heartbeat)")
        for join_s, sync_s in protocol:
            print(f"   broker: join phase {join_s * 1000:.0f} ms (waits for the existing member's heartbeat),"
                  f" leader's assignment to Stable {sync_s * 1000:.0f} ms (synced write)")
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
