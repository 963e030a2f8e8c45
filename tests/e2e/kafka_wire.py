"""Just enough of the Kafka wire protocol to send hand-made (and broken) requests."""

from __future__ import annotations

import socket
import struct
import time

# -- CRC-32C (Castagnoli), as record batches v2 use -------------------------------
_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


# -- primitives -------------------------------------------------------------------
def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)
def u32(v): return struct.pack(">I", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def varint(v: int) -> bytes:
    v = (v << 1) ^ (v >> 63)  # zigzag
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def compact_string(s: str) -> bytes:
    b = s.encode()
    return uvarint(len(b) + 1) + b


# -- framing -------------------------------------------------------------------------
def request_header_v1(api_key: int, version: int, corr: int, client_id: str = "riptide-e2e") -> bytes:
    return i16(api_key) + i16(version) + i32(corr) + string(client_id)


def request_header_v2(api_key: int, version: int, corr: int, client_id: str = "riptide-e2e") -> bytes:
    return request_header_v1(api_key, version, corr, client_id) + b"\x00"  # no tagged fields


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


class Conn:
    """A raw connection with a receive deadline."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (n,) = struct.unpack(">i", self.recv_exact(4))
        assert 0 <= n < 64 << 20, f"bad response length {n}"
        return self.recv_exact(n)

    def outcome(self) -> tuple[str, bytes | None]:
        """After sending something bad: ('closed', None) if the broker closes the
        connection, ('frame', body) if it answers; raises TimeoutError if it does neither
        within the timeout (a stuck connection)."""
        try:
            hdr = self.sock.recv(4)
        except ConnectionResetError:
            return "closed", None
        except socket.timeout:
            raise TimeoutError(f"broker neither answered nor closed within {self.timeout}s")
        if not hdr:
            return "closed", None
        while len(hdr) < 4:
            more = self.sock.recv(4 - len(hdr))
            if not more:
                return "closed", None
            hdr += more
        (n,) = struct.unpack(">i", hdr)
        return "frame", self.recv_exact(n)

    def wait_closed(self, timeout: float) -> bool:
        """True if the peer closes (EOF/reset) within `timeout`, reading and discarding
        anything it sends meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            except socket.timeout:
                return False
            if not data:
                return True
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- record batch v2 -----------------------------------------------------------------
def record_batch(records: list[tuple[bytes | None, bytes | None]], base_ts: int) -> bytes:
    body = bytearray()
    for i, (k, v) in enumerate(records):
        r = bytearray()
        r += i8(0)                     # attributes
        r += varint(i)                 # timestamp delta
        r += varint(i)                 # offset delta
        r += varint(-1) if k is None else varint(len(k)) + k
        r += varint(-1) if v is None else varint(len(v)) + v
        r += varint(0)                 # headers
        body += varint(len(r)) + r
    after_crc = (i16(0) + i32(len(records) - 1) + i64(base_ts) + i64(base_ts + len(records) - 1)
                 + i64(-1) + i16(-1) + i32(-1) + i32(len(records)) + bytes(body))
    crc = crc32c(after_crc)
    after_len = i32(-1) + i8(2) + u32(crc) + after_crc  # partitionLeaderEpoch, magic, crc
    return i64(0) + i32(len(after_len)) + after_len


def corrupt_crc(batch: bytes) -> bytes:
    b = bytearray(batch)
    b[17] ^= 0xFF  # a byte of the CRC field (offset 17..20)
    return bytes(b)


# -- Produce v3 ------------------------------------------------------------------------
def produce_v3(corr: int, topic: str, partition: int, batch: bytes, acks: int = -1,
               timeout_ms: int = 10000) -> bytes:
    body = (string(None) + i16(acks) + i32(timeout_ms)
            + i32(1) + string(topic) + i32(1) + i32(partition) + nbytes(batch))
    return frame(request_header_v1(0, 3, corr) + body)


def parse_produce_v3_response(body: bytes) -> tuple[int, list[tuple[str, int, int, int]]]:
    """-> (correlation id, [(topic, partition, error_code, base_offset)])"""
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, body, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    corr = take(">i")
    out = []
    for _ in range(take(">i")):
        n = take(">h")
        name = body[pos:pos + n].decode()
        pos += n
        for _ in range(take(">i")):
            p = take(">i")
            err = take(">h")
            base = take(">q")
            take(">q")  # log_append_time
            out.append((name, p, err, base))
    return corr, out


# -- ApiVersions -------------------------------------------------------------------------
def api_versions_v0(corr: int) -> bytes:
    return frame(request_header_v1(18, 0, corr))


def api_versions_flexible(corr: int, version: int) -> bytes:
    body = compact_string("riptide-e2e") + compact_string("0.0.0") + b"\x00"
    return frame(request_header_v2(18, version, corr) + body)


def parse_api_versions_v0(body: bytes) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """Response header v0 + ApiVersions v0 body -> (corr, error_code, {key: (min, max)})."""
    try:
        corr, err, n = struct.unpack_from(">ihi", body, 0)
        pos = 10
        apis = {}
        for _ in range(n):
            k, lo, hi = struct.unpack_from(">hhh", body, pos)
            pos += 6
            apis[k] = (lo, hi)
    except struct.error as e:
        raise AssertionError(f"not an ApiVersions v0 response ({e}): {body[:64].hex()}...") from e
    assert pos == len(body), f"{len(body) - pos} trailing bytes after ApiVersions v0 response"
    return corr, err, apis


# -- Fetch v4 ----------------------------------------------------------------------------
def fetch_v4(corr: int, topic: str, partition: int, offset: int, max_wait_ms: int,
             min_bytes: int = 1, max_bytes: int = 1 << 20) -> bytes:
    body = (i32(-1) + i32(max_wait_ms) + i32(min_bytes) + i32(max_bytes) + i8(0)
            + i32(1) + string(topic) + i32(1) + i32(partition) + i64(offset) + i32(max_bytes))
    return frame(request_header_v1(1, 4, corr) + body)
