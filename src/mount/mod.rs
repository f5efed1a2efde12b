//! A mount: the mounted tree without the kernel (lookups, attributes, listings, opens,
//! reads, symlinks and xattrs of one repository revision, served from catalogs and the
//! shared cache; blocking and `Send + Sync`), and [`fuse`], the FUSE session that only
//! translates between the kernel and the tree.

pub mod attr;
// Public for the fuzzing harness in tests/it/fuzz: ELF headers come from the network.
pub mod elf;
mod files;
pub mod fuse;
pub mod inodes;
pub mod journal;
pub mod kept;
mod loader;
mod magic;
pub mod mountinfo;
mod restore;
pub mod skeleton;
pub mod upgrade;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

pub use attr::Attr;
pub use skeleton::Skeleton;

use files::Handle;

use crate::cvmfs::catalog::EntryKind;
use crate::cvmfs::hash::ContentHash;
use crate::remote::stack::Opened;
use crate::remote::{self, Mode, RemoteSource};
use crate::repository::source::SourceError;
use crate::repository::{Found, RepoError, Repository, Trust};

/// Why a mount operation failed; [`fuse`] maps each variant to one errno.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The path or inode is not in the mounted revision (or is hidden): ENOENT.
    #[error("no such entry")]
    NotFound,
    /// A path component, or the directory asked for, is not a directory: ENOTDIR.
    #[error("not a directory")]
    NotADirectory,
    /// A directory was opened as a file: EISDIR.
    #[error("is a directory")]
    IsADirectory,
    /// `readlink` on something other than a symlink: EINVAL.
    #[error("not a symlink")]
    NotASymlink,
    /// The entry has neither a stored nor a magic xattr of that name: ENODATA.
    #[error("no such attribute")]
    NoAttribute,
    /// The file or directory handle was never opened or already released: EBADF.
    #[error("bad file handle")]
    BadHandle,
    /// The subtree's base path does not normalize (the message says why): EINVAL.
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// Anything the network, the cache or the data did wrong: the reader sees EIO.
    #[error("{0}")]
    Io(String),
}

impl From<RepoError> for ClientError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound(_) => ClientError::NotFound,
            RepoError::NotADirectory(_) => ClientError::NotADirectory,
            other => ClientError::Io(other.to_string()),
        }
    }
}

/// A directory's entries: names and attributes.
pub type Listing = Vec<(Vec<u8>, Attr)>;

/// How many entries the in-memory entry cache holds (a few MiB).
const ENTRY_CACHE: usize = 16_384;

/// The current revision: repository and root catalog.
struct Revision {
    repo: Arc<Repository>,
    root: ContentHash,
    root_size: u64,
}

/// One repository revision as a filesystem tree, addressed by inode and handle: everything
/// a mount does except talking to the kernel. Unpinned trees follow newer revisions.
pub struct MountedTree {
    source: Arc<RemoteSource>,
    trust: Trust,
    current: RwLock<Revision>,
    /// Whether the mount is pinned to its root hash (it never changes).
    pinned: bool,
    /// The repository path shown as the mount's root ("" for the whole repository).
    base: Vec<u8>,
    /// Directories shown where the tree lacks them (mount points a runtime needs).
    skeleton: Skeleton,
    mode: Mutex<Mode>,
    last_check: Mutex<Instant>,
    inodes: Mutex<inodes::Inodes>,
    handles: Mutex<HashMap<u64, Handle>>,
    /// Entries recently returned by lookup and readdir, by inode: getattr, getxattr,
    /// readlink and open then need no catalog query.
    entries: Mutex<HashMap<u64, Found>>,
    /// Directory listings of open directory handles (readdir is called once per buffer).
    listings: Mutex<HashMap<u64, Arc<Listing>>>,
    /// Listings by directory inode, for pinned mounts (see `listing_of`).
    listings_by_ino: Mutex<HashMap<u64, Arc<Listing>>>,
    /// Fetches what the loader will open after a program (see `loader`).
    loader: loader::LoaderPrefetch,
    next_fh: AtomicU64,
    errors: AtomicU64,
    /// Where the numbers and handles the kernel holds are written down (see [`journal`]).
    journal: OnceLock<Arc<journal::Journal>>,
    /// The journal's records of the handles open now (what a compaction writes again).
    journaled: Mutex<HashMap<u64, Vec<journal::Record>>>,
    /// Handles a previous daemon opened, by the request that opened them: answers to a
    /// request the kernel sends again because that daemon died before replying.
    reopened: Mutex<HashMap<u64, u64>>,
}

impl MountedTree {
    /// The tree of revision `root` (its root catalog of `root_size` bytes) of a repository
    /// opened through `source`; a `pinned` tree never looks for newer revisions.
    pub fn new(
        source: Arc<RemoteSource>,
        opened: Opened,
        root: ContentHash,
        root_size: u64,
        pinned: bool,
    ) -> Result<Self, ClientError> {
        let Opened { repo, mode, trust } = opened;
        let repo = Arc::new(repo);
        // The root catalog must load now, not on first use. One that no server has is a
        // revision that does not exist (NotFound); any other failure is the servers', the
        // network's or the cache's (Io).
        repo.snapshot_of(root, root_size).map_err(|e| match e {
            RepoError::Source(SourceError::NotFound(_)) => ClientError::NotFound,
            other => ClientError::from(other),
        })?;
        Ok(MountedTree {
            source,
            trust,
            current: RwLock::new(Revision {
                repo,
                root,
                root_size,
            }),
            pinned,
            base: Vec::new(),
            skeleton: Skeleton::none(),
            mode: Mutex::new(mode),
            last_check: Mutex::new(Instant::now()),
            inodes: Mutex::new(inodes::Inodes::new()),
            handles: Mutex::new(HashMap::new()),
            entries: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            listings_by_ino: Mutex::new(HashMap::new()),
            loader: loader::LoaderPrefetch::default(),
            next_fh: AtomicU64::new(1),
            errors: AtomicU64::new(0),
            journal: OnceLock::new(),
            journaled: Mutex::new(HashMap::new()),
            reopened: Mutex::new(HashMap::new()),
        })
    }

    /// Shows only the directory `base` of the repository (its root becomes the mount's
    /// root), with `skeleton` directories added where it lacks them. Fails unless `base` is a
    /// directory in the mounted revision.
    pub fn subtree(mut self, base: &[u8], skeleton: Skeleton) -> Result<Self, ClientError> {
        let base = crate::repository::path::normalize(base)
            .map_err(|e| ClientError::InvalidPath(e.to_string()))?;
        let found = self.with_snapshot(|s| s.lookup(&base)?.ok_or(ClientError::NotFound))?;
        if !found.entry.is_dir() {
            return Err(ClientError::NotADirectory);
        }
        self.inodes = Mutex::new(inodes::Inodes::with_root(&base));
        self.base = base;
        self.skeleton = skeleton;
        Ok(self)
    }

    /// Whether the tree is fixed to one root hash (mounted by root hash or tag, never
    /// refreshed), so the kernel may cache its symlinks and listings for good.
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// How long the kernel may cache what this tree says: "forever" for a pinned revision
    /// (it can never change), the repository's TTL-bounded minute otherwise.
    pub fn kernel_ttl(&self) -> Duration {
        if self.pinned {
            Duration::from_secs(365 * 24 * 3600)
        } else {
            Duration::from_secs(60)
        }
    }

    fn note<T>(&self, r: Result<T, ClientError>) -> Result<T, ClientError> {
        if let Err(ClientError::Io(_)) = &r {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// An unpinned mount picks up a newer revision once the TTL has passed (for new
    /// lookups; open files keep reading what they opened).
    fn maybe_refresh(&self) {
        if self.pinned {
            return;
        }
        let ttl = Duration::from_secs(
            self.current
                .read()
                .expect("revision")
                .repo
                .manifest()
                .ttl
                .max(1),
        );
        {
            let mut last = self.last_check.lock().expect("last check");
            if last.elapsed() < ttl {
                return;
            }
            *last = Instant::now();
        }
        self.refresh();
    }

    /// Looks for a newer revision now, whatever the TTL says (`lazyroot mount` does on
    /// SIGHUP, as `cvmfs_talk remount` makes a CernVM-FS client do); a pinned tree stays.
    pub fn check_now(&self) {
        if self.pinned {
            return;
        }
        *self.last_check.lock().expect("last check") = Instant::now();
        self.refresh();
    }

    /// Opens the repository's newest revision and switches to it if it is newer.
    fn refresh(&self) {
        // The clock of now, not of the mount's start: a whitelist that has expired since
        // must stop new revisions (the one mounted stays, as it was verified).
        let trust = Trust {
            now: crate::cvmfs::timefmt::now(),
            ..self.trust.clone()
        };
        let opened = match remote::open(self.source.clone(), &trust) {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::warn!("checking for a newer revision: {e}; staying on the one mounted");
                None
            }
        };
        if let Some((repo, mode)) = opened {
            let m = repo.manifest().clone();
            let mut cur = self.current.write().expect("revision");
            if m.revision > cur.repo.manifest().revision {
                self.entries.lock().expect("entries").clear();
                if let Some(j) = self.journal.get() {
                    j.append(&journal::Record::Revision {
                        root: m.root_catalog,
                        size: m.root_catalog_size,
                    });
                }
                *cur = Revision {
                    repo: Arc::new(repo),
                    root: m.root_catalog,
                    root_size: m.root_catalog_size,
                };
            }
            *self.mode.lock().expect("mode") = mode;
        }
    }

    fn with_snapshot<T>(
        &self,
        f: impl FnOnce(&crate::repository::Snapshot<'_>) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        // The lock is held only to copy the revision out: the closure may download, and a
        // revision switch must not wait for that (nor make every other reader wait).
        let (repo, root, size) = {
            let cur = self.current.read().expect("revision");
            (cur.repo.clone(), cur.root, cur.root_size)
        };
        let snap = repo.snapshot_of(root, size)?;
        f(&snap)
    }

    fn path_of(&self, ino: u64) -> Result<Vec<u8>, ClientError> {
        self.inodes
            .lock()
            .expect("inodes")
            .path(ino)
            .map(|p| p.to_vec())
            .ok_or(ClientError::NotFound)
    }

    /// The attributes of `f` under its inode number; `held`: the reply hands the kernel a
    /// reference (a lookup), counted until it forgets it.
    fn attr_of(&self, f: &Found, held: bool) -> Attr {
        let e = &f.entry;
        let key = match e.kind() {
            EntryKind::File if e.hardlink_group() != 0 => {
                inodes::Key::Link(f.catalog, e.hardlink_group())
            }
            EntryKind::File => inodes::Key::File(f.path.clone(), e.hash.unwrap_or(f.catalog)),
            _ => inodes::Key::Path(f.path.clone()),
        };
        // The kernel knows the root as inode 1, whatever revision is behind it.
        let ino = if f.path == self.base {
            inodes::ROOT
        } else if held {
            self.inodes.lock().expect("inodes").ino_held(&f.path, key)
        } else {
            self.inodes.lock().expect("inodes").ino(&f.path, key)
        };
        let mut entries = self.entries.lock().expect("entries");
        // Bounded: a full cache starts over rather than growing with the tree.
        if entries.len() >= ENTRY_CACHE {
            entries.clear();
        }
        entries.insert(ino, f.clone());
        Attr::of(ino, e)
    }

    /// The entry behind an inode: from the entry cache (what lookup and readdir just saw),
    /// else looked up again by path.
    fn stat(&self, ino: u64) -> Result<Found, ClientError> {
        if let Some(f) = self.entries.lock().expect("entries").get(&ino) {
            return Ok(f.clone());
        }
        let path = self.path_of(ino)?;
        self.find(&path)
    }

    /// The entry at a repository path: from the catalogs, else a skeleton directory.
    fn find(&self, path: &[u8]) -> Result<Found, ClientError> {
        self.with_snapshot(|s| {
            if let Some(f) = s.lookup(path).ok().flatten() {
                return Ok(f);
            }
            self.skeleton_entry(s, path)?.ok_or(ClientError::NotFound)
        })
    }

    /// The path relative to the mount's root, if it lies inside it.
    fn relative<'p>(&self, path: &'p [u8]) -> Option<&'p [u8]> {
        if self.base.is_empty() {
            return Some(path);
        }
        let rest = path.strip_prefix(self.base.as_slice())?;
        if rest.is_empty() {
            return Some(rest);
        }
        rest.strip_prefix(b"/")
    }

    /// A skeleton directory or file at `path`, when the skeleton has one there.
    fn skeleton_entry(
        &self,
        s: &crate::repository::Snapshot<'_>,
        path: &[u8],
    ) -> Result<Option<Found>, ClientError> {
        match self
            .relative(path)
            .and_then(|rel| Some((rel, self.skeleton.part(rel)?)))
        {
            Some((rel, part)) => {
                let root = s.lookup(&self.base)?.ok_or(ClientError::NotFound)?;
                let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
                Ok(Some(Found {
                    path: path.to_vec(),
                    entry: Skeleton::entry(name, part, &root.entry),
                    catalog: root.catalog,
                }))
            }
            _ => Ok(None),
        }
    }

    /// The attributes of `name` in directory `parent`, catalogs first, then skeleton
    /// directories; `.`, `..`, names with `/` and hidden entries are not found.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr, ClientError> {
        self.maybe_refresh();
        if name.contains(&b'/') || name == b"." || name == b".." {
            return Err(ClientError::NotFound);
        }
        let dir = self.path_of(parent)?;
        let path = crate::repository::path::join(&dir, name);
        let r = self.with_snapshot(|s| {
            match s.lookup(&path) {
                Ok(Some(f)) if !f.entry.is_hidden() => return Ok(f),
                Ok(Some(_)) => return Err(ClientError::NotFound),
                // A missing entry, or a path under a skeleton directory the catalogs lack.
                Ok(None) | Err(RepoError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            self.skeleton_entry(s, &path)?.ok_or(ClientError::NotFound)
        });
        let f = self.note(r)?;
        Ok(self.attr_of(&f, true))
    }

    /// A readdirplus entry hands the kernel a reference as a lookup does: taken on the
    /// listed entry's number, or, if that number has been dropped since the listing was
    /// made, on the entry looked up again (so the kernel never holds a number this tree
    /// does not know).
    pub fn hold_listed(&self, dir: u64, name: &[u8], a: &Attr) -> Result<Attr, ClientError> {
        if self.inodes.lock().expect("inodes").hold(a.ino) {
            return Ok(*a);
        }
        self.lookup(dir, name)
    }

    /// The kernel gives back `n` references on `ino` (FUSE forget).
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.lock().expect("inodes").forget(ino, n);
    }

    /// The attributes of inode `ino`.
    pub fn getattr(&self, ino: u64) -> Result<Attr, ClientError> {
        let f = self.note(self.stat(ino))?;
        Ok(self.attr_of(&f, false))
    }

    /// Opens a directory: lists it once for all the readdir calls that follow.
    pub fn opendir(&self, ino: u64) -> Result<u64, ClientError> {
        let listing = Arc::new(self.readdir(ino)?);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.journal_handle(fh, journal::Record::Dir { fh, ino });
        self.listings.lock().expect("listings").insert(fh, listing);
        Ok(fh)
    }

    /// The listing [`opendir`](Self::opendir) took for directory handle `fh`.
    pub fn listing(&self, fh: u64) -> Result<Arc<Listing>, ClientError> {
        self.listings
            .lock()
            .expect("listings")
            .get(&fh)
            .cloned()
            .ok_or(ClientError::BadHandle)
    }

    /// Forgets directory handle `fh` and its listing.
    pub fn releasedir(&self, fh: u64) {
        if self
            .listings
            .lock()
            .expect("listings")
            .remove(&fh)
            .is_some()
        {
            if let Some(j) = self.journal.get() {
                j.append(&journal::Record::Release(fh));
            }
        }
    }

    /// The listing of directory `ino` when the kernel opens directories without asking
    /// (pinned mounts): it reads a directory in several readdir calls, so the listing is kept
    /// by inode for the calls that follow. A pinned directory never changes, and the kernel
    /// caches what it read, so a few recent listings are all that is worth keeping.
    pub fn listing_of(&self, ino: u64) -> Result<Arc<Listing>, ClientError> {
        const RECENT: usize = 64;
        if let Some(l) = self.listings_by_ino.lock().expect("listings").get(&ino) {
            return Ok(l.clone());
        }
        let listing = Arc::new(self.readdir(ino)?);
        let mut recent = self.listings_by_ino.lock().expect("listings");
        if recent.len() >= RECENT {
            recent.clear();
        }
        recent.insert(ino, listing.clone());
        Ok(listing)
    }

    /// The entries of a directory with their attributes (for readdir and readdirplus).
    pub fn readdir(&self, ino: u64) -> Result<Vec<(Vec<u8>, Attr)>, ClientError> {
        let path = self.path_of(ino)?;
        let r = self.with_snapshot(|s| {
            let mut items = match s.list(&path) {
                Ok(items) => items,
                // A skeleton directory: nothing of the catalogs' in it.
                Err(RepoError::NotFound(_)) if self.skeleton_entry(s, &path)?.is_some() => {
                    Vec::new()
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(rel) = self.relative(&path) {
                for name in self.skeleton.children(rel) {
                    if !items.iter().any(|f| f.entry.name == name) {
                        let child = crate::repository::path::join(&path, name);
                        items.extend(self.skeleton_entry(s, &child)?);
                    }
                }
            }
            Ok(items)
        });
        let items = self.note(r)?;
        Ok(items
            .iter()
            .map(|f| (f.entry.name.clone(), self.attr_of(f, false)))
            .collect())
    }

    /// A symlink's target, exactly as stored (no `$(VAR)` expansion).
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, ClientError> {
        let f = self.note(self.stat(ino))?;
        if f.entry.kind() != EntryKind::Symlink {
            return Err(ClientError::NotASymlink);
        }
        // Stored as is: `$(VAR)` expansion would make a container's view depend on the host.
        Ok(f.entry.symlink)
    }

    /// Stored extended attributes, then the magic `user.*` ones CernVM-FS clients offer.
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, ClientError> {
        let f = self.note(self.stat(ino))?;
        if let Some(v) = f.entry.xattrs.as_ref().and_then(|x| x.get(name)) {
            return Ok(v.clone());
        }
        magic::value(self, &f, name).ok_or(ClientError::NoAttribute)
    }

    /// Stored attribute names only: magic ones stay hidden so that copying a tree out of
    /// the mount (`cp -a`, `tar --xattrs`) does not copy them into images.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, ClientError> {
        let f = self.note(self.stat(ino))?;
        let mut out = Vec::new();
        for k in f.entry.xattrs.iter().flat_map(|x| x.keys()) {
            out.extend_from_slice(k);
            out.push(0);
        }
        Ok(out)
    }

    /// (files, total bytes) of the revision, from the root catalog's counters.
    pub fn statfs(&self) -> (u64, u64) {
        // Through the snapshot's own repository: taking the revision lock a second time
        // while holding it could deadlock against a queued revision switch.
        let r = self.with_snapshot(|s| {
            let db = s.repository().catalog(&s.root_hash(), 0)?;
            let stats = db
                .lock()
                .expect("catalog")
                .statistics()
                .map_err(|e| ClientError::Io(e.to_string()))?;
            let t = crate::cvmfs::catalog::Counters::totals_from(&stats);
            Ok((
                (t.get("regular") + t.get("dir") + t.get("symlink") + t.get("special")) as u64,
                t.get("file_size") as u64,
            ))
        });
        r.unwrap_or((0, 0))
    }
}
