//! Inode numbers for the life of a mount: one per path and content, except that the members
//! of a hard-link group (catalog-local in the format) share one. A file whose content
//! changes in a new revision gets a new number, so the content behind an inode never
//! changes and the kernel may keep its pages. Numbers are never reused.
//!
//! Bounded: the kernel counts the references it takes (each lookup reply, each
//! readdirplus entry) and gives them back with `forget`; a number whose count drops to zero
//! is dropped. Numbers handed out without a reference (plain readdir, entries a readdirplus
//! buffer had no room for) are kept until more than [`UNHELD_LIMIT`] of them pile up, then
//! swept, so a mount that follows revisions for months holds what the kernel holds, plus a
//! bounded rest.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cvmfs::hash::ContentHash;
use crate::mount::journal::{Journal, Record, RestoredNode};

/// The mount root's inode number, as FUSE requires, whatever revision is behind it.
pub const ROOT: u64 = 1;

/// Numbers without a kernel reference kept before a sweep. Large enough that `ls -i` and
/// `stat` agree in any ordinary session; small enough to be a few MiB.
pub const UNHELD_LIMIT: usize = 65_536;

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

struct Node {
    /// The path the number was first seen at (one of a hard-link group's).
    path: Vec<u8>,
    key: Key,
    /// References the kernel holds (lookups not yet forgotten).
    lookups: u64,
}

/// Inode numbers of one mount, and the path each was first seen at.
pub struct Inodes {
    by_key: HashMap<Key, u64>,
    nodes: HashMap<u64, Node>,
    next: u64,
    /// Nodes with no kernel reference that were never held (a sweep's candidates).
    unheld: usize,
    /// Where every reference the kernel takes or gives back is written down, so that a
    /// daemon taking the connection over knows what the kernel holds.
    journal: Option<Arc<Journal>>,
}

impl Inodes {
    /// Numbers for a mount of the whole repository (root at the repository's root).
    pub fn new() -> Self {
        Inodes::with_root(b"")
    }

    /// Numbers for a mount whose root is the repository directory `root`.
    pub fn with_root(root: &[u8]) -> Self {
        let key = Key::Path(root.to_vec());
        let mut i = Inodes {
            by_key: HashMap::new(),
            nodes: HashMap::new(),
            next: ROOT + 1,
            unheld: 0,
            journal: None,
        };
        i.by_key.insert(key.clone(), ROOT);
        // The root is never forgotten (the kernel holds it for the mount's life).
        i.nodes.insert(
            ROOT,
            Node {
                path: root.to_vec(),
                key,
                lookups: 1,
            },
        );
        i
    }

    /// The inode for `key`, first seen at `path`, with no reference taken.
    pub fn ino(&mut self, path: &[u8], key: Key) -> u64 {
        if let Some(&ino) = self.by_key.get(&key) {
            return ino;
        }
        if self.unheld > UNHELD_LIMIT {
            self.sweep();
        }
        let ino = self.next;
        self.next += 1;
        if let Some(j) = &self.journal {
            j.note_inode(ino);
        }
        self.by_key.insert(key.clone(), ino);
        self.nodes.insert(
            ino,
            Node {
                path: path.to_vec(),
                key,
                lookups: 0,
            },
        );
        self.unheld += 1;
        ino
    }

    /// The inode for `key` with one kernel reference taken, in one step (a sweep cannot
    /// come between): what a lookup reply hands out.
    pub fn ino_held(&mut self, path: &[u8], key: Key) -> u64 {
        let ino = self.ino(path, key);
        self.hold(ino);
        ino
    }

    /// Takes one kernel reference on `ino`; false if the number is not known (swept or
    /// forgotten since it was handed out).
    pub fn hold(&mut self, ino: u64) -> bool {
        if ino == ROOT {
            return true;
        }
        match self.nodes.get_mut(&ino) {
            Some(n) => {
                if let Some(j) = &self.journal {
                    j.append(&if n.lookups == 0 {
                        Record::Node {
                            ino,
                            path: n.path.clone(),
                            key: n.key.clone(),
                        }
                    } else {
                        Record::Hold { ino, n: 1 }
                    });
                }
                if n.lookups == 0 {
                    self.unheld = self.unheld.saturating_sub(1);
                }
                n.lookups += 1;
                true
            }
            None => false,
        }
    }

    /// The kernel gives back `n` references on `ino`; at none, the number is dropped.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        if node.lookups == 0 {
            // Not ours to drop here: a sweep will, if it stays unheld.
            return;
        }
        if let Some(j) = &self.journal {
            j.append(&Record::Forget {
                ino,
                n: n.min(node.lookups),
            });
        }
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 {
            let node = self.nodes.remove(&ino).expect("present");
            self.by_key.remove(&node.key);
        }
    }

    /// Writes every reference taken or given back from now on to `journal`.
    pub fn set_journal(&mut self, journal: Arc<Journal>) {
        self.journal = Some(journal);
    }

    /// Takes over the numbers a previous daemon handed out: those the kernel still holds,
    /// and the first never handed out (numbers are never reused, across daemons too).
    pub fn restore(&mut self, nodes: &[RestoredNode], next: u64) {
        for n in nodes {
            if n.ino == ROOT {
                continue;
            }
            self.by_key.insert(n.key.clone(), n.ino);
            self.nodes.insert(
                n.ino,
                Node {
                    path: n.path.clone(),
                    key: n.key.clone(),
                    lookups: n.lookups,
                },
            );
        }
        self.next = self.next.max(next);
    }

    /// Drops every number the kernel holds no reference on (the root stays).
    fn sweep(&mut self) {
        let by_key = &mut self.by_key;
        self.nodes.retain(|&ino, n| {
            let keep = ino == ROOT || n.lookups > 0;
            if !keep {
                by_key.remove(&n.key);
            }
            keep
        });
        self.unheld = 0;
    }

    /// The numbers the kernel holds references on (not the root), for a compacted
    /// journal.
    pub fn held(&self) -> Vec<RestoredNode> {
        self.nodes
            .iter()
            .filter(|(&ino, n)| ino != ROOT && n.lookups > 0)
            .map(|(&ino, n)| RestoredNode {
                ino,
                path: n.path.clone(),
                key: n.key.clone(),
                lookups: n.lookups,
            })
            .collect()
    }

    /// The first number never handed out.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// How many numbers are remembered.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether none is (never: the root always is).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The path inode `ino` was first seen at; `None` for 0, a number never handed out or
    /// one dropped since.
    pub fn path(&self, ino: u64) -> Option<&[u8]> {
        self.nodes.get(&ino).map(|n| n.path.as_slice())
    }
}

impl Default for Inodes {
    fn default() -> Self {
        Inodes::new()
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
        assert_eq!(i.path(l2), Some(&b"/x"[..]));
        assert_eq!(i.path(0), None);
        assert_eq!(i.path(ROOT), Some(&b""[..]));
    }

    #[test]
    fn forgotten_numbers_go_and_are_never_reused() {
        let mut i = Inodes::new();
        let key = |p: &str| Key::Path(p.as_bytes().to_vec());
        let a = i.ino_held(b"/a", key("/a"));
        assert!(i.hold(a), "a second lookup");
        i.forget(a, 1);
        assert_eq!(i.path(a), Some(&b"/a"[..]), "one reference left");
        i.forget(a, 1);
        assert_eq!(i.path(a), None, "dropped at zero");
        let again = i.ino_held(b"/a", key("/a"));
        assert!(again > a, "a new number, never an old one");
        assert!(!i.hold(a), "a dropped number cannot be held");
        i.forget(ROOT, 5);
        assert_eq!(i.path(ROOT), Some(&b""[..]), "the root stays");
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn unheld_numbers_are_swept_past_the_limit_and_held_ones_stay() {
        let mut i = Inodes::new();
        let held = i.ino_held(b"/held", Key::Path(b"/held".to_vec()));
        let first = i.ino(b"/0", Key::Path(b"/0".to_vec()));
        for n in 1..=UNHELD_LIMIT + 1 {
            let p = format!("/{n}");
            i.ino(p.as_bytes(), Key::Path(p.clone().into_bytes()));
        }
        assert!(i.len() <= UNHELD_LIMIT + 3, "{}", i.len());
        assert_eq!(i.path(first), None, "swept");
        assert_eq!(i.path(held), Some(&b"/held"[..]), "held: kept");
        assert_eq!(i.path(ROOT), Some(&b""[..]));
    }
}
