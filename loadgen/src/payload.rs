//! The payload header that carries the send timestamp for end-to-end latency.
//!
//! Layout (big endian): `magic: u32 = "RPTL"`, `send_time_ns: u64` (CLOCK_REALTIME, so producers
//! and consumers in different processes of one host agree), `sequence: u64`. The rest of the
//! payload is filler chosen by the workload.

use crate::workload::PayloadKind;
use rand::Rng;
use std::time::{SystemTime, UNIX_EPOCH};

/// Marks payloads written by this load generator.
pub const PAYLOAD_MAGIC: u32 = u32::from_be_bytes(*b"RPTL");
/// Bytes taken by the header at the start of every payload.
pub const PAYLOAD_HEADER_BYTES: usize = 20;

/// Wall clock in nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Writes the header into the first [`PAYLOAD_HEADER_BYTES`] of `buf`.
pub fn write_header(buf: &mut [u8], send_time_ns: u64, sequence: u64) {
    buf[0..4].copy_from_slice(&PAYLOAD_MAGIC.to_be_bytes());
    buf[4..12].copy_from_slice(&send_time_ns.to_be_bytes());
    buf[12..20].copy_from_slice(&sequence.to_be_bytes());
}

/// Reads `(send_time_ns, sequence)` from a payload, if it carries our header.
pub fn read_header(buf: &[u8]) -> Option<(u64, u64)> {
    if buf.len() < PAYLOAD_HEADER_BYTES || buf[0..4] != PAYLOAD_MAGIC.to_be_bytes() {
        return None;
    }
    let ts = u64::from_be_bytes(buf[4..12].try_into().ok()?);
    let seq = u64::from_be_bytes(buf[12..20].try_into().ok()?);
    Some((ts, seq))
}

/// Fills a payload buffer of `len` bytes with the workload's filler.
pub fn filler<R: Rng>(kind: PayloadKind, len: usize, rng: &mut R) -> Vec<u8> {
    let mut buf = vec![0_u8; len];
    match kind {
        PayloadKind::Zeros => {}
        PayloadKind::Random => rng.fill_bytes(&mut buf),
        PayloadKind::Text => {
            const WORDS: &[&[u8]] = &[
                b"offset ", b"partition ", b"broker ", b"record ", b"batch ", b"leader ",
                b"replica ", b"segment ", b"fetch ", b"produce ",
            ];
            let mut i = 0;
            while i < len {
                let w = WORDS[rng.gen_range(0..WORDS.len())];
                let n = w.len().min(len - i);
                buf[i..i + n].copy_from_slice(&w[..n]);
                i += n;
            }
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_header_round_trips() {
        let mut buf = vec![0_u8; 64];
        write_header(&mut buf, 123_456_789, 42);
        assert_eq!(read_header(&buf), Some((123_456_789, 42)));
        assert_eq!(read_header(&buf[..10]), None);
        assert_eq!(read_header(&[0_u8; 32]), None);
    }

    #[test]
    fn payload_filler_has_requested_length() {
        let mut rng = rand::thread_rng();
        for kind in [PayloadKind::Random, PayloadKind::Zeros, PayloadKind::Text] {
            assert_eq!(filler(kind, 1000, &mut rng).len(), 1000);
        }
    }
}
