//! In-memory filesystem with fault injection, for tests.
//!
//! Every file keeps two images: `data` (what reads see: written, maybe not durable) and `synced`
//! (what survives [`FaultyBackend::crash`]). `sync` copies `data` into `synced`. Files whose
//! existence was never made durable (no file sync, no directory sync) vanish on crash.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::{IoBackend, IoBuf, IoFile};
use crate::constants::FAULTY_ALIGNMENT_BYTES;

/// Faults to inject. Counters are 1-based over all files of the backend (the Nth call fails).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Fail the Nth `write_at` with EIO (nothing written).
    pub fail_write_at: Option<u64>,
    /// Fail the Nth `sync` with EIO (nothing made durable).
    pub fail_sync_at: Option<u64>,
    /// The Nth `write_at` writes only the given number of bytes and reports that (short write).
    pub short_write_at: Option<(u64, usize)>,
    /// The Nth `write_at` persists only the given number of bytes, even into the durable image
    /// (power loss mid-write), then fails with EIO.
    pub torn_write_at: Option<(u64, usize)>,
    /// The disk is full (until the faults change): file creation, allocation and writes that
    /// would grow a file fail with ENOSPC; writes into space a file already has succeed, as on
    /// ext4 (the journal's ring files are written in place).
    pub disk_full: bool,
}

#[derive(Debug, Default)]
struct MemFile {
    data: Vec<u8>,
    synced: Vec<u8>,
    durable: bool,
    /// Size reserved by `allocate` (reads as zeros beyond `data`), kept apart from `data` so a
    /// 32 MiB reservation costs no memory; `reserved_synced` is its durable value.
    reserved: u64,
    reserved_synced: u64,
}

impl MemFile {
    fn size(&self) -> u64 {
        (self.data.len() as u64).max(self.reserved)
    }
}

#[derive(Debug, Default)]
struct FsState {
    files: BTreeMap<PathBuf, Rc<RefCell<MemFile>>>,
    dirs: BTreeMap<PathBuf, ()>,
    faults: Faults,
    writes: u64,
    syncs: u64,
}

/// In-memory fault-injecting backend. Clones share the same filesystem.
#[derive(Clone, Debug, Default)]
pub struct FaultyBackend {
    fs: Rc<RefCell<FsState>>,
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected failure: {what}"))
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", p.display()))
}

impl FaultyBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the injected faults (counters keep running).
    pub fn set_faults(&self, faults: Faults) {
        self.fs.borrow_mut().faults = faults;
    }

    /// Number of `write_at` calls so far.
    pub fn write_count(&self) -> u64 {
        self.fs.borrow().writes
    }

    /// Number of `sync` calls so far.
    pub fn sync_count(&self) -> u64 {
        self.fs.borrow().syncs
    }

    /// Simulates power loss: every file reverts to its last synced image; files never made
    /// durable disappear. Faults are cleared.
    pub fn crash(&self) {
        let mut fs = self.fs.borrow_mut();
        fs.files.retain(|_, f| f.borrow().durable);
        for f in fs.files.values() {
            let mut f = f.borrow_mut();
            f.data = f.synced.clone();
            f.reserved = f.reserved_synced;
        }
        fs.faults = Faults::default();
    }

    /// Paths of all files (sorted).
    pub fn files(&self) -> Vec<PathBuf> {
        self.fs.borrow().files.keys().cloned().collect()
    }

    /// Current (volatile) length of a file.
    pub fn file_len(&self, path: &Path) -> Option<u64> {
        self.fs.borrow().files.get(path).map(|f| f.borrow().size())
    }

    /// Current (volatile) contents of a file.
    pub fn file_data(&self, path: &Path) -> Option<Vec<u8>> {
        self.fs.borrow().files.get(path).map(|f| f.borrow().data.clone())
    }

    /// A file's size as `stat` would give it (data or reserved space, whichever is longer).
    pub fn file_size(&self, path: &Path) -> Option<u64> {
        self.fs.borrow().files.get(path).map(|f| f.borrow().size())
    }

    /// Sets a file's length in both images (test damage).
    pub fn truncate_file(&self, path: &Path, len: u64) {
        if let Some(f) = self.fs.borrow().files.get(path) {
            let mut f = f.borrow_mut();
            f.data.resize(len as usize, 0);
            f.synced.resize(len as usize, 0);
            f.reserved = f.reserved.min(len);
            f.reserved_synced = f.reserved_synced.min(len);
        }
    }

    /// Replaces a file's contents in both images (test damage).
    pub fn write_file(&self, path: &Path, data: &[u8]) {
        if let Some(f) = self.fs.borrow().files.get(path) {
            let mut f = f.borrow_mut();
            f.data = data.to_vec();
            f.synced = data.to_vec();
            f.reserved = f.reserved.min(data.len() as u64);
            f.reserved_synced = f.reserved_synced.min(data.len() as u64);
        }
    }

    /// XORs a byte of a file in both images (test damage).
    pub fn corrupt_byte(&self, path: &Path, pos: u64) {
        if let Some(f) = self.fs.borrow().files.get(path) {
            let mut f = f.borrow_mut();
            let pos = pos as usize;
            if pos < f.data.len() {
                f.data[pos] ^= 0xff;
            }
            if pos < f.synced.len() {
                f.synced[pos] ^= 0xff;
            }
        }
    }

    fn check_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if !self.fs.borrow().dirs.contains_key(dir) => Err(not_found(dir)),
            _ => Ok(()),
        }
    }
}

/// A heap buffer used by the faulty backend.
pub struct VecBuf(Vec<u8>);

impl IoBuf for VecBuf {
    fn as_slice(&self) -> &[u8] {
        &self.0
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// A file of the faulty backend.
#[derive(Debug)]
pub struct FaultyFile {
    fs: Rc<RefCell<FsState>>,
    file: Rc<RefCell<MemFile>>,
}

enum WriteFault {
    None,
    Fail,
    Full,
    Short(usize),
    Torn(usize),
}

impl FaultyFile {
    fn next_write_fault(&self) -> WriteFault {
        let mut fs = self.fs.borrow_mut();
        fs.writes += 1;
        let n = fs.writes;
        let f = &fs.faults;
        if f.disk_full {
            WriteFault::Full
        } else if f.fail_write_at == Some(n) {
            WriteFault::Fail
        } else if let Some((_, k)) = f.short_write_at.filter(|(at, _)| *at == n) {
            WriteFault::Short(k)
        } else if let Some((_, k)) = f.torn_write_at.filter(|(at, _)| *at == n) {
            WriteFault::Torn(k)
        } else {
            WriteFault::None
        }
    }
}

fn write_into(image: &mut Vec<u8>, pos: usize, bytes: &[u8]) {
    if image.len() < pos + bytes.len() {
        image.resize(pos + bytes.len(), 0);
    }
    image[pos..pos + bytes.len()].copy_from_slice(bytes);
}

impl IoFile for FaultyFile {
    type Buf = VecBuf;

    fn alloc_buf(&self, len: usize) -> VecBuf {
        VecBuf(vec![0xA5; len])
    }

    fn alignment(&self) -> u64 {
        FAULTY_ALIGNMENT_BYTES
    }

    async fn write_at(&self, buf: VecBuf, pos: u64) -> io::Result<usize> {
        assert_eq!(pos % FAULTY_ALIGNMENT_BYTES, 0, "unaligned write position");
        assert_eq!(buf.0.len() as u64 % FAULTY_ALIGNMENT_BYTES, 0, "unaligned write length");
        let grows = pos + buf.0.len() as u64 > self.file.borrow().size();
        let fault = match self.next_write_fault() {
            WriteFault::Full if !grows => WriteFault::None,
            other => other,
        };
        let mut f = self.file.borrow_mut();
        let pos = pos as usize;
        match fault {
            WriteFault::None => {
                write_into(&mut f.data, pos, &buf.0);
                Ok(buf.0.len())
            }
            WriteFault::Fail => Err(eio("write")),
            WriteFault::Full => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            WriteFault::Short(k) => {
                let k = k.min(buf.0.len());
                write_into(&mut f.data, pos, &buf.0[..k]);
                Ok(k)
            }
            WriteFault::Torn(k) => {
                let k = k.min(buf.0.len());
                write_into(&mut f.data, pos, &buf.0[..k]);
                write_into(&mut f.synced, pos, &buf.0[..k]);
                Err(eio("torn write"))
            }
        }
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let f = self.file.borrow();
        let size = f.size() as usize;
        let start = (pos as usize).min(size);
        let end = (start + len).min(size);
        let mut out = vec![0u8; end - start];
        let have = f.data.len().clamp(start, end);
        out[..have - start].copy_from_slice(&f.data[start..have]);
        Ok(Bytes::from(out))
    }

    async fn sync(&self) -> io::Result<()> {
        {
            let mut fs = self.fs.borrow_mut();
            fs.syncs += 1;
            if fs.faults.fail_sync_at == Some(fs.syncs) {
                return Err(eio("fsync"));
            }
        }
        let mut f = self.file.borrow_mut();
        f.synced = f.data.clone();
        f.reserved_synced = f.reserved;
        f.durable = true;
        Ok(())
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.sync().await
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.file.borrow().size())
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let mut f = self.file.borrow_mut();
        f.data.resize(len as usize, 0);
        f.reserved = f.reserved.min(len);
        Ok(())
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        if self.fs.borrow().faults.disk_full && len > self.file.borrow().size() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let mut f = self.file.borrow_mut();
        f.reserved = f.reserved.max(len);
        Ok(())
    }
}

impl IoBackend for FaultyBackend {
    type File = FaultyFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<FaultyFile> {
        self.check_dir(path)?;
        let mut fs = self.fs.borrow_mut();
        let file = match fs.files.get(path) {
            Some(f) => f.clone(),
            None if create && fs.faults.disk_full => return Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            None if create => {
                let f = Rc::new(RefCell::new(MemFile::default()));
                fs.files.insert(path.to_path_buf(), f.clone());
                f
            }
            None => return Err(not_found(path)),
        };
        Ok(FaultyFile { fs: self.fs.clone(), file })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.fs.borrow_mut().files.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        let f = fs.files.remove(from).ok_or_else(|| not_found(from))?;
        fs.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        for d in dir.ancestors() {
            fs.dirs.insert(d.to_path_buf(), ());
        }
        Ok(())
    }

    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let fs = self.fs.borrow();
        if !fs.dirs.contains_key(dir) {
            return Err(not_found(dir));
        }
        let names = fs
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        Ok(names)
    }

    async fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.files.retain(|p, _| !p.starts_with(dir));
        fs.dirs.retain(|p, _| !p.starts_with(dir));
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let fs = self.fs.borrow();
        for (p, f) in fs.files.iter() {
            if p.parent() == Some(dir) {
                f.borrow_mut().durable = true;
            }
        }
        Ok(())
    }
}
