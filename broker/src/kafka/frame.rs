//! Request framing: a 4-byte big-endian size, then the request header and body.
//! Pure functions over bytes, shared by the connection loop and the protocol tests.

use bytes::{BufMut, Bytes, BytesMut};
use futures::{AsyncRead, AsyncReadExt};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request of {size} bytes is over socket.request.max.bytes ({max})")]
    TooLarge { size: i64, max: usize },
    #[error("request of API key {key} of {size} bytes: only Produce requests may be over {max} bytes")]
    TooLargeForApi { key: i16, size: usize, max: usize },
    #[error("negative request size {0}")]
    Negative(i32),
    #[error("request too short for a header ({0} bytes)")]
    Short(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("malformed request header: {0}")]
    Header(String),
    #[error("request not received within request.read.timeout.ms ({} ms)", .0.as_millis())]
    ReadTimeout(std::time::Duration),
    #[error(transparent)]
    Budget(#[from] super::budget::BudgetClosed),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame's payload; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Result<Option<Bytes>, FrameError> {
    match read_size(reader, max).await? {
        Some(size) => Ok(Some(read_payload(reader, size).await?)),
        None => Ok(None),
    }
}

/// Reads and checks a frame's size prefix; `Ok(None)` on a clean end of stream.
pub async fn read_size<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Result<Option<usize>, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    if size as usize > max {
        return Err(FrameError::TooLarge { size: i64::from(size), max });
    }
    Ok(Some(size as usize))
}

pub async fn read_payload<R: AsyncRead + Unpin>(reader: &mut R, size: usize) -> Result<Bytes, FrameError> {
    let mut payload = vec![0u8; size];
    reader.read_exact(&mut payload).await?;
    Ok(Bytes::from(payload))
}

/// The fixed start of every request header, readable before the version is known to be supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

pub fn preamble(payload: &[u8]) -> Result<Preamble, FrameError> {
    if payload.len() < 8 {
        return Err(FrameError::Short(payload.len()));
    }
    Ok(Preamble {
        api_key: i16::from_be_bytes([payload[0], payload[1]]),
        api_version: i16::from_be_bytes([payload[2], payload[3]]),
        correlation_id: i32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]),
    })
}

/// Decodes the request header; leaves `payload` at the start of the body.
pub fn decode_header(key: ApiKey, version: i16, payload: &mut Bytes) -> Result<RequestHeader, FrameError> {
    let header_version = key.request_header_version(version);
    RequestHeader::decode(payload, header_version).map_err(|e| FrameError::Header(e.to_string()))
}

/// Size prefix and response header for a body of `body_len` bytes.
pub fn response_prefix(correlation_id: i32, header_version: i16, body_len: usize) -> BytesMut {
    let header_len = if header_version >= 1 { 5 } else { 4 };
    let mut buf = BytesMut::with_capacity(4 + header_len);
    buf.put_i32((header_len + body_len) as i32);
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0); // no tagged fields
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_preamble_reads_fixed_fields() {
        let p = preamble(&[0, 18, 0, 3, 0, 0, 0, 42, 0xff]).unwrap();
        assert_eq!(p, Preamble { api_key: 18, api_version: 3, correlation_id: 42 });
        assert!(matches!(preamble(&[0, 1]), Err(FrameError::Short(2))));
    }

    #[test]
    fn frame_rejects_oversized_and_negative_sizes() {
        let big = [0x7f, 0xff, 0xff, 0xff];
        let r = futures::executor::block_on(read_frame(&mut &big[..], 1024));
        assert!(matches!(r, Err(FrameError::TooLarge { .. })));
        let neg = [0xff, 0xff, 0xff, 0xfe];
        let r = futures::executor::block_on(read_frame(&mut &neg[..], 1024));
        assert!(matches!(r, Err(FrameError::Negative(-2))));
        let r = futures::executor::block_on(read_frame(&mut &[][..], 1024)).unwrap();
        assert!(r.is_none(), "clean EOF between frames");
        let truncated = [0, 0, 0, 9, 1, 2];
        assert!(futures::executor::block_on(read_frame(&mut &truncated[..], 1024)).is_err());
    }

    #[test]
    fn frame_response_prefix_golden() {
        assert_eq!(&response_prefix(7, 0, 10)[..], &[0, 0, 0, 14, 0, 0, 0, 7]);
        assert_eq!(&response_prefix(7, 1, 10)[..], &[0, 0, 0, 15, 0, 0, 0, 7, 0]);
    }
}
