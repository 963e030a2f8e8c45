//! CPU time of a process from `/proc/<pid>/stat` (utime + stime), for "MB/s per busy core".

use crate::error::{Error, Result};

/// Field index of `utime` counted from the first field after the `(comm)` field's closing paren
/// (`state` is index 0 there); `stime` follows it.
const UTIME_INDEX_AFTER_COMM: usize = 11;

/// Parses utime + stime (clock ticks) from the text of a `/proc/<pid>/stat` file.
pub fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    let parse_error = |detail: &str| Error::Parse {
        what: "/proc/<pid>/stat".into(),
        detail: detail.into(),
    };
    // comm may contain spaces and parentheses: split after the last ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| parse_error("no ')'"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| parse_error("missing utime/stime"))
    };
    Ok(get(UTIME_INDEX_AFTER_COMM)? + get(UTIME_INDEX_AFTER_COMM + 1)?)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system) used so far by `pid`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path, e))?;
    Ok(parse_cpu_ticks(&text)? as f64 / ticks_per_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procstat_parses_utime_and_stime() {
        let stat = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 0";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 300);
        assert!(parse_cpu_ticks("garbage").is_err());
    }

    #[test]
    fn procstat_reads_own_process() {
        let s = cpu_seconds(std::process::id()).unwrap();
        assert!(s >= 0.0);
    }
}
