//! Debian package versions: Debian policy §5.6.12 and dpkg's `verrevcmp`.
//!
//! `[epoch:]upstream_version[-debian_revision]`: the epoch is compared numerically
//! (missing = 0), then the upstream version and the revision (missing = "", which
//! equals "0") with the same string rule: alternating non-digit and digit runs,
//! non-digits compared character by character with `~` before everything (even the
//! end of the string), letters before non-letters; digit runs compared numerically.

use std::cmp::Ordering;

use crate::num::{all_digits, cmp_digits};
use crate::{VersionError, VersionScheme};

struct Version<'a> {
    epoch: &'a str,
    upstream: &'a str,
    revision: &'a str,
}

fn parse(s: &str) -> Result<Version<'_>, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::Dpkg, s, reason);
    let v = s.trim();
    if v.is_empty() {
        return Err(err("empty version"));
    }
    if v.chars().any(char::is_whitespace) {
        return Err(err("contains whitespace"));
    }
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => {
            if !all_digits(e) {
                return Err(err("epoch is not a number"));
            }
            (e, rest)
        }
        None => ("0", v),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => {
            if r.is_empty() {
                return Err(err("empty revision"));
            }
            (u, r)
        }
        None => (rest, ""),
    };
    if upstream.is_empty() {
        return Err(err("empty upstream version"));
    }
    // Policy: upstream [A-Za-z0-9.+~-], revision [A-Za-z0-9.+~]. Upstream versions not
    // starting with a digit are only a warning in dpkg, so they are accepted here.
    if !upstream
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b".+~-".contains(&c))
    {
        return Err(err("invalid character in upstream version"));
    }
    if !revision
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b".+~".contains(&c))
    {
        return Err(err("invalid character in revision"));
    }
    Ok(Version {
        epoch,
        upstream,
        revision,
    })
}

/// Weight of a non-digit character position (`None` = end of string or a digit).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's comparison of one upstream version or revision string.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        let (si, sj) = (i, j);
        while digit(a, i) {
            i += 1;
        }
        while digit(b, j) {
            j += 1;
        }
        // Both runs are ASCII digits, so these slices are valid UTF-8.
        let na = std::str::from_utf8(&a[si..i]).unwrap_or("");
        let nb = std::str::from_utf8(&b[sj..j]).unwrap_or("");
        let c = cmp_digits(na, nb);
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

pub(crate) fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let (va, vb) = (parse(a)?, parse(b)?);
    Ok(cmp_digits(va.epoch, vb.epoch)
        .then_with(|| verrevcmp(va.upstream, vb.upstream))
        .then_with(|| verrevcmp(va.revision, vb.revision)))
}

#[cfg(test)]
mod tests {
    use crate::testutil::{assert_equal, assert_invalid, assert_sorted};
    use crate::VersionScheme::Dpkg;

    /// Debian policy §5.6.12's tilde example: `~~ < ~~a < ~ < (empty) < a`.
    #[test]
    fn policy_tilde_example() {
        assert_sorted(Dpkg, &["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a"]);
    }

    /// Orderings from dpkg's own test suite (lib/dpkg/t/t-version.c) and policy text.
    #[test]
    fn dpkg_orderings() {
        assert_sorted(
            Dpkg,
            &[
                "0:0-0",
                "0:0-1",
                "0:0.0-0",
                "0:0.1-0",
                "0:1.0~rc1-1",
                "0:1.0-1",
                "0:1.0+a-1",
                "0:1.0.1-1",
                "1:0-0",
                "1:0.9",
                "2:0",
            ],
        );
        // Letters sort before non-letters, `~` before everything.
        assert_sorted(
            Dpkg,
            &["1.0~a", "1.0", "1.0a", "1.0z", "1.0+", "1.0.", "1.0.1"],
        );
        assert_sorted(
            Dpkg,
            &[
                "1.2.1-2.2+wheezy2",
                "1.2.1-2.2+wheezy3",
                "1.2.1-2.2+wheezy10",
                "1.2.1-3",
            ],
        );
        assert_sorted(
            Dpkg,
            &[
                "2.7.4-0ubuntu1",
                "2.7.4-0ubuntu1.6",
                "2.7.4-0ubuntu1.10",
                "2.7.4-1",
            ],
        );
        // Huge numbers neither overflow nor lose precision.
        assert_sorted(
            Dpkg,
            &[
                "1.99999999999999999999999999",
                "1.100000000000000000000000000",
                "99999999999999999999999999:1",
                "100000000000000000000000000:0",
            ],
        );
    }

    #[test]
    fn equalities() {
        assert_equal(
            Dpkg,
            &[
                ("1.0", "0:1.0"),
                ("1.0-0", "1.0"),
                ("1.0-00", "1.0-0"),
                ("1.001", "1.1"),
                ("00:1", "1"),
                ("1.0-1", "1.0-1"),
            ],
        );
    }

    #[test]
    fn invalid() {
        assert_invalid(
            Dpkg,
            "1.0",
            &[
                "", "   ", "a:1.0", ":1.0", "1.0-", "1 0", "1.0_1", "1:-1", "1.0-a:b", "1.0/2",
            ],
        );
    }
}
