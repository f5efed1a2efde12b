//! Inode numbers for the life of a mount: one per path, except that the members of a
//! hard-link group (catalog-local in the format) share one. Numbers are never reused, so
//! the kernel's caches can never confuse two entries.

use std::collections::HashMap;

use crate::hash::ContentHash;

pub const ROOT: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Path(Vec<u8>),
    Link(ContentHash, u32),
}

#[derive(Default)]
pub struct Inodes {
    by_key: HashMap<Key, u64>,
    /// ino - 1 → path (the first path seen, for hard links).
    paths: Vec<Vec<u8>>,
}

impl Inodes {
    pub fn new() -> Self {
        let mut i = Inodes::default();
        i.by_key.insert(Key::Path(Vec::new()), ROOT);
        i.paths.push(Vec::new());
        i
    }

    /// The inode of `path`; `link` names its hard-link group (catalog, group) if any.
    pub fn ino(&mut self, path: &[u8], link: Option<(ContentHash, u32)>) -> u64 {
        let key = match link {
            Some((c, g)) => Key::Link(c, g),
            None => Key::Path(path.to_vec()),
        };
        if let Some(&ino) = self.by_key.get(&key) {
            return ino;
        }
        self.paths.push(path.to_vec());
        let ino = self.paths.len() as u64;
        self.by_key.insert(key, ino);
        ino
    }

    pub fn path(&self, ino: u64) -> Option<&[u8]> {
        self.paths
            .get(ino.checked_sub(1)? as usize)
            .map(|p| p.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashAlgo;

    #[test]
    fn stable_and_shared_by_hard_links() {
        let mut i = Inodes::new();
        let c = HashAlgo::Sha1.digest(b"catalog");
        let a = i.ino(b"/a", None);
        assert_eq!(i.ino(b"/a", None), a);
        let l1 = i.ino(b"/x", Some((c, 1)));
        let l2 = i.ino(b"/y", Some((c, 1)));
        assert_eq!(l1, l2);
        assert_ne!(i.ino(b"/z", Some((c, 2))), l1);
        assert_eq!(i.path(a), Some(&b"/a"[..]));
        assert_eq!(i.path(ROOT), Some(&b""[..]));
        assert_eq!(i.path(0), None);
        assert_eq!(i.path(99), None);
    }
}
