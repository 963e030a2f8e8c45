//! Device write counters from `/proc/diskstats`, for "device writes per second" and "device
//! bytes written per payload byte" (the produce path's write amplification). The counters are
//! device-wide: anything else writing to the same disk during a run counts too.

use crate::error::{Error, Result};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes per sector in /proc/diskstats (always 512, whatever the device's sector size).
const SECTOR_BYTES: u64 = 512;

/// Writes completed and bytes written so far on one block device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub writes: u64,
    pub bytes_written: u64,
}

/// (major, minor) of the device holding `path`.
pub fn device_of(path: &Path) -> Result<(u64, u64)> {
    let dev = std::fs::metadata(path).map_err(|e| Error::io(path.display().to_string(), e))?.dev();
    Ok((libc::major(dev) as u64, libc::minor(dev) as u64))
}

/// Parses the counters of device (major, minor) out of the text of /proc/diskstats.
pub fn parse(text: &str, major: u64, minor: u64) -> Option<DiskCounters> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        if num(0)? != major || num(1)? != minor {
            return None;
        }
        // After major, minor, name: reads, reads merged, sectors read, ms reading, writes,
        // writes merged, sectors written.
        Some(DiskCounters { writes: num(7)?, bytes_written: num(9)? * SECTOR_BYTES })
    })
}

/// The counters of the device holding `path`, now.
pub fn read(path: &Path) -> Result<DiskCounters> {
    let (major, minor) = device_of(path)?;
    let text = std::fs::read_to_string("/proc/diskstats").map_err(|e| Error::io("/proc/diskstats", e))?;
    parse(&text, major, minor).ok_or_else(|| Error::Parse {
        what: "/proc/diskstats".into(),
        detail: format!("no line for device {major}:{minor}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_parses_the_right_device() {
        let text = " 254       0 vda 100 0 800 5 2000 30 123456 90 0 0 0 0\n   7       0 loop0 1 0 2 0 3 0 4 0 0 0 0 0\n";
        assert_eq!(parse(text, 254, 0), Some(DiskCounters { writes: 2000, bytes_written: 123456 * 512 }));
        assert_eq!(parse(text, 7, 0), Some(DiskCounters { writes: 3, bytes_written: 4 * 512 }));
        assert_eq!(parse(text, 8, 0), None);
    }

    #[test]
    fn diskstats_reads_this_machine() {
        let c = read(Path::new("/")).unwrap();
        let later = read(Path::new("/")).unwrap();
        assert!(later.writes >= c.writes && later.bytes_written >= c.bytes_written);
    }
}
