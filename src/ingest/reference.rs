//! Image references as users write them: `busybox`, `registry.example.org:5000/team/app:v1`,
//! `app@sha256:…`, `oci:DIR[:tag]`, `docker-archive:FILE[:name:tag]`, parsed by Docker's
//! rules (the distribution reference grammar) so a name means here what it means to
//! `docker pull`. Invalid names are refused with the name and the rule broken.

use std::fmt;
use std::path::PathBuf;

use super::digest::{Digest, DigestError};

/// Docker Hub, the registry of names without a registry component.
pub const DOCKER_HUB: &str = "docker.io";

/// Longest repository name (distribution's limit).
const MAX_NAME: usize = 255;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// An image in a registry (Registry HTTP API v2 / OCI distribution).
    Registry(RegistryRef),
    /// An OCI image layout directory (`oci:DIR[:tag]`), e.g. written by `umoci` or
    /// `skopeo copy … oci:DIR:tag`.
    OciLayout {
        /// The layout's directory (holding `oci-layout`, `index.json`, `blobs/`).
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick; none: the only image.
        tag: Option<String>,
    },
    /// A `docker save` tarball (`docker-archive:FILE[:name:tag]`).
    DockerArchive {
        /// The archive.
        file: PathBuf,
        /// One of the archive's `RepoTags` to pick; none: the only image.
        reference: Option<String>,
    },
}

/// An image in a registry, with Docker's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// `host[:port]`; [`DOCKER_HUB`] when the name has no registry component.
    pub registry: String,
    /// The repository, e.g. `library/busybox`: lowercase path components.
    pub repository: String,
    /// The tag; `latest` when the reference has neither tag nor digest.
    pub tag: Option<String>,
    /// The manifest digest the reference pins, if any.
    pub digest: Option<Digest>,
}

/// Why a reference is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// An empty reference, or an empty directory or file name.
    #[error("image reference {0:?} is empty where a name is needed")]
    Empty(String),
    /// A repository path component outside the grammar (uppercase, bad separators, …).
    #[error("image reference {reference:?}: repository component {component:?} is invalid: {why}")]
    Component {
        /// The reference as given.
        reference: String,
        /// The offending component.
        component: String,
        /// The rule broken.
        why: &'static str,
    },
    /// The registry component is not `host[:port]`.
    #[error("image reference {reference:?}: registry {registry:?} is not host[:port]")]
    Registry {
        /// The reference as given.
        reference: String,
        /// The offending registry component.
        registry: String,
    },
    /// The tag is outside `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("image reference {reference:?}: tag {tag:?} is invalid (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')")]
    Tag {
        /// The reference as given.
        reference: String,
        /// The offending tag.
        tag: String,
    },
    /// The repository name is longer than 255 characters.
    #[error("image reference {0:?}: the repository name is longer than 255 characters")]
    TooLong(String),
    /// The `@digest` part does not parse.
    #[error("image reference {reference:?}: {source}")]
    Digest {
        /// The reference as given.
        reference: String,
        /// Why the digest is refused.
        #[source]
        source: DigestError,
    },
}

impl Reference {
    /// Parses a reference: `oci:DIR[:tag]`, `docker-archive:FILE[:ref]`, or a registry
    /// name with an optional `docker://` prefix.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if let Some(rest) = s.strip_prefix("oci:") {
            // As skopeo: the directory ends at the first ':'.
            let (dir, tag) = match rest.split_once(':') {
                Some((d, t)) => (d, Some(t)),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(ReferenceError::Empty(s.to_string()));
            }
            if let Some(t) = tag {
                check_layout_tag(s, t)?;
            }
            return Ok(Reference::OciLayout {
                dir: PathBuf::from(dir),
                tag: tag.map(str::to_string),
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (file, r) = match rest.split_once(':') {
                Some((f, r)) => (f, Some(r)),
                None => (rest, None),
            };
            if file.is_empty() {
                return Err(ReferenceError::Empty(s.to_string()));
            }
            if let Some(r) = r {
                RegistryRef::parse(r)?; // a name:tag, checked now rather than when picked
            }
            return Ok(Reference::DockerArchive {
                file: PathBuf::from(file),
                reference: r.map(str::to_string),
            });
        }
        let name = s.strip_prefix("docker://").unwrap_or(s);
        Ok(Reference::Registry(RegistryRef::parse(name)?))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Registry(r) => fmt::Display::fmt(r, f),
            Reference::OciLayout { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
            Reference::DockerArchive { file, reference } => {
                write!(f, "docker-archive:{}", file.display())?;
                reference.as_ref().map_or(Ok(()), |r| write!(f, ":{r}"))
            }
        }
    }
}

impl RegistryRef {
    /// Parses `[registry/]repository[:tag][@digest]` by Docker's rules: the first
    /// component is a registry when it contains `.` or `:` or is `localhost`; otherwise the
    /// registry is Docker Hub, where one-component names live under `library/`.
    pub fn parse(s: &str) -> Result<RegistryRef, ReferenceError> {
        let (rest, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::parse(d).map_err(|source| ReferenceError::Digest {
                    reference: s.to_string(),
                    source,
                })?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it is a port).
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Empty(s.to_string()));
        }
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Tag {
                    reference: s.to_string(),
                    tag: t.to_string(),
                });
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_registry(first) {
                    return Err(ReferenceError::Registry {
                        reference: s.to_string(),
                        registry: first.to_string(),
                    });
                }
                (first, path)
            }
            _ => (DOCKER_HUB, name),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        for c in path.split('/') {
            if let Some(why) = component_fault(c) {
                return Err(ReferenceError::Component {
                    reference: s.to_string(),
                    component: c.to_string(),
                    why,
                });
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if repository.len() > MAX_NAME {
            return Err(ReferenceError::TooLong(s.to_string()));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(RegistryRef {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The manifest to ask for: the digest when pinned (the stronger name), else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl fmt::Display for RegistryRef {
    /// `registry/repository[:tag][@digest]`, every default spelled out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-';
    !t.is_empty()
        && t.len() <= 128
        && t.bytes().all(ok_char)
        && !t.starts_with('.')
        && !t.starts_with('-')
}

/// Tags of an OCI layout are `org.opencontainers.image.ref.name` values: any printable
/// name, but no path separators or control characters.
fn check_layout_tag(reference: &str, t: &str) -> Result<(), ReferenceError> {
    if t.is_empty() || t.len() > 256 || t.chars().any(|c| c.is_control()) {
        return Err(ReferenceError::Tag {
            reference: reference.to_string(),
            tag: t.to_string(),
        });
    }
    Ok(())
}

/// `host[:port]`: dot-separated labels of letters, digits and inner hyphens, and a port of
/// digits.
fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Why a path component is outside `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, if it is.
fn component_fault(c: &str) -> Option<&'static str> {
    if c.is_empty() {
        return Some("empty (a doubled, leading or trailing '/')");
    }
    if c.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("repository names must be lowercase");
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Some("must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Some("separators are one '.', one or two '_', or dashes; other characters are not allowed");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> RegistryRef {
        match Reference::parse(s).unwrap() {
            Reference::Registry(r) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn docker_defaults() {
        let d = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let cases: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("docker://busybox:1.36", "docker.io/library/busybox:1.36"),
            ("team/app", "docker.io/team/app:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("localhost/app:v1", "localhost/app:v1"),
            ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest"),
            (
                "127.0.0.1:5000/app:v1.2-rc_3",
                "127.0.0.1:5000/app:v1.2-rc_3",
            ),
            ("quay.io/x/y", "quay.io/x/y:latest"),
            ("my-host/app", "docker.io/my-host/app:latest"),
            ("team/a.b__c/d-e--f", "docker.io/team/a.b__c/d-e--f:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(reg(input).to_string(), *want, "{input}");
        }
        let r = reg(&format!("quay.io/x/y@{d}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.to_string(), format!("quay.io/x/y@{d}"));
        let r = reg(&format!("busybox:1@{d}"));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox:1@{d}"));
        assert_eq!(r.manifest_ref(), d);
    }

    #[test]
    fn refuses_invalid_names_by_name() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("team//app", "empty"),
            ("team/app/", "empty"),
            ("team/-app", "start and end"),
            ("team/a...b", "separators"),
            ("team/a+b", "separators"),
            ("busybox:", "tag"),
            ("busybox:-x", "tag"),
            ("busybox@sha256:abc", "hex digits"),
            ("busybox@md5:abc", "algorithm"),
            ("bad_host.org:5000/app", "registry"),
            ("host.org:50a/app", "registry"),
            ("oci:", "empty"),
            ("docker-archive::x", "empty"),
            ("docker-archive:f.tar:Bad/Name", "lowercase"),
        ];
        for (input, part) in cases {
            let e = Reference::parse(input).unwrap_err().to_string();
            assert!(e.contains(part), "{input}: {e}");
            // The name refused is quoted: the whole input, or the archive's inner name.
            let named = input.rsplit_once(".tar:").map_or(*input, |(_, n)| n);
            assert!(
                input.is_empty() || e.contains(&format!("{named:?}")),
                "{input}: {e}"
            );
        }
        let long = format!("team/{}", "a".repeat(300));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong(_))
        ));
    }

    #[test]
    fn local_sources() {
        assert_eq!(
            Reference::parse("oci:/tmp/img:v1").unwrap(),
            Reference::OciLayout {
                dir: "/tmp/img".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Reference::parse("oci:img").unwrap(),
            Reference::OciLayout {
                dir: "img".into(),
                tag: None
            }
        );
        let r = Reference::parse("docker-archive:/x/a.tar:foo/bar:a").unwrap();
        assert_eq!(
            r,
            Reference::DockerArchive {
                file: "/x/a.tar".into(),
                reference: Some("foo/bar:a".into())
            }
        );
        assert_eq!(r.to_string(), "docker-archive:/x/a.tar:foo/bar:a");
    }
}
