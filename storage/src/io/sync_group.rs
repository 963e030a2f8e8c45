//! Shard-wide sync coalescing for the DMA backend.
//!
//! With one fdatasync per partition per write round, syncs scale with the partition count: 100
//! partitions on one shard meant 100 fdatasyncs per round and produce acks of ~270 ms at only
//! 10 MB/s. A `SyncGroup` (one per executor thread and device) turns every `sync` issued while a
//! round is running into one `syncfs` for the next round. syncfs makes durable everything written
//! on the filesystem before it starts: O_DIRECT data already sent to the device, plus metadata
//! (file sizes, extents), plus the device cache flush. It reports writeback errors of the whole
//! filesystem (Linux 5.8+), so it is only used where that holds (`SyncMode::for_filesystem`).
//!
//! Rules:
//! - Ticket: a caller's writes completed before it took its ticket, so a round that *starts*
//!   after the ticket covers it; rounds already running do not.
//! - Failure mark: a failed round may have lost any write that completed before it started,
//!   even one whose ticket belongs to a later round (the write completed, the round started
//!   and failed, then the caller took its ticket: the next round succeeds, having nothing left
//!   to write). So a caller passes the group's failure count as it was when its first unsynced
//!   write completed (`failure_mark`), and its sync succeeds only if no round failed since.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use event_listener::Event;

use crate::constants::SYNC_GROUP_GATHER_US;

thread_local! {
    static GROUPS: RefCell<HashMap<u64, Rc<SyncGroup>>> = RefCell::new(HashMap::new());
}

/// How the DMA backend makes writes durable on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// One shared `syncfs` per round for every file of the shard on that filesystem.
    SharedSyncfs,
    /// `fdatasync` of each file (filesystems or kernels whose syncfs we do not rely on).
    PerFileFdatasync,
}

/// ext4 and XFS superblock magic numbers (statfs f_type).
pub const EXT4_SUPER_MAGIC: i64 = 0xEF53;
pub const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
/// First kernel whose syncfs reports writeback errors of the filesystem (errseq per
/// superblock, commit 735e4ae5ba28, Linux 5.8).
pub const SYNCFS_ERRORS_KERNEL_MIN: (u32, u32) = (5, 8);

impl SyncMode {
    /// The mode for a filesystem of type `fs_magic` under kernel `release` (`uname -r`), with
    /// the reason, for the log line. Only ext4 and XFS on 5.8+ get shared syncfs rounds: there
    /// O_DIRECT writes into allocated space need no page-cache writeback, and syncfs reports
    /// the filesystem's writeback errors and flushes the device cache.
    pub fn for_filesystem(fs_magic: i64, release: &str) -> (SyncMode, String) {
        let fs = match fs_magic {
            EXT4_SUPER_MAGIC => "ext4",
            XFS_SUPER_MAGIC => "xfs",
            _ => return (SyncMode::PerFileFdatasync, format!("filesystem type {fs_magic:#x} is not ext4 or xfs")),
        };
        match parse_release(release) {
            Some(v) if v >= SYNCFS_ERRORS_KERNEL_MIN => (SyncMode::SharedSyncfs, format!("{fs} on Linux {release}")),
            _ => (
                SyncMode::PerFileFdatasync,
                format!("kernel {release} is older than {}.{}, whose syncfs reports writeback errors", SYNCFS_ERRORS_KERNEL_MIN.0, SYNCFS_ERRORS_KERNEL_MIN.1),
            ),
        }
    }

    /// The mode for the filesystem holding `dir` on this kernel.
    pub fn probe(dir: &Path) -> io::Result<(SyncMode, String)> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: statfs writes into the zeroed struct we own; `c` is a valid C string.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: uname fills the zeroed struct we own.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut uts) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: uname NUL-terminates `release`.
        let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy().into_owned();
        Ok(SyncMode::for_filesystem(st.f_type as i64, &release))
    }
}

/// "6.18.44-fc-v669" -> (6, 18).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// What a round runs: the real syncfs, or a test's stand-in (which may block or fail).
#[derive(Clone)]
pub enum Syncer {
    Syncfs(Arc<OwnedFd>),
    Injected(Arc<dyn Fn() -> io::Result<()> + Send + Sync>),
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Syncer::Syncfs(fd) => write!(f, "Syncfs({})", fd.as_raw_fd()),
            Syncer::Injected(_) => f.write_str("Injected"),
        }
    }
}

impl Syncer {
    fn run(&self) -> io::Result<()> {
        match self {
            Syncer::Syncfs(fd) => {
                // SAFETY: syncfs only reads the descriptor, which the Arc keeps open.
                if unsafe { libc::syncfs(fd.as_raw_fd()) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
            }
            Syncer::Injected(f) => f(),
        }
    }
}

#[derive(Default)]
struct SyncState {
    /// Tickets handed out so far.
    requested: u64,
    /// Every ticket <= this one is covered by a finished round.
    completed: u64,
    running: bool,
    /// Tickets (from, to] of the last failed round and its error.
    failure: Option<(u64, u64, String)>,
    /// Rounds that failed so far (see the module comment: failure marks).
    failures: u64,
}

pub struct SyncGroup {
    syncer: Syncer,
    state: RefCell<SyncState>,
    done: Event,
    rounds: Cell<u64>,
}

impl SyncGroup {
    /// The group of `dev` on this thread, created with `dir` (a directory on that device).
    pub fn for_device(dev: u64, dir: &Path) -> io::Result<Rc<SyncGroup>> {
        if let Some(g) = GROUPS.with(|g| g.borrow().get(&dev).cloned()) {
            return Ok(g);
        }
        let fd: OwnedFd = std::fs::File::open(dir)?.into();
        let group = Rc::new(SyncGroup::with_syncer(Syncer::Syncfs(Arc::new(fd))));
        GROUPS.with(|g| g.borrow_mut().insert(dev, group.clone()));
        Ok(group)
    }

    /// A group whose rounds run `syncer` (tests inject failures and delays this way).
    pub fn with_syncer(syncer: Syncer) -> SyncGroup {
        SyncGroup { syncer, state: RefCell::default(), done: Event::new(), rounds: Cell::new(0) }
    }

    /// Whether rounds run a test's stand-in instead of syncfs.
    pub fn is_injected(&self) -> bool {
        matches!(self.syncer, Syncer::Injected(_))
    }

    /// syncfs rounds run so far (observability and tests).
    pub fn rounds(&self) -> u64 {
        self.rounds.get()
    }

    /// Failed rounds so far: take it when a write completes, pass it to `sync`.
    pub fn failure_mark(&self) -> u64 {
        self.state.borrow().failures
    }

    /// Resolves once a round that started after this call has finished. Err if that round
    /// failed, or if any round failed after `mark` was taken (the caller's writes, completed
    /// then, may be lost).
    pub async fn sync(&self, mark: u64) -> io::Result<()> {
        let ticket = {
            let mut st = self.state.borrow_mut();
            st.requested += 1;
            st.requested
        };
        loop {
            let listener = self.done.listen();
            let lead = {
                let mut st = self.state.borrow_mut();
                if st.completed >= ticket {
                    return outcome(&st, ticket, mark);
                }
                if st.running {
                    None
                } else {
                    st.running = true;
                    Some(st.completed)
                }
            };
            match lead {
                Some(from) => self.round(from).await,
                None => listener.await,
            }
        }
    }

    /// One round covering tickets from `from` (exclusive) to those asked for by the time it
    /// starts, after the gather window.
    async fn round(&self, from: u64) {
        let guard = RoundGuard { group: self };
        glommio::timer::sleep(std::time::Duration::from_micros(SYNC_GROUP_GATHER_US)).await;
        let to = self.state.borrow().requested;
        let syncer = self.syncer.clone();
        let started = std::time::Instant::now();
        // syncfs blocks: run it off the executor thread.
        let result = glommio::executor().spawn_blocking(move || syncer.run()).await;
        crate::stats::record_sync(started.elapsed());
        std::mem::forget(guard);
        self.rounds.set(self.rounds.get() + 1);
        let mut st = self.state.borrow_mut();
        st.running = false;
        st.completed = to;
        if let Err(e) = result {
            tracing::error!(error = %e, "syncfs failed: writes since the last good round are not durable");
            st.failure = Some((from, to, e.to_string()));
            st.failures += 1;
        }
        drop(st);
        self.done.notify(usize::MAX);
    }
}

fn outcome(st: &SyncState, ticket: u64, mark: u64) -> io::Result<()> {
    match &st.failure {
        Some((from, to, msg)) if *from < ticket && ticket <= *to => Err(io::Error::other(format!("syncfs: {msg}"))),
        Some((_, _, msg)) if st.failures != mark => {
            Err(io::Error::other(format!("syncfs failed after these writes completed: {msg}")))
        }
        _ => Ok(()),
    }
}

/// If the leading task is dropped mid-round, let another waiter lead instead of hanging.
struct RoundGuard<'a> {
    group: &'a SyncGroup,
}

impl Drop for RoundGuard<'_> {
    fn drop(&mut self) {
        self.group.state.borrow_mut().running = false;
        self.group.done.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_group_mode_follows_filesystem_and_kernel() {
        assert_eq!(SyncMode::for_filesystem(EXT4_SUPER_MAGIC, "6.18.44-fc-v669").0, SyncMode::SharedSyncfs);
        assert_eq!(SyncMode::for_filesystem(XFS_SUPER_MAGIC, "5.8.0").0, SyncMode::SharedSyncfs);
        assert_eq!(SyncMode::for_filesystem(EXT4_SUPER_MAGIC, "5.4.0-150-generic").0, SyncMode::PerFileFdatasync);
        let btrfs = 0x9123_683E;
        let (mode, why) = SyncMode::for_filesystem(btrfs, "6.1.0");
        assert_eq!(mode, SyncMode::PerFileFdatasync);
        assert!(why.contains("0x9123683e"), "{why}");
        assert_eq!(SyncMode::for_filesystem(EXT4_SUPER_MAGIC, "garbage").0, SyncMode::PerFileFdatasync);
    }
}
