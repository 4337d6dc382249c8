//! The `Range` header (RFC 9110 §14): which part of a representation of a
//! known size a request asks for. Pure; one range per request is served, and
//! anything else the RFC lets a server ignore gets the whole representation.

/// What a `Range` header asks of a representation of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No usable range: answer 200 with every byte.
    Whole,
    /// Bytes `start..end` (end exclusive): answer 206.
    Part { start: u64, end: u64 },
    /// A well-formed range that selects no byte: answer 416.
    Unsatisfiable,
}

/// Reads `header` against a size of `size` bytes. A single `bytes=a-b`,
/// `bytes=a-` or `bytes=-n` is honoured; another unit, a malformed header or
/// several ranges are ignored (the whole, as RFC 9110 §14.2 allows).
pub fn parse_range(header: &str, size: u64) -> Wanted {
    let Some((unit, set)) = header.trim().split_once('=') else {
        return Wanted::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    match (number(first), number(last)) {
        // `-n`: the last n bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || size == 0 {
                Wanted::Unsatisfiable
            } else {
                Wanted::Part {
                    start: size - n.min(size),
                    end: size,
                }
            }
        }
        // `a-`: from a to the end.
        (Some(a), None) if last.is_empty() => satisfiable(a, size, size),
        // `a-b`, b inclusive and clamped to the end.
        (Some(a), Some(b)) if b >= a => satisfiable(a, b.saturating_add(1).min(size), size),
        _ => Wanted::Whole,
    }
}

fn satisfiable(start: u64, end: u64, size: u64) -> Wanted {
    if start >= size {
        Wanted::Unsatisfiable
    } else {
        Wanted::Part { start, end }
    }
}

/// Digits only; a number too large for u64 is as good as u64::MAX (it is
/// past the end of anything we hold).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

/// The `Content-Range` of a 206 for bytes `start..end` of `size`.
pub fn content_range(start: u64, end: u64, size: u64) -> String {
    format!("bytes {start}-{}/{size}", end - 1)
}

/// The `Content-Range` of a 416 for a representation of `size` bytes.
pub fn unsatisfied_range(size: u64) -> String {
    format!("bytes */{size}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> Wanted {
        Wanted::Part { start, end }
    }

    #[test]
    fn the_three_forms_of_one_range() {
        assert_eq!(parse_range("bytes=0-0", 100), part(0, 1));
        assert_eq!(parse_range("bytes=99-99", 100), part(99, 100));
        assert_eq!(parse_range("bytes=10-19", 100), part(10, 20));
        assert_eq!(parse_range("bytes=90-", 100), part(90, 100));
        assert_eq!(parse_range("bytes=-10", 100), part(90, 100));
        assert_eq!(parse_range("BYTES = 5 - 6", 100), part(5, 7));
    }

    #[test]
    fn ends_past_the_size_are_clamped() {
        assert_eq!(parse_range("bytes=50-500", 100), part(50, 100));
        assert_eq!(parse_range("bytes=-500", 100), part(0, 100));
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 100),
            part(0, 100)
        );
    }

    #[test]
    fn ranges_selecting_nothing_are_unsatisfiable() {
        assert_eq!(parse_range("bytes=100-", 100), Wanted::Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Wanted::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Wanted::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Wanted::Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Wanted::Unsatisfiable);
    }

    #[test]
    fn what_the_rfc_lets_us_ignore_gets_the_whole() {
        for h in [
            "items=0-5",
            "bytes=5-1",
            "bytes=0-1,5-6",
            "bytes=a-b",
            "bytes=-",
            "bytes",
            "bytes=+1-2",
            "",
        ] {
            assert_eq!(parse_range(h, 100), Wanted::Whole, "{h:?}");
        }
    }

    #[test]
    fn content_range_headers() {
        assert_eq!(content_range(0, 1, 100), "bytes 0-0/100");
        assert_eq!(content_range(90, 100, 100), "bytes 90-99/100");
        assert_eq!(unsatisfied_range(100), "bytes */100");
    }
}
