//! The one wiring of what a client fetches through: settings → download manager → the
//! shared cache → trust → an opened repository. `lazyroot mount`, the provisioner's image
//! mounts and its CSI volumes all build their repositories here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cvmfs::signature::KeyError;
use crate::repository::{Repository, Trust};

use super::cache::Cache;
use super::download::{parse_hosts, parse_proxies, ChainError, Downloader, Settings};
use super::{Mode, RemoteError, RemoteSource};

/// How to reach one repository.
#[derive(Debug, Clone)]
pub struct RemoteSpec {
    /// The repository's fully qualified name; validated, as it becomes a path in the cache.
    pub fqrn: String,
    /// Server URLs in failover order, `;`-separated, `@fqrn@` substituted.
    pub servers: String,
    /// Proxy chain in CernVM-FS syntax (`p1|p2;p3`, `DIRECT`).
    pub proxies: String,
    /// Trusted master public key files, re-read at every open (keys may be rotated).
    pub keys: Vec<PathBuf>,
    /// Connect timeout, and the window of the low-speed limit.
    pub timeout: Duration,
    /// The low-speed limit in bytes per second (averaged over `timeout`).
    pub low_speed_limit: u64,
    /// The longest one attempt at one object may take.
    pub deadline: Duration,
}

/// Why a repository's fetch stack could not be set up or opened.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The fqrn is not a valid repository name.
    #[error(transparent)]
    Name(#[from] crate::cvmfs::fqrn::FqrnError),
    /// The server list does not parse.
    #[error("{fqrn}: servers: {source}")]
    Servers {
        /// The repository.
        fqrn: String,
        /// What is wrong with the list.
        source: ChainError,
    },
    /// The proxy list does not parse.
    #[error("{fqrn}: proxies: {source}")]
    Proxies {
        /// The repository.
        fqrn: String,
        /// What is wrong with the list.
        source: ChainError,
    },
    /// The download manager's runtime threads could not be started.
    #[error("{fqrn}: starting the download manager: {source}")]
    Downloader {
        /// The repository.
        fqrn: String,
        /// Why the runtime could not be built.
        source: std::io::Error,
    },
    /// A trusted master public key file could not be loaded.
    #[error("{fqrn}: trusted keys: {source}")]
    Keys {
        /// The repository.
        fqrn: String,
        /// Why the key did not load.
        source: KeyError,
    },
    /// Fetching, verifying or accepting the bootstrap files failed.
    #[error(transparent)]
    Open(#[from] RemoteError),
}

/// One repository as a client reaches it: its download manager over the shared cache and
/// the master keys it trusts.
pub struct Remote {
    /// Where its files and objects come from: download manager and shared cache.
    pub source: Arc<RemoteSource>,
    keys: Vec<PathBuf>,
}

/// A repository opened through its [`Remote`]: verified bootstrap files, whether they
/// came from a server or the cache, and the trust they were verified with.
pub struct Opened {
    /// The repository at the revision just accepted.
    pub repo: Repository,
    /// Whether the bootstrap files came from a server or from the cache (offline mode).
    pub mode: Mode,
    /// What they were verified with: the master keys as read at this open, and the time.
    pub trust: Trust,
}

impl Remote {
    /// Checks `spec` (name, servers, proxies) and starts its download manager over `cache`,
    /// with `spec.timeout` as connect timeout and low-speed window. Nothing is fetched yet.
    pub fn new(spec: &RemoteSpec, cache: Arc<Cache>) -> Result<Remote, StackError> {
        // The name becomes a path in the cache.
        crate::cvmfs::fqrn::validate(&spec.fqrn)?;
        let fqrn = || spec.fqrn.clone();
        let hosts =
            parse_hosts(&spec.servers, &spec.fqrn).map_err(|source| StackError::Servers {
                fqrn: fqrn(),
                source,
            })?;
        let proxies = parse_proxies(&spec.proxies).map_err(|source| StackError::Proxies {
            fqrn: fqrn(),
            source,
        })?;
        let mut settings = Settings::new(hosts, proxies);
        settings.limits.connect_timeout = spec.timeout;
        settings.limits.low_speed_time = spec.timeout;
        settings.limits.low_speed_limit = spec.low_speed_limit;
        settings.limits.deadline = spec.deadline;
        let downloader = Downloader::new(settings).map_err(|source| StackError::Downloader {
            fqrn: fqrn(),
            source,
        })?;
        Ok(Remote {
            source: Arc::new(RemoteSource::new(&spec.fqrn, Arc::new(downloader), cache)),
            keys: spec.keys.clone(),
        })
    }

    /// The repository's fully qualified name.
    pub fn fqrn(&self) -> &str {
        &self.source.fqrn
    }

    /// Trust as of now: the keys are read again, so a rotation needs no restart.
    pub fn trust(&self) -> Result<Trust, StackError> {
        let master_keys = self
            .keys
            .iter()
            .map(|k| crate::cvmfs::keys::load_master_public(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StackError::Keys {
                fqrn: self.fqrn().to_string(),
                source,
            })?;
        Ok(Trust {
            master_keys,
            fqrn: Some(self.fqrn().to_string()),
            now: crate::cvmfs::timefmt::now(),
        })
    }

    /// Fetches and verifies the bootstrap files now (or takes the cached ones when no
    /// server answers), refusing rollbacks.
    pub fn open(&self) -> Result<Opened, StackError> {
        let trust = self.trust()?;
        let (repo, mode) = super::open(self.source.clone(), &trust)?;
        Ok(Opened { repo, mode, trust })
    }
}
