//! Placing a newly built subtree catalog at `--path P` inside the previous revision, or
//! removing what is at P: only the catalogs on the way from the root to P are rewritten;
//! every other catalog, and so every other image in the repository, is kept byte for
//! byte.

use crate::cvmfs::catalog::schema::flags;
use crate::cvmfs::catalog::writer::CatalogProperties;
use crate::cvmfs::catalog::{CatalogContent, Counters, NestedRef, Row};
use crate::cvmfs::hash::PathKey;
use crate::repository::path::{is_within, parent};

use super::build::{dir_entry, shown, BuildCtx, Built};
use super::conform;
use super::walk::Meta;
use super::PublishError;

/// A built subtree and where it goes in the previous revision.
pub struct Graft<'a> {
    /// Where the new subtree goes.
    pub path: &'a [u8],
    /// The subtree's catalog, built with `path` as its mountpoint.
    pub subtree: Built,
    /// Metadata for directories that must be created on the way to `path`.
    pub dir_meta: Meta,
}

/// One change to the previous revision.
pub enum Edit<'a> {
    /// A new subtree in place of whatever was at its path.
    Put(&'a Graft<'a>),
    /// Whatever is at this path (not the root), gone, with every catalog below it.
    Remove(&'a [u8]),
}

impl Edit<'_> {
    fn path(&self) -> &[u8] {
        match self {
            Edit::Put(g) => g.path,
            Edit::Remove(p) => p,
        }
    }
}

/// Rewrites the catalog `r` (mounted at `r.path`) and those below it on the way to the
/// edited path; returns the new reference and the counters of all it holds.
pub fn graft_into(
    ctx: &mut BuildCtx<'_>,
    r: &NestedRef,
    edit: &Edit<'_>,
    ttl: Option<u64>,
) -> Result<(NestedRef, Counters), PublishError> {
    let path = edit.path();
    let mut content = ctx.old.load(r)?;
    // This catalog is rewritten anyway: it leaves as stock writes catalogs, whatever wrote
    // it before.
    conform::split_hardlink_groups(&mut content);
    if conform::needs_marker(&content) {
        let empty = ctx.empty_object()?;
        conform::add_marker(&mut content, empty, ctx.algo);
    }
    let via = content
        .nested
        .values()
        .find(|n| is_within(path, &n.path) && n.path != path)
        .cloned();
    // The nested catalog this rewrite replaced, with its new totals (none if removed).
    let replaced = match (via, edit) {
        (Some(child), _) => {
            let (new_ref, counters) = graft_into(ctx, &child, edit, None)?;
            content.nested.insert(child.path.clone(), new_ref);
            Some((child.path, counters))
        }
        (None, Edit::Put(g)) => {
            place(&mut content, g)?;
            Some((g.path.to_vec(), g.subtree.totals.clone()))
        }
        (None, Edit::Remove(p)) => {
            remove(&mut content, p)?;
            None
        }
    };
    // Counters: our own rows, and below them every nested catalog's totals.
    let own = Counters::of(&content);
    let mut below = Counters::default();
    for n in content.nested.values() {
        match &replaced {
            Some((path, totals)) if *path == n.path => below.plus(totals),
            _ => below.plus(&ctx.old.totals(n)?),
        }
    }
    let is_root = r.path.is_empty();
    let props = CatalogProperties {
        revision: ctx.revision,
        last_modified: ctx.now,
        previous_revision: Some(r.hash.to_hex()),
        ttl: if is_root { ttl } else { None },
    };
    let new_ref = ctx.write(&content, &props, &own, &below)?;
    let mut totals = own;
    totals.plus(&below);
    Ok((new_ref, totals))
}

/// Removes whatever was at the graft point and puts the new subtree's mountpoint there,
/// creating missing parent directories.
fn place(content: &mut CatalogContent, g: &Graft<'_>) -> Result<(), PublishError> {
    let target = g.path;
    for k in content.subtree_keys(PathKey::of(target)) {
        content.rows.remove(&k);
        content.chunks.remove(&k);
    }
    content.nested.retain(|p, _| !is_within(p, target));
    // Directories from this catalog's root down to the graft point's parent.
    let mut missing = Vec::new();
    let mut p = parent(target).to_vec();
    while p.len() > content.root_prefix.len() {
        match content.rows.get(&PathKey::of(&p)) {
            Some(row) if row.entry.is_dir() => break,
            Some(_) => return Err(PublishError::NotADirectoryInRepo(shown(&p))),
            None => missing.push(p.clone()),
        }
        p = parent(&p).to_vec();
    }
    for dir in missing.into_iter().rev() {
        let name = dir
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or_default()
            .to_vec();
        let e = dir_entry(&name, &g.dir_meta, None, 0, flags::DIR);
        let key = PathKey::of(&dir);
        content.rows.insert(
            key,
            Row {
                key,
                parent: PathKey::of(parent(&dir)),
                entry: e,
            },
        );
    }
    let mut mount = g.subtree.root_entry.clone();
    mount.flags = flags::DIR | flags::NESTED_MOUNTPOINT;
    let key = PathKey::of(target);
    content.rows.insert(
        key,
        Row {
            key,
            parent: PathKey::of(parent(target)),
            entry: mount,
        },
    );
    content
        .nested
        .insert(target.to_vec(), g.subtree.nested.clone());
    fix_link_counts(content);
    Ok(())
}

/// Removes the entry at `target` and everything below it from the catalog that holds it
/// (nested catalogs below it are dropped from the references, so they are no longer part
/// of the revision; their objects stay for garbage collection).
fn remove(content: &mut CatalogContent, target: &[u8]) -> Result<(), PublishError> {
    if target.is_empty() {
        return Err(PublishError::Invalid(
            "the repository root cannot be removed".into(),
        ));
    }
    let keys = content.subtree_keys(PathKey::of(target));
    if keys.is_empty() {
        return Err(PublishError::Invalid(format!(
            "{}: nothing there to remove",
            shown(target)
        )));
    }
    for k in keys {
        content.rows.remove(&k);
        content.chunks.remove(&k);
    }
    content.nested.retain(|p, _| !is_within(p, target));
    fix_link_counts(content);
    Ok(())
}

/// Directory link counts are 2 + subdirectories; recount those whose children live here
/// (a mountpoint's children live in its own catalog, so its count is left alone).
fn fix_link_counts(content: &mut CatalogContent) {
    let mut subdirs: std::collections::HashMap<PathKey, u64> = std::collections::HashMap::new();
    for r in content.rows.values() {
        if r.entry.is_dir() && r.key != r.parent {
            *subdirs.entry(r.parent).or_insert(0) += 1;
        }
    }
    for r in content.rows.values_mut() {
        if r.entry.is_dir() && !r.entry.is_nested_mountpoint() {
            r.entry.hardlinks = 2 + subdirs.get(&r.key).copied().unwrap_or(0);
        }
    }
}
