//! One client connection: a reader that decodes requests and runs each handler's in-order phase,
//! and a writer that sends responses in request order as their second phase completes. At most
//! `CONNECTION_IN_FLIGHT_MAX` requests are between the two (backpressure on the socket).

use super::api::{Registry, Reply, Request};
use super::frame::{self, FrameError};
use crate::constants::{CONNECTION_IN_FLIGHT_MAX, CONNECTION_READ_BUFFER_BYTES, SHARD_REQUEST_BYTES_IN_FLIGHT_MAX};
use glommio::sync::StaticPermit;
use crate::shard::Shard;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::io::{BufReader, BufWriter};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use glommio::channels::local_channel::{self, LocalReceiver};
use kafka_protocol::messages::ApiKey;
use std::net::SocketAddr;
use std::rc::Rc;

/// A response on its way: its correlation id, header version and the body once ready. The
/// request's share of the shard's memory budget is returned when the response is written.
struct Outgoing {
    correlation_id: i32,
    header_version: i16,
    body: LocalBoxFuture<'static, Option<Vec<Bytes>>>,
    permit: Option<StaticPermit>,
}

pub async fn serve<S>(shard: Rc<Shard>, registry: Rc<Registry>, stream: S, peer: Option<SocketAddr>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (reader, writer) = stream.split();
    let mut reader = BufReader::with_capacity(CONNECTION_READ_BUFFER_BYTES, reader);
    let (tx, rx) = local_channel::new_bounded(CONNECTION_IN_FLIGHT_MAX);
    let writer_task = glommio::spawn_local(write_loop(rx, writer));
    let max = shard.config.socket_request_max_bytes;
    loop {
        let payload = match read_request(&shard, &mut reader, max).await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!(?peer, "connection closed: {e}");
                break;
            }
            Err(e) => {
                tracing::warn!(?peer, "closing connection: {e}");
                break;
            }
        };
        let (payload, permit) = payload;
        match handle(&shard, &registry, payload).await {
            Ok(mut out) => {
                out.permit = Some(permit);
                if tx.send(out).await.is_err() {
                    break; // writer failed: the socket is gone
                }
            }
            Err(e) => {
                tracing::warn!(?peer, "closing connection: {e}");
                break;
            }
        }
    }
    drop(tx);
    writer_task.await;
}

/// Reads one request once the shard's request-memory budget has room for it.
async fn read_request<R: AsyncRead + Unpin>(shard: &Rc<Shard>, reader: &mut R, max: usize) -> Result<Option<(Bytes, StaticPermit)>, FrameError> {
    let Some(size) = frame::read_size(reader, max).await? else { return Ok(None) };
    let units = (size as u64).min(SHARD_REQUEST_BYTES_IN_FLIGHT_MAX);
    let permit = shard.request_budget.acquire_static_permit(units).await
        .map_err(|e| FrameError::Header(format!("request budget closed: {e}")))?;
    let payload = frame::read_payload(reader, size).await?;
    Ok(Some((payload, permit)))
}

async fn handle(shard: &Rc<Shard>, registry: &Rc<Registry>, mut payload: Bytes) -> Result<Outgoing, FrameError> {
    let pre = frame::preamble(&payload)?;
    let key = ApiKey::try_from(pre.api_key).map_err(|_| FrameError::UnknownApi(pre.api_key))?;
    let Some(api) = registry.get(key) else { return Err(FrameError::UnknownApi(pre.api_key)) };
    if !api.supports(pre.api_version) {
        if key == ApiKey::ApiVersions {
            // Answer at v0 with the error and our ranges, so the client can step down.
            let body = registry.unsupported_version_response();
            return Ok(Outgoing { correlation_id: pre.correlation_id, header_version: 0, body: async move { Some(body) }.boxed_local(), permit: None });
        }
        return Err(FrameError::Header(format!(
            "{key:?} v{} not supported (we serve {}..={})",
            pre.api_version, api.versions.min, api.versions.max
        )));
    }
    let header = frame::decode_header(key, pre.api_version, &mut payload)?;
    let header_version = key.response_header_version(pre.api_version);
    let req = Request { shard: shard.clone(), registry: registry.clone(), version: pre.api_version, header, body: payload };
    let body = match (api.handle)(req).await {
        Ok(Reply::Now(body)) => async move { Some(body) }.boxed_local(),
        Ok(Reply::Later(fut)) => fut.map(Some).boxed_local(),
        Ok(Reply::Nothing) => async { None }.boxed_local(),
        Err(e) => return Err(FrameError::Header(format!("{key:?} v{}: {e}", pre.api_version))),
    };
    Ok(Outgoing { correlation_id: pre.correlation_id, header_version, body, permit: None })
}

/// Writes responses in request order. Buffered responses are flushed before waiting for
/// anything (the next request, or the next response's body): responses that are ready together
/// share one syscall, and none waits behind a slower one it has no need to wait for.
async fn write_loop<W: AsyncWrite + Unpin>(rx: LocalReceiver<Outgoing>, writer: W) {
    let mut writer = BufWriter::with_capacity(CONNECTION_READ_BUFFER_BYTES, writer);
    if let Err(e) = write_responses(&rx, &mut writer).await {
        tracing::debug!("write failed, closing connection: {e}");
        return;
    }
    let _ = writer.flush().await;
    let _ = writer.close().await;
}

async fn write_responses<W: AsyncWrite + Unpin>(rx: &LocalReceiver<Outgoing>, writer: &mut BufWriter<W>) -> std::io::Result<()> {
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
        let mut body = out.body;
        let body = match (&mut body).now_or_never() {
            Some(ready) => ready,
            None => {
                writer.flush().await?;
                body.await
            }
        };
        let Some(body) = body else { continue }; // acks=0: no response
        let len = body.iter().map(Bytes::len).sum();
        writer.write_all(&frame::response_prefix(out.correlation_id, out.header_version, len)).await?;
        for chunk in &body {
            writer.write_all(chunk).await?;
        }
    }
}
