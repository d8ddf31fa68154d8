//! PEP 440 versions (PyPI), compared like `packaging.version.Version`.
//!
//! Accepts every spelling PEP 440 normalizes: any case, a leading `v`, `alpha`/`a`,
//! `beta`/`b`, `c`/`pre`/`preview`/`rc`, `rev`/`r`/`post`, the implicit post release
//! `1.0-1`, `-`, `_` or `.` separators (or none) and implicit `0` numbers (`1.0a` =
//! `1.0a0`). Ordering: epoch; release with trailing zeros ignored (`1.0 == 1.0.0`);
//! then dev-only releases before pre-releases before the release before its post
//! releases; dev releases before their non-dev counterpart; a local version after the
//! same public version, local segments numeric above alphanumeric.

use std::cmp::Ordering;

use crate::num::{cmp_digits, is_zero};
use crate::{VersionError, VersionScheme};

#[derive(Debug)]
struct Version {
    epoch: String,
    release: Vec<String>,
    /// (0 = a, 1 = b, 2 = rc, number)
    pre: Option<(u8, String)>,
    post: Option<String>,
    dev: Option<String>,
    local: Vec<String>,
}

struct Cursor<'a> {
    s: &'a str,
}

impl Cursor<'_> {
    fn digits(&mut self) -> Option<String> {
        let n = self.s.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let (d, rest) = self.s.split_at(n);
        self.s = rest;
        Some(d.to_owned())
    }

    fn sep(&mut self) -> bool {
        match self.s.as_bytes().first() {
            Some(b'-' | b'_' | b'.') => {
                self.s = &self.s[1..];
                true
            }
            _ => false,
        }
    }

    /// `[sep] word [sep] [digits]`, with the first matching word (longest first).
    /// Consumes nothing when no word matches.
    fn tagged(&mut self, words: &[&str]) -> Option<(usize, String)> {
        let save = self.s;
        self.sep();
        for (i, w) in words.iter().enumerate() {
            if let Some(rest) = self.s.strip_prefix(w) {
                self.s = rest;
                let before_sep = self.s;
                self.sep();
                let n = match self.digits() {
                    Some(n) => n,
                    None => {
                        self.s = before_sep;
                        "0".to_owned()
                    }
                };
                return Some((i, n));
            }
        }
        self.s = save;
        None
    }
}

fn parse(input: &str) -> Result<Version, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::Pep440, input, reason);
    let lower = input.trim().to_ascii_lowercase();
    let mut c = Cursor {
        s: lower.strip_prefix('v').unwrap_or(&lower),
    };
    let first = c
        .digits()
        .ok_or_else(|| err("does not start with a number"))?;
    let (epoch, first) = if let Some(rest) = c.s.strip_prefix('!') {
        c.s = rest;
        let n = c
            .digits()
            .ok_or_else(|| err("epoch not followed by a release"))?;
        (first, n)
    } else {
        ("0".to_owned(), first)
    };
    let mut release = vec![first];
    while let Some(rest) = c.s.strip_prefix('.') {
        let save = c.s;
        c.s = rest;
        match c.digits() {
            Some(n) => release.push(n),
            None => {
                c.s = save;
                break;
            }
        }
    }
    const PRE: [&str; 8] = ["alpha", "beta", "preview", "pre", "rc", "a", "b", "c"];
    let pre = c.tagged(&PRE).map(|(i, n)| {
        let kind = match PRE[i] {
            "alpha" | "a" => 0,
            "beta" | "b" => 1,
            _ => 2,
        };
        (kind, n)
    });
    let post = if let Some(rest) = c.s.strip_prefix('-') {
        let save = c.s;
        c.s = rest;
        match c.digits() {
            Some(n) => Some(n),
            None => {
                c.s = save;
                c.tagged(&["post", "rev", "r"]).map(|(_, n)| n)
            }
        }
    } else {
        c.tagged(&["post", "rev", "r"]).map(|(_, n)| n)
    };
    let dev = c.tagged(&["dev"]).map(|(_, n)| n);
    let mut local = Vec::new();
    if let Some(rest) = c.s.strip_prefix('+') {
        for seg in rest.split(['.', '-', '_']) {
            if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(err("invalid local version label"));
            }
            local.push(seg.to_owned());
        }
        c.s = "";
    }
    if !c.s.is_empty() {
        return Err(err("unexpected characters"));
    }
    while release.len() > 1 && release.last().is_some_and(|n| is_zero(n)) {
        release.pop();
    }
    Ok(Version {
        epoch,
        release,
        pre,
        post,
        dev,
        local,
    })
}

/// An optional number where absence sorts below (`low`) or above every number.
fn cmp_opt(a: Option<&String>, b: Option<&String>, absent_low: bool) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => cmp_digits(x, y),
        (None, None) => Ordering::Equal,
        (None, Some(_)) if absent_low => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) if absent_low => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
    }
}

/// Pre-release key: a dev-only release (no pre, no post) sorts before all
/// pre-releases, a release without pre-release after them.
fn pre_key(v: &Version) -> (u8, u8, &str) {
    match &v.pre {
        Some((k, n)) => (1, *k, n),
        None if v.post.is_none() && v.dev.is_some() => (0, 0, ""),
        None => (2, 0, ""),
    }
}

fn cmp_release(a: &[String], b: &[String]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).map_or("0", String::as_str);
        let y = b.get(i).map_or("0", String::as_str);
        let c = cmp_digits(x, y);
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

fn cmp_local(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let (nx, ny) = (
            x.bytes().all(|c| c.is_ascii_digit()),
            y.bytes().all(|c| c.is_ascii_digit()),
        );
        let c = match (nx, ny) {
            (true, true) => cmp_digits(x, y),
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.cmp(y),
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

pub(crate) fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let (va, vb) = (parse(a)?, parse(b)?);
    Ok(cmp_digits(&va.epoch, &vb.epoch)
        .then_with(|| cmp_release(&va.release, &vb.release))
        .then_with(|| {
            let (ka, kb) = (pre_key(&va), pre_key(&vb));
            ka.0.cmp(&kb.0)
                .then(ka.1.cmp(&kb.1))
                .then_with(|| cmp_digits(ka.2, kb.2))
        })
        .then_with(|| cmp_opt(va.post.as_ref(), vb.post.as_ref(), true))
        .then_with(|| cmp_opt(va.dev.as_ref(), vb.dev.as_ref(), false))
        .then_with(|| cmp_local(&va.local, &vb.local)))
}

#[cfg(test)]
mod tests {
    use crate::testutil::{assert_equal, assert_invalid, assert_sorted};
    use crate::VersionScheme::Pep440;

    /// PEP 440 "Summary of permitted suffixes and relative ordering" example list.
    #[test]
    fn pep440_example_ordering() {
        assert_sorted(
            Pep440,
            &[
                "1.dev0",
                "1.0.dev456",
                "1.0a1",
                "1.0a2.dev456",
                "1.0a12.dev456",
                "1.0a12",
                "1.0b1.dev456",
                "1.0b2",
                "1.0b2.post345.dev456",
                "1.0b2.post345",
                "1.0rc1.dev456",
                "1.0rc1",
                "1.0",
                "1.0+abc.5",
                "1.0+abc.7",
                "1.0+5",
                "1.0.post456.dev34",
                "1.0.post456",
                "1.0.15",
                "1.1.dev1",
            ],
        );
    }

    #[test]
    fn epochs_and_big_numbers() {
        assert_sorted(
            Pep440,
            &[
                "2.0",
                "2013.10",
                "2014.04",
                "1!1.0",
                "1!1.0.post1",
                "2!0.1",
                "2!99999999999999999999999999",
                "2!100000000000000000000000000",
            ],
        );
        assert_sorted(
            Pep440,
            &["1.0+abc", "1.0+abc.1", "1.0+1", "1.0+1.abc", "1.0+2"],
        );
    }

    /// Normalization equivalences from PEP 440's "Normalization" section.
    #[test]
    fn normalization() {
        assert_equal(
            Pep440,
            &[
                ("1.0RC1", "1.0rc1"),
                ("1.0c1", "1.0rc1"),
                ("1.0pre1", "1.0rc1"),
                ("1.0preview1", "1.0rc1"),
                ("1.0alpha1", "1.0a1"),
                ("1.0-beta.2", "1.0b2"),
                ("1.0a", "1.0a0"),
                ("1.0-post1", "1.0.post1"),
                ("1.0-1", "1.0.post1"),
                ("1.0rev1", "1.0.post1"),
                ("1.0r", "1.0.post0"),
                ("1.0.post", "1.0.post0"),
                ("1.0-dev", "1.0.dev0"),
                ("1.0_dev_3", "1.0.dev3"),
                ("1.0", "1.0.0"),
                ("1.0", "1.0.0.0.0"),
                ("v1.0", "1.0"),
                (" 1.0 ", "1.0"),
                ("0!1.0", "1.0"),
                ("1.01", "1.1"),
                ("1.0+ubuntu-1", "1.0+ubuntu.1"),
                ("1.0+Ubuntu_1", "1.0+ubuntu.1"),
            ],
        );
    }

    #[test]
    fn invalid() {
        assert_invalid(
            Pep440,
            "1.0",
            &[
                "", "a", "1.0+", "1.0+a..b", "1.0-foo", "1.0.", "1!", "!1", "1.0 1", "1.0a1b2",
                "1.0++a",
            ],
        );
    }
}
