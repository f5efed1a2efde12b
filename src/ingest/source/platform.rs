//! Platforms (`linux/amd64`, `linux/arm64/v8`) and how an index entry matches one.

use std::fmt;

use crate::ingest::media::DescriptorPlatform;

/// The platform an image is wanted for, in Go's spelling (GOOS/GOARCH) as images use it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// CPU variant (`v7`, `v8`); none matches any variant.
    pub variant: Option<String>,
}

/// Why a platform string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform {0:?} is not os/architecture[/variant] (e.g. linux/amd64, linux/arm64/v8)")]
pub struct PlatformError(pub String);

impl Platform {
    /// Parses `os/architecture[/variant]`; Rust's and uname's architecture names
    /// (`x86_64`, `aarch64`) are taken for Go's.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok_part = |p: &&str| {
            !p.is_empty()
                && p.len() <= 64
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok_part) {
            return Err(PlatformError(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: go_arch(&parts[1].to_ascii_lowercase()).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// The platform this program runs on (variant left open).
    pub fn host() -> Platform {
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            variant: None,
        }
    }

    /// Whether an index entry's platform is this one. A wanted variant must match, with
    /// `arm64` entries without a variant taken as `v8` (as containerd does).
    pub fn matches(&self, p: &DescriptorPlatform) -> bool {
        if p.os != self.os || go_arch(&p.architecture) != self.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                let have = p.variant.as_deref().or(match self.architecture.as_str() {
                    "arm64" => Some("v8"),
                    _ => None,
                });
                have == Some(want.as_str())
            }
        }
    }

    /// An index entry's platform, spelled like a platform string.
    pub fn describe(p: &DescriptorPlatform) -> String {
        match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        self.variant.as_ref().map_or(Ok(()), |v| write!(f, "/{v}"))
    }
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

/// Go's name for an architecture.
fn go_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i386" | "i686" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp(os: &str, arch: &str, variant: Option<&str>) -> DescriptorPlatform {
        DescriptorPlatform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
            os_version: None,
        }
    }

    #[test]
    fn parse_and_match() {
        let p = Platform::parse("linux/amd64").unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert!(p.matches(&dp("linux", "amd64", None)));
        assert!(!p.matches(&dp("linux", "arm64", None)));
        assert!(!p.matches(&dp("windows", "amd64", None)));
        assert_eq!(Platform::parse("linux/x86_64").unwrap(), p);
        let v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert!(v8.matches(&dp("linux", "arm64", None)));
        assert!(v8.matches(&dp("linux", "arm64", Some("v8"))));
        assert!(!v8.matches(&dp("linux", "arm64", Some("v9"))));
        let arm = Platform::parse("linux/arm").unwrap();
        assert!(arm.matches(&dp("linux", "arm", Some("v7"))));
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/am d64",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Platform::host().os, "linux");
    }
}
