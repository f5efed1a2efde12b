//! What stock CernVM-FS's reader and checker assume of a catalog beyond its schema, applied
//! to catalog content the publisher writes or rewrites:
//!
//! - hard-link groups are per directory: `cvmfs_swissknife check` counts a group's members
//!   directory by directory, and stock's publisher keeps only hard links within one
//!   directory. Members in other directories become plain entries (same content hash), or a
//!   group of their own where a directory holds several;
//! - a nested catalog holds a `.cvmfscatalog` marker in its root directory, as stock's
//!   publisher writes one (an empty regular file) and its checker demands one.
//!
//! The third rule, each catalog's own root entry in row 1, is the writer's
//! ([`crate::cvmfs::catalog::writer`]).

use std::collections::{BTreeMap, HashMap};

use crate::cvmfs::catalog::schema::flags;
use crate::cvmfs::catalog::{CatalogContent, Entry, Row};
use crate::cvmfs::hash::{ContentHash, HashAlgo, PathKey};
use crate::repository::path::join;

use crate::cvmfs::catalog::schema::MARKER;

/// Mode of a marker stock's publisher writes for a `.cvmfsdirtab` or migrated catalog.
const MARKER_MODE: u32 = libc::S_IFREG | 0o644;

/// The `.cvmfscatalog` entry for a catalog root directory `dir`: empty, owned like the
/// directory, and timed like it, so that republishing the same tree keeps the catalog.
/// `empty` is the hash of the empty object (which the caller has stored).
pub fn marker_entry(dir: &Entry, empty: ContentHash, algo: HashAlgo) -> Entry {
    Entry {
        name: MARKER.to_vec(),
        mode: MARKER_MODE,
        uid: dir.uid,
        gid: dir.gid,
        size: 0,
        mtime: dir.mtime,
        mtime_ns: dir.mtime_ns,
        flags: flags::FILE | (algo.flag_bits() << flags::HASH_SHIFT),
        hardlinks: 1,
        hash: Some(empty),
        symlink: Vec::new(),
        xattrs: None,
    }
}

/// Whether a nested catalog lacks the marker in its root directory.
pub fn needs_marker(content: &CatalogContent) -> bool {
    !content.root_prefix.is_empty()
        && !content
            .rows
            .contains_key(&PathKey::of(&join(&content.root_prefix, MARKER)))
}

/// Adds the marker to a nested catalog that lacks it. Returns whether it did.
pub fn add_marker(content: &mut CatalogContent, empty: ContentHash, algo: HashAlgo) -> bool {
    if !needs_marker(content) {
        return false;
    }
    let root_key = PathKey::of(&content.root_prefix);
    let Some(root) = content.rows.get(&root_key) else {
        return false;
    };
    let entry = marker_entry(&root.entry, empty, algo);
    let key = PathKey::of(&join(&content.root_prefix, MARKER));
    content.rows.insert(
        key,
        Row {
            key,
            parent: root_key,
            entry,
        },
    );
    true
}

/// Splits hard-link groups that span directories: the members in the first directory (by
/// path key) keep the group, those in each other directory get a group of their own, or
/// none where they are alone there. Link counts become the members per directory. Groups
/// already within one directory keep their numbers, so conforming content is left as it
/// is. Returns how many entries changed.
pub fn split_hardlink_groups(content: &mut CatalogContent) -> u64 {
    // (group, parent) → members, in key order.
    let mut members: BTreeMap<u32, BTreeMap<PathKey, Vec<PathKey>>> = BTreeMap::new();
    for row in content.rows.values() {
        let group = row.entry.hardlink_group();
        if group != 0 && !row.entry.is_dir() {
            members
                .entry(group)
                .or_default()
                .entry(row.parent)
                .or_default()
                .push(row.key);
        }
    }
    let mut next = members.keys().next_back().copied().unwrap_or(0);
    let mut changed = 0;
    let mut set: HashMap<PathKey, u64> = HashMap::new();
    for (group, dirs) in &members {
        for (i, keys) in dirs.values().enumerate() {
            let count = keys.len() as u64;
            let value = match (i, count) {
                (_, 1) => 1,
                (0, _) => (u64::from(*group) << 32) | count,
                _ => {
                    next += 1;
                    (u64::from(next) << 32) | count
                }
            };
            for k in keys {
                set.insert(*k, value);
            }
        }
    }
    for (k, value) in set {
        if let Some(row) = content.rows.get_mut(&k) {
            if row.entry.hardlinks != value {
                row.entry.hardlinks = value;
                changed += 1;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &[u8], parent: &[u8], hardlinks: u64) -> Row {
        Row {
            key: PathKey::of(path),
            parent: PathKey::of(parent),
            entry: Entry {
                name: path.rsplit(|&b| b == b'/').next().unwrap().to_vec(),
                mode: libc::S_IFREG | 0o644,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: 0,
                mtime_ns: None,
                flags: flags::FILE,
                hardlinks,
                hash: None,
                symlink: Vec::new(),
                xattrs: None,
            },
        }
    }

    fn links(c: &CatalogContent, path: &[u8]) -> (u32, u32) {
        let e = &c.rows[&PathKey::of(path)].entry;
        (e.hardlink_group(), e.link_count())
    }

    #[test]
    fn groups_are_split_per_directory() {
        let mut c = CatalogContent::new(Vec::new());
        let g = |n: u64| (1u64 << 32) | n;
        for r in [
            row(b"/plain", b"", g(4)),
            row(b"/same", b"", g(4)),
            row(b"/dir/other", b"/dir", g(4)),
            row(b"/two/a", b"/two", g(4)),
        ] {
            c.rows.insert(r.key, r);
        }
        assert_eq!(split_hardlink_groups(&mut c), 4);
        // The directory whose path key sorts first keeps group 1.
        let kept = [&b"/plain"[..], b"/dir/other", b"/two/a"]
            .iter()
            .filter(|p| links(&c, p).0 == 1)
            .count();
        assert!(kept >= 1);
        assert_eq!(links(&c, b"/plain"), links(&c, b"/same"));
        assert_eq!(links(&c, b"/plain").1, 2);
        assert_eq!(links(&c, b"/dir/other"), (0, 1));
        assert_eq!(links(&c, b"/two/a"), (0, 1));
        // Conforming content is left alone.
        assert_eq!(split_hardlink_groups(&mut c), 0);
    }

    #[test]
    fn a_second_directory_with_several_members_gets_a_new_group() {
        let mut c = CatalogContent::new(Vec::new());
        let g = |n: u64| (7u64 << 32) | n;
        for r in [
            row(b"/a/x", b"/a", g(4)),
            row(b"/a/y", b"/a", g(4)),
            row(b"/b/x", b"/b", g(4)),
            row(b"/b/y", b"/b", g(4)),
        ] {
            c.rows.insert(r.key, r);
        }
        split_hardlink_groups(&mut c);
        let (a, b) = (links(&c, b"/a/x"), links(&c, b"/b/x"));
        assert_eq!((a.1, b.1), (2, 2));
        assert_ne!(a.0, b.0);
        assert!(a.0 == 7 || b.0 == 7);
        assert_eq!(links(&c, b"/a/y"), a);
        assert_eq!(links(&c, b"/b/y"), b);
    }
}
