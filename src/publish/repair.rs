//! `lazyroot repair`: rewrites the catalogs of the current revision that an earlier
//! lazyroot wrote differently from stock CernVM-FS (see [`super::conform`]: the root entry
//! not in row 1, hard-link groups across directories, nested catalogs without a
//! `.cvmfscatalog` marker) and signs the result as the next revision. The tree stays the
//! same: no source is read, no file object is written but the empty marker's.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use crate::cvmfs::catalog::writer::CatalogProperties;
use crate::cvmfs::catalog::{Counters, NestedRef};
use crate::cvmfs::history::{TRUNK, TRUNK_PREVIOUS};
use crate::cvmfs::timefmt;
use crate::repository::local::LocalStore;

use super::build::{BuildCtx, OldCatalogs};
use super::{commit, conform, lock, old, open_current, signing_keys, PublishError};

/// What a repair did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    /// The revision signed, or `None` when every catalog already was as stock writes it.
    pub revision: Option<u64>,
    /// Catalogs examined.
    pub catalogs: u64,
    /// Catalogs written anew.
    pub catalogs_rewritten: u64,
    /// Entries whose hard-link group was split per directory.
    pub links_split: u64,
    /// Markers added to nested catalogs.
    pub markers_added: u64,
    /// Tags moved to the repaired root (they named the current one).
    pub tags_moved: Vec<String>,
    /// Tags that name older revisions, whose catalogs stay as they were.
    pub tags_left: Vec<String>,
    /// Wall time of the repair.
    pub seconds: f64,
}

/// Repairs the current revision of the repository at `repo_dir`.
pub fn repair(repo_dir: &Path, keys_dir: &Path) -> Result<RepairReport, PublishError> {
    let started = Instant::now();
    let store = LocalStore::new(repo_dir);
    let _lock = lock(&store)?;
    let (repo, key_paths) = open_current(&store, keys_dir)?;
    let keys = signing_keys(&repo, &key_paths)?;
    let m = repo.manifest().clone();
    let old = old::OldRevision::new(&repo);
    let no_roots = HashSet::new();
    let now = timefmt::now();
    let mut ctx = BuildCtx::new(
        &store,
        m.hash_algo(),
        m.revision + 1,
        now,
        m.ttl,
        &no_roots,
        &old,
    );
    let mut report = RepairReport {
        revision: None,
        catalogs: 0,
        catalogs_rewritten: 0,
        links_split: 0,
        markers_added: 0,
        tags_moved: Vec::new(),
        tags_left: Vec::new(),
        seconds: 0.0,
    };
    let root = NestedRef {
        path: Vec::new(),
        hash: m.root_catalog,
        size: m.root_catalog_size,
    };
    let (new_root, _, changed) = rewrite(&mut ctx, &old, &root, &mut report)?;
    if changed {
        let history = repo.history()?;
        let mut tags = Vec::new();
        if let Some(h) = &history {
            for t in h.tags()? {
                if t.name == TRUNK || t.name == TRUNK_PREVIOUS {
                    continue;
                }
                if t.root_hash == m.root_catalog {
                    report.tags_moved.push(t.name.clone());
                    tags.push((t.name, t.description));
                } else {
                    report.tags_left.push(t.name);
                }
            }
        }
        commit::commit(commit::CommitInput {
            store: &store,
            keys: &keys,
            fqrn: &m.fqrn,
            algo: ctx.algo,
            root: &new_root,
            revision: ctx.revision,
            now,
            ttl: m.ttl,
            old_manifest: Some(&m),
            history,
            tags,
            move_trunk: true,
        })?;
        report.revision = Some(ctx.revision);
    }
    report.catalogs_rewritten = ctx.written;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Rewrites `r` if it or a catalog below it breaks stock's rules; returns its (new)
/// reference, the counters of all it holds, and whether it changed.
fn rewrite(
    ctx: &mut BuildCtx<'_>,
    old: &old::OldRevision<'_>,
    r: &NestedRef,
    report: &mut RepairReport,
) -> Result<(NestedRef, Counters, bool), PublishError> {
    report.catalogs += 1;
    let mut content = old.load(r)?;
    let mut below = Counters::default();
    let mut changed = false;
    for child in content.nested.values().cloned().collect::<Vec<_>>() {
        let (new_child, totals, child_changed) = rewrite(ctx, old, &child, report)?;
        below.plus(&totals);
        if child_changed {
            content.nested.insert(child.path.clone(), new_child);
            changed = true;
        }
    }
    let split = conform::split_hardlink_groups(&mut content);
    report.links_split += split;
    changed |= split > 0;
    if conform::needs_marker(&content) {
        let empty = ctx.empty_object()?;
        conform::add_marker(&mut content, empty, ctx.algo);
        report.markers_added += 1;
        changed = true;
    }
    changed |= !old.root_is_first_row(r)?;
    let own = Counters::of(&content);
    let mut totals = own.clone();
    totals.plus(&below);
    if !changed {
        return Ok((r.clone(), totals, false));
    }
    let is_root = r.path.is_empty();
    let props = CatalogProperties {
        revision: ctx.revision,
        last_modified: ctx.now,
        previous_revision: Some(r.hash.to_hex()),
        ttl: is_root.then_some(ctx.ttl),
    };
    let new_ref = ctx.write(&content, &props, &own, &below)?;
    Ok((new_ref, totals, true))
}
