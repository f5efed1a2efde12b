//! What a container runtime mounts onto, offered in a root filesystem that lacks it. Mesos's
//! `filesystem/linux` isolator mounts `/proc`, `/sys`, `/dev`, `/tmp` and the sandbox at
//! `/mnt/mesos/sandbox` inside the image, and its `network/cni` isolator (always on) binds
//! the host's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` onto the image's; on a
//! read-only root (the bind backend, or this FUSE mount under overlay) it cannot create a
//! missing mount point. So the mount shows empty directories and empty files there wherever
//! the published image has no entry.

use crate::cvmfs::catalog::schema::flags;
use crate::cvmfs::catalog::Entry;

/// Paths relative to the image root, parents before children.
pub const MESOS_ROOTFS: &[&str] = &[
    "dev",
    "etc",
    "mnt",
    "mnt/mesos",
    "mnt/mesos/sandbox",
    "proc",
    "sys",
    "tmp",
];

/// Files Mesos binds onto, relative to the image root (their directory is in
/// [`MESOS_ROOTFS`]).
pub const MESOS_ROOTFS_FILES: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// What a skeleton path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// An empty directory.
    Dir,
    /// An empty regular file.
    File,
}

/// A set of directories and empty files relative to the mount's root.
#[derive(Debug, Clone, Default)]
pub struct Skeleton {
    dirs: Vec<Vec<u8>>,
    files: Vec<Vec<u8>>,
}

impl Skeleton {
    /// No directories: the tree is shown as published.
    pub fn none() -> Self {
        Skeleton::default()
    }

    /// The mount points Mesos's `filesystem/linux` and `network/cni` isolators need
    /// ([`MESOS_ROOTFS`], [`MESOS_ROOTFS_FILES`]).
    pub fn mesos_rootfs() -> Self {
        let bytes = |l: &[&str]| l.iter().map(|d| d.as_bytes().to_vec()).collect();
        Skeleton {
            dirs: bytes(MESOS_ROOTFS),
            files: bytes(MESOS_ROOTFS_FILES),
        }
    }

    /// What `rel` (relative to the mount's root) is in the skeleton, if anything.
    pub fn part(&self, rel: &[u8]) -> Option<Part> {
        if self.dirs.iter().any(|d| d == rel) {
            Some(Part::Dir)
        } else if self.files.iter().any(|f| f == rel) {
            Some(Part::File)
        } else {
            None
        }
    }

    /// Whether `rel` (relative to the mount's root) is in the skeleton.
    pub fn contains(&self, rel: &[u8]) -> bool {
        self.part(rel).is_some()
    }

    /// Names of the skeleton entries directly inside `rel_dir` ("" for the root).
    pub fn children<'a>(&'a self, rel_dir: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.dirs.iter().chain(&self.files).filter_map(move |d| {
            let rest = if rel_dir.is_empty() {
                d.as_slice()
            } else {
                d.strip_prefix(rel_dir)?.strip_prefix(b"/")?
            };
            (!rest.is_empty() && !rest.contains(&b'/')).then_some(rest)
        })
    }

    /// The entry shown for a skeleton directory (0755) or file (0644, empty): root-owned,
    /// dated like `like` (the image root), so that listings stay the same for the same
    /// revision.
    pub fn entry(name: &[u8], part: Part, like: &Entry) -> Entry {
        let (mode, size, flags, hardlinks) = match part {
            Part::Dir => (libc::S_IFDIR | 0o755, 4096, flags::DIR, 2),
            Part::File => (libc::S_IFREG | 0o644, 0, flags::FILE, 1),
        };
        Entry {
            name: name.to_vec(),
            mode,
            uid: 0,
            gid: 0,
            size,
            mtime: like.mtime,
            mtime_ns: like.mtime_ns,
            flags,
            hardlinks,
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
        assert_eq!(root, [&b"dev"[..], b"etc", b"mnt", b"proc", b"sys", b"tmp"]);
        assert_eq!(
            s.children(b"etc").collect::<Vec<_>>(),
            [&b"hostname"[..], b"hosts", b"resolv.conf"]
        );
        assert_eq!(s.part(b"etc/hosts"), Some(Part::File));
        assert_eq!(s.part(b"etc"), Some(Part::Dir));
        assert_eq!(s.children(b"mnt").collect::<Vec<_>>(), [&b"mesos"[..]]);
        assert_eq!(
            s.children(b"mnt/mesos").collect::<Vec<_>>(),
            [&b"sandbox"[..]]
        );
        assert_eq!(s.children(b"mnt/mesos/sandbox").count(), 0);
        assert_eq!(s.children(b"mn").count(), 0, "not a prefix match");
        assert!(s.contains(b"mnt/mesos"));
        assert!(!s.contains(b"usr"));
        assert_eq!(Skeleton::none().children(b"").count(), 0);
    }
}
