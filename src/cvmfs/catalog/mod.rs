//! File catalogs: SQLite databases holding the entries of one subtree. A parent lists the
//! hash and size of each nested catalog, so the root catalog's hash names the whole tree.

pub mod counters;
pub mod entry;
pub mod reader;
pub mod schema;
pub mod writer;
pub mod xattr;

use std::collections::BTreeMap;

pub use counters::Counters;
pub use entry::{Chunk, Entry, EntryKind, Row};
pub use reader::CatalogDb;

use crate::cvmfs::hash::{ContentHash, PathKey};

/// Why a catalog database cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite failed, for instance on bytes that are not a database.
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database opened but its content breaks the catalog format.
    #[error("catalog is invalid: {0}")]
    Invalid(String),
    /// The catalog file could not be examined.
    #[error("catalog file: {0}")]
    Io(#[from] std::io::Error),
}

/// A parent's reference to a nested catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedRef {
    /// Mountpoint path inside the repository (`/a/b`).
    pub path: Vec<u8>,
    /// Content hash of the nested catalog's `C` object.
    pub hash: ContentHash,
    /// Uncompressed size of the nested catalog database.
    pub size: u64,
}

/// The whole content of one catalog in memory: what the writer turns into a database and
/// what publishing compares to decide whether an old catalog can be kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogContent {
    /// Mountpoint of this catalog ("" for the root catalog).
    pub root_prefix: Vec<u8>,
    /// Every row of this catalog, by path key.
    pub rows: BTreeMap<PathKey, Row>,
    /// Chunk lists of the chunked files, by path key, in offset order.
    pub chunks: BTreeMap<PathKey, Vec<Chunk>>,
    /// References to the catalogs nested directly below this one, by mountpoint path.
    pub nested: BTreeMap<Vec<u8>, NestedRef>,
}

impl CatalogContent {
    /// An empty catalog mounted at `root_prefix`.
    pub fn new(root_prefix: Vec<u8>) -> Self {
        CatalogContent {
            root_prefix,
            ..Default::default()
        }
    }

    /// Loads every row, chunk and nested reference of an open catalog.
    pub fn load(db: &CatalogDb) -> Result<Self, CatalogError> {
        let mut c = CatalogContent::new(db.root_prefix()?);
        for row in db.all_rows()? {
            if row.entry.is_chunked() {
                let chunks = db.chunks(row.key, row.entry.hash_algo())?;
                c.chunks.insert(row.key, chunks);
            }
            c.rows.insert(row.key, row);
        }
        for n in db.nested()? {
            c.nested.insert(n.path.clone(), n);
        }
        Ok(c)
    }

    /// Keys of `key` and everything below it, following parent links, each once.
    pub fn subtree_keys(&self, key: PathKey) -> Vec<PathKey> {
        let mut by_parent: BTreeMap<PathKey, Vec<PathKey>> = BTreeMap::new();
        for r in self.rows.values() {
            if r.key != r.parent {
                by_parent.entry(r.parent).or_default().push(r.key);
            }
        }
        let mut out = Vec::new();
        let mut stack = vec![key];
        // Parent links of a hostile or damaged catalog can form a cycle (a directory whose
        // parent is its own child): each key is visited once, or the walk never ends.
        let mut seen = std::collections::BTreeSet::new();
        while let Some(k) = stack.pop() {
            if !seen.insert(k) {
                continue;
            }
            if self.rows.contains_key(&k) {
                out.push(k);
            }
            if let Some(children) = by_parent.get(&k) {
                stack.extend(children.iter().copied());
            }
        }
        out
    }
}
