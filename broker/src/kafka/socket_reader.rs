//! A connection's read side: buffered reads for size prefixes and headers, and payload reads
//! straight from the socket into a buffer's uninitialised spare capacity.
//!
//! Why: `AsyncRead` reads into initialised memory only, so each payload buffer was zeroed one
//! piece ahead of the data; measured with one librdkafka producer of 1 MB batches, that `memset`
//! was 12% of the broker's CPU. A `recv` into spare capacity needs no zeroing. Recycling zeroed
//! buffers instead does not work: the log stamps offsets into the batches in place, which needs
//! a payload that owns its memory alone (bench/README, 2026-12-02 late).
//!
//! Why a raw `recv` beside glommio is sound: glommio's unbuffered `TcpStream` keeps no data of
//! its own (it `recv`s into the caller's buffer, or waits with a readiness poll that consumes
//! nothing), and bytes already in our `BufReader` are taken first, so the stream's byte order
//! holds. When the socket has nothing, the wait goes through the `BufReader` (glommio's reactor),
//! and what it brings (at most its buffer, 64 KiB) is copied.

use futures::io::BufReader;
use futures::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct SocketReader<R> {
    buffered: BufReader<R>,
    /// The connected socket under `buffered`; `None` (streams that are not sockets, tests): the
    /// payload's room is zeroed and read through the buffer.
    fd: Option<RawFd>,
}

impl<R: AsyncRead + Unpin> SocketReader<R> {
    /// `fd` must be the socket `inner` reads, open as long as this reader, and hold no data
    /// anywhere but in the kernel (glommio's unbuffered `TcpStream`).
    pub fn new(inner: R, fd: Option<RawFd>, buffer_bytes: usize) -> Self {
        Self { buffered: BufReader::with_capacity(buffer_bytes, inner), fd }
    }

    /// Appends at least one and at most `max` bytes to `buf`, whose spare capacity must hold
    /// `max`; 0 at the end of the stream (and when `max` is 0).
    pub async fn read_append(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        assert!(buf.capacity() - buf.len() >= max, "room for {max} bytes, {} spare", buf.capacity() - buf.len());
        if max == 0 {
            return Ok(0);
        }
        if self.buffered.buffer().is_empty() {
            if let Some(fd) = self.fd {
                if let Some(n) = recv_into_spare(fd, buf, max)? {
                    return Ok(n);
                }
            } else {
                return self.read_zeroed(buf, max).await;
            }
            // Nothing on the socket: wait through glommio, which fills the buffer.
            if self.buffered.fill_buf().await?.is_empty() {
                return Ok(0);
            }
        }
        let available = self.buffered.buffer();
        let n = available.len().min(max);
        buf.extend_from_slice(&available[..n]);
        self.buffered.consume_unpin(n);
        Ok(n)
    }

    async fn read_zeroed(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let start = buf.len();
        buf.resize(start + max, 0);
        let n = self.buffered.read(&mut buf[start..]).await;
        buf.truncate(start + *n.as_ref().unwrap_or(&0));
        n
    }
}

/// One non-blocking `recv` into `buf`'s spare capacity: `Some(n)` bytes appended (0: end of
/// stream), `None` when the socket has nothing now.
fn recv_into_spare(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
    let spare = &mut buf.spare_capacity_mut()[..max];
    loop {
        // SAFETY: the kernel writes at most `max` bytes into memory we own and do not read
        // before `set_len`, which covers only the bytes it reports written.
        let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), max, libc::MSG_DONTWAIT) };
        if n >= 0 {
            let n = n as usize;
            debug_assert!(n <= max);
            // SAFETY: the first `n` spare bytes were just written by the kernel.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(Some(n));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for SocketReader<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.buffered).poll_read(cx, out)
    }
}

impl<R: AsyncRead + Unpin> AsyncBufRead for SocketReader<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().buffered).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.buffered).consume(amt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    /// Buffered bytes come first, then the socket's, in stream order, across waits.
    #[test]
    fn socket_reader_keeps_the_stream_order_across_buffer_socket_and_waits() {
        run(|| async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
            let sent = data.clone();
            let writer = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                for (i, piece) in sent.chunks(70_001).enumerate() {
                    s.write_all(piece).unwrap();
                    if i % 2 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(20)); // make the reader wait
                    }
                }
            });
            let stream = glommio::net::TcpStream::connect(addr).await.unwrap();
            let fd = stream.as_raw_fd();
            let mut r = SocketReader::new(stream, Some(fd), 4096);
            let mut head = [0u8; 10];
            r.read_exact(&mut head).await.unwrap(); // leaves up to a buffer's worth behind
            assert_eq!(&head[..], &data[..10]);
            let mut got = Vec::with_capacity(data.len());
            loop {
                let room = (got.capacity() - got.len()).min(65_536);
                if r.read_append(&mut got, room).await.unwrap() == 0 {
                    break;
                }
            }
            assert_eq!(got.len(), data.len() - 10);
            assert!(got[..] == data[10..], "bytes out of order or lost");
            writer.join().unwrap();
        });
    }

    #[test]
    fn socket_reader_without_a_socket_reads_through_the_buffer() {
        run(|| async {
            let mut r = SocketReader::new(futures::io::Cursor::new(vec![5u8; 1000]), None, 64);
            let mut got = Vec::with_capacity(2000);
            let mut n = 0;
            while let Ok(k @ 1..) = r.read_append(&mut got, 300).await {
                n += k;
            }
            assert_eq!(n, 1000);
            assert_eq!(got, vec![5u8; 1000]);
        });
    }
}
