//! Kubernetes (and etcd) versions: `v1.20.2`, `1.20.2`, `v1.21.0-rc.1`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A semantic version as Kubernetes writes it. Ordering follows semver: a pre-release sorts
/// before its release.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// Major version (1 for every Kubernetes release so far).
    pub major: u32,
    /// Minor version: the one that gates flags and names.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
    /// Pre-release suffix without the dash (`rc.1`), if any.
    pub pre: Option<String>,
}

/// A version string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid version: expected vMAJOR.MINOR.PATCH, e.g. v1.20.2")]
pub struct InvalidVersion {
    /// What the user wrote.
    pub value: String,
}

/// Shorthand for a release version with no pre-release part.
pub const fn v(major: u32, minor: u32, patch: u32) -> Version {
    Version {
        major,
        minor,
        patch,
        pre: None,
    }
}

impl Version {
    /// `(major, minor)`, what version gates compare.
    pub fn minor_pair(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    /// True when this version's minor is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.minor_pair() >= (major, minor)
    }

    /// Finds the first version-looking token in a program's `--version` output, such as
    /// `Kubernetes v1.20.2` or `etcd Version: 3.4.23`.
    pub fn find_in(text: &str) -> Option<Version> {
        text.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| {
                t.chars()
                    .next()
                    .is_some_and(|c| c == 'v' || c.is_ascii_digit())
            })
            // Debian's `1.6.20~ds1`: the upstream version before the packaging suffix.
            .find_map(|t| t.split('~').next().and_then(|t| t.parse().ok()))
    }
}

impl FromStr for Version {
    type Err = InvalidVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidVersion {
            value: s.to_string(),
        };
        let body = s.strip_prefix('v').unwrap_or(s);
        // Build metadata (`+abc`) is ignored, as semver says.
        let body = body.split('+').next().unwrap_or(body);
        let (core, pre) = match body.split_once('-') {
            Some((c, p)) if !p.is_empty() => (c, Some(p.to_string())),
            Some(_) => return Err(err()),
            None => (body, None),
        };
        let mut parts = core.split('.');
        let mut num = || -> Result<u32, InvalidVersion> {
            let p = parts.next().ok_or_else(err)?;
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
                return Err(err());
            }
            p.parse().map_err(|_| err())
        };
        let (major, minor, patch) = (num()?, num()?, num()?);
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Version {
            major,
            minor,
            patch,
            pre,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_v() {
        assert_eq!("v1.20.2".parse::<Version>().unwrap(), v(1, 20, 2));
        assert_eq!("1.20.2".parse::<Version>().unwrap(), v(1, 20, 2));
    }

    #[test]
    fn parses_pre_release_and_orders_it_first() {
        let rc: Version = "v1.21.0-rc.1".parse().unwrap();
        assert_eq!(rc.pre.as_deref(), Some("rc.1"));
        assert!(rc < v(1, 21, 0));
        assert!(rc > v(1, 20, 9));
        assert_eq!(rc.to_string(), "v1.21.0-rc.1");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "v1.20",
            "1.20.x",
            "v1.20.2.1",
            "latest",
            "v1..2",
            "v1.20.2-",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn finds_version_in_program_output() {
        assert_eq!(Version::find_in("Kubernetes v1.20.2\n"), Some(v(1, 20, 2)));
        let etcd = "etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n";
        assert_eq!(Version::find_in(etcd), Some(v(3, 4, 23)));
        assert_eq!(Version::find_in("no version here"), None);
    }
}
