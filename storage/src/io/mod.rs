//! Small I/O abstraction over owned buffers so the log can run on glommio O_DIRECT files
//! ([`DmaBackend`]) or on an in-memory fault-injecting filesystem ([`FaultyBackend`]).
//!
//! Contract: `write_at` positions and buffer lengths are multiples of [`IoFile::alignment`];
//! reads may be unaligned. Nothing is durable before `sync` returns Ok.

mod dma;
mod faulty;
pub mod sync_group;
mod pieces;

use std::io;
use std::path::Path;

use bytes::Bytes;

pub use dma::{blocking, DmaBackend, DmaIoFile};
pub use sync_group::{SyncGroup, SyncMode, Syncer};
pub(crate) use pieces::Pieces;
pub use faulty::{FaultyBackend, FaultyFile, Faults};

/// An owned, aligned write buffer.
pub trait IoBuf: 'static {
    fn as_slice(&self) -> &[u8];
    fn as_mut_slice(&mut self) -> &mut [u8];
}

/// One open file (read + write).
#[allow(async_fn_in_trait)]
pub trait IoFile: 'static {
    type Buf: IoBuf;
    /// Allocates a buffer of `len` bytes suitable for `write_at`. Contents are unspecified:
    /// callers must fill every byte (including padding).
    fn alloc_buf(&self, len: usize) -> Self::Buf;
    /// Required alignment of write positions and lengths, in bytes.
    fn alignment(&self) -> u64;
    /// Writes the whole buffer at `pos`; returns the bytes written (may be short).
    async fn write_at(&self, buf: Self::Buf, pos: u64) -> io::Result<usize>;
    /// Reads up to `len` bytes at `pos` (fewer at end of file).
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// Makes the file's writes durable (on the DMA backend: the shard-wide sync round).
    async fn sync(&self) -> io::Result<()>;
    /// fdatasync of this file alone (the journal: one file, synced every round).
    async fn sync_data(&self) -> io::Result<()>;
    /// Current file size in bytes.
    async fn size(&self) -> io::Result<u64>;
    /// Sets the file size.
    async fn truncate(&self, len: u64) -> io::Result<()>;
    /// Largest single write the segment appender issues (a multiple of `alignment`); a long
    /// write is cut into pieces of this size, submitted together.
    fn max_write_bytes(&self) -> usize {
        crate::constants::WRITE_CHUNK_BYTES_MAX
    }
    /// Reserves disk blocks for `[0, len)` and grows the file to at least `len` bytes (reading
    /// as zeros), so later writes below `len` neither allocate nor extend the file. Like a size
    /// change, durable only after `sync`.
    async fn allocate(&self, len: u64) -> io::Result<()>;
}

/// A filesystem: opens files and manipulates directories.
#[allow(async_fn_in_trait)]
pub trait IoBackend: Clone + 'static {
    type File: IoFile;
    /// Opens `path` for read + write, creating it if `create`.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;
    async fn remove(&self, path: &Path) -> io::Result<()>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names (not paths) in `dir`.
    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    async fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes directory entries (creations, renames, removals) durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Rounds `v` up to a multiple of `align` (a power of two).
pub(crate) fn align_up(v: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    (v + align - 1) & !(align - 1)
}

/// Rounds `v` down to a multiple of `align` (a power of two).
pub(crate) fn align_down(v: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    v & !(align - 1)
}

/// Writes a small whole file (index, checkpoint): padded aligned write, truncate to the exact
/// length, fdatasync.
pub(crate) async fn write_small_file<B: IoBackend>(backend: &B, path: &Path, data: &[u8]) -> io::Result<()> {
    let file = backend.open(path, true).await?;
    let len = align_up(data.len() as u64, file.alignment()) as usize;
    if len > 0 {
        let mut buf = file.alloc_buf(len);
        let slice = buf.as_mut_slice();
        slice[..data.len()].copy_from_slice(data);
        slice[data.len()..].fill(0);
        let written = file.write_at(buf, 0).await?;
        if written != len {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
    }
    file.truncate(data.len() as u64).await?;
    file.sync().await
}

/// Reads a whole small file; None if it does not exist.
pub(crate) async fn read_small_file<B: IoBackend>(backend: &B, path: &Path) -> io::Result<Option<Bytes>> {
    let file = match backend.open(path, false).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let size = file.size().await?;
    if size == 0 {
        return Ok(Some(Bytes::new()));
    }
    Ok(Some(file.read_at(0, size as usize).await?))
}
