//! Where ingested images live in a repository, and the names that lead to them.
//!
//! Each image is one directory named by its content, so that every agent and every
//! re-ingest agrees on it and an unchanged image is never written twice:
//! `<prefix>/.flat/<first 2 hex>/<manifest digest hex>/`, its own nested catalog, holding
//! `rootfs/` (the image's root filesystem, exactly as the layers make it) and, beside it,
//! `image.json` (what the image says about running it, [`super::meta::ImageMeta`]). The
//! readable name follows the tag: `<prefix>/<registry>/<repository>:<tag>` (or
//! `@sha256:<hex>` for a reference by digest) is a symlink to the root filesystem,
//! relative, so it resolves under any mount point.
//!
//! Against DUCC's `/.flat/<2>/<digest>` (the root filesystem itself) and its metadata kept
//! elsewhere: one directory per image holding both is one graft in a publish and one
//! removal in a prune, and its nested catalog carries the image whole.

/// The directory under the prefix that holds every image.
pub const FLAT: &str = ".flat";

/// The name of an image's root filesystem inside its directory.
pub const ROOTFS: &str = "rootfs";

/// The name of an image's metadata inside its directory.
pub const META: &str = "image.json";

/// The directory of the image whose manifest digest is `hex` (lowercase hex, no
/// algorithm), under repository directory `prefix` (`""` or `/a/b`).
pub fn image_dir(prefix: &str, hex: &str) -> String {
    format!("{prefix}/{FLAT}/{}/{hex}", &hex[..2.min(hex.len())])
}

/// The root filesystem of image `hex`: what a link names and a task runs on.
pub fn flat_dir(prefix: &str, hex: &str) -> String {
    format!("{}/{ROOTFS}", image_dir(prefix, hex))
}

/// The metadata file beside the root filesystem of image `hex`.
pub fn meta_file(prefix: &str, hex: &str) -> String {
    format!("{}/{META}", image_dir(prefix, hex))
}

/// The metadata file of the image whose root filesystem is `rootfs`, if `rootfs` is one
/// ([`flat_dir`]'s shape: `…/.flat/<2>/<hex>/rootfs`).
pub fn meta_of_rootfs(rootfs: &str) -> Option<String> {
    let dir = rootfs.strip_suffix(&format!("/{ROOTFS}"))?;
    let mut up = dir.rsplit('/');
    let (hex, two, flat) = (up.next()?, up.next()?, up.next()?);
    (flat == FLAT && two.len() == 2 && hex.starts_with(two)).then(|| format!("{dir}/{META}"))
}

/// The link naming an image: `<prefix>/<registry>/<repository>:<tag>`, or
/// `<prefix>/<registry>/<repository>@<algorithm>:<hex>` for a reference by digest.
/// `registry` and `repository` must already be checked names (no `..`, no empty parts).
pub fn link_path(prefix: &str, registry: &str, repository: &str, version: &Version) -> String {
    match version {
        Version::Tag(t) => format!("{prefix}/{registry}/{repository}:{t}"),
        Version::Digest(d) => format!("{prefix}/{registry}/{repository}@{d}"),
    }
}

/// What a name points at: a tag, or a manifest digest (`sha256:<hex>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// A tag, e.g. `1.4` or `latest`.
    Tag(String),
    /// A manifest digest, `<algorithm>:<hex>`.
    Digest(String),
}

/// The target of the link at `link` (a path from [`link_path`]) to `flat` (a path from
/// [`flat_dir`]): relative, from the link's directory.
pub fn link_target(link: &str, flat: &str) -> String {
    let from: Vec<&str> = link.split('/').filter(|c| !c.is_empty()).collect();
    let to: Vec<&str> = flat.split('/').filter(|c| !c.is_empty()).collect();
    // The link's own directory is its path without the last component.
    let dir = &from[..from.len().saturating_sub(1)];
    let common = dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; dir.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}

/// Resolves a link's target against the link's path: the repository path it names, or
/// `None` if it climbs above the repository root or is absolute (a link not of lazyroot's
/// making is not followed out of the repository).
pub fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').filter(|c| !c.is_empty()).collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_point_at_flat_directories_from_anywhere() {
        let hex = "ab".repeat(32);
        let flat = flat_dir("", &hex);
        assert_eq!(flat, format!("/.flat/ab/{hex}/rootfs"));
        assert_eq!(
            meta_file("/p", &hex),
            format!("/p/.flat/ab/{hex}/image.json")
        );
        assert_eq!(
            meta_of_rootfs(&flat_dir("/p", &hex)),
            Some(meta_file("/p", &hex))
        );
        assert_eq!(meta_of_rootfs("/p/.flat/ab/rootfs"), None);
        assert_eq!(meta_of_rootfs("/images/app/rootfs"), None);
        let link = link_path(
            "",
            "docker.io",
            "library/busybox",
            &Version::Tag("1.36".into()),
        );
        assert_eq!(link, "/docker.io/library/busybox:1.36");
        let target = link_target(&link, &flat);
        assert_eq!(target, format!("../../.flat/ab/{hex}/rootfs"));
        assert_eq!(resolve_link(&link, &target).as_deref(), Some(flat.as_str()));
        let under = link_path(
            "/images",
            "r.example.org:5000",
            "app",
            &Version::Digest(format!("sha256:{hex}")),
        );
        let flat_under = flat_dir("/images", &hex);
        let t = link_target(&under, &flat_under);
        assert_eq!(t, format!("../.flat/ab/{hex}/rootfs"));
        assert_eq!(
            resolve_link(&under, &t).as_deref(),
            Some(flat_under.as_str())
        );
    }

    #[test]
    fn links_that_leave_the_repository_are_not_followed() {
        assert_eq!(resolve_link("/a/b", "../../etc"), None);
        assert_eq!(resolve_link("/a/b", "/etc/passwd"), None);
        assert_eq!(resolve_link("/a/b", "./c/../d").as_deref(), Some("/a/d"));
    }
}
