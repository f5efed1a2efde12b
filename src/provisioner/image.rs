//! What an image is: a directory of a repository at one root hash, and the names derived
//! from it (its appc image id and name, its mount point). Inputs come from callers of the
//! control API and CSI: checked here before anything touches the disk.

use sha2::{Digest, Sha512};

use crate::cvmfs::hash::ContentHash;
use crate::repository::At;

/// The identity of an image. `path` is normalized ("/" or "/a/b", no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageKey {
    /// The repository, by fully qualified name.
    pub fqrn: String,
    /// The directory inside the repository that is the image's root.
    pub path: String,
    /// The root catalog hash (as text) that fixes the revision.
    pub root_hash: String,
}

/// Refuses anything but a well-formed fully qualified repository name.
pub fn check_fqrn(fqrn: &str) -> Result<(), String> {
    crate::cvmfs::fqrn::validate(fqrn).map_err(|e| e.to_string())
}

/// The repository path a request names: a directory (`/a/b`, normalized), or an image
/// reference of `lazyroot ingest` (`registry/repository:tag`, Docker's defaults; one
/// naming a registry host, a tag or a digest) turned into the link that names it
/// (followed when the image is prepared).
pub fn image_path(path_or_reference: &str) -> Result<String, String> {
    // A relative path is not taken for a reference of Docker Hub: a reference names its
    // tag or digest, or a registry host.
    let first = path_or_reference.split('/').next().unwrap_or_default();
    let registry = first.contains('.') || first.contains(':') || first == "localhost";
    let versioned = path_or_reference.contains('@')
        || path_or_reference
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .contains(':');
    if path_or_reference.starts_with('/') || !(registry || versioned) {
        return normalize_path(path_or_reference);
    }
    use crate::ingest::names::{link_path, Version};
    use crate::ingest::reference::Reference;
    match Reference::parse(path_or_reference) {
        Ok(Reference::Registry(r)) => {
            let version = match (&r.tag, &r.digest) {
                (Some(t), _) => Version::Tag(t.clone()),
                (None, Some(d)) => Version::Digest(d.to_string()),
                (None, None) => Version::Tag("latest".into()),
            };
            normalize_path(&link_path("", &r.registry, &r.repository, &version))
        }
        Ok(_) => Err(format!(
            "{path_or_reference:?}: an image is a repository path or a registry reference"
        )),
        Err(e) => Err(format!("not a path nor an image reference: {e}")),
    }
}

/// "/images//bookworm/" → "/images/bookworm"; refuses relative paths, `.`/`..`, NUL.
pub fn normalize_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("not an absolute path: {path:?}"));
    }
    if path.len() > 4096 || path.contains('\0') {
        return Err("path too long or with a NUL byte".into());
    }
    let mut out = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(format!("path with '.' or '..': {path:?}"));
        }
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The revision a request names: a root hash, a tag, or neither (the latest).
pub fn revision_at(root_hash: Option<&str>, tag: Option<&str>) -> Result<At, String> {
    match (root_hash, tag) {
        (Some(_), Some(_)) => Err("give a root hash or a tag, not both".into()),
        (Some(h), None) => ContentHash::parse(h)
            .map(At::RootHash)
            .map_err(|e| format!("root hash {h:?}: {e}")),
        (None, Some(t)) => Ok(At::Tag(t.to_string())),
        (None, None) => Ok(At::Latest),
    }
}

impl ImageKey {
    /// `sha512-` and the SHA-512 of fqrn, path and root hash, NUL-separated: the same image
    /// gets the same id on every agent and after every restart.
    pub fn id(&self) -> String {
        let mut h = Sha512::new();
        h.update(self.fqrn.as_bytes());
        h.update([0]);
        h.update(self.path.as_bytes());
        h.update([0]);
        h.update(self.root_hash.as_bytes());
        format!("sha512-{}", hex::encode(h.finalize()))
    }

    /// The appc image name: `<fqrn><path>`, as an AC identifier (lowercase; characters
    /// outside `[a-z0-9._~/-]` become `-`).
    pub fn appc_name(&self) -> String {
        let raw = if self.path == "/" {
            self.fqrn.clone()
        } else {
            format!("{}{}", self.fqrn, self.path)
        };
        raw.chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_lowercase() || c.is_ascii_digit() || "._~/-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }

    /// Where the image is mounted, under the mount root: `<fqrn>/<root hash>/<path>` with
    /// the path's slashes escaped, so that two images of one revision never nest.
    pub fn mount_dir(&self) -> std::path::PathBuf {
        let mut escaped = self.path.replace('%', "%25").replace('/', "%2F");
        // A file name has at most 255 bytes: a long path keeps its start, and a digest of
        // the whole keeps it unique.
        if escaped.len() > 200 {
            let digest = hex::encode(&Sha512::digest(self.path.as_bytes())[..16]);
            let mut cut = 160;
            while !escaped.is_char_boundary(cut) {
                cut -= 1;
            }
            escaped = format!("{}..{digest}", &escaped[..cut]);
        }
        [
            self.fqrn.as_str(),
            self.root_hash.as_str(),
            escaped.as_str(),
        ]
        .iter()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> ImageKey {
        ImageKey {
            fqrn: "demo.example.org".into(),
            path: path.into(),
            root_hash: "0a1b".into(),
        }
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = key("/images/a").id();
        assert_eq!(a, key("/images/a").id());
        assert_eq!(a.len(), "sha512-".len() + 128);
        assert!(a.starts_with("sha512-"));
        assert_ne!(a, key("/images/b").id());
        let mut other = key("/images/a");
        other.root_hash = "0a1c".into();
        assert_ne!(a, other.id());
        // The separator keeps ("a", "/bc") and ("a/b", "c")-like splits apart.
        let mut shifted = key("/images/a");
        shifted.fqrn = "demo.example.or".into();
        shifted.path = "g/images/a".into();
        assert_ne!(a, shifted.id());
    }

    #[test]
    fn paths_and_names() {
        assert_eq!(normalize_path("/images//Deb/").unwrap(), "/images/Deb");
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert!(normalize_path("images").is_err());
        assert!(normalize_path("/a/../b").is_err());
        assert!(normalize_path("/a/./b").is_err());
        assert!(normalize_path("/a\0b").is_err());
        assert_eq!(
            key("/images/Deb 12").appc_name(),
            "demo.example.org/images/deb-12"
        );
        assert_eq!(key("/").appc_name(), "demo.example.org");
        assert_eq!(
            key("/images/a").mount_dir(),
            std::path::PathBuf::from("demo.example.org/0a1b/%2Fimages%2Fa")
        );
        let deep = key(&format!("/{}", ["département"; 60].join("/")));
        let dir = deep.mount_dir();
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= 255, "{}", name.len());
        let mut other = format!("/{}", ["département"; 60].join("/"));
        other.push('x');
        assert_ne!(key(&other).mount_dir(), dir, "long paths stay apart");
        assert!(check_fqrn("demo.example.org").is_ok());
        for bad in ["", "../x", "a/b", ".a", "_a"] {
            assert!(check_fqrn(bad).is_err(), "{bad}");
        }
    }
}
