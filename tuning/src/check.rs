//! `riptide check`: one pass / warn / fail line per host setting the broker depends on, each
//! not passing with the command that fixes it. Reading the host (`Readings::probe`) is apart
//! from judging it (`evaluate`, pure, unit-tested), and nothing is changed unless `--apply`
//! (root only) is given: then each change is printed before it is made.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// Free space below which `check` fails.
pub const FREE_DISK_FAIL_BYTES: u64 = 1 << 30;
/// Free share of the filesystem below which `check` warns, in percent.
pub const FREE_DISK_WARN_PERCENT: u64 = 10;
/// Open-files limit at or above which `check` passes (each shard serves up to 4096
/// connections and keeps files open for every partition).
pub const NOFILE_PASS: u64 = 65_536;
/// Below this the broker cannot serve a useful number of connections.
pub const NOFILE_FAIL: u64 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// A change `--apply` can make: write `value` to a kernel file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: PathBuf,
    pub value: String,
}

/// One checked setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// The command that fixes it (when not passing).
    pub fix: Option<String>,
    /// What `--apply` would do (some fixes belong in the service's unit file instead).
    pub changes: Vec<Change>,
}

impl Finding {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Finding {
        Finding { name, status, detail: detail.into(), fix: None, changes: vec![] }
    }
    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
    fn change(mut self, path: impl Into<PathBuf>, value: &str) -> Finding {
        self.changes.push(Change { path: path.into(), value: value.into() });
        self
    }

    /// `STATUS  name  detail  -> fix: command`
    pub fn line(&self) -> String {
        let mut line = format!("{}  {:<16} {}", self.status.word(), self.name, self.detail);
        if let (Some(fix), true) = (&self.fix, self.status != Status::Pass) {
            line.push_str("  -> fix: ");
            line.push_str(fix);
        }
        line
    }
}

/// Exit status of `riptide check`: 0 all pass, 1 warnings, 2 failures.
pub fn exit_code(findings: &[Finding]) -> i32 {
    match findings.iter().map(|f| f.status).max() {
        Some(Status::Fail) => 2,
        Some(Status::Warn) => 1,
        _ => 0,
    }
}

/// Everything `evaluate` looks at, read from the host by `probe`.
#[derive(Clone, Debug)]
pub struct Readings {
    pub kernel: String,
    /// `io_uring_setup` result; Err(errno text).
    pub io_uring: Result<(), String>,
    /// `kernel.io_uring_disabled` (0, 1, 2) when the sysctl exists.
    pub io_uring_disabled: Option<u32>,
    pub root: bool,
    /// RLIMIT_MEMLOCK soft limit as `riptide start` will have it (after trying to lift it),
    /// None = unlimited.
    pub memlock: Option<u64>,
    /// Locked memory the broker wants (shards x io memory), and its floor (glommio's minimum).
    pub memlock_wanted: u64,
    pub memlock_min: u64,
    /// RLIMIT_NOFILE soft and hard limits (None = unlimited).
    pub nofile: (Option<u64>, Option<u64>),
    /// (cpu, governor) per cpu with cpufreq; empty when there is no cpufreq driver.
    pub governors: Vec<(u32, String)>,
    /// The selected mode of /sys/kernel/mm/transparent_hugepage/enabled.
    pub thp: Option<String>,
    /// The directory checked (the data dir, or its nearest existing parent), statfs type.
    pub dir: PathBuf,
    pub data_dir_exists: bool,
    pub fs_magic: Option<i64>,
    pub o_direct: Result<(), String>,
    /// adjtimex: synchronized, and the estimated error in microseconds.
    pub clock_synced: Option<bool>,
    pub clock_error_us: Option<i64>,
    /// Free (for unprivileged users) and total bytes of the data dir's filesystem.
    pub disk: Option<(u64, u64)>,
}

const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
const IO_URING_DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

/// Judges the readings; one finding per setting, always in the same order.
pub fn evaluate(r: &Readings) -> Vec<Finding> {
    vec![
        io_uring(r),
        memlock(r),
        open_files(r),
        governor(r),
        thp(r),
        filesystem(r),
        o_direct(r),
        clock(r),
        free_disk(r),
    ]
}

fn mib(b: u64) -> String {
    if b >= 10 << 30 { format!("{} GiB", b >> 30) } else { format!("{} MiB", b >> 20) }
}

fn io_uring(r: &Readings) -> Finding {
    match (&r.io_uring, r.io_uring_disabled) {
        (Ok(()), _) => Finding::new("io_uring", Status::Pass, format!("io_uring_setup works (Linux {})", r.kernel)),
        (Err(e), Some(d)) if d != 0 => Finding::new("io_uring", Status::Fail, format!("disabled by kernel.io_uring_disabled={d} ({e})"))
            .fix("sysctl -w kernel.io_uring_disabled=0")
            .change(IO_URING_DISABLED, "0"),
        (Err(e), _) => Finding::new("io_uring", Status::Fail, format!("io_uring_setup failed: {e} (Linux {})", r.kernel))
            .fix("run on Linux 5.8+ with io_uring, and allow io_uring_setup in the container's seccomp profile"),
    }
}

fn memlock(r: &Readings) -> Finding {
    let name = "memlock";
    let fix = "ulimit -l unlimited  (systemd: LimitMEMLOCK=infinity)";
    match r.memlock {
        None => Finding::new(name, Status::Pass, "unlimited"),
        Some(l) if l >= r.memlock_wanted => Finding::new(name, Status::Pass, format!("{} KiB (needs {} KiB)", l >> 10, r.memlock_wanted >> 10)),
        Some(l) if l >= r.memlock_min => Finding::new(
            name,
            Status::Warn,
            format!("{} KiB: below the shards' I/O memory ({} KiB): io_uring may not register their buffers", l >> 10, r.memlock_wanted >> 10),
        )
        .fix(fix),
        Some(l) => Finding::new(name, Status::Fail, format!("{} KiB: riptide start refuses below {} KiB", l >> 10, r.memlock_min >> 10)).fix(fix),
    }
}

fn open_files(r: &Readings) -> Finding {
    let name = "open files";
    let fix = format!("ulimit -n {}  (systemd: LimitNOFILE=1048576)", r.nofile.1.map_or(1_048_576, |h| h.clamp(NOFILE_PASS, 1_048_576)));
    match r.nofile.0 {
        None => Finding::new(name, Status::Pass, "unlimited"),
        Some(n) if n >= NOFILE_PASS => Finding::new(name, Status::Pass, format!("{n}")),
        Some(n) if n >= NOFILE_FAIL => Finding::new(name, Status::Warn, format!("{n}: fewer than {NOFILE_PASS} (connections and partition files)")).fix(fix),
        Some(n) => Finding::new(name, Status::Fail, format!("{n}: fewer than {NOFILE_FAIL}")).fix(fix),
    }
}

fn governor(r: &Readings) -> Finding {
    let name = "cpu governor";
    if r.governors.is_empty() {
        return Finding::new(name, Status::Pass, "no cpufreq driver (frequency set by firmware or hypervisor)");
    }
    let slow: Vec<&(u32, String)> = r.governors.iter().filter(|(_, g)| g != "performance").collect();
    if slow.is_empty() {
        return Finding::new(name, Status::Pass, format!("performance on {} cpus", r.governors.len()));
    }
    let mut f = Finding::new(name, Status::Warn, format!("{} on {} of {} cpus (latency varies with the clock)", slow[0].1, slow.len(), r.governors.len()))
        .fix("cpupower frequency-set -g performance");
    for (cpu, _) in slow {
        f = f.change(format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"), "performance");
    }
    f
}

fn thp(r: &Readings) -> Finding {
    let name = "huge pages";
    match r.thp.as_deref() {
        None => Finding::new(name, Status::Pass, "transparent huge pages not available"),
        Some("always") => Finding::new(name, Status::Warn, "transparent huge pages: always (khugepaged compaction stalls)")
            .fix(format!("echo madvise > {THP_ENABLED}"))
            .change(THP_ENABLED, "madvise"),
        Some(mode) => Finding::new(name, Status::Pass, format!("transparent huge pages: {mode}")),
    }
}

fn filesystem(r: &Readings) -> Finding {
    let name = "filesystem";
    let where_ = if r.data_dir_exists { String::new() } else { format!(" (data dir not created yet; checked {})", r.dir.display()) };
    let Some(magic) = r.fs_magic else {
        return Finding::new(name, Status::Fail, format!("cannot statfs {}", r.dir.display())).fix("create the data dir on a local ext4 or XFS filesystem");
    };
    let (mode, why) = storage::io::SyncMode::for_filesystem(magic, &r.kernel);
    match mode {
        storage::io::SyncMode::SharedSyncfs => Finding::new(name, Status::Pass, format!("{why}: shared syncfs rounds{where_}")),
        storage::io::SyncMode::PerFileFdatasync => Finding::new(name, Status::Warn, format!("{why}: per-file fdatasync, slower with many partitions{where_}"))
            .fix("put the data dir on ext4 or XFS (Linux 5.8+)"),
    }
}

fn o_direct(r: &Readings) -> Finding {
    match &r.o_direct {
        Ok(()) => Finding::new("O_DIRECT", Status::Pass, format!("4 KiB direct write and read in {}", r.dir.display())),
        Err(e) => Finding::new("O_DIRECT", Status::Fail, format!("{} in {}", e, r.dir.display()))
            .fix("put the data dir on a filesystem with O_DIRECT (ext4, XFS; not tmpfs or overlayfs)"),
    }
}

fn clock(r: &Readings) -> Finding {
    let fix = "apt-get install -y chrony && systemctl enable --now chrony";
    match r.clock_synced {
        Some(true) => Finding::new("clock sync", Status::Pass, format!("synchronized (estimated error {} us)", r.clock_error_us.unwrap_or(-1))),
        Some(false) => Finding::new("clock sync", Status::Warn, "not synchronized: timestamps, retention and segment.ms follow this clock").fix(fix),
        None => Finding::new("clock sync", Status::Warn, "adjtimex failed: synchronization unknown").fix(fix),
    }
}

fn free_disk(r: &Readings) -> Finding {
    let name = "free disk";
    let Some((free, total)) = r.disk else {
        return Finding::new(name, Status::Fail, format!("cannot statvfs {}", r.dir.display())).fix("create the data dir on a local filesystem");
    };
    let percent = free.saturating_mul(100) / total.max(1);
    let detail = format!("{} free of {} ({percent}%)", mib(free), mib(total));
    let fix = "free space or move the data dir (each active partition reserves 32 MiB ahead of its data)";
    if free < FREE_DISK_FAIL_BYTES {
        Finding::new(name, Status::Fail, detail).fix(fix)
    } else if percent < FREE_DISK_WARN_PERCENT {
        Finding::new(name, Status::Warn, detail).fix(fix)
    } else {
        Finding::new(name, Status::Pass, detail)
    }
}

impl Readings {
    /// Reads the host: the data dir (or its nearest existing parent), for `shards` shards with
    /// `io_memory_bytes` each.
    pub fn probe(data_dir: &Path, shards: usize, io_memory_bytes: u64) -> Readings {
        let dir = existing_ancestor(data_dir);
        let nofile = rlimit(libc::RLIMIT_NOFILE);
        Readings {
            kernel: kernel_release(),
            io_uring: io_uring_setup(),
            io_uring_disabled: read_trim(IO_URING_DISABLED).and_then(|s| s.parse().ok()),
            // SAFETY: geteuid has no preconditions.
            root: unsafe { libc::geteuid() } == 0,
            memlock: crate::memlock_as_start_sees(),
            memlock_wanted: io_memory_bytes * shards as u64,
            memlock_min: crate::MEMLOCK_PER_SHARD_BYTES_MIN * shards as u64,
            nofile,
            governors: governors(),
            thp: read_trim(THP_ENABLED).and_then(|s| selected_mode(&s)),
            data_dir_exists: data_dir.is_dir(),
            fs_magic: statfs_type(&dir),
            o_direct: o_direct_probe(&dir),
            clock_synced: read_clock().map(|c| c.0),
            clock_error_us: read_clock().map(|c| c.1),
            disk: disk_space(&dir),
            dir,
        }
    }
}

/// The data dir, or its nearest parent that exists (a fresh install checks where it will be).
pub fn existing_ancestor(dir: &Path) -> PathBuf {
    let abs = if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(dir) };
    abs.ancestors().find(|p| p.is_dir()).unwrap_or(Path::new("/")).to_path_buf()
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// "always [madvise] never" -> "madvise".
pub fn selected_mode(text: &str) -> Option<String> {
    text.split_whitespace().find(|w| w.starts_with('[')).map(|w| w.trim_matches(['[', ']']).to_string())
}

pub fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct we own and NUL-terminates its fields.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy().into_owned()
}

fn rlimit(resource: libc::__rlimit_resource_t) -> (Option<u64>, Option<u64>) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return (Some(0), Some(0));
    }
    let v = |x: libc::rlim_t| (x != libc::RLIM_INFINITY).then_some(x);
    (v(lim.rlim_cur), v(lim.rlim_max))
}

fn io_uring_setup() -> Result<(), String> {
    // struct io_uring_params is 120 bytes; zeroed means "defaults".
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes the params buffer we own (of the kernel's size).
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: closing the descriptor the kernel just gave us.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

fn governors() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/devices/system/cpu") else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(cpu) = name.strip_prefix("cpu").and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Ok(g) = std::fs::read_to_string(e.path().join("cpufreq/scaling_governor")) {
            out.push((cpu, g.trim().to_string()));
        }
    }
    out.sort();
    out
}

fn c_path(p: &Path) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).ok()
}

fn statfs_type(dir: &Path) -> Option<i64> {
    let c = c_path(dir)?;
    // SAFETY: statfs writes into the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0).then_some(st.f_type as i64)
}

fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let c = c_path(dir)?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize))
}

/// (synchronized, estimated error in µs) from adjtimex, which changes nothing with modes = 0.
fn read_clock() -> Option<(bool, i64)> {
    // SAFETY: adjtimex with modes 0 only reads the kernel's state into the struct we own.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    let synced = state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0;
    Some((synced, tx.esterror as i64))
}

/// Writes and reads back one 4 KiB block with O_DIRECT in `dir`, then removes the file.
pub fn o_direct_probe(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!(".riptide-check-{}", std::process::id()));
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .map_err(|e| format!("open with O_DIRECT: {e}"))?;
        let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("valid layout");
        // SAFETY: a 4096-byte, 4096-aligned allocation, freed below; the kernel reads and
        // writes only within it.
        let buf = unsafe { std::alloc::alloc_zeroed(layout) };
        if buf.is_null() {
            return Err("out of memory".into());
        }
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        let w = unsafe { libc::pwrite(fd, buf as *const libc::c_void, 4096, 0) };
        let r = unsafe { libc::pread(fd, buf as *mut libc::c_void, 4096, 0) };
        let errno = std::io::Error::last_os_error();
        unsafe { std::alloc::dealloc(buf, layout) };
        match (w, r) {
            (4096, 4096) => Ok(()),
            (4096, _) => Err(format!("direct read failed: {errno}")),
            _ => Err(format!("direct write failed: {errno}")),
        }
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// `--apply`: root only. Prints each change, then makes it; returns the failures.
pub fn apply(findings: &[Finding], out: &mut impl std::io::Write) -> Vec<String> {
    let mut failed = Vec::new();
    for f in findings.iter().filter(|f| f.status != Status::Pass) {
        if f.changes.is_empty() {
            let _ = writeln!(out, "not applied ({}): {}", f.name, f.fix.as_deref().unwrap_or("nothing to do here"));
            continue;
        }
        for c in &f.changes {
            let _ = writeln!(out, "applying ({}): echo {} > {}", f.name, c.value, c.path.display());
            if let Err(e) = std::fs::write(&c.path, &c.value) {
                let _ = writeln!(out, "  failed: {e}");
                failed.push(format!("{}: {e}", c.path.display()));
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Readings {
        Readings {
            kernel: "6.1.0".into(),
            io_uring: Ok(()),
            memlock: None,
            memlock_wanted: 20 << 20,
            memlock_min: 1 << 20,
            nofile: (Some(1 << 20), Some(1 << 20)),
            thp: Some("madvise".into()),
            dir: "/data".into(),
            data_dir_exists: true,
            fs_magic: Some(storage::io::sync_group::EXT4_SUPER_MAGIC),
            o_direct: Ok(()),
            clock_synced: Some(true),
            clock_error_us: Some(10),
            disk: Some((100 << 30, 200 << 30)),
            io_uring_disabled: None,
            root: false,
            governors: vec![],
        }
    }

    fn status_of(r: &Readings, name: &str) -> Finding {
        evaluate(r).into_iter().find(|f| f.name == name).unwrap()
    }

    #[test]
    fn check_all_good_passes() {
        let findings = evaluate(&good());
        assert!(findings.iter().all(|f| f.status == Status::Pass), "{findings:#?}");
        assert_eq!(exit_code(&findings), 0);
        let names: Vec<_> = findings.iter().map(|f| f.name).collect();
        assert_eq!(names, ["io_uring", "memlock", "open files", "cpu governor", "huge pages", "filesystem", "O_DIRECT", "clock sync", "free disk"]);
    }

    #[test]
    fn check_each_rule_warns_or_fails_with_a_fix() {
        type Case = (Box<dyn Fn(&mut Readings)>, &'static str, Status);
        let cases: Vec<Case> = vec![
            (Box::new(|r| { r.io_uring = Err("Operation not permitted".into()); r.io_uring_disabled = Some(2) }), "io_uring", Status::Fail),
            (Box::new(|r| r.memlock = Some(8 << 20)), "memlock", Status::Warn),
            (Box::new(|r| r.memlock = Some(64 << 10)), "memlock", Status::Fail),
            (Box::new(|r| r.nofile = (Some(1024), Some(4096))), "open files", Status::Warn),
            (Box::new(|r| r.nofile = (Some(256), Some(256))), "open files", Status::Fail),
            (Box::new(|r| r.governors = vec![(0, "performance".into()), (1, "powersave".into())]), "cpu governor", Status::Warn),
            (Box::new(|r| r.thp = Some("always".into())), "huge pages", Status::Warn),
            (Box::new(|r| r.fs_magic = Some(0x9123_683E)), "filesystem", Status::Warn),
            (Box::new(|r| r.o_direct = Err("open with O_DIRECT: Invalid argument".into())), "O_DIRECT", Status::Fail),
            (Box::new(|r| r.clock_synced = Some(false)), "clock sync", Status::Warn),
            (Box::new(|r| r.disk = Some((15 << 30, 200 << 30))), "free disk", Status::Warn),
            (Box::new(|r| r.disk = Some((500 << 20, 200 << 30))), "free disk", Status::Fail),
        ];
        for (change, name, status) in cases {
            let mut r = good();
            change(&mut r);
            let f = status_of(&r, name);
            assert_eq!(f.status, status, "{f:?}");
            assert!(f.fix.is_some() && f.line().contains("-> fix: "), "{}", f.line());
            let findings = evaluate(&r);
            assert_eq!(exit_code(&findings), if status == Status::Fail { 2 } else { 1 });
        }
        let mut r = good();
        r.governors = vec![(0, "powersave".into()), (1, "powersave".into())];
        assert_eq!(status_of(&r, "cpu governor").changes.len(), 2, "--apply sets every cpu");
    }

    #[test]
    fn check_selected_mode_parses_sysfs() {
        assert_eq!(selected_mode("always [madvise] never").as_deref(), Some("madvise"));
        assert_eq!(selected_mode("[always] madvise never").as_deref(), Some("always"));
        assert_eq!(selected_mode("nothing"), None);
    }

    #[test]
    fn check_apply_prints_then_writes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("scaling_governor");
        std::fs::write(&target, "powersave").unwrap();
        let f = Finding::new("cpu governor", Status::Warn, "powersave").fix("cpupower").change(&target, "performance");
        let mut out = Vec::new();
        assert!(apply(&[f, Finding::new("memlock", Status::Warn, "low").fix("ulimit -l unlimited")], &mut out).is_empty());
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains(&format!("applying (cpu governor): echo performance > {}", target.display())), "{out}");
        assert!(out.contains("not applied (memlock): ulimit -l unlimited"), "{out}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "performance");
    }
}
