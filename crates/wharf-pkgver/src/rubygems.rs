//! RubyGems versions, compared like `Gem::Version#<=>`.
//!
//! Valid: `N(.X)*` with `X` alphanumeric, optionally followed by `-A(.A)*` (`-`
//! stands for `.pre.`), surrounding whitespace allowed; the empty string is `0`.
//! The version splits into segments, runs of digits (numbers) or of letters (strings).
//! Trailing zeros are dropped from the release part and from the pre-release part.
//! Segments compare pairwise, missing ones as 0; a string sorts before a number, so
//! any version with letters is a pre-release (`1.0.a < 1.0`); strings compare
//! byte-wise.

use std::cmp::Ordering;

use crate::num::{all_digits, cmp_digits, is_zero};
use crate::{VersionError, VersionScheme};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment<'a> {
    Num(&'a str),
    Str(&'a str),
}

fn valid(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let (release, pre) = match v.split_once('-') {
        Some((r, p)) => (r, Some(p)),
        None => (v, None),
    };
    let mut parts = release.split('.');
    let first_ok = parts.next().is_some_and(all_digits);
    let rest_ok = parts.all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric()));
    let pre_ok = pre.is_none_or(|p| {
        p.split('.')
            .all(|x| !x.is_empty() && x.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
    });
    first_ok && rest_ok && pre_ok
}

/// Canonical segments: release part then pre-release part, each without trailing zeros.
fn segments(input: &str) -> Result<Vec<Segment<'_>>, VersionError> {
    let v = input.trim();
    if !valid(v) {
        return Err(VersionError::new(
            VersionScheme::RubyGems,
            input,
            "not N(.X)* with an optional -pre suffix",
        ));
    }
    // `-` reads as `.pre.`: it adds a "pre" string segment, which scanning yields below.
    let mut segs = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let digit = b[i].is_ascii_digit();
        if !b[i].is_ascii_alphanumeric() {
            if b[i] == b'-' {
                segs.push(Segment::Str("pre"));
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_alphanumeric() && b[i].is_ascii_digit() == digit {
            i += 1;
        }
        let s = &v[start..i];
        segs.push(if digit {
            Segment::Num(s)
        } else {
            Segment::Str(s)
        });
    }
    let split = segs
        .iter()
        .position(|s| matches!(s, Segment::Str(_)))
        .unwrap_or(segs.len());
    let mut pre = segs.split_off(split);
    for part in [&mut segs, &mut pre] {
        while matches!(part.last(), Some(Segment::Num(n)) if is_zero(n)) {
            part.pop();
        }
    }
    segs.extend(pre);
    Ok(segs)
}

pub(crate) fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let (sa, sb) = (segments(a)?, segments(b)?);
    for i in 0..sa.len().max(sb.len()) {
        let x = sa.get(i).cloned().unwrap_or(Segment::Num("0"));
        let y = sb.get(i).cloned().unwrap_or(Segment::Num("0"));
        let c = match (x, y) {
            (Segment::Num(x), Segment::Num(y)) => cmp_digits(x, y),
            (Segment::Str(x), Segment::Str(y)) => x.cmp(y),
            (Segment::Str(_), Segment::Num(_)) => Ordering::Less,
            (Segment::Num(_), Segment::Str(_)) => Ordering::Greater,
        };
        if c != Ordering::Equal {
            return Ok(c);
        }
    }
    Ok(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::compare;
    use crate::testutil::{assert_equal, assert_invalid, assert_sorted};
    use crate::VersionScheme::RubyGems;
    use std::cmp::Ordering;

    /// RubyGems' test/rubygems/test_gem_version.rb, `test_spaceship` and the
    /// pre-release examples, as (a, b, a <=> b).
    #[test]
    fn test_gem_version_spaceship() {
        for (a, b, want) in [
            ("1.0", "1.0.0", 0),
            ("1.0", "1.0.a", 1),
            ("1.8.2", "0.0.0", 1),
            ("1.8.2", "1.8.2.a", 1),
            ("1.8.2.b", "1.8.2.a", 1),
            ("1.8.2.a", "1.8.2", -1),
            ("1.8.2.a10", "1.8.2.a9", 1),
            ("", "0", 0),
            ("0.beta.1", "0.0.beta.1", 0),
            ("0.0.beta", "0.0.beta.1", -1),
            ("0.0.beta", "0.beta.1", -1),
            ("5.a", "5.0.0.rc2", -1),
            ("5.x", "5.0.0.rc2", 1),
            ("1.0.0-rc1", "1.0.0.pre.rc1", 0),
            ("1.0.0-1", "1.0.0.pre.1", 0),
        ] {
            assert_eq!(compare(a, b).unwrap(), want.cmp(&0), "{a} <=> {b}");
            assert_eq!(compare(b, a).unwrap(), 0.cmp(&want), "{b} <=> {a}");
        }
    }

    #[test]
    fn sorted() {
        assert_sorted(
            RubyGems,
            &[
                "0.9",
                "1.0.0.a",
                "1.0.0.a1",
                "1.0.0.a2",
                "1.0.0.a10",
                "1.0.0.b1",
                "1.0.0.beta",
                "1.0.0.beta.2",
                "1.0.0.pre",
                "1.0.0.rc1",
                "1.0.0",
                "1.0.1",
                "1.1",
                "1.10",
                "2",
                "99999999999999999999999999",
            ],
        );
        assert_sorted(
            RubyGems,
            &[
                "1.15.0.pre.1",
                "1.15.0.pre.4",
                "1.15.0",
                "1.16.0.pre.1",
                "2.1.0.pre.3",
                "2.1.0",
            ],
        );
    }

    #[test]
    fn equal_and_invalid() {
        assert_equal(
            RubyGems,
            &[
                ("1.0", "1"),
                (" 1.0 ", "1.0.0.0"),
                ("1.01", "1.1"),
                ("1.a.0", "1.a"),
            ],
        );
        assert_invalid(
            RubyGems,
            "1.0",
            &[
                "junk",
                "1.0\n2.0",
                "1..2",
                "1.2\\ 3.4",
                "2.3422222.222.222222222.22222.ads0as.dasd0.ddd2222.2.qd3e.",
                "a.1",
                "1.",
                "1.0-",
            ],
        );
        assert_eq!(
            compare("1.0.0.pre.rc1", "1.0.0-rc1").unwrap(),
            Ordering::Equal
        );
    }
}
