//! Loopback TCP throughput: one in-process sender and receiver over 127.0.0.1, bounded in time.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Bytes per write and per read.
const CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoopbackResult {
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub chunk_bytes: usize,
}

/// Streams for `duration` from a sender thread to a receiver thread and returns the rate.
pub fn measure(duration: Duration) -> Result<LoopbackResult> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("bind loopback", e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("local_addr", e))?;
    let receiver = std::thread::spawn(move || -> Result<u64> {
        let (mut s, _) = listener.accept().map_err(|e| Error::io("accept", e))?;
        let mut buf = vec![0_u8; CHUNK_BYTES];
        let mut total = 0_u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) => return Err(Error::io("loopback read", e)),
            }
        }
    });
    let mut sender = TcpStream::connect(addr).map_err(|e| Error::io("connect loopback", e))?;
    let chunk = vec![0x5a_u8; CHUNK_BYTES];
    let started = Instant::now();
    while started.elapsed() < duration {
        sender.write_all(&chunk).map_err(|e| Error::io("loopback write", e))?;
    }
    drop(sender);
    let bytes = receiver
        .join()
        .map_err(|_| Error::Parse {
            what: "loopback".into(),
            detail: "receiver panicked".into(),
        })??;
    let seconds = started.elapsed().as_secs_f64();
    Ok(LoopbackResult {
        bytes,
        seconds,
        mb_per_s: bytes as f64 / seconds / 1e6,
        chunk_bytes: CHUNK_BYTES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_measures_positive_rate() {
        let r = measure(Duration::from_millis(100)).unwrap();
        assert!(r.bytes > 0 && r.mb_per_s > 0.0);
    }
}
