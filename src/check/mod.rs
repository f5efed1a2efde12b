//! `check`: every object reachable from the manifest exists, has the right hash and
//! decompresses to the size its catalog states; catalogs are consistent with each other
//! (mountpoints, root prefixes, parent links, counters). Collects every problem found.

use std::collections::{HashMap, HashSet};

use crate::catalog::{CatalogContent, Counters, NestedRef};
use crate::hash::PathKey;
use crate::object::{ObjectKind, ObjectName};
use crate::reflog;
use crate::repository::path::parent;
use crate::repository::{fetch_object, Repository};

/// What `check` looked at and what it found wrong.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub catalogs: u64,
    pub entries: u64,
    pub objects: u64,
    pub problems: Vec<String>,
}

fn shown(p: &[u8]) -> String {
    if p.is_empty() {
        "/".into()
    } else {
        String::from_utf8_lossy(p).into_owned()
    }
}

/// Audits the revision the manifest names (the trust chain was verified by `open`).
pub fn check(repo: &Repository) -> CheckReport {
    let mut r = CheckReport::default();
    let m = repo.manifest().clone();
    let source = repo.source().clone();
    if let Some(h) = m.history {
        if let Err(e) = fetch_object(
            source.as_ref(),
            &ObjectName::new(h, ObjectKind::History),
            256 << 20,
        ) {
            r.problems.push(format!("history database: {e}"));
        }
    }
    if let Some(y) = m.reflog {
        match source.fetch(reflog::PATH, 1 << 30) {
            Ok(bytes) if y.algo.digest(&bytes) == y => {}
            Ok(_) => r.problems.push(format!(
                "{}: does not match the manifest's hash {y}",
                reflog::PATH
            )),
            Err(e) => r.problems.push(format!("{}: {e}", reflog::PATH)),
        }
    }
    let mut seen: HashSet<ObjectName> = HashSet::new();
    let root = NestedRef {
        path: Vec::new(),
        hash: m.root_catalog,
        size: m.root_catalog_size,
    };
    check_catalog(repo, &root, &mut seen, &mut r);
    r
}

/// Checks one catalog and those below it; returns the counters of all it holds, if readable.
fn check_catalog(
    repo: &Repository,
    n: &NestedRef,
    seen: &mut HashSet<ObjectName>,
    r: &mut CheckReport,
) -> Option<Counters> {
    let at = |what: &str| format!("catalog {} ({}): {what}", n.hash, shown(&n.path));
    let db = match repo.catalog(&n.hash, n.size) {
        Ok(db) => db,
        Err(e) => {
            r.problems.push(at(&e.to_string()));
            return None;
        }
    };
    r.catalogs += 1;
    let (content, stats) = {
        let db = db.lock().expect("catalog");
        match (CatalogContent::load(&db), db.statistics()) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => {
                r.problems.push(at(&e.to_string()));
                return None;
            }
        }
    };
    if content.root_prefix != n.path {
        r.problems.push(at(&format!(
            "root_prefix is {:?}",
            shown(&content.root_prefix)
        )));
    }
    let root_key = PathKey::of(&n.path);
    match content.rows.get(&root_key) {
        Some(row) if row.entry.is_dir() => {
            let want = if n.path.is_empty() {
                PathKey::NONE
            } else {
                PathKey::of(parent(&n.path))
            };
            if row.parent != want {
                r.problems.push(at("root entry has the wrong parent key"));
            }
            if !n.path.is_empty()
                && row.entry.flags & crate::catalog::schema::flags::NESTED_ROOT == 0
            {
                r.problems
                    .push(at("root entry is not flagged as a nested catalog root"));
            }
        }
        _ => r.problems.push(at("has no root directory entry")),
    }
    let dirs: HashSet<PathKey> = content
        .rows
        .values()
        .filter(|row| row.entry.is_dir())
        .map(|row| row.key)
        .collect();
    let mut chunk_owner: HashMap<PathKey, u64> = HashMap::new();
    for row in content.rows.values() {
        r.entries += 1;
        let e = &row.entry;
        let name = String::from_utf8_lossy(&e.name);
        if row.key != root_key && !dirs.contains(&row.parent) {
            r.problems.push(at(&format!(
                "entry {name:?} has no parent directory in this catalog"
            )));
        }
        if e.is_nested_mountpoint()
            && !content
                .nested
                .values()
                .any(|c| PathKey::of(&c.path) == row.key)
        {
            r.problems.push(at(&format!(
                "mountpoint {name:?} is not in nested_catalogs"
            )));
        }
        if e.kind() != crate::catalog::EntryKind::File {
            continue;
        }
        if e.is_chunked() {
            chunk_owner.insert(row.key, e.size);
        } else if let Some(h) = e.hash {
            verify_object(
                repo,
                ObjectName::new(h, ObjectKind::File),
                e.size,
                &name,
                seen,
                r,
                &at,
            );
        } else if e.size > 0 {
            r.problems.push(at(&format!(
                "file {name:?} has {} bytes but no content hash",
                e.size
            )));
        }
    }
    for (key, size) in chunk_owner {
        let chunks = content.chunks.get(&key).cloned().unwrap_or_default();
        let mut offset = 0;
        for c in &chunks {
            if c.offset != offset {
                r.problems.push(at(&format!(
                    "chunk list of {} has a gap at {offset}",
                    key.md5_hex()
                )));
            }
            offset = c.offset + c.size;
            verify_object(
                repo,
                ObjectName::new(c.hash, ObjectKind::Chunk),
                c.size,
                "chunk",
                seen,
                r,
                &at,
            );
        }
        if offset != size {
            r.problems.push(at(&format!(
                "chunks of {} cover {offset} of {size} bytes",
                key.md5_hex()
            )));
        }
    }
    let own = Counters::of(&content);
    let mut below = Counters::default();
    for child in content.nested.values() {
        if !content
            .rows
            .get(&PathKey::of(&child.path))
            .is_some_and(|row| row.entry.is_nested_mountpoint())
        {
            r.problems.push(at(&format!(
                "nested catalog {} has no mountpoint entry",
                shown(&child.path)
            )));
        }
        if let Some(c) = check_catalog(repo, child, seen, r) {
            below.plus(&c);
        }
    }
    for f in crate::catalog::counters::FIELDS {
        for (prefix, want) in [("self", own.get(f)), ("subtree", below.get(f))] {
            let key = format!("{prefix}_{f}");
            // Old catalogs lack some counters; only those present are compared.
            if let Some(&have) = stats.get(&key) {
                if have != want {
                    r.problems.push(at(&format!(
                        "counter {key} is {have}, the rows give {want}"
                    )));
                }
            }
        }
    }
    let mut totals = own;
    totals.plus(&below);
    Some(totals)
}

fn verify_object(
    repo: &Repository,
    name: ObjectName,
    size: u64,
    what: &str,
    seen: &mut HashSet<ObjectName>,
    r: &mut CheckReport,
    at: &dyn Fn(&str) -> String,
) {
    if !seen.insert(name) {
        return;
    }
    r.objects += 1;
    match fetch_object(repo.source().as_ref(), &name, size) {
        Ok(data) if data.len() as u64 == size => {}
        Ok(data) => r.problems.push(at(&format!(
            "{what:?}: object {name} has {} bytes, expected {size}",
            data.len()
        ))),
        Err(e) => r.problems.push(at(&format!("{what:?}: {e}"))),
    }
}
