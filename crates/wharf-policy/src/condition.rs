//! The `Condition` element: operators, their values, and how they evaluate.

use std::net::IpAddr;

use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use crate::context::Keys;
use crate::pattern::{arn_tokens, glob, Template};

/// The comparison an operator makes, before negation, `...IfExists` and set prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    NumericEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    ArnLike,
    Null,
}

/// Every base operator AWS documents: name, test, negated.
const OPERATORS: &[(&str, Test, bool)] = &[
    ("StringEquals", Test::StringEquals, false),
    ("StringNotEquals", Test::StringEquals, true),
    (
        "StringEqualsIgnoreCase",
        Test::StringEqualsIgnoreCase,
        false,
    ),
    (
        "StringNotEqualsIgnoreCase",
        Test::StringEqualsIgnoreCase,
        true,
    ),
    ("StringLike", Test::StringLike, false),
    ("StringNotLike", Test::StringLike, true),
    ("NumericEquals", Test::NumericEquals, false),
    ("NumericNotEquals", Test::NumericEquals, true),
    ("NumericLessThan", Test::NumericLessThan, false),
    ("NumericLessThanEquals", Test::NumericLessThanEquals, false),
    ("NumericGreaterThan", Test::NumericGreaterThan, false),
    (
        "NumericGreaterThanEquals",
        Test::NumericGreaterThanEquals,
        false,
    ),
    ("DateEquals", Test::DateEquals, false),
    ("DateNotEquals", Test::DateEquals, true),
    ("DateLessThan", Test::DateLessThan, false),
    ("DateLessThanEquals", Test::DateLessThanEquals, false),
    ("DateGreaterThan", Test::DateGreaterThan, false),
    ("DateGreaterThanEquals", Test::DateGreaterThanEquals, false),
    ("Bool", Test::Bool, false),
    ("BinaryEquals", Test::BinaryEquals, false),
    ("IpAddress", Test::IpAddress, false),
    ("NotIpAddress", Test::IpAddress, true),
    ("ArnEquals", Test::ArnLike, false),
    ("ArnLike", Test::ArnLike, false),
    ("ArnNotEquals", Test::ArnLike, true),
    ("ArnNotLike", Test::ArnLike, true),
    ("Null", Test::Null, false),
];

/// `ForAnyValue:` / `ForAllValues:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOperator {
    /// `ForAnyValue:`: at least one request value must satisfy the test.
    ForAnyValue,
    /// `ForAllValues:`: every request value must satisfy the test (true when none).
    ForAllValues,
}

/// A parsed operator name such as `ForAnyValue:StringNotLikeIfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Operator {
    set: Option<SetOperator>,
    test: Test,
    negated: bool,
    if_exists: bool,
}

fn parse_operator(name: &str) -> Result<Operator, String> {
    let (set, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
        (Some(SetOperator::ForAnyValue), r)
    } else if let Some(r) = name.strip_prefix("ForAllValues:") {
        (Some(SetOperator::ForAllValues), r)
    } else {
        (None, name)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let found = OPERATORS.iter().find(|(n, _, _)| *n == base);
    match found {
        Some((_, Test::Null, _)) if if_exists => Err(format!(
            "condition operator \"{name}\": Null cannot take IfExists"
        )),
        Some((_, test, negated)) => Ok(Operator {
            set,
            test: *test,
            negated: *negated,
            if_exists,
        }),
        None => {
            let hint = OPERATORS
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(base))
                .map(|(n, _, _)| format!(" (operator names are case-sensitive: \"{n}\")"))
                .unwrap_or_default();
            Err(format!("unknown condition operator \"{name}\"{hint}"))
        }
    }
}

/// A policy value compiled for its operator.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(Template),
    Number(f64),
    Date(i128),
    Bool(bool),
    Cidr(Cidr),
    Binary(String),
}

/// One `"Operator": {"key": values}` pair of a statement's `Condition`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    operator: String,
    key: String,
    values: Vec<String>,
    op: Operator,
    compiled: Vec<Value>,
}

impl Condition {
    /// Compiles one condition. `variables`: policy variables are enabled (Version
    /// 2012-10-17). Errors are phrased to follow a location prefix.
    pub(crate) fn new(
        operator: &str,
        key: &str,
        values: Vec<String>,
        variables: bool,
    ) -> Result<Condition, String> {
        let op = parse_operator(operator)?;
        if key.is_empty() || !key.contains(':') || key.starts_with(':') {
            return Err(format!(
                "condition key \"{key}\" must be a context key name such as \"aws:SourceIp\""
            ));
        }
        let mut compiled = Vec::with_capacity(values.len());
        for v in &values {
            let bad = |what: &str| format!("value \"{v}\" of {operator} is not {what}");
            compiled.push(match op.test {
                Test::StringEquals
                | Test::StringEqualsIgnoreCase
                | Test::StringLike
                | Test::ArnLike => Value::Text(Template::parse(v, variables)?),
                Test::NumericEquals
                | Test::NumericLessThan
                | Test::NumericLessThanEquals
                | Test::NumericGreaterThan
                | Test::NumericGreaterThanEquals => {
                    Value::Number(parse_number(v).ok_or_else(|| bad("a number"))?)
                }
                Test::DateEquals
                | Test::DateLessThan
                | Test::DateLessThanEquals
                | Test::DateGreaterThan
                | Test::DateGreaterThanEquals => Value::Date(
                    parse_date(v).ok_or_else(|| bad("an ISO 8601 date or epoch seconds"))?,
                ),
                Test::Bool | Test::Null => {
                    Value::Bool(parse_bool(v).ok_or_else(|| bad("\"true\" or \"false\""))?)
                }
                Test::IpAddress => Value::Cidr(
                    Cidr::parse(v).ok_or_else(|| bad("an IPv4 or IPv6 address or CIDR block"))?,
                ),
                Test::BinaryEquals => {
                    if !is_base64(v) {
                        return Err(bad("base64"));
                    }
                    Value::Binary(v.clone())
                }
            });
        }
        Ok(Condition {
            operator: operator.to_string(),
            key: key.to_string(),
            values,
            op,
            compiled,
        })
    }

    /// The operator as written, e.g. `ForAnyValue:StringLikeIfExists`.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// The condition key as written, e.g. `aws:SourceIp`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The policy values as strings (numbers and booleans in their JSON spelling).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// The set operator prefix, if any.
    pub fn set_operator(&self) -> Option<SetOperator> {
        self.op.set
    }

    /// Whether the request satisfies this condition.
    pub(crate) fn matches(&self, keys: &Keys<'_>) -> bool {
        let present = keys.get(&self.key).filter(|v| !v.is_empty());
        if self.op.test == Test::Null {
            // Null: "true" asks that the key be absent, "false" that it be present.
            return self.compiled.iter().any(
                |v| matches!(v, Value::Bool(want_absent) if *want_absent == present.is_none()),
            );
        }
        match self.op.set {
            None => match present {
                None => self.op.if_exists || self.op.negated,
                Some(vals) => {
                    let hit = vals.iter().any(|v| self.positive(v, keys));
                    hit != self.op.negated
                }
            },
            Some(set) => {
                // An empty set (absent key, no values, or a single empty string) is
                // AWS's "null data set".
                let vals = present.filter(|v| !(v.len() == 1 && v[0].is_empty()));
                match (set, vals) {
                    (SetOperator::ForAnyValue, None) => self.op.if_exists,
                    (SetOperator::ForAllValues, None) => true,
                    (SetOperator::ForAnyValue, Some(vals)) => vals
                        .iter()
                        .any(|v| self.positive(v, keys) != self.op.negated),
                    (SetOperator::ForAllValues, Some(vals)) => vals
                        .iter()
                        .all(|v| self.positive(v, keys) != self.op.negated),
                }
            }
        }
    }

    /// Whether one request value matches any of the policy values (un-negated).
    fn positive(&self, actual: &str, keys: &Keys<'_>) -> bool {
        self.compiled
            .iter()
            .any(|v| test_one(self.op.test, v, actual, keys))
    }
}

fn test_one(test: Test, policy: &Value, actual: &str, keys: &Keys<'_>) -> bool {
    match (test, policy) {
        (Test::StringEquals, Value::Text(t)) => t.resolve_text(keys).is_ok_and(|p| p == actual),
        (Test::StringEqualsIgnoreCase, Value::Text(t)) => t
            .resolve_text(keys)
            .is_ok_and(|p| p.to_lowercase() == actual.to_lowercase()),
        (Test::StringLike, Value::Text(t)) => {
            t.resolve_tokens(keys).is_ok_and(|p| glob(&p, actual))
        }
        (Test::ArnLike, Value::Text(t)) => t
            .resolve_tokens(keys)
            .is_ok_and(|p| actual.starts_with("arn:") && glob(&arn_tokens(p), actual)),
        (_, Value::Number(p)) => parse_number(actual).is_some_and(|a| match test {
            Test::NumericEquals => a == *p,
            Test::NumericLessThan => a < *p,
            Test::NumericLessThanEquals => a <= *p,
            Test::NumericGreaterThan => a > *p,
            Test::NumericGreaterThanEquals => a >= *p,
            _ => false,
        }),
        (_, Value::Date(p)) => parse_date(actual).is_some_and(|a| match test {
            Test::DateEquals => a == *p,
            Test::DateLessThan => a < *p,
            Test::DateLessThanEquals => a <= *p,
            Test::DateGreaterThan => a > *p,
            Test::DateGreaterThanEquals => a >= *p,
            _ => false,
        }),
        (Test::Bool, Value::Bool(p)) => parse_bool(actual) == Some(*p),
        (Test::IpAddress, Value::Cidr(c)) => actual
            .trim()
            .parse::<IpAddr>()
            .is_ok_and(|ip| c.contains(ip)),
        (Test::BinaryEquals, Value::Binary(p)) => p == actual,
        _ => false,
    }
}

fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("nan") || s.to_ascii_lowercase().contains("inf") {
        return None;
    }
    s.parse::<f64>().ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parses an ISO 8601 date/time (RFC 3339, or the other ISO 8601 forms; a time
/// without an offset is UTC; a bare date is midnight UTC) or epoch seconds, into
/// nanoseconds since the epoch.
pub(crate) fn parse_date(s: &str) -> Option<i128> {
    let s = s.trim();
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = s.parse().ok()?;
        return Some(i128::from(secs) * 1_000_000_000);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(t) = PrimitiveDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t.assume_utc().unix_timestamp_nanos());
    }
    if let Ok(d) = Date::parse(s, &Iso8601::DEFAULT) {
        return Some(d.midnight().assume_utc().unix_timestamp_nanos());
    }
    None
}

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// An IP address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128 block).
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok()?
            }
            Some(_) => return None,
            None => max,
        };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the block. IPv4-mapped IPv6 addresses count as their
    /// IPv4 address.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cond(op: &str, key: &str, values: &[&str]) -> Condition {
        Condition::new(
            op,
            key,
            values.iter().map(|s| s.to_string()).collect(),
            true,
        )
        .unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    fn ctx(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    /// Evaluates `op` on `key` with policy values `values` against a request whose
    /// `key` has `actual` (None: absent).
    fn check(op: &str, values: &[&str], actual: Option<&[&str]>) -> bool {
        let c = cond(op, "test:key", values);
        let map = match actual {
            Some(a) => ctx(&[("test:key", a)]),
            None => ctx(&[("other:key", &["x"])]),
        };
        c.matches(&Keys::new(&map))
    }

    #[test]
    fn operator_names() {
        assert!(parse_operator("StringEquals").is_ok());
        assert!(parse_operator("ForAnyValue:StringLikeIfExists").is_ok());
        assert!(parse_operator("ForAllValues:ArnNotLike").is_ok());
        let e = parse_operator("stringequals").unwrap_err();
        assert!(e.contains("\"StringEquals\""), "{e}");
        assert!(parse_operator("StringMatches")
            .unwrap_err()
            .contains("unknown condition operator"));
        assert!(parse_operator("NullIfExists").is_err());
        assert!(parse_operator("ForSomeValues:StringEquals").is_err());
    }

    #[test]
    fn string_operators() {
        assert!(check("StringEquals", &["a", "b"], Some(&["b"])));
        assert!(!check("StringEquals", &["a"], Some(&["A"])));
        assert!(!check("StringEquals", &["a"], None));
        assert!(!check("StringNotEquals", &["a", "b"], Some(&["b"])));
        assert!(check("StringNotEquals", &["a"], Some(&["c"])));
        assert!(
            check("StringNotEquals", &["a"], None),
            "negated + missing key matches"
        );
        assert!(check("StringEqualsIgnoreCase", &["ProD"], Some(&["prod"])));
        assert!(!check("StringEqualsIgnoreCase", &["prod"], Some(&["dev"])));
        assert!(check(
            "StringNotEqualsIgnoreCase",
            &["prod"],
            Some(&["dev"])
        ));
        assert!(!check(
            "StringNotEqualsIgnoreCase",
            &["PROD"],
            Some(&["prod"])
        ));
        assert!(check("StringLike", &["team-*"], Some(&["team-a"])));
        assert!(check("StringLike", &["v?"], Some(&["v1"])));
        assert!(!check("StringLike", &["team-*"], Some(&["Team-a"])));
        assert!(!check("StringNotLike", &["team-*"], Some(&["team-a"])));
        assert!(check("StringNotLike", &["team-*"], Some(&["ops"])));
        assert!(check("StringNotLike", &["team-*"], None));
        // A literal `*` in StringEquals is not a wildcard.
        assert!(!check("StringEquals", &["*"], Some(&["x"])));
        assert!(check("StringEquals", &["*"], Some(&["*"])));
    }

    #[test]
    fn numeric_operators() {
        assert!(check("NumericEquals", &["10"], Some(&["10.0"])));
        assert!(!check("NumericEquals", &["10"], Some(&["11"])));
        assert!(check("NumericNotEquals", &["10"], Some(&["11"])));
        assert!(!check("NumericNotEquals", &["10"], Some(&["10"])));
        assert!(check("NumericLessThan", &["10"], Some(&["9"])));
        assert!(!check("NumericLessThan", &["10"], Some(&["10"])));
        assert!(check("NumericLessThanEquals", &["10"], Some(&["10"])));
        assert!(!check("NumericLessThanEquals", &["10"], Some(&["10.5"])));
        assert!(check("NumericGreaterThan", &["10"], Some(&["11"])));
        assert!(!check("NumericGreaterThan", &["10"], Some(&["10"])));
        assert!(check("NumericGreaterThanEquals", &["10"], Some(&["10"])));
        assert!(!check("NumericGreaterThanEquals", &["10"], Some(&["-3"])));
        assert!(!check("NumericLessThan", &["10"], Some(&["ten"])));
        assert!(!check("NumericLessThan", &["10"], None));
        assert!(
            Condition::new("NumericLessThan", "s3:max-keys", vec!["ten".into()], true).is_err()
        );
    }

    #[test]
    fn date_operators() {
        let t = "2024-06-01T00:00:00Z";
        assert!(check(
            "DateEquals",
            &[t],
            Some(&["2024-06-01T02:00:00+02:00"])
        ));
        assert!(
            check("DateEquals", &["1717200000"], Some(&[t])),
            "epoch seconds"
        );
        assert!(!check("DateEquals", &[t], Some(&["2024-06-01T00:00:01Z"])));
        assert!(check(
            "DateNotEquals",
            &[t],
            Some(&["2024-06-02T00:00:00Z"])
        ));
        assert!(!check("DateNotEquals", &[t], Some(&[t])));
        assert!(check("DateLessThan", &[t], Some(&["2024-05-31T23:59:59Z"])));
        assert!(!check("DateLessThan", &[t], Some(&[t])));
        assert!(check("DateLessThanEquals", &[t], Some(&[t])));
        assert!(!check(
            "DateLessThanEquals",
            &[t],
            Some(&["2025-01-01T00:00:00Z"])
        ));
        assert!(
            check(
                "DateGreaterThan",
                &["2024-06-01"],
                Some(&["2024-06-01T00:00:01Z"])
            ),
            "bare date"
        );
        assert!(!check("DateGreaterThan", &[t], Some(&[t])));
        assert!(check("DateGreaterThanEquals", &[t], Some(&["1717200000"])));
        assert!(!check(
            "DateGreaterThanEquals",
            &[t],
            Some(&["2020-01-01T00:00:00Z"])
        ));
        assert!(!check("DateLessThan", &[t], Some(&["yesterday"])));
        assert!(
            Condition::new("DateLessThan", "aws:CurrentTime", vec!["soon".into()], true).is_err()
        );
    }

    #[test]
    fn bool_binary_null() {
        assert!(check("Bool", &["true"], Some(&["true"])));
        assert!(check("Bool", &["false"], Some(&["FALSE"])));
        assert!(!check("Bool", &["true"], Some(&["false"])));
        assert!(!check("Bool", &["true"], None));
        assert!(check("BoolIfExists", &["true"], None));
        assert!(Condition::new("Bool", "aws:SecureTransport", vec!["yes".into()], true).is_err());
        assert!(check(
            "BinaryEquals",
            &["QmluYXJ5VmFsdWU="],
            Some(&["QmluYXJ5VmFsdWU="])
        ));
        assert!(!check(
            "BinaryEquals",
            &["QmluYXJ5VmFsdWU="],
            Some(&["b3RoZXI="])
        ));
        assert!(Condition::new("BinaryEquals", "k:k", vec!["not base64!".into()], true).is_err());
        assert!(check("Null", &["true"], None));
        assert!(!check("Null", &["true"], Some(&["x"])));
        assert!(check("Null", &["false"], Some(&["x"])));
        assert!(!check("Null", &["false"], None));
        assert!(
            check("Null", &["true"], Some(&[])),
            "a key with no values is null"
        );
    }

    #[test]
    fn ip_operators() {
        assert!(check(
            "IpAddress",
            &["203.0.113.0/24"],
            Some(&["203.0.113.7"])
        ));
        assert!(!check(
            "IpAddress",
            &["203.0.113.0/24"],
            Some(&["203.0.114.7"])
        ));
        assert!(check("IpAddress", &["10.1.2.3"], Some(&["10.1.2.3"])));
        assert!(check("IpAddress", &["0.0.0.0/0"], Some(&["8.8.8.8"])));
        assert!(check(
            "IpAddress",
            &["2001:db8::/32"],
            Some(&["2001:db8:1::5"])
        ));
        assert!(!check(
            "IpAddress",
            &["2001:db8::/32"],
            Some(&["2001:db9::5"])
        ));
        assert!(!check(
            "IpAddress",
            &["2001:db8::/32"],
            Some(&["203.0.113.7"])
        ));
        assert!(check(
            "IpAddress",
            &["203.0.113.0/24"],
            Some(&["::ffff:203.0.113.9"])
        ));
        assert!(check(
            "NotIpAddress",
            &["203.0.113.0/24"],
            Some(&["198.51.100.1"])
        ));
        assert!(!check(
            "NotIpAddress",
            &["203.0.113.0/24", "198.51.100.0/24"],
            Some(&["198.51.100.1"])
        ));
        assert!(check("NotIpAddress", &["203.0.113.0/24"], None));
        assert!(!check(
            "IpAddress",
            &["203.0.113.0/24"],
            Some(&["not-an-ip"])
        ));
        for bad in ["203.0.113.0/33", "10.0.0/8", "fe80::/129", "10.0.0.0/x"] {
            assert!(
                Condition::new("IpAddress", "aws:SourceIp", vec![bad.into()], true).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn arn_operators() {
        let role = "arn:aws:iam::111122223333:role/ci/builder";
        assert!(check(
            "ArnLike",
            &["arn:aws:iam::111122223333:role/ci/*"],
            Some(&[role])
        ));
        assert!(check("ArnEquals", &[role], Some(&[role])));
        assert!(check(
            "ArnEquals",
            &["arn:aws:iam::*:role/ci/builder"],
            Some(&[role])
        ));
        assert!(!check(
            "ArnLike",
            &["arn:aws:iam::444455556666:role/*"],
            Some(&[role])
        ));
        assert!(!check(
            "ArnLike",
            &["arn:aws:iam::1111?2223333:role/*"],
            Some(&["arn:aws:iam::1111:2223333:role/x"])
        ));
        assert!(check(
            "ArnNotLike",
            &["arn:aws:iam::444455556666:*"],
            Some(&[role])
        ));
        assert!(!check("ArnNotEquals", &[role], Some(&[role])));
        assert!(check("ArnNotEquals", &[role], None));
        assert!(!check("ArnLike", &["*"], Some(&["not-an-arn"])));
    }

    #[test]
    fn if_exists_and_set_operators() {
        assert!(check("StringEqualsIfExists", &["a"], None));
        assert!(check("StringEqualsIfExists", &["a"], Some(&["a"])));
        assert!(!check("StringEqualsIfExists", &["a"], Some(&["b"])));
        assert!(check("StringNotEqualsIfExists", &["a"], None));
        assert!(check("IpAddressIfExists", &["10.0.0.0/8"], None));
        assert!(!check(
            "IpAddressIfExists",
            &["10.0.0.0/8"],
            Some(&["11.0.0.1"])
        ));

        // ForAnyValue: at least one value; false on missing or empty.
        assert!(check(
            "ForAnyValue:StringEquals",
            &["a", "b"],
            Some(&["x", "b"])
        ));
        assert!(!check(
            "ForAnyValue:StringEquals",
            &["a"],
            Some(&["x", "y"])
        ));
        assert!(!check("ForAnyValue:StringEquals", &["a"], None));
        assert!(!check("ForAnyValue:StringEquals", &["a"], Some(&[])));
        assert!(!check("ForAnyValue:StringEquals", &["a"], Some(&[""])));
        assert!(check("ForAnyValue:StringEqualsIfExists", &["a"], None));
        assert!(check(
            "ForAnyValue:StringNotEquals",
            &["a"],
            Some(&["a", "b"])
        ));
        assert!(!check("ForAnyValue:StringNotEquals", &["a"], Some(&["a"])));
        assert!(!check("ForAnyValue:StringNotEquals", &["a"], None));

        // ForAllValues: every value; true on missing or empty.
        assert!(check(
            "ForAllValues:StringEquals",
            &["a", "b"],
            Some(&["a", "b"])
        ));
        assert!(!check(
            "ForAllValues:StringEquals",
            &["a", "b"],
            Some(&["a", "c"])
        ));
        assert!(check("ForAllValues:StringEquals", &["a"], None));
        assert!(check("ForAllValues:StringEquals", &["a"], Some(&[])));
        assert!(check(
            "ForAllValues:StringNotLike",
            &["tmp-*"],
            Some(&["a", "b"])
        ));
        assert!(!check(
            "ForAllValues:StringNotLike",
            &["tmp-*"],
            Some(&["a", "tmp-1"])
        ));
        assert!(check(
            "ForAllValues:StringLike",
            &["team/*"],
            Some(&["team/a", "team/b"])
        ));

        // Without a set operator a multivalued key matches when any value does.
        assert!(check("StringEquals", &["b"], Some(&["a", "b"])));
        assert!(!check("StringNotEquals", &["b"], Some(&["a", "b"])));
    }

    #[test]
    fn variables_in_values() {
        let c = cond(
            "StringEquals",
            "aws:ResourceTag/owner",
            &["${aws:username}"],
        );
        let m = ctx(&[
            ("aws:resourcetag/owner", &["alice"]),
            ("aws:username", &["alice"]),
        ]);
        assert!(c.matches(&Keys::new(&m)));
        let m = ctx(&[
            ("aws:resourcetag/owner", &["alice"]),
            ("aws:username", &["bob"]),
        ]);
        assert!(!c.matches(&Keys::new(&m)));
        // An unresolvable variable matches nothing (and so its negation holds).
        let m = ctx(&[("aws:resourcetag/owner", &["alice"])]);
        assert!(!c.matches(&Keys::new(&m)));
        let n = cond(
            "StringNotEquals",
            "aws:ResourceTag/owner",
            &["${aws:username}"],
        );
        assert!(n.matches(&Keys::new(&m)));
        // Version 2008: the text is literal.
        let lit = Condition::new("StringEquals", "k:k", vec!["${aws:username}".into()], false)
            .expect("valid");
        let m = ctx(&[("k:k", &["${aws:username}"]), ("aws:username", &["alice"])]);
        assert!(lit.matches(&Keys::new(&m)));
    }

    #[test]
    fn cidr_edges() {
        let c = Cidr::parse("::/0").expect("valid");
        assert!(c.contains("2001:db8::1".parse().expect("ip")));
        let c = Cidr::parse("2001:db8:abcd:12::/64").expect("valid");
        assert!(c.contains("2001:db8:abcd:12:ffff::1".parse().expect("ip")));
        assert!(!c.contains("2001:db8:abcd:13::1".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/").is_none());
    }
}
