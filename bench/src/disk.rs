//! Raw disk sequential write rate, the storage ceiling: `fio` with direct I/O when installed,
//! else a small O_DIRECT writer (aligned 1 MiB blocks, one fdatasync at the end).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Block written per call; a multiple of any logical block size.
pub const BLOCK_BYTES: usize = 1024 * 1024;
/// Alignment O_DIRECT needs for buffers.
const DIRECT_ALIGN_BYTES: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiskResult {
    /// `fio` or `o_direct`.
    pub method: String,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub block_bytes: usize,
    pub dir: String,
}

/// A zeroed, aligned heap buffer for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Result<Self> {
        let layout = Layout::from_size_align(len, DIRECT_ALIGN_BYTES).map_err(|e| Error::Parse {
            what: "layout".into(),
            detail: e.to_string(),
        })?;
        // SAFETY: layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Ok(AlignedBuf { ptr, layout })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes and uniquely owned.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// Writes up to `bytes_max` or for up to `time_max` with O_DIRECT into a temp file in `dir`.
pub fn o_direct_write(dir: &Path, bytes_max: u64, time_max: Duration) -> Result<DiskResult> {
    let file = tempfile::Builder::new()
        .prefix("riptide-bench-disk")
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("temp file in {}", dir.display()), e))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(file.path())
        .map_err(|e| Error::io("open O_DIRECT", e))?;
    let mut buf = AlignedBuf::new(BLOCK_BYTES)?;
    for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31);
    }
    let started = Instant::now();
    let mut written = 0_u64;
    while written < bytes_max && started.elapsed() < time_max {
        f.write_all(buf.as_mut_slice()).map_err(|e| Error::io("O_DIRECT write", e))?;
        written += BLOCK_BYTES as u64;
    }
    f.sync_data().map_err(|e| Error::io("fdatasync", e))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(DiskResult {
        method: "o_direct".into(),
        bytes: written,
        seconds,
        mb_per_s: written as f64 / seconds / 1e6,
        block_bytes: BLOCK_BYTES,
        dir: dir.display().to_string(),
    })
}

/// Runs fio (sequential 1 MiB direct writes, end fsync) and parses its JSON output.
pub fn fio_write(dir: &Path, bytes_max: u64, time_max: Duration) -> Result<DiskResult> {
    let path = dir.join("riptide-bench-fio.dat");
    let output = Command::new("fio")
        .args([
            "--name=seqwrite",
            "--rw=write",
            "--bs=1M",
            "--direct=1",
            "--ioengine=psync",
            "--end_fsync=1",
            "--output-format=json",
        ])
        .arg(format!("--size={bytes_max}"))
        .arg(format!("--runtime={}", time_max.as_secs().max(1)))
        .arg(format!("--filename={}", path.display()))
        .output()
        .map_err(|e| Error::io("run fio", e));
    let _ = std::fs::remove_file(&path);
    let output = output?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let write = &json["jobs"][0]["write"];
    let bw = write["bw_bytes"].as_f64().unwrap_or(0.0);
    let bytes = write["io_bytes"].as_u64().unwrap_or(0);
    if bw <= 0.0 {
        return Err(Error::Parse {
            what: "fio output".into(),
            detail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(DiskResult {
        method: "fio".into(),
        bytes,
        seconds: bytes as f64 / bw,
        mb_per_s: bw / 1e6,
        block_bytes: BLOCK_BYTES,
        dir: dir.display().to_string(),
    })
}

/// fio when it is installed and works, else the O_DIRECT writer.
pub fn measure(dir: &Path, bytes_max: u64, time_max: Duration) -> Result<DiskResult> {
    let have_fio = Command::new("fio").arg("--version").output().is_ok_and(|o| o.status.success());
    if have_fio {
        if let Ok(r) = fio_write(dir, bytes_max, time_max) {
            return Ok(r);
        }
    }
    o_direct_write(dir, bytes_max, time_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_o_direct_writer_reports_rate() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let r = o_direct_write(dir.path(), 4 * BLOCK_BYTES as u64, Duration::from_secs(5)).unwrap();
        assert_eq!(r.bytes, 4 * BLOCK_BYTES as u64);
        assert!(r.mb_per_s > 0.0);
    }
}
