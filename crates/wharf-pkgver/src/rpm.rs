//! RPM versions: `[epoch:]version[-release]` compared with `rpmvercmp` (rpm ≥ 4.15).
//!
//! The epoch is numeric (missing or empty = 0). Version and release are compared by
//! `rpmvercmp`: runs of ASCII letters or digits, everything else a separator; digit
//! runs numerically and greater than letter runs; `~` sorts before everything (even
//! the end), `^` after the end but before any further segment. As in rpm's own
//! `rpmverCmp`, the release is only compared when both sides have one, so `1.0`
//! equals `1.0-5` (an advisory naming a bare version covers all its releases).

use std::cmp::Ordering;

use crate::num::{all_digits, cmp_digits};
use crate::{VersionError, VersionScheme};

struct Evr<'a> {
    epoch: &'a str,
    version: &'a str,
    release: Option<&'a str>,
}

fn parse(s: &str) -> Result<Evr<'_>, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::Rpm, s, reason);
    if s.is_empty() {
        return Err(err("empty version"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("contains whitespace or control characters"));
    }
    let (epoch, rest) = match s.split_once(':') {
        Some(("", rest)) => ("0", rest),
        Some((e, rest)) if all_digits(e) => (e, rest),
        Some(_) => return Err(err("epoch is not a number")),
        None => ("0", s),
    };
    if rest.contains(':') {
        return Err(err("more than one ':'"));
    }
    let (version, release) = match rest.rsplit_once('-') {
        Some((v, r)) => (v, Some(r)),
        None => (rest, None),
    };
    if version.is_empty() {
        return Err(err("empty version part"));
    }
    Ok(Evr {
        epoch,
        version,
        release,
    })
}

/// rpm's `rpmvercmp` of one version or release string.
pub(crate) fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = ca.is_ascii_digit();
        let in_seg = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let (si, sj) = (i, j);
        while a.get(i).is_some_and(in_seg) {
            i += 1;
        }
        while b.get(j).is_some_and(in_seg) {
            j += 1;
        }
        if j == sj {
            // Segments of different kinds: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        // Both segments are ASCII, so valid UTF-8.
        let sa = std::str::from_utf8(&a[si..i]).unwrap_or("");
        let sb = std::str::from_utf8(&b[sj..j]).unwrap_or("");
        let c = if numeric {
            cmp_digits(sa, sb)
        } else {
            sa.cmp(sb)
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

pub(crate) fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let (va, vb) = (parse(a)?, parse(b)?);
    let mut c = cmp_digits(va.epoch, vb.epoch).then_with(|| rpmvercmp(va.version, vb.version));
    if let (Some(ra), Some(rb)) = (va.release, vb.release) {
        c = c.then_with(|| rpmvercmp(ra, rb));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::rpmvercmp;
    use crate::testutil::{assert_equal, assert_invalid, assert_sorted};
    use crate::VersionScheme::Rpm;
    use std::cmp::Ordering::{self, Equal, Greater, Less};

    /// rpm's tests/rpmvercmp.at, every active `RPMVERCMP(a, b, result)` case.
    const RPMVERCMP_AT: &[(&str, &str, i8)] = &[
        ("1.0", "1.0", 0),
        ("1.0", "2.0", -1),
        ("2.0", "1.0", 1),
        ("2.0.1", "2.0.1", 0),
        ("2.0", "2.0.1", -1),
        ("2.0.1", "2.0", 1),
        ("2.0.1a", "2.0.1a", 0),
        ("2.0.1a", "2.0.1", 1),
        ("2.0.1", "2.0.1a", -1),
        ("5.5p1", "5.5p1", 0),
        ("5.5p1", "5.5p2", -1),
        ("5.5p2", "5.5p1", 1),
        ("5.5p10", "5.5p10", 0),
        ("5.5p1", "5.5p10", -1),
        ("5.5p10", "5.5p1", 1),
        ("10xyz", "10.1xyz", -1),
        ("10.1xyz", "10xyz", 1),
        ("xyz10", "xyz10", 0),
        ("xyz10", "xyz10.1", -1),
        ("xyz10.1", "xyz10", 1),
        ("xyz.4", "xyz.4", 0),
        ("xyz.4", "8", -1),
        ("8", "xyz.4", 1),
        ("xyz.4", "2", -1),
        ("2", "xyz.4", 1),
        ("5.5p2", "5.6p1", -1),
        ("5.6p1", "5.5p2", 1),
        ("5.6p1", "6.5p1", -1),
        ("6.5p1", "5.6p1", 1),
        ("6.0.rc1", "6.0", 1),
        ("6.0", "6.0.rc1", -1),
        ("10b2", "10a1", 1),
        ("10a2", "10b2", -1),
        ("1.0aa", "1.0aa", 0),
        ("1.0a", "1.0aa", -1),
        ("1.0aa", "1.0a", 1),
        ("10.0001", "10.0001", 0),
        ("10.0001", "10.1", 0),
        ("10.1", "10.0001", 0),
        ("10.0001", "10.0039", -1),
        ("10.0039", "10.0001", 1),
        ("4.999.9", "5.0", -1),
        ("5.0", "4.999.9", 1),
        ("20101121", "20101121", 0),
        ("20101121", "20101122", -1),
        ("20101122", "20101121", 1),
        ("2_0", "2_0", 0),
        ("2.0", "2_0", 0),
        ("2_0", "2.0", 0),
        ("a", "a", 0),
        ("a+", "a+", 0),
        ("a+", "a_", 0),
        ("a_", "a+", 0),
        ("+a", "+a", 0),
        ("+a", "_a", 0),
        ("_a", "+a", 0),
        ("+_", "+_", 0),
        ("_+", "+_", 0),
        ("_+", "_+", 0),
        ("+", "_", 0),
        ("_", "+", 0),
        ("1.0~rc1", "1.0~rc1", 0),
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0~rc1", 1),
        ("1.0~rc1", "1.0~rc2", -1),
        ("1.0~rc2", "1.0~rc1", 1),
        ("1.0~rc1~git123", "1.0~rc1~git123", 0),
        ("1.0~rc1~git123", "1.0~rc1", -1),
        ("1.0~rc1", "1.0~rc1~git123", 1),
        // Caret cases following rpm ≥ 4.15's documented `^` semantics (after the end of
        // the string, before any further segment).
        ("1.0^", "1.0^", 0),
        ("1.0^", "1.0", 1),
        ("1.0", "1.0^", -1),
        ("1.0^git1", "1.0^git1", 0),
        ("1.0^git1", "1.0", 1),
        ("1.0", "1.0^git1", -1),
        ("1.0^git1", "1.0^git2", -1),
        ("1.0^git2", "1.0^git1", 1),
        ("1.0^20160101", "1.0^20160101", 0),
        ("1.0^20160101", "1.0.1", -1),
        ("1.0.1", "1.0^20160101", 1),
        ("1.0^20160101^git1", "1.0^20160101^git1", 0),
        ("1.0^20160102", "1.0^20160101^git1", 1),
        ("1.0^20160101^git1", "1.0^20160102", -1),
        ("1.0~rc1^git1", "1.0~rc1^git1", 0),
        ("1.0~rc1^git1", "1.0~rc1", 1),
        ("1.0~rc1", "1.0~rc1^git1", -1),
        ("1.0^git1~pre", "1.0^git1~pre", 0),
        ("1.0^git1", "1.0^git1~pre", 1),
        ("1.0^git1~pre", "1.0^git1", -1),
    ];

    fn ord(n: i8) -> Ordering {
        n.cmp(&0)
    }

    #[test]
    fn rpmvercmp_at() {
        for (a, b, want) in RPMVERCMP_AT {
            assert_eq!(rpmvercmp(a, b), ord(*want), "rpmvercmp({a}, {b})");
        }
    }

    #[test]
    fn evr_ordering() {
        assert_sorted(
            Rpm,
            &[
                "1.0~rc1-1",
                "1.0-1.el9",
                "1.0-1.el9_1",
                "1.0-2.el9",
                "1.0-10.el9",
                "1.0^git1-1",
                "1.0.1-1",
                "1:0.1-1",
                "2:0.0.1-1",
            ],
        );
        assert_sorted(
            Rpm,
            &[
                "3.0.7-16.el9_2",
                "3.0.7-17.el9",
                "3.0.7-18.el9",
                "3.0.7-24.el9",
            ],
        );
        assert_sorted(
            Rpm,
            &["9999999999999999999999-1", "10000000000000000000000-1"],
        );
    }

    #[test]
    fn epochs_and_missing_release() {
        assert_equal(
            Rpm,
            &[
                ("0:1.0-1", "1.0-1"),
                (":1.0-1", "1.0-1"),
                ("1.0", "1.0-7.el9"),
                ("1.0_1-1", "1.0.1-1"),
            ],
        );
        assert_eq!(crate::compare(Rpm, "1:1.0", "2.0").unwrap(), Greater);
        assert_eq!(crate::compare(Rpm, "1.0-1", "1.0-2").unwrap(), Less);
        assert_eq!(crate::compare(Rpm, "1.0", "1.0-2").unwrap(), Equal);
    }

    #[test]
    fn invalid() {
        assert_invalid(
            Rpm,
            "1.0-1",
            &["", "x:1.0", "1:2:3", "1.0 -1", "-1", "1:-1"],
        );
    }
}
