//! Is the listen port really free? The shards listen with SO_REUSEPORT (the kernel spreads
//! connections over them), so binding alone cannot tell: it succeeds next to another live
//! SO_REUSEPORT listener of the same user, silently sharing the port with it. A probe bind
//! without SO_REUSEPORT has the opposite problem: it collides with the TIME_WAIT sockets of the
//! previous run (they keep SO_REUSEPORT), so a restart right after a stop failed.
//!
//! So start-up reads the kernel's socket tables instead (`/proc/net/tcp{,6}`): only LISTEN
//! entries on the port count. One held by a process (found through `/proc/*/fd`) means the port
//! is taken: refuse at once, naming the holder. One held by no process is the listener of a
//! broker that was just killed, lingering while its io_uring is torn down: wait (bounded) for it
//! to go, because a listener joining its SO_REUSEPORT group would be handed connections that
//! nobody will ever accept.

use crate::constants::{LISTEN_ORPHAN_POLL_MS, LISTEN_ORPHAN_WAIT_MS};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// TCP state number of LISTEN in `/proc/net/tcp` (include/net/tcp_states.h).
const TCP_LISTEN: u8 = 0x0A;
const PROC_NET_TCP: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// A listening socket on the port we want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub uid: u32,
    pub inode: u64,
}

/// A process that has a listener open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("port {port} is in use: {addr} is listened on by {}", describe(.holders))]
    InUse { port: u16, addr: SocketAddr, holders: Vec<Holder> },
    #[error("port {port} is in use: {addr} is listened on by a process of user {uid}")]
    OtherUser { port: u16, addr: SocketAddr, uid: u32 },
    #[error("port {port} is still held by a listening socket no process owns ({addr}, a crashed broker's?) after {} ms", .waited.as_millis())]
    OrphanLingers { port: u16, addr: SocketAddr, waited: Duration },
}

fn describe(holders: &[Holder]) -> String {
    let named: Vec<_> = holders.iter().map(|h| format!("pid {} ({})", h.pid, h.command)).collect();
    named.join(", ")
}

/// What holds the port now.
#[derive(Debug)]
enum PortState {
    Free,
    Taken(PortError),
    /// Listeners that no process holds: the remains of a killed process.
    Orphaned(SocketAddr),
}

/// Returns once no process listens on `addr`'s port and no orphan listener is left; fails at
/// once if a live process listens there, or after `LISTEN_ORPHAN_WAIT_MS` if an orphan stays.
pub fn ensure_free(addr: SocketAddr) -> Result<(), PortError> {
    let started = Instant::now();
    let wait = Duration::from_millis(LISTEN_ORPHAN_WAIT_MS);
    let mut waiting = false;
    loop {
        match state(addr) {
            PortState::Free => {
                if waiting {
                    tracing::info!(waited_ms = started.elapsed().as_millis() as u64, "orphan listener gone");
                }
                return Ok(());
            }
            PortState::Taken(e) => return Err(e),
            PortState::Orphaned(orphan) if started.elapsed() >= wait => {
                return Err(PortError::OrphanLingers { port: addr.port(), addr: orphan, waited: started.elapsed() })
            }
            PortState::Orphaned(orphan) => {
                if !waiting {
                    tracing::info!(%orphan, wait_ms = LISTEN_ORPHAN_WAIT_MS, "a listener of a stopped process lingers on the port, waiting for it to go");
                    waiting = true;
                }
                std::thread::sleep(Duration::from_millis(LISTEN_ORPHAN_POLL_MS));
            }
        }
    }
}

fn state(addr: SocketAddr) -> PortState {
    let listeners = match listeners_on(addr) {
        Ok(l) => l,
        Err(e) => {
            // Without /proc the bind itself is the only check left (it still fails next to a
            // listener without SO_REUSEPORT).
            tracing::warn!("cannot read /proc/net/tcp ({e}): not checking whether another process shares port {}", addr.port());
            return PortState::Free;
        }
    };
    if listeners.is_empty() {
        return PortState::Free;
    }
    let holders = holders_of(listeners.iter().map(|l| l.inode));
    let me = current_uid();
    let mut orphan = None;
    for l in &listeners {
        if let Some(h) = holders.get(&l.inode) {
            return PortState::Taken(PortError::InUse { port: addr.port(), addr: l.addr, holders: h.clone() });
        }
        if l.uid != me {
            // We may not be allowed to see that user's file descriptors.
            return PortState::Taken(PortError::OtherUser { port: addr.port(), addr: l.addr, uid: l.uid });
        }
        orphan = Some(l.addr);
    }
    orphan.map_or(PortState::Free, PortState::Orphaned)
}

fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// LISTEN entries whose port is `addr`'s and whose address overlaps it.
pub fn listeners_on(addr: SocketAddr) -> std::io::Result<Vec<Listener>> {
    let mut found = Vec::new();
    for path in PROC_NET_TCP {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.ends_with('6') => continue, // no IPv6
            Err(e) => return Err(e),
        };
        found.extend(text.lines().skip(1).filter_map(parse_listen_line).filter(|l| overlaps(l.addr, addr)));
    }
    Ok(found)
}

/// One `/proc/net/tcp{,6}` line, if it is a LISTEN entry.
fn parse_listen_line(line: &str) -> Option<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, state, uid, inode) = (fields.get(1)?, fields.get(3)?, fields.get(7)?, fields.get(9)?);
    if u8::from_str_radix(state, 16).ok()? != TCP_LISTEN {
        return None;
    }
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(Listener { addr: SocketAddr::new(parse_proc_ip(ip)?, port), uid: uid.parse().ok()?, inode: inode.parse().ok()? })
}

/// The kernel prints an address as the 32-bit words it is stored in, each as a number in host
/// byte order: the word's native-endian bytes are the address bytes.
fn parse_proc_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// Whether a listener on `theirs` would receive connections meant for `ours`: the same address,
/// or a wildcard of the same family; an IPv6 wildcard also takes IPv4 (dual stack, the default).
fn overlaps(theirs: SocketAddr, ours: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if theirs.port() != ours.port() {
        return false;
    }
    match (canonical(theirs.ip()), canonical(ours.ip())) {
        (t, o) if t == o => true,
        (IpAddr::V4(t), IpAddr::V4(o)) => t.is_unspecified() || o.is_unspecified(),
        (IpAddr::V6(t), IpAddr::V6(o)) => t.is_unspecified() || o.is_unspecified(),
        (IpAddr::V6(t), IpAddr::V4(_)) => t.is_unspecified(),
        (IpAddr::V4(_), IpAddr::V6(o)) => o.is_unspecified(),
    }
}

/// The processes holding each socket inode, from `/proc/<pid>/fd/*` links (`socket:[inode]`).
/// Processes we may not inspect are skipped.
fn holders_of(inodes: impl Iterator<Item = u64>) -> HashMap<u64, Vec<Holder>> {
    let wanted: std::collections::HashSet<u64> = inodes.collect();
    let mut found: HashMap<u64, Vec<Holder>> = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return found };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Some(inode) = std::fs::read_link(fd.path()).ok().and_then(|t| socket_inode(&t.to_string_lossy())) else { continue };
            if wanted.contains(&inode) {
                let command = std::fs::read_to_string(entry.path().join("comm")).map_or_else(|_| "?".into(), |c| c.trim().to_string());
                let holders = found.entry(inode).or_default();
                if !holders.iter().any(|h| h.pid == pid) {
                    holders.push(Holder { pid, command });
                }
            }
        }
    }
    found
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_parses_proc_net_tcp_lines() {
        let v4 = "   0: 0100007F:4C63 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_listen_line(v4),
            Some(Listener { addr: "127.0.0.1:19555".parse().unwrap(), uid: 1000, inode: 123456 })
        );
        let time_wait = "   1: 0100007F:4C63 0100007F:D2F0 06 00000000:00000000 03:00000F5A 00000000     0        0 0 3 0000000000000000";
        assert_eq!(parse_listen_line(time_wait), None, "only LISTEN entries count");
        let v6 = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_listen_line(v6).unwrap().addr, "[::1]:8080".parse().unwrap());
        let mapped = "   0: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 778 1";
        assert_eq!(parse_listen_line(mapped).unwrap().addr, "[::ffff:127.0.0.1]:8080".parse().unwrap());
        assert_eq!(parse_listen_line("  sl  local_address rem_address   st tx_queue"), None);
        assert_eq!(parse_listen_line("garbage"), None);
    }

    #[test]
    fn port_overlap_covers_wildcards_and_mapped_addresses() {
        let ours: SocketAddr = "127.0.0.1:9092".parse().unwrap();
        for theirs in ["127.0.0.1:9092", "0.0.0.0:9092", "[::]:9092", "[::ffff:127.0.0.1]:9092"] {
            assert!(overlaps(theirs.parse().unwrap(), ours), "{theirs}");
        }
        for theirs in ["127.0.0.2:9092", "127.0.0.1:9093", "[::1]:9092"] {
            assert!(!overlaps(theirs.parse().unwrap(), ours), "{theirs}");
        }
        assert!(overlaps("127.0.0.5:9092".parse().unwrap(), "0.0.0.0:9092".parse().unwrap()));
        assert!(overlaps("0.0.0.0:9092".parse().unwrap(), "[::]:9092".parse().unwrap()));
        assert!(!overlaps("0.0.0.0:9092".parse().unwrap(), "[::1]:9092".parse().unwrap()), "other family");
    }

    #[test]
    fn port_names_the_live_holder() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = ensure_free(addr).expect_err("a live listener holds the port");
        let text = e.to_string();
        assert!(text.contains(&format!("port {}", addr.port())), "{text}");
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        drop(held);
        ensure_free(addr).expect("free once closed");
    }

    #[test]
    fn port_socket_inode_of_fd_links() {
        assert_eq!(socket_inode("socket:[42]"), Some(42));
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("pipe:[42]"), None);
    }
}
