//! glommio O_DIRECT backend.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::sync_group::SyncGroup;
use super::{IoBackend, IoBuf, IoFile};
use std::rc::Rc;
use crate::constants::{DMA_PROBE_FILE, DMA_PROBE_FILE_BYTES};

thread_local! {
    /// Devices whose glommio iopoll probe has been primed on this executor thread.
    static PROBED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// glommio DMA (O_DIRECT, io_uring) backend. Cheap to create and clone.
///
/// Writes bypass the page cache; `sync` joins the next shard-wide syncfs round. Before the first DMA open on a device
/// (per executor thread) it opens a non-empty marker file, because glommio 0.9's iopoll probe
/// misfires when the first DMA file it sees on a virtio disk is empty.
#[derive(Clone, Debug, Default)]
pub struct DmaBackend {}

impl DmaBackend {
    pub fn new() -> Self {
        DmaBackend {}
    }

    async fn prime_iopoll_probe(&self, dir: &Path) -> io::Result<()> {
        let dev = std::fs::metadata(dir)?.dev();
        if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
            return Ok(());
        }
        let probe_dir = dir.parent().filter(|p| is_writable_dir(p)).unwrap_or(dir);
        let marker = probe_dir.join(DMA_PROBE_FILE);
        let len = std::fs::metadata(&marker).map(|m| m.len()).unwrap_or(0);
        if len < DMA_PROBE_FILE_BYTES as u64 {
            std::fs::write(&marker, vec![b'r'; DMA_PROBE_FILE_BYTES])?;
        }
        let file = DmaFile::open(&marker).await?;
        file.close().await?;
        PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
        Ok(())
    }
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

/// A glommio `DmaFile` opened read + write. `sync` goes through the device's `SyncGroup`.
pub struct DmaIoFile {
    file: DmaFile,
    sync_group: Rc<SyncGroup>,
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
        self.file.alignment().max(4096)
    }

    async fn write_at(&self, buf: DmaIoBuf, pos: u64) -> io::Result<usize> {
        debug_assert_eq!(pos % self.alignment(), 0);
        Ok(self.file.write_at(buf.0, pos).await?)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let res = self.file.read_at(pos, len).await?;
        Ok(Bytes::copy_from_slice(&res))
    }

    /// Durable once a shard-wide syncfs round that started after this call completes.
    async fn sync(&self) -> io::Result<()> {
        self.sync_group.sync().await
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.file.file_size().await?)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        Ok(self.file.truncate(len).await?)
    }

    /// fallocate(mode 0): unwritten extents, file size grows to `len`.
    async fn allocate(&self, len: u64) -> io::Result<()> {
        Ok(self.file.pre_allocate(len, false).await?)
    }
}

impl IoBackend for DmaBackend {
    type File = DmaIoFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<DmaIoFile> {
        if let Some(dir) = path.parent() {
            if dir.exists() {
                self.prime_iopoll_probe(dir).await?;
            }
        }
        let file = OpenOptions::new().read(true).write(true).create(create).dma_open(path).await?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dev = std::fs::metadata(dir)?.dev();
        let sync_group = SyncGroup::for_device(dev, dir)?;
        Ok(DmaIoFile { file, sync_group })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    async fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}
