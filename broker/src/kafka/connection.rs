//! One client connection: a reader that decodes requests and runs each handler's in-order phase,
//! and a writer that sends responses in request order as their second phase completes. At most
//! `CONNECTION_IN_FLIGHT_MAX` requests are between the two (backpressure on the socket).
//!
//! Time limits: once a request's first byte has arrived, the whole request must arrive within
//! `request.read.timeout.ms` (else the connection closes with a warning: a stalled or
//! slow-loris client must not hold a connection slot and budget for ever); a connection with no
//! request in flight and nothing received for `connections.max.idle.ms` is closed.
//! Memory: payload bytes are counted against the shard's `RequestBudget` as they arrive.

use super::api::{Registry, Reply, Request};
use super::budget::{Held, RequestBudget};
use super::frame::{self, FrameError};
use super::socket_reader::SocketReader;
use crate::config::NetConfig;
use crate::constants::{CONNECTION_IN_FLIGHT_MAX, CONNECTION_READ_BUFFER_BYTES, NON_PRODUCE_REQUEST_MAX_BYTES, REQUEST_READ_CHUNK_BYTES, REQUEST_RESERVE_AHEAD_BYTES_MAX};
use crate::shard::Shard;
use bytes::Bytes;
use futures::future::{select, Either, LocalBoxFuture};
use futures::io::BufWriter;
use futures::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use glommio::channels::local_channel::{self, LocalReceiver};
use kafka_protocol::messages::ApiKey;
use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A response on its way: its correlation id, header version and the body once ready. The
/// request's share of the shard's memory budget is returned when the response is written.
struct Outgoing {
    correlation_id: i32,
    header_version: i16,
    body: LocalBoxFuture<'static, Option<Vec<Bytes>>>,
    held: Option<Held>,
    /// In flight until written; its latency is recorded then (metrics).
    timer: crate::metrics::InFlight,
}

/// What the reader and the writer of one connection share to tell whether it is idle.
struct Activity {
    /// Requests read whose response is not written yet.
    in_flight: Cell<usize>,
    /// When the last request was read or the last response written.
    last: Cell<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity { in_flight: Cell::new(0), last: Cell::new(Instant::now()) }
    }

    fn touch(&self) {
        self.last.set(Instant::now());
    }

    /// How long until the connection counts as idle (zero: it is idle now).
    fn idle_in(&self, limit: Duration) -> Duration {
        if self.in_flight.get() > 0 {
            return limit; // a long-polling Fetch is not idleness
        }
        limit.saturating_sub(self.last.get().elapsed())
    }
}

/// Why the reader stopped.
enum Stop {
    Eof,
    Idle,
    Frame(FrameError),
}

/// Serves one connection. `stream` must be a connected socket that buffers no data of its own
/// (glommio's unbuffered `TcpStream`): payloads are read from its descriptor directly.
pub async fn serve<S>(shard: Rc<Shard>, registry: Rc<Registry>, budget: Rc<RequestBudget>, stream: S, peer: Option<SocketAddr>)
where
    S: AsyncRead + AsyncWrite + AsRawFd + Unpin + 'static,
{
    let fd = stream.as_raw_fd();
    let (reader, writer) = stream.split();
    let mut reader = SocketReader::new(reader, Some(fd), CONNECTION_READ_BUFFER_BYTES);
    let (tx, rx) = local_channel::new_bounded(CONNECTION_IN_FLIGHT_MAX);
    let activity = Rc::new(Activity::new());
    let writer_task = glommio::spawn_local(write_loop(rx, writer, activity.clone()));
    let limits = RequestLimits { max_bytes: shard.config.socket_request_max_bytes, net: shard.config.net };
    let stop = loop {
        let (payload, held) = match read_request(&mut reader, &budget, &activity, limits).await {
            Ok(Some(request)) => request,
            Ok(None) => break Stop::Eof,
            Err(e) => break e,
        };
        match handle(&shard, &registry, payload, peer).await {
            Ok(mut out) => {
                out.held = Some(held);
                activity.in_flight.set(activity.in_flight.get() + 1);
                if tx.send(out).await.is_err() {
                    break Stop::Eof; // writer failed: the socket is gone
                }
            }
            Err(e) => break Stop::Frame(e),
        }
    };
    match stop {
        Stop::Eof => {}
        Stop::Idle => tracing::debug!(?peer, idle_ms = limits.net.connections_max_idle.as_millis() as u64, "closing idle connection"),
        Stop::Frame(FrameError::Io(e)) => tracing::debug!(?peer, "connection closed: {e}"),
        Stop::Frame(e) => tracing::warn!(?peer, "closing connection: {}", one_line(&e)),
    }
    drop(tx);
    writer_task.await;
}

/// Decoder errors can end in a newline: keep each log entry on one line, with its fields.
fn one_line(e: &FrameError) -> String {
    e.to_string().trim_end().replace('\n', "; ")
}

#[derive(Clone, Copy)]
struct RequestLimits {
    max_bytes: usize,
    net: NetConfig,
}

/// Reads the next request: waits (up to the idle limit) for its first byte, then gives the size
/// prefix and the payload `request.read.timeout.ms` to arrive. `Ok(None)` on a clean end of
/// stream between requests.
async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut SocketReader<R>,
    budget: &Rc<RequestBudget>,
    activity: &Activity,
    limits: RequestLimits,
) -> Result<Option<(Bytes, Held)>, Stop> {
    if !wait_for_data(reader, activity, limits.net.connections_max_idle).await? {
        return Ok(None);
    }
    let timeout = limits.net.request_read_timeout;
    let read = pin!(read_framed(reader, budget, limits.max_bytes));
    let request = match select(read, pin!(glommio::timer::sleep(timeout))).await {
        Either::Left((request, _)) => request.map_err(Stop::Frame)?,
        Either::Right(_) => return Err(Stop::Frame(FrameError::ReadTimeout(timeout))),
    };
    activity.touch();
    Ok(request)
}

/// Waits until a byte is readable (true) or the stream ends (false); fails with `Stop::Idle`
/// once the connection has been idle for `limit`. Cancel-safe: `fill_buf` consumes nothing.
async fn wait_for_data<R: AsyncRead + Unpin>(reader: &mut SocketReader<R>, activity: &Activity, limit: Duration) -> Result<bool, Stop> {
    loop {
        let idle_in = activity.idle_in(limit);
        if idle_in.is_zero() {
            return Err(Stop::Idle);
        }
        let readable = pin!(reader.fill_buf().map(|r| r.map(|buf| !buf.is_empty())));
        match select(readable, pin!(glommio::timer::sleep(idle_in))).await {
            Either::Left((readable, _)) => return readable.map_err(|e| Stop::Frame(e.into())),
            Either::Right(_) => continue, // re-check: a response may have been written meanwhile
        }
    }
}

async fn read_framed<R: AsyncRead + Unpin>(reader: &mut SocketReader<R>, budget: &Rc<RequestBudget>, max: usize) -> Result<Option<(Bytes, Held)>, FrameError> {
    let Some(size) = frame::read_size(reader, max).await? else { return Ok(None) };
    read_payload(reader, size, budget).await.map(Some)
}

/// Reads a `size`-byte payload in pieces of at most `REQUEST_READ_CHUNK_BYTES`, taking budget for
/// each piece once it has arrived: a connection holds budget only for bytes it really sent, and
/// while it waits for room it stops reading (backpressure on the socket). The pieces go straight
/// from the socket into the buffer's spare capacity (`SocketReader::read_append`: no zeroing), so
/// memory is touched only as data arrives and an announced size alone takes none: up to
/// `REQUEST_RESERVE_AHEAD_BYTES_MAX` is only reserved (address space) at once, so a common
/// request is never moved by a reallocation; a larger one grows by doubling.
async fn read_payload<R: AsyncRead + Unpin>(reader: &mut SocketReader<R>, size: usize, budget: &Rc<RequestBudget>) -> Result<(Bytes, Held), FrameError> {
    let mut held = budget.hold(size);
    let mut payload = Vec::with_capacity(size.min(REQUEST_RESERVE_AHEAD_BYTES_MAX));
    while payload.len() < size {
        let filled = payload.len();
        let piece = (size - filled).min(REQUEST_READ_CHUNK_BYTES);
        if payload.capacity() < filled + piece {
            // Past the reserve: double from the length (measured with one librdkafka producer of
            // 1 MB batches, growing from nothing copied ~0.8 byte per byte received).
            let capacity = (filled * 2).max(filled + piece).min(size);
            payload.reserve_exact(capacity - filled);
        }
        let n = reader.read_append(&mut payload, piece).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        if filled < 2 && filled + n >= 2 && size > NON_PRODUCE_REQUEST_MAX_BYTES {
            let key = i16::from_be_bytes([payload[0], payload[1]]);
            if key != ApiKey::Produce as i16 {
                return Err(FrameError::TooLargeForApi { key, size, max: NON_PRODUCE_REQUEST_MAX_BYTES });
            }
        }
        held.take(n as u64).await?;
    }
    Ok((Bytes::from(payload), held))
}

async fn handle(shard: &Rc<Shard>, registry: &Rc<Registry>, mut payload: Bytes, peer: Option<SocketAddr>) -> Result<Outgoing, FrameError> {
    let pre = frame::preamble(&payload)?;
    let unknown = |code| {
        crate::metrics::error(-1, code);
        FrameError::UnknownApi(pre.api_key)
    };
    let key = ApiKey::try_from(pre.api_key).map_err(|_| unknown(super::errors::INVALID_REQUEST))?;
    let Some(api) = registry.get(key) else { return Err(unknown(super::errors::INVALID_REQUEST)) };
    let timer = crate::metrics::InFlight::start(pre.api_key);
    if !api.supports(pre.api_version) {
        crate::metrics::error(pre.api_key, super::errors::UNSUPPORTED_VERSION);
        if key == ApiKey::ApiVersions {
            // Answer at v0 with the error and our ranges, so the client can step down.
            let body = registry.unsupported_version_response();
            return Ok(Outgoing { correlation_id: pre.correlation_id, header_version: 0, body: async move { Some(body) }.boxed_local(), held: None, timer });
        }
        return Err(FrameError::Header(format!(
            "{key:?} v{} not supported (we serve {}..={})",
            pre.api_version, api.versions.min, api.versions.max
        )));
    }
    let header = frame::decode_header(key, pre.api_version, &mut payload).inspect_err(|_| crate::metrics::error(pre.api_key, super::errors::INVALID_REQUEST))?;
    let header_version = key.response_header_version(pre.api_version);
    let req = Request { shard: shard.clone(), peer, registry: registry.clone(), version: pre.api_version, header, body: payload };
    let body = match (api.handle)(req).await {
        Ok(Reply::Now(body)) => async move { Some(body) }.boxed_local(),
        Ok(Reply::Later(fut)) => fut.map(Some).boxed_local(),
        Ok(Reply::Nothing) => async { None }.boxed_local(),
        Err(e) => {
            crate::metrics::error(pre.api_key, super::errors::INVALID_REQUEST);
            return Err(FrameError::Header(format!("{key:?} v{}: {e}", pre.api_version)));
        }
    };
    Ok(Outgoing { correlation_id: pre.correlation_id, header_version, body, held: None, timer })
}

/// Writes responses in request order. Buffered responses are flushed before waiting for
/// anything (the next request, or the next response's body): responses that are ready together
/// share one syscall, and none waits behind a slower one it has no need to wait for.
async fn write_loop<W: AsyncWrite + Unpin>(rx: LocalReceiver<Outgoing>, writer: W, activity: Rc<Activity>) {
    let mut writer = BufWriter::with_capacity(CONNECTION_READ_BUFFER_BYTES, writer);
    if let Err(e) = write_responses(&rx, &mut writer, &activity).await {
        tracing::debug!("write failed, closing connection: {e}");
        return;
    }
    let _ = writer.flush().await;
    let _ = writer.close().await;
}

async fn write_responses<W: AsyncWrite + Unpin>(rx: &LocalReceiver<Outgoing>, writer: &mut BufWriter<W>, activity: &Activity) -> std::io::Result<()> {
    loop {
        let out = match rx.recv().now_or_never() {
            Some(Some(out)) => out,
            Some(None) => return Ok(()),
            None => {
                writer.flush().await?;
                match rx.recv().await {
                    Some(out) => out,
                    None => return Ok(()),
                }
            }
        };
        let Outgoing { correlation_id, header_version, mut body, held, timer } = out;
        let body = match (&mut body).now_or_never() {
            Some(ready) => ready,
            None => {
                writer.flush().await?;
                body.await
            }
        };
        if let Some(body) = body {
            let len = body.iter().map(Bytes::len).sum();
            writer.write_all(&frame::response_prefix(correlation_id, header_version, len)).await?;
            for chunk in &body {
                writer.write_all(chunk).await?;
            }
        } // else acks=0: no response
        timer.finish();
        drop(held);
        activity.in_flight.set(activity.in_flight.get() - 1);
        activity.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run;
    use glommio::sync::Semaphore;

    #[test]
    fn connection_payload_is_assembled_and_charged_as_it_arrives() {
        run(|| async {
            let main = Rc::new(Semaphore::new(64 << 20));
            let budget = RequestBudget::with_reserve(main.clone(), 0);
            let size = 3 * REQUEST_READ_CHUNK_BYTES + 12_345;
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut reader = SocketReader::new(futures::io::Cursor::new(data.clone()), None, CONNECTION_READ_BUFFER_BYTES);
            let (payload, held) = read_payload(&mut reader, size, &budget).await.unwrap();
            assert_eq!(&payload[..], &data[..]);
            assert_eq!(held.units(), (size as u64, 0, false));
            assert_eq!(main.available(), (64 << 20) - size as u64);
            drop(held);
            assert_eq!(main.available(), 64 << 20);
        });
    }

    /// The socket path (payload read straight from the descriptor): a peer that resets the
    /// connection partway through a payload ends the read with ECONNRESET (not a clean end, not
    /// a hang), and the bytes that arrived give their budget back.
    #[test]
    fn connection_payload_cut_by_a_reset_returns_its_budget() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        run(|| async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (connected_tx, connected) = std::sync::mpsc::channel::<()>();
            let peer = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                // A reset before the client's connect completed would fail the connect instead.
                connected.recv().unwrap();
                let mut head = vec![0u8; 2]; // Produce: the one API allowed this large
                head.resize(100_000, 7); // fits the socket buffers unread
                s.write_all(&head).unwrap();
                // SO_LINGER 0: close sends a reset instead of a clean end.
                let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                // SAFETY: a valid socket and a linger struct of the size given.
                let rc = unsafe { libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, (&linger as *const libc::linger).cast(), std::mem::size_of::<libc::linger>() as libc::socklen_t) };
                assert_eq!(rc, 0);
            });
            let main = Rc::new(Semaphore::new(64 << 20));
            let budget = RequestBudget::with_reserve(main.clone(), 0);
            let stream = glommio::net::TcpStream::connect(addr).await.unwrap();
            let fd = stream.as_raw_fd();
            let mut reader = SocketReader::new(stream, Some(fd), CONNECTION_READ_BUFFER_BYTES);
            connected_tx.send(()).unwrap();
            peer.join().unwrap(); // the reset has been sent: the direct `recv` meets it
            glommio::timer::sleep(Duration::from_millis(20)).await;
            let r = read_payload(&mut reader, 1 << 20, &budget).await;
            match r {
                Err(FrameError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
                other => panic!("expected an I/O error, got {:?}", other.map(|(p, _)| p.len())),
            }
            assert_eq!(main.available(), 64 << 20, "a request cut short holds nothing");
        });
    }

    #[test]
    fn connection_truncated_payload_returns_its_budget() {
        run(|| async {
            let main = Rc::new(Semaphore::new(1 << 20));
            let budget = RequestBudget::with_reserve(main.clone(), 0);
            let mut head = vec![0u8; 2]; // Produce: the one API allowed this large
            head.extend_from_slice(&[7u8; 998]);
            let mut reader = SocketReader::new(futures::io::Cursor::new(head), None, CONNECTION_READ_BUFFER_BYTES);
            let r = read_payload(&mut reader, 100 << 20, &budget).await;
            assert!(matches!(r, Err(FrameError::Io(ref e)) if e.kind() == std::io::ErrorKind::UnexpectedEof));
            assert_eq!(main.available(), 1 << 20, "a request cut short holds nothing");
        });
    }
}
