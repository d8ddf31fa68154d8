//! Installed packages and exact version ordering.
//!
//! A scanner's catalogers report [`Package`]s: what is installed, in which
//! [`Ecosystem`], at which exact version. Vulnerability matching asks whether such a
//! version falls inside an advisory's affected ranges, which needs each ecosystem's own
//! ordering rules ([`VersionScheme`]). This crate is pure logic: no I/O.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

mod apk;
mod dpkg;
mod ecosystem;
mod maven;
mod num;
pub mod osv;
mod pep440;
mod rpm;
mod rubygems;
mod semver;

/// A version string that its scheme's rules reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The string is not a version under `scheme`'s rules.
    #[error("invalid {scheme} version {version:?}: {reason}")]
    Invalid {
        /// Scheme whose rules were applied.
        scheme: VersionScheme,
        /// The rejected string, as given.
        version: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl VersionError {
    pub(crate) fn new(scheme: VersionScheme, version: &str, reason: &'static str) -> Self {
        VersionError::Invalid {
            scheme,
            version: version.to_owned(),
            reason,
        }
    }
}

/// Orders two version strings by `scheme`'s rules.
///
/// Both strings must be valid versions of that scheme; the error names the first one
/// that is not. Equality is the scheme's own (`1.0 == 1.0.0` in PEP 440, Maven, RubyGems).
pub fn compare(scheme: VersionScheme, a: &str, b: &str) -> Result<Ordering, VersionError> {
    match scheme {
        VersionScheme::Dpkg => dpkg::compare(a, b),
        VersionScheme::Apk => apk::compare(a, b),
        VersionScheme::Rpm => rpm::compare(a, b),
        VersionScheme::Semver => semver::compare(a, b, false),
        VersionScheme::Go => semver::compare(a, b, true),
        VersionScheme::Pep440 => pep440::compare(a, b),
        VersionScheme::Maven => maven::compare(a, b),
        VersionScheme::RubyGems => rubygems::compare(a, b),
    }
}

/// Checks that `version` is a valid version under `scheme`'s rules.
pub fn validate(scheme: VersionScheme, version: &str) -> Result<(), VersionError> {
    compare(scheme, version, version).map(|_| ())
}

/// The package world a package belongs to: decides its version ordering and its
/// ecosystem name in OSV data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ecosystem {
    /// Debian's dpkg packages (`Debian:12`).
    Debian,
    /// Ubuntu's dpkg packages (`Ubuntu:22.04:LTS`).
    Ubuntu,
    /// Alpine's apk packages (`Alpine:v3.19`).
    Alpine,
    /// Wolfi / Chainguard apk packages.
    Wolfi,
    /// Rocky Linux rpm packages (`Rocky Linux:9`).
    RockyLinux,
    /// AlmaLinux rpm packages (`AlmaLinux:9`).
    AlmaLinux,
    /// Red Hat Enterprise Linux rpm packages.
    RedHat,
    /// openSUSE / SUSE rpm packages.
    OpenSuse,
    /// Python packages (PyPI).
    PyPI,
    /// JavaScript packages (npm).
    Npm,
    /// Rust crates (crates.io).
    CratesIo,
    /// Go modules.
    Go,
    /// Java packages (Maven coordinates `group:artifact`).
    Maven,
    /// Ruby gems.
    RubyGems,
}

/// The ordering rules of an ecosystem's version strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VersionScheme {
    /// Debian policy ordering (`epoch:upstream-revision`, `~` before everything).
    Dpkg,
    /// apk-tools ordering (`1.2.3_rc1-r4`).
    Apk,
    /// rpmvercmp with `epoch:version-release`.
    Rpm,
    /// Semantic versioning 2.0 (npm, crates.io).
    Semver,
    /// Go module versions (semver with a `v` prefix, pseudo-versions).
    Go,
    /// PEP 440 (PyPI).
    Pep440,
    /// Maven's ComparableVersion.
    Maven,
    /// RubyGems' Gem::Version.
    RubyGems,
}

/// One installed package as a cataloger found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Package world.
    pub ecosystem: Ecosystem,
    /// Distribution release as OSV writes it after the ecosystem's colon (`12`,
    /// `v3.19`, `22.04`), for OS packages; `None` for language packages.
    pub release: Option<String>,
    /// Package name as the package manager writes it (binary package name for OS
    /// packages; `group:artifact` for Maven; the module path for Go).
    pub name: String,
    /// Exact installed version as the package manager writes it (dpkg: with epoch when
    /// there is one; rpm: `epoch:version-release` with epoch only when set).
    pub version: String,
    /// Source package name, when it differs or is known (Debian `Source:`, rpm
    /// `SOURCERPM` name). OS advisories are keyed by source package.
    pub source_name: Option<String>,
    /// Source package version, when the package manager records one that differs.
    pub source_version: Option<String>,
    /// Path of the file in the image the package was read from.
    pub path: String,
    /// Index (0-based) of the image layer that last wrote that file.
    pub layer_index: usize,
    /// Digest of that layer (`sha256:…`).
    pub layer_digest: String,
    /// Licence or other package-manager metadata worth showing, when known.
    pub license: Option<String>,
}

impl fmt::Display for VersionScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VersionScheme::Dpkg => "dpkg",
            VersionScheme::Apk => "apk",
            VersionScheme::Rpm => "rpm",
            VersionScheme::Semver => "semver",
            VersionScheme::Go => "Go",
            VersionScheme::Pep440 => "PEP 440",
            VersionScheme::Maven => "Maven",
            VersionScheme::RubyGems => "RubyGems",
        })
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::{compare, VersionScheme};
    use std::cmp::Ordering;

    /// Checks every pair of a list written in ascending order: each earlier one is less,
    /// each later one greater, and each equal to itself.
    pub fn assert_sorted(scheme: VersionScheme, list: &[&str]) {
        for (i, a) in list.iter().enumerate() {
            assert_eq!(
                compare(scheme, a, a).unwrap(),
                Ordering::Equal,
                "{a} == {a}"
            );
            for b in &list[i + 1..] {
                assert_eq!(compare(scheme, a, b).unwrap(), Ordering::Less, "{a} < {b}");
                assert_eq!(
                    compare(scheme, b, a).unwrap(),
                    Ordering::Greater,
                    "{b} > {a}"
                );
            }
        }
    }

    /// Checks that each pair compares equal, both ways.
    pub fn assert_equal(scheme: VersionScheme, pairs: &[(&str, &str)]) {
        for (a, b) in pairs {
            assert_eq!(
                compare(scheme, a, b).unwrap(),
                Ordering::Equal,
                "{a} == {b}"
            );
            assert_eq!(
                compare(scheme, b, a).unwrap(),
                Ordering::Equal,
                "{b} == {a}"
            );
        }
    }

    /// Checks that each string is rejected, whichever side it is on.
    pub fn assert_invalid(scheme: VersionScheme, valid: &str, bad: &[&str]) {
        for b in bad {
            let e = compare(scheme, valid, b).expect_err(b);
            assert!(e.to_string().contains(&format!("{b:?}")), "{e}");
            compare(scheme, b, valid).expect_err(b);
        }
    }
}
