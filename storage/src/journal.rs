//! The shard journal: one sequential, group-committed write-ahead log for every partition of a
//! shard (ScyllaDB's per-shard commitlog, BookKeeper's journal).
//!
//! Why: with one O_DIRECT write per partition per round, device writes, ack latency and CPU grew
//! with the partition count (10 MB/s over 100 partitions meant ~12,600 device writes/s of a
//! rewritten 4 KiB tail block each). Now every append of the shard goes into the journal: one
//! write (and one fdatasync of the journal file) per round for all partitions, rounds paced to
//! at most one per `round_interval` unless `round_bytes` are waiting. Acknowledgements and the
//! high watermark follow the journal. Each log keeps its batches in memory and writes them to
//! its own segment files later, in large writes (`Log`'s flusher); once a log's segment files
//! are synced past its entries in a journal file, that file can be reused.
//!
//! Layout: `files` ring files of `file_bytes` each in the journal directory, zero-filled when
//! created (so later writes overwrite written blocks: no extent conversion, no metadata to
//! sync). Space is reserved in ring order when an append is accepted (`reserve`), so the
//! writer never waits for space with entries in hand: an append either gets its place or waits
//! (backpressure, asking the logs that hold the oldest file to flush), or fails at once with
//! `DiskFull` when those logs cannot flush for want of disk space.
//!
//! Entry (big endian): magic u32, kind u8, log generation u24, file sequence u64, payload length
//! u32, CRC-32C u32 (of every other header byte and the payload), topic id u128, partition i32,
//! payload (one record batch as stored, base offset set). A `Direct` entry (payload: base and
//! end offset) says a log wrote the batches at [base, end) straight to its segment files instead:
//! replay knows that gap in the log's entries is not lost journal data. The generation is the
//! log's count of truncations (`Log::truncate_to`, in its checkpoint file): replay skips entries
//! of another generation, which hold batches from before the last truncation (older binaries
//! wrote 0 there, a log's generation before its first truncation). A `Switch` entry closes a
//! file when the writer moves to the next one. Each activation of a ring file takes a new sequence
//! number, larger than any before; recovery reads files in sequence order and stops each at its
//! first invalid or stale entry.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use futures::future::select;

use crate::checkpoint::GENERATION_MASK;
use crate::constants::*;
use crate::error::{Error, Result};
use crate::io::{align_down, align_up, IoBackend, IoBuf, IoFile, Pieces};

const MAGIC: u32 = 0x524a_4e4c; // "RJNL"
const KIND_BATCH: u8 = 1;
const KIND_SWITCH: u8 = 2;
const KIND_DIRECT: u8 = 3;
/// Payload of a Direct entry: base offset and end offset, i64 each.
pub(crate) const DIRECT_PAYLOAD_BYTES: usize = 16;
/// Bytes of an entry header.
pub const ENTRY_HEADER_BYTES: usize = 44;
/// File holding the first sequence number of the current run (entries below it are stale).
const START_FILE: &str = "journal.start";

/// Which partition an entry belongs to: the topic id survives renames and tells a re-created
/// topic's partitions from a deleted one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JournalKey {
    pub topic_id: u128,
    pub partition: i32,
}

/// Journal geometry and pacing.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// Bytes of each ring file (a multiple of 1 MiB).
    pub file_bytes: u64,
    /// Ring files (at least 2).
    pub files: usize,
    /// Rounds start at most this often unless `round_bytes` are waiting.
    pub round_interval: Duration,
    /// A round this large starts at once.
    pub round_bytes: usize,
    /// Written data nobody waits for is synced at the latest this long after the last sync.
    pub sync_interval: Duration,
    /// Largest single write; a round's writes are submitted concurrently.
    pub write_bytes_max: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            file_bytes: JOURNAL_FILE_BYTES_DEFAULT,
            files: JOURNAL_FILES_DEFAULT,
            round_interval: Duration::from_micros(JOURNAL_ROUND_INTERVAL_US_DEFAULT),
            round_bytes: JOURNAL_ROUND_BYTES_DEFAULT,
            sync_interval: Duration::from_micros(JOURNAL_SYNC_INTERVAL_US_DEFAULT),
            write_bytes_max: WRITE_CHUNK_BYTES_MAX,
        }
    }
}

impl JournalConfig {
    /// A journal of about `bytes` in total (4 files; 2 at the smallest).
    pub fn with_capacity(bytes: u64) -> JournalConfig {
        let files = if bytes >= 4 * JOURNAL_FILE_BYTES_MIN { 4 } else { 2 };
        let file_bytes = (bytes / files as u64).max(JOURNAL_FILE_BYTES_MIN) / JOURNAL_FILE_BYTES_MIN * JOURNAL_FILE_BYTES_MIN;
        JournalConfig { file_bytes, files, ..JournalConfig::default() }
    }

    /// A journal of about `bytes` whose files hold at least two batches of `max_batch_bytes`.
    pub fn for_batches(bytes: u64, max_batch_bytes: usize) -> JournalConfig {
        let mut c = JournalConfig::with_capacity(bytes);
        let need = 2 * (max_batch_bytes + 2 * ENTRY_HEADER_BYTES) as u64;
        if c.file_bytes < need {
            c.file_bytes = need.div_ceil(JOURNAL_FILE_BYTES_MIN) * JOURNAL_FILE_BYTES_MIN;
        }
        c
    }

    /// Largest entry payload the ring can hold (a batch larger than this is refused).
    pub fn entry_payload_max(&self) -> usize {
        (self.file_bytes / 2) as usize - 2 * ENTRY_HEADER_BYTES
    }
}

/// What the journal needs from a log that writes through it. Implemented by the log.
pub(crate) trait JournalClient {
    /// Everything of this log below `end_offset` is in the journal file (`synced`: and synced).
    fn journal_progress(&self, end_offset: i64, synced: bool);
    /// The journal failed (a write or sync error): nothing more will become durable.
    fn journal_failed(&self, reason: &str);
    /// The journal needs the file holding this log's entries below `end_offset`: write them to
    /// the segment files and sync them soon.
    fn request_flush(&self, end_offset: i64);
    /// End of what this log's segment files hold, synced.
    fn segment_synced(&self) -> i64;
    /// The log cannot write its segment files for want of space.
    fn flush_blocked(&self) -> bool;
}

type LogId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    /// Being filled (reservations point into it).
    Active,
    /// Closed by a Switch entry; free once every log's entries in it are in segment files.
    Sealed,
}

struct Slot<F> {
    file: Rc<F>,
    seq: u64,
    state: SlotState,
    /// The writer has written this file's Switch entry: nothing more will be written to it.
    closed_on_disk: bool,
    /// Per log, the end offset of its last entry in this file.
    refs: HashMap<LogId, i64>,
}

/// A reserved place in the ring and what goes there.
enum Pending {
    Batch { log: LogId, key: JournalKey, kind: u8, generation: u32, data: Bytes, end_offset: i64, slot: usize, pos: u64 },
    Switch { slot: usize, pos: u64 },
}

struct Client {
    weak: Weak<dyn JournalClient>,
    /// Stamped in the log's entries.
    generation: u32,
}

struct JState<F> {
    slots: Vec<Slot<F>>,
    /// Where the next reservation goes.
    res_slot: usize,
    res_pos: u64,
    next_seq: u64,
    queue: Vec<Pending>,
    queue_bytes: usize,
    clients: HashMap<LogId, Client>,
    next_log: LogId,
    /// Written position (slot, end) and the partial block there, rewritten by the next write.
    wr_slot: usize,
    wr_pos: u64,
    tail: Vec<u8>,
    failed: Option<String>,
    closing: bool,
    /// `begin` has run: the ring files exist and the writer runs.
    started: bool,
    last_round: Instant,
    /// Written since the last sync started: per log its end offset, the files, and the files
    /// closed by a Switch entry (free only once that entry is synced).
    unsynced: HashMap<LogId, i64>,
    unsynced_files: Vec<usize>,
    unsynced_closed: Vec<usize>,
    last_sync: Instant,
    /// Someone waits for written data to be synced (`want_sync`).
    sync_wanted: bool,
}

struct JournalInner<B: IoBackend> {
    backend: B,
    /// Segment writes of this shard's logs in progress at once (`segment_write_permit`).
    segment_writes: glommio::sync::Semaphore,
    dir: PathBuf,
    config: JournalConfig,
    st: RefCell<JState<B::File>>,
    wake: Event,
    space: Event,
    rounds: Cell<u64>,
    syncs: Cell<u64>,
    bytes_written: Cell<u64>,
}

/// A shard's journal. Cheap to clone (a reference).
pub struct Journal<B: IoBackend> {
    inner: Rc<JournalInner<B>>,
}

impl<B: IoBackend> Clone for Journal<B> {
    fn clone(&self) -> Self {
        Journal { inner: self.inner.clone() }
    }
}

/// One entry read back by `read_journal`.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub key: JournalKey,
    pub seq: u64,
    /// The log's generation when it wrote the entry (`Checkpoint::generation`).
    pub generation: u32,
    pub record: JournalRecord,
}

/// What a journal entry says about its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalRecord {
    /// Record batches as stored (base offset set).
    Batch(Bytes),
    /// The batches at [base_offset, end_offset) went straight to the segment files (large
    /// appends): if the segment files lack them after a crash, they were never acknowledged
    /// through the journal and the log's later entries must not be replayed past the gap.
    Direct { base_offset: i64, end_offset: i64 },
}

/// What recovery found in a journal directory.
#[derive(Debug, Default)]
pub struct JournalContents {
    pub entries: Vec<JournalEntry>,
    /// Largest sequence number seen (valid or stale): a new run starts above it.
    pub max_seq: u64,
}

fn slot_path(dir: &Path, slot: usize) -> PathBuf {
    dir.join(format!("{slot:04}.jnl"))
}

fn encode_header(out: &mut [u8], kind: u8, generation: u32, seq: u64, key: JournalKey, payload: &[u8]) {
    debug_assert_eq!(generation & !GENERATION_MASK, 0);
    out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    out[4] = kind;
    out[5..8].copy_from_slice(&generation.to_be_bytes()[1..4]);
    out[8..16].copy_from_slice(&seq.to_be_bytes());
    out[16..20].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    out[24..40].copy_from_slice(&key.topic_id.to_be_bytes());
    out[40..44].copy_from_slice(&key.partition.to_be_bytes());
    let crc = entry_crc(&out[..ENTRY_HEADER_BYTES], payload);
    out[20..24].copy_from_slice(&crc.to_be_bytes());
}

fn entry_crc(header: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&header[0..20]);
    let crc = crc32c::crc32c_append(crc, &header[24..ENTRY_HEADER_BYTES]);
    crc32c::crc32c_append(crc, payload)
}

/// A parsed entry at the start of `buf`: its header fields and payload, or None if invalid.
fn decode_entry(buf: &[u8]) -> Option<Decoded<'_>> {
    let h = buf.get(..ENTRY_HEADER_BYTES)?;
    if u32::from_be_bytes(h[0..4].try_into().ok()?) != MAGIC {
        return None;
    }
    let kind = h[4];
    let generation = u32::from_be_bytes([0, h[5], h[6], h[7]]);
    let seq = u64::from_be_bytes(h[8..16].try_into().ok()?);
    let len = u32::from_be_bytes(h[16..20].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(h[20..24].try_into().ok()?);
    let payload = buf.get(ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + len)?;
    if entry_crc(h, payload) != crc || !matches!(kind, KIND_BATCH | KIND_SWITCH | KIND_DIRECT) {
        return None;
    }
    let key = JournalKey {
        topic_id: u128::from_be_bytes(h[24..40].try_into().ok()?),
        partition: i32::from_be_bytes(h[40..44].try_into().ok()?),
    };
    Some(Decoded { kind, generation, seq, key, payload })
}

/// Header fields and payload of a valid entry.
#[derive(Debug, PartialEq, Eq)]
struct Decoded<'a> {
    kind: u8,
    generation: u32,
    seq: u64,
    key: JournalKey,
    payload: &'a [u8],
}

fn entry_bytes(payload_len: usize) -> u64 {
    (ENTRY_HEADER_BYTES + payload_len) as u64
}

/// Reads every journal file in `dir`: the valid entries of the current run, in order. A file
/// that ends without a Switch entry must be the last one written: if a file with a later
/// sequence number holds entries, the earlier file is damaged in the middle, and acknowledged
/// data would be lost: `Error::CorruptLog`.
pub async fn read_journal<B: IoBackend>(backend: &B, dir: &Path) -> Result<JournalContents> {
    let mut contents = JournalContents::default();
    let names = match backend.list_dir(dir).await {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(contents),
        Err(e) => return Err(e.into()),
    };
    let start_seq = read_start(backend, dir).await?;
    let mut files = Vec::new();
    for name in names.iter().filter(|n| n.ends_with(".jnl")) {
        let path = dir.join(name);
        let file = backend.open(&path, false).await?;
        let size = file.size().await?;
        let data = read_valid_prefix(&file, size).await?;
        let first_seq = decode_entry(&data).map(|d| d.seq);
        match first_seq {
            Some(seq) => contents.max_seq = contents.max_seq.max(seq),
            // Zero-filled and never written, or damaged at its very start: only the first is
            // harmless (a damaged file could hold acknowledged entries).
            None if data.iter().take(ENTRY_HEADER_BYTES).any(|&b| b != 0) => {
                return Err(Error::CorruptLog { path, position: 0, reason: "journal file starts with an invalid entry".into() });
            }
            None => {}
        }
        files.push((first_seq, path, data));
    }
    files.retain(|(seq, _, _)| seq.is_some_and(|s| s >= start_seq));
    files.sort_by_key(|(seq, _, _)| *seq);
    let last = files.len().saturating_sub(1);
    for (i, (seq, path, data)) in files.into_iter().enumerate() {
        let seq = seq.expect("kept files have a first entry");
        let (switched, end) = read_file(&data, seq, &mut contents.entries);
        if !switched && i != last {
            return Err(Error::CorruptLog {
                path,
                position: end,
                reason: "journal file damaged before its end (a later journal file has entries): acknowledged data after this point cannot be recovered".into(),
            });
        }
    }
    Ok(contents)
}

/// Reads a ring file up to the end of its entries (keeping the first invalid header, if any),
/// chunk by chunk: a large, mostly unused journal is not read whole.
async fn read_valid_prefix<F: IoFile>(file: &F, size: u64) -> Result<Bytes> {
    let mut data: Vec<u8> = Vec::new();
    let mut pos = 0usize; // start of the next entry
    loop {
        while let Some(Decoded { payload, .. }) = decode_entry(&data[pos..]) {
            pos += ENTRY_HEADER_BYTES + payload.len();
        }
        let need = match decode_header_len(&data[pos..]) {
            Some(n) => n,
            None if data.len() >= pos + ENTRY_HEADER_BYTES => break, // a whole header, not an entry's
            None => ENTRY_HEADER_BYTES,
        };
        if data.len() >= pos + need || data.len() as u64 >= size {
            break; // all of it was there and it is invalid, or the file ends
        }
        let read_len = (pos + need - data.len()).max(RECOVERY_READ_CHUNK_BYTES);
        let chunk = file.read_at(data.len() as u64, read_len).await?;
        if chunk.is_empty() {
            break;
        }
        data.extend_from_slice(&chunk);
    }
    data.truncate((pos + ENTRY_HEADER_BYTES).min(data.len()));
    Ok(Bytes::from(data))
}

/// Length of the entry whose header starts `buf`, if the header looks like one.
fn decode_header_len(buf: &[u8]) -> Option<usize> {
    let h = buf.get(..ENTRY_HEADER_BYTES)?;
    if u32::from_be_bytes(h[0..4].try_into().ok()?) != MAGIC {
        return None;
    }
    Some(ENTRY_HEADER_BYTES + u32::from_be_bytes(h[16..20].try_into().ok()?) as usize)
}

/// Entries of one file with sequence `seq`; returns whether it ended with a Switch entry, and
/// where its valid part ends.
fn read_file(data: &Bytes, seq: u64, out: &mut Vec<JournalEntry>) -> (bool, u64) {
    let mut pos = 0usize;
    while let Some(Decoded { kind, generation, seq: s, key, payload }) = decode_entry(&data[pos..]) {
        if s != seq {
            break; // stale: left by an earlier activation of this ring file
        }
        if kind == KIND_SWITCH {
            return (true, pos as u64);
        }
        let start = pos + ENTRY_HEADER_BYTES;
        let record = match kind {
            KIND_DIRECT => match decode_direct(payload) {
                Some(r) => r,
                None => break, // a valid CRC over a malformed payload: treat as the end
            },
            _ => JournalRecord::Batch(data.slice(start..start + payload.len())),
        };
        out.push(JournalEntry { key, seq, generation, record });
        pos = start + payload.len();
    }
    (false, pos as u64)
}

fn encode_direct(base_offset: i64, end_offset: i64) -> Bytes {
    let mut p = Vec::with_capacity(DIRECT_PAYLOAD_BYTES);
    p.extend_from_slice(&base_offset.to_be_bytes());
    p.extend_from_slice(&end_offset.to_be_bytes());
    Bytes::from(p)
}

fn decode_direct(payload: &[u8]) -> Option<JournalRecord> {
    if payload.len() != DIRECT_PAYLOAD_BYTES {
        return None;
    }
    let base_offset = i64::from_be_bytes(payload[0..8].try_into().ok()?);
    let end_offset = i64::from_be_bytes(payload[8..16].try_into().ok()?);
    (base_offset < end_offset).then_some(JournalRecord::Direct { base_offset, end_offset })
}

async fn read_start<B: IoBackend>(backend: &B, dir: &Path) -> Result<u64> {
    let Some(bytes) = crate::io::read_small_file(backend, &dir.join(START_FILE)).await? else { return Ok(0) };
    if bytes.len() != 12 || crc32c::crc32c(&bytes[..8]) != u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")) {
        tracing::warn!(dir = %dir.display(), "journal start record unreadable: reading every entry");
        return Ok(0);
    }
    Ok(u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")))
}

impl<B: IoBackend> Journal<B> {
    /// A journal in `dir` that logs can register with; nothing is written and appends wait
    /// until `begin`. Between the two, the previous run's entries are read (`read_journal`)
    /// and replayed into the logs as they open.
    pub fn open(backend: B, dir: PathBuf, config: JournalConfig) -> Journal<B> {
        assert!(config.files >= 2, "a journal ring needs two files");
        let st = JState {
            slots: Vec::new(),
            res_slot: 0,
            res_pos: 0,
            next_seq: 0,
            queue: Vec::new(),
            queue_bytes: 0,
            clients: HashMap::new(),
            next_log: 1, // 0 is no log (`Log` before it registers)
            wr_slot: 0,
            wr_pos: 0,
            tail: Vec::new(),
            failed: None,
            closing: false,
            started: false,
            last_round: Instant::now(),
            unsynced: HashMap::new(),
            unsynced_files: Vec::new(),
            unsynced_closed: Vec::new(),
            last_sync: Instant::now(),
            sync_wanted: false,
        };
        let inner = Rc::new(JournalInner {
            backend,
            segment_writes: glommio::sync::Semaphore::new(SEGMENT_WRITES_CONCURRENT),
            dir,
            config,
            st: RefCell::new(st),
            wake: Event::new(),
            space: Event::new(),
            rounds: Cell::new(0),
            syncs: Cell::new(0),
            bytes_written: Cell::new(0),
        });
        Journal { inner }
    }

    /// Starts a new run above `after_seq` (the largest sequence `read_journal` saw in this
    /// directory): every entry written before is stale from now on, so call this only once the
    /// logs holding those entries have them in synced segment files. Creates the ring files
    /// (zero-filled) on first use.
    pub async fn begin(&self, after_seq: u64) -> Result<()> {
        let inner = &self.inner;
        let (backend, dir, config) = (&inner.backend, &inner.dir, &inner.config);
        backend.create_dir_all(dir).await?;
        let first_seq = after_seq + 1;
        let mut data = Vec::with_capacity(12);
        data.extend_from_slice(&first_seq.to_be_bytes());
        data.extend_from_slice(&crc32c::crc32c(&first_seq.to_be_bytes()).to_be_bytes());
        crate::io::write_small_file(backend, &dir.join(START_FILE), &data).await?;
        let mut slots = Vec::with_capacity(config.files);
        for i in 0..config.files {
            let file = backend.open(&slot_path(dir, i), true).await?;
            prepare_file(&file, config.file_bytes).await?;
            slots.push(Slot { file: Rc::new(file), seq: 0, state: SlotState::Free, closed_on_disk: false, refs: HashMap::new() });
        }
        backend.sync_dir(dir).await?;
        slots[0].state = SlotState::Active;
        slots[0].seq = first_seq;
        {
            let mut st = inner.st.borrow_mut();
            st.slots = slots;
            st.next_seq = first_seq + 1;
            st.started = true;
        }
        glommio::spawn_local(writer_loop(inner.clone())).detach();
        inner.space.notify(usize::MAX);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> &JournalConfig {
        &self.inner.config
    }

    /// Rounds written so far, and bytes (observability and tests).
    pub fn rounds(&self) -> u64 {
        self.inner.rounds.get()
    }

    /// Syncs of written data so far (a round's data is synced with it or by a later sync).
    pub fn syncs(&self) -> u64 {
        self.inner.syncs.get()
    }

    pub fn bytes_written(&self) -> u64 {
        self.inner.bytes_written.get()
    }

    /// A log writes through this journal from now on; its entries carry `generation`. A log
    /// registers again (a new id) after a truncation: its entries from before no longer hold
    /// files back, and their progress no longer reaches it.
    pub(crate) fn register(&self, client: Weak<dyn JournalClient>, generation: u32) -> LogId {
        let mut st = self.inner.st.borrow_mut();
        let id = st.next_log;
        st.next_log += 1;
        st.clients.insert(id, Client { weak: client, generation: generation & GENERATION_MASK });
        id
    }

    /// The log is gone (closed, flushed, or deleted): its entries no longer hold files back.
    pub(crate) fn unregister(&self, id: LogId) {
        self.inner.st.borrow_mut().clients.remove(&id);
        self.inner.free_slots();
    }

    /// Waits until an entry of `payload_len` bytes can be reserved, asking logs to flush when
    /// the ring is full. Err(DiskFull) at once if the space is held by a log that cannot flush
    /// for want of disk space; Err(BatchTooLarge) if it can never fit.
    pub(crate) async fn wait_space(&self, payload_len: usize) -> Result<()> {
        let max = self.inner.config.entry_payload_max();
        if payload_len > max {
            return Err(Error::BatchTooLarge { size: payload_len, max });
        }
        loop {
            let listener = self.inner.space.listen();
            match self.inner.space_verdict(entry_bytes(payload_len)) {
                Space::Now => return Ok(()),
                Space::Failed(e) => return Err(e),
                Space::Wait => listener.await,
            }
        }
    }

    /// Reserves the entry's place and queues it; call right after `wait_space` said there is
    /// room, with no await in between. Returns Err if the journal failed.
    pub(crate) fn submit(&self, log: LogId, key: JournalKey, data: Bytes, end_offset: i64) -> Result<()> {
        self.submit_entry(log, key, KIND_BATCH, data, end_offset)
    }

    /// Records that the log's batches at [base_offset, end_offset) go straight to its segment
    /// files (a Direct entry: no data). Progress reports for it name `base_offset`: the journal
    /// holds nothing of the range. Same rules as `submit` (after `wait_space(DIRECT_PAYLOAD_BYTES)`).
    pub(crate) fn submit_direct(&self, log: LogId, key: JournalKey, base_offset: i64, end_offset: i64) -> Result<()> {
        self.submit_entry(log, key, KIND_DIRECT, encode_direct(base_offset, end_offset), base_offset)
    }

    fn submit_entry(&self, log: LogId, key: JournalKey, kind: u8, data: Bytes, end_offset: i64) -> Result<()> {
        let inner = &self.inner;
        let mut st = inner.st.borrow_mut();
        if let Some(reason) = &st.failed {
            return Err(Error::Poisoned(reason.clone()));
        }
        assert!(st.started, "submit after wait_space, which waits for begin");
        let was_idle = st.queue.is_empty();
        let size = entry_bytes(data.len());
        if st.res_pos + size + entry_bytes(0) > inner.config.file_bytes {
            let next = (st.res_slot + 1) % st.slots.len();
            assert_eq!(st.slots[next].state, SlotState::Free, "wait_space checked the next file is free");
            let (slot, pos) = (st.res_slot, st.res_pos);
            st.queue.push(Pending::Switch { slot, pos });
            st.slots[slot].state = SlotState::Sealed;
            let seq = st.next_seq;
            st.next_seq += 1;
            st.slots[next].state = SlotState::Active;
            st.slots[next].seq = seq;
            st.slots[next].closed_on_disk = false;
            st.slots[next].refs.clear();
            st.res_slot = next;
            st.res_pos = 0;
        }
        let (slot, pos) = (st.res_slot, st.res_pos);
        st.res_pos += size;
        st.slots[slot].refs.insert(log, end_offset);
        st.queue_bytes += size as usize;
        let generation = st.clients.get(&log).map_or(0, |c| c.generation);
        st.queue.push(Pending::Batch { log, key, kind, generation, data, end_offset, slot, pos });
        let wake = was_idle || (st.queue_bytes >= inner.config.round_bytes && st.queue_bytes - (size as usize) < inner.config.round_bytes);
        drop(st);
        // No call into any log from here: the caller holds its log's state. The writer is only
        // woken when it is idle or a round's worth is waiting: during its pacing sleep every
        // wake-up would re-arm a timer (an io_uring timeout and its cancel).
        if wake {
            inner.wake.notify(1);
        }
        Ok(())
    }

    /// Someone waits for this journal's written data to be synced: sync it with the next round,
    /// or at once if nothing is waiting to be written.
    pub(crate) fn want_sync(&self) {
        let mut st = self.inner.st.borrow_mut();
        if st.sync_wanted {
            return;
        }
        st.sync_wanted = true;
        drop(st);
        self.inner.wake.notify(1);
    }

    /// Held by a log while it writes its segment files: at most `SEGMENT_WRITES_CONCURRENT`
    /// per shard, so the device never has much more queued than the journal's next write.
    pub(crate) async fn segment_write_permit(&self) -> Option<glommio::sync::Permit<'_>> {
        self.inner.segment_writes.acquire_permit(1).await.ok()
    }

    /// A log's segment files now hold (synced) everything below its `segment_synced()`.
    pub(crate) fn on_flushed(&self) {
        self.inner.free_slots();
    }

    /// Stops the writer once the queue is written (the logs were closed).
    pub async fn close(&self) {
        self.inner.st.borrow_mut().closing = true;
        self.inner.wake.notify(usize::MAX);
    }
}

enum Space {
    Now,
    Wait,
    Failed(Error),
}

impl<B: IoBackend> JournalInner<B> {
    fn space_verdict(&self, size: u64) -> Space {
        let st = self.st.borrow();
        if let Some(reason) = &st.failed {
            return Space::Failed(Error::Poisoned(reason.clone()));
        }
        if st.closing {
            return Space::Failed(Error::Closed);
        }
        if !st.started {
            return Space::Wait;
        }
        if st.res_pos + size + entry_bytes(0) <= self.config.file_bytes {
            return Space::Now;
        }
        let next = (st.res_slot + 1) % st.slots.len();
        drop(st);
        self.free_slots();
        let st = self.st.borrow();
        if st.slots[next].state == SlotState::Free {
            return Space::Now;
        }
        let blocked = self.holders(&st, next).iter().any(|(c, _)| c.flush_blocked());
        drop(st);
        if blocked {
            return Space::Failed(Error::DiskFull);
        }
        self.ask_flushes(next);
        Space::Wait
    }

    /// Logs whose entries keep `slot` in use, with the end offset they must flush to.
    fn holders(&self, st: &JState<B::File>, slot: usize) -> Vec<(Rc<dyn JournalClient>, i64)> {
        st.slots[slot]
            .refs
            .iter()
            .filter_map(|(id, end)| Some((st.clients.get(id)?.weak.upgrade()?, *end)))
            .filter(|(c, end)| c.segment_synced() < *end)
            .collect()
    }

    fn ask_flushes(&self, slot: usize) {
        let holders = self.holders(&self.st.borrow(), slot);
        for (client, end) in holders {
            client.request_flush(end);
        }
    }

    /// Once the active file is half full, the logs holding the next file are asked to flush,
    /// so that it is free when needed and appends do not stall.
    fn ask_flushes_ahead(&self) {
        let next = {
            let st = self.st.borrow();
            if st.res_pos < self.config.file_bytes / 2 {
                return;
            }
            let next = (st.res_slot + 1) % st.slots.len();
            if st.slots[next].state != SlotState::Sealed {
                return;
            }
            next
        };
        self.ask_flushes(next);
    }

    /// Frees sealed files whose entries are all in synced segment files (or whose logs are gone).
    fn free_slots(&self) {
        let mut freed = false;
        let mut st = self.st.borrow_mut();
        for i in 0..st.slots.len() {
            // Sealed is not enough: the writer may still have entries for it in hand.
            if st.slots[i].state != SlotState::Sealed || !st.slots[i].closed_on_disk {
                continue;
            }
            if self.holders(&st, i).is_empty() {
                st.slots[i].state = SlotState::Free;
                st.slots[i].refs.clear();
                freed = true;
            }
        }
        drop(st);
        if freed {
            self.space.notify(usize::MAX);
        }
    }

    fn fail(&self, e: &Error) {
        let reason = e.to_string();
        tracing::error!(dir = %self.dir.display(), error = %reason, "journal write failed: nothing more is acknowledged on this shard");
        let clients: Vec<_> = {
            let mut st = self.st.borrow_mut();
            st.failed = Some(reason.clone());
            st.queue.clear();
            st.clients.values().filter_map(|c| c.weak.upgrade()).collect()
        };
        for c in clients {
            c.journal_failed(&reason);
        }
        self.space.notify(usize::MAX);
    }
}

/// Zero-fills a ring file once (later writes overwrite written blocks: no unwritten-extent
/// conversion, nothing but data for fdatasync to flush).
async fn prepare_file<F: IoFile>(file: &F, bytes: u64) -> Result<()> {
    if file.size().await? >= bytes {
        return Ok(());
    }
    file.allocate(bytes).await?;
    let chunk = JOURNAL_ZERO_FILL_BYTES.min(bytes as usize);
    let mut pos = 0;
    while pos < bytes {
        let mut buf = file.alloc_buf(chunk);
        buf.as_mut_slice().fill(0);
        let n = file.write_at(buf, pos).await?;
        if n != chunk {
            return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::WriteZero, "short write zero-filling journal")));
        }
        pos += chunk as u64;
    }
    file.sync_data().await?;
    Ok(())
}

/// One run of the writer: pace, take the queue, write it where it was reserved, sync, tell the
/// logs.
async fn writer_loop<B: IoBackend>(inner: Rc<JournalInner<B>>) {
    loop {
        let listener = inner.wake.listen();
        let (empty, closing, failed, bytes, since, due) = {
            let st = inner.st.borrow();
            (st.queue.is_empty(), st.closing, st.failed.is_some(), st.queue_bytes, st.last_round.elapsed(), sync_due(&inner.config, &st))
        };
        if failed {
            return;
        }
        if empty {
            let result = match due {
                SyncDue::Now => sync_written(&inner).await,
                SyncDue::In(wait) => {
                    let sleep = std::pin::pin!(glommio::timer::sleep(wait));
                    let _ = select(listener, sleep).await;
                    continue;
                }
                SyncDue::Nothing if closing => return,
                SyncDue::Nothing => {
                    listener.await;
                    continue;
                }
            };
            if let Err(e) = result {
                inner.fail(&e);
                return;
            }
            continue;
        }
        if bytes < inner.config.round_bytes && since < inner.config.round_interval {
            // Pace small rounds: more appends join this one, and device writes per second do
            // not grow with the number of partitions writing.
            let sleep = std::pin::pin!(glommio::timer::sleep(inner.config.round_interval - since));
            let _ = select(listener, sleep).await;
            continue;
        }
        let work = {
            let mut st = inner.st.borrow_mut();
            st.last_round = Instant::now();
            st.queue_bytes = 0;
            std::mem::take(&mut st.queue)
        };
        let mut result = round(&inner, work).await;
        let due = matches!(sync_due(&inner.config, &inner.st.borrow()), SyncDue::Now);
        if result.is_ok() && due {
            result = sync_written(&inner).await;
        }
        if let Err(e) = result {
            inner.fail(&e);
            return;
        }
        inner.ask_flushes_ahead();
    }
}

/// When the written data must be synced.
enum SyncDue {
    Nothing,
    Now,
    In(Duration),
}

fn sync_due<F>(config: &JournalConfig, st: &JState<F>) -> SyncDue {
    if st.unsynced_files.is_empty() {
        return SyncDue::Nothing;
    }
    let since = st.last_sync.elapsed();
    if st.sync_wanted || st.closing || !st.unsynced_closed.is_empty() || since >= config.sync_interval {
        return SyncDue::Now;
    }
    SyncDue::In(config.sync_interval - since)
}

/// fdatasync of every file written since the last sync; then everything written before it
/// started is synced. A request for a sync made while it runs asks for the next one.
async fn sync_written<B: IoBackend>(inner: &Rc<JournalInner<B>>) -> Result<()> {
    let (progress, slots, closed, files) = {
        let mut st = inner.st.borrow_mut();
        st.sync_wanted = false;
        st.last_sync = Instant::now();
        let slots = std::mem::take(&mut st.unsynced_files);
        let files: Vec<Rc<B::File>> = slots.iter().map(|&slot| st.slots[slot].file.clone()).collect();
        (std::mem::take(&mut st.unsynced), slots, std::mem::take(&mut st.unsynced_closed), files)
    };
    debug_assert_eq!(slots.len(), files.len());
    // (O_DSYNC writes were measured instead: on this virtio disk a 16 KiB O_DSYNC write takes
    // ~3 ms p50 against ~25 us write + ~30 us fdatasync.)
    for file in &files {
        file.sync_data().await?;
    }
    inner.syncs.set(inner.syncs.get() + 1);
    crate::stats::record_journal_sync();
    notify(inner, &progress, true);
    {
        let mut st = inner.st.borrow_mut();
        for slot in closed {
            st.slots[slot].closed_on_disk = true;
        }
    }
    inner.free_slots();
    Ok(())
}

/// One file's part of a round: its block-aligned start and the bytes from there (the previous
/// round's partial tail block, then the new entries).
struct FilePlan {
    slot: usize,
    start: u64,
    len: usize,
}

async fn round<B: IoBackend>(inner: &Rc<JournalInner<B>>, work: Vec<Pending>) -> Result<()> {
    let mut closed = Vec::new();
    let mut progress: HashMap<LogId, i64> = HashMap::new();
    let mut writes = Vec::new();
    {
        let mut st = inner.st.borrow_mut();
        let align = st.slots[0].file.alignment();
        let plans = plan_files(&st, &work, align);
        let mut items = work.into_iter();
        let tail = std::mem::take(&mut st.tail);
        for (n, plan) in plans.iter().enumerate() {
            let file = st.slots[plan.slot].file.clone();
            let padded = align_up(plan.len as u64, align) as usize;
            // Whole blocks per piece: the tail block then lies in one piece.
            let piece = (align_down(inner.config.write_bytes_max.min(file.max_write_bytes()) as u64, align).max(align)) as usize;
            let mut pieces = Pieces::new(&*file, padded, piece);
            if n == 0 {
                pieces.put(&tail);
            }
            let seq = st.slots[plan.slot].seq;
            while pieces.len() < plan.len {
                let item = items.next().expect("the plan covers every entry");
                let mut header = [0u8; ENTRY_HEADER_BYTES];
                match item {
                    Pending::Batch { log, key, kind, generation, data, end_offset, .. } => {
                        encode_header(&mut header, kind, generation, seq, key, &data);
                        pieces.put(&header);
                        pieces.put(&data);
                        let e = progress.entry(log).or_insert(end_offset);
                        *e = (*e).max(end_offset);
                    }
                    Pending::Switch { slot, .. } => {
                        closed.push(slot);
                        encode_header(&mut header, KIND_SWITCH, 0, seq, JournalKey { topic_id: 0, partition: -1 }, &[]);
                        pieces.put(&header);
                    }
                }
            }
            debug_assert_eq!(pieces.len(), plan.len);
            if n + 1 == plans.len() {
                let end = plan.start + plan.len as u64;
                st.wr_slot = plan.slot;
                st.wr_pos = end;
                st.tail = pieces.copy_range((align_down(end, align) - plan.start) as usize, plan.len);
            }
            pieces.pad();
            writes.push((plan.slot, file, plan.start, pieces));
        }
        debug_assert!(items.next().is_none());
    }
    let slots: Vec<usize> = writes.iter().map(|w| w.0).collect();
    let mut total = 0u64;
    for (_, file, start, pieces) in writes {
        total += pieces.write(&*file, start, "journal").await?;
    }
    inner.rounds.set(inner.rounds.get() + 1);
    inner.bytes_written.set(inner.bytes_written.get() + total);
    crate::stats::record_journal_round(total);
    notify(inner, &progress, false);
    let mut st = inner.st.borrow_mut();
    for (log, end) in progress {
        let e = st.unsynced.entry(log).or_insert(end);
        *e = (*e).max(end);
    }
    for slot in slots {
        if !st.unsynced_files.contains(&slot) {
            st.unsynced_files.push(slot);
        }
    }
    st.unsynced_closed.extend(closed);
    Ok(())
}

/// Where each file's part of the round starts and how long it is, in `work`'s order.
fn plan_files<F>(st: &JState<F>, work: &[Pending], align: u64) -> Vec<FilePlan> {
    let mut plans = vec![FilePlan { slot: st.wr_slot, start: align_down(st.wr_pos, align), len: st.tail.len() }];
    for item in work {
        let (slot, pos, len) = match item {
            Pending::Batch { slot, pos, data, .. } => (*slot, *pos, ENTRY_HEADER_BYTES + data.len()),
            Pending::Switch { slot, pos } => (*slot, *pos, ENTRY_HEADER_BYTES),
        };
        if plans.last().is_some_and(|p| p.slot != slot) {
            plans.push(FilePlan { slot, start: 0, len: 0 });
        }
        let current = plans.last_mut().expect("one plan at least");
        debug_assert_eq!(current.start + current.len as u64, pos, "entries are written where they were reserved");
        current.len += len;
    }
    plans
}

fn notify<B: IoBackend>(inner: &JournalInner<B>, progress: &HashMap<LogId, i64>, synced: bool) {
    let clients: Vec<(Rc<dyn JournalClient>, i64)> = {
        let st = inner.st.borrow();
        progress.iter().filter_map(|(id, end)| Some((st.clients.get(id)?.weak.upgrade()?, *end))).collect()
    };
    for (client, end) in clients {
        client.journal_progress(end, synced);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_direct_payload_round_trips_and_rejects_malformed() {
        assert_eq!(decode_direct(&encode_direct(5, 9)), Some(JournalRecord::Direct { base_offset: 5, end_offset: 9 }));
        assert_eq!(decode_direct(&encode_direct(9, 9)), None, "an empty range is malformed");
        assert_eq!(decode_direct(&encode_direct(5, 9)[..15]), None);
    }

    #[test]
    fn journal_entry_round_trips_and_rejects_damage() {
        let key = JournalKey { topic_id: 7 << 64 | 3, partition: 5 };
        let payload = b"a record batch".to_vec();
        let mut buf = vec![0u8; ENTRY_HEADER_BYTES];
        encode_header(&mut buf, KIND_BATCH, 0x00ab_cdef, 42, key, &payload);
        buf.extend_from_slice(&payload);
        let decoded = decode_entry(&buf).unwrap();
        assert_eq!(decoded, Decoded { kind: KIND_BATCH, generation: 0x00ab_cdef, seq: 42, key, payload: &payload[..] });
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x04;
            assert!(decode_entry(&bad).is_none(), "flipped byte {i} accepted");
        }
        assert!(decode_entry(&buf[..buf.len() - 1]).is_none());
        assert!(decode_entry(&[0u8; 64]).is_none(), "zeros are no entry");
    }

    #[test]
    fn journal_config_capacity_splits_into_files() {
        let c = JournalConfig::with_capacity(128 << 20);
        assert_eq!((c.files, c.file_bytes), (4, 32 << 20));
        let small = JournalConfig::with_capacity(2 << 20);
        assert_eq!(small.files, 2);
        assert!(small.file_bytes >= JOURNAL_FILE_BYTES_MIN);
        assert!(c.entry_payload_max() > MAX_BATCH_BYTES_DEFAULT);
    }
}
