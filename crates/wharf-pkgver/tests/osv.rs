//! OSV range evaluation: boundaries for every scheme and the schema's event rules.

use wharf_pkgver::osv::{fix_for, is_affected, Event, Range, RangeKind};
use wharf_pkgver::VersionScheme::{self, *};

fn eco(events: Vec<Event>) -> Range {
    Range {
        kind: RangeKind::Ecosystem,
        events,
    }
}

fn intro(v: &str) -> Event {
    Event::Introduced(v.into())
}
fn fixed(v: &str) -> Event {
    Event::Fixed(v.into())
}
fn last(v: &str) -> Event {
    Event::LastAffected(v.into())
}
fn limit(v: &str) -> Event {
    Event::Limit(v.into())
}

fn affected(scheme: VersionScheme, ranges: &[Range], v: &str) -> bool {
    is_affected(scheme, ranges, &[], v).unwrap()
}

/// One `[introduced, fixed)` interval per scheme, written fixed-first (unsorted), with
/// versions just below the start, inside (including just below the fix) and at or
/// just above the fix.
#[test]
fn boundaries_for_every_scheme() {
    struct Case {
        scheme: VersionScheme,
        introduced: &'static str,
        fixed: &'static str,
        below: &'static [&'static str],
        inside: &'static [&'static str],
        after: &'static [&'static str],
    }
    let cases = [
        Case {
            scheme: Dpkg,
            introduced: "1.2-1",
            fixed: "1.4-2",
            below: &["1.1.9-9", "1.2~rc1-1", "1.2-0", "1.2-0.1"],
            inside: &[
                "1.2-1",
                "1.2-1+deb12u1",
                "1.3",
                "1.4-1",
                "1.4-2~deb12u1",
                "0:1.4-1.9",
            ],
            after: &[
                "1.4-2",
                "0:1.4-2",
                "1.4-2+deb12u1",
                "1.4-10",
                "1.4.1-1",
                "1:0.1-1",
            ],
        },
        Case {
            scheme: Apk,
            introduced: "1.2.0-r0",
            fixed: "1.4.0-r2",
            below: &["1.1.9-r9", "1.2.0_rc1-r0", "1.2_p1"],
            inside: &[
                "1.2.0-r0",
                "1.2.0-r1",
                "1.3.0-r0",
                "1.4.0_rc1-r0",
                "1.4.0-r1",
            ],
            after: &[
                "1.4.0-r2",
                "1.4.0-r3",
                "1.4.0_p1-r0",
                "1.4.0a-r0",
                "1.4.1-r0",
            ],
        },
        Case {
            scheme: Rpm,
            introduced: "0:1.2-1.el9",
            fixed: "1.4-2.el9",
            below: &["1.1.9-9.el9", "1.2~rc1-1.el9", "1.2-0.el9"],
            inside: &[
                "1.2-1.el9",
                "1.2-1.el9_1",
                "1.4~rc1-1",
                "1.4-1.el9",
                "1.4-2~pre.el9",
            ],
            after: &["1.4-2.el9", "1.4-2.el9_2", "1.4^git1-1", "1:1.0-1"],
        },
        Case {
            scheme: Semver,
            introduced: "1.2.0",
            fixed: "1.4.0",
            below: &["1.1.99", "1.2.0-rc.1", "0.0.0"],
            inside: &[
                "1.2.0",
                "v1.2.0",
                "1.2.1-alpha",
                "1.3.9",
                "1.4.0-0",
                "1.4.0-rc.1",
            ],
            after: &["1.4.0", "1.4.0+build.5", "1.4.1", "2.0.0-alpha"],
        },
        Case {
            scheme: Go,
            introduced: "v1.2.0",
            fixed: "1.4.0",
            below: &["v1.1.99", "v1.2.0-20200101000000-abcdefabcdef"],
            inside: &[
                "v1.2.0",
                "1.2.0",
                "v1.2.1-0.20200101000000-abcdefabcdef",
                "v1.4.0-rc.1",
            ],
            after: &["v1.4.0", "v1.4", "v1.4.1", "v2.0.0+incompatible"],
        },
        Case {
            scheme: Pep440,
            introduced: "1.2",
            fixed: "1.4",
            below: &["1.1.99", "1.2a1", "1.2rc1", "1.2.dev0", "1.2.0rc1.post1"],
            inside: &[
                "1.2",
                "1.2.0",
                "1.2+local",
                "1.2.post1",
                "1.3",
                "1.4.dev0",
                "1.4rc1",
            ],
            after: &["1.4", "1.4.0", "1.4+local", "1.4.post1", "1.4.1", "1!0.1"],
        },
        Case {
            scheme: Maven,
            introduced: "1.2",
            fixed: "1.4",
            below: &["1.1.99", "1.2-alpha-1", "1.2-rc1", "1.2-SNAPSHOT"],
            inside: &[
                "1.2",
                "1.2.0",
                "1.2-sp1",
                "1.2.1",
                "1.3",
                "1.4-beta",
                "1.4-SNAPSHOT",
            ],
            after: &["1.4", "1.4.0", "1.4.RELEASE", "1.4-sp1", "1.4.1"],
        },
        Case {
            scheme: RubyGems,
            introduced: "1.2",
            fixed: "1.4",
            below: &["1.1.99", "1.2.a", "1.2.0.rc1"],
            inside: &["1.2", "1.2.0", "1.3", "1.4.0.pre", "1.4.0.rc1", "1.4.a"],
            after: &["1.4", "1.4.0", "1.4.0.1", "2"],
        },
    ];
    for c in &cases {
        let ranges = [eco(vec![fixed(c.fixed), intro(c.introduced)])];
        for v in c.below.iter().chain(c.after) {
            assert!(
                !affected(c.scheme, &ranges, v),
                "{:?} {v} not affected",
                c.scheme
            );
            assert_eq!(
                fix_for(c.scheme, &ranges, v).unwrap(),
                None,
                "{:?} {v}",
                c.scheme
            );
        }
        for v in c.inside {
            assert!(
                affected(c.scheme, &ranges, v),
                "{:?} {v} affected",
                c.scheme
            );
            assert_eq!(
                fix_for(c.scheme, &ranges, v).unwrap().as_deref(),
                Some(c.fixed),
                "{:?} {v}",
                c.scheme
            );
        }
        // last_affected is inclusive: the fix itself becomes affected, the next not.
        let la = [eco(vec![intro(c.introduced), last(c.fixed)])];
        assert!(
            affected(c.scheme, &la, c.fixed),
            "{:?} last_affected",
            c.scheme
        );
        assert!(!affected(c.scheme, &la, c.after[c.after.len() - 1]));
        assert_eq!(fix_for(c.scheme, &la, c.fixed).unwrap(), None);
        // introduced "0" covers everything below.
        let zero = [eco(vec![intro("0"), fixed(c.fixed)])];
        for v in c.below.iter().chain(c.inside) {
            assert!(affected(c.scheme, &zero, v), "{:?} {v} from 0", c.scheme);
        }
        for v in c.after {
            assert!(!affected(c.scheme, &zero, v), "{:?} {v} from 0", c.scheme);
        }
    }
}

#[test]
fn multiple_intervals_unsorted() {
    let r = [eco(vec![
        fixed("3.2.5"),
        intro("3.0.0"),
        fixed("1.0.2"),
        intro("1.0.0"),
    ])];
    for (v, want, fix) in [
        ("0.9.9", false, None),
        ("1.0.0", true, Some("1.0.2")),
        ("1.0.1", true, Some("1.0.2")),
        ("1.0.2", false, None),
        ("2.9.9", false, None),
        ("3.0.0-rc.1", false, None),
        ("3.0.0", true, Some("3.2.5")),
        ("3.2.4", true, Some("3.2.5")),
        ("3.2.5", false, None),
        ("9.0.0", false, None),
    ] {
        assert_eq!(affected(Semver, &r, v), want, "{v}");
        assert_eq!(fix_for(Semver, &r, v).unwrap().as_deref(), fix, "{v}");
    }
}

#[test]
fn several_fixes_in_one_interval_pick_the_smallest_above() {
    // Debian-style: one introduced, fixes for several branches.
    let r = [eco(vec![intro("0"), fixed("2.0"), fixed("1.5")])];
    assert_eq!(fix_for(Pep440, &r, "1.0").unwrap().as_deref(), Some("1.5"));
    assert!(!affected(Pep440, &r, "1.5"));
    assert!(!affected(Pep440, &r, "1.7"));
}

#[test]
fn unfixed_and_limits() {
    let open = [eco(vec![intro("0")])];
    assert!(affected(Semver, &open, "0.0.0"));
    assert!(affected(Semver, &open, "99.0.0"));
    assert_eq!(fix_for(Semver, &open, "1.0.0").unwrap(), None);

    let limited = [eco(vec![intro("1.0.0"), limit("2.0.0")])];
    assert!(!affected(Semver, &limited, "0.9.0"));
    assert!(affected(Semver, &limited, "1.0.0"));
    assert!(affected(Semver, &limited, "1.9.9"));
    assert!(!affected(Semver, &limited, "2.0.0"));
    assert!(!affected(Semver, &limited, "3.0.0"));
    let two_limits = [eco(vec![intro("1.0.0"), limit("2.0.0"), limit("*")])];
    assert!(affected(Semver, &two_limits, "3.0.0"));
}

#[test]
fn same_version_events() {
    // introduced and fixed at the same version: empty interval.
    let empty = [eco(vec![fixed("1.0.0"), intro("1.0.0")])];
    assert!(!affected(Semver, &empty, "1.0.0"));
    // introduced and last_affected at the same version: exactly that version.
    let one = [eco(vec![last("1.0.0"), intro("1.0.0")])];
    assert!(affected(Semver, &one, "1.0.0"));
    assert!(!affected(Semver, &one, "1.0.1"));
    assert!(!affected(Semver, &one, "0.9.0"));
}

#[test]
fn git_ranges_never_match_and_versions_list_does() {
    let git = [Range {
        kind: RangeKind::Git,
        events: vec![
            intro("0"),
            fixed("c43455749b914feef56b178b256f29b3016146eb"),
        ],
    }];
    assert!(!affected(Pep440, &git, "1.0"));
    assert_eq!(fix_for(Pep440, &git, "1.0").unwrap(), None);
    let versions = vec![
        "2.8.0".to_owned(),
        "2.8.0.post1".to_owned(),
        "not a version".to_owned(),
    ];
    assert!(is_affected(Pep440, &git, &versions, "2.8.0").unwrap());
    assert!(is_affected(Pep440, &git, &versions, "2.8.0.0").unwrap());
    assert!(is_affected(Pep440, &git, &versions, "2.8.0-post1").unwrap());
    assert!(!is_affected(Pep440, &git, &versions, "2.8.1").unwrap());
}

#[test]
fn semver_ranges_use_semver_ordering() {
    // Under Maven ordering 1.0.0-rc.1 would be a different thing; SEMVER rules apply.
    let r = [Range {
        kind: RangeKind::Semver,
        events: vec![intro("0"), fixed("0.1.20")],
    }];
    assert!(affected(Semver, &r, "0.1.19"));
    assert!(!affected(Semver, &r, "0.1.20"));
    // Go ecosystem with SEMVER events written without `v`.
    let go = [Range {
        kind: RangeKind::Semver,
        events: vec![intro("1.2.0"), fixed("1.20.5")],
    }];
    assert!(affected(Go, &go, "v1.20.4"));
    assert!(affected(Go, &go, "v1.20.5-0.20230101000000-abcdefabcdef"));
    assert!(!affected(Go, &go, "v1.20.5"));
    assert_eq!(
        fix_for(Go, &go, "v1.3.0").unwrap().as_deref(),
        Some("1.20.5")
    );
    // A SEMVER range applied to an ecosystem whose versions are not semver.
    let pep = [Range {
        kind: RangeKind::Semver,
        events: vec![intro("1.0.0"), fixed("2.0.0")],
    }];
    assert!(is_affected(Pep440, &pep, &[], "1.5").is_err());
    assert!(affected(Pep440, &pep, "1.5.0"));
}

#[test]
fn several_ranges() {
    let r = [
        eco(vec![intro("0"), fixed("1.5")]),
        eco(vec![intro("1.2"), fixed("1.8")]),
        eco(vec![intro("3.0")]),
    ];
    assert_eq!(fix_for(Pep440, &r, "1.0").unwrap().as_deref(), Some("1.5"));
    assert_eq!(fix_for(Pep440, &r, "1.3").unwrap().as_deref(), Some("1.8"));
    assert_eq!(fix_for(Pep440, &r, "1.6").unwrap().as_deref(), Some("1.8"));
    assert_eq!(fix_for(Pep440, &r, "2.0").unwrap(), None);
    assert_eq!(fix_for(Pep440, &r, "3.1").unwrap(), None);
    assert!(affected(Pep440, &r, "3.1"));
    assert!(!affected(Pep440, &r, "2.0"));
}

#[test]
fn invalid_versions_are_errors() {
    let r = [eco(vec![intro("0"), fixed("1.2")])];
    let e = is_affected(Dpkg, &r, &[], "not a version").unwrap_err();
    assert!(e.to_string().contains("dpkg"), "{e}");
    assert!(fix_for(Semver, &[eco(vec![intro("0"), fixed("1.2")])], "1.0.0").is_err());
    assert!(is_affected(Semver, &[eco(vec![intro("0"), fixed("1.2.0")])], &[], "x").is_err());
    // GIT ranges are not interpreted, so their hashes are no error.
    let git = [Range {
        kind: RangeKind::Git,
        events: vec![intro("abc")],
    }];
    assert!(!affected(Semver, &git, "1.0.0"));
}

#[test]
fn serde_matches_osv_json() {
    let json = r#"[
        {"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.2"}]},
        {"type":"SEMVER","events":[{"introduced":"1.0.0"},{"last_affected":"1.0.5"},{"limit":"*"}],
         "database_specific":{"source":"x"}},
        {"type":"GIT","repo":"https://example.invalid/r.git","events":[{"introduced":"abc"}]}
    ]"#;
    let ranges: Vec<Range> = serde_json::from_str(json).unwrap();
    assert_eq!(
        ranges[0],
        Range {
            kind: RangeKind::Ecosystem,
            events: vec![intro("0"), fixed("1.2")]
        }
    );
    assert_eq!(ranges[1].kind, RangeKind::Semver);
    assert_eq!(ranges[1].events[1], last("1.0.5"));
    assert_eq!(ranges[1].events[2], limit("*"));
    assert_eq!(ranges[2].kind, RangeKind::Git);
    assert_eq!(
        serde_json::to_string(&ranges[0]).unwrap(),
        r#"{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.2"}]}"#
    );
    assert_eq!(
        serde_json::to_string(&ranges[1]).unwrap(),
        r#"{"type":"SEMVER","events":[{"introduced":"1.0.0"},{"last_affected":"1.0.5"},{"limit":"*"}]}"#
    );
    assert!(serde_json::from_str::<Range>(r#"{"type":"NOPE","events":[]}"#).is_err());
}
