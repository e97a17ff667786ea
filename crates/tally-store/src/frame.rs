//! Binary formats of the segment and leaf files.
//!
//! A **record frame** in a segment is
//! `len: u32 LE | crc: u32 LE | index: u64 LE | record: [u8; len]`, where `crc` is CRC-32C
//! over the record bytes followed by the 8 index bytes (in that order so that the record's CRC
//! can be computed before its index is known). The index inside the frame lets
//! recovery and the verifier notice a frame that was moved, duplicated or dropped without
//! trusting any other file.
//!
//! A **leaf entry** in `leaves` is 56 bytes: `leaf_hash: [u8; 32] | offset: u64 LE | id: [u8; 16]`,
//! entry `i` at byte `56 * i`. `offset` is the logical offset of the record's frame (segment
//! start + position inside it); `id` is the event's UUID. The file is derivable from the
//! segments and exists so that start-up, proofs and id look-ups need no JSON parsing.

use tally_tlog::Hash;

/// The largest record a frame may hold: a record of the largest size, encrypted at rest.
pub const MAX_STORED_RECORD_BYTES: usize =
    tally_event::MAX_RECORD_BYTES + crate::at_rest::RECORD_OVERHEAD;

/// Bytes in a frame header.
pub const FRAME_HEADER: usize = 16;
/// Bytes in one leaf entry.
pub const LEAF_ENTRY: usize = 56;

/// Appends the frame of `record` at leaf `index` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, index: u64, record: &[u8]) {
    encode_frame_with_crc(out, index, record, crc32c::crc32c(record));
}

/// [`encode_frame`] for a caller that already has CRC-32C of the record (computed off the
/// sequencer's thread); only the 8 index bytes are appended to it here.
pub fn encode_frame_with_crc(out: &mut Vec<u8>, index: u64, record: &[u8], record_crc: u32) {
    let len = u32::try_from(record.len()).expect("records are limited to about 64 KiB");
    let crc = crc32c::crc32c_append(record_crc, &index.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(record);
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Record length in bytes.
    pub len: u32,
    /// Stored CRC-32C.
    pub crc: u32,
    /// Leaf index written in the frame.
    pub index: u64,
}

impl FrameHeader {
    /// Parses the 16 header bytes.
    pub fn parse(bytes: &[u8; FRAME_HEADER]) -> Self {
        FrameHeader {
            len: u32::from_le_bytes(bytes[0..4].try_into().unwrap()),
            crc: u32::from_le_bytes(bytes[4..8].try_into().unwrap()),
            index: u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
        }
    }

    /// Whether `record` is the body this header describes.
    pub fn matches(&self, record: &[u8]) -> bool {
        record.len() == self.len as usize
            && crc32c::crc32c_append(crc32c::crc32c(record), &self.index.to_le_bytes()) == self.crc
    }

    /// Total frame size.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER as u64 + u64::from(self.len)
    }
}

/// Outcome of decoding a frame from a byte slice.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, intact frame.
    Frame {
        /// The leaf index in the frame.
        index: u64,
        /// The record bytes.
        record: &'a [u8],
        /// Bytes the frame occupies.
        len: usize,
    },
    /// The slice ends inside the frame.
    Short,
    /// The header or checksum is wrong.
    Bad,
}

/// Decodes the frame at the start of `buf`.
pub fn decode_frame(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < FRAME_HEADER {
        return Decoded::Short;
    }
    let header = FrameHeader::parse(buf[..FRAME_HEADER].try_into().unwrap());
    if header.len as usize > MAX_STORED_RECORD_BYTES {
        return Decoded::Bad;
    }
    let end = FRAME_HEADER + header.len as usize;
    if buf.len() < end {
        return Decoded::Short;
    }
    let record = &buf[FRAME_HEADER..end];
    if !header.matches(record) {
        return Decoded::Bad;
    }
    Decoded::Frame {
        index: header.index,
        record,
        len: end,
    }
}

/// One entry of the `leaves` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafEntry {
    /// RFC 6962 leaf hash of the record bytes.
    pub hash: Hash,
    /// Logical offset of the record's frame.
    pub offset: u64,
    /// The event id.
    pub id: u128,
}

impl LeafEntry {
    /// Appends the 56-byte encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
    }

    /// Decodes one 56-byte entry.
    pub fn decode(bytes: &[u8]) -> Self {
        LeafEntry {
            hash: bytes[0..32].try_into().unwrap(),
            offset: u64::from_le_bytes(bytes[32..40].try_into().unwrap()),
            id: u128::from_be_bytes(bytes[40..56].try_into().unwrap()),
        }
    }
}

// The checkpoints file: one frame per signed note, `len u32 LE | crc32c u32 LE | note`.

/// Encodes a checkpoints-file frame: `len: u32 LE | crc32c: u32 LE | note bytes`.
pub fn encode_checkpoint_frame(note: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + note.len());
    out.extend_from_slice(&(note.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(note.as_bytes()).to_le_bytes());
    out.extend_from_slice(note.as_bytes());
    out
}

/// Reads every checkpoint frame of a checkpoints file, in order. Returns the notes and the
/// length of the intact prefix (a torn last frame is not an error, only not counted).
pub fn read_checkpoint_frames(bytes: &[u8]) -> (Vec<&str>, u64, bool) {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut damaged = false;
    while at < bytes.len() {
        if bytes.len() - at < 8 {
            break;
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let Some(body) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            damaged = true;
            break;
        }
        match std::str::from_utf8(body) {
            Ok(s) => out.push(s),
            Err(_) => {
                damaged = true;
                break;
            }
        }
        at += 8 + len;
    }
    (out, at as u64, damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 42, b"{\"a\":1}");
        assert_eq!(
            decode_frame(&buf),
            Decoded::Frame {
                index: 42,
                record: b"{\"a\":1}",
                len: buf.len()
            }
        );
        for i in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                !matches!(decode_frame(&bad), Decoded::Frame { index: 42, record, .. } if record == b"{\"a\":1}"),
                "flip of bit {i} went unnoticed"
            );
        }
        for cut in 0..buf.len() {
            assert_eq!(decode_frame(&buf[..cut]), Decoded::Short);
        }
    }

    #[test]
    fn a_precomputed_record_crc_gives_the_same_frame() {
        for record in [&b""[..], b"x", b"{\"a\":1}", &[0xffu8; 1000][..]] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            encode_frame(&mut a, 7, record);
            encode_frame_with_crc(&mut b, 7, record, crc32c::crc32c(record));
            assert_eq!(a, b);
            let mut whole = record.to_vec();
            whole.extend_from_slice(&7u64.to_le_bytes());
            let direct = crc32c::crc32c(&whole);
            assert_eq!(u32::from_le_bytes(a[4..8].try_into().unwrap()), direct);
        }
    }

    #[test]
    fn leaf_entry_roundtrip() {
        let e = LeafEntry {
            hash: [7; 32],
            offset: 1 << 40,
            id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        };
        let mut out = Vec::new();
        e.encode(&mut out);
        assert_eq!(out.len(), LEAF_ENTRY);
        assert_eq!(LeafEntry::decode(&out), e);
    }
}
