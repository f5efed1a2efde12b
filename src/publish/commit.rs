//! Making a revision visible: certificate, history and reflog first, a filesystem sync,
//! then the signed manifest, renamed into place last. Until that rename, readers see the
//! previous revision, whole.

use crate::cvmfs::catalog::NestedRef;
use crate::cvmfs::hash::HashAlgo;
use crate::cvmfs::history::{History, Tag, TRUNK, TRUNK_PREVIOUS};
use crate::cvmfs::keys::SigningKeys;
use crate::cvmfs::manifest::{Manifest, ROOT_PATH_MD5};
use crate::cvmfs::object::ObjectKind;
use crate::cvmfs::reflog::{self, RefType, Reflog};
use crate::repository::local::LocalStore;
use crate::repository::source::ObjectSource;
use crate::repository::MANIFEST_PATH;

use super::PublishError;

/// Everything a commit writes and signs.
pub struct CommitInput<'a> {
    /// The repository to write into.
    pub store: &'a LocalStore,
    /// Certificate and repository key that sign the manifest.
    pub keys: &'a SigningKeys,
    /// Repository name (manifest `N`; also names a new history or reflog).
    pub fqrn: &'a str,
    /// Hash algorithm of the certificate, history and reflog objects.
    pub algo: HashAlgo,
    /// The revision's root catalog (manifest `C` and `B`).
    pub root: &'a NestedRef,
    /// Revision number (manifest `S`).
    pub revision: u64,
    /// Publish time in Unix seconds (manifest `T`, tag and reflog timestamps).
    pub now: i64,
    /// Manifest TTL in seconds (`D`).
    pub ttl: u64,
    /// The manifest being replaced: the new history points back to its history, and its reflog
    /// is extended. `None` for a new repository.
    pub old_manifest: Option<&'a Manifest>,
    /// The history to extend (a new one is made if `None`).
    pub history: Option<History>,
    /// Tags to set on the new root, with descriptions.
    pub tags: Vec<(String, String)>,
    /// Whether `trunk` / `trunk-previous` move (a publish) or stay (a tag edit).
    pub move_trunk: bool,
}

fn tag(name: &str, description: &str, c: &CommitInput<'_>) -> Tag {
    Tag {
        name: name.to_string(),
        root_hash: c.root.hash,
        revision: c.revision,
        timestamp: c.now,
        description: description.to_string(),
        size: c.root.size,
    }
}

/// Stores the certificate, history and reflog, syncs the filesystem, then signs the
/// manifest and renames it into place; returns the new manifest.
pub fn commit(mut c: CommitInput<'_>) -> Result<Manifest, PublishError> {
    let cert = c.store.put(
        ObjectKind::Certificate,
        c.algo,
        c.keys.certificate_pem.as_bytes(),
    )?;

    let history = match c.history.take() {
        Some(h) => h,
        None => History::create(c.fqrn)?,
    };
    for (name, description) in &c.tags {
        history.insert(&tag(name, description, &c))?;
    }
    if c.move_trunk {
        // As `swissknife tag_edit`: the old trunk becomes trunk-previous, the new root trunk.
        history.remove(TRUNK_PREVIOUS)?;
        if let Some(mut t) = history.get(TRUNK)? {
            t.name = TRUNK_PREVIOUS.to_string();
            t.description = "default undo target".to_string();
            history.insert(&t)?;
        }
        history.insert(&tag(TRUNK, "current HEAD", &c))?;
    }
    if let Some(h) = c.old_manifest.and_then(|m| m.history) {
        history.set_previous(&h)?;
    }
    let history_name = c
        .store
        .put(ObjectKind::History, c.algo, &history.to_bytes()?)?;

    let reflog = load_reflog(c.store, c.old_manifest, c.fqrn)?;
    reflog.add(&c.root.hash, RefType::Catalog, c.now)?;
    reflog.add(&cert.hash, RefType::Certificate, c.now)?;
    reflog.add(&history_name.hash, RefType::History, c.now)?;
    let reflog_bytes = reflog.to_bytes()?;
    c.store.write_atomic(reflog::PATH, &reflog_bytes)?;

    let manifest = Manifest {
        root_catalog: c.root.hash,
        root_catalog_size: c.root.size,
        root_path_md5: ROOT_PATH_MD5.to_string(),
        ttl: c.ttl,
        revision: c.revision,
        garbage_collectable: false,
        alt_catalog_path: false,
        fqrn: c.fqrn.to_string(),
        certificate: Some(cert.hash),
        history: Some(history_name.hash),
        timestamp: c.now,
        meta_info: None,
        reflog: Some(c.algo.digest(&reflog_bytes)),
    };
    let signed = manifest.sign(&c.keys.repo_key)?;
    c.store.sync_filesystem()?;
    c.store.write_atomic(MANIFEST_PATH, &signed)?;
    Ok(manifest)
}

/// The reflog to extend: the previous one if it matches the previous manifest. One that
/// does not (a publish killed between writing it and writing its manifest) still lists
/// every root ever published, plus the killed publish's: kept, never replaced by an empty
/// one. Only an unreadable one is started anew, from the previous manifest's objects.
fn load_reflog(
    store: &LocalStore,
    old: Option<&Manifest>,
    fqrn: &str,
) -> Result<Reflog, PublishError> {
    let bytes = store.fetch(reflog::PATH, 1 << 30).ok();
    if let (Some(m), Some(bytes)) = (old, &bytes) {
        if m.reflog.is_some_and(|y| y.algo.digest(bytes) == y) {
            if let Ok(r) = Reflog::from_bytes(bytes) {
                return Ok(r);
            }
        }
    }
    let Some(m) = old else {
        return Ok(Reflog::create(fqrn)?);
    };
    let reflog = match bytes.as_deref().map(Reflog::from_bytes) {
        // A database that is not a reflog (no `refs` table) counts as unreadable.
        Some(Ok(r)) if r.count(RefType::Catalog).is_ok() => {
            tracing::warn!(
                "the reflog does not match the manifest (a publish was interrupted); \
                 keeping its list of roots"
            );
            r
        }
        _ if m.reflog.is_none() => Reflog::create(fqrn)?,
        _ => {
            tracing::warn!(
                "the reflog is missing or unreadable; starting a new one from revision {}",
                m.revision
            );
            Reflog::create(fqrn)?
        }
    };
    // Whatever was kept or started, the current revision's objects are in it.
    reflog.add(&m.root_catalog, RefType::Catalog, m.timestamp)?;
    if let Some(c) = &m.certificate {
        reflog.add(c, RefType::Certificate, m.timestamp)?;
    }
    if let Some(h) = &m.history {
        reflog.add(h, RefType::History, m.timestamp)?;
    }
    Ok(reflog)
}
