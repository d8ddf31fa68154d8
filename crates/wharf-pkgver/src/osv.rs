//! OSV `affected[].ranges` and the schema's evaluation algorithm.
//!
//! Follows the OSV schema's "Evaluation" pseudocode: a version is affected when it is
//! listed in `versions` or lies in any range. Within a range the events are sorted by
//! version (`introduced: "0"` first, `limit: "*"` last; at equal versions
//! `introduced` before `fixed`/`last_affected`), then walked: `introduced <= v` turns
//! vulnerable on, `fixed <= v` and `last_affected < v` turn it off. When a range has
//! `limit` events, `v` must be below one of them. `GIT` ranges never match here (they
//! need the commit graph). A `SEMVER` range uses semver ordering whatever the
//! ecosystem (Go's rules, which tolerate a `v`, for Go).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::{compare, VersionError, VersionScheme};

/// OSV range `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RangeKind {
    /// `"SEMVER"`: SemVer 2.0 ordering.
    #[serde(rename = "SEMVER")]
    Semver,
    /// `"ECOSYSTEM"`: the ecosystem's own ordering.
    #[serde(rename = "ECOSYSTEM")]
    Ecosystem,
    /// `"GIT"`: commit hashes; never matched by this crate.
    #[serde(rename = "GIT")]
    Git,
}

/// One OSV range event, `{"introduced": "1.0"}` and so on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// First affected version; `"0"` means before every version.
    Introduced(String),
    /// First version with the fix (not affected).
    Fixed(String),
    /// Last affected version (inclusive).
    LastAffected(String),
    /// Upper bound of the range (exclusive); `"*"` means none.
    Limit(String),
}

impl Event {
    /// The event's version string.
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Event::Introduced(_) => 0,
            Event::Fixed(_) => 1,
            Event::LastAffected(_) => 2,
            Event::Limit(_) => 3,
        }
    }
}

/// One OSV `affected[].ranges[]` entry (`repo`, `database_specific` are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// OSV `type`.
    #[serde(rename = "type")]
    pub kind: RangeKind,
    /// The range's events, in any order.
    pub events: Vec<Event>,
}

/// Where a version sits: before all, a real version, or after all.
#[derive(Clone, Copy)]
enum Bound<'a> {
    Zero,
    At(&'a str),
    Infinity,
}

fn bound(e: &Event) -> Bound<'_> {
    match e {
        Event::Introduced(v) if v == "0" => Bound::Zero,
        Event::Limit(v) if v == "*" => Bound::Infinity,
        _ => Bound::At(e.version()),
    }
}

fn cmp_bound(scheme: VersionScheme, a: Bound<'_>, b: Bound<'_>) -> Result<Ordering, VersionError> {
    Ok(match (a, b) {
        (Bound::Zero, Bound::Zero) | (Bound::Infinity, Bound::Infinity) => Ordering::Equal,
        (Bound::Zero, _) | (_, Bound::Infinity) => Ordering::Less,
        (_, Bound::Zero) | (Bound::Infinity, _) => Ordering::Greater,
        (Bound::At(x), Bound::At(y)) => compare(scheme, x, y)?,
    })
}

/// The scheme a range's versions are ordered by.
fn range_scheme(scheme: VersionScheme, kind: RangeKind) -> VersionScheme {
    match (kind, scheme) {
        (RangeKind::Semver, VersionScheme::Go) => VersionScheme::Go,
        (RangeKind::Semver, _) => VersionScheme::Semver,
        _ => scheme,
    }
}

/// Events sorted by version (stable insertion sort: comparisons can fail).
fn sorted(scheme: VersionScheme, events: &[Event]) -> Result<Vec<&Event>, VersionError> {
    let mut out: Vec<&Event> = Vec::with_capacity(events.len());
    for e in events {
        let mut at = out.len();
        while at > 0 {
            let prev = out[at - 1];
            let c = cmp_bound(scheme, bound(prev), bound(e))?.then(prev.rank().cmp(&e.rank()));
            if c != Ordering::Greater {
                break;
            }
            at -= 1;
        }
        out.insert(at, e);
    }
    Ok(out)
}

/// Evaluates one range: `Ok(None)` when `version` is not in it, else `Some` of the
/// first `fixed` event after the interval's start (`None` inside when unfixed).
fn evaluate<'r>(
    scheme: VersionScheme,
    range: &'r Range,
    version: &str,
) -> Result<Option<Option<&'r str>>, VersionError> {
    if range.kind == RangeKind::Git {
        return Ok(None);
    }
    let scheme = range_scheme(scheme, range.kind);
    let v = Bound::At(version);
    let limits: Vec<&Event> = range
        .events
        .iter()
        .filter(|e| matches!(e, Event::Limit(_)))
        .collect();
    if !limits.is_empty() {
        let mut below = false;
        for l in limits {
            if cmp_bound(scheme, v, bound(l))? == Ordering::Less {
                below = true;
            }
        }
        if !below {
            return Ok(None);
        }
    }
    let events = sorted(scheme, &range.events)?;
    let mut vulnerable_from = None;
    for (i, e) in events.iter().enumerate() {
        let c = cmp_bound(scheme, v, bound(e))?;
        match e {
            Event::Introduced(_) if c != Ordering::Less => vulnerable_from = Some(i),
            Event::Fixed(_) if c != Ordering::Less => vulnerable_from = None,
            Event::LastAffected(_) if c == Ordering::Greater => vulnerable_from = None,
            _ => {}
        }
    }
    Ok(vulnerable_from.map(|start| {
        events[start..].iter().find_map(|e| match e {
            Event::Fixed(f) => Some(f.as_str()),
            _ => None,
        })
    }))
}

/// Whether `version` (in `scheme`) is affected by these ranges or listed in `versions`.
///
/// `versions` entries match when equal as strings or equal under `scheme` (entries
/// the scheme rejects are skipped). Errors when `version`, or a version in a
/// non-`GIT` range, is invalid for the scheme that range uses.
pub fn is_affected(
    scheme: VersionScheme,
    ranges: &[Range],
    versions: &[String],
    version: &str,
) -> Result<bool, VersionError> {
    crate::validate(scheme, version)?;
    if versions
        .iter()
        .any(|v| v == version || compare(scheme, v, version) == Ok(Ordering::Equal))
    {
        return Ok(true);
    }
    for range in ranges {
        if evaluate(scheme, range, version)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The fixed version a user should upgrade to: the smallest `fixed` of the range interval containing `version`, if any.
///
/// Within a range that is the first `fixed` event after the `introduced` event that
/// opened the interval containing `version`. When several ranges contain `version`,
/// the greatest of their fixes (so that it leaves all of them); `None` when `version`
/// is not in any range or one containing range has no fix (unfixed, or closed only by
/// `last_affected`/`limit`).
pub fn fix_for(
    scheme: VersionScheme,
    ranges: &[Range],
    version: &str,
) -> Result<Option<String>, VersionError> {
    crate::validate(scheme, version)?;
    let mut best: Option<(VersionScheme, &str)> = None;
    for range in ranges {
        let Some(fix) = evaluate(scheme, range, version)? else {
            continue;
        };
        let Some(fix) = fix else {
            return Ok(None);
        };
        let s = range_scheme(scheme, range.kind);
        best = match best {
            // Fixes from differently ordered ranges are compared by the ecosystem's
            // scheme when it accepts both, else the later one wins.
            Some((bs, b)) => {
                let cmp_scheme = if bs == s { s } else { scheme };
                match compare(cmp_scheme, b, fix) {
                    Ok(Ordering::Less) | Err(_) => Some((s, fix)),
                    Ok(_) => Some((bs, b)),
                }
            }
            None => Some((s, fix)),
        };
    }
    Ok(best.map(|(_, f)| f.to_owned()))
}
