//! glommio O_DIRECT backend.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::sync_group::{SyncGroup, SyncMode, Syncer};
use super::{IoBackend, IoBuf, IoFile};
use std::rc::Rc;
use crate::constants::{DMA_PROBE_FILE, DMA_PROBE_FILE_BYTES, WRITE_CHUNK_BYTES_MAX};

/// The alignment `DmaIoFile::alignment` never goes below.
const DMA_ALIGNMENT_BYTES: usize = 4096;

thread_local! {
    /// Devices whose glommio iopoll probe has been primed on this executor thread.
    static PROBED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
    /// How writes are made durable on each device (decided once per device and thread).
    static SYNC_MODES: RefCell<HashMap<u64, SyncMode>> = RefCell::new(HashMap::new());
}

/// Runs a blocking filesystem call on glommio's blocking pool, so directory operations
/// (removing a topic's directories, renames, directory fsyncs) never stall the shard's reactor
/// and every partition it serves.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    glommio::executor().spawn_blocking(f).await
}

/// glommio DMA (O_DIRECT, io_uring) backend. Cheap to create and clone.
///
/// Writes bypass the page cache. `sync` joins the next shard-wide syncfs round on ext4 and XFS
/// (Linux 5.8+), else it is the file's own fdatasync (`SyncMode`, decided per device with a log
/// line). Before the first DMA open on a device (per executor thread) it opens a non-empty
/// marker file, because glommio 0.9's iopoll probe misfires when the first DMA file it sees on a
/// virtio disk is empty.
#[derive(Clone, Default)]
pub struct DmaBackend {
    /// Tests: every file of this backend syncs through this group (injected faults) or in
    /// this mode, instead of the device's.
    forced: Option<Forced>,
    /// Largest single DMA write (`riptide tune`'s `storage.write.bytes`); None = the default,
    /// `WRITE_CHUNK_BYTES_MAX`.
    write_bytes: Option<usize>,
}

#[derive(Clone)]
enum Forced {
    Group(Rc<SyncGroup>),
    Mode(SyncMode),
}

impl std::fmt::Debug for DmaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaBackend").field("forced", &self.forced.is_some()).finish()
    }
}

impl DmaBackend {
    pub fn new() -> Self {
        DmaBackend { forced: None, write_bytes: None }
    }

    /// A backend whose syncs all run through one group with `syncer` (fault injection).
    pub fn with_syncer(syncer: Syncer) -> Self {
        DmaBackend { forced: Some(Forced::Group(Rc::new(SyncGroup::with_syncer(syncer)))), write_bytes: None }
    }

    /// A backend that uses `mode` whatever the filesystem.
    pub fn with_sync_mode(mode: SyncMode) -> Self {
        DmaBackend { forced: Some(Forced::Mode(mode)), write_bytes: None }
    }

    /// The same backend, cutting segment writes into pieces of at most `bytes` (rounded down
    /// to a multiple of 4 KiB, at least 4 KiB) instead of `WRITE_CHUNK_BYTES_MAX`.
    pub fn with_max_write_bytes(mut self, bytes: usize) -> Self {
        self.write_bytes = Some((bytes / DMA_ALIGNMENT_BYTES).max(1) * DMA_ALIGNMENT_BYTES);
        self
    }

    /// Largest single DMA write of this backend's files.
    pub fn max_write_bytes(&self) -> usize {
        self.write_bytes.unwrap_or(WRITE_CHUNK_BYTES_MAX)
    }

    async fn prime_iopoll_probe(&self, dir: &Path, dev: u64) -> io::Result<()> {
        if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
            return Ok(());
        }
        let probe_dir = dir.parent().filter(|p| is_writable_dir(p)).unwrap_or(dir);
        let marker = probe_dir.join(DMA_PROBE_FILE);
        let path = marker.clone();
        blocking(move || {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len < DMA_PROBE_FILE_BYTES as u64 {
                std::fs::write(&path, vec![b'r'; DMA_PROBE_FILE_BYTES])?;
            }
            Ok(())
        })
        .await?;
        let file = DmaFile::open(&marker).await?;
        file.close().await?;
        PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
        Ok(())
    }

    /// How a file in `dir` (on device `dev`) is made durable.
    async fn durability_for(&self, dir: &Path, dev: u64) -> io::Result<FileSync> {
        let mode = match &self.forced {
            Some(Forced::Group(g)) => return Ok(FileSync::Group(g.clone())),
            Some(Forced::Mode(m)) => *m,
            None => match SYNC_MODES.with(|m| m.borrow().get(&dev).copied()) {
                Some(m) => m,
                None => {
                    let owned = dir.to_path_buf();
                    let (mode, why) = blocking(move || SyncMode::probe(&owned)).await?;
                    match mode {
                        SyncMode::SharedSyncfs => tracing::info!(dir = %dir.display(), "durability: shared syncfs rounds ({why})"),
                        SyncMode::PerFileFdatasync => tracing::warn!(dir = %dir.display(), "durability: per-file fdatasync, slower with many partitions ({why})"),
                    }
                    SYNC_MODES.with(|m| m.borrow_mut().insert(dev, mode));
                    mode
                }
            },
        };
        Ok(match mode {
            SyncMode::SharedSyncfs => {
                let owned = dir.to_path_buf();
                // Opens a descriptor of the directory once per device and thread.
                let group = SyncGroup::for_device(dev, &owned)?;
                FileSync::Group(group)
            }
            SyncMode::PerFileFdatasync => FileSync::PerFile,
        })
    }
}

/// How one file's `sync` is done.
enum FileSync {
    Group(Rc<SyncGroup>),
    PerFile,
}

fn is_writable_dir(p: &Path) -> bool {
    std::fs::metadata(p).map(|m| m.is_dir() && !m.permissions().readonly()).unwrap_or(false)
        && p.as_os_str().len() > 1
}

/// An aligned glommio DMA buffer.
pub struct DmaIoBuf(DmaBuffer);

impl IoBuf for DmaIoBuf {
    fn as_slice(&self) -> &[u8] {
        self.0.as_bytes()
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
}

/// A glommio `DmaFile` opened read + write. `sync` goes through the device's `SyncGroup` (or
/// is the file's fdatasync).
pub struct DmaIoFile {
    file: DmaFile,
    sync: FileSync,
    /// The group's failure count when the first write not yet synced completed.
    unsynced_mark: Cell<Option<u64>>,
    /// Largest single write the segment appender issues on this file (the backend's setting).
    max_write_bytes: usize,
}

impl DmaIoFile {
    /// A write (or size change) completed: remember the group's failure count from then.
    fn note_change(&self) {
        if let FileSync::Group(g) = &self.sync {
            if self.unsynced_mark.get().is_none() {
                self.unsynced_mark.set(Some(g.failure_mark()));
            }
        }
    }
}

impl std::fmt::Debug for DmaIoFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaIoFile").field("file", &self.file).finish()
    }
}

impl IoFile for DmaIoFile {
    type Buf = DmaIoBuf;

    fn alloc_buf(&self, len: usize) -> DmaIoBuf {
        DmaIoBuf(self.file.alloc_dma_buffer(len))
    }

    fn alignment(&self) -> u64 {
        self.file.alignment().max(DMA_ALIGNMENT_BYTES as u64)
    }

    async fn write_at(&self, buf: DmaIoBuf, pos: u64) -> io::Result<usize> {
        debug_assert_eq!(pos % self.alignment(), 0);
        let (len, started) = (buf.0.len() as u64, std::time::Instant::now());
        let written = self.file.write_at(buf.0, pos).await;
        crate::stats::record_write(len, started.elapsed());
        self.note_change();
        Ok(written?)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let res = self.file.read_at(pos, len).await?;
        crate::stats::record_read(res.len() as u64);
        Ok(Bytes::copy_from_slice(&res))
    }

    fn max_write_bytes(&self) -> usize {
        self.max_write_bytes
    }

    /// Durable once a shard-wide syncfs round that started after this call completes, and no
    /// round failed since this file's first unsynced write (or: the file's fdatasync).
    async fn sync(&self) -> io::Result<()> {
        match &self.sync {
            FileSync::Group(g) => {
                let mark = self.unsynced_mark.take().unwrap_or_else(|| g.failure_mark());
                let result = g.sync(mark).await;
                if result.is_err() {
                    self.unsynced_mark.set(Some(mark));
                }
                result
            }
            FileSync::PerFile => {
                let started = std::time::Instant::now();
                let result = self.file.fdatasync().await;
                crate::stats::record_sync(started.elapsed());
                Ok(result?)
            }
        }
    }

    /// fdatasync of this file alone (the journal's rounds); a test's injected group stands in
    /// for it too.
    async fn sync_data(&self) -> io::Result<()> {
        match &self.sync {
            FileSync::Group(g) if g.is_injected() => self.sync().await,
            _ => {
                let started = std::time::Instant::now();
                let result = self.file.fdatasync().await;
                crate::stats::record_sync(started.elapsed());
                Ok(result?)
            }
        }
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.file.file_size().await?)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let result = self.file.truncate(len).await;
        self.note_change();
        Ok(result?)
    }

    /// fallocate(mode 0): unwritten extents, file size grows to `len`.
    async fn allocate(&self, len: u64) -> io::Result<()> {
        let result = self.file.pre_allocate(len, false).await;
        self.note_change();
        Ok(result?)
    }
}

impl IoBackend for DmaBackend {
    type File = DmaIoFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<DmaIoFile> {
        let dir: PathBuf = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let stat_dir = dir.clone();
        let dev = blocking(move || Ok(std::fs::metadata(&stat_dir)?.dev())).await?;
        self.prime_iopoll_probe(&dir, dev).await?;
        let file = OpenOptions::new().read(true).write(true).create(create).dma_open(path).await?;
        let sync = self.durability_for(&dir, dev).await?;
        Ok(DmaIoFile { file, sync, unsynced_mark: Cell::new(None), max_write_bytes: self.max_write_bytes() })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || std::fs::remove_file(path)).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        blocking(move || std::fs::rename(from, to)).await
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = dir.to_path_buf();
        blocking(move || std::fs::create_dir_all(dir)).await
    }

    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = dir.to_path_buf();
        blocking(move || {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                if let Ok(name) = entry?.file_name().into_string() {
                    names.push(name);
                }
            }
            Ok(names)
        })
        .await
    }

    async fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = dir.to_path_buf();
        blocking(move || std::fs::remove_dir_all(dir)).await
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = dir.to_path_buf();
        blocking(move || std::fs::File::open(dir)?.sync_all()).await
    }
}
