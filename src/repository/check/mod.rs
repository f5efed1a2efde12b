//! `check`: every object reachable from the manifest exists, has the right hash and
//! decompresses to the size its catalog states; catalogs are consistent with each other
//! (mountpoints, root prefixes, parent links, counters) and follow the rules stock
//! CernVM-FS's client and `cvmfs_swissknife check` rely on ([`rules`]); the reflog lists
//! what the manifest names and the history's branches hold together. Collects every
//! problem found.

pub mod rules;

use std::collections::{HashMap, HashSet};

use crate::cvmfs::catalog::{CatalogContent, Counters, Entry, NestedRef};
use crate::cvmfs::hash::PathKey;
use crate::cvmfs::history::History;
use crate::cvmfs::object::{ObjectKind, ObjectName};
use crate::cvmfs::reflog::{self, RefType};
use crate::repository::path::parent;
use crate::repository::{fetch_object, Repository};

/// What `check` looked at and what it found wrong.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Catalogs opened (the root catalog and every nested one reached).
    pub catalogs: u64,
    /// Catalog rows examined, over all catalogs.
    pub entries: u64,
    /// Distinct file and chunk objects fetched and verified.
    pub objects: u64,
    /// One line per problem found; empty when the repository is sound.
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
        match fetch_object(
            source.as_ref(),
            &ObjectName::new(h, ObjectKind::History),
            256 << 20,
        )
        .map_err(|e| e.to_string())
        .and_then(|b| History::from_bytes(&b).map_err(|e| e.to_string()))
        .and_then(|h| h.consistency().map_err(|e| e.to_string()))
        {
            Ok(problems) => r.problems.extend(
                problems
                    .into_iter()
                    .map(|p| format!("history database: {p}")),
            ),
            Err(e) => r.problems.push(format!("history database: {e}")),
        }
    }
    if let Some(y) = m.reflog {
        match source.fetch(reflog::PATH, 1 << 30) {
            Ok(bytes) if y.algo.digest(&bytes) == y => {
                let named = [
                    (Some(m.root_catalog), RefType::Catalog, "root catalog"),
                    (m.certificate, RefType::Certificate, "certificate"),
                    (m.history, RefType::History, "history"),
                    (m.meta_info, RefType::MetaInfo, "meta-info"),
                ];
                match reflog::Reflog::from_bytes(&bytes) {
                    Ok(log) => {
                        for (hash, kind, what) in named {
                            let Some(hash) = hash else { continue };
                            match log.contains(&hash, kind) {
                                Ok(true) => {}
                                Ok(false) => r.problems.push(format!(
                                    "{}: does not list the manifest's {what} {hash}",
                                    reflog::PATH
                                )),
                                Err(e) => r.problems.push(format!("{}: {e}", reflog::PATH)),
                            }
                        }
                    }
                    Err(e) => r.problems.push(format!("{}: {e}", reflog::PATH)),
                }
            }
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
    check_catalog(repo, &root, None, &mut seen, &mut r);
    r
}

/// Checks one catalog and those below it; returns the counters of all it holds, if readable.
fn check_catalog(
    repo: &Repository,
    n: &NestedRef,
    transition_point: Option<&Entry>,
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
    let (content, stats, root_rowid) = {
        let db = db.lock().expect("catalog");
        match (
            CatalogContent::load(&db),
            db.statistics(),
            db.rowid_of(PathKey::of(&n.path)),
        ) {
            (Ok(c), Ok(s), Ok(id)) => (c, s, id),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
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
                && row.entry.flags & crate::cvmfs::catalog::schema::flags::NESTED_ROOT == 0
            {
                r.problems
                    .push(at("root entry is not flagged as a nested catalog root"));
            }
        }
        _ => r.problems.push(at("has no root directory entry")),
    }
    r.problems.extend(
        rules::catalog_problems(&rules::CatalogFacts {
            content: &content,
            root_rowid,
            transition_point,
        })
        .into_iter()
        .map(|p| at(&p)),
    );
    let mut chunk_owner: HashMap<PathKey, u64> = HashMap::new();
    for row in content.rows.values() {
        r.entries += 1;
        let e = &row.entry;
        let name = String::from_utf8_lossy(&e.name);
        if e.kind() != crate::cvmfs::catalog::EntryKind::File {
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
        }
    }
    for (key, size) in chunk_owner {
        let chunks = content.chunks.get(&key).cloned().unwrap_or_default();
        // The readers' rule: the list covers the file exactly.
        if let Err(why) = super::snapshot::covers(&chunks, size) {
            r.problems
                .push(at(&format!("chunks of {}: {why}", key.md5_hex())));
        }
        for c in &chunks {
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
        let mountpoint = content
            .rows
            .get(&PathKey::of(&child.path))
            .map(|row| &row.entry);
        if let Some(c) = check_catalog(repo, child, mountpoint, seen, r) {
            below.plus(&c);
        }
    }
    for f in crate::cvmfs::catalog::counters::FIELDS {
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
