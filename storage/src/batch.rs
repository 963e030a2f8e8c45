//! Kafka v2 record batch header parsing and validation. Only the 61-byte header is parsed;
//! records are never decoded.

use bytes::Bytes;

use crate::constants::*;
use crate::error::{Error, Result};

const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Parsed 61-byte v2 record batch header (no record decoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Header size in bytes.
    pub const SIZE: usize = BATCH_HEADER_BYTES;

    /// Parses the header fields from the first 61 bytes of `buf` (header only; no checks
    /// beyond the length of `buf`).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        if buf.len() < Self::SIZE {
            return Err(Error::CorruptBatch(format!(
                "{} bytes is shorter than a batch header",
                buf.len()
            )));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    /// Total bytes of the batch on the wire / on disk: 12 + batch_length.
    pub fn total_size(&self) -> usize {
        BATCH_LOG_OVERHEAD_BYTES + self.batch_length.max(0) as usize
    }

    /// Offset of the last record of the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset following the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Structural checks that need only the header: magic, length and offset delta sanity.
    pub(crate) fn check_shape(&self) -> Result<()> {
        if self.magic != BATCH_MAGIC_V2 {
            return Err(Error::CorruptBatch(format!("unsupported magic {}", self.magic)));
        }
        if (self.batch_length as i64) < (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i64 {
            return Err(Error::CorruptBatch(format!("batch length {} too small", self.batch_length)));
        }
        if self.last_offset_delta < 0 || self.records_count < 0 {
            return Err(Error::CorruptBatch(format!(
                "bad last_offset_delta {} / records_count {}",
                self.last_offset_delta, self.records_count
            )));
        }
        Ok(())
    }
}

/// CRC-32C over attributes..end of one whole batch.
pub(crate) fn batch_crc(batch: &[u8]) -> u32 {
    debug_assert!(batch.len() >= BATCH_HEADER_BYTES);
    crc32c::crc32c(&batch[BATCH_CRC_START_BYTES..])
}

/// Parses and fully validates the batch at the start of `buf` (shape + CRC); returns its header.
/// `buf` may extend beyond the batch.
pub(crate) fn validate_one(buf: &[u8]) -> Result<BatchHeader> {
    let header = BatchHeader::parse(buf)?;
    header.check_shape()?;
    let size = header.total_size();
    if size > buf.len() {
        return Err(Error::CorruptBatch(format!(
            "batch length {} exceeds the {} bytes available",
            size,
            buf.len()
        )));
    }
    let crc = batch_crc(&buf[..size]);
    if crc != header.crc {
        return Err(Error::CorruptBatch(format!(
            "crc mismatch at base offset {}: stored {:#010x}, computed {:#010x}",
            header.base_offset, header.crc, crc
        )));
    }
    Ok(header)
}

/// Split `records` (one or more concatenated v2 batches as received on the wire) and validate each
/// (magic 2, lengths consistent, CRC-32C over attributes..end). All-or-nothing.
pub fn validate_batches(records: &Bytes) -> Result<Vec<BatchHeader>> {
    if records.is_empty() {
        return Err(Error::CorruptBatch("empty record set".into()));
    }
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let header = validate_one(&records[pos..])?;
        if header.records_count == 0 {
            return Err(Error::CorruptBatch("batch without records".into()));
        }
        pos += header.total_size();
        headers.push(header);
    }
    debug_assert_eq!(pos, records.len());
    Ok(headers)
}

/// Overwrites the base offset (first 8 bytes, not covered by the CRC) of a batch.
pub(crate) fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Stamps the partition leader epoch (bytes 12..16; outside the CRC, like the base offset).
pub(crate) fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}
