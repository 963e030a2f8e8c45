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


# == additions for the hardening tests (idempotence, offsets, storage faults) ==========

class Reader:
    """Big-endian cursor over a response body; raises AssertionError on a short body."""

    def __init__(self, body: bytes, pos: int = 0):
        self.body = body
        self.pos = pos

    def take(self, fmt: str):
        try:
            v = struct.unpack_from(fmt, self.body, self.pos)
        except struct.error as e:
            raise AssertionError(f"response too short at {self.pos} ({e}): {self.body[:96].hex()}") from e
        self.pos += struct.calcsize(fmt)
        return v[0]

    def raw(self, n: int) -> bytes:
        assert n >= 0 and self.pos + n <= len(self.body), (
            f"response too short: {n} bytes at {self.pos} of {len(self.body)}")
        b = self.body[self.pos:self.pos + n]
        self.pos += n
        return b

    def string(self) -> str | None:
        n = self.take(">h")
        return None if n < 0 else self.raw(n).decode()

    def nbytes(self) -> bytes | None:
        n = self.take(">i")
        return None if n < 0 else self.raw(n)

    def uvarint(self) -> int:
        shift = v = 0
        while True:
            b = self.take(">B")
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    def tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()           # tag
            self.raw(self.uvarint())  # size + data

    def done(self) -> None:
        assert self.pos == len(self.body), f"{len(self.body) - self.pos} trailing bytes in response"


def idempotent_batch(values: list[bytes], base_ts: int, producer_id: int, producer_epoch: int,
                     base_sequence: int) -> bytes:
    """A v2 record batch (no key, no headers, one record per value) from an idempotent
    producer: producer id, epoch and base sequence set in the header; CRC-32C over
    attributes..end; base offset 0 (the broker assigns it)."""
    body = bytearray()
    for i, v in enumerate(values):
        r = bytearray()
        r += i8(0) + varint(i) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        body += varint(len(r)) + r
    n = len(values)
    after_crc = (i16(0) + i32(n - 1) + i64(base_ts) + i64(base_ts + n - 1)
                 + i64(producer_id) + i16(producer_epoch) + i32(base_sequence) + i32(n) + bytes(body))
    after_len = i32(-1) + i8(2) + u32(crc32c(after_crc)) + after_crc
    return i64(0) + i32(len(after_len)) + after_len


def batch_positions(data: bytes) -> list[tuple[int, int, int, int]]:
    """Walks the v2 record batches stored in a segment file's bytes: [(file position,
    total size, base offset, record count)] up to the first all-zero or short header."""
    out = []
    pos = 0
    while pos + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        if length <= 0 or pos + 12 + length > len(data):
            break
        (count,) = struct.unpack_from(">i", data, pos + 57)
        out.append((pos, 12 + length, base, count))
        pos += 12 + length
    return out


# -- Produce v3..v8 (not flexible) ------------------------------------------------------------
def produce(corr: int, version: int, topic: str, partition: int, batch: bytes, acks: int = -1,
            timeout_ms: int = 10000) -> bytes:
    assert 3 <= version <= 8, version
    body = (string(None) + i16(acks) + i32(timeout_ms)
            + i32(1) + string(topic) + i32(1) + i32(partition) + nbytes(batch))
    return frame(request_header_v1(0, version, corr) + body)


def parse_produce_response(body: bytes, version: int) -> tuple[int, list[tuple[str, int, int, int]]]:
    """Produce v3..v8 response -> (corr, [(topic, partition, error_code, base_offset)])."""
    r = Reader(body)
    corr = r.take(">i")
    out = []
    for _ in range(r.take(">i")):
        name = r.string()
        for _ in range(r.take(">i")):
            p, err, base = r.take(">i"), r.take(">h"), r.take(">q")
            r.take(">q")  # log_append_time
            if version >= 5:
                r.take(">q")  # log_start_offset
            if version >= 8:
                for _ in range(r.take(">i")):  # record_errors
                    r.take(">i")
                    r.string()
                r.string()  # error_message
            out.append((name, p, err, base))
    r.take(">i")  # throttle_time_ms
    r.done()
    return corr, out


def produce_one(conn: "Conn", corr: int, topic: str, partition: int, batch: bytes,
                version: int = 3, acks: int = -1) -> tuple[int, int]:
    """Sends one single-partition Produce and returns (error_code, base_offset)."""
    conn.send(produce(corr, version, topic, partition, batch, acks=acks))
    got_corr, parts = parse_produce_response(conn.recv_frame(), version)
    assert got_corr == corr, f"correlation id {got_corr}, sent {corr}"
    assert len(parts) == 1 and parts[0][:2] == (topic, partition), parts
    return parts[0][2], parts[0][3]


# -- InitProducerId (key 22): v0-1 classic, v2+ flexible; v3+ carry producer id/epoch --------
def init_producer_id(corr: int, version: int, producer_id: int = -1, producer_epoch: int = -1,
                     transactional_id: str | None = None, timeout_ms: int = 60000) -> bytes:
    if version < 2:
        body = string(transactional_id) + i32(timeout_ms)
        return frame(request_header_v1(22, version, corr) + body)
    txn = b"\x00" if transactional_id is None else compact_string(transactional_id)
    body = txn + i32(timeout_ms)
    if version >= 3:
        body += i64(producer_id) + i16(producer_epoch)
    body += b"\x00"  # tagged fields
    return frame(request_header_v2(22, version, corr) + body)


def parse_init_producer_id(body: bytes, version: int) -> tuple[int, int, int, int]:
    """-> (corr, error_code, producer_id, producer_epoch)"""
    r = Reader(body)
    corr = r.take(">i")
    if version >= 2:
        r.tagged_fields()  # response header v1
    r.take(">i")  # throttle_time_ms
    err, pid, epoch = r.take(">h"), r.take(">q"), r.take(">h")
    if version >= 2:
        r.tagged_fields()
    r.done()
    return corr, err, pid, epoch


def init_producer_id_call(conn: "Conn", corr: int, version: int, **kw) -> tuple[int, int, int]:
    """-> (error_code, producer_id, producer_epoch)"""
    conn.send(init_producer_id(corr, version, **kw))
    got_corr, err, pid, epoch = parse_init_producer_id(conn.recv_frame(), version)
    assert got_corr == corr, f"correlation id {got_corr}, sent {corr}"
    return err, pid, epoch


# -- Fetch v4 ------------------------------------------------------------------------------------
def fetch_v4(corr: int, topic: str, partition: int, offset: int, max_wait_ms: int = 0,
             min_bytes: int = 0, max_bytes: int = 1 << 20, partition_max_bytes: int = 1 << 20,
             isolation_level: int = 0) -> bytes:
    body = (i32(-1) + i32(max_wait_ms) + i32(min_bytes) + i32(max_bytes) + i8(isolation_level)
            + i32(1) + string(topic) + i32(1) + i32(partition) + i64(offset) + i32(partition_max_bytes))
    return frame(request_header_v1(1, 4, corr) + body)


def parse_fetch_v4(body: bytes) -> tuple[int, list[tuple[str, int, int, int, bytes]]]:
    """-> (corr, [(topic, partition, error_code, high_watermark, records)])"""
    r = Reader(body)
    corr = r.take(">i")
    r.take(">i")  # throttle_time_ms
    out = []
    for _ in range(r.take(">i")):
        name = r.string()
        for _ in range(r.take(">i")):
            p, err, hw = r.take(">i"), r.take(">h"), r.take(">q")
            r.take(">q")  # last_stable_offset
            n_aborted = r.take(">i")
            for _ in range(max(0, n_aborted)):
                r.take(">q")
                r.take(">q")
            records = r.nbytes() or b""
            out.append((name, p, err, hw, records))
    r.done()
    return corr, out


def fetch_one(conn: "Conn", corr: int, topic: str, partition: int, offset: int,
              **kw) -> tuple[int, int, bytes]:
    """One single-partition Fetch v4 -> (error_code, high_watermark, records bytes)."""
    conn.send(fetch_v4(corr, topic, partition, offset, **kw))
    got_corr, parts = parse_fetch_v4(conn.recv_frame())
    assert got_corr == corr, f"correlation id {got_corr}, sent {corr}"
    assert len(parts) == 1 and parts[0][:2] == (topic, partition), [p[:4] for p in parts]
    return parts[0][2], parts[0][3], parts[0][4]


# -- ListOffsets v1 -------------------------------------------------------------------------------
LATEST = -1
EARLIEST = -2


def list_offsets_v1(corr: int, topic: str, partition: int, timestamp: int = LATEST) -> bytes:
    body = i32(-1) + i32(1) + string(topic) + i32(1) + i32(partition) + i64(timestamp)
    return frame(request_header_v1(2, 1, corr) + body)


def list_offset_one(conn: "Conn", corr: int, topic: str, partition: int,
                    timestamp: int = LATEST) -> tuple[int, int]:
    """-> (error_code, offset); LATEST gives the high watermark, EARLIEST the log start."""
    conn.send(list_offsets_v1(corr, topic, partition, timestamp))
    r = Reader(conn.recv_frame())
    got_corr = r.take(">i")
    assert got_corr == corr, f"correlation id {got_corr}, sent {corr}"
    out = []
    for _ in range(r.take(">i")):
        name = r.string()
        for _ in range(r.take(">i")):
            p, err = r.take(">i"), r.take(">h")
            r.take(">q")  # timestamp
            out.append((name, p, err, r.take(">q")))
    r.done()
    assert len(out) == 1 and out[0][:2] == (topic, partition), out
    return out[0][2], out[0][3]


# -- DeleteRecords v0 -----------------------------------------------------------------------------
def delete_records_v0(corr: int, topic: str, partition: int, offset: int,
                      timeout_ms: int = 10000) -> bytes:
    body = i32(1) + string(topic) + i32(1) + i32(partition) + i64(offset) + i32(timeout_ms)
    return frame(request_header_v1(21, 0, corr) + body)


def delete_records_one(conn: "Conn", corr: int, topic: str, partition: int,
                       offset: int) -> tuple[int, int]:
    """-> (error_code, low_watermark); offset -1 means the high watermark."""
    conn.send(delete_records_v0(corr, topic, partition, offset))
    r = Reader(conn.recv_frame())
    got_corr = r.take(">i")
    assert got_corr == corr, f"correlation id {got_corr}, sent {corr}"
    r.take(">i")  # throttle_time_ms
    out = []
    for _ in range(r.take(">i")):
        name = r.string()
        for _ in range(r.take(">i")):
            p, low, err = r.take(">i"), r.take(">q"), r.take(">h")
            out.append((name, p, err, low))
    r.done()
    assert len(out) == 1 and out[0][:2] == (topic, partition), out
    return out[0][2], out[0][3]
