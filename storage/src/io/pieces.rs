//! One block-aligned write assembled straight in the DMA buffers that are written: the journal's
//! rounds and the segment appender's writes (one copy of each batch into them, no staging
//! buffer), cut into pieces that never overlap and so go to the device at once.

use std::io;

use super::{IoBuf, IoFile};

/// `padded` bytes (a multiple of the file's alignment) in pieces of `piece` bytes, the last one
/// shorter; filled front to back by `put`, then zero-padded by `pad`.
pub(crate) struct Pieces<Buf> {
    bufs: Vec<Buf>,
    piece: usize,
    /// Bytes put so far.
    at: usize,
}

impl<Buf: IoBuf> Pieces<Buf> {
    /// `piece` must be a multiple of the alignment too: a block then never straddles two pieces.
    pub(crate) fn new<F: IoFile<Buf = Buf>>(file: &F, padded: usize, piece: usize) -> Self {
        let align = file.alignment() as usize;
        debug_assert!(piece > 0 && piece % align == 0 && padded % align == 0);
        let bufs = (0..padded.div_ceil(piece)).map(|i| file.alloc_buf((padded - i * piece).min(piece))).collect();
        Pieces { bufs, piece, at: 0 }
    }

    /// Bytes put so far.
    pub(crate) fn len(&self) -> usize {
        self.at
    }

    pub(crate) fn put(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (i, off) = (self.at / self.piece, self.at % self.piece);
            let dst = &mut self.bufs[i].as_mut_slice()[off..];
            let n = dst.len().min(bytes.len());
            dst[..n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.at += n;
        }
    }

    /// Zeroes the padding after the last byte put.
    pub(crate) fn pad(&mut self) {
        for (i, buf) in self.bufs.iter_mut().enumerate() {
            let slice = buf.as_mut_slice();
            let from = self.at.saturating_sub(i * self.piece).min(slice.len());
            slice[from..].fill(0);
        }
    }

    /// A copy of `[from, to)`, which lies inside one block (so inside one piece).
    pub(crate) fn copy_range(&self, from: usize, to: usize) -> Vec<u8> {
        if from == to {
            return Vec::new();
        }
        let i = from / self.piece;
        debug_assert_eq!(i, (to - 1) / self.piece);
        self.bufs[i].as_slice()[from - i * self.piece..to - i * self.piece].to_vec()
    }

    /// Writes the pieces (concurrently) at `start`; returns the bytes written. `what` names the
    /// write in the error of a short one.
    pub(crate) async fn write<F: IoFile<Buf = Buf>>(self, file: &F, start: u64, what: &str) -> io::Result<u64> {
        let mut pending = Vec::new();
        let mut at = start;
        for buf in self.bufs {
            let len = buf.as_slice().len();
            pending.push((file.write_at(buf, at), len));
            at += len as u64;
        }
        let (futures, lens): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
        for (result, len) in futures::future::join_all(futures).await.into_iter().zip(lens) {
            let written = result?;
            if written != len {
                return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short {what} write: {written} of {len} bytes")));
            }
        }
        Ok(at - start)
    }
}
