//! Maven versions, compared like Maven 3.9's `ComparableVersion`.
//!
//! The version is lower-cased and split into items at `.`, at `-` (which opens a
//! nested sub-list) and at every letter/digit transition (which also opens a
//! sub-list; so does a qualifier after `.`, so `1.0a == 1.0.a == 1-a`). Numbers compare numerically; qualifiers in the order
//! `alpha` (`a` before a digit) < `beta` (`b`) < `milestone` (`m`) < `rc` = `cr` <
//! `snapshot` < `""` = `ga` = `final` = `release` < `sp` < any other qualifier
//! (those in lexical order). Trailing "null" items (0, `""`, empty lists) are
//! trimmed, so `1 == 1.0 == 1-0 == 1.0.0-ga`. A `.`-item beats a `-`-list, which
//! beats a qualifier: `1-sp < 1-1 < 1.1`.

use std::cmp::Ordering;

use crate::num::{cmp_digits, is_zero};
use crate::{VersionError, VersionScheme};

#[derive(Debug)]
enum Item {
    Int(String),
    Str(String),
    List(Vec<Item>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const RELEASE_INDEX: &str = "5";

impl Item {
    fn string(value: &str, followed_by_digit: bool) -> Item {
        let value = match (followed_by_digit, value) {
            (true, "a") => "alpha",
            (true, "b") => "beta",
            (true, "m") => "milestone",
            (_, "ga" | "final" | "release") => "",
            (_, "cr") => "rc",
            (_, v) => v,
        };
        Item::Str(value.to_owned())
    }

    fn parse(digit: bool, s: &str) -> Item {
        if digit {
            Item::Int(s.trim_start_matches('0').to_owned())
        } else {
            Item::string(s, false)
        }
    }

    fn is_null(&self) -> bool {
        match self {
            Item::Int(n) => is_zero(n),
            Item::Str(s) => s.is_empty(),
            Item::List(l) => l.is_empty(),
        }
    }

    /// Compares with `other`, `None` standing for a missing item (padding).
    fn cmp(&self, other: Option<&Item>) -> Ordering {
        match (self, other) {
            (Item::Int(n), None) => {
                if is_zero(n) {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            (Item::Int(a), Some(Item::Int(b))) => cmp_digits(a, b),
            (Item::Int(_), Some(_)) => Ordering::Greater,
            (Item::Str(s), None) => comparable(s).as_str().cmp(RELEASE_INDEX),
            (Item::Str(_), Some(Item::Int(_) | Item::List(_))) => Ordering::Less,
            (Item::Str(a), Some(Item::Str(b))) => comparable(a).cmp(&comparable(b)),
            // The whole list against nothing, not only its first item (MNG-6964).
            (Item::List(l), None) => l
                .iter()
                .map(|i| i.cmp(None))
                .find(|c| *c != Ordering::Equal)
                .unwrap_or(Ordering::Equal),
            (Item::List(_), Some(Item::Int(_))) => Ordering::Less,
            (Item::List(_), Some(Item::Str(_))) => Ordering::Greater,
            (Item::List(a), Some(Item::List(b))) => cmp_lists(a, b),
        }
    }
}

fn cmp_lists(a: &[Item], b: &[Item]) -> Ordering {
    for i in 0..a.len().max(b.len()) {
        let c = match (a.get(i), b.get(i)) {
            (Some(l), r) => l.cmp(r),
            (None, Some(r)) => r.cmp(None).reverse(),
            (None, None) => Ordering::Equal,
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

/// A string that orders qualifiers: known ones by rank, unknown ones after all of
/// them, lexically.
fn comparable(q: &str) -> String {
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => i.to_string(),
        None => format!("{}-{q}", QUALIFIERS.len()),
    }
}

fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

fn parse(input: &str) -> Result<Vec<Item>, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::Maven, input, reason);
    if input.is_empty() {
        return Err(err("empty version"));
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("contains whitespace or control characters"));
    }
    let v = input.to_lowercase();
    // Innermost list last; each list is the last item of the one before it.
    let mut stack: Vec<Vec<Item>> = vec![Vec::new()];
    let mut digit = false;
    let mut start = 0;
    for (i, c) in v.char_indices() {
        let top = stack.len() - 1;
        if c == '.' || c == '-' {
            if i == start {
                stack[top].push(Item::Int(String::new()));
            } else {
                stack[top].push(Item::parse(digit, &v[start..i]));
            }
            start = i + 1;
            if c == '-' {
                stack.push(Vec::new());
            }
        } else if c.is_ascii_digit() {
            if !digit && i > start {
                // A qualifier after `.` counts as after `-` (`1.0.0.X1 < 1.0.0-X2`).
                if !stack[top].is_empty() {
                    stack.push(Vec::new());
                }
                let top = stack.len() - 1;
                stack[top].push(Item::string(&v[start..i], true));
                start = i;
                stack.push(Vec::new());
            }
            digit = true;
        } else {
            if digit && i > start {
                stack[top].push(Item::parse(true, &v[start..i]));
                start = i;
                stack.push(Vec::new());
            }
            digit = false;
        }
    }
    if v.len() > start {
        if !digit && stack.last().is_some_and(|l| !l.is_empty()) {
            stack.push(Vec::new());
        }
        let top = stack.len() - 1;
        stack[top].push(Item::parse(digit, &v[start..]));
    }
    loop {
        let Some(mut list) = stack.pop() else {
            return Ok(Vec::new());
        };
        normalize(&mut list);
        match stack.last_mut() {
            Some(parent) => parent.push(Item::List(list)),
            None => return Ok(list),
        }
    }
}

pub(crate) fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let (ia, ib) = (parse(a)?, parse(b)?);
    Ok(cmp_lists(&ia, &ib))
}

#[cfg(test)]
mod tests {
    use crate::testutil::{assert_equal, assert_invalid, assert_sorted};
    use crate::VersionScheme::Maven;

    // The lists below are Maven's ComparableVersionTest
    // (maven-artifact/src/test/java/org/apache/maven/artifact/versioning/) as of 3.9.x.

    /// ComparableVersionTest: VERSIONS_QUALIFIER.
    #[test]
    fn versions_qualifier() {
        assert_sorted(
            Maven,
            &[
                "1-alpha2snapshot",
                "1-alpha2",
                "1-alpha-123",
                "1-beta-2",
                "1-beta123",
                "1-m2",
                "1-m11",
                "1-rc",
                "1-cr2",
                "1-rc123",
                "1-SNAPSHOT",
                "1",
                "1-sp",
                "1-sp2",
                "1-sp123",
                "1-abc",
                "1-def",
                "1-pom-1",
                "1-1-snapshot",
                "1-1",
                "1-2",
                "1-123",
            ],
        );
    }

    /// ComparableVersionTest: VERSIONS_NUMBER.
    #[test]
    fn versions_number() {
        assert_sorted(
            Maven,
            &[
                "2.0", "2.0.a", "2-1", "2.0.2", "2.0.123", "2.1.0", "2.1-a", "2.1b", "2.1-c",
                "2.1-1", "2.1.0.1", "2.2", "2.123", "11.a2", "11.a11", "11.b2", "11.b11", "11.m2",
                "11.m11", "11", "11.a", "11b", "11c", "11m",
            ],
        );
    }

    /// ComparableVersionTest: testVersionComparing pairs, MNG-5568, MNG-6572, MNG-6964.
    #[test]
    fn version_comparing() {
        for pair in [
            ["1", "2"],
            ["1.5", "2"],
            ["1", "2.5"],
            ["1.0", "1.1"],
            ["1.1", "1.2"],
            ["1.0.0", "1.1"],
            ["1.0.1", "1.1"],
            ["1.1", "1.2.0"],
            ["1.0-alpha-1", "1.0"],
            ["1.0-alpha-1", "1.0-alpha-2"],
            ["1.0-alpha-1", "1.0-beta-1"],
            ["1.0-beta-1", "1.0-SNAPSHOT"],
            ["1.0-SNAPSHOT", "1.0"],
            ["1.0-alpha-1-SNAPSHOT", "1.0-alpha-1"],
            ["1.0", "1.0-1"],
            ["1.0-1", "1.0-2"],
            ["1.0.0", "1.0-1"],
            ["2.0-1", "2.0.1"],
            ["2.0.1-klm", "2.0.1-lmn"],
            ["2.0.1", "2.0.1-xyz"],
            ["2.0.1", "2.0.1-123"],
            ["2.0.1-xyz", "2.0.1-123"],
        ] {
            assert_sorted(Maven, &pair);
        }
        assert_sorted(Maven, &["6.1.0rc3", "6.1.0", "6.1H.5-beta"]);
        assert_sorted(
            Maven,
            &[
                "20190126.230843",
                "1234567890.12345",
                "123456789012345.1H.5-beta",
                "12345678901234567890.1H.5-beta",
            ],
        );
        assert_sorted(Maven, &["1-0.alpha", "1-0.beta", "1"]);
        assert_sorted(
            Maven,
            &[
                "1.0-milestone-1",
                "1.0-rc-1",
                "1.0",
                "1.0.1",
                "99999999999999999999.0",
                "100000000000000000000",
            ],
        );
    }

    /// ComparableVersionTest: testVersionsEqual, testLocaleIndependent and
    /// testVersionEqualWithLeadingZeroes.
    #[test]
    fn versions_equal() {
        assert_equal(
            Maven,
            &[
                ("1", "1"),
                ("1", "1.0"),
                ("1", "1.0.0"),
                ("1.0", "1.0.0"),
                ("1", "1-0"),
                ("1", "1.0-0"),
                ("1.0", "1.0-0"),
                ("1a", "1-a"),
                ("1a", "1.0-a"),
                ("1a", "1.0.0-a"),
                ("1.0a", "1-a"),
                ("1.0.0a", "1-a"),
                ("1x", "1-x"),
                ("1x", "1.0-x"),
                ("1x", "1.0.0-x"),
                ("1.0x", "1-x"),
                ("1.0.0x", "1-x"),
                ("1ga", "1"),
                ("1release", "1"),
                ("1final", "1"),
                ("1cr", "1rc"),
                ("1a1", "1-alpha-1"),
                ("1b2", "1-beta-2"),
                ("1m3", "1-milestone-3"),
                ("1X", "1x"),
                ("1A", "1a"),
                ("1B", "1b"),
                ("1M", "1m"),
                ("1Ga", "1"),
                ("1GA", "1"),
                ("1RELEASE", "1"),
                ("1RELeaSE", "1"),
                ("1Final", "1"),
                ("1FinaL", "1"),
                ("1FINAL", "1"),
                ("1Cr", "1Rc"),
                ("1cR", "1rC"),
                ("1m3", "1Milestone3"),
                ("1m3", "1MileStone3"),
                ("1m3", "1MILESTONE3"),
                (
                    "1-abcdefghijklmnopqrstuvwxyz",
                    "1-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                ),
                ("0000000000000000001", "1"),
                ("0001", "01"),
                ("0000000000000000000", "0"),
                ("00", "0"),
            ],
        );
    }

    #[test]
    fn invalid() {
        assert_invalid(Maven, "1.0", &["", "1.0 beta", "1.0\t"]);
    }
}
