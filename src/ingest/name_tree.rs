//! The names of ingested images in one revision: each touched registry directory rebuilt
//! from the current revision plus the new links, and with a prune, the links no wish gives
//! and the images no name leads to worked out. Only names (directories and links) live
//! here; anything else found in a registry directory is refused, never dropped.

use std::collections::{BTreeMap, BTreeSet};

use crate::cvmfs::catalog::EntryKind;
use crate::publish::walk::{Meta, Node, NodeKind};
use crate::publish::PublishError;
use crate::repository::Snapshot;

use super::names;
use super::run::{dir_meta, IngestRunError};
use super::wishlist::Keep;

/// How the names change in this revision.
pub(super) struct NameChanges {
    /// Registry directories to graft anew.
    pub(super) trees: Vec<(String, Node)>,
    /// Registry directories left empty by a prune.
    pub(super) removals: Vec<String>,
    /// Links a prune removed.
    pub(super) pruned: Vec<String>,
    /// The image directories the names lead to afterwards (with a prune: all of them).
    pub(super) leads_to: BTreeSet<String>,
}

/// Each touched registry directory's names, rebuilt from the current revision plus the new
/// `links`; with `keep`, every registry directory under the prefix, less the links into
/// the image directories that no wish gives. A directory whose names did not change is
/// left as it is (so an unchanged wishlist publishes nothing).
pub(super) fn name_changes(
    s: &Snapshot<'_>,
    prefix: &str,
    links: &BTreeMap<String, BTreeMap<String, String>>,
    keep: Option<&Keep>,
    new_dirs: &[&str],
) -> Result<NameChanges, IngestRunError> {
    let mut dirs: BTreeSet<String> = links.keys().cloned().collect();
    if keep.is_some() {
        dirs.extend(registry_dirs(s, prefix));
    }
    let flat_root = format!("{prefix}/{}/", names::FLAT);
    let mut out = NameChanges {
        trees: Vec::new(),
        removals: Vec::new(),
        pruned: Vec::new(),
        leads_to: Default::default(),
    };
    for dir in dirs {
        let exists = is_dir(s, &dir);
        let mut root = if exists {
            match existing_names(s, &dir) {
                Ok(root) => root,
                // A directory only a prune looks at, holding what ingest did not make and
                // no name of ingest's, is the repository's own (`/data.d`): left alone.
                Err(IngestRunError::Foreign { .. })
                    if !links.contains_key(&dir) && !holds_ingest_link(s, &dir, &flat_root, 0) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        } else {
            Node {
                name: Vec::new(),
                meta: dir_meta(),
                xattrs: None,
                kind: NodeKind::Dir(Vec::new()),
            }
        };
        let new = links.get(&dir);
        for (rel, target) in new.into_iter().flatten() {
            put_link(&mut root, rel, target);
        }
        let before = out.pruned.len();
        if let Some(keep) = keep {
            prune_links(&mut root, &dir, &flat_root, keep, &mut out.pruned);
        }
        collect_targets(&root, &dir, &flat_root, &mut out.leads_to);
        if new.is_none() && out.pruned.len() == before {
            continue;
        }
        match &root.kind {
            NodeKind::Dir(children) if children.is_empty() => {
                if exists {
                    out.removals.push(dir);
                }
            }
            _ => out.trees.push((dir, root)),
        }
    }
    // A new image is led to by the link made for it.
    out.leads_to.extend(new_dirs.iter().map(|d| d.to_string()));
    Ok(out)
}

/// The registry directories under `prefix`: names a registry component can have (with a
/// `.` or a `:`, or `localhost`), so that other directories of the repository are never
/// taken for ingest's.
fn registry_dirs(s: &Snapshot<'_>, prefix: &str) -> Vec<String> {
    let at = if prefix.is_empty() { "" } else { prefix };
    s.list(at.as_bytes())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.entry.kind() == EntryKind::Directory)
        .map(|f| String::from_utf8_lossy(&f.entry.name).into_owned())
        .filter(|n| !n.starts_with('.') && (n.contains('.') || n.contains(':') || n == "localhost"))
        .map(|n| format!("{prefix}/{n}"))
        .collect()
}

/// Whether any link below `dir` leads into an image under `flat_root` (and so would keep
/// it); a tree too deep to be names counts as holding one.
fn holds_ingest_link(s: &Snapshot<'_>, dir: &str, flat_root: &str, depth: usize) -> bool {
    if depth > 256 {
        return true;
    }
    s.list(dir.as_bytes()).unwrap_or_default().iter().any(|f| {
        let child = format!("{dir}/{}", String::from_utf8_lossy(&f.entry.name));
        match f.entry.kind() {
            EntryKind::Symlink => image_under_link(&child, &f.entry.symlink, flat_root).is_some(),
            EntryKind::Directory => holds_ingest_link(s, &child, flat_root, depth + 1),
            _ => false,
        }
    })
}

/// The image directory a link at `path` to `target` leads to, if it leads into
/// `flat_root` (`<prefix>/.flat/`) as ingest's links do.
fn image_of_link(path: &str, target: &[u8], flat_root: &str) -> Option<String> {
    let to = names::resolve_link(path, std::str::from_utf8(target).ok()?)?;
    let dir = to.strip_suffix(&format!("/{}", names::ROOTFS))?;
    dir.starts_with(flat_root).then(|| dir.to_string())
}

/// The image directory (`<flat_root><2>/<hex>`) a link at `path` to `target` leads into,
/// anywhere inside it: what keeps an image, whether or not the link is ingest's.
fn image_under_link(path: &str, target: &[u8], flat_root: &str) -> Option<String> {
    let to = names::resolve_link(path, std::str::from_utf8(target).ok()?)?;
    let mut rest = to.strip_prefix(flat_root)?.split('/');
    let (two, hex) = (rest.next()?, rest.next()?);
    (!two.is_empty() && !hex.is_empty()).then(|| format!("{flat_root}{two}/{hex}"))
}

/// Removes the links below `node` (at repository path `path`) that lead into the image
/// directories and that `keep` does not keep, then the directories left empty.
fn prune_links(node: &mut Node, path: &str, flat_root: &str, keep: &Keep, out: &mut Vec<String>) {
    let NodeKind::Dir(children) = &mut node.kind else {
        return;
    };
    children.retain_mut(|c| {
        let child = format!("{path}/{}", String::from_utf8_lossy(&c.name));
        match &c.kind {
            NodeKind::Symlink(target) => {
                let ours = image_of_link(&child, target, flat_root).is_some();
                if ours && !keep.keeps(&child) {
                    out.push(child);
                    return false;
                }
                true
            }
            NodeKind::Dir(g) => {
                // Only a directory this prune empties goes (an empty one is not ingest's).
                if g.is_empty() {
                    return true;
                }
                prune_links(c, &child, flat_root, keep, out);
                !matches!(&c.kind, NodeKind::Dir(g) if g.is_empty())
            }
            _ => true,
        }
    });
}

/// The image directories the links below `node` lead to.
fn collect_targets(node: &Node, path: &str, flat_root: &str, out: &mut BTreeSet<String>) {
    let NodeKind::Dir(children) = &node.kind else {
        return;
    };
    for c in children {
        let child = format!("{path}/{}", String::from_utf8_lossy(&c.name));
        match &c.kind {
            NodeKind::Symlink(target) => {
                if let Some(dir) = image_under_link(&child, target, flat_root) {
                    out.insert(dir);
                }
            }
            NodeKind::Dir(_) => collect_targets(c, &child, flat_root, out),
            _ => {}
        }
    }
}

/// The image directories under `<prefix>/.flat` that no name leads to: each one, or its
/// whole `<2 hex>` directory when nothing there stays and no new image goes there.
pub(super) fn unnamed_images(
    s: &Snapshot<'_>,
    prefix: &str,
    leads_to: &BTreeSet<String>,
    new_dirs: &[&str],
) -> Vec<String> {
    let flat = format!("{prefix}/{}", names::FLAT);
    let mut out = Vec::new();
    let dirs = |p: &str| -> Vec<String> {
        s.list(p.as_bytes())
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f.entry.kind() == EntryKind::Directory)
            .map(|f| format!("{p}/{}", String::from_utf8_lossy(&f.entry.name)))
            .collect()
    };
    for two in dirs(&flat) {
        let images = dirs(&two);
        let gone: Vec<String> = images
            .iter()
            .filter(|d| !leads_to.contains(*d))
            .cloned()
            .collect();
        let arriving = new_dirs.iter().any(|d| d.starts_with(&format!("{two}/")));
        if !gone.is_empty() && gone.len() == images.len() && !arriving {
            out.push(two);
        } else {
            out.extend(gone);
        }
    }
    out
}

pub(super) fn is_dir(s: &Snapshot<'_>, path: &str) -> bool {
    matches!(s.lookup(path.as_bytes()), Ok(Some(f)) if f.entry.kind() == EntryKind::Directory)
}

pub(super) fn symlink_of(s: &Snapshot<'_>, path: &str) -> Option<String> {
    match s.lookup(path.as_bytes()) {
        Ok(Some(f)) if f.entry.kind() == EntryKind::Symlink => {
            Some(String::from_utf8_lossy(&f.entry.symlink).into_owned())
        }
        _ => None,
    }
}

/// The names under `dir` in the current revision: directories and links, kept as they
/// are. Anything else there is not ingest's and is refused rather than dropped.
fn existing_names(s: &Snapshot<'_>, dir: &str) -> Result<Node, IngestRunError> {
    fn walk(
        s: &Snapshot<'_>,
        path: &str,
        meta: Meta,
        name: Vec<u8>,
        depth: usize,
    ) -> Result<Node, IngestRunError> {
        let mut children = Vec::new();
        // A repository name has at most 128 components; anything deeper is not a name
        // ingest made, and is refused rather than silently cut off in the rebuild.
        if depth > 256 {
            return Err(IngestRunError::Foreign {
                path: path.to_string(),
            });
        }
        // A catalog that fails to load must fail the call: rebuilt from nothing, the
        // directory would lose every name it holds.
        let listed = s.list(path.as_bytes()).map_err(PublishError::from)?;
        for f in listed {
            let e = &f.entry;
            let child = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            let m = Meta {
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size: e.size,
                mtime: e.mtime,
                mtime_ns: e.mtime_ns.unwrap_or(0),
                nlink: 1,
                ..dir_meta()
            };
            match e.kind() {
                EntryKind::Directory => {
                    children.push(walk(s, &child, m, e.name.clone(), depth + 1)?)
                }
                EntryKind::Symlink => children.push(Node {
                    name: e.name.clone(),
                    meta: m,
                    xattrs: None,
                    kind: NodeKind::Symlink(e.symlink.clone()),
                }),
                // The marker of a nested catalog is made anew by the publisher.
                _ if e.name == b".cvmfscatalog" => {}
                _ => return Err(IngestRunError::Foreign { path: child }),
            }
        }
        children.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Node {
            name,
            meta,
            xattrs: None,
            kind: NodeKind::Dir(children),
        })
    }
    let meta = match s.lookup(dir.as_bytes()) {
        Ok(Some(f)) if f.entry.kind() == EntryKind::Directory => Meta {
            mode: f.entry.mode,
            mtime: f.entry.mtime,
            ..dir_meta()
        },
        _ => dir_meta(),
    };
    walk(s, dir, meta, Vec::new(), 0)
}

/// Puts (or replaces) the link `rel` (a path below the tree's root) to `target`.
fn put_link(root: &mut Node, rel: &str, target: &str) {
    let mut parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    let Some(leaf) = parts.pop() else { return };
    let mut at = root;
    for part in parts {
        let NodeKind::Dir(children) = &mut at.kind else {
            return;
        };
        let i = match children.iter().position(|c| c.name == part.as_bytes()) {
            Some(i) if matches!(children[i].kind, NodeKind::Dir(_)) => i,
            found => {
                // A link where a directory must go is replaced by the directory.
                if let Some(i) = found {
                    children.remove(i);
                }
                children.push(Node {
                    name: part.as_bytes().to_vec(),
                    meta: dir_meta(),
                    xattrs: None,
                    kind: NodeKind::Dir(Vec::new()),
                });
                children.sort_by(|a, b| a.name.cmp(&b.name));
                children
                    .iter()
                    .position(|c| c.name == part.as_bytes())
                    .expect("just added")
            }
        };
        at = &mut children[i];
    }
    let NodeKind::Dir(children) = &mut at.kind else {
        return;
    };
    children.retain(|c| c.name != leaf.as_bytes());
    children.push(Node {
        name: leaf.as_bytes().to_vec(),
        meta: Meta {
            mode: libc::S_IFLNK | 0o777,
            size: target.len() as u64,
            nlink: 1,
            ..dir_meta()
        },
        xattrs: None,
        kind: NodeKind::Symlink(target.as_bytes().to_vec()),
    });
    children.sort_by(|a, b| a.name.cmp(&b.name));
}
