//! A repository behind HTTP: the download manager fetches, the shared cache keeps verified
//! objects, and the breadcrumb refuses to go back to an older revision. When no server
//! answers, the last accepted manifest and whitelist come from the cache (offline mode):
//! everything already cached reads normally.

pub mod cache;
pub mod download;
pub mod stack;

use std::sync::Arc;

use crate::cvmfs::letter::MAX_LETTER;
use crate::remote::cache::breadcrumb::{Breadcrumb, RepoState};
use crate::remote::cache::{Cache, Kind, Want};
use crate::remote::download::Downloader;
use crate::repository::source::{ObjectRequest, ObjectSource, SourceError, Verified};
use crate::repository::{RepoError, Repository, Trust, MANIFEST_PATH, WHITELIST_PATH};

/// A repository behind HTTP as an [`ObjectSource`]: files are fetched by the download
/// manager, objects are served from the shared cache (downloaded and verified on a miss).
/// A catalog it hands out (a request with a mountpoint) stays pinned in the cache until the
/// repository that asked for it releases it ([`ObjectSource::release`]), so that the quota
/// never evicts what a revision still reads, and a mount that follows revisions for months
/// pins only the catalogs of the revisions it still holds.
pub struct RemoteSource {
    /// The repository's fully qualified name; also names its state in the cache.
    pub fqrn: String,
    /// The download manager: hosts, proxies, failover and counters.
    pub downloader: Arc<Downloader>,
    /// The local cache objects are kept in, shared with other repositories.
    pub cache: Arc<Cache>,
}

impl RemoteSource {
    /// A source for repository `fqrn` fetching with `downloader` into `cache`; nothing is
    /// contacted yet.
    pub fn new(fqrn: &str, downloader: Arc<Downloader>, cache: Arc<Cache>) -> Self {
        RemoteSource {
            fqrn: fqrn.to_string(),
            downloader,
            cache,
        }
    }
}

impl ObjectSource for RemoteSource {
    fn fetch(&self, rel: &str, limit: u64) -> Result<Vec<u8>, SourceError> {
        let mut out = Vec::new();
        self.downloader
            .fetch(rel, None, limit, &mut out)
            .map_err(|e| SourceError::Fetch(e.to_string()))?;
        Ok(out)
    }

    fn describe(&self) -> String {
        self.downloader.stats().host
    }

    fn object(&self, req: &ObjectRequest<'_>) -> Result<Verified, SourceError> {
        let kind = match req.mountpoint {
            Some(m) => Kind::Catalog {
                fqrn: self.fqrn.clone(),
                mountpoint: m.to_vec(),
            },
            None => Kind::Data,
        };
        let rel = req.name.path();
        // Compressed objects can be a little larger than their content.
        let wire_limit = if req.compressed {
            req.limit + req.limit / 512 + 1024
        } else {
            req.limit
        };
        let fetch = |sink: &mut crate::remote::cache::sink::ObjectSink| {
            self.downloader
                .fetch(&rel, Some(req.name.hash), wire_limit, sink)
        };
        let file = self
            .cache
            .get(
                &Want {
                    hash: &req.name.hash,
                    size: req.size,
                    kind: &kind,
                    limit: req.limit,
                    compressed: req.compressed,
                },
                &fetch,
            )
            .map_err(|e| {
                // Told apart so that a caller can say "no such object" (a root hash that
                // was never published) rather than "servers unavailable".
                if e.is_missing() {
                    SourceError::NotFound(e.to_string())
                } else {
                    SourceError::Fetch(e.to_string())
                }
            })?;
        if req.mountpoint.is_some() {
            // A repository keeps the catalogs it loaded open while it lives; the quota must
            // not take them away from under it. Counted: each hold ends with one release.
            self.cache.pin(&req.name.hash);
        }
        Ok(Verified::File(file))
    }

    fn release(&self, hash: &crate::cvmfs::hash::ContentHash) {
        self.cache.unpin(hash);
    }
}

/// Why [`open`] could not open a repository behind HTTP.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The repository did not open: e.g. bootstrap files that verify from no host, or cached
    /// ones (offline) that no longer verify.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The manifest offered is older (by revision or timestamp) than the breadcrumb: a
    /// replayed old signed manifest, refused.
    #[error("{fqrn}: the servers offer revision {offered} (published {offered_at}), older than revision {seen} already seen; refusing a rollback")]
    Rollback {
        /// The repository.
        fqrn: String,
        /// The revision offered.
        offered: u64,
        /// When the offered revision was published, in Unix seconds.
        offered_at: i64,
        /// The newest revision accepted before, from the breadcrumb.
        seen: u64,
    },
    /// No server answered and the cache holds no bootstrap files from an earlier online
    /// open. Fields: the download error, the fqrn.
    #[error("{fqrn}: no server answered ({0}) and nothing is cached for offline use", fqrn = .1)]
    Unreachable(String, String),
    /// The repository's state in the cache (`repos/<fqrn>/`: breadcrumb and bootstrap
    /// files) could not be created or written. Fields: the I/O error, the fqrn.
    #[error("{fqrn}: cache state: {0}", fqrn = .1)]
    State(std::io::Error, String),
}

/// Whether the mount is working from fresh or cached bootstrap files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The bootstrap files came from a server just now and were saved in the cache.
    Online,
    /// No server answered: the bootstrap files saved at the last online open were used.
    Offline,
}

/// Opens `source.fqrn`: fetch and verify the bootstrap files, refuse rollbacks, remember
/// the revision; or, with no server reachable, verify and use the cached ones.
pub fn open(source: Arc<RemoteSource>, trust: &Trust) -> Result<(Repository, Mode), RemoteError> {
    let fqrn = source.fqrn.clone();
    let state = RepoState::new(source.cache.dir(), &fqrn)
        .map_err(|e| RemoteError::State(e, fqrn.clone()))?;
    // A host whose bootstrap files do not verify (corrupt, forged, stale) is blamed and the
    // next one asked; the last failure is reported if none verifies.
    let mut last = None;
    for _ in 0..source.downloader.host_count() {
        // Manifest and whitelist in parallel: one round trip instead of two.
        let fetched = std::thread::scope(|s| {
            let w = s.spawn(|| source.fetch(WHITELIST_PATH, MAX_LETTER as u64));
            let m = source.fetch(MANIFEST_PATH, MAX_LETTER as u64);
            let w = w.join().expect("whitelist fetch thread");
            m.and_then(|m| Ok((m, w?)))
        });
        let (manifest, whitelist, mode) = match fetched {
            Ok((m, w)) => (m, w, Mode::Online),
            Err(SourceError::Fetch(why)) => match state.saved() {
                Some((m, w)) => (m, w, Mode::Offline),
                None => return Err(RemoteError::Unreachable(why, fqrn)),
            },
            Err(e) => return Err(RepoError::from(e).into()),
        };
        let dyn_source: Arc<dyn ObjectSource> = source.clone();
        let opened = std::thread::scope(|s| {
            if mode == Mode::Online {
                // The root catalog downloads while the certificate is fetched and checked;
                // it is named by hash, so an unverified manifest can only waste a download.
                s.spawn(|| prefetch_root_catalog(&source, &manifest));
            }
            Repository::open_with(dyn_source, trust, &manifest, &whitelist)
        });
        match opened {
            Ok(repo) => return accept(repo, mode, &state, &manifest, &whitelist),
            Err(e) if mode == Mode::Online => {
                source.downloader.blame_host();
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.expect("at least one host").into())
}

fn prefetch_root_catalog(source: &RemoteSource, manifest: &[u8]) {
    if let Ok((m, _)) = crate::cvmfs::manifest::Manifest::parse_unverified(manifest) {
        let name = crate::cvmfs::object::ObjectName::new(
            m.root_catalog,
            crate::cvmfs::object::ObjectKind::Catalog,
        );
        let size = (m.root_catalog_size > 0).then_some(m.root_catalog_size);
        let limit = size
            .unwrap_or(crate::repository::MAX_CATALOG)
            .min(crate::repository::MAX_CATALOG);
        let req = ObjectRequest {
            name: &name,
            size,
            limit,
            compressed: true,
            mountpoint: Some(b""),
        };
        // Only warming the cache: the repository takes its own hold when it loads it.
        if source.object(&req).is_ok() {
            source.release(&name.hash);
        }
    }
}

/// Refuses a rollback, records the revision, hands out the repository.
fn accept(
    repo: Repository,
    mode: Mode,
    state: &RepoState,
    manifest: &[u8],
    whitelist: &[u8],
) -> Result<(Repository, Mode), RemoteError> {
    let fqrn = repo.manifest().fqrn.clone();
    let m = repo.manifest();
    if let Some(seen) = state.breadcrumb() {
        // Revisions decide, as upstream's catalog manager has it: a publisher whose clock
        // stepped back still publishes newer revisions, and a replayed manifest has an older
        // revision whatever its timestamp.
        if m.revision < seen.revision {
            return Err(RemoteError::Rollback {
                fqrn,
                offered: m.revision,
                offered_at: m.timestamp,
                seen: seen.revision,
            });
        }
    }
    if mode == Mode::Online {
        let b = Breadcrumb {
            revision: m.revision,
            timestamp: m.timestamp,
        };
        state
            .save(b, manifest, whitelist)
            .map_err(|e| RemoteError::State(e, fqrn.clone()))?;
    }
    Ok((repo, mode))
}
