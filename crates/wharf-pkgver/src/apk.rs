//! Alpine / Wolfi apk versions, after apk-tools' `version.c`.
//!
//! Grammar: `digits{.digits}[letter]{_suffix[digits]}[-rN]`, suffixes `alpha`, `beta`,
//! `pre`, `rc` (before the bare version) and `cvs`, `svn`, `git`, `hg`, `p` (after it).
//! Versions are compared token by token. The first number is numeric; later numbers
//! are numeric too unless either side starts with `0`, then they compare as strings
//! (Gentoo's "1.01 < 1.1" rule). When one side runs out of tokens of the same kind,
//! a pre-release suffix makes its side older; otherwise the side that goes on with a
//! more significant token (`.N` > letter > suffix > `-rN` > end) is newer.

use std::cmp::Ordering;

use crate::num::cmp_digits;
use crate::{VersionError, VersionScheme};

const PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

#[derive(Debug, Clone, Copy)]
enum Token<'a> {
    /// A number; `first` for the leading one.
    Digits(&'a str, bool),
    Letter(u8),
    /// Suffix rank: negative for pre-release suffixes.
    Suffix(i8),
    SuffixNo(&'a str),
    Revision(&'a str),
    End,
}

impl Token<'_> {
    fn kind(&self) -> u8 {
        match self {
            Token::Digits(..) => 0,
            Token::Letter(_) => 1,
            Token::Suffix(_) => 2,
            Token::SuffixNo(_) => 3,
            Token::Revision(_) => 4,
            Token::End => 5,
        }
    }
}

fn take_digits(s: &str) -> (&str, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    s.split_at(n)
}

fn tokenize(s: &str) -> Result<Vec<Token<'_>>, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::Apk, s, reason);
    let mut out = Vec::new();
    let (d, mut rest) = take_digits(s);
    if d.is_empty() {
        return Err(err("does not start with a digit"));
    }
    out.push(Token::Digits(d, true));
    while let Some(r) = rest.strip_prefix('.') {
        let (d, r) = take_digits(r);
        if d.is_empty() {
            return Err(err("'.' not followed by a digit"));
        }
        out.push(Token::Digits(d, false));
        rest = r;
    }
    if let Some(&c) = rest.as_bytes().first() {
        if c.is_ascii_lowercase() {
            out.push(Token::Letter(c));
            rest = &rest[1..];
        }
    }
    while let Some(r) = rest.strip_prefix('_') {
        let name_len = r.bytes().take_while(u8::is_ascii_lowercase).count();
        let (name, r) = r.split_at(name_len);
        let rank = if let Some(i) = PRE.iter().position(|p| *p == name) {
            i as i8 - PRE.len() as i8
        } else if let Some(i) = POST.iter().position(|p| *p == name) {
            i as i8
        } else {
            return Err(err("unknown suffix"));
        };
        out.push(Token::Suffix(rank));
        let (d, r) = take_digits(r);
        if !d.is_empty() {
            out.push(Token::SuffixNo(d));
        }
        rest = r;
    }
    if let Some(r) = rest.strip_prefix("-r") {
        let (d, r) = take_digits(r);
        if d.is_empty() {
            return Err(err("'-r' not followed by a number"));
        }
        out.push(Token::Revision(d));
        rest = r;
    }
    if !rest.is_empty() {
        return Err(err("unexpected characters"));
    }
    Ok(out)
}

fn cmp_same_kind(a: Token<'_>, b: Token<'_>) -> Ordering {
    match (a, b) {
        (Token::Digits(x, first), Token::Digits(y, _)) => {
            if !first && (x.starts_with('0') || y.starts_with('0')) {
                x.cmp(y)
            } else {
                cmp_digits(x, y)
            }
        }
        (Token::Letter(x), Token::Letter(y)) => x.cmp(&y),
        (Token::Suffix(x), Token::Suffix(y)) => x.cmp(&y),
        (Token::SuffixNo(x), Token::SuffixNo(y)) | (Token::Revision(x), Token::Revision(y)) => {
            cmp_digits(x, y)
        }
        _ => Ordering::Equal,
    }
}

pub(crate) fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let (ta, tb) = (tokenize(a)?, tokenize(b)?);
    for k in 0.. {
        let x = ta.get(k).copied().unwrap_or(Token::End);
        let y = tb.get(k).copied().unwrap_or(Token::End);
        if x.kind() == y.kind() {
            if let Token::End = x {
                return Ok(Ordering::Equal);
            }
            let c = cmp_same_kind(x, y);
            if c != Ordering::Equal {
                return Ok(c);
            }
            continue;
        }
        if let Token::Suffix(r) = x {
            if r < 0 {
                return Ok(Ordering::Less);
            }
        }
        if let Token::Suffix(r) = y {
            if r < 0 {
                return Ok(Ordering::Greater);
            }
        }
        return Ok(y.kind().cmp(&x.kind()));
    }
    Ok(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::compare;
    use crate::testutil::{assert_equal, assert_invalid, assert_sorted};
    use crate::VersionScheme::Apk;
    use std::cmp::Ordering;

    /// An excerpt of apk-tools' test/version.data (`a op b` per line), the lines
    /// exercising suffixes, letters, revisions and leading zeros (its lines with invalid
    /// versions, which apk orders up to the first bad token, are left out: they are
    /// errors here).
    const VERSION_DATA: &str = "\
2.34 > 0.1.0_alpha
0.1.0_alpha = 0.1.0_alpha
0.1.0_alpha < 0.1.3_alpha
0.1.0_alpha2 > 0.1.0_alpha
0.1.0_alpha < 2.2.39-r1
1.0.4-r3 < 1.0.4-r4
1.1 > 1.1_alpha1
1.2 < 1.3_alpha
1.3_alpha < 1.3_alpha2
0.7.0 < 0.8_beta1
3.10.18-r1 > 2.3.0b-r1
2.3.0b-r1 < 2.3.0b-r2
0.12.3 > 0.12
0.13_beta4 < 0.13_beta5
0.13_beta5 > 0.9.12
1.2.11 < 1.2.12.1
0.2.0-r1 < 3.1_p16
3.1_p16 < 3.1_p17
3.1_p17 > 1.06-r6
1.06-r6 < 006
006 > 1.0.0
1.2.2-r1 > 1.2.2
2.59 < 20050718-r1
3.9.8-r5 > 2.01.01_alpha10
2.01.01_alpha10 > 0.94
1.0 > 0.99.3.20040818
1.00_beta2 > 0.9.2
4.2.52_p2-r1 < 4.2.52_p4-r2
1.02.07 < 1.02.10-r1
2.18.3-r10 > 1.05-r18
20060720 > 3.0.20060720
2.5.1-r8 < 2.5.1a-r1
1.3.5-r10 > 1.3.5-r8
20040401 > 2.0.0_rc3-r1
3.0.0-r2 < 021109-r3
3.9_pre20060124 > 0.01
1.1.7 < 6b-r7
0.10.0 < 0.10.1_rc1
0.15.1b-r2 > 0.15.1b
22.7-r1 < 22.7.3-r1
2.1_pre20 < 2.1_pre26
2.10.1 > 02.08.01b
3.81 > 1.6d
1.2.07.8 < 1.2.12.04
0.20070118 < 0.20070207_rc1
0.20070207_rc1 < 1.0
4.5_p1-r1 > 4.5_p1
0.9.8c-r1 < 0.9.8d
1.7 < 1.7b
1.8.5 < 1.8.5_p2
2.9.11_pre20051101-r3 > 2.9.11_pre20051101
1.6.8_p12-r1 > 1.6.8_p9-r2
2.12r-r4 < 2.12r-r5
0.9.28-r2 < 0.9.28.1
104-r11 > 104-r9
1.3-r0 < 1.3.1-r0
1.3_pre1-r1 < 1.3.2
1.0_p10-r0 > 1.0_p9-r0
0.1.0_alpha_pre2 < 0.1.0_alpha
1.0.0_pre20191002222144-r0 < 1.0.0_pre20210530193627-r0
";

    #[test]
    fn apk_tools_version_data() {
        for line in VERSION_DATA.lines() {
            let mut it = line.split_whitespace();
            let (a, op, b) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            let want = match op {
                "<" => Ordering::Less,
                ">" => Ordering::Greater,
                _ => Ordering::Equal,
            };
            assert_eq!(compare(a, b).unwrap(), want, "{line}");
            assert_eq!(compare(b, a).unwrap(), want.reverse(), "{line} reversed");
        }
    }

    #[test]
    fn sorted_lists() {
        assert_sorted(
            Apk,
            &[
                "1.0_alpha",
                "1.0_alpha1",
                "1.0_alpha2",
                "1.0_beta",
                "1.0_pre1",
                "1.0_rc1",
                "1.0",
                "1.0-r1",
                "1.0-r2",
                "1.0_cvs",
                "1.0_svn",
                "1.0_git20240101",
                "1.0_hg",
                "1.0_p1",
                "1.0_p1-r1",
                "1.0a",
                "1.0b",
                "1.0.1",
                "1.01.1",
                "1.1",
                "1.10",
                "2",
            ],
        );
        assert_sorted(
            Apk,
            &["3.1.4-r5", "3.1.4-r6", "3.1.5-r0", "3.3.0-r0", "3.3.1-r0"],
        );
        assert_sorted(
            Apk,
            &["99999999999999999999999.1", "100000000000000000000000.0"],
        );
    }

    #[test]
    fn equalities() {
        assert_equal(
            Apk,
            &[("1.0", "1.0"), ("01.0", "1.0"), ("1.0-r0", "1.0-r00")],
        );
    }

    #[test]
    fn invalid() {
        assert_invalid(
            Apk,
            "1.0",
            &[
                "", "a1.0", "1.0bc", "1..0", "1.0_foo", "1.0-1", "1.0-r", "1.0 ", "1.0A", "v1.0",
            ],
        );
    }
}
