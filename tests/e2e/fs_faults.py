"""Storage fault helpers for the end-to-end suite: small loop-mounted filesystems (disk
full), immutable files (chattr +i: unlink/rename-into fail with EPERM even for root),
a page-cache "ballast" writer that makes every syncfs slow, and segment-file surgery.

Everything here cleans up after itself (unmount, chattr -i, stop threads, delete files);
the fixtures in the test modules call these from `finally` blocks."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import kafka_wire as kw

MiB = 1 << 20


def run(cmd: list[str], timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


# -- small filesystem ----------------------------------------------------------------------
class LoopFs:
    """An ext4 filesystem of `size_mib` in an image file, loop-mounted at `mnt`. Brokers
    whose data dir lives on it must be registered with `own(broker)`: `close()` stops them
    (SIGTERM, then SIGKILL) before unmounting, so the unmount never finds busy files."""

    def __init__(self, base: Path, size_mib: int):
        self.img = base / "fs.img"
        self.mnt = base / "mnt"
        self.brokers: list = []
        self.mounted = False
        self.mnt.mkdir(parents=True, exist_ok=True)
        run(["truncate", "-s", f"{size_mib}M", str(self.img)])
        run(["mkfs.ext4", "-q", "-F", "-m", "0", str(self.img)], timeout=60)
        run(["mount", "-o", "loop", str(self.img), str(self.mnt)])
        self.mounted = True

    def own(self, broker) -> None:
        self.brokers.append(broker)

    def free_bytes(self) -> int:
        st = os.statvfs(self.mnt)
        return st.f_bavail * st.f_frsize

    def close(self) -> None:
        errors = []
        for b in self.brokers:
            try:
                if b.alive():
                    b.stop()
            except AssertionError as e:  # did not stop in time: stop() killed it
                errors.append(str(e))
        if self.mounted:
            for attempt in range(20):
                if run(["umount", str(self.mnt)], check=False).returncode == 0:
                    self.mounted = False
                    break
                time.sleep(0.25)
            else:
                run(["umount", "-l", str(self.mnt)], check=False)  # detach at least
                self.mounted = False
                errors.append(f"{self.mnt} was busy; lazily unmounted")
        try:
            self.img.unlink()
        except OSError:
            pass
        if errors:
            raise AssertionError("; ".join(errors))


# -- immutable files -------------------------------------------------------------------------
def set_immutable(path: Path) -> None:
    run(["chattr", "+i", str(path)])


def clear_immutable_tree(root: Path) -> None:
    """chattr -i on `root` and everything below it (wherever the broker moved things)."""
    if not root.exists():
        return
    run(["chattr", "-i", str(root)], check=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                run(["chattr", "-i", p], check=False)


# -- page-cache ballast --------------------------------------------------------------------------
class Ballast:
    """A background thread writing big BUFFERED files (no fsync) into `directory`, deleting
    and rewriting them, so the filesystem always holds lots of dirty page cache and every
    syncfs the broker runs on it takes long. Bounded: at most `files` files of
    `file_bytes` on disk, at most `rate` bytes/s, `max_total_bytes` written and
    `max_seconds` spent (most of it never reaches the disk: files are deleted while dirty)."""

    def __init__(self, directory: Path, file_bytes: int = 256 * MiB, files: int = 3,
                 rate: int = 150 * MiB, max_total_bytes: int = 8 << 30,
                 max_seconds: float = 120.0):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file_bytes = file_bytes
        self.files = files
        self.max_total = max_total_bytes
        self.max_seconds = max_seconds
        self.rate = rate
        self.written = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ballast", daemon=True)

    def start(self) -> "Ballast":
        self._thread.start()
        return self

    def _run(self) -> None:
        chunk = b"\xa5" * MiB
        t0 = time.monotonic()
        deadline = t0 + self.max_seconds
        n = 0
        try:
            while not self._stop.is_set() and self.written < self.max_total \
                    and time.monotonic() < deadline:
                path = self.dir / f"ballast-{n % self.files}"
                n += 1
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                with open(path, "wb") as f:
                    for _ in range(self.file_bytes // MiB):
                        if self._stop.is_set():
                            break
                        f.write(chunk)
                        self.written += MiB
                        ahead = self.written / self.rate - (time.monotonic() - t0)
                        if ahead > 0:
                            time.sleep(ahead)
        except BaseException as e:  # reported by stop()
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        shutil.rmtree(self.dir, ignore_errors=True)
        assert not self._thread.is_alive(), "ballast thread did not stop"


# -- segment files ------------------------------------------------------------------------------
def dir_listing(d: Path) -> dict[str, int]:
    """{file name: size} of a partition directory."""
    return {p.name: p.stat().st_size for p in sorted(d.iterdir()) if p.is_file()}


def segment_logs(d: Path) -> list[Path]:
    return sorted(d.glob("*.log"))


def batches_in(path: Path) -> list[tuple[int, int, int, int]]:
    """[(position, size, base offset, record count)] of the batches in a segment file."""
    return kw.batch_positions(path.read_bytes())


def flip_byte(path: Path, position: int) -> tuple[int, int]:
    """XORs the byte at `position` with 0xFF in place (no truncation); returns (old, new)."""
    with open(path, "r+b") as f:
        f.seek(position)
        old = f.read(1)[0]
        f.seek(position)
        f.write(bytes([old ^ 0xFF]))
        f.flush()
        os.fsync(f.fileno())
    return old, old ^ 0xFF
