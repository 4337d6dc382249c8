//! The TCP block frame, as pure functions over buffers.
//!
//! A client writes `<64 hex key>\n`; a server that holds the block answers with
//! its length as 4 bytes little-endian, then `\n`, then the bytes; one that does
//! not closes without writing. Readers take exactly 4 length bytes and then
//! check the newline: a line reader breaks on lengths whose bytes contain 0x0A.

use crate::id::{Id, IdError};

/// Longest key line we wait for: 64 hex digits, `\r\n`, and some slack for
/// stray whitespace. Anything longer is refused at once.
pub const MAX_KEY_LINE: usize = 80;
/// Bytes in a frame header: 4 length bytes and a newline.
pub const HEADER_LEN: usize = 5;

/// What a buffer holds at its start.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyLine {
    /// No newline yet, and still within bounds: read more.
    Incomplete,
    /// A whole line of `consumed` bytes (newline included).
    Line {
        key: Result<Id, IdError>,
        consumed: usize,
    },
    /// No newline within [`MAX_KEY_LINE`] bytes.
    TooLong,
}

/// Looks for a key line at the start of `buf`.
pub fn parse_key_line(buf: &[u8]) -> KeyLine {
    match buf.iter().take(MAX_KEY_LINE).position(|&b| b == b'\n') {
        Some(pos) => {
            let line = String::from_utf8_lossy(&buf[..pos]);
            KeyLine::Line {
                key: Id::from_hex(line.trim()),
                consumed: pos + 1,
            }
        }
        None if buf.len() >= MAX_KEY_LINE => KeyLine::TooLong,
        None => KeyLine::Incomplete,
    }
}

/// The line a client sends to ask for `key`.
pub fn encode_key_line(key: &Id) -> Vec<u8> {
    let mut line = key.to_hex().into_bytes();
    line.push(b'\n');
    line
}

/// The header a server sends before `len` bytes.
pub fn encode_header(len: u32) -> [u8; HEADER_LEN] {
    let b = len.to_le_bytes();
    [b[0], b[1], b[2], b[3], b'\n']
}

/// Why a frame header is not acceptable.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame header lacks the newline after the 4 length bytes")]
    NoNewline,
    #[error("block of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: u64, max: u64 },
}

/// Reads a header: the length, checked against `max`.
pub fn parse_header(h: &[u8; HEADER_LEN], max: u64) -> Result<u32, FrameError> {
    if h[4] != b'\n' {
        return Err(FrameError::NoNewline);
    }
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if u64::from(len) > max {
        return Err(FrameError::TooLarge {
            len: len.into(),
            max,
        });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_line_parses_in_either_case_and_with_crlf() {
        let id = Id([0xab; 32]);
        let mut line = encode_key_line(&id);
        line.extend_from_slice(b"rest");
        assert_eq!(
            parse_key_line(&line),
            KeyLine::Line {
                key: Ok(id),
                consumed: 65
            }
        );
        let upper = format!("{}\r\n", id.to_hex().to_uppercase());
        assert!(matches!(
            parse_key_line(upper.as_bytes()),
            KeyLine::Line { key: Ok(k), consumed: 66 } if k == id
        ));
    }

    #[test]
    fn partial_long_and_bad_lines() {
        assert_eq!(parse_key_line(b"abcd"), KeyLine::Incomplete);
        assert_eq!(parse_key_line(&[b'a'; 100_000]), KeyLine::TooLong);
        assert!(matches!(
            parse_key_line(b"xyz\n"),
            KeyLine::Line {
                key: Err(_),
                consumed: 4
            }
        ));
    }

    #[test]
    fn header_with_a_newline_byte_in_the_length_is_read_exactly() {
        // 266 = 0a 01 00 00: a line reader would stop at the first byte.
        let h = encode_header(266);
        assert_eq!(h, [0x0a, 0x01, 0, 0, b'\n']);
        assert_eq!(parse_header(&h, 1 << 20), Ok(266));
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            parse_header(&[1, 0, 0, 0, b'x'], 10),
            Err(FrameError::NoNewline)
        );
        assert_eq!(
            parse_header(&encode_header(11), 10),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
    }
}
