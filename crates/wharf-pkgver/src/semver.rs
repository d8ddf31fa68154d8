//! Semantic Versioning 2.0 (npm, crates.io) and Go module versions.
//!
//! Precedence is semver.org §11: major, minor, patch numerically; a version with a
//! pre-release is older than the same version without; pre-release identifiers compare
//! numerically when both are numeric, numeric before alphanumeric, alphanumeric in
//! ASCII order, and a shorter list of equal identifiers first. Build metadata is
//! ignored (`1.0.0+a == 1.0.0+b`), so Go's `+incompatible` does not change ordering.
//!
//! Semver mode accepts what npm's `semver.valid` does without `loose`: surrounding
//! whitespace and a leading `=` and/or `v`. Go mode accepts `v`-prefixed versions and
//! the same without `v` (as OSV's Go data writes them), plus Go's shorthands `v1` and
//! `v1.2` (= `v1.0.0`, `v1.2.0`). Go pseudo-versions (`v0.0.0-20191109021931-daa7c04131f5`,
//! `v1.2.4-0.20191109021931-daa7c04131f5`) are pre-releases and sort as such.

use std::cmp::Ordering;

use crate::num::{all_digits, cmp_digits};
use crate::{VersionError, VersionScheme};

struct Version<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    pre: Vec<&'a str>,
}

fn number(s: &str) -> bool {
    all_digits(s) && (s == "0" || !s.starts_with('0'))
}

fn ident_chars(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

fn parse(s: &str, go: bool) -> Result<Version<'_>, VersionError> {
    let scheme = if go {
        VersionScheme::Go
    } else {
        VersionScheme::Semver
    };
    let err = |reason| VersionError::new(scheme, s, reason);
    let mut v = s;
    let has_v;
    if go {
        has_v = v.starts_with('v');
        v = v.strip_prefix('v').unwrap_or(v);
    } else {
        v = v.trim();
        v = v.strip_prefix('=').unwrap_or(v);
        v = v.strip_prefix('v').unwrap_or(v);
        has_v = false;
    }
    if v.is_empty() {
        return Err(err("empty version"));
    }
    let (v, build) = match v.split_once('+') {
        Some((v, b)) => (v, Some(b)),
        None => (v, None),
    };
    if let Some(b) = build {
        if !b.split('.').all(ident_chars) {
            return Err(err("invalid build metadata"));
        }
    }
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let pre: Vec<&str> = match pre {
        Some(p) => {
            let ids: Vec<&str> = p.split('.').collect();
            for id in &ids {
                if !ident_chars(id) {
                    return Err(err("invalid pre-release identifier"));
                }
                if all_digits(id) && !number(id) {
                    return Err(err("numeric pre-release identifier with a leading zero"));
                }
            }
            ids
        }
        None => Vec::new(),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if !parts.iter().all(|p| number(p)) {
        return Err(err(
            "major, minor and patch must be numbers without leading zeros",
        ));
    }
    let (major, minor, patch) = match parts[..] {
        [a, b, c] => (a, b, c),
        // Go's shorthands, only with the `v` and without pre-release or build.
        [a, b] if go && has_v && pre.is_empty() && build.is_none() => (a, b, "0"),
        [a] if go && has_v && pre.is_empty() && build.is_none() => (a, "0", "0"),
        _ => return Err(err("expected major.minor.patch")),
    };
    Ok(Version {
        major,
        minor,
        patch,
        pre,
    })
}

fn cmp_pre(a: &[&str], b: &[&str]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.iter().zip(b) {
        let c = match (all_digits(x), all_digits(y)) {
            (true, true) => cmp_digits(x, y),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => x.cmp(y),
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

pub(crate) fn compare(a: &str, b: &str, go: bool) -> Result<Ordering, VersionError> {
    let (va, vb) = (parse(a, go)?, parse(b, go)?);
    Ok(cmp_digits(va.major, vb.major)
        .then_with(|| cmp_digits(va.minor, vb.minor))
        .then_with(|| cmp_digits(va.patch, vb.patch))
        .then_with(|| cmp_pre(&va.pre, &vb.pre)))
}

#[cfg(test)]
mod tests {
    use crate::testutil::{assert_equal, assert_invalid, assert_sorted};
    use crate::VersionScheme::{Go, Semver};

    /// semver.org §11's precedence examples.
    #[test]
    fn semver_org_precedence() {
        assert_sorted(Semver, &["1.0.0", "2.0.0", "2.1.0", "2.1.1"]);
        assert_sorted(
            Semver,
            &[
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-alpha.beta",
                "1.0.0-beta",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0-rc.1",
                "1.0.0",
            ],
        );
    }

    #[test]
    fn npm_forms_and_numbers() {
        assert_sorted(
            Semver,
            &[
                "0.0.0",
                "0.0.1-0",
                "0.0.1",
                "1.2.3-1",
                "1.2.3-beta.1",
                "1.2.3-beta.1.0",
                "1.2.3-beta-2",
                "v1.2.3",
                "=1.2.4",
                "1.10.0",
                "10.0.0",
                "18446744073709551616.0.0",
            ],
        );
        assert_equal(
            Semver,
            &[
                ("1.2.3", "v1.2.3"),
                ("1.2.3", "=1.2.3"),
                ("1.2.3", "=v1.2.3"),
                ("1.2.3", " 1.2.3 "),
                ("1.2.3+build.1", "1.2.3+build.2"),
                ("1.2.3-rc.1+x", "1.2.3-rc.1"),
            ],
        );
    }

    #[test]
    fn semver_invalid() {
        assert_invalid(
            Semver,
            "1.0.0",
            &[
                "",
                "1",
                "1.2",
                "1.2.3.4",
                "01.2.3",
                "1.02.3",
                "1.2.3-01",
                "1.2.3-",
                "1.2.3-a..b",
                "1.2.3+",
                "1.2.3-a_b",
                "a.b.c",
                "1.2.3 4",
            ],
        );
    }

    /// Go module versions (Go modules reference: pseudo-versions, `+incompatible`,
    /// shorthands as in golang.org/x/mod/semver).
    #[test]
    fn go_versions() {
        assert_sorted(
            Go,
            &[
                "v0.0.0-20191109021931-daa7c04131f5",
                "v0.0.0-20200101000000-aaaaaaaaaaaa",
                "v0.1.0",
                "v1.2.3",
                "v1.2.4-0.20191109021931-daa7c04131f5",
                "v1.2.4-pre",
                "v1.2.4-pre.0.20200101000000-aaaaaaaaaaaa",
                "v1.2.4",
                "v1.10.0",
                "v2.0.0-rc.1+incompatible",
                "v2.0.0+incompatible",
                "v2.0.1",
            ],
        );
        assert_equal(
            Go,
            &[
                ("v1", "v1.0.0"),
                ("v1.2", "v1.2.0"),
                ("1.2.3", "v1.2.3"),
                ("v2.0.0+incompatible", "v2.0.0"),
            ],
        );
        assert_invalid(
            Go,
            "v1.0.0",
            &[
                "", "v", "v1.2-pre", "1.2", "v01.0.0", "(devel)", "=v1.0.0", " v1.0.0", "v1.0.0.0",
            ],
        );
    }
}
