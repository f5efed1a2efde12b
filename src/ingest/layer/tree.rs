//! The image's root filesystem in memory while layers are applied: directories own their
//! children; every other entry is an inode, so that hard links (several names, one inode)
//! survive until the tree becomes the publisher's [`Node`] tree. Paths are at most
//! [`crate::publish::walk::MAX_DEPTH`] deep (read and apply refuse deeper ones), which
//! bounds the recursion here.

use std::collections::BTreeMap;

use crate::publish::content::FileContent;
use crate::publish::walk::{Meta, Node, NodeKind};

use super::entries::Attrs;

/// The tree the layers build; [`Tree::apply`] adds one layer, [`Tree::into_publish`]
/// hands it to the publisher.
pub struct Tree {
    pub(super) root: Dir,
    pub(super) inodes: Vec<Inode>,
}

/// A directory and its children by name (raw bytes, so sorted as the publisher sorts).
pub(super) struct Dir {
    pub(super) attrs: Attrs,
    pub(super) children: BTreeMap<Vec<u8>, Child>,
}

impl Dir {
    pub(super) fn new(attrs: Attrs) -> Dir {
        Dir {
            attrs,
            children: BTreeMap::new(),
        }
    }
}

/// A name in a directory.
pub(super) enum Child {
    Dir(Dir),
    /// Index into [`Tree::inodes`].
    Leaf(usize),
}

/// A non-directory entry: one or more names share it.
pub(super) struct Inode {
    pub(super) attrs: Attrs,
    pub(super) kind: Leaf,
}

pub(super) enum Leaf {
    File(FileContent),
    Symlink(Vec<u8>),
    Device { block: bool, rdev: u64 },
    Fifo,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// An empty image: a root directory with [`Attrs::implicit_dir`] metadata, until a
    /// layer's `./` member says otherwise.
    pub fn new() -> Tree {
        Tree {
            root: Dir::new(Attrs::implicit_dir()),
            inodes: Vec::new(),
        }
    }

    /// The tree as the publisher takes it: the root [`Node`] (named `""`) and the file
    /// contents its [`NodeKind::File`] indices point into. Names of one inode share one
    /// content and a synthetic device and inode number, with the link count of their
    /// names, so the catalog builder groups them as hard links (within a directory, as
    /// CernVM-FS keeps them). `root` replaces the root directory's metadata when given.
    pub fn into_publish(self, root: Option<&Attrs>) -> (Node, Vec<FileContent>) {
        let mut names = vec![0u64; self.inodes.len()];
        count_names(&self.root, &mut names);
        let mut c = Converter {
            inodes: &self.inodes,
            names: &names,
            content_of: vec![None; self.inodes.len()],
            contents: Vec::new(),
            next_dir_ino: self.inodes.len() as u64 + 1,
        };
        let mut root_dir = self.root;
        if let Some(a) = root {
            root_dir.attrs = a.clone();
        }
        let node = c.dir(Vec::new(), root_dir);
        (node, c.contents)
    }

    /// Entries in the tree, the root included (hard-linked names counted each).
    pub fn len(&self) -> u64 {
        fn walk(d: &Dir) -> u64 {
            1 + d
                .children
                .values()
                .map(|c| match c {
                    Child::Dir(d) => walk(d),
                    Child::Leaf(_) => 1,
                })
                .sum::<u64>()
        }
        walk(&self.root)
    }

    /// Whether the tree is just its root.
    pub fn is_empty(&self) -> bool {
        self.root.children.is_empty()
    }
}

fn count_names(d: &Dir, names: &mut [u64]) {
    for c in d.children.values() {
        match c {
            Child::Dir(d) => count_names(d, names),
            Child::Leaf(i) => names[*i] += 1,
        }
    }
}

struct Converter<'a> {
    inodes: &'a [Inode],
    names: &'a [u64],
    content_of: Vec<Option<usize>>,
    contents: Vec<FileContent>,
    next_dir_ino: u64,
}

fn meta(a: &Attrs, file_type: u32, size: u64, rdev: u64, ino: u64, nlink: u64) -> Meta {
    Meta {
        mode: file_type | (a.mode & 0o7777),
        uid: a.uid,
        gid: a.gid,
        size,
        mtime: a.mtime,
        mtime_ns: a.mtime_ns,
        ctime: a.mtime,
        ctime_ns: a.mtime_ns,
        rdev,
        dev: 0,
        ino,
        nlink,
    }
}

fn xattrs(a: &Attrs) -> Option<crate::cvmfs::catalog::xattr::Xattrs> {
    (!a.xattrs.is_empty()).then(|| a.xattrs.clone())
}

impl Converter<'_> {
    fn dir(&mut self, name: Vec<u8>, d: Dir) -> Node {
        let ino = self.next_dir_ino;
        self.next_dir_ino += 1;
        let mut children = Vec::with_capacity(d.children.len());
        let mut subdirs = 0;
        for (n, c) in d.children {
            children.push(match c {
                Child::Dir(sub) => {
                    subdirs += 1;
                    self.dir(n, sub)
                }
                Child::Leaf(i) => self.leaf(n, i),
            });
        }
        Node {
            name,
            xattrs: xattrs(&d.attrs),
            meta: meta(&d.attrs, libc::S_IFDIR, 4096, 0, ino, 2 + subdirs),
            kind: NodeKind::Dir(children),
        }
    }

    fn leaf(&mut self, name: Vec<u8>, i: usize) -> Node {
        let inode = &self.inodes[i];
        let (ino, nlink) = (i as u64 + 1, self.names[i]);
        let a = &inode.attrs;
        let (meta, kind) = match &inode.kind {
            Leaf::File(content) => {
                let index = *self.content_of[i].get_or_insert_with(|| {
                    self.contents.push(content.clone());
                    self.contents.len() - 1
                });
                (
                    meta(a, libc::S_IFREG, content.size(), 0, ino, nlink),
                    NodeKind::File(index),
                )
            }
            Leaf::Symlink(t) => (
                meta(a, libc::S_IFLNK, t.len() as u64, 0, ino, nlink),
                NodeKind::Symlink(t.clone()),
            ),
            Leaf::Device { block, rdev } => {
                let ft = if *block { libc::S_IFBLK } else { libc::S_IFCHR };
                (meta(a, ft, 0, *rdev, ino, nlink), NodeKind::Special)
            }
            Leaf::Fifo => (meta(a, libc::S_IFIFO, 0, 0, ino, nlink), NodeKind::Special),
        };
        Node {
            name,
            meta,
            xattrs: xattrs(a),
            kind,
        }
    }
}
