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

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("source {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot publish there: {0} is not a directory in the repository")]
    NotADirectoryInRepo(String),
    #[error("{0} vanished during publish; nothing was committed, publish again")]
    Vanished(PathBuf),
    #[error(
        "{0} changed during publish; nothing was committed, publish again once writers are done"
    )]
    Changed(PathBuf),
    #[error("{0} is more than {1} directories deep")]
    TooDeep(PathBuf, usize),
    #[error("{0}: name contains a NUL byte")]
    BadName(PathBuf),
    #[error("another publisher holds the lock {0}; wait for it to finish")]
    Locked(PathBuf),
    #[error("{0} is not a repository (no {MANIFEST_PATH}); create one with `lazyroot mkfs`")]
    NotARepository(PathBuf),
    #[error("{0} already holds a repository")]
    AlreadyExists(PathBuf),
    #[error(transparent)]
    BadRepositoryName(#[from] crate::cvmfs::fqrn::FqrnError),
    #[error("catalog {0}")]
    Catalog(String),
    #[error("previous revision: {0}")]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Reflog(#[from] ReflogError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Whitelist(#[from] WhitelistError),
    #[error(transparent)]
    Path(#[from] BadPath),
    #[error("{0}")]
    Invalid(String),
}

impl PublishError {
    pub fn io(op: &'static str, path: &Path, e: std::io::Error) -> Self {
        PublishError::Io(IoError::new(op, path, e))
    }
}

/// Reports progress and lets tests act at precise moments.
pub trait Progress: Send + Sync {
    /// Total bytes of regular files about to be processed.
    fn start(&self, _total_bytes: u64) {}
    fn bytes(&self, _n: u64) {}
    /// Called right before a source file is opened for reading.
    fn before_read(&self, _path: &Path) {}
    fn finish(&self) {}
    fn warn(&self, msg: &str) {
        tracing::warn!("{msg}");
    }
}

pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Clone)]
pub struct PublishOptions {
    /// The repository directory (what a web server serves as `/cvmfs/<fqrn>`).
    pub repo: PathBuf,
    /// The directory with `<fqrn>.key`, `.crt`, `.pub`.
    pub keys: PathBuf,
    pub source: PathBuf,
    /// Where in the repository the source goes ("" = replace the whole repository).
    pub path: Vec<u8>,
    pub tag: Option<String>,
    pub tag_description: String,
    /// `None` disables chunking.
    pub chunking: Option<ChunkSizes>,
    pub auto_catalogs: Option<AutoCatalogs>,
    pub ttl: u64,
    /// Re-read every file instead of trusting the publish index.
    pub full: bool,
    /// zlib level 0-9 of new objects (process-wide while publishing).
    pub compression_level: u32,
}

impl PublishOptions {
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
    pub revision: u64,
    pub root: NestedRef,
    pub entries: u64,
    pub files_read: u64,
    pub bytes_read: u64,
    pub files_reused: u64,
    pub catalogs_written: u64,
    pub catalogs_kept: u64,
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
    // Deep trees recurse deeply; give the work a stack that cannot be the limit.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("publish".into())
            .stack_size(256 << 20)
            .spawn_scoped(s, || publish_inner(opts, progress))
            .expect("spawning the publish thread")
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn publish_inner(
    opts: &PublishOptions,
    progress: &dyn Progress,
) -> Result<PublishReport, PublishError> {
    let started = Instant::now();
    let target = crate::repository::path::normalize(&opts.path)?;
    if let Some(t) = &opts.tag {
        crate::cvmfs::history::validate_tag_name(t)?;
    }
    if let Some(c) = &opts.chunking {
        c.validate().map_err(PublishError::Invalid)?;
    }
    let store = LocalStore::new(&opts.repo);
    let _lock = lock(&store)?;
    crate::cvmfs::object::set_compression_level(opts.compression_level);
    let (repo, key_paths) = open_current(&store, &opts.keys)?;

    let keys = signing_keys(&repo, &key_paths)?;
    let old_manifest = repo.manifest().clone();
    let algo: HashAlgo = old_manifest.hash_algo();
    let now = timefmt::now();
    let revision = old_manifest.revision + 1;

    let t_walk = Instant::now();
    let mut walker = walk::Walker::new();
    let mut root_node = walker.walk_root(&opts.source, &target)?;
    root_node.name = target
        .rsplit(|&b| b == b'/')
        .next()
        .unwrap_or_default()
        .to_vec();

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
        store: &store,
        algo,
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
    let roots = partition::catalog_roots(&root_node, &target, &dirtab, opts.auto_catalogs);
    let old = old::OldRevision::new(&repo);
    let mut ctx = build::BuildCtx {
        store: &store,
        algo,
        revision,
        now,
        ttl: opts.ttl,
        contents: &contents,
        roots: &roots,
        old: &old,
        written: 0,
        kept: 0,
        split_links: 0,
        empty_object: None,
    };
    let built = ctx.build(&root_node, &target)?;
    let root = if target.is_empty() {
        built.nested
    } else {
        let old_root = NestedRef {
            path: Vec::new(),
            hash: old_manifest.root_catalog,
            size: old_manifest.root_catalog_size,
        };
        let dir_meta = walk::Meta {
            mode: libc::S_IFDIR | 0o755,
            mtime: now,
            ..root_node.meta.clone()
        };
        let dir_meta = walk::Meta {
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ..dir_meta
        };
        let g = graft::Graft {
            path: &target,
            subtree: built,
            dir_meta,
        };
        graft::graft_into(&mut ctx, &old_root, &g, Some(opts.ttl))?.0
    };
    let (written, kept) = (ctx.written, ctx.kept);
    if ctx.split_links > 0 {
        progress.warn(&format!(
            "{} files have hard links in other directories (or outside the source); \
             CernVM-FS keeps hard links within one directory, so those names are stored as \
             separate entries with the same content",
            ctx.split_links
        ));
    }
    progress.finish();
    let t_commit = Instant::now();

    let history = repo.history()?;
    let tags = opts
        .tag
        .iter()
        .map(|t| (t.clone(), opts.tag_description.clone()))
        .collect();
    commit::commit(commit::CommitInput {
        store: &store,
        keys: &keys,
        fqrn: &old_manifest.fqrn,
        algo,
        root: &root,
        revision,
        now,
        ttl: opts.ttl,
        old_manifest: Some(&old_manifest),
        history,
        tags,
        move_trunk: true,
    })?;
    if let Err(e) = index.save(&target, &walker.jobs, &contents) {
        progress.warn(&format!("{e}; the next publish re-reads every file"));
    }
    Ok(PublishReport {
        revision,
        root,
        entries: walker.entries,
        files_read: stats.files_read,
        bytes_read: stats.bytes_read,
        files_reused: stats.files_reused,
        catalogs_written: written,
        catalogs_kept: kept,
        seconds: started.elapsed().as_secs_f64(),
        phases: [
            (t_content - t_walk).as_secs_f64(),
            (t_catalogs - t_content).as_secs_f64(),
            (t_commit - t_catalogs).as_secs_f64(),
            t_commit.elapsed().as_secs_f64(),
        ],
    })
}
