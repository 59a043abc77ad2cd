//! Package references (`id#version`) and the version rules used everywhere in the module.
//!
//! Owns: parsing/validating `PackageRef`, `VersionSpec` matching and version ordering.
//! Must not: touch the file system or the network.
//!
//! Rules (documented for users in the module docs):
//! - a literal version always matches itself first (so a cache folder `id#current` is used for
//!   `id#current`, as FHIR tools store CI builds);
//! - `4.0.1` is exact; `4.0.x`, `4.x`, `4.0.*` are wildcards (any value in the `x` position and
//!   after it); a partial version without wildcard (`4.0`) matches like `4.0.x` when nothing
//!   equals it exactly;
//! - `current`, `dev`, `latest` (or no version) mean the only version present, or the highest one;
//! - "highest" orders dotted numeric components numerically, a release above its pre-releases
//!   (`1.0.0` > `1.0.0-ballot`), pre-release labels per SemVer (numbers before text).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::error::PackageError;

/// A package as `id#version`, where `version` may be a [`VersionSpec`] (`4.0.x`, `current`…).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageRef {
    pub id: String,
    pub version: String,
}

impl PackageRef {
    /// Builds a reference, checking that both parts are safe to use as a folder name.
    pub fn new(id: &str, version: &str) -> Result<Self, PackageError> {
        let text = format!("{id}#{version}");
        check_part(&text, "id", id)?;
        check_part(&text, "version", version)?;
        Ok(PackageRef {
            id: id.to_string(),
            version: version.to_string(),
        })
    }

    /// The folder name of this package in the cache layout: `id#version`.
    pub fn folder_name(&self) -> String {
        format!("{}#{}", self.id, self.version)
    }

    /// How the version part is to be matched.
    pub fn spec(&self) -> VersionSpec {
        VersionSpec::parse(&self.version)
    }
}

impl fmt::Display for PackageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.id, self.version)
    }
}

impl FromStr for PackageRef {
    type Err = PackageError;

    /// Accepts `id#version`, npm-style `id@version`, and a bare `id` (meaning `latest`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (id, version) = match s.split_once('#').or_else(|| s.split_once('@')) {
            Some((id, version)) => (id, version),
            None => (s, "latest"),
        };
        PackageRef::new(id, version)
    }
}

fn check_part(text: &str, what: &str, part: &str) -> Result<(), PackageError> {
    let bad = |reason: String| PackageError::InvalidReference {
        text: text.to_string(),
        reason,
    };
    if part.is_empty() {
        return Err(bad(format!("empty {what}")));
    }
    if part == "." || part == ".." || part.starts_with('.') {
        return Err(bad(format!("{what} must not start with `.`")));
    }
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '*')))
    {
        return Err(bad(format!("{what} contains `{c}`")));
    }
    Ok(())
}

/// How a requested version selects among available ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSpec {
    /// Exactly this version (a partial one like `4.0` also matches `4.0.*` when nothing equals it).
    Exact(String),
    /// Leading components that must be equal; the rest is free (`4.0.x` → `["4", "0"]`).
    Wildcard(Vec<String>),
    /// `current`, `dev`, `latest`: the only or the highest version present.
    Latest(String),
}

impl VersionSpec {
    pub fn parse(text: &str) -> VersionSpec {
        let t = text.trim();
        if t.is_empty() || matches!(t, "current" | "dev" | "latest") {
            return VersionSpec::Latest(t.to_string());
        }
        let parts: Vec<&str> = t.split('.').collect();
        if let Some(pos) = parts.iter().position(|p| matches!(*p, "x" | "X" | "*")) {
            return VersionSpec::Wildcard(parts[..pos].iter().map(|p| p.to_string()).collect());
        }
        VersionSpec::Exact(t.to_string())
    }

    /// Whether `version` satisfies this spec (for `Latest`: any version).
    pub fn matches(&self, version: &str) -> bool {
        match self {
            VersionSpec::Exact(v) => v == version || is_component_prefix(v, version),
            VersionSpec::Wildcard(lead) => {
                let core = version.split(['-', '+']).next().unwrap_or(version);
                let comps: Vec<&str> = core.split('.').collect();
                comps.len() >= lead.len() && lead.iter().zip(&comps).all(|(a, b)| a == b)
            }
            VersionSpec::Latest(_) => true,
        }
    }

    /// Picks the best of `available`: the literal text first, then for an exact spec the equal
    /// version, else the highest matching version.
    pub fn pick<'a, I>(&self, available: I) -> Option<&'a str>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let all: Vec<&'a str> = available.into_iter().collect();
        let literal = match self {
            VersionSpec::Exact(v) | VersionSpec::Latest(v) => v.as_str(),
            VersionSpec::Wildcard(_) => "",
        };
        if let Some(v) = all.iter().find(|v| **v == literal && !literal.is_empty()) {
            return Some(v);
        }
        all.into_iter()
            .filter(|v| self.matches(v))
            .max_by(|a, b| compare_versions(a, b))
    }
}

/// `4.0` is a component prefix of `4.0.1` (not of `4.01`); pre-release/build parts never match.
fn is_component_prefix(prefix: &str, version: &str) -> bool {
    version.len() > prefix.len()
        && version.starts_with(prefix)
        && version.as_bytes()[prefix.len()] == b'.'
        && !prefix.contains(['-', '+'])
}

/// Whether a resource's `version` satisfies the `|version` part of a canonical reference:
/// equal, a wildcard match (`1.x`), or a component prefix (`1.0` for `1.0.2`).
pub fn canonical_version_matches(requested: &str, actual: &str) -> bool {
    if requested == actual {
        return true;
    }
    match VersionSpec::parse(requested) {
        VersionSpec::Latest(_) => false,
        spec => spec.matches(actual),
    }
}

/// Orders versions: dotted numeric components numerically (text components as text), a release
/// above its pre-releases, pre-release identifiers per SemVer; build metadata ignored.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a_core, a_pre) = split_version(a);
    let (b_core, b_pre) = split_version(b);
    let a_parts: Vec<&str> = a_core.split('.').collect();
    let b_parts: Vec<&str> = b_core.split('.').collect();
    for i in 0..a_parts.len().max(b_parts.len()) {
        let x = a_parts.get(i).copied().unwrap_or("0");
        let y = b_parts.get(i).copied().unwrap_or("0");
        let ord = compare_identifier(x, y);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let xs: Vec<&str> = x.split('.').collect();
            let ys: Vec<&str> = y.split('.').collect();
            for (p, q) in xs.iter().zip(&ys) {
                let ord = compare_identifier(p, q);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            xs.len().cmp(&ys.len())
        }
    }
}

fn split_version(v: &str) -> (&str, Option<&str>) {
    let v = v.split('+').next().unwrap_or(v);
    match v.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (v, None),
    }
}

fn compare_identifier(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r: PackageRef = "hl7.fhir.r4.core#4.0.1".parse().unwrap();
        assert_eq!(
            (r.id.as_str(), r.version.as_str()),
            ("hl7.fhir.r4.core", "4.0.1")
        );
        let r: PackageRef = "fhir.r4.ukcore.stu2@2.0.2".parse().unwrap();
        assert_eq!(r.folder_name(), "fhir.r4.ukcore.stu2#2.0.2");
        let r: PackageRef = "hl7.fhir.r4.core".parse().unwrap();
        assert_eq!(r.version, "latest");
        for bad in [
            "#1.0", "a#", "../x#1", "a#../1", "a/b#1", "a#1/2", "a#.1", "a b#1",
        ] {
            assert!(bad.parse::<PackageRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn orders_versions() {
        assert_eq!(compare_versions("4.0.1", "4.0.0"), Ordering::Greater);
        assert_eq!(compare_versions("4.10.0", "4.9.0"), Ordering::Greater);
        assert_eq!(compare_versions("1.0.0", "1.0.0-ballot"), Ordering::Greater);
        assert_eq!(
            compare_versions("1.0.0-alpha.2", "1.0.0-alpha.10"),
            Ordering::Less
        );
        assert_eq!(compare_versions("1.0", "1.0.0"), Ordering::Equal);
    }

    #[test]
    fn picks_versions() {
        let have = ["4.0.0", "4.0.1", "3.0.2", "5.0.0-snapshot1"];
        let pick = |s: &str| VersionSpec::parse(s).pick(have.iter().copied());
        assert_eq!(pick("4.0.1"), Some("4.0.1"));
        assert_eq!(pick("4.0.x"), Some("4.0.1"));
        assert_eq!(pick("4.x"), Some("4.0.1"));
        assert_eq!(pick("4.0"), Some("4.0.1"));
        assert_eq!(pick("3.0.x"), Some("3.0.2"));
        assert_eq!(pick("current"), Some("5.0.0-snapshot1"));
        assert_eq!(pick("4.1.x"), None);
        assert_eq!(pick("4.0.2"), None);
        let only = ["0.22.0-main.55dd5f7e"];
        assert_eq!(
            VersionSpec::parse("dev").pick(only.iter().copied()),
            Some("0.22.0-main.55dd5f7e")
        );
        let literal = ["current", "1.0.0"];
        assert_eq!(
            VersionSpec::parse("current").pick(literal.iter().copied()),
            Some("current")
        );
    }

    #[test]
    fn canonical_versions() {
        assert!(canonical_version_matches("4.0.1", "4.0.1"));
        assert!(canonical_version_matches("4.0", "4.0.1"));
        assert!(canonical_version_matches("4.0.x", "4.0.1"));
        assert!(!canonical_version_matches("4.0.0", "4.0.1"));
        assert!(!canonical_version_matches("4.0", "4.01"));
    }
}
