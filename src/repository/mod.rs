//! The read side: open a repository through an [`ObjectSource`], verify the whole trust
//! chain, then read snapshots (a root catalog hash) through their nested catalogs.

pub mod check;
pub mod listing;
pub mod local;
pub mod path;
mod snapshot;
pub mod source;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rsa::RsaPublicKey;

pub use snapshot::{covers, Found, Snapshot};

use crate::cvmfs::catalog::{CatalogDb, CatalogError, NestedRef};
use crate::cvmfs::certificate::{CertificateError, RepoCertificate};
use crate::cvmfs::hash::ContentHash;
use crate::cvmfs::history::{History, HistoryError};
use crate::cvmfs::letter::MAX_LETTER;
use crate::cvmfs::manifest::{Manifest, ManifestError};
use crate::cvmfs::object::{ObjectError, ObjectKind, ObjectName};
use crate::cvmfs::whitelist::{Whitelist, WhitelistError};
use crate::repository::source::{ObjectRequest, ObjectSource, SourceError, Verified};

/// The signed manifest, relative to the repository root.
pub const MANIFEST_PATH: &str = ".cvmfspublished";
/// The master-key-signed whitelist, relative to the repository root.
pub const WHITELIST_PATH: &str = ".cvmfswhitelist";

/// Upper bounds for objects whose size no signed field states.
const MAX_CERTIFICATE: u64 = 64 << 10;
const MAX_HISTORY: u64 = 256 << 20;
/// A catalog larger than this is refused even if a parent claims it (1 GiB).
pub const MAX_CATALOG: u64 = 1 << 30;

/// Why a repository could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A file or object could not be fetched.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The manifest is malformed or its signature does not verify.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The whitelist is malformed, forged, expired, for another repository, or does not
    /// approve the certificate.
    #[error(transparent)]
    Whitelist(#[from] WhitelistError),
    /// The repository certificate is malformed.
    #[error("repository certificate: {0}")]
    Certificate(#[from] CertificateError),
    /// An object failed verification (hash, size, decompression).
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// A catalog could not be opened or read.
    #[error("{what}: {source}")]
    Catalog {
        /// Which catalog (`catalog <hash>`).
        what: String,
        /// The underlying catalog error.
        source: CatalogError,
    },
    /// The history database could not be read.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The manifest names another repository than the one expected.
    #[error("manifest names repository {found:?}, expected {expected:?}")]
    WrongRepository {
        /// The repository name the reader expects.
        expected: String,
        /// The name in the manifest.
        found: String,
    },
    /// The manifest names no certificate, so nothing can verify its signature.
    #[error("manifest has no certificate (X) field")]
    NoCertificate,
    /// No entry at this path in the snapshot.
    #[error("no such file or directory: {0}")]
    NotFound(String),
    /// A directory was expected at this path.
    #[error("not a directory: {0}")]
    NotADirectory(String),
    /// A regular file was expected at this path.
    #[error("not a regular file: {0}")]
    NotAFile(String),
    /// A tag was asked for, but the manifest names no history database.
    #[error("repository has no history database, so it has no tags")]
    NoHistory,
    /// The history database has no tag of this name.
    #[error("no tag named {0:?} (see `lazyroot tag`)")]
    UnknownTag(String),
    /// A path with a `..` component or a NUL byte.
    #[error(transparent)]
    BadPath(#[from] path::BadPath),
    /// Anything else, already described: inconsistent or unsupported content, or a failed
    /// write of file content.
    #[error("{0}")]
    Invalid(String),
}

/// What a reader trusts: the master public keys, and the clock for whitelist expiry.
#[derive(Clone)]
pub struct Trust {
    /// Master public keys; the whitelist must be signed by one of them.
    pub master_keys: Vec<RsaPublicKey>,
    /// The repository name expected; `None` takes the manifest's (still checked against
    /// the whitelist, which the master key signed).
    pub fqrn: Option<String>,
    /// The current time in Unix seconds, against which whitelist expiry is checked.
    pub now: i64,
}

/// Which revision to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// The revision the manifest names (the newest published).
    Latest,
    /// A revision pinned by its root catalog hash.
    RootHash(ContentHash),
    /// The revision a named tag in the history database points to.
    Tag(String),
}

/// A verified repository.
pub struct Repository {
    source: Arc<dyn ObjectSource>,
    manifest: Manifest,
    whitelist: Whitelist,
    catalogs: Mutex<HashMap<ContentHash, Arc<Mutex<CatalogDb>>>>,
    /// Each loaded catalog's nested references: consulted on every path resolution.
    nested: Mutex<HashMap<ContentHash, Arc<Vec<NestedRef>>>>,
    /// Catalogs fetched with a mountpoint, which the source holds for this repository
    /// until it is dropped (a cache keeps them from eviction).
    held: Mutex<std::collections::HashSet<ContentHash>>,
}

impl Drop for Repository {
    fn drop(&mut self) {
        // The catalogs of a revision a mount has moved past are closed with it; the cache
        // may evict them again.
        for h in self.held.get_mut().expect("held catalogs").drain() {
            self.source.release(&h);
        }
    }
}

impl Repository {
    /// Fetches and verifies the manifest, whitelist and certificate.
    pub fn open(source: Arc<dyn ObjectSource>, trust: &Trust) -> Result<Self, RepoError> {
        let manifest_bytes = source.fetch(MANIFEST_PATH, MAX_LETTER as u64)?;
        let whitelist_bytes = source.fetch(WHITELIST_PATH, MAX_LETTER as u64)?;
        Self::open_with(source, trust, &manifest_bytes, &whitelist_bytes)
    }

    /// Verifies the given manifest and whitelist bytes (fetched, or saved by a cache for
    /// offline use) and opens the repository they describe.
    pub fn open_with(
        source: Arc<dyn ObjectSource>,
        trust: &Trust,
        manifest_bytes: &[u8],
        whitelist_bytes: &[u8],
    ) -> Result<Self, RepoError> {
        let (manifest, letter) = Manifest::parse_unverified(manifest_bytes)?;
        let fqrn = trust.fqrn.clone().unwrap_or_else(|| manifest.fqrn.clone());
        if !manifest.fqrn.is_empty() && manifest.fqrn != fqrn {
            return Err(RepoError::WrongRepository {
                expected: fqrn,
                found: manifest.fqrn,
            });
        }
        let whitelist = Whitelist::verify(whitelist_bytes, &trust.master_keys)?;

        let cert_hash = manifest.certificate.ok_or(RepoError::NoCertificate)?;
        let cert_name = ObjectName::new(cert_hash, ObjectKind::Certificate);
        let cert_bytes = fetch_object(source.as_ref(), &cert_name, MAX_CERTIFICATE)?;
        let cert = RepoCertificate::parse(&cert_bytes)?;
        whitelist.check(&fqrn, trust.now, &cert.fingerprint(manifest.hash_algo()))?;
        Manifest::verify_letter(&letter, cert.public_key())?;
        Ok(Repository {
            source,
            manifest,
            whitelist,
            catalogs: Mutex::new(HashMap::new()),
            nested: Mutex::new(HashMap::new()),
            held: Mutex::new(Default::default()),
        })
    }

    /// How many catalogs this repository has loaded (and keeps open).
    pub fn loaded_catalogs(&self) -> usize {
        self.catalogs.lock().expect("catalog map").len()
    }

    /// The manifest, verified against the certificate the whitelist approves.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The whitelist, verified against the trusted master keys.
    pub fn whitelist(&self) -> &Whitelist {
        &self.whitelist
    }

    /// Where the repository's files and objects come from.
    pub fn source(&self) -> &Arc<dyn ObjectSource> {
        &self.source
    }

    /// The history database named by the manifest, if any.
    pub fn history(&self) -> Result<Option<History>, RepoError> {
        let Some(h) = self.manifest.history else {
            return Ok(None);
        };
        let bytes = fetch_object(
            self.source.as_ref(),
            &ObjectName::new(h, ObjectKind::History),
            MAX_HISTORY,
        )?;
        Ok(Some(History::from_bytes(&bytes)?))
    }

    /// Resolves `at` to a root catalog hash and its size (0 when unknown).
    pub fn resolve(&self, at: &At) -> Result<(ContentHash, u64), RepoError> {
        match at {
            At::Latest => Ok((self.manifest.root_catalog, self.manifest.root_catalog_size)),
            At::RootHash(h) => Ok((*h, 0)),
            At::Tag(name) => {
                let history = self.history()?.ok_or(RepoError::NoHistory)?;
                let tag = history
                    .get(name)?
                    .ok_or_else(|| RepoError::UnknownTag(name.clone()))?;
                Ok((tag.root_hash, tag.size))
            }
        }
    }

    /// Opens the revision `at`; its root catalog is fetched and verified now.
    pub fn snapshot(&self, at: &At) -> Result<Snapshot<'_>, RepoError> {
        let (root, size) = self.resolve(at)?;
        Snapshot::new(self, root, size)
    }

    /// The snapshot with root catalog `root` of `size` bytes (0: unknown).
    pub fn snapshot_of(&self, root: ContentHash, size: u64) -> Result<Snapshot<'_>, RepoError> {
        Snapshot::new(self, root, size)
    }

    /// Loads (once) and returns the catalog `hash`; `size` bounds the download (0: unknown).
    pub fn catalog(
        &self,
        hash: &ContentHash,
        size: u64,
    ) -> Result<Arc<Mutex<CatalogDb>>, RepoError> {
        self.catalog_at(hash, size, None)
    }

    /// As [`Repository::catalog`], saying where the catalog is mounted (a cache uses it to
    /// drop superseded versions of the same subtree first).
    pub fn catalog_at(
        &self,
        hash: &ContentHash,
        size: u64,
        mountpoint: Option<&[u8]>,
    ) -> Result<Arc<Mutex<CatalogDb>>, RepoError> {
        if let Some(c) = self.catalogs.lock().expect("catalog map").get(hash) {
            return Ok(c.clone());
        }
        let cat_err = |source| RepoError::Catalog {
            what: format!("catalog {}", hash.to_hex()),
            source,
        };
        let object = self.catalog_object(hash, size, mountpoint)?;
        if mountpoint.is_some() && !self.held.lock().expect("held catalogs").insert(*hash) {
            // Two threads loaded it at once: one hold is enough.
            self.source.release(hash);
        }
        let db = match object {
            Verified::Bytes(b) => CatalogDb::from_bytes(&b).map_err(cat_err)?,
            // A cached catalog is opened in place: SQLite pages it in as needed, so a large
            // catalog costs page cache, not resident memory.
            Verified::File(f) => CatalogDb::open_verified_file(&f).map_err(cat_err)?,
        };
        let db = Arc::new(Mutex::new(db));
        self.catalogs
            .lock()
            .expect("catalog map")
            .insert(*hash, db.clone());
        Ok(db)
    }

    /// The nested catalog references of catalog `hash` (loaded once).
    pub fn nested_of(
        &self,
        hash: &ContentHash,
        size: u64,
        mountpoint: Option<&[u8]>,
    ) -> Result<Arc<Vec<NestedRef>>, RepoError> {
        if let Some(n) = self.nested.lock().expect("nested map").get(hash) {
            return Ok(n.clone());
        }
        let db = self.catalog_at(hash, size, mountpoint)?;
        let list = db
            .lock()
            .expect("catalog")
            .nested()
            .map_err(|source| RepoError::Catalog {
                what: format!("catalog {}", hash.to_hex()),
                source,
            })?;
        let list = Arc::new(list);
        self.nested
            .lock()
            .expect("nested map")
            .insert(*hash, list.clone());
        Ok(list)
    }

    fn catalog_object(
        &self,
        hash: &ContentHash,
        size: u64,
        mountpoint: Option<&[u8]>,
    ) -> Result<Verified, RepoError> {
        let name = ObjectName::new(*hash, ObjectKind::Catalog);
        let req = ObjectRequest {
            name: &name,
            size: (size > 0).then_some(size),
            limit: if size > 0 {
                size.min(MAX_CATALOG)
            } else {
                MAX_CATALOG
            },
            compressed: true,
            mountpoint,
        };
        Ok(self.source.object(&req)?)
    }

    /// The decompressed, verified bytes of a catalog.
    pub fn catalog_bytes(&self, hash: &ContentHash, size: u64) -> Result<Vec<u8>, RepoError> {
        Ok(self.catalog_object(hash, size, None)?.into_bytes()?)
    }
}

/// Fetches an object, verifies its hash and inflates at most `limit` bytes.
pub fn fetch_object(
    source: &dyn ObjectSource,
    name: &ObjectName,
    limit: u64,
) -> Result<Vec<u8>, RepoError> {
    let req = ObjectRequest {
        name,
        size: None,
        limit,
        compressed: true,
        mountpoint: None,
    };
    Ok(source.object(&req)?.into_bytes()?)
}
