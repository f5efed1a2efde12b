//! The rules stock CernVM-FS's reader and `cvmfs_swissknife check` hold a catalog to,
//! beyond its schema (`swissknife_check.cc` `InspectTree` and `Find`, read, not copied):
//! checked on one catalog's rows, walking its directories from its root as stock does, so
//! that rows no walk reaches are found too.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::cvmfs::catalog::schema::flags;
use crate::cvmfs::catalog::schema::MARKER;
use crate::cvmfs::catalog::{CatalogContent, Entry, EntryKind, Row};
use crate::cvmfs::hash::PathKey;
use crate::repository::path::join;

/// What the rules need to know of a catalog besides its rows.
pub struct CatalogFacts<'a> {
    /// The catalog's rows, chunk lists, nested references and root prefix.
    pub content: &'a CatalogContent,
    /// SQLite row id of the catalog's own root entry.
    pub root_rowid: Option<i64>,
    /// The parent's mountpoint entry (nested catalogs).
    pub transition_point: Option<&'a Entry>,
}

/// Every rule the catalog breaks, one line each.
pub fn catalog_problems(f: &CatalogFacts<'_>) -> Vec<String> {
    let c = f.content;
    let mut out = Vec::new();
    let root_key = PathKey::of(&c.root_prefix);
    let is_root_catalog = c.root_prefix.is_empty();
    let Some(root) = c.rows.get(&root_key) else {
        return out; // reported by the caller
    };
    match (f.root_rowid, is_root_catalog) {
        (Some(1), _) => {}
        (id, true) => out.push(format!(
            "root entry is row {}, not row 1: stock clients give row 1 the root's inode, so \
             the entry in row 1 is unreadable there (run `lazyroot repair`)",
            id.unwrap_or(0)
        )),
        (id, false) => out.push(format!(
            "root entry is row {}, not row 1 as stock writes a catalog's root entry (run `lazyroot repair`)",
            id.unwrap_or(0)
        )),
    }
    if is_root_catalog && root.entry.flags & flags::NESTED_ROOT != 0 {
        out.push("root catalog's root entry is flagged as a nested catalog root".into());
    }
    if let Some(tp) = f.transition_point {
        for d in differences(tp, &root.entry, true) {
            out.push(format!("mountpoint entry and root entry differ: {d}"));
        }
    }
    if !is_root_catalog
        && !c
            .rows
            .contains_key(&PathKey::of(&join(&c.root_prefix, MARKER)))
    {
        out.push(
            "nested catalog without a .cvmfscatalog marker in its root (run `lazyroot repair`)"
                .into(),
        );
    }
    let mut paths = HashSet::new();
    for n in c.nested.values() {
        if !paths.insert(n.path.clone()) {
            out.push(format!(
                "{} is listed twice among nested catalogs and bind mountpoints",
                shown(&n.path)
            ));
        }
    }

    let mut by_parent: HashMap<PathKey, Vec<&Row>> = HashMap::new();
    for r in c.rows.values() {
        if r.key != root_key {
            by_parent.entry(r.parent).or_default().push(r);
        }
    }
    let mut reached = 1u64;
    let mut visited: HashSet<PathKey> = HashSet::from([root_key]);
    let mut stack = vec![(c.root_prefix.clone(), root)];
    while let Some((path, dir)) = stack.pop() {
        let children = by_parent.get(&dir.key).map(Vec::as_slice).unwrap_or(&[]);
        let mut subdirs = 0u64;
        let mut groups: BTreeMap<u32, Vec<&Row>> = BTreeMap::new();
        for child in children {
            let e = &child.entry;
            let full = join(&path, &e.name);
            let at = shown(&full);
            if PathKey::of(&full) != child.key {
                // Unreachable by path: stock lookups go by the md5 of the path.
                out.push(format!("{at}: path key does not match the entry's path"));
                continue;
            }
            if !visited.insert(child.key) {
                continue;
            }
            reached += 1;
            let has_children = by_parent.contains_key(&child.key);
            for p in entry_problems(c, child, &full, has_children) {
                out.push(format!("{at}: {p}"));
            }
            if e.link_count() > 1 && !e.is_dir() {
                if e.hardlink_group() == 0 {
                    out.push(format!(
                        "{at}: link count {} without a hard-link group",
                        e.link_count()
                    ));
                } else {
                    groups.entry(e.hardlink_group()).or_default().push(child);
                }
            }
            if e.is_dir() {
                subdirs += 1;
                if !e.is_nested_mountpoint() && e.flags & flags::BIND_MOUNTPOINT == 0 {
                    stack.push((full, child));
                }
            }
        }
        if dir.entry.link_count() as u64 != subdirs + 2 {
            out.push(format!(
                "{}: directory link count is {}, expected {} (2 + subdirectories)",
                shown(&path),
                dir.entry.link_count(),
                subdirs + 2
            ));
        }
        for (group, members) in groups {
            let first = &members[0].entry;
            if first.link_count() as usize != members.len() {
                out.push(format!(
                    "{}: hard-link group {group} has link count {} but {} members in this directory \
                     (stock keeps hard links per directory; run `lazyroot repair`)",
                    shown(&join(&path, &first.name)),
                    first.link_count(),
                    members.len()
                ));
            }
            for m in &members[1..] {
                for d in differences(first, &m.entry, false) {
                    out.push(format!(
                        "{}: hard link differs from {}: {d}",
                        shown(&join(&path, &m.entry.name)),
                        String::from_utf8_lossy(&first.name)
                    ));
                }
            }
        }
    }
    let rows = c.rows.len() as u64;
    if reached != rows {
        out.push(format!(
            "{} of {rows} entries are not reachable from the catalog's root (dangling entries)",
            rows - reached
        ));
    }
    out
}

/// The per-entry rules of stock's `Find`.
fn entry_problems(c: &CatalogContent, row: &Row, full: &[u8], has_children: bool) -> Vec<String> {
    let e = &row.entry;
    let mut out = Vec::new();
    if e.name.is_empty() {
        out.push("empty name".into());
    }
    if e.name == MARKER && row.parent != PathKey::of(&c.root_prefix) {
        out.push("abandoned .cvmfscatalog marker (not at a catalog's root)".into());
    }
    if e.link_count() == 0 {
        out.push("link count 0".into());
    }
    let regular = !e.is_dir() && e.flags & flags::LINK == 0 && e.kind() == EntryKind::File;
    if !regular && e.flags & flags::DIRECT_IO != 0 {
        out.push("direct I/O flag on an entry that is not a regular file".into());
    }
    if !regular && e.flags & flags::EXTERNAL != 0 {
        out.push("only regular files can be external".into());
    }
    if e.is_dir() {
        if e.hardlink_group() != 0 {
            out.push("directory in a hard-link group".into());
        }
        let nested = e.is_nested_mountpoint();
        let bind = e.flags & flags::BIND_MOUNTPOINT != 0;
        if nested && bind {
            out.push("both a bind mountpoint and a nested catalog mountpoint".into());
        }
        if (nested || bind) && !c.nested.contains_key(full) {
            out.push("mountpoint is not registered in nested_catalogs".into());
        }
        if (nested || bind) && has_children {
            out.push("nested catalog mountpoint has entries in the parent catalog".into());
        }
        return out;
    }
    if e.flags & flags::LINK != 0 {
        if e.hash.is_some() {
            out.push("symbolic link with a content hash".into());
        }
        if e.size != e.symlink.len() as u64 {
            out.push(format!(
                "symbolic link size is {}, its target has {} bytes",
                e.size,
                e.symlink.len()
            ));
        }
        return out;
    }
    match EntryKind::from_mode(e.mode) {
        Some(EntryKind::File) => {
            // A chunked file's list is checked with the readers' rule (`covers`).
            if !e.is_chunked() && e.hash.is_none() {
                out.push("regular file without a content hash".into());
            }
        }
        Some(
            kind @ (EntryKind::Fifo
            | EntryKind::Socket
            | EntryKind::CharDevice
            | EntryKind::BlockDevice),
        ) => {
            // Devices keep their device number in `size`; stock reads their size as 0.
            if matches!(kind, EntryKind::Fifo | EntryKind::Socket) && e.size != 0 {
                out.push(format!("special file with size {}", e.size));
            }
            if e.hash.is_some() {
                out.push("special file with a content hash".into());
            }
            if !e.symlink.is_empty() {
                out.push("special file with a symlink target".into());
            }
        }
        _ => out.push(format!("unknown file type (mode {:o})", e.mode)),
    }
    out
}

/// What stock's `CompareEntries` reports between two entries (hard-link members, or a
/// mountpoint and the nested catalog's root); flags that mark the transition are ignored.
fn differences(a: &Entry, b: &Entry, names: bool) -> Vec<String> {
    let mut d = Vec::new();
    if names && a.name != b.name {
        d.push(format!(
            "names {:?} / {:?}",
            String::from_utf8_lossy(&a.name),
            String::from_utf8_lossy(&b.name)
        ));
    }
    if a.link_count() != b.link_count() {
        d.push(format!(
            "link counts {} / {}",
            a.link_count(),
            b.link_count()
        ));
    }
    if a.hardlink_group() != b.hardlink_group() {
        d.push(format!(
            "hard-link groups {} / {}",
            a.hardlink_group(),
            b.hardlink_group()
        ));
    }
    // A device's size column holds its device number, which must agree too.
    if a.size != b.size {
        d.push(format!("sizes {} / {}", a.size, b.size));
    }
    if a.mode != b.mode {
        d.push(format!("modes {:o} / {:o}", a.mode, b.mode));
    }
    if (a.mtime, a.mtime_ns) != (b.mtime, b.mtime_ns) {
        d.push(format!("mtimes {} / {}", a.mtime, b.mtime));
    }
    if a.hash != b.hash {
        d.push("content hashes".into());
    }
    if a.symlink != b.symlink {
        d.push("symlink targets".into());
    }
    if (a.flags & flags::EXTERNAL) != (b.flags & flags::EXTERNAL) {
        d.push("external-file flags".into());
    }
    if a.xattrs.is_some() != b.xattrs.is_some() {
        d.push("extended attributes".into());
    }
    d
}

fn shown(p: &[u8]) -> String {
    if p.is_empty() {
        "/".into()
    } else {
        String::from_utf8_lossy(p).into_owned()
    }
}
