//! Directories a container runtime mounts onto, offered in a root filesystem that lacks
//! them. Mesos's `filesystem/linux` isolator mounts `/proc`, `/sys`, `/dev`, `/tmp` and the
//! sandbox at `/mnt/mesos/sandbox` inside the image, and on a read-only root (the bind
//! backend, or this FUSE mount under overlay) it cannot create a missing mount point. So the
//! mount shows them as empty directories wherever the published image has no entry.

use crate::cvmfs::catalog::schema::flags;
use crate::cvmfs::catalog::Entry;

/// Paths relative to the image root, parents before children.
pub const MESOS_ROOTFS: &[&str] = &[
    "dev",
    "mnt",
    "mnt/mesos",
    "mnt/mesos/sandbox",
    "proc",
    "sys",
    "tmp",
];

/// A set of directories relative to the mount's root.
#[derive(Debug, Clone, Default)]
pub struct Skeleton {
    dirs: Vec<Vec<u8>>,
}

impl Skeleton {
    /// No directories: the tree is shown as published.
    pub fn none() -> Self {
        Skeleton::default()
    }

    /// The mount points Mesos's `filesystem/linux` isolator needs ([`MESOS_ROOTFS`]).
    pub fn mesos_rootfs() -> Self {
        Skeleton {
            dirs: MESOS_ROOTFS.iter().map(|d| d.as_bytes().to_vec()).collect(),
        }
    }

    /// Whether `rel` (relative to the mount's root) is a skeleton directory.
    pub fn contains(&self, rel: &[u8]) -> bool {
        self.dirs.iter().any(|d| d == rel)
    }

    /// Names of the skeleton directories directly inside `rel_dir` ("" for the root).
    pub fn children<'a>(&'a self, rel_dir: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.dirs.iter().filter_map(move |d| {
            let rest = if rel_dir.is_empty() {
                d.as_slice()
            } else {
                d.strip_prefix(rel_dir)?.strip_prefix(b"/")?
            };
            (!rest.is_empty() && !rest.contains(&b'/')).then_some(rest)
        })
    }

    /// The entry shown for a skeleton directory: root-owned, 0755, dated like `like` (the
    /// image root), so that listings stay the same for the same revision.
    pub fn entry(name: &[u8], like: &Entry) -> Entry {
        Entry {
            name: name.to_vec(),
            mode: libc::S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            size: 4096,
            mtime: like.mtime,
            mtime_ns: like.mtime_ns,
            flags: flags::DIR,
            hardlinks: 2,
            hash: None,
            symlink: Vec::new(),
            xattrs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_by_level() {
        let s = Skeleton::mesos_rootfs();
        let root: Vec<_> = s.children(b"").collect();
        assert_eq!(root, [&b"dev"[..], b"mnt", b"proc", b"sys", b"tmp"]);
        assert_eq!(s.children(b"mnt").collect::<Vec<_>>(), [&b"mesos"[..]]);
        assert_eq!(
            s.children(b"mnt/mesos").collect::<Vec<_>>(),
            [&b"sandbox"[..]]
        );
        assert_eq!(s.children(b"mnt/mesos/sandbox").count(), 0);
        assert_eq!(s.children(b"mn").count(), 0, "not a prefix match");
        assert!(s.contains(b"mnt/mesos"));
        assert!(!s.contains(b"etc"));
        assert_eq!(Skeleton::none().children(b"").count(), 0);
    }
}
