//! `lazyroot ingest`: images from registries, OCI layouts and docker archives into a
//! repository, all of one call in one signed revision. Each new image's layers are read
//! once, in order, onto an in-memory tree whose files go straight into objects; the image
//! directory ([`super::names`]) and the links of every registry the call touches are
//! grafted, and the revision committed. An unchanged image publishes nothing; a moved tag
//! changes only its link. With a wishlist, a reference that fails is reported and the
//! others are published; a prune removes the names no wish gives and the images no name
//! leads to, in the same revision.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::cvmfs::catalog::EntryKind;
use crate::publish::content::{store_whole, FileContent};
use crate::publish::walk::{Meta, Node, NodeKind};
use crate::publish::{self, NoProgress, PublishError, PublishOptions, TreeGraft};
use crate::repository::local::LocalStore;
use crate::repository::Snapshot;

use super::layer::{read_layer, Compression, LayerError, ReadLimits, Tree};
use super::meta::ImageMeta;
use super::names::{self, Version};
use super::reference::{Reference, ReferenceError};
use super::seen::SeenLayers;
use super::source::{self, Platform, ResolvedImage, SourceOptions};
use super::wishlist::{self, Keep, Wish};
use super::IngestError;

/// What to ingest, and where.
pub struct IngestOptions {
    /// The repository directory (as for `publish`).
    pub repo: PathBuf,
    /// Its keys directory.
    pub keys: PathBuf,
    /// The images: registry references, `oci:DIR[:tag]`, `docker-archive:FILE[:ref]`.
    pub references: Vec<String>,
    /// Repository directory the images and their names go under: `""` or `/a/b`.
    pub prefix: String,
    /// The platform picked from multi-platform images.
    pub platform: Platform,
    /// How sources are reached (credentials, CAs, insecure registries, timeouts).
    pub source: SourceOptions,
    /// Bounds on what one layer may hold.
    pub limits: ReadLimits,
    /// Wishlist lines, ingested after `references` (a tag glob becomes every matching
    /// tag).
    pub wishes: Vec<Wish>,
    /// A reference that fails is reported in [`IngestReport::failed`] and the others are
    /// published (else the first failure fails the call and nothing is published).
    pub keep_going: bool,
    /// Removes the names (links into the image directories) under the prefix that neither
    /// `references` nor `wishes` give, and the images no remaining name leads to.
    pub prune: bool,
}

/// What happened to one reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new image: its layers were applied and its directory published.
    New,
    /// The image was in the repository already; only its name now points at it.
    Relinked,
    /// The name already pointed at this image: nothing to publish.
    Unchanged,
}

/// One reference's result.
#[derive(Debug, Clone)]
pub struct ImageReport {
    /// The reference as given.
    pub reference: String,
    /// Its name in the repository (the link).
    pub link: String,
    /// Its manifest digest.
    pub manifest_digest: String,
    /// What was done.
    pub outcome: Outcome,
}

/// A reference that could not be ingested (with [`IngestOptions::keep_going`]).
#[derive(Debug)]
pub struct Failure {
    /// The reference or wishlist line.
    pub reference: String,
    /// Why.
    pub error: IngestRunError,
}

/// What one `ingest` call did.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// One per reference, in order.
    pub images: Vec<ImageReport>,
    /// Layers downloaded and read.
    pub layers_fetched: u64,
    /// Layers applied from the layer cache, neither downloaded nor read.
    pub layers_reused: u64,
    /// Compressed bytes read from sources.
    pub bytes_downloaded: u64,
    /// Objects written new.
    pub objects_written: u64,
    /// Objects that were in the repository already.
    pub objects_reused: u64,
    /// The references that failed; the others were published.
    pub failed: Vec<Failure>,
    /// What a prune removed: links, then image directories.
    pub pruned: Vec<String>,
    /// The revision published, if any.
    pub revision: Option<u64>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Why an ingest failed; nothing of it is published.
#[derive(Debug, thiserror::Error)]
pub enum IngestRunError {
    /// A reference that cannot be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Reading the image from its source failed.
    #[error(transparent)]
    Source(#[from] IngestError),
    /// A layer was refused.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Storing or publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The image's metadata could not be stored.
    #[error("storing the metadata of {reference}: {source}")]
    Meta {
        /// The reference.
        reference: String,
        /// Why.
        source: crate::publish::content::ContentError,
    },
    /// A wishlist line could not be read.
    #[error(transparent)]
    Wishlist(#[from] wishlist::WishlistError),
    /// A registry directory holds something ingest did not make: rebuilding its names
    /// would drop it.
    #[error("{path} is not a name ingest made, in a registry directory ingest rebuilds; move it out of the way")]
    Foreign {
        /// The repository path.
        path: String,
    },
    /// Two references of one call give one name to two different images.
    #[error("{link} is the name {other} already gets in this call, for another image")]
    SameName {
        /// The name.
        link: String,
        /// The reference that got it first.
        other: String,
    },
    /// A prune with nothing to keep would remove every image.
    #[error("--prune with an empty wishlist would remove every image under {prefix:?}; refused")]
    PruneEverything {
        /// The prefix.
        prefix: String,
    },
    /// The layer count and the config's `diff_ids` disagree (checked by the source too).
    #[error("{reference}: {layers} layers but {diff_ids} diff_ids in the config")]
    LayerCount {
        /// The reference.
        reference: String,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
}

/// An image resolved and placed: where it goes and what names it.
struct Placed {
    reference: String,
    resolved: ResolvedImage,
    image_dir: String,
    link: String,
    registry_dir: String,
    source: Box<dyn source::ImageSource>,
}

/// Ingests every reference of `opts` into one new revision (none if nothing changed).
/// Resolving (the network's part) happens before the publisher lock is taken.
pub fn ingest(opts: &IngestOptions) -> Result<IngestReport, IngestRunError> {
    let started = Instant::now();
    if opts.prune && opts.references.is_empty() && opts.wishes.is_empty() {
        return Err(IngestRunError::PruneEverything {
            prefix: opts.prefix.clone(),
        });
    }
    let mut failures = Failures {
        keep_going: opts.keep_going,
        failed: Vec::new(),
    };
    let mut references = opts.references.clone();
    for w in &opts.wishes {
        match wishlist::expand(w, &opts.source) {
            Ok(r) => references.extend(r),
            Err(e) => failures.add(&w.text, e.into())?,
        }
    }
    let mut placed: Vec<Placed> = Vec::new();
    for r in &references {
        if placed.iter().any(|p| p.reference == *r) {
            continue;
        }
        let p = place(r, opts).and_then(|p| {
            // One name cannot lead to two images: the second would be published unnamed.
            match placed
                .iter()
                .find(|q| q.link == p.link && q.image_dir != p.image_dir)
            {
                Some(q) => Err(IngestRunError::SameName {
                    link: p.link.clone(),
                    other: q.reference.clone(),
                }),
                None => Ok(p),
            }
        });
        match p {
            Ok(p) => placed.push(p),
            Err(e) => failures.add(r, e)?,
        }
    }
    let keep = opts.prune.then(|| {
        let given: Vec<Reference> = opts
            .references
            .iter()
            .filter_map(|r| Reference::parse(r).ok())
            .collect();
        Keep::new(&opts.prefix, &opts.wishes, &given)
    });
    let mut report = publish::transaction(&opts.repo, |store| {
        publish_all(store, opts, placed, keep.as_ref(), &mut failures)
    })?;
    report.failed = failures.failed;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The failures of one call: kept with `keep_going`, else the first one fails it.
struct Failures {
    keep_going: bool,
    failed: Vec<Failure>,
}

impl Failures {
    fn add(&mut self, reference: &str, error: IngestRunError) -> Result<(), IngestRunError> {
        if !self.keep_going {
            return Err(error);
        }
        tracing::warn!("{reference}: {error}");
        self.failed.push(Failure {
            reference: reference.to_string(),
            error,
        });
        Ok(())
    }
}

/// The link that names the image `r` under `prefix`.
pub fn link_of(prefix: &str, r: &Reference) -> String {
    let (registry, repository, version) = name_of(r);
    names::link_path(prefix, &registry, &repository, &version)
}

/// Resolves `reference` to its platform's manifest and its place in the repository.
fn place(reference: &str, opts: &IngestOptions) -> Result<Placed, IngestRunError> {
    let parsed = Reference::parse(reference)?;
    let source = source::open(&parsed, &opts.source)?;
    let resolved = source.resolve(&opts.platform)?;
    if resolved.layers.len() != resolved.diff_ids.len() {
        return Err(IngestRunError::LayerCount {
            reference: reference.into(),
            layers: resolved.layers.len(),
            diff_ids: resolved.diff_ids.len(),
        });
    }
    let (registry, repository, version) = name_of(&parsed);
    let link = names::link_path(&opts.prefix, &registry, &repository, &version);
    Ok(Placed {
        reference: reference.into(),
        image_dir: names::image_dir(&opts.prefix, &resolved.manifest_digest.hex),
        registry_dir: format!("{}/{registry}", opts.prefix),
        link,
        resolved,
        source,
    })
}

/// The name an image gets: a registry reference's own; `localhost/<directory or file
/// name>:<tag>` for a layout or an archive (an archive's own `RepoTags` name when one was
/// asked for).
fn name_of(r: &Reference) -> (String, String, Version) {
    let local = |path: &std::path::Path, tag: Option<&str>| {
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_else(|| "image".into());
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        (
            "localhost".to_string(),
            base,
            Version::Tag(tag.unwrap_or("latest").to_string()),
        )
    };
    match r {
        Reference::Registry(rr) => {
            let version = match (&rr.tag, &rr.digest) {
                (Some(t), _) => Version::Tag(t.clone()),
                (None, Some(d)) => Version::Digest(d.to_string()),
                (None, None) => Version::Tag("latest".into()),
            };
            (rr.registry.clone(), rr.repository.clone(), version)
        }
        Reference::OciLayout { dir, tag } => local(dir, tag.as_deref()),
        Reference::DockerArchive { file, reference } => {
            match reference.as_deref().and_then(|s| Reference::parse(s).ok()) {
                Some(Reference::Registry(rr)) => name_of(&Reference::Registry(rr)),
                _ => local(file, None),
            }
        }
    }
}

/// Inside the publish transaction: what exists, the new images' trees, the links (and
/// with `keep`, what a prune removes), one commit.
fn publish_all(
    store: &LocalStore,
    opts: &IngestOptions,
    placed: Vec<Placed>,
    keep: Option<&Keep>,
    failures: &mut Failures,
) -> Result<IngestReport, IngestRunError> {
    let (repo, _) = publish::open_current(store, &opts.keys)?;
    let manifest = repo.manifest().clone();
    let snapshot = repo
        .snapshot_of(manifest.root_catalog, manifest.root_catalog_size)
        .map_err(PublishError::from)?;
    let spool = publish::spool_dir(&opts.repo);
    std::fs::create_dir_all(&spool).map_err(|e| PublishError::io("creating", &spool, e))?;
    let mut run = Run {
        store,
        opts,
        algo: manifest.hash_algo(),
        seen: SeenLayers::open(&spool.join("ingest-layers.sqlite")),
        report: IngestReport::default(),
        remembered: Vec::new(),
    };
    let mut trees: Vec<(String, Node, Vec<FileContent>)> = Vec::new();
    let mut links: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for p in placed {
        let flat = format!("{}/{}", p.image_dir, names::ROOTFS);
        // Two references to one image in one call: its tree is made once.
        let present =
            is_dir(&snapshot, &p.image_dir) || trees.iter().any(|(dir, _, _)| *dir == p.image_dir);
        let target = names::link_target(&p.link, &flat);
        let linked = symlink_of(&snapshot, &p.link).as_deref() == Some(target.as_str());
        let outcome = match (present, linked) {
            (true, true) => Outcome::Unchanged,
            (true, false) => Outcome::Relinked,
            (false, _) => Outcome::New,
        };
        if outcome == Outcome::New {
            match run.image_tree(&p) {
                Ok((image, contents)) => trees.push((p.image_dir.clone(), image, contents)),
                Err(e) => {
                    failures.add(&p.reference, e)?;
                    continue;
                }
            }
        }
        if outcome != Outcome::Unchanged {
            let rel = p.link[p.registry_dir.len() + 1..].to_string();
            links
                .entry(p.registry_dir.clone())
                .or_default()
                .insert(rel, target);
        }
        run.report.images.push(ImageReport {
            reference: p.reference,
            link: p.link,
            manifest_digest: p.resolved.manifest_digest.to_string(),
            outcome,
        });
    }
    let new_dirs: Vec<&str> = trees.iter().map(|(dir, _, _)| dir.as_str()).collect();
    let names = name_changes(&snapshot, &opts.prefix, &links, keep, &new_dirs)?;
    let mut removals = names.removals;
    let mut pruned = names.pruned;
    if keep.is_some() {
        let images = unnamed_images(&snapshot, &opts.prefix, &names.leads_to, &new_dirs);
        pruned.extend(images.iter().cloned());
        removals.extend(images);
    }
    let (heads, contents): (Vec<(String, Node)>, Vec<Vec<FileContent>>) = trees
        .into_iter()
        .map(|(dir, node, contents)| ((dir, node), contents))
        .unzip();
    let mut grafts: Vec<TreeGraft<'_>> = heads
        .into_iter()
        .zip(&contents)
        .map(|((dir, node), contents)| TreeGraft {
            target: dir.into_bytes(),
            root: node,
            contents,
        })
        .collect();
    for (dir, root) in names.trees {
        grafts.push(TreeGraft {
            target: dir.into_bytes(),
            root,
            contents: &[],
        });
    }
    let removals: Vec<Vec<u8>> = removals.into_iter().map(String::into_bytes).collect();
    let mut o = PublishOptions::new(&opts.repo, &opts.keys, std::path::Path::new("/nonexistent"));
    o.path = Vec::new();
    let published = publish::publish_trees(store, &o, grafts, &removals, &NoProgress)?;
    let mut report = run.report;
    report.pruned = pruned;
    report.revision = published.map(|r| r.revision);
    if report.revision.is_some() {
        for (diff, entries) in &run.remembered {
            if let Err(e) = run.seen.put(diff, entries) {
                tracing::warn!("layer cache: remembering {diff}: {e}");
            }
        }
    }
    Ok(report)
}

/// What one call carries from image to image.
struct Run<'a> {
    store: &'a LocalStore,
    opts: &'a IngestOptions,
    algo: crate::cvmfs::hash::HashAlgo,
    seen: SeenLayers,
    report: IngestReport,
    /// Layers read this call, remembered once the revision is committed.
    remembered: Vec<(String, super::layer::LayerEntries)>,
}

impl Run<'_> {
    /// A new image's directory: its layers applied in order (each from the layer cache or
    /// read from the source) and its metadata beside the root filesystem.
    fn image_tree(&mut self, p: &Placed) -> Result<(Node, Vec<FileContent>), IngestRunError> {
        let chunking = Some(crate::publish::chunker::ChunkSizes::default());
        let mut tree = Tree::new();
        for (layer, diff_id) in p.resolved.layers.iter().zip(&p.resolved.diff_ids) {
            let diff = diff_id.to_string();
            let entries = match self.seen.get(&diff, self.store) {
                Some(e) => {
                    self.report.layers_reused += 1;
                    e
                }
                None => {
                    let compression =
                        Compression::of(layer).map_err(|source| IngestError::Media {
                            reference: p.reference.clone(),
                            what: format!("layer {}", layer.digest),
                            source,
                        })?;
                    let blob = p.source.open_blob(layer)?;
                    let (entries, stats) = read_layer(
                        blob,
                        compression,
                        &layer.digest.to_string(),
                        Some(&diff),
                        self.store,
                        self.algo,
                        chunking,
                        &self.opts.limits,
                    )?;
                    self.report.layers_fetched += 1;
                    self.report.bytes_downloaded += layer.size;
                    self.report.objects_written += stats.objects_written;
                    self.report.objects_reused += stats.objects_reused;
                    self.remembered.push((diff.clone(), entries.clone()));
                    entries
                }
            };
            tree.apply(&entries)?;
        }
        let (rootfs, mut contents) = tree.into_publish(None);
        let bytes = meta_of(p).to_bytes();
        let stored = store_whole(
            &mut &bytes[..],
            bytes.len() as u64,
            self.store,
            self.algo,
            &NoProgress,
        )
        .map_err(|source| IngestRunError::Meta {
            reference: p.reference.clone(),
            source,
        })?;
        contents.push(stored.content);
        let image = image_node(rootfs, contents.len() - 1, bytes.len() as u64);
        Ok((image, contents))
    }
}

/// How the names change in this revision.
struct NameChanges {
    /// Registry directories to graft anew.
    trees: Vec<(String, Node)>,
    /// Registry directories left empty by a prune.
    removals: Vec<String>,
    /// Links a prune removed.
    pruned: Vec<String>,
    /// The image directories the names lead to afterwards (with a prune: all of them).
    leads_to: std::collections::BTreeSet<String>,
}

/// Each touched registry directory's names, rebuilt from the current revision plus the new
/// `links`; with `keep`, every registry directory under the prefix, less the links into
/// the image directories that no wish gives. A directory whose names did not change is
/// left as it is (so an unchanged wishlist publishes nothing).
fn name_changes(
    s: &Snapshot<'_>,
    prefix: &str,
    links: &BTreeMap<String, BTreeMap<String, String>>,
    keep: Option<&Keep>,
    new_dirs: &[&str],
) -> Result<NameChanges, IngestRunError> {
    let mut dirs: std::collections::BTreeSet<String> = links.keys().cloned().collect();
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
fn collect_targets(
    node: &Node,
    path: &str,
    flat_root: &str,
    out: &mut std::collections::BTreeSet<String>,
) {
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
fn unnamed_images(
    s: &Snapshot<'_>,
    prefix: &str,
    leads_to: &std::collections::BTreeSet<String>,
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

/// The metadata stored beside the image's root filesystem.
fn meta_of(p: &Placed) -> ImageMeta {
    let c = &p.resolved.config;
    let run = c.config.clone().unwrap_or_default();
    let platform = match &c.variant {
        Some(v) => format!("{}/{}/{v}", c.os, c.architecture),
        None => format!("{}/{}", c.os, c.architecture),
    };
    ImageMeta {
        source: p.resolved.reference.clone(),
        manifest_digest: p.resolved.manifest_digest.to_string(),
        config_digest: super::digest::Digest::sha256(&p.resolved.config_bytes).to_string(),
        platform,
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        env: run.env.unwrap_or_default(),
        working_dir: run.working_dir.unwrap_or_default(),
        user: run.user.unwrap_or_default(),
        labels: run.labels.unwrap_or_default(),
    }
}

/// A directory's metadata as ingest makes it: root's, 0755, at the epoch (so that the same
/// image always gives the same bytes).
fn dir_meta() -> Meta {
    Meta {
        mode: libc::S_IFDIR | 0o755,
        uid: 0,
        gid: 0,
        size: 4096,
        mtime: 0,
        mtime_ns: 0,
        ctime: 0,
        ctime_ns: 0,
        rdev: 0,
        dev: 0,
        ino: 0,
        nlink: 2,
    }
}

/// The image directory: `rootfs/` and `image.json` (content `meta`).
fn image_node(mut rootfs: Node, meta: usize, meta_size: u64) -> Node {
    rootfs.name = names::ROOTFS.as_bytes().to_vec();
    let json = Node {
        name: names::META.as_bytes().to_vec(),
        meta: Meta {
            mode: libc::S_IFREG | 0o644,
            size: meta_size,
            nlink: 1,
            ..dir_meta()
        },
        xattrs: None,
        kind: NodeKind::File(meta),
    };
    let mut children = vec![json, rootfs];
    children.sort_by(|a, b| a.name.cmp(&b.name));
    Node {
        name: Vec::new(),
        meta: dir_meta(),
        xattrs: None,
        kind: NodeKind::Dir(children),
    }
}

fn is_dir(s: &Snapshot<'_>, path: &str) -> bool {
    matches!(s.lookup(path.as_bytes()), Ok(Some(f)) if f.entry.kind() == EntryKind::Directory)
}

fn symlink_of(s: &Snapshot<'_>, path: &str) -> Option<String> {
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
