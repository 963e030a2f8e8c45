//! The records of `__consumer_offsets`, in Kafka's own formats (group-coordinator
//! `OffsetCommitKey`/`OffsetCommitValue`, `GroupMetadataKey`/`GroupMetadataValue`), so tools that
//! decode that topic on Kafka decode it here too.
//!
//! Every key and value starts with its version (int16). The key version names the record type:
//! 0 and 1 are offset commits (group, topic, partition), 2 is group metadata (group). Values:
//! offset commits are written at version 3 (offset, leader epoch, metadata, commit timestamp),
//! or at version 1 when the commit asked for its own retention (v1 carries the expire
//! timestamp); group metadata at version 3. A null value is a tombstone: the key's offset or
//! group is deleted. Compaction keeps the latest value per key, and the reload at start
//! takes the latest value per key in log order, so both see the same state.
//!
//! Decoding accepts every version Kafka defines (values 0-4, v4 being flexible) and reports
//! unknown key versions as `None`, which the reload skips (as Kafka does).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// Kafka's partition of `__consumer_offsets` for a group: `Utils.abs(groupId.hashCode()) %
/// partitions`, with Java's `String.hashCode` (over UTF-16 code units, wrapping) and
/// `Utils.abs` = `& 0x7fffffff` (not `Math.abs`, which leaves `i32::MIN` negative).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (hash & 0x7fff_ffff) % partitions
}

/// Key version written for offset commits (0 and 1 are the same layout).
pub const OFFSET_KEY_VERSION: i16 = 1;
/// Key version of group metadata records.
pub const GROUP_KEY_VERSION: i16 = 2;
/// Offset commit value version written normally.
pub const OFFSET_VALUE_VERSION: i16 = 3;
/// Offset commit value version written when the commit set its own retention (expire timestamp).
pub const OFFSET_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
/// Group metadata value version written.
pub const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecordKey {
    Offset { group: String, topic: String, partition: i32 },
    Group { group: String },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when unknown (and in values before v3).
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Only in v1 values; -1 otherwise.
    pub expire_timestamp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

// ---- encoding ------------------------------------------------------------------------------

fn put_string(buf: &mut BytesMut, s: &str) {
    debug_assert!(s.len() <= i16::MAX as usize);
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

pub fn encode_key(key: &RecordKey) -> Bytes {
    let mut buf = BytesMut::new();
    match key {
        RecordKey::Offset { group, topic, partition } => {
            buf.put_i16(OFFSET_KEY_VERSION);
            put_string(&mut buf, group);
            put_string(&mut buf, topic);
            buf.put_i32(*partition);
        }
        RecordKey::Group { group } => {
            buf.put_i16(GROUP_KEY_VERSION);
            put_string(&mut buf, group);
        }
    }
    buf.freeze()
}

/// Version 3, or version 1 when `expire_timestamp` is set (>= 0), as Kafka writes them.
pub fn encode_offset_value(v: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::new();
    if v.expire_timestamp >= 0 {
        buf.put_i16(OFFSET_VALUE_VERSION_WITH_EXPIRY);
        buf.put_i64(v.offset);
        put_string(&mut buf, &v.metadata);
        buf.put_i64(v.commit_timestamp);
        buf.put_i64(v.expire_timestamp);
    } else {
        buf.put_i16(OFFSET_VALUE_VERSION);
        buf.put_i64(v.offset);
        buf.put_i32(v.leader_epoch);
        put_string(&mut buf, &v.metadata);
        buf.put_i64(v.commit_timestamp);
    }
    buf.freeze()
}

pub fn encode_group_value(v: &GroupValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut buf, &v.protocol_type);
    buf.put_i32(v.generation);
    put_nullable_string(&mut buf, v.protocol.as_deref());
    put_nullable_string(&mut buf, v.leader.as_deref());
    buf.put_i64(v.current_state_timestamp);
    buf.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_string(&mut buf, &m.member_id);
        put_nullable_string(&mut buf, m.group_instance_id.as_deref());
        put_string(&mut buf, &m.client_id);
        put_string(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout);
        buf.put_i32(m.session_timeout);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// One v2 record batch (no compression, no producer id, create-time timestamps `now_ms`), as
/// Kafka's coordinator writes it.
pub fn encode_batch(records: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    // In-memory records into a growable buffer: only a codec bug can fail here.
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode __consumer_offsets batch");
    buf.freeze()
}

// ---- decoding ------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed __consumer_offsets record: {0}")]
pub struct DecodeError(pub &'static str);

struct Reader<'a> {
    buf: &'a [u8],
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn uvarint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            value |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint too long"))
    }

    /// A length: int16/int32 in classic versions, unsigned varint (length + 1) in flexible ones.
    /// `None` = null.
    fn length(&mut self, wide: bool) -> Result<Option<usize>, DecodeError> {
        if self.flexible {
            return Ok(self.uvarint()?.checked_sub(1).map(|n| n as usize));
        }
        let n = if wide { self.i32()? } else { i32::from(self.i16()?) };
        Ok(usize::try_from(n).ok())
    }

    fn nullable_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.length(false)? {
            None => Ok(None),
            Some(n) => {
                let raw = self.take(n)?;
                std::str::from_utf8(raw).map(|s| Some(s.to_string())).map_err(|_| DecodeError("string not UTF-8"))
            }
        }
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.nullable_string()?.ok_or(DecodeError("null string"))
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        match self.length(true)? {
            None => Ok(Bytes::new()),
            Some(n) => Ok(Bytes::copy_from_slice(self.take(n)?)),
        }
    }

    fn array_len(&mut self) -> Result<usize, DecodeError> {
        let n = self.length(true)?.unwrap_or(0);
        // Every element takes at least one byte: a count beyond the bytes left is corrupt.
        if n > self.buf.len() {
            return Err(DecodeError("array count beyond the record"));
        }
        Ok(n)
    }

    /// Skips a tagged-field section (flexible versions only).
    fn tags(&mut self) -> Result<(), DecodeError> {
        if !self.flexible {
            return Ok(());
        }
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let len = self.uvarint()? as usize;
            self.take(len)?;
        }
        Ok(())
    }
}

/// `None` for key versions Kafka uses for other record types (KIP-848 groups, share groups...).
pub fn decode_key(raw: &[u8]) -> Result<Option<RecordKey>, DecodeError> {
    let mut r = Reader { buf: raw, flexible: false };
    match r.i16()? {
        0 | 1 => Ok(Some(RecordKey::Offset { group: r.string()?, topic: r.string()?, partition: r.i32()? })),
        2 => Ok(Some(RecordKey::Group { group: r.string()? })),
        _ => Ok(None),
    }
}

pub fn decode_offset_value(raw: &[u8]) -> Result<OffsetValue, DecodeError> {
    let mut r = Reader { buf: raw, flexible: false };
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return Err(DecodeError("unknown offset commit value version"));
    }
    r.flexible = version >= 4;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp = r.i64()?;
    let expire_timestamp = if version == 1 { r.i64()? } else { -1 };
    r.tags()?;
    Ok(OffsetValue { offset, leader_epoch, metadata, commit_timestamp, expire_timestamp })
}

pub fn decode_group_value(raw: &[u8]) -> Result<GroupValue, DecodeError> {
    let mut r = Reader { buf: raw, flexible: false };
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return Err(DecodeError("unknown group metadata value version"));
    }
    r.flexible = version >= 4;
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let count = r.array_len()?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 { r.nullable_string()? } else { None };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        r.tags()?;
        let rebalance_timeout = if rebalance_timeout < 0 { session_timeout } else { rebalance_timeout };
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout,
            session_timeout,
            subscription,
            assignment,
        });
    }
    r.tags()?;
    Ok(GroupValue { protocol_type, generation, protocol, leader, current_state_timestamp, members })
}

/// The topics a member subscribes to, from its `consumer` protocol metadata: version, then a
/// v0 `ConsumerProtocolSubscription` prefix (every later version extends it). `None` if it does
/// not parse.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader { buf: metadata, flexible: false };
    let _version = r.i16().ok()?;
    let count = r.array_len().ok()?;
    (0..count).map(|_| r.string().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Java's `String.hashCode` of these strings, as the JVM computes it (well-known values:
    /// "hello" is 99162322, "polygenelubricants" is Integer.MIN_VALUE).
    #[test]
    fn groups_partition_for_matches_kafka() {
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        // hashCode = i32::MIN: Math.abs would stay negative; Utils.abs gives 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // A negative hash: "my-group".hashCode() = -1_906_497_762; & 0x7fffffff = 240_985_886.
        assert_eq!(partition_for("my-group", 50), 36);
        assert_eq!(partition_for("group-1", 50), 293_427_299 % 50);
        // Outside the BMP: two UTF-16 code units (D83D DE00), as Java hashes them.
        let h = (0xD83Di32 * 31 + 0xDE00) & 0x7fff_ffff;
        assert_eq!(partition_for("\u{1F600}", 1000), h % 1000);
    }

    /// Bytes written by hand from Kafka's schemas: OffsetCommitKey v1, OffsetCommitValue v3.
    #[test]
    fn groups_records_offset_commit_golden_bytes() {
        let key = encode_key(&RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 2 });
        assert_eq!(&key[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2]);
        let value = encode_offset_value(&OffsetValue {
            offset: 42,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp: 1000,
            expire_timestamp: -1,
        });
        let mut want = vec![0, 3];
        want.extend_from_slice(&42i64.to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&[0, 1, b'm']);
        want.extend_from_slice(&1000i64.to_be_bytes());
        assert_eq!(&value[..], &want[..]);
        assert_eq!(decode_key(&key).unwrap(), Some(RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 2 }));
        assert_eq!(decode_offset_value(&value).unwrap().offset, 42);
    }

    #[test]
    fn groups_records_offset_value_with_expiry_is_v1() {
        let v = OffsetValue { offset: 7, leader_epoch: 3, metadata: String::new(), commit_timestamp: 5, expire_timestamp: 9 };
        let raw = encode_offset_value(&v);
        assert_eq!(&raw[..2], &[0, 1]);
        let back = decode_offset_value(&raw).unwrap();
        assert_eq!((back.offset, back.leader_epoch, back.expire_timestamp), (7, -1, 9), "v1 has no leader epoch");
    }

    #[test]
    fn groups_records_group_metadata_round_trips_and_golden_prefix() {
        let v = GroupValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp: 77,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout: 300_000,
                session_timeout: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"as"),
            }],
        };
        let raw = encode_group_value(&v);
        let mut want = vec![0, 3, 0, 8];
        want.extend_from_slice(b"consumer");
        want.extend_from_slice(&3i32.to_be_bytes());
        want.extend_from_slice(&[0, 5]);
        want.extend_from_slice(b"range");
        want.extend_from_slice(&[0, 2, b'm', b'1']);
        want.extend_from_slice(&77i64.to_be_bytes());
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(&[0, 2, b'm', b'1', 0xff, 0xff, 0, 1, b'c', 0, 10]);
        want.extend_from_slice(b"/127.0.0.1");
        want.extend_from_slice(&300_000i32.to_be_bytes());
        want.extend_from_slice(&45_000i32.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 3, b's', b'u', b'b', 0, 0, 0, 2, b'a', b's']);
        assert_eq!(&raw[..], &want[..]);
        assert_eq!(decode_group_value(&raw).unwrap(), v);
        assert_eq!(&encode_key(&RecordKey::Group { group: "g".into() })[..], &[0, 2, 0, 1, b'g']);
    }

    #[test]
    fn groups_records_decode_flexible_v4_and_refuse_garbage() {
        // OffsetCommitValue v4: compact string metadata ("" = 1), then empty tags.
        let mut raw = vec![0, 4];
        raw.extend_from_slice(&5i64.to_be_bytes());
        raw.extend_from_slice(&2i32.to_be_bytes());
        raw.push(1);
        raw.extend_from_slice(&6i64.to_be_bytes());
        raw.push(0);
        let v = decode_offset_value(&raw).unwrap();
        assert_eq!((v.offset, v.leader_epoch, v.metadata.as_str(), v.commit_timestamp), (5, 2, "", 6));
        assert!(decode_offset_value(&[0, 3, 1]).is_err());
        assert!(decode_group_value(&[0, 9]).is_err());
        assert_eq!(decode_key(&[0, 5, 0, 0]).unwrap(), None, "other record types are skipped");
        let mut huge = vec![0, 0, 0, 1, b'c', 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_group_value(&huge).is_err(), "a hostile member count is refused");
    }

    #[test]
    fn groups_records_subscription_topics() {
        let mut meta = vec![0, 1, 0, 0, 0, 2, 0, 6];
        meta.extend_from_slice(b"orders");
        meta.extend_from_slice(&[0, 8]);
        meta.extend_from_slice(b"payments");
        meta.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // user data null, then v1 fields
        assert_eq!(subscribed_topics(&meta), Some(vec!["orders".to_string(), "payments".to_string()]));
        assert_eq!(subscribed_topics(&[0, 1, 0]), None);
    }
}
