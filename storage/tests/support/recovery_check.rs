//! Log recovery of damaged segments, driven by arbitrary bytes: shared by the fuzz target
//! (`fuzz/fuzz_targets/log_recovery.rs`, which includes this file with `#[path]`) and the
//! regression tests (`storage/tests/recovery_fuzz_regressions.rs`), so a crashing fuzz input
//! replays as a normal test. Public storage API only (the internals are being rewritten).
//!
//! A case: build a log with small segments from input-chosen batches (on `FaultyBackend`), end it
//! (clean close, crash, or crash with unsynced batches in flight), damage the files (flip or
//! overwrite bytes, truncate, append zeros or garbage, remove index files; any segment), reopen.
//! The invariants live in [`check_recovered`] and [`check_after_append`]; tighten them there.
//!
//! Bytes are decoded by hand (not `arbitrary`) so this file needs only the storage crate's own
//! dependencies; missing input bytes read as zero.
#![allow(dead_code)]

use std::cell::RefCell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use riptide_testkit::{record_batch, Compression};
use storage::{BatchHeader, Durability, Error, FaultyBackend, IoBackend, IoFile, Log, LogConfig};

/// The partition directory every case uses.
pub const DIR: &str = "/data/fuzz-0";

/// One appended batch.
#[derive(Clone, Debug)]
pub struct BatchSpec {
    pub records: usize,
    pub value_len: usize,
    pub compression: Compression,
}

/// How the first life of the log ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `close()`: everything written, synced, the active segment trimmed.
    Close,
    /// Everything flushed, then power loss (files revert to their synced images).
    Crash,
    /// The last `unsynced` batches appended without waiting (the writer gets `yields` chances
    /// to run), then power loss: any prefix of them may survive.
    CrashUnsynced { unsynced: usize, yields: usize },
}

/// Damage applied to the files of the partition directory after the first life.
#[derive(Clone, Debug)]
pub enum Damage {
    /// `FaultyBackend::corrupt_byte` (XOR 0xff) at `pos % len`.
    Flip { file: usize, pos: u32 },
    /// Overwrite bytes at `pos % (len + 1)` (may extend the file).
    Overwrite { file: usize, pos: u32, bytes: Vec<u8> },
    /// Truncate to `len % (file length + 1)`.
    Truncate { file: usize, len: u32 },
    /// Extend with zeros (torn write, DMA padding, unwritten reserved space).
    AppendZeros { file: usize, n: u32 },
    /// Extend with these bytes.
    AppendGarbage { file: usize, bytes: Vec<u8> },
    /// Remove the file if it is an `.index` or `.timeindex` file (segment files stay).
    RemoveIndex { file: usize },
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub config: LogConfig,
    /// `max_bytes` of the checking reads.
    pub read_max_bytes: usize,
    pub batches: Vec<BatchSpec>,
    pub ending: Ending,
    pub damage: Vec<Damage>,
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.u8() as usize % (max + 1)).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b.to_vec()
    }
}

pub const MAX_BATCHES: usize = 64;
pub const MAX_DAMAGE: usize = 8;

impl Plan {
    /// Decodes a plan from arbitrary bytes (every input is a valid plan). Layout: segment size,
    /// flags, batch count, damage count, the damage, the ending's details, then two bytes per
    /// batch: damage comes early so that short inputs damage something.
    pub fn from_bytes(data: &[u8]) -> Plan {
        let mut i = Input(data);
        let segment_bytes = 512 * (1 + u64::from(i.u8() % 16));
        let flags = i.u8();
        let config = LogConfig {
            segment_bytes,
            retention_ms: None,
            index_interval_bytes: 32 << (flags & 7),
            cache_bytes_max: if flags & 8 != 0 { 1 << 20 } else { 0 },
            ..LogConfig::default()
        };
        let read_max_bytes = [1, 300, 4096, 1 << 20][usize::from((flags >> 4) & 3)];
        let n = 1 + usize::from(i.u8()) % MAX_BATCHES;
        let damage = (0..usize::from(i.u8()) % (MAX_DAMAGE + 1))
            .map(|_| {
                let kind = i.u8();
                let file = usize::from(i.u8());
                match kind % 6 {
                    0 => Damage::Flip { file, pos: u32::from(i.u16()) },
                    1 => Damage::Overwrite { file, pos: u32::from(i.u16()), bytes: i.bytes(16) },
                    2 => Damage::Truncate { file, len: u32::from(i.u16()) },
                    3 => Damage::AppendZeros { file, n: u32::from(i.u16()) % 8192 },
                    4 => Damage::AppendGarbage { file, bytes: i.bytes(64) },
                    _ => Damage::RemoveIndex { file },
                }
            })
            .collect();
        let ending = match flags >> 6 {
            0 | 3 => Ending::Close,
            1 => Ending::Crash,
            _ => Ending::CrashUnsynced { unsynced: usize::from(i.u8()) % (n + 1), yields: usize::from(i.u8() % 8) },
        };
        let batches = (0..n)
            .map(|_| {
                let a = i.u8();
                let compression = match a >> 2 {
                    0..=59 => Compression::None,
                    60 => Compression::Gzip,
                    61 => Compression::Snappy,
                    62 => Compression::Lz4,
                    _ => Compression::Zstd,
                };
                BatchSpec { records: 1 + usize::from(a & 3), value_len: 4 * usize::from(i.u8()), compression }
            })
            .collect();
        Plan { config, read_max_bytes, batches, ending, damage }
    }
}

fn build_batch(spec: &BatchSpec, ts: i64) -> Bytes {
    let records = (0..spec.records).map(|r| {
        let fill = b'a' + ((ts as usize + r) % 26) as u8;
        (Some(Bytes::from(format!("k{ts}-{r}"))), Some(Bytes::from(vec![fill; spec.value_len])))
    });
    record_batch(records, ts, spec.compression)
}

fn with_base(batch: &Bytes, base: i64) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[..8].copy_from_slice(&base.to_be_bytes());
    b.freeze()
}

/// What the first life appended, as stored (base offsets set), and how much of it is durable.
#[derive(Debug, Default)]
pub struct Model {
    pub batches: Vec<Bytes>,
    heads: Vec<BatchHeader>,
    /// `batches[..durable]` were synced before the ending.
    pub durable: usize,
}

impl Model {
    fn push(&mut self, batch: Bytes) {
        self.heads.push(BatchHeader::parse(&batch).expect("model batch"));
        self.batches.push(batch);
    }
    fn truncate(&mut self, n: usize) {
        self.batches.truncate(n);
        self.heads.truncate(n);
    }
    fn head(&self, i: usize) -> &BatchHeader {
        &self.heads[i]
    }
    fn end(&self) -> i64 {
        self.heads.last().map_or(0, BatchHeader::next_offset)
    }
    /// Index of the model batch starting at `offset`.
    fn index_of_base(&self, offset: i64) -> Option<usize> {
        self.heads.binary_search_by_key(&offset, |h| h.base_offset).ok()
    }
    /// Index of the model batch holding `offset`.
    fn index_holding(&self, offset: i64) -> Option<usize> {
        let i = self.heads.partition_point(|h| h.next_offset() <= offset);
        (i < self.heads.len()).then_some(i)
    }
    /// Whether a batch boundary lies at `offset` (0 and every batch end).
    fn is_boundary(&self, offset: i64) -> bool {
        offset == 0 || self.heads.binary_search_by_key(&offset, BatchHeader::next_offset).is_ok()
    }
    fn durable_end(&self) -> i64 {
        self.durable.checked_sub(1).map_or(0, |i| self.heads[i].next_offset())
    }
}

/// Bytes 12..16 of a v2 batch (partition leader epoch) lie outside the CRC: the format gives a
/// log no way to notice damage there, so comparisons ignore them.
fn same_batch(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.len() >= 16 && a[..12] == b[..12] && a[16..] == b[16..]
}

/// What the first check saw; the reopened log must show the same again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub high_watermark: i64,
    /// Base offsets of the batches read, in order.
    pub read: Vec<i64>,
    /// Offsets where a read failed with `CorruptBatch` (detected damage).
    pub corrupt_at: Vec<i64>,
    /// A read found damage and took the log offline (the last `corrupt_at`).
    pub offline: bool,
}

/// Which files the damage touched (decides what the invariants may allow).
#[derive(Debug, Default, Clone, Copy)]
pub struct Touched {
    /// A `.log` file changed.
    pub segment_files: bool,
    /// An `.index` or `.timeindex` file changed or was removed.
    pub index_files: bool,
    /// Bytes 0..8 (base offset, outside the CRC) of a batch in a segment other than the last.
    pub sealed_offset_field: bool,
    /// A segment other than the last was truncated.
    pub sealed_truncated: bool,
}

/// The damage as applied (file names and resolved positions), for violation reports.
pub type DamageLog = Vec<String>;

/// Invariants of a log reopened after damage (the log opened; `Err` from open is allowed):
/// - log start is 0 (nothing is deleted: no DeleteRecords, no retention, no segment removed);
/// - the high watermark is a batch boundary of what was appended, and at most its end: recovery
///   keeps a prefix, never invents data; with no damage to segment files, it keeps at least
///   everything that was durable (index damage alone never costs data);
/// - reading from log start to the high watermark returns batches contiguous in offset, each
///   identical to the batch appended at that offset (but for the unprotected leader epoch);
/// - a read may fail with `CorruptBatch` only if segment files were damaged (damage in a sealed
///   segment is found by the read's CRC check); the read then resumes at the next batch;
/// - with no read errors, `offset_for_timestamp` agrees with the batches read.
pub async fn check_recovered(log: &Log<FaultyBackend>, model: &Model, touched: Touched, read_max: usize) -> Result<Seen, String> {
    let start = log.log_start_offset();
    let hw = log.high_watermark();
    let end = log.log_end_offset();
    if start != 0 {
        return Err(format!("log start {start} after recovery, want 0"));
    }
    if hw > end {
        return Err(format!("high watermark {hw} above log end {end}"));
    }
    if !model.is_boundary(hw) {
        return Err(format!("high watermark {hw} is not a batch boundary of the appended data"));
    }
    if !touched.segment_files && hw < model.durable_end() {
        return Err(format!("lost durable data without segment damage: hw {hw} < durable end {}", model.durable_end()));
    }
    let mut seen = Seen { high_watermark: hw, read: Vec::new(), corrupt_at: Vec::new(), offline: false };
    let mut offset = start;
    while offset < hw {
        match log.read(offset, read_max).await {
            Ok(r) => {
                if r.batches.is_empty() {
                    return Err(format!("empty read at {offset} below the high watermark {hw}"));
                }
                for (n, b) in r.batches.iter().enumerate() {
                    let h = BatchHeader::parse(b).map_err(|e| format!("read at {offset}: {e}"))?;
                    let contiguous = if n == 0 { h.base_offset <= offset && offset <= h.last_offset() } else { h.base_offset == offset };
                    if !contiguous {
                        return Err(format!("read at {offset} returned batch {n} with base offset {}", h.base_offset));
                    }
                    let Some(i) = model.index_of_base(h.base_offset) else {
                        return Err(format!("read returned a batch at {} where none was appended", h.base_offset));
                    };
                    if !same_batch(b, &model.batches[i]) {
                        return Err(format!("batch at offset {} differs from the one appended", h.base_offset));
                    }
                    if h.next_offset() > hw {
                        return Err(format!("read returned batch {}..{} above the high watermark {hw}", h.base_offset, h.next_offset()));
                    }
                    seen.read.push(h.base_offset);
                    offset = h.next_offset();
                }
            }
            Err(Error::CorruptBatch(e)) if touched.segment_files => {
                seen.corrupt_at.push(offset);
                let i = model.index_holding(offset).ok_or_else(|| format!("corrupt read at {offset}: {e}"))?;
                offset = model.head(i).next_offset();
            }
            // Damage found by a read takes the log offline: every later read and append fails.
            Err(e @ Error::CorruptLog { .. }) if touched.segment_files => {
                model.index_holding(offset).ok_or_else(|| format!("corrupt read at {offset}: {e}"))?;
                seen.corrupt_at.push(offset);
                check_offline(log, start).await?;
                seen.offline = true;
                return Ok(seen);
            }
            Err(e) => return Err(format!("read at {offset} (hw {hw}) failed: {e}")),
        }
    }
    if seen.corrupt_at.is_empty() {
        check_timestamps(log, model, &seen).await?;
    }
    Ok(seen)
}

/// A log that found damage on read serves nothing more: reads (anywhere) and appends fail.
async fn check_offline(log: &Log<FaultyBackend>, start: i64) -> Result<(), String> {
    if let Ok(r) = log.read(start, 1 << 20).await {
        return Err(format!("read at {start} after damage was found returned {} batches, want an error", r.batches.len()));
    }
    let batch = record_batch([(None, Some(Bytes::from_static(b"offline")))], 1 << 40, Compression::None);
    if log.append(batch).await.is_ok() {
        return Err("append accepted after damage was found".into());
    }
    Ok(())
}

async fn check_timestamps(log: &Log<FaultyBackend>, model: &Model, seen: &Seen) -> Result<(), String> {
    let headers: Vec<&BatchHeader> = seen.read.iter().map(|&base| model.head(model.index_of_base(base).unwrap())).collect();
    let mut probes: Vec<i64> = headers.iter().flat_map(|h| [h.base_timestamp, h.max_timestamp, h.max_timestamp + 1]).collect();
    probes.push(i64::MIN + 1);
    for ts in probes {
        let want = headers.iter().find(|h| h.max_timestamp >= ts).map(|h| (h.base_offset, h.max_timestamp));
        let got = log.offset_for_timestamp(ts).await.map_err(|e| format!("offset_for_timestamp({ts}): {e}"))?;
        if got != want {
            return Err(format!("offset_for_timestamp({ts}) = {got:?}, want {want:?}"));
        }
    }
    Ok(())
}

/// After recovery the log takes a new append at its end, and it reads back.
pub async fn check_after_append(log: &Log<FaultyBackend>, seen: &Seen) -> Result<Bytes, String> {
    let end = log.log_end_offset();
    let batch = record_batch([(Some(Bytes::from_static(b"after")), Some(Bytes::from_static(b"recovery")))], 1 << 40, Compression::None);
    let info = log.append(batch.clone()).await.map_err(|e| format!("append after recovery: {e}"))?;
    if info.base_offset != end || end != seen.high_watermark {
        return Err(format!("append after recovery got base {}, log end was {end}, hw {}", info.base_offset, seen.high_watermark));
    }
    log.wait_durable(info.log_end_offset, Durability::Synced).await.map_err(|e| format!("durable after recovery: {e}"))?;
    let r = log.read(info.base_offset, 1 << 20).await.map_err(|e| format!("read back after recovery: {e}"))?;
    let stored = with_base(&batch, info.base_offset);
    if r.batches.first().map(|b| &b[..]) != Some(&stored[..]) {
        return Err("the batch appended after recovery does not read back".into());
    }
    Ok(stored)
}

/// Lets other tasks (the log's writer) run once.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A copy of `from`'s files (their current images) in a fresh backend: the disk as a crashed
/// process left it, while the old `Log` can still be closed against `from` without touching it.
async fn snapshot(from: &FaultyBackend, dir: &Path) -> Result<FaultyBackend, String> {
    let to = FaultyBackend::new();
    to.create_dir_all(dir).await.map_err(io_err("snapshot dir"))?;
    for path in from.files() {
        let data = from.file_data(&path).unwrap_or_default();
        let len = from.file_len(&path).unwrap_or(0);
        // Files may sit in subdirectories (a standalone log's private journal).
        if let Some(parent) = path.parent() {
            to.create_dir_all(parent).await.map_err(io_err("snapshot dir"))?;
        }
        write_at(&to, &path, 0, &data, true).await?;
        to.truncate_file(&path, len);
        let f = to.open(&path, false).await.map_err(io_err("snapshot open"))?;
        f.sync().await.map_err(io_err("snapshot sync"))?;
    }
    to.sync_dir(dir).await.map_err(io_err("snapshot sync dir"))?;
    Ok(to)
}

/// Writes `bytes` at `pos` through the backend's aligned write API (read-modify-write of whole
/// blocks), keeping the file length at `max(len, pos + bytes.len())`.
async fn write_at(backend: &FaultyBackend, path: &Path, pos: u64, bytes: &[u8], create: bool) -> Result<(), String> {
    let f = backend.open(path, create).await.map_err(io_err("damage open"))?;
    let len = f.size().await.map_err(io_err("damage size"))?;
    let new_len = len.max(pos + bytes.len() as u64);
    if !bytes.is_empty() {
        let align = f.alignment();
        let start = pos / align * align;
        let stop = (pos + bytes.len() as u64).div_ceil(align) * align;
        let old = f.read_at(start, (stop - start) as usize).await.map_err(io_err("damage read"))?;
        let mut buf = f.alloc_buf((stop - start) as usize);
        let image = storage::io::IoBuf::as_mut_slice(&mut buf);
        image.fill(0);
        image[..old.len()].copy_from_slice(&old);
        let at = (pos - start) as usize;
        image[at..at + bytes.len()].copy_from_slice(bytes);
        f.write_at(buf, start).await.map_err(io_err("damage write"))?;
    }
    f.truncate(new_len).await.map_err(io_err("damage truncate"))?;
    Ok(())
}

fn is_index(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "index" || e == "timeindex")
}

/// Start positions of the model's batches in each segment file but the last (by base offset):
/// where a damaged base offset goes unnoticed by the read path (finding F3).
fn sealed_layout(backend: &FaultyBackend, dir: &Path, model: &Model) -> Vec<(PathBuf, Vec<u64>)> {
    let mut segments: Vec<(i64, PathBuf)> = backend
        .files()
        .into_iter()
        .filter(|p| p.parent() == Some(dir) && p.extension().is_some_and(|e| e == "log"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for w in segments.windows(2) {
        let ((base, path), (next, _)) = (&w[0], &w[1]);
        let mut pos = 0u64;
        let mut starts = Vec::new();
        for (b, h) in model.batches.iter().zip(&model.heads) {
            if (*base..*next).contains(&h.base_offset) {
                starts.push(pos);
                pos += b.len() as u64;
            }
        }
        out.push((path.clone(), starts));
    }
    out
}

/// Whether bytes `[from, to)` of `file` overlap a base-offset field of the sealed layout.
fn hits_sealed_offset_field(layout: &[(PathBuf, Vec<u64>)], file: &Path, from: u64, to: u64) -> bool {
    layout.iter().filter(|(p, _)| p == file).flat_map(|(_, starts)| starts).any(|&s| from < s + 8 && s < to)
}

/// Applies the damage; returns which kinds of files it touched and what it did.
async fn apply_damage(backend: &FaultyBackend, dir: &Path, damage: &[Damage], layout: &[(PathBuf, Vec<u64>)]) -> Result<(Touched, DamageLog), String> {
    let mut touched = Touched::default();
    let mut log = DamageLog::new();
    for d in damage {
        let files: Vec<PathBuf> = backend.files().into_iter().filter(|p| p.parent() == Some(dir)).collect();
        if files.is_empty() {
            break;
        }
        let pick = |file: &usize| files[*file % files.len()].clone();
        let file = match d {
            Damage::Flip { file, .. }
            | Damage::Overwrite { file, .. }
            | Damage::Truncate { file, .. }
            | Damage::AppendZeros { file, .. }
            | Damage::AppendGarbage { file, .. }
            | Damage::RemoveIndex { file } => pick(file),
        };
        let len = backend.file_len(&file).unwrap_or(0);
        let changed = match d {
            Damage::Flip { pos, .. } => {
                let at = u64::from(*pos) % len.max(1);
                let changed = at < backend.file_data(&file).map_or(0, |d| d.len() as u64);
                if changed {
                    backend.corrupt_byte(&file, at);
                    touched.sealed_offset_field |= hits_sealed_offset_field(layout, &file, at, at + 1);
                }
                changed
            }
            Damage::Overwrite { pos, bytes, .. } => {
                let at = u64::from(*pos) % (len + 1);
                write_at(backend, &file, at, bytes, false).await?;
                touched.sealed_offset_field |= hits_sealed_offset_field(layout, &file, at, at + bytes.len() as u64);
                !bytes.is_empty()
            }
            Damage::Truncate { len: to, .. } => {
                let to = u64::from(*to) % (len + 1);
                backend.truncate_file(&file, to);
                touched.sealed_truncated |= to < len && layout.iter().any(|(p, _)| *p == file);
                to != len
            }
            Damage::AppendZeros { n, .. } => {
                backend.truncate_file(&file, len + u64::from(*n));
                *n > 0
            }
            Damage::AppendGarbage { bytes, .. } => {
                write_at(backend, &file, len, bytes, false).await?;
                !bytes.is_empty()
            }
            Damage::RemoveIndex { .. } => {
                is_index(&file) && backend.remove(&file).await.is_ok()
            }
        };
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        log.push(format!("{d:?} -> {name} (length {len}){}", if changed { "" } else { ", no change" }));
        if changed {
            if is_index(&file) {
                touched.index_files = true;
            } else {
                touched.segment_files = true;
            }
        }
    }
    Ok((touched, log))
}

/// How a case ended (for statistics; every outcome is allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `Log::open` refused the damaged partition.
    OpenRefused,
    /// Opened, and a read found the damage and took the log offline.
    Offline,
    /// Opened; `corrupt_reads` reads failed with detected corruption.
    Recovered { kept_all: bool, corrupt_reads: usize },
}

/// Runs one case; `Err` is an invariant violation (the fuzzer turns it into a crash).
pub async fn run_plan(plan: &Plan) -> Result<Outcome, String> {
    let dir = PathBuf::from(DIR);
    let first = FaultyBackend::new();
    let log = Log::open(first.clone(), dir.clone(), plan.config.clone()).await.map_err(|e| format!("first open: {e}"))?;
    let unsynced = match plan.ending {
        Ending::CrashUnsynced { unsynced, .. } => unsynced,
        _ => 0,
    };
    let mut model = Model::default();
    for (i, spec) in plan.batches.iter().enumerate() {
        let b = build_batch(spec, 1_000 + 10 * i as i64);
        let info = log.append(b.clone()).await.map_err(|e| format!("append {i}: {e}"))?;
        model.push(with_base(&b, info.base_offset));
        if i + 1 == plan.batches.len() - unsynced {
            log.flush().await.map_err(|e| format!("flush: {e}"))?;
            model.durable = model.batches.len();
        }
    }
    if plan.batches.len() == unsynced {
        model.durable = 0;
    }
    let backend = match plan.ending {
        Ending::Close => {
            log.close().await.map_err(|e| format!("close: {e}"))?;
            first
        }
        Ending::Crash | Ending::CrashUnsynced { .. } => {
            if let Ending::CrashUnsynced { yields, .. } = plan.ending {
                for _ in 0..yields {
                    YieldNow(false).await;
                }
            }
            first.crash();
            let disk = snapshot(&first, &dir).await?;
            // The old log finishes against the old backend only.
            let _ = log.close().await;
            disk
        }
    };
    drop(log);
    let layout = sealed_layout(&backend, &dir, &model);
    let (touched, damage_log) = apply_damage(&backend, &dir, &plan.damage, &layout).await?;
    let files: Vec<String> = backend
        .files()
        .iter()
        .map(|p| format!("{} ({} bytes)", p.file_name().and_then(|n| n.to_str()).unwrap_or("?"), backend.file_len(p).unwrap_or(0)))
        .collect();
    let explain = |violation: String| format!("{violation}\n  damage: {damage_log:#?}\n  files after damage: {files:?}");
    let log = match Log::open(backend.clone(), dir.clone(), plan.config.clone()).await {
        Ok(log) => log,
        Err(_) => return Ok(Outcome::OpenRefused),
    };
    let result = recovered_life(log, backend, &dir, plan, model, touched).await;
    result.map_err(explain)
}

/// Checks of the reopened log, a new append, and a clean restart.
async fn recovered_life(
    log: Log<FaultyBackend>,
    backend: FaultyBackend,
    dir: &Path,
    plan: &Plan,
    mut model: Model,
    touched: Touched,
) -> Result<Outcome, String> {
    let seen = check_recovered(&log, &model, touched, plan.read_max_bytes).await?;
    let kept_all = seen.high_watermark == model.end();
    if seen.offline {
        let _ = log.close().await;
        drop(log);
        // A restart finds the damage again (at open or on the same read), never serves past it.
        return match Log::open(backend, dir.to_path_buf(), plan.config.clone()).await {
            Err(_) => Ok(Outcome::Offline),
            Ok(log) => {
                let again = check_recovered(&log, &model, touched, plan.read_max_bytes).await?;
                let _ = log.close().await;
                if again != seen {
                    return Err(format!("a restart of an offline log changed what it serves: {again:?}, want {seen:?}"));
                }
                Ok(Outcome::Offline)
            }
        };
    }
    let appended = check_after_append(&log, &seen).await?;
    log.close().await.map_err(|e| format!("close after recovery: {e}"))?;
    drop(log);
    // A clean restart changes nothing: the same data, plus the new batch.
    let log = Log::open(backend, dir.to_path_buf(), plan.config.clone()).await.map_err(|e| format!("reopen after clean close: {e}"))?;
    model.truncate(model.index_of_base(seen.high_watermark).unwrap_or(model.batches.len()));
    model.push(appended.clone());
    model.durable = model.batches.len();
    let again = check_recovered(&log, &model, touched, plan.read_max_bytes).await?;
    let mut want = seen.clone();
    want.high_watermark = BatchHeader::parse(&appended).unwrap().next_offset();
    want.read.push(BatchHeader::parse(&appended).unwrap().base_offset);
    if again != want {
        return Err(format!("a clean restart after recovery changed the log: {again:?}, want {want:?}"));
    }
    log.close().await.map_err(|e| format!("final close: {e}"))?;
    Ok(Outcome::Recovered { kept_all, corrupt_reads: seen.corrupt_at.len() })
}

thread_local! {
    static EXECUTOR: RefCell<Option<glommio::LocalExecutor>> = const { RefCell::new(None) };
}

/// Runs `f` to completion on this thread's glommio executor (made once, reused: making one per
/// fuzz input would cost more than the input).
pub fn block_on<T>(f: impl Future<Output = T>) -> T {
    EXECUTOR.with(|ex| {
        let mut ex = ex.borrow_mut();
        let ex = ex.get_or_insert_with(|| glommio::LocalExecutorBuilder::default().make().expect("glommio executor"));
        ex.run(f)
    })
}

/// Decodes and runs one input; panics on an invariant violation (with the plan and the reason).
pub fn check_input(data: &[u8]) -> Outcome {
    let plan = Plan::from_bytes(data);
    match block_on(run_plan(&plan)) {
        Ok(outcome) => outcome,
        Err(violation) => panic!("recovery invariant violated: {violation}\nplan: {plan:#?}"),
    }
}
