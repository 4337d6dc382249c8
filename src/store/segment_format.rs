//! The bytes of a segment file, as plain data: no disk here (`segments.rs`
//! does the I/O).
//!
//! A segment is an append-only file of block records after a 16-byte header:
//!
//! | bytes  | file header                       |
//! |--------|-----------------------------------|
//! | 0..8   | magic `DHTFSSEG`                  |
//! | 8..12  | format, u32 big-endian, always 1  |
//! | 12..16 | the segment's id, u32 big-endian  |
//!
//! | bytes    | record                                      |
//! |----------|---------------------------------------------|
//! | 0..2     | magic `BK`                                  |
//! | 2        | flags, always 0                             |
//! | 3        | reserved, always 0                          |
//! | 4..8     | the block's length, u32 big-endian          |
//! | 8..40    | the block's key: sha256 of its bytes        |
//! | 40..     | the block's bytes                           |
//!
//! The key is the record's checksum: a record is whole exactly when its
//! header parses, all its bytes are there, and they hash to its key. A crash
//! can leave a torn record (or zeros) only at the end of the file, past what
//! was last made durable; a scan stops at the first record that is not whole.

use crate::id::{Id, ID_LEN};

/// Length of a segment file's header.
pub(crate) const FILE_HEADER_LEN: u64 = 16;
/// Length of a record's header.
pub(crate) const RECORD_HEADER_LEN: u64 = 8 + ID_LEN as u64;

const FILE_MAGIC: &[u8; 8] = b"DHTFSSEG";
const FILE_FORMAT: u32 = 1;
const RECORD_MAGIC: &[u8; 2] = b"BK";

/// A segment file's header for segment `id`.
pub(crate) fn file_header(id: u32) -> [u8; FILE_HEADER_LEN as usize] {
    let mut out = [0u8; FILE_HEADER_LEN as usize];
    out[0..8].copy_from_slice(FILE_MAGIC);
    out[8..12].copy_from_slice(&FILE_FORMAT.to_be_bytes());
    out[12..16].copy_from_slice(&id.to_be_bytes());
    out
}

/// The segment id a file header names; `None` for anything
/// [`file_header`] would not write.
pub(crate) fn parse_file_header(bytes: &[u8]) -> Option<u32> {
    let bytes: &[u8; FILE_HEADER_LEN as usize] = bytes.try_into().ok()?;
    if &bytes[0..8] != FILE_MAGIC || bytes[8..12] != FILE_FORMAT.to_be_bytes() {
        return None;
    }
    Some(u32::from_be_bytes(bytes[12..16].try_into().ok()?))
}

/// A record's header for block `key` of `len` bytes.
pub(crate) fn record_header(key: &Id, len: u32) -> [u8; RECORD_HEADER_LEN as usize] {
    let mut out = [0u8; RECORD_HEADER_LEN as usize];
    out[0..2].copy_from_slice(RECORD_MAGIC);
    out[4..8].copy_from_slice(&len.to_be_bytes());
    out[8..].copy_from_slice(&key.0);
    out
}

/// What a record header says, before its bytes are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub key: Id,
    pub len: u32,
}

/// Parses a record header, refusing one whose block is longer than
/// `max_len`; `None` for anything [`record_header`] would not write (zeros
/// left by a crash included).
pub(crate) fn parse_record_header(bytes: &[u8], max_len: u64) -> Option<RecordHeader> {
    let bytes: &[u8; RECORD_HEADER_LEN as usize] = bytes.try_into().ok()?;
    if &bytes[0..2] != RECORD_MAGIC || bytes[2] != 0 || bytes[3] != 0 {
        return None;
    }
    let len = u32::from_be_bytes(bytes[4..8].try_into().ok()?);
    if u64::from(len) > max_len {
        return None;
    }
    let key = Id(bytes[8..].try_into().ok()?);
    Some(RecordHeader { key, len })
}

/// Where a record of a `len`-byte block written at `at` ends.
pub(crate) fn record_end(at: u64, len: u32) -> u64 {
    at + RECORD_HEADER_LEN + u64::from(len)
}

/// One whole record found by a scan: its key, where its block's bytes start,
/// and their length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub key: Id,
    pub data_at: u64,
    pub len: u32,
}

/// The whole records in `bytes`, which are a segment's bytes from offset
/// `at` on (a record boundary), and where the whole records end: the first
/// record that is not whole, and everything after it, is a torn tail.
pub(crate) fn scan(bytes: &[u8], at: u64, max_len: u64) -> (Vec<Found>, u64) {
    let mut found = Vec::new();
    let mut pos = 0usize;
    let header = RECORD_HEADER_LEN as usize;
    while let Some(h) = bytes
        .get(pos..pos + header)
        .and_then(|b| parse_record_header(b, max_len))
    {
        let start = pos + header;
        let Some(data) = bytes.get(start..start + h.len as usize) else {
            break;
        };
        if Id::of_block(data) != h.key {
            break;
        }
        found.push(Found {
            key: h.key,
            data_at: at + start as u64,
            len: h.len,
        });
        pos = start + h.len as usize;
    }
    (found, at + pos as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &[u8]) -> Vec<u8> {
        let key = Id::of_block(data);
        let mut out = record_header(&key, data.len() as u32).to_vec();
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn a_file_header_round_trips_and_nothing_else_parses() {
        assert_eq!(parse_file_header(&file_header(7)), Some(7));
        let mut bad = file_header(7);
        bad[0] = b'X';
        assert_eq!(parse_file_header(&bad), None);
        let mut newer = file_header(7);
        newer[11] = 2;
        assert_eq!(parse_file_header(&newer), None, "a newer format is refused");
        assert_eq!(parse_file_header(&[0u8; 16]), None);
        assert_eq!(parse_file_header(&file_header(7)[..15]), None);
    }

    #[test]
    fn a_record_header_round_trips_within_the_length_cap() {
        let key = Id::of_block(b"x");
        let h = record_header(&key, 1);
        assert_eq!(
            parse_record_header(&h, 10),
            Some(RecordHeader { key, len: 1 })
        );
        let big = record_header(&key, 11);
        assert_eq!(parse_record_header(&big, 10), None, "over the cap");
        assert_eq!(parse_record_header(&[0u8; 40], 10), None, "zeros");
        let mut flagged = h;
        flagged[2] = 1;
        assert_eq!(parse_record_header(&flagged, 10), None, "unknown flag");
    }

    #[test]
    fn a_scan_finds_every_whole_record_and_where_they_end() {
        let mut seg = record(b"one");
        seg.extend(record(b""));
        seg.extend(record(&[7u8; 5000]));
        let (found, end) = scan(&seg, 16, 1 << 20);
        assert_eq!(end, 16 + seg.len() as u64);
        let keys: Vec<Id> = found.iter().map(|f| f.key).collect();
        assert_eq!(
            keys,
            [
                Id::of_block(b"one"),
                Id::of_block(b""),
                Id::of_block(&[7u8; 5000])
            ]
        );
        assert_eq!(found[0].data_at, 16 + RECORD_HEADER_LEN);
        assert_eq!(found[0].len, 3);
        assert_eq!(found[2].data_at, found[1].data_at + RECORD_HEADER_LEN);
    }

    #[test]
    fn a_torn_or_damaged_tail_ends_the_scan_at_the_last_whole_record() {
        let first = record(b"kept");
        let second = record(&[9u8; 100]);
        let whole = first.len() + second.len();
        let mut seg = first.clone();
        seg.extend(&second);
        // Cut anywhere inside the second record: only the first is whole.
        for cut in first.len()..whole {
            let (found, end) = scan(&seg[..cut], 0, 1 << 20);
            assert_eq!(found.len(), 1, "cut at {cut}");
            assert_eq!(end, first.len() as u64);
        }
        // A flipped byte in the second record's bytes, or zeros after it.
        let mut flipped = seg.clone();
        flipped[whole - 1] ^= 1;
        assert_eq!(scan(&flipped, 0, 1 << 20).1, first.len() as u64);
        let mut zeros = seg.clone();
        zeros.extend([0u8; 4096]);
        assert_eq!(scan(&zeros, 0, 1 << 20).1, whole as u64);
    }

    #[test]
    fn a_record_longer_than_the_cap_is_not_whole() {
        let seg = record(&[1u8; 100]);
        assert_eq!(scan(&seg, 0, 99), (Vec::new(), 0));
    }
}
