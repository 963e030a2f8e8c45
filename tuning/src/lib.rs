//! riptide-tuning: the host facts the broker's knobs depend on, the knobs themselves
//! (`resources`: sized from memory by default, or from an I/O properties file), and the two
//! commands that look at the host: `riptide tune` (measures the data dir's device through the
//! broker's own O_DIRECT path and writes the properties file) and `riptide check` (pass / warn /
//! fail per host setting, with the command that fixes it).

pub mod check;
pub mod cli;
pub mod resources;
pub mod tune;

pub use resources::{IoProperties, PropertiesError, Resources, Settings};

use serde::Serialize;

/// Locked memory glommio needs per shard with its default io memory (measured to fit in 8 MiB
/// for 2 shards on the reference machine).
pub const MEMLOCK_PER_SHARD_BYTES_MIN: u64 = 512 * 1024;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostFacts {
    pub cores: usize,
    pub memory_bytes: Option<u64>,
    /// None = unlimited.
    pub memlock_bytes: Option<u64>,
}

impl HostFacts {
    pub fn probe() -> HostFacts {
        HostFacts {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: memory_bytes(),
            memlock_bytes: memlock_limit(),
        }
    }

    /// Whether `shards` executors fit in the locked-memory limit.
    pub fn memlock_fits(&self, shards: usize) -> bool {
        self.memlock_bytes.is_none_or(|limit| limit >= MEMLOCK_PER_SHARD_BYTES_MIN * shards as u64)
    }
}

/// The locked-memory limit `riptide start` will run with: it tries to lift the limit to
/// unlimited (which works as root with CAP_SYS_RESOURCE), else keeps it. Tried on this process
/// only (nothing else changes); None = unlimited.
pub fn memlock_as_start_sees() -> Option<u64> {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads the struct we pass; it only affects this process.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    memlock_limit()
}

fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo_total(&text)
}

fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_parses_meminfo() {
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\nMemTotal:  2048 kB\n"), Some(2 << 20));
        assert_eq!(parse_meminfo_total("nothing"), None);
    }

    #[test]
    fn tuning_memlock_fit() {
        let facts = HostFacts { cores: 2, memory_bytes: None, memlock_bytes: Some(8 << 20) };
        assert!(facts.memlock_fits(2));
        assert!(!HostFacts { memlock_bytes: Some(1024), ..facts.clone() }.memlock_fits(1));
        assert!(HostFacts { memlock_bytes: None, ..facts }.memlock_fits(64));
    }

    /// The probe reports this host, checked against independent sources.
    #[test]
    fn tuning_probe_matches_the_host() {
        let facts = HostFacts::probe();
        // The cores the process may run on (sched_getaffinity), not merely "at least one".
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: sched_getaffinity fills the cpu_set_t we own, of the size we pass.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        assert_eq!(rc, 0, "sched_getaffinity: {}", std::io::Error::last_os_error());
        // SAFETY: CPU_COUNT reads the set filled above.
        let allowed = unsafe { libc::CPU_COUNT(&set) } as usize;
        // A cgroup CPU quota may lower the count below the affinity set (std takes it into
        // account); without one the two must agree.
        let quota = std::fs::read_to_string("/sys/fs/cgroup/cpu.max").ok().filter(|q| !q.starts_with("max"));
        if quota.is_none() {
            assert_eq!(facts.cores, allowed, "cores must be the CPUs this process may use");
        }
        assert!((1..=allowed).contains(&facts.cores), "{} cores of {allowed} allowed", facts.cores);
        // Memory: /proc/meminfo's MemTotal, in bytes (a KiB/byte mix-up would be off by 1024).
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total_kib: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB")).unwrap().trim().parse().unwrap();
        assert_eq!(facts.memory_bytes, Some(total_kib * 1024));
        // Memlock: what getrlimit says (None only when unlimited).
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) }, 0);
        let expected = (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur);
        assert_eq!(facts.memlock_bytes, expected);
    }
}
