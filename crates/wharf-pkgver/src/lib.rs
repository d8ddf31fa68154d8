//! Installed packages and exact version ordering.
//!
//! A scanner's catalogers report [`Package`]s: what is installed, in which
//! [`Ecosystem`], at which exact version. Vulnerability matching asks whether such a
//! version falls inside an advisory's affected ranges, which needs each ecosystem's own
//! ordering rules ([`VersionScheme`]). This crate is pure logic: no I/O.

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
