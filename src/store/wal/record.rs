//! The record wire format: a fixed header (magic, version, sequence, length, crc) and a payload.

use bytes::BufMut;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::component::TraceBatch;

/// Every record starts with these bytes.
pub const MAGIC: [u8; 4] = *b"SLWL";
/// The record format version this code writes and reads.
pub const VERSION: u16 = 1;
/// magic (4) + version (2) + flags (2) + seq (8) + payload length (4) + crc32 (4).
pub const HEADER_LEN: usize = 24;
/// The crc covers the header up to the crc field, then the payload.
const CRC_OFFSET: usize = 20;

/// Where one valid record lies in its segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLoc {
    pub seq: u64,
    /// Offset of the header in the file.
    pub offset: u64,
    /// Header plus payload.
    pub len: u64,
}

impl RecordLoc {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Why the bytes at some offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The header or payload runs past the end of the file: a write was cut short.
    Partial,
    BadMagic,
    BadVersion(u16),
    BadChecksum,
    /// The sequence number does not follow the previous record's.
    SeqNotIncreasing,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Partial => write!(f, "partial record"),
            Damage::BadMagic => write!(f, "bad magic"),
            Damage::BadVersion(v) => write!(f, "unknown record version {v}"),
            Damage::BadChecksum => write!(f, "checksum mismatch"),
            Damage::SeqNotIncreasing => write!(f, "sequence number does not increase"),
        }
    }
}

/// Encodes a batch as one record: the payload is the `ExportTraceServiceRequest` wire form,
/// the batch's own bytes when it still has them (a batch straight from a receiver), else
/// written field by field so the batch's spans are not cloned. `payload_len` is the
/// batch's `payload_len`, at most `u32::MAX`.
/// The caller reuses `buf` between records; it is cleared first.
pub fn encode_into(buf: &mut Vec<u8>, seq: u64, batch: &TraceBatch, payload_len: usize) {
    buf.clear();
    buf.reserve(HEADER_LEN + payload_len);
    buf.put_slice(&MAGIC);
    buf.put_u16_le(VERSION);
    buf.put_u16_le(0);
    buf.put_u64_le(seq);
    buf.put_u32_le(u32::try_from(payload_len).unwrap_or(u32::MAX));
    buf.put_u32_le(0);
    batch.encode_request_into(buf);
    let crc = checksum(&buf[..CRC_OFFSET], &buf[HEADER_LEN..]);
    buf[CRC_OFFSET..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// The encoded size of a batch's record, computed without encoding it.
#[cfg(test)]
pub fn record_len(batch: &TraceBatch) -> u64 {
    (HEADER_LEN + payload_len(batch)) as u64
}

/// The payload size of a batch's record.
pub fn payload_len(batch: &TraceBatch) -> usize {
    batch.encoded_request_len()
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

/// Parses the record at `pos` of `buf`, which must carry a sequence number above `prev`.
pub fn parse_at(buf: &[u8], pos: usize, prev: u64) -> Result<RecordLoc, Damage> {
    let header = buf.get(pos..pos + HEADER_LEN).ok_or(Damage::Partial)?;
    if header[..4] != MAGIC {
        return Err(Damage::BadMagic);
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != VERSION {
        return Err(Damage::BadVersion(version));
    }
    let seq = u64::from_le_bytes(field(header, 8));
    let len = u32::from_le_bytes(field(header, 16)) as usize;
    let stored_crc = u32::from_le_bytes(field(header, CRC_OFFSET));
    let payload_start = pos + HEADER_LEN;
    let payload = buf
        .get(payload_start..payload_start + len)
        .ok_or(Damage::Partial)?;
    if checksum(&header[..CRC_OFFSET], payload) != stored_crc {
        return Err(Damage::BadChecksum);
    }
    if seq <= prev {
        return Err(Damage::SeqNotIncreasing);
    }
    Ok(RecordLoc {
        seq,
        offset: pos as u64,
        len: (HEADER_LEN + len) as u64,
    })
}

fn field<const N: usize>(header: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&header[at..at + N]);
    out
}

/// True when a valid record (magic, version, checksum, sequence above `prev`) starts
/// anywhere in `buf` from `from` on. Tells a damaged record in the middle of a segment
/// from a torn tail; the record found is never trusted as data.
pub fn valid_record_after(buf: &[u8], from: usize, prev: u64) -> bool {
    let mut pos = from;
    while let Some(found) = find_magic(buf, pos) {
        if parse_at(buf, found, prev).is_ok() {
            return true;
        }
        pos = found + 1;
    }
    false
}

fn find_magic(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    rest.windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .map(|i| from + i)
}

/// Decodes a validated record (header and payload) back into a batch.
pub fn decode(record: &[u8]) -> Result<TraceBatch, prost::DecodeError> {
    let payload = &record[HEADER_LEN.min(record.len())..];
    let request = ExportTraceServiceRequest::decode(payload)?;
    Ok(TraceBatch::new(request.resource_spans, payload.len()))
}
