//! Lazy mounts of images: one FUSE mount per image, pinned to its root hash, every one
//! reading through the one shared cache. One mount per image rather than one for all: a
//! pinned mount lets the kernel cache everything for good (listings, symlinks, pages), each
//! image's root is the mount's root with the directories Mesos mounts onto, and an image is
//! released by unmounting it without touching the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cvmfs::hash::ContentHash;
use crate::keeper::KeeperClient;
use crate::mount::{ClientError, MountedTree, Skeleton};
use crate::remote::cache::Cache;
use crate::remote::stack::{Opened, Remote, RemoteSpec, StackError};
use crate::repository::At;

use super::config::Config;
use super::error::ProvisionError;

/// A revision resolved from a root hash, a tag or "latest".
pub struct Resolved {
    /// The revision's root catalog hash.
    pub root: ContentHash,
    /// Size of the root catalog in bytes; 0 when unknown.
    pub size: u64,
    /// The manifest revision number, when known (latest or a tag); 0 otherwise.
    pub revision: u64,
    /// The repository as resolving opened it: mounting takes it rather than fetching and
    /// verifying the manifest a second time.
    opened: Option<Opened>,
}

impl Resolved {
    /// A revision known by its root hash alone (from the daemon's state).
    pub fn known(root: ContentHash) -> Resolved {
        Resolved {
            root,
            size: 0,
            revision: 0,
            opened: None,
        }
    }
}

/// Mounts images of the configured repositories, all reading through one shared cache.
pub struct Mounter {
    remotes: HashMap<String, Remote>,
    /// Holds the mounts' connections across a crash of this daemon (if configured).
    keeper: KeeperSlot,
    /// Where the keeper listens, and the takeover timeout it is started with.
    keeper_at: Option<(PathBuf, Duration)>,
    suid: bool,
    /// The shared cache's quota in bytes, if any.
    quota: Option<u64>,
}

/// A live FUSE mount.
pub struct Mount {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The same, as the mount table shows it (symlinks on the way resolved).
    listed: PathBuf,
    /// The appc `app` section of an ingested image (its entrypoint, environment, ...),
    /// read from the metadata beside its root filesystem; `None` for other images.
    pub app: Option<serde_json::Value>,
    session: Option<crate::mount::fuse::Session>,
    /// Told when the mount goes for good (the keeper of now: one may replace another).
    keeper: KeeperSlot,
}

/// The keeper the daemon talks to, replaced when it dies; shared by every mount.
type KeeperSlot = Arc<std::sync::Mutex<Option<Arc<KeeperClient>>>>;

impl Mounter {
    /// Opens the shared cache (with its quota) and sets up every configured repository.
    pub fn new(config: &Config) -> Result<Mounter, ProvisionError> {
        let quota = (config.quota_mb > 0).then_some(config.quota_mb << 20);
        let cache = Arc::new(
            Cache::open(&config.cache, quota)
                .map_err(|e| ProvisionError::Internal(e.to_string()))?,
        );
        let mut remotes = HashMap::new();
        for (fqrn, r) in &config.repositories {
            let spec = RemoteSpec {
                fqrn: fqrn.clone(),
                servers: r.servers.join(";"),
                proxies: r.proxies.clone(),
                keys: r.keys.clone(),
                timeout: Duration::from_secs(config.timeout_secs),
                low_speed_limit: config.low_speed_limit,
                deadline: Duration::from_secs(config.deadline_secs),
            };
            let remote = Remote::new(&spec, cache.clone()).map_err(|e| match e {
                StackError::Downloader { .. } => ProvisionError::Internal(e.to_string()),
                other => ProvisionError::Invalid(format!("repository {other}")),
            })?;
            remotes.insert(fqrn.clone(), remote);
        }
        let keeper_at = config
            .keeper_socket
            .clone()
            .map(|s| (s, Duration::from_secs(config.takeover_timeout_secs.max(1))));
        let keeper = match &keeper_at {
            Some((socket, timeout)) => Some(Arc::new(
                KeeperClient::connect_or_spawn(socket, *timeout).map_err(|e| {
                    ProvisionError::Internal(format!("the keeper at {}: {e}", socket.display()))
                })?,
            )),
            None => None,
        };
        Ok(Mounter {
            remotes,
            keeper: Arc::new(std::sync::Mutex::new(keeper)),
            keeper_at,
            suid: config.suid,
            quota,
        })
    }

    /// What is wrong with the repositories and the cache, for an operator: repositories
    /// whose servers are failing (with the last error), a cache over its quota (what is
    /// pinned cannot be evicted). Empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .remotes
            .iter()
            .filter_map(|(fqrn, r)| {
                r.source
                    .downloader
                    .failing()
                    .map(|why| format!("repository {fqrn}: its servers are failing: {why}"))
            })
            .collect();
        problems.sort();
        if let (Some(quota), Some(r)) = (self.quota, self.remotes.values().next()) {
            let used = r.source.cache.used();
            if used > quota {
                problems.push(format!(
                    "the cache holds {} MiB, over its {} MiB quota (pinned objects cannot be                      evicted: open files, loaded catalogs)",
                    used >> 20,
                    quota >> 20
                ));
            }
        }
        problems
    }

    fn remote(&self, fqrn: &str) -> Result<&Remote, ProvisionError> {
        self.remotes
            .get(fqrn)
            .ok_or_else(|| ProvisionError::NotFound(format!("unknown repository {fqrn:?}")))
    }

    /// Opens `fqrn` now (keys are re-read: an operator may rotate them while the daemon runs).
    fn open(&self, fqrn: &str) -> Result<Opened, ProvisionError> {
        self.remote(fqrn)?.open().map_err(|e| match e {
            StackError::Keys { .. } => ProvisionError::Internal(e.to_string()),
            other => ProvisionError::Unavailable(format!("repository {other}")),
        })
    }

    /// Resolves `at` against the repository's current manifest (fetched and verified now,
    /// or the cached one when no server answers).
    pub fn resolve(&self, fqrn: &str, at: &At) -> Result<Resolved, ProvisionError> {
        let opened = self.open(fqrn)?;
        let repo = &opened.repo;
        let manifest = repo.manifest().clone();
        let (root, size) = repo.resolve(at).map_err(|e| match e {
            crate::repository::RepoError::UnknownTag(t) => {
                ProvisionError::NotFound(format!("repository {fqrn}: no tag {t:?}"))
            }
            other => ProvisionError::Unavailable(format!("repository {fqrn}: {other}")),
        })?;
        let revision = match at {
            _ if root == manifest.root_catalog => manifest.revision,
            At::Tag(name) => repo
                .history()
                .ok()
                .flatten()
                .and_then(|h| h.get(name).ok().flatten())
                .map_or(0, |t| t.revision),
            _ => 0,
        };
        Ok(Resolved {
            root,
            size,
            revision,
            opened: Some(opened),
        })
    }

    /// Follows the links that name images (`lazyroot ingest` makes
    /// `<registry>/<repository>:<tag>` links to content-named directories) from `path` in
    /// revision `at`: the directory the image is, fixed from now on. At most a few hops,
    /// never out of the repository; a path that is no link is returned as it is.
    pub fn follow_links(
        &self,
        fqrn: &str,
        at: &Resolved,
        path: &str,
    ) -> Result<String, ProvisionError> {
        const MAX_HOPS: usize = 8;
        let opened;
        let repo = match &at.opened {
            Some(o) => &o.repo,
            None => {
                opened = self.open(fqrn)?;
                &opened.repo
            }
        };
        // A root catalog that does not load: the mount says why, with its own code.
        let Ok(snapshot) = repo.snapshot_of(at.root, at.size) else {
            return Ok(path.to_string());
        };
        let mut path = path.to_string();
        for _ in 0..MAX_HOPS {
            let found = match snapshot.lookup(path.as_bytes()) {
                Ok(Some(f)) => f,
                // Not there (or unreadable): the mount says so, with its own reason.
                Ok(None) | Err(_) => return Ok(path),
            };
            if found.entry.kind() != crate::cvmfs::catalog::EntryKind::Symlink {
                return Ok(path);
            }
            let target = String::from_utf8_lossy(&found.entry.symlink).into_owned();
            path = crate::ingest::names::resolve_link(&path, &target).ok_or_else(|| {
                ProvisionError::Invalid(format!(
                    "{fqrn}:{path} links to {target:?}, outside the repository"
                ))
            })?;
        }
        Err(ProvisionError::Invalid(format!(
            "{fqrn}:{path}: more than {MAX_HOPS} links in a row"
        )))
    }

    /// Mounts directory `path` of revision `at` of `fqrn` at `mountpoint` (created if
    /// missing), pinned, with `skeleton` directories added.
    pub fn mount(
        &self,
        fqrn: &str,
        path: &str,
        at: Resolved,
        mountpoint: &Path,
        skeleton: Skeleton,
    ) -> Result<Mount, ProvisionError> {
        let remote = self.remote(fqrn)?;
        let opened = match at.opened {
            Some(opened) => opened,
            None => self.open(fqrn)?,
        };
        let shown = format!("{fqrn}:{path}@{}", at.root);
        let app = super::image_meta::app_of(&opened.repo, at.root, at.size, path);
        let tree = MountedTree::new(remote.source.clone(), opened, at.root, at.size, true)
            .map_err(|e| match e {
                ClientError::NotFound => ProvisionError::NotFound(format!(
                    "{shown}: no server has its root catalog (a root hash never published?)"
                )),
                ClientError::Io(why) => ProvisionError::Unavailable(format!(
                    "{shown}: the root catalog could not be loaded: {why}"
                )),
                other => ProvisionError::Internal(format!("{shown}: {other}")),
            })?
            .subtree(path.as_bytes(), skeleton)
            .map_err(|e| match e {
                ClientError::NotFound => {
                    ProvisionError::NotFound(format!("{shown}: no such directory"))
                }
                ClientError::NotADirectory => {
                    ProvisionError::Invalid(format!("{shown}: not a directory"))
                }
                other => ProvisionError::Unavailable(format!("{shown}: {other}")),
            })?;
        // Never a stat of the mount point itself: a connection kept for it whose daemon
        // died answers nothing until we take it over.
        if let Some(parent) = mountpoint.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                ProvisionError::Internal(format!("creating {}: {e}", parent.display()))
            })?;
        }
        match nix::unistd::mkdir(mountpoint, nix::sys::stat::Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                return Err(ProvisionError::Internal(format!(
                    "creating {}: {e}",
                    mountpoint.display()
                )))
            }
        }
        let listed = crate::mount::kept::key_of(mountpoint);
        let (session, started) = crate::mount::kept::mount(
            Arc::new(tree),
            mountpoint,
            &self.mount_options(fqrn),
            self.keeper().as_deref(),
            Duration::from_secs(5),
            crate::mount::kept::Stale::Detach,
        )
        .map_err(|e| {
            ProvisionError::Internal(format!("mounting {shown} at {}: {e}", mountpoint.display()))
        })?;
        if started != crate::mount::kept::Started::Mounted {
            tracing::info!("{shown}: took over its mount at {}", mountpoint.display());
        }
        Ok(Mount {
            mountpoint: mountpoint.to_path_buf(),
            listed,
            app,
            session: Some(session),
            keeper: self.keeper.clone(),
        })
    }

    /// The keeper of now, if one is configured.
    fn keeper(&self) -> Option<Arc<KeeperClient>> {
        self.keeper.lock().expect("keeper").clone()
    }

    /// A keeper that went away is replaced: a new one is started (or found) and given every
    /// live mount's connection again (`mounts`), so that a crash of this daemon still
    /// leaves them alive. Nothing to do while the keeper lives, or without one.
    pub fn replace_keeper_if_gone<'m>(&self, mounts: impl Iterator<Item = &'m Mount>) {
        let Some((socket, timeout)) = &self.keeper_at else {
            return;
        };
        if !self.keeper().is_some_and(|k| k.keeper_gone()) {
            return;
        }
        tracing::warn!("the keeper went away; starting a new one and giving it every mount");
        let k = match KeeperClient::connect_or_spawn(socket, *timeout) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!("no keeper now ({e}); trying again");
                return;
            }
        };
        for m in mounts {
            if let Some(s) = &m.session {
                let key = crate::mount::kept::key_of(&m.mountpoint);
                if let Err(e) = crate::mount::kept::deposit(&k, &key, s) {
                    tracing::error!("giving {} to the new keeper: {e}", m.mountpoint.display());
                }
            }
        }
        *self.keeper.lock().expect("keeper") = Some(Arc::new(k));
    }

    fn mount_options(&self, fqrn: &str) -> crate::mount::fuse::MountOptions {
        crate::mount::fuse::MountOptions {
            name: fqrn.to_string(),
            // Containers run as other users.
            allow_other: true,
            suid: self.suid,
            dev: false,
            passthrough: false, // overlay copy-up from passthrough files fails on some kernels
            threads: 2,
        }
    }
}

impl Mount {
    /// Unmounts unless the mount is busy or still mounted elsewhere (a bind of it, as
    /// Mesos's bind backend makes): then `Busy`, and the mount stays.
    pub fn unmount(&mut self) -> Result<(), ProvisionError> {
        if crate::mount::fuse::other_mounts(&self.mountpoint) > 0 {
            return Err(ProvisionError::Busy(format!(
                "{} is still mounted elsewhere",
                self.mountpoint.display()
            )));
        }
        crate::mount::fuse::unmount(&self.mountpoint, false)
            .map_err(|e| ProvisionError::Busy(format!("{}: {e}", self.mountpoint.display())))?;
        self.finish();
        self.release_kept();
        Ok(())
    }

    /// Whether the mount still serves: its session runs and `table` (this namespace's
    /// mounts) still has it. A mount someone unmounted, or whose FUSE connection was
    /// aborted, is not alive: its directory is empty or answers ENOTCONN.
    pub fn alive(&self, table: &[crate::mount::mountinfo::MountEntry]) -> bool {
        self.session.as_ref().is_some_and(|s| !s.is_finished())
            && table.iter().any(|m| m.mount_point == self.listed)
    }

    /// Stops serving without unmounting: a new daemon takes the connection over from the
    /// keeper (an upgrade). Every request already read is answered first.
    pub fn hand_over(mut self) {
        if let Some(s) = self.session.take() {
            s.hand_over();
        }
        // Not released: the next daemon claims it.
        self.keeper = Arc::new(std::sync::Mutex::new(None));
    }

    /// The keeper lets the connection go (it was unmounted for good).
    fn release_kept(&self) {
        let k = self.keeper.lock().expect("keeper").clone();
        crate::mount::kept::release(k.as_deref(), &self.mountpoint);
    }

    /// Unmounts even when busy (the daemon is stopping).
    pub fn detach(&mut self) {
        if let Err(e) = crate::mount::fuse::unmount(&self.mountpoint, true) {
            tracing::warn!("detaching {}: {e}", self.mountpoint.display());
        }
        self.finish();
        self.release_kept();
    }

    /// The session's threads end once the kernel closes the channel; waits briefly for
    /// them, so that repeated mounts leave no threads or descriptors behind.
    fn finish(&mut self) {
        if let Some(s) = self.session.take() {
            for _ in 0..100 {
                if s.is_finished() {
                    s.join();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            tracing::warn!(
                "the session of {} is still running after unmount",
                self.mountpoint.display()
            );
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.session.is_some() {
            self.detach();
        }
    }
}
