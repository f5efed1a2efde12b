//! Statistics counters (`catalog_counters.h`): what `df -i` and the `repo_counters` xattr
//! report. Each catalog stores `self_*` for its own rows and `subtree_*` for everything in
//! the catalogs nested below it (not its own rows: stock readers add the two).

use std::collections::BTreeMap;

use super::entry::EntryKind;
use super::CatalogContent;

/// Counter names, without the `self_` / `subtree_` prefix.
pub const FIELDS: [&str; 12] = [
    "regular",
    "symlink",
    "special",
    "dir",
    "nested",
    "chunked",
    "chunked_size",
    "chunks",
    "file_size",
    "xattr",
    "external",
    "external_file_size",
];

/// Statistics counters by field name (one of [`FIELDS`]); a field not present counts 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<&'static str, i64>);

impl Counters {
    /// Counts the rows of one catalog.
    pub fn of(content: &CatalogContent) -> Self {
        let mut c = Counters::default();
        for row in content.rows.values() {
            let e = &row.entry;
            match e.kind() {
                EntryKind::Directory => c.add("dir", 1),
                EntryKind::Symlink => c.add("symlink", 1),
                EntryKind::File => {
                    c.add("regular", 1);
                    c.add("file_size", e.size as i64);
                    if e.is_chunked() {
                        c.add("chunked", 1);
                        c.add("chunked_size", e.size as i64);
                    }
                }
                _ => c.add("special", 1),
            }
            if e.xattrs.is_some() {
                c.add("xattr", 1);
            }
        }
        c.add(
            "chunks",
            content.chunks.values().map(|v| v.len() as i64).sum(),
        );
        c.add("nested", content.nested.len() as i64);
        c
    }

    /// Adds `n` (which may be negative) to `field`.
    pub fn add(&mut self, field: &'static str, n: i64) {
        *self.0.entry(field).or_insert(0) += n;
    }

    /// The value of `field`; 0 if it was never set.
    pub fn get(&self, field: &str) -> i64 {
        self.0.get(field).copied().unwrap_or(0)
    }

    /// Adds each of `other`'s [`FIELDS`] to this one's: sums catalogs into a subtree total.
    pub fn plus(&mut self, other: &Counters) {
        for f in FIELDS {
            self.add(f, other.get(f));
        }
    }

    /// Everything a stored catalog accounts for: its `self_*` plus its `subtree_*`.
    pub fn totals_from(stats: &BTreeMap<String, i64>) -> Self {
        let mut c = Counters::default();
        for f in FIELDS {
            let get = |p: &str| stats.get(&format!("{p}_{f}")).copied().unwrap_or(0);
            c.add(f, get("self") + get("subtree"));
        }
        c
    }
}
