//! Inode numbers for the life of a mount: one per path and content, except that the members
//! of a hard-link group (catalog-local in the format) share one. A file whose content
//! changes in a new revision gets a new number, so the content behind an inode never
//! changes and the kernel may keep its pages. Numbers are never reused.

use std::collections::HashMap;

use crate::cvmfs::hash::ContentHash;

/// The mount root's inode number, as FUSE requires, whatever revision is behind it.
pub const ROOT: u64 = 1;

/// What makes two entries the same inode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// Directories, symlinks, special files: the path.
    Path(Vec<u8>),
    /// A regular file: path and an identity of its content (content hash, or the
    /// catalog's for a chunked file).
    File(Vec<u8>, ContentHash),
    /// A hard-link group of one catalog.
    Link(ContentHash, u32),
}

/// Inode numbers of one mount, and the path each was first seen at.
#[derive(Default)]
pub struct Inodes {
    by_key: HashMap<Key, u64>,
    /// ino - 1 → path (the first path seen, for hard links).
    paths: Vec<Vec<u8>>,
}

impl Inodes {
    /// Numbers for a mount of the whole repository (root at the repository's root).
    pub fn new() -> Self {
        Inodes::with_root(b"")
    }

    /// Numbers for a mount whose root is the repository directory `root`.
    pub fn with_root(root: &[u8]) -> Self {
        let mut i = Inodes::default();
        i.by_key.insert(Key::Path(root.to_vec()), ROOT);
        i.paths.push(root.to_vec());
        i
    }

    /// The inode for `key`, first seen at `path`.
    pub fn ino(&mut self, path: &[u8], key: Key) -> u64 {
        if let Some(&ino) = self.by_key.get(&key) {
            return ino;
        }
        self.paths.push(path.to_vec());
        let ino = self.paths.len() as u64;
        self.by_key.insert(key, ino);
        ino
    }

    /// The path inode `ino` was first seen at; `None` for 0 or a number never handed out.
    pub fn path(&self, ino: u64) -> Option<&[u8]> {
        self.paths
            .get(ino.checked_sub(1)? as usize)
            .map(|p| p.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvmfs::hash::HashAlgo;

    #[test]
    fn stable_and_shared_by_hard_links() {
        let mut i = Inodes::new();
        let c = HashAlgo::Sha1.digest(b"catalog");
        let a = i.ino(b"/a", Key::Path(b"/a".to_vec()));
        assert_eq!(i.ino(b"/a", Key::Path(b"/a".to_vec())), a);
        let l1 = i.ino(b"/x", Key::Link(c, 1));
        let l2 = i.ino(b"/y", Key::Link(c, 1));
        assert_eq!(l1, l2);
        assert_ne!(i.ino(b"/z", Key::Link(c, 2)), l1);
        let v1 = i.ino(
            b"/f",
            Key::File(b"/f".to_vec(), HashAlgo::Sha1.digest(b"v1")),
        );
        let v2 = i.ino(
            b"/f",
            Key::File(b"/f".to_vec(), HashAlgo::Sha1.digest(b"v2")),
        );
        assert_ne!(v1, v2, "new content, new inode");
        assert_eq!(i.path(a), Some(&b"/a"[..]));
        assert_eq!(i.path(ROOT), Some(&b""[..]));
        assert_eq!(i.path(0), None);
        assert_eq!(i.path(99), None);
    }
}
