//! OSV names, version schemes and package-name keys of each [`Ecosystem`].

use std::fmt;

use crate::{Ecosystem, VersionScheme};

const ALL: [Ecosystem; 14] = [
    Ecosystem::Debian,
    Ecosystem::Ubuntu,
    Ecosystem::Alpine,
    Ecosystem::Wolfi,
    Ecosystem::RockyLinux,
    Ecosystem::AlmaLinux,
    Ecosystem::RedHat,
    Ecosystem::OpenSuse,
    Ecosystem::PyPI,
    Ecosystem::Npm,
    Ecosystem::CratesIo,
    Ecosystem::Go,
    Ecosystem::Maven,
    Ecosystem::RubyGems,
];

impl Ecosystem {
    /// The version ordering of this ecosystem's packages.
    pub fn scheme(self) -> VersionScheme {
        match self {
            Ecosystem::Debian | Ecosystem::Ubuntu => VersionScheme::Dpkg,
            Ecosystem::Alpine | Ecosystem::Wolfi => VersionScheme::Apk,
            Ecosystem::RockyLinux
            | Ecosystem::AlmaLinux
            | Ecosystem::RedHat
            | Ecosystem::OpenSuse => VersionScheme::Rpm,
            Ecosystem::PyPI => VersionScheme::Pep440,
            Ecosystem::Npm | Ecosystem::CratesIo => VersionScheme::Semver,
            Ecosystem::Go => VersionScheme::Go,
            Ecosystem::Maven => VersionScheme::Maven,
            Ecosystem::RubyGems => VersionScheme::RubyGems,
        }
    }

    /// The ecosystem's name in OSV data, without a release suffix.
    pub fn osv_name(self) -> &'static str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Ubuntu => "Ubuntu",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::Wolfi => "Wolfi",
            Ecosystem::RockyLinux => "Rocky Linux",
            Ecosystem::AlmaLinux => "AlmaLinux",
            Ecosystem::RedHat => "Red Hat",
            Ecosystem::OpenSuse => "openSUSE",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Npm => "npm",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Go => "Go",
            Ecosystem::Maven => "Maven",
            Ecosystem::RubyGems => "RubyGems",
        }
    }

    /// Splits an OSV `affected[].package.ecosystem` string into the base ecosystem and
    /// its release part (`None` when there is none or it is empty).
    ///
    /// * `Debian:12` → `12`; `Alpine:v3.19` → `v3.19`; `Rocky Linux:9` → `9`.
    /// * `Ubuntu:22.04:LTS` → `22.04` (the `:LTS` marker is dropped);
    ///   `Ubuntu:Pro:18.04:LTS` → `Pro:18.04`, kept apart from the plain release
    ///   because Ubuntu Pro (ESM) fixes are not in the standard archive.
    /// * `Red Hat:enterprise_linux:9::appstream` → `enterprise_linux:9::appstream`
    ///   (all after the first colon: a CPE stream).
    /// * `SUSE:Linux Enterprise Server 15 SP5` → [`Ecosystem::OpenSuse`] with
    ///   `Linux Enterprise Server 15 SP5`; `openSUSE:Tumbleweed` likewise.
    /// * `Maven:https://maven.google.com` → the repository URL as the "release".
    ///
    /// Unknown ecosystems (including OSV's separate `Chainguard`) give `None`.
    pub fn parse_osv(s: &str) -> Option<(Ecosystem, Option<String>)> {
        let (base, rest) = match s.split_once(':') {
            Some((b, r)) => (b, Some(r)),
            None => (s, None),
        };
        let eco = match base {
            "SUSE" => Ecosystem::OpenSuse,
            _ => ALL.into_iter().find(|e| e.osv_name() == base)?,
        };
        let release = rest.map(|r| match eco {
            Ecosystem::Ubuntu => r.strip_suffix(":LTS").unwrap_or(r),
            _ => r,
        });
        Some((eco, release.filter(|r| !r.is_empty()).map(str::to_owned)))
    }

    /// The key a package name is matched to advisories by.
    ///
    /// * PyPI: PEP 503 normalization, lower-case with each run of `-`, `_`, `.` as
    ///   one `-` (OSV's PyPI names are normalized this way).
    /// * crates.io: lower-case with `_` as `-`; crates.io refuses a crate whose name
    ///   differs from an existing one only so, so nothing collides.
    /// * npm, Go, Maven, RubyGems: exact. npm names are case-sensitive for old
    ///   packages, Go module paths and Maven `group:artifact` are case-sensitive,
    ///   RubyGems names are exact on rubygems.org.
    /// * OS packages: exact, as dpkg, apk and rpm write them (rpm names are
    ///   case-sensitive, e.g. `NetworkManager`).
    pub fn name_key(self, name: &str) -> String {
        match self {
            Ecosystem::PyPI => {
                let mut out = String::with_capacity(name.len());
                let mut in_sep = false;
                for c in name.chars() {
                    if matches!(c, '-' | '_' | '.') {
                        if !in_sep {
                            out.push('-');
                        }
                        in_sep = true;
                    } else {
                        out.extend(c.to_lowercase());
                        in_sep = false;
                    }
                }
                out
            }
            Ecosystem::CratesIo => name.to_ascii_lowercase().replace('_', "-"),
            _ => name.to_owned(),
        }
    }
}

impl fmt::Display for Ecosystem {
    /// Writes the OSV name ([`Ecosystem::osv_name`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.osv_name())
    }
}

#[cfg(test)]
mod tests {
    use super::ALL;
    use crate::{Ecosystem, VersionScheme};

    #[test]
    fn osv_strings() {
        use Ecosystem::*;
        for (s, want) in [
            ("Debian", Some((Debian, None))),
            ("Debian:12", Some((Debian, Some("12")))),
            ("Debian:sid", Some((Debian, Some("sid")))),
            ("Debian:", Some((Debian, None))),
            ("Alpine:v3.19", Some((Alpine, Some("v3.19")))),
            ("Wolfi", Some((Wolfi, None))),
            ("Ubuntu:22.04:LTS", Some((Ubuntu, Some("22.04")))),
            ("Ubuntu:24.10", Some((Ubuntu, Some("24.10")))),
            ("Ubuntu:Pro:18.04:LTS", Some((Ubuntu, Some("Pro:18.04")))),
            ("Rocky Linux:9", Some((RockyLinux, Some("9")))),
            ("AlmaLinux:8", Some((AlmaLinux, Some("8")))),
            (
                "Red Hat:enterprise_linux:9::appstream",
                Some((RedHat, Some("enterprise_linux:9::appstream"))),
            ),
            (
                "SUSE:Linux Enterprise Server 15 SP5",
                Some((OpenSuse, Some("Linux Enterprise Server 15 SP5"))),
            ),
            ("openSUSE:Tumbleweed", Some((OpenSuse, Some("Tumbleweed")))),
            ("PyPI", Some((PyPI, None))),
            ("npm", Some((Npm, None))),
            ("crates.io", Some((CratesIo, None))),
            ("Go", Some((Go, None))),
            ("Maven", Some((Maven, None))),
            (
                "Maven:https://maven.google.com",
                Some((Maven, Some("https://maven.google.com"))),
            ),
            ("RubyGems", Some((RubyGems, None))),
            ("Chainguard", None),
            ("NuGet", None),
            ("debian:12", None),
            ("", None),
        ] {
            let want = want.map(|(e, r): (Ecosystem, Option<&str>)| (e, r.map(String::from)));
            assert_eq!(Ecosystem::parse_osv(s), want, "{s}");
        }
    }

    #[test]
    fn names_round_trip_and_schemes() {
        for e in ALL {
            assert_eq!(Ecosystem::parse_osv(e.osv_name()), Some((e, None)));
            assert_eq!(e.to_string(), e.osv_name());
        }
        assert_eq!(Ecosystem::Ubuntu.scheme(), VersionScheme::Dpkg);
        assert_eq!(Ecosystem::Wolfi.scheme(), VersionScheme::Apk);
        assert_eq!(Ecosystem::OpenSuse.scheme(), VersionScheme::Rpm);
        assert_eq!(Ecosystem::CratesIo.scheme(), VersionScheme::Semver);
        assert_eq!(Ecosystem::Go.scheme(), VersionScheme::Go);
        assert_eq!(Ecosystem::PyPI.scheme(), VersionScheme::Pep440);
    }

    #[test]
    fn name_keys() {
        let py = Ecosystem::PyPI;
        assert_eq!(py.name_key("Friendly-Bard"), "friendly-bard");
        assert_eq!(py.name_key("FRIENDLY-BARD"), "friendly-bard");
        assert_eq!(py.name_key("friendly.bard"), "friendly-bard");
        assert_eq!(py.name_key("friendly_bard"), "friendly-bard");
        assert_eq!(py.name_key("friendly--bard"), "friendly-bard");
        assert_eq!(py.name_key("FrIeNdLy-._.-bArD"), "friendly-bard");
        assert_eq!(Ecosystem::CratesIo.name_key("Serde_JSON"), "serde-json");
        assert_eq!(Ecosystem::Npm.name_key("JSONStream"), "JSONStream");
        assert_eq!(
            Ecosystem::Go.name_key("github.com/BurntSushi/toml"),
            "github.com/BurntSushi/toml"
        );
        assert_eq!(Ecosystem::Maven.name_key("org.Foo:Bar"), "org.Foo:Bar");
        assert_eq!(
            Ecosystem::RedHat.name_key("NetworkManager"),
            "NetworkManager"
        );
    }
}
