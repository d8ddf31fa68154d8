//! Small HTTP helpers shared by the handlers.

use axum::http::HeaderMap;

/// The `Range` header value for an upload holding `size` bytes (`0-<last>`, with
/// `0-0` for an empty upload, as Distribution and clients expect).
pub fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// A request header as a string, if present and valid.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Parses `Content-Range: <start>-<end>` (an optional `bytes ` / `bytes=` prefix and a
/// `/total` suffix are tolerated). Returns inclusive bounds.
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = b.trim().parse().ok()?;
    (end >= start).then_some((start, end))
}

/// A parsed `Range: bytes=...` request for a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range header: serve everything.
    Full,
    /// Serve `start..end` (end exclusive).
    Partial(u64, u64),
    /// Cannot be satisfied.
    Unsatisfiable,
}

/// Parses a single-range `Range` header against a blob size. Multi-range requests are
/// served whole (allowed by RFC 9110).
pub fn parse_range(v: &str, size: u64) -> ByteRange {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last `b` bytes.
        return match b.parse::<u64>() {
            Ok(0) | Err(_) => ByteRange::Unsatisfiable,
            Ok(n) if size == 0 => {
                let _ = n;
                ByteRange::Unsatisfiable
            }
            Ok(n) => ByteRange::Partial(size.saturating_sub(n), size),
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return ByteRange::Unsatisfiable;
    };
    if start >= size {
        return ByteRange::Unsatisfiable;
    }
    let end = if b.is_empty() {
        size
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => (e + 1).min(size),
            _ => return ByteRange::Unsatisfiable,
        }
    };
    ByteRange::Partial(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-0", 10), ByteRange::Partial(0, 1));
        assert_eq!(parse_range("bytes=5-", 10), ByteRange::Partial(5, 10));
        assert_eq!(parse_range("bytes=-3", 10), ByteRange::Partial(7, 10));
        assert_eq!(parse_range("bytes=2-100", 10), ByteRange::Partial(2, 10));
        assert_eq!(parse_range("bytes=10-", 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("items=1-2", 10), ByteRange::Full);
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("9-1"), None);
        assert_eq!(range_header(0), "0-0");
        assert_eq!(range_header(10), "0-9");
    }
}
