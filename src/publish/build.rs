//! Turning the walked tree into catalogs, children first so each parent can list its
//! nested catalogs' hashes. A catalog whose rows equal the previous revision's at the same
//! mountpoint is kept as it was: same object, no new bytes.

use std::collections::{HashMap, HashSet};

use crate::cvmfs::catalog::schema::flags;
use crate::cvmfs::catalog::writer::{self, CatalogProperties};
use crate::cvmfs::catalog::{CatalogContent, Counters, Entry, NestedRef, Row};
use crate::cvmfs::hash::{ContentHash, HashAlgo, PathKey};
use crate::cvmfs::object::ObjectKind;
use crate::repository::local::LocalStore;
use crate::repository::path::{join, parent};

use super::conform;
use super::content::FileContent;
use super::walk::{Meta, Node, NodeKind};
use super::PublishError;

/// Size recorded for directories, as tar ingestion upstream records it.
const DIR_SIZE: u64 = 4096;
/// `previous_revision` of a catalog that has no predecessor.
pub const NO_PREVIOUS: &str = "0000000000000000000000000000000000000000";

/// A catalog of the previous revision: its reference and a way to read it.
pub trait OldCatalogs {
    /// The previous revision's catalog mounted exactly at `mountpoint`, if there is one.
    fn at(&self, mountpoint: &[u8]) -> Result<Option<NestedRef>, PublishError>;
    /// Reads a catalog's rows, chunk lists and nested catalog references.
    fn load(&self, r: &NestedRef) -> Result<CatalogContent, PublishError>;
    /// Whether the catalog's own root entry is its row 1, as stock writes it.
    fn root_is_first_row(&self, r: &NestedRef) -> Result<bool, PublishError>;
    /// Counters of all the catalog accounts for (its own rows and those nested below).
    fn totals(&self, r: &NestedRef) -> Result<Counters, PublishError>;
}

/// State shared while building the catalogs of one revision.
pub struct BuildCtx<'a> {
    /// Where catalog (and marker) objects are stored.
    pub store: &'a LocalStore,
    /// The repository's hash algorithm.
    pub algo: HashAlgo,
    /// The revision being built, written into every new catalog.
    pub revision: u64,
    /// Publish time in Unix seconds (each new catalog's `last_modified`).
    pub now: i64,
    /// TTL written into a root catalog.
    pub ttl: u64,
    /// Content of each file job; [`NodeKind::File`] indexes into it.
    pub contents: &'a [FileContent],
    /// Repository paths of the directories that root a catalog.
    pub roots: &'a HashSet<Vec<u8>>,
    /// The previous revision's catalogs, so that unchanged ones are kept.
    pub old: &'a dyn OldCatalogs,
    /// Catalogs written so far.
    pub written: u64,
    /// Catalogs kept from the previous revision so far.
    pub kept: u64,
    /// Files with more names than their directory holds: stored apart from those other
    /// names (hard links are kept within one directory only).
    pub split_links: u64,
    /// The empty object, once stored (nested catalogs' markers).
    pub empty_object: Option<ContentHash>,
}

/// A finished catalog: the reference its parent stores, the counters of all it holds
/// (itself and everything nested below), and the row
/// of its root directory (the parent stores the same row as the mountpoint).
pub struct Built {
    /// What the parent lists in `nested_catalogs`: mountpoint, hash and size.
    pub nested: NestedRef,
    /// Counters of this catalog and of every catalog nested below it.
    pub totals: Counters,
    /// The catalog's root directory entry.
    pub root_entry: Entry,
}

/// A directory entry from walk metadata: size 4096, link count 2 + `subdirs`, flags `fl`.
pub fn dir_entry(
    name: &[u8],
    m: &Meta,
    xattrs: Option<crate::cvmfs::catalog::xattr::Xattrs>,
    subdirs: u64,
    fl: u32,
) -> Entry {
    Entry {
        name: name.to_vec(),
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        size: DIR_SIZE,
        mtime: m.mtime,
        mtime_ns: Some(m.mtime_ns),
        flags: fl,
        hardlinks: 2 + subdirs,
        hash: None,
        symlink: Vec::new(),
        xattrs,
    }
}

impl<'a> BuildCtx<'a> {
    /// A context for `revision` with nothing counted yet and no file contents (those
    /// come with [`BuildCtx::with_contents`]); `roots` are the directories that root a
    /// catalog.
    pub fn new(
        store: &'a LocalStore,
        algo: HashAlgo,
        revision: u64,
        now: i64,
        ttl: u64,
        roots: &'a HashSet<Vec<u8>>,
        old: &'a dyn OldCatalogs,
    ) -> Self {
        BuildCtx {
            store,
            algo,
            revision,
            now,
            ttl,
            contents: &[],
            roots,
            old,
            written: 0,
            kept: 0,
            split_links: 0,
            empty_object: None,
        }
    }

    /// The same context, building a tree whose files are `contents`.
    pub fn with_contents(mut self, contents: &'a [FileContent]) -> Self {
        self.contents = contents;
        self
    }
}

impl BuildCtx<'_> {
    /// Builds the catalog rooted at directory `node`, mounted at `path`, and every catalog below.
    pub fn build(&mut self, node: &Node, path: &[u8]) -> Result<Built, PublishError> {
        let NodeKind::Dir(children) = &node.kind else {
            unreachable!("catalog roots are directories")
        };
        let mut content = CatalogContent::new(path.to_vec());
        let mut below = Counters::default();
        let mut groups = 0u32;
        let root_flags = if path.is_empty() {
            flags::DIR
        } else {
            flags::DIR | flags::NESTED_ROOT
        };
        let root_entry = dir_entry(
            &node.name,
            &node.meta,
            node.xattrs.clone(),
            count_subdirs(children),
            root_flags,
        );
        let parent_key = if path.is_empty() {
            PathKey::NONE
        } else {
            PathKey::of(parent(path))
        };
        content.rows.insert(
            PathKey::of(path),
            Row {
                key: PathKey::of(path),
                parent: parent_key,
                entry: root_entry.clone(),
            },
        );
        self.add_children(node, path, &mut content, &mut below, &mut groups)?;
        if conform::needs_marker(&content) {
            let empty = self.empty_object()?;
            conform::add_marker(&mut content, empty, self.algo);
        }
        let self_counters = Counters::of(&content);
        let mut totals = self_counters.clone();
        totals.plus(&below);
        let old = self.old.at(path)?;
        // The root catalog is always rewritten: its revision property names the revision.
        if let Some(old) = old.as_ref().filter(|_| !path.is_empty()) {
            // A catalog of an earlier lazyroot may hold the same rows in another order:
            // it is rewritten once, as stock writes it.
            if self.old.load(old)? == content && self.old.root_is_first_row(old)? {
                self.kept += 1;
                return Ok(Built {
                    nested: old.clone(),
                    totals,
                    root_entry,
                });
            }
        }
        let props = CatalogProperties {
            revision: self.revision,
            last_modified: self.now,
            previous_revision: Some(
                old.map(|o| o.hash.to_hex())
                    .unwrap_or_else(|| NO_PREVIOUS.to_string()),
            ),
            ttl: path.is_empty().then_some(self.ttl),
        };
        let nested = self.write(&content, &props, &self_counters, &below)?;
        Ok(Built {
            nested,
            totals,
            root_entry,
        })
    }

    /// The hash of the empty file object, stored on first use.
    pub fn empty_object(&mut self) -> Result<ContentHash, PublishError> {
        if let Some(h) = self.empty_object {
            return Ok(h);
        }
        let h = self.store.put(ObjectKind::File, self.algo, b"")?.hash;
        self.empty_object = Some(h);
        Ok(h)
    }

    /// Stores `content` as a new catalog object with `props` and its counters (`own` rows,
    /// `below` for the nested catalogs) and counts it in `written`.
    pub fn write(
        &mut self,
        content: &CatalogContent,
        props: &CatalogProperties,
        own: &Counters,
        below: &Counters,
    ) -> Result<NestedRef, PublishError> {
        let bytes = writer::write(content, props, own, below)
            .map_err(|e| PublishError::Catalog(format!("{}: {e}", shown(&content.root_prefix))))?;
        let name = self.store.put(ObjectKind::Catalog, self.algo, &bytes)?;
        self.written += 1;
        Ok(NestedRef {
            path: content.root_prefix.clone(),
            hash: name.hash,
            size: bytes.len() as u64,
        })
    }

    fn add_children(
        &mut self,
        dir: &Node,
        dir_path: &[u8],
        content: &mut CatalogContent,
        below: &mut Counters,
        groups: &mut u32,
    ) -> Result<(), PublishError> {
        let NodeKind::Dir(children) = &dir.kind else {
            return Ok(());
        };
        let parent_key = PathKey::of(dir_path);
        // Hard-link groups are per directory, as stock keeps them; the group number is
        // unique in the catalog.
        let mut names: HashMap<(u64, u64), u32> = HashMap::new();
        for c in children {
            if !matches!(c.kind, NodeKind::Dir(_)) && c.meta.nlink > 1 {
                *names.entry((c.meta.dev, c.meta.ino)).or_insert(0) += 1;
            }
        }
        let mut dir_groups: HashMap<(u64, u64), u32> = HashMap::new();
        for child in children {
            let path = join(dir_path, &child.name);
            let key = PathKey::of(&path);
            let entry = match &child.kind {
                NodeKind::Dir(grandchildren) if self.roots.contains(&path) => {
                    let built = self.build(child, &path)?;
                    below.plus(&built.totals);
                    content.nested.insert(path.clone(), built.nested);
                    let mut e = built.root_entry;
                    e.flags = flags::DIR | flags::NESTED_MOUNTPOINT;
                    debug_assert_eq!(e.hardlinks, 2 + count_subdirs(grandchildren));
                    e
                }
                NodeKind::Dir(grandchildren) => {
                    self.add_children(child, &path, content, below, groups)?;
                    dir_entry(
                        &child.name,
                        &child.meta,
                        child.xattrs.clone(),
                        count_subdirs(grandchildren),
                        flags::DIR,
                    )
                }
                other => {
                    let mut e = leaf_entry(child, other, self.contents, self.algo);
                    if let FileContentRef::Chunked(chunks) = file_chunks(other, self.contents) {
                        content.chunks.insert(key, chunks.to_vec());
                    }
                    let id = (child.meta.dev, child.meta.ino);
                    let here = names.get(&id).copied().unwrap_or(1);
                    if u64::from(here) < child.meta.nlink {
                        self.split_links += 1;
                    }
                    if here > 1 {
                        let group = *dir_groups.entry(id).or_insert_with(|| {
                            *groups += 1;
                            *groups
                        });
                        e.hardlinks = (u64::from(group) << 32) | u64::from(here);
                    }
                    e
                }
            };
            content.rows.insert(
                key,
                Row {
                    key,
                    parent: parent_key,
                    entry,
                },
            );
        }
        Ok(())
    }
}

fn count_subdirs(children: &[Node]) -> u64 {
    children
        .iter()
        .filter(|c| matches!(c.kind, NodeKind::Dir(_)))
        .count() as u64
}

enum FileContentRef<'a> {
    None,
    Chunked(&'a [crate::cvmfs::catalog::Chunk]),
}

fn file_chunks<'a>(kind: &NodeKind, contents: &'a [FileContent]) -> FileContentRef<'a> {
    match kind {
        NodeKind::File(i) => match &contents[*i] {
            FileContent::Chunked { chunks, .. } => FileContentRef::Chunked(chunks),
            FileContent::Whole { .. } => FileContentRef::None,
        },
        _ => FileContentRef::None,
    }
}

fn leaf_entry(node: &Node, kind: &NodeKind, contents: &[FileContent], algo: HashAlgo) -> Entry {
    let m = &node.meta;
    let mut e = Entry {
        name: node.name.clone(),
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        size: 0,
        mtime: m.mtime,
        mtime_ns: Some(m.mtime_ns),
        flags: flags::FILE,
        hardlinks: 1,
        hash: None,
        symlink: Vec::new(),
        xattrs: node.xattrs.clone(),
    };
    match kind {
        NodeKind::File(i) => {
            // The algorithm bits are set only where there is content, as upstream does.
            e.flags |= algo.flag_bits() << flags::HASH_SHIFT;
            match &contents[*i] {
                FileContent::Whole { hash, size } => {
                    e.hash = Some(*hash);
                    e.size = *size;
                }
                FileContent::Chunked { size, .. } => {
                    e.flags |= flags::CHUNKED;
                    e.size = *size;
                }
            }
        }
        NodeKind::Symlink(target) => {
            e.flags |= flags::LINK;
            e.size = target.len() as u64;
            e.symlink = target.clone();
        }
        NodeKind::Special => {
            e.flags |= flags::SPECIAL;
            let ft = m.mode & libc::S_IFMT;
            if ft == libc::S_IFCHR || ft == libc::S_IFBLK {
                e.size = m.rdev;
            }
        }
        NodeKind::Dir(_) => unreachable!("directories are handled by the caller"),
    }
    e
}

/// A repository path for messages: `/` for the root.
pub fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}
