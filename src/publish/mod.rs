//! The write side: a directory tree becomes the next revision of a repository.
//!
//! Order of work: take the publisher lock, verify the previous revision, walk the source,
//! turn files into objects (in parallel, reusing unchanged ones), cut the tree into
//! catalogs, write them children first (keeping unchanged ones), graft under `--path`,
//! then history, reflog, sync, and the signed manifest last.

pub mod build;
pub mod chunker;
pub mod commit;
pub mod conform;
pub mod content;
pub mod graft;
pub mod index;
pub mod lifecycle;
pub mod old;
pub mod partition;
pub mod repair;
pub mod undo;
pub mod walk;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use chunker::ChunkSizes;
pub use partition::AutoCatalogs;

use crate::cvmfs::catalog::NestedRef;
use crate::cvmfs::hash::HashAlgo;
use crate::cvmfs::history::HistoryError;
use crate::cvmfs::keys::{KeyPaths, KeysError, SigningKeys};
use crate::cvmfs::manifest::ManifestError;
use crate::cvmfs::reflog::ReflogError;
use crate::cvmfs::timefmt;
use crate::cvmfs::whitelist::WhitelistError;
use crate::repository::local::LocalStore;
use crate::repository::source::IoError;
use crate::repository::{path::BadPath, RepoError, Repository, Trust, MANIFEST_PATH};

/// Why a publish, `mkfs`, `resign`, tag edit or repair failed. The manifest is written last,
/// so a failed publish leaves the previous revision current.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A filesystem operation on the source, the spool or the repository failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The publish source is not a directory (as `lstat` sees it, so not a symlink to one).
    #[error("source {0} is not a directory")]
    NotADirectory(PathBuf),
    /// Something on the way to `--path` in the previous revision is not a directory, so the
    /// subtree cannot be placed below it.
    #[error("cannot publish there: {0} is not a directory in the repository")]
    NotADirectoryInRepo(String),
    /// A source entry disappeared between the walk and reading it.
    #[error("{0} vanished during publish; nothing was committed, publish again")]
    Vanished(PathBuf),
    /// A source file's size, mtime or inode changed between the walk and its read (or it became
    /// a symlink): its content would not match the metadata already taken.
    #[error(
        "{0} changed during publish; nothing was committed, publish again once writers are done"
    )]
    Changed(PathBuf),
    /// The source nests directories deeper than the limit ([`walk::MAX_DEPTH`]).
    #[error("{0} is more than {1} directories deep")]
    TooDeep(PathBuf, usize),
    /// A source path holds a NUL byte, so it cannot be passed to the xattr system calls.
    #[error("{0}: name contains a NUL byte")]
    BadName(PathBuf),
    /// Another publisher holds `data/txn/publish.lock`.
    #[error("another publisher holds the lock {0}; wait for it to finish")]
    Locked(PathBuf),
    /// The directory has no signed manifest (`.cvmfspublished`).
    #[error("{0} is not a repository (no {MANIFEST_PATH}); create one with `lazyroot mkfs`")]
    NotARepository(PathBuf),
    /// `mkfs` found a manifest already there; it never overwrites a repository.
    #[error("{0} already holds a repository")]
    AlreadyExists(PathBuf),
    /// The fqrn is not a valid repository name.
    #[error(transparent)]
    BadRepositoryName(#[from] crate::cvmfs::fqrn::FqrnError),
    /// Serializing a catalog into its SQLite database failed.
    #[error("catalog {0}")]
    Catalog(String),
    /// Opening or reading the current revision failed: it does not verify, an object is missing
    /// or corrupt, or a tag is unknown.
    #[error("previous revision: {0}")]
    Repo(#[from] RepoError),
    /// Loading or generating the master key, repository key or certificate failed.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// Reading or writing the history (named tags) database failed, or a tag name is invalid.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// Reading or writing the reflog failed.
    #[error(transparent)]
    Reflog(#[from] ReflogError),
    /// Parsing, verifying or signing a manifest failed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Signing the new whitelist failed.
    #[error(transparent)]
    Whitelist(#[from] WhitelistError),
    /// `--path` is not a valid repository path.
    #[error(transparent)]
    Path(#[from] BadPath),
    /// Options or keys that cannot work: invalid chunk sizes, or a certificate the whitelist
    /// does not list.
    #[error("{0}")]
    Invalid(String),
}

impl PublishError {
    /// An [`PublishError::Io`] for operation `op` ("reading", "opening", ...) on `path`.
    pub fn io(op: &'static str, path: &Path, e: std::io::Error) -> Self {
        PublishError::Io(IoError::new(op, path, e))
    }
}

/// Reports progress and lets tests act at precise moments.
pub trait Progress: Send + Sync {
    /// Total bytes of regular files about to be processed.
    fn start(&self, _total_bytes: u64) {}
    /// `n` more bytes of file content done: read, or reused from the publish index.
    fn bytes(&self, _n: u64) {}
    /// Called right before a source file is opened for reading.
    fn before_read(&self, _path: &Path) {}
    /// Called once content and catalogs are done, before the commit.
    fn finish(&self) {}
    /// A problem that does not stop the publish; logged as a warning by default.
    fn warn(&self, msg: &str) {
        tracing::warn!("{msg}");
    }
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What to publish and how; [`PublishOptions::new`] sets the defaults.
#[derive(Clone)]
pub struct PublishOptions {
    /// The repository directory (what a web server serves as `/cvmfs/<fqrn>`).
    pub repo: PathBuf,
    /// The directory with `<fqrn>.key`, `.crt`, `.pub`.
    pub keys: PathBuf,
    /// The directory tree to publish.
    pub source: PathBuf,
    /// Where in the repository the source goes ("" = replace the whole repository).
    pub path: Vec<u8>,
    /// A named tag to set on the new revision (besides `trunk`, which always moves).
    pub tag: Option<String>,
    /// Description stored with `tag` in the history database.
    pub tag_description: String,
    /// `None` disables chunking.
    pub chunking: Option<ChunkSizes>,
    /// Entry budget for automatic nested catalogs; `None` cuts only at `.cvmfscatalog` markers
    /// and `.cvmfsdirtab` patterns.
    pub auto_catalogs: Option<AutoCatalogs>,
    /// Seconds clients may cache the manifest and root catalog before looking for a newer
    /// revision (manifest `D`, root catalog `TTL`).
    pub ttl: u64,
    /// Re-read every file instead of trusting the publish index.
    pub full: bool,
    /// zlib level 0-9 of new objects (process-wide while publishing).
    pub compression_level: u32,
}

impl PublishOptions {
    /// Publishing `source` as the whole repository at `repo` with the keys in `keys`: default
    /// chunk sizes, no tag, no automatic catalogs, TTL 240 s, default zlib level, index used.
    pub fn new(
        repo: impl Into<PathBuf>,
        keys: impl Into<PathBuf>,
        source: impl Into<PathBuf>,
    ) -> Self {
        PublishOptions {
            repo: repo.into(),
            keys: keys.into(),
            source: source.into(),
            path: Vec::new(),
            tag: None,
            tag_description: String::new(),
            chunking: Some(ChunkSizes::default()),
            auto_catalogs: None,
            ttl: crate::cvmfs::catalog::schema::DEFAULT_TTL,
            full: false,
            compression_level: crate::cvmfs::object::DEFAULT_LEVEL,
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone)]
pub struct PublishReport {
    /// The revision number just signed.
    pub revision: u64,
    /// The new root catalog (the manifest's root hash and size).
    pub root: NestedRef,
    /// Source entries walked (directories, files, symlinks, special files), the root included.
    pub entries: u64,
    /// Regular files read, hashed and stored.
    pub files_read: u64,
    /// Total size in bytes of the files read.
    pub bytes_read: u64,
    /// Files unchanged since the last publish, taken from the publish index without reading.
    pub files_reused: u64,
    /// Catalogs written as new objects (the root catalog always is).
    pub catalogs_written: u64,
    /// Catalogs equal to the previous revision's at the same mountpoint, kept as they were.
    pub catalogs_kept: u64,
    /// Wall time of the whole publish.
    pub seconds: f64,
    /// Wall time of each phase: walk, content, catalogs, commit.
    pub phases: [f64; 4],
}

/// Where publisher-private state lives: inside the repository directory but outside what
/// readers ever request (`.cvmfs*` and `data/`).
pub fn spool_dir(repo: &Path) -> PathBuf {
    repo.join(".lazyroot")
}

/// Holds the publisher lock for as long as it lives.
pub struct PublishLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

/// Takes the publisher lock (`data/txn/publish.lock`) without waiting: another publisher
/// holding it is [`PublishError::Locked`].
pub fn lock(store: &LocalStore) -> Result<PublishLock, PublishError> {
    let f = store.lock_file()?;
    let path = store.root().join("data/txn/publish.lock");
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(PublishLock { _file: l }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(PublishError::Locked(path)),
        Err((_, e)) => Err(PublishError::io("locking", &path, e.into())),
    }
}

/// Opens the current revision with the repository's own master public key.
pub fn open_current(
    store: &LocalStore,
    keys_dir: &Path,
) -> Result<(Repository, KeyPaths), PublishError> {
    use crate::repository::source::ObjectSource;
    if !store.path_of(MANIFEST_PATH).exists() {
        return Err(PublishError::NotARepository(store.root().to_path_buf()));
    }
    let raw = store
        .fetch(MANIFEST_PATH, crate::cvmfs::letter::MAX_LETTER as u64)
        .map_err(RepoError::from)?;
    let (m, _) = crate::cvmfs::manifest::Manifest::parse_unverified(&raw)?;
    let paths = KeyPaths::new(keys_dir, &m.fqrn);
    let master =
        crate::cvmfs::keys::load_master_public(&paths.master_public()).map_err(KeysError::from)?;
    let trust = Trust {
        master_keys: vec![master],
        fqrn: Some(m.fqrn.clone()),
        now: timefmt::now(),
    };
    let repo = Repository::open(std::sync::Arc::new(store.clone()), &trust)?;
    Ok((repo, paths))
}

/// Loads the signing keys and makes sure the whitelist lists their certificate: a manifest
/// signed by any other key would be refused by every client.
pub fn signing_keys(repo: &Repository, paths: &KeyPaths) -> Result<SigningKeys, PublishError> {
    let keys = SigningKeys::load(paths)?;
    let fp = keys.certificate().fingerprint(repo.manifest().hash_algo());
    if !repo.whitelist().fingerprints.contains(&fp) {
        return Err(PublishError::Invalid(format!(
            "the certificate {} (fingerprint {}) is not on the repository's whitelist; clients would refuse what it signs",
            paths.certificate().display(),
            fp.to_fingerprint()
        )));
    }
    Ok(keys)
}

/// Publishes `opts.source` as the next revision.
pub fn publish(
    opts: &PublishOptions,
    progress: &dyn Progress,
) -> Result<PublishReport, PublishError> {
    transaction(&opts.repo, |store| publish_inner(opts, progress, store))
}

/// Runs `work` under the publisher lock with a journaled store of the repository at
/// `repo`, on a thread whose stack cannot be the limit for deep trees. If `work` fails
/// (or panics) before a new manifest is in place, what it wrote is taken back: the objects
/// it created and its reflog entry. Ingest stores layer contents and publishes a tree
/// ([`publish_tree`]) within one transaction, so a refused layer leaves nothing behind.
pub fn transaction<T, E>(
    repo: &Path,
    work: impl FnOnce(&LocalStore) -> Result<T, E> + Send,
) -> Result<T, E>
where
    T: Send,
    E: From<PublishError> + Send,
{
    let store = LocalStore::journaled(repo);
    let _lock = lock(&store)?;
    let before = undo::remember(&store);
    // Deep trees recurse deeply; give the work a stack that cannot be the limit.
    let result = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("publish".into())
            .stack_size(256 << 20)
            .spawn_scoped(s, || work(&store))
            .expect("spawning the publish thread")
            .join()
    });
    match result {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => {
            undo::undo(&store, &before);
            Err(e)
        }
        Err(panic) => {
            undo::undo(&store, &before);
            std::panic::resume_unwind(panic)
        }
    }
}

/// The publish itself, under the lock `publish` holds.
fn publish_inner(
    opts: &PublishOptions,
    progress: &dyn Progress,
    store: &LocalStore,
) -> Result<PublishReport, PublishError> {
    let started = Instant::now();
    let begun = begin(opts, store)?;
    let target = &begun.target;

    let t_walk = Instant::now();
    let mut walker = walk::Walker::new();
    let root_node = walker.walk_root(&opts.source, target)?;

    let spool = spool_dir(&opts.repo);
    std::fs::create_dir_all(&spool).map_err(|e| PublishError::io("creating", &spool, e))?;
    let index_path = spool.join("publish-index.sqlite");
    let index = if opts.full {
        index::PublishIndex::default()
    } else {
        index::PublishIndex::load(&index_path)
    };
    progress.start(walker.jobs.iter().map(|j| j.meta.size).sum());
    let settings = content::ContentSettings {
        store,
        algo: begun.algo,
        chunking: opts.chunking,
        progress,
        index: &index,
    };
    let t_content = Instant::now();
    let (contents, stats) = content::process_all(&walker.jobs, &settings)?;
    let t_catalogs = Instant::now();

    let dirtab = match std::fs::read(opts.source.join(".cvmfsdirtab")) {
        Ok(t) => partition::Dirtab::parse(&t),
        Err(_) => partition::Dirtab::default(),
    };
    let done = build_and_commit(opts, progress, store, &begun, root_node, &contents, &dirtab)?;
    if let Err(e) = index.save(target, &walker.jobs, &contents, |o| store.stored_len(o)) {
        progress.warn(&format!(
            "{e}; the publish itself stands, but the next one may read unchanged files again"
        ));
    }
    Ok(PublishReport {
        revision: begun.revision,
        root: done.root,
        entries: walker.entries,
        files_read: stats.files_read,
        bytes_read: stats.bytes_read,
        files_reused: stats.files_reused,
        catalogs_written: done.written,
        catalogs_kept: done.kept,
        seconds: started.elapsed().as_secs_f64(),
        phases: [
            (t_content - t_walk).as_secs_f64(),
            (t_catalogs - t_content).as_secs_f64(),
            (done.commit_started - t_catalogs).as_secs_f64(),
            done.commit_started.elapsed().as_secs_f64(),
        ],
    })
}

/// Publishes a tree made in memory (by ingest) as the next revision: `root` is the tree's
/// root directory, `contents` the contents its [`walk::NodeKind::File`] indices point into,
/// their objects already in `store`. Catalogs, grafting under `opts.path`, tags and the
/// commit are exactly those of [`publish`]; `opts.source`, `opts.full` and
/// `opts.chunking` are not used (there is no source to read). Call it inside a
/// [`transaction`] on `store`, which holds the lock. The report counts every file as
/// read, none as reused.
pub fn publish_tree(
    store: &LocalStore,
    opts: &PublishOptions,
    root: walk::Node,
    contents: &[content::FileContent],
    progress: &dyn Progress,
) -> Result<PublishReport, PublishError> {
    let target = crate::repository::path::normalize(&opts.path)?;
    let graft = TreeGraft {
        target,
        root,
        contents,
    };
    Ok(publish_trees(store, opts, vec![graft], &[], progress)?.expect("one tree given"))
}

/// Publishes several trees made in memory as one revision, each grafted as its own nested
/// catalog at its target (`opts.path` is not used; a lone tree may be the root), after
/// removing the paths in `removals` (each must exist; a graft may go where a removal
/// was). As [`publish_tree`] otherwise: call it inside a [`transaction`]. With no trees
/// and no removals, nothing is published and `None` is returned.
pub fn publish_trees(
    store: &LocalStore,
    opts: &PublishOptions,
    grafts: Vec<TreeGraft<'_>>,
    removals: &[Vec<u8>],
    progress: &dyn Progress,
) -> Result<Option<PublishReport>, PublishError> {
    if grafts.is_empty() && removals.is_empty() {
        return Ok(None);
    }
    if removals.iter().any(|r| r.is_empty()) {
        return Err(PublishError::Invalid(
            "the repository root cannot be removed".into(),
        ));
    }
    if grafts.len() > 1 && grafts.iter().any(|g| g.target.is_empty()) {
        return Err(PublishError::Invalid(
            "a tree grafted with others cannot be the repository root".into(),
        ));
    }
    let started = Instant::now();
    let begun = begin(opts, store)?;
    let bytes: u64 = grafts
        .iter()
        .flat_map(|g| g.contents.iter())
        .map(|c| c.size())
        .sum();
    progress.start(bytes);
    let (entries, files) = grafts.iter().fold((0, 0), |(e, f), g| {
        let (ge, gf) = count_tree(&g.root);
        (e + ge, f + gf)
    });
    let t_catalogs = Instant::now();
    let done = build_and_commit_all(
        opts,
        progress,
        store,
        &begun,
        grafts,
        removals,
        &partition::Dirtab::default(),
    )?;
    Ok(Some(PublishReport {
        revision: begun.revision,
        root: done.root,
        entries,
        files_read: files,
        bytes_read: bytes,
        files_reused: 0,
        catalogs_written: done.written,
        catalogs_kept: done.kept,
        seconds: started.elapsed().as_secs_f64(),
        phases: [
            0.0,
            0.0,
            (done.commit_started - t_catalogs).as_secs_f64(),
            done.commit_started.elapsed().as_secs_f64(),
        ],
    }))
}

/// Entries (the root included) and regular-file names of a tree.
fn count_tree(n: &walk::Node) -> (u64, u64) {
    match &n.kind {
        walk::NodeKind::Dir(children) => children.iter().fold((1, 0), |(e, f), c| {
            let (ce, cf) = count_tree(c);
            (e + ce, f + cf)
        }),
        walk::NodeKind::File(_) => (1, 1),
        _ => (1, 0),
    }
}

/// What every publish settles before it looks at its source.
struct Begun {
    target: Vec<u8>,
    repo: Repository,
    keys: SigningKeys,
    old_manifest: crate::cvmfs::manifest::Manifest,
    algo: HashAlgo,
    now: i64,
    revision: u64,
}

/// Checks the options, opens and verifies the current revision and loads the keys.
fn begin(opts: &PublishOptions, store: &LocalStore) -> Result<Begun, PublishError> {
    let target = crate::repository::path::normalize(&opts.path)?;
    if let Some(t) = &opts.tag {
        crate::cvmfs::history::validate_tag_name(t)?;
    }
    if let Some(c) = &opts.chunking {
        c.validate().map_err(PublishError::Invalid)?;
    }
    crate::cvmfs::object::set_compression_level(opts.compression_level);
    let (repo, key_paths) = open_current(store, &opts.keys)?;

    let keys = signing_keys(&repo, &key_paths)?;
    let old_manifest = repo.manifest().clone();
    let algo: HashAlgo = old_manifest.hash_algo();
    let revision = old_manifest.revision + 1;
    Ok(Begun {
        target,
        repo,
        keys,
        old_manifest,
        algo,
        now: timefmt::now(),
        revision,
    })
}

/// What [`build_and_commit`] did.
struct Done {
    root: NestedRef,
    written: u64,
    kept: u64,
    commit_started: Instant,
}

/// A tree built in memory and where it goes: its own nested catalog at `target`.
pub struct TreeGraft<'a> {
    /// Where the tree goes (normalized, not the root).
    pub target: Vec<u8>,
    /// The tree's root directory.
    pub root: walk::Node,
    /// The contents its [`walk::NodeKind::File`] indices point into, objects stored.
    pub contents: &'a [content::FileContent],
}

/// Cuts the tree into catalogs, writes them, grafts them under the target path and commits
/// the revision (history, reflog, sync, signed manifest last).
fn build_and_commit(
    opts: &PublishOptions,
    progress: &dyn Progress,
    store: &LocalStore,
    begun: &Begun,
    root_node: walk::Node,
    contents: &[content::FileContent],
    dirtab: &partition::Dirtab,
) -> Result<Done, PublishError> {
    let graft = TreeGraft {
        target: begun.target.clone(),
        root: root_node,
        contents,
    };
    build_and_commit_all(opts, progress, store, begun, vec![graft], &[], dirtab)
}

/// [`build_and_commit`] for several trees at once: the removals are made first, then each
/// tree is built and grafted in turn onto the root the previous edit made, and the
/// revision is committed once.
fn build_and_commit_all(
    opts: &PublishOptions,
    progress: &dyn Progress,
    store: &LocalStore,
    begun: &Begun,
    grafts: Vec<TreeGraft<'_>>,
    removals: &[Vec<u8>],
    dirtab: &partition::Dirtab,
) -> Result<Done, PublishError> {
    let Begun {
        repo,
        keys,
        old_manifest,
        algo,
        now,
        revision,
        ..
    } = begun;
    let (algo, now, revision) = (*algo, *now, *revision);
    let old = old::OldRevision::new(repo);
    let mut root = NestedRef {
        path: Vec::new(),
        hash: old_manifest.root_catalog,
        size: old_manifest.root_catalog_size,
    };
    let (mut written, mut kept, mut split_links) = (0, 0, 0);
    let no_roots = std::collections::HashSet::new();
    for path in removals {
        let mut ctx = build::BuildCtx::new(store, algo, revision, now, opts.ttl, &no_roots, &old);
        root = graft::graft_into(&mut ctx, &root, &graft::Edit::Remove(path), Some(opts.ttl))?.0;
        written += ctx.written;
    }
    for TreeGraft {
        target,
        root: mut root_node,
        contents,
    } in grafts
    {
        root_node.name = target
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or_default()
            .to_vec();
        let roots = partition::catalog_roots(&root_node, &target, dirtab, opts.auto_catalogs);
        let mut ctx = build::BuildCtx::new(store, algo, revision, now, opts.ttl, &roots, &old)
            .with_contents(contents);
        let built = ctx.build(&root_node, &target)?;
        root = if target.is_empty() {
            built.nested
        } else {
            let dir_meta = walk::Meta {
                mode: libc::S_IFDIR | 0o755,
                mtime: now,
                uid: 0,
                gid: 0,
                mtime_ns: 0,
                ..root_node.meta.clone()
            };
            let g = graft::Graft {
                path: &target,
                subtree: built,
                dir_meta,
            };
            graft::graft_into(&mut ctx, &root, &graft::Edit::Put(&g), Some(opts.ttl))?.0
        };
        written += ctx.written;
        kept += ctx.kept;
        split_links += ctx.split_links;
    }
    if split_links > 0 {
        progress.warn(&format!(
            "{split_links} files have hard links in other directories (or outside the \
             source); CernVM-FS keeps hard links within one directory, so those names are \
             stored as separate entries with the same content"
        ));
    }
    progress.finish();
    let commit_started = Instant::now();

    let history = repo.history()?;
    let tags = opts
        .tag
        .iter()
        .map(|t| (t.clone(), opts.tag_description.clone()))
        .collect();
    commit::commit(commit::CommitInput {
        store,
        keys,
        fqrn: &old_manifest.fqrn,
        algo,
        root: &root,
        revision,
        now,
        ttl: opts.ttl,
        old_manifest: Some(old_manifest),
        history,
        tags,
        move_trunk: true,
    })?;
    Ok(Done {
        root,
        written,
        kept,
        commit_started,
    })
}
