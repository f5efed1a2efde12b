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

use crate::publish::content::{store_whole, FileContent};
use crate::publish::walk::{Meta, Node, NodeKind};
use crate::publish::{self, NoProgress, PublishError, PublishOptions, TreeGraft};
use crate::repository::local::LocalStore;

use super::layer::{read_layer, Compression, LayerError, ReadLimits, Tree};
use super::meta::ImageMeta;
use super::name_tree::{is_dir, name_changes, symlink_of, unnamed_images};
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
pub(super) fn dir_meta() -> Meta {
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
