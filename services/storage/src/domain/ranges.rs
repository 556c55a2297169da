//! `Range: bytes=...` requests (RFC 9110 §14): which bytes of a file of a known size a
//! download serves. One range is served as asked; a request for several ranges gets
//! the whole file (which the RFC allows), since multipart/byteranges buys clients
//! little and costs a second streaming format.

use std::ops::Range;

/// What to send for a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The whole content (no `Range`, several ranges, or a `Range` this server ignores).
    Whole,
    /// `206 Partial Content` with these bytes.
    Part(Range<u64>),
    /// `416 Range Not Satisfiable`: no requested byte exists.
    Unsatisfiable,
}

/// Reads a `Range` header value for content of `size` bytes.
pub fn select(header: Option<&str>, size: u64) -> Selection {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        // Absent, or a unit other than bytes: ignored, as the RFC says.
        return Selection::Whole;
    };
    if spec.contains(',') {
        return Selection::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Selection::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // `bytes=-N`: the last N bytes.
        let Ok(n) = last.parse::<u64>() else {
            return Selection::Whole;
        };
        if n == 0 || size == 0 {
            return Selection::Unsatisfiable;
        }
        size.saturating_sub(n)..size
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return Selection::Whole;
        };
        let end = if last.is_empty() {
            size
        } else {
            match last.parse::<u64>() {
                Ok(l) if l >= start => l.saturating_add(1).min(size),
                _ => return Selection::Whole,
            }
        };
        if start >= size {
            return Selection::Unsatisfiable;
        }
        start..end
    };
    Selection::Part(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_the_rfc() {
        assert_eq!(select(None, 10), Selection::Whole);
        assert_eq!(select(Some("bytes=0-3"), 10), Selection::Part(0..4));
        assert_eq!(select(Some("bytes=5-"), 10), Selection::Part(5..10));
        assert_eq!(select(Some("bytes=-3"), 10), Selection::Part(7..10));
        assert_eq!(select(Some("bytes=-30"), 10), Selection::Part(0..10));
        assert_eq!(select(Some("bytes=8-100"), 10), Selection::Part(8..10));
        assert_eq!(select(Some("bytes=10-"), 10), Selection::Unsatisfiable);
        assert_eq!(select(Some("bytes=-0"), 10), Selection::Unsatisfiable);
        assert_eq!(select(Some("bytes=0-1,4-5"), 10), Selection::Whole);
        assert_eq!(select(Some("bytes=4-2"), 10), Selection::Whole);
        assert_eq!(select(Some("items=0-1"), 10), Selection::Whole);
        assert_eq!(select(Some("bytes=x-1"), 10), Selection::Whole);
    }
}
