//! Repository lifecycle besides publishing: `mkfs` (keys, whitelist, revision 1 with an
//! empty root), `resign` (a fresh whitelist) and tag edits.

use std::path::{Path, PathBuf};

use crate::cvmfs::catalog::schema::flags;
use crate::cvmfs::catalog::writer::{self, CatalogProperties};
use crate::cvmfs::catalog::{CatalogContent, Counters, NestedRef, Row};
use crate::cvmfs::hash::{ContentHash, HashAlgo, PathKey};
use crate::cvmfs::history::validate_tag_name;
use crate::cvmfs::keys::{self, KeyPaths, SigningKeys};
use crate::cvmfs::manifest::Manifest;
use crate::cvmfs::object::ObjectKind;
use crate::cvmfs::timefmt;
use crate::cvmfs::whitelist::Whitelist;
use crate::repository::local::LocalStore;
use crate::repository::{RepoError, WHITELIST_PATH};

use super::build::dir_entry;
use super::commit::{commit, CommitInput};
use super::walk::Meta;
use super::{lock, open_current, PublishError};

/// What `mkfs` creates.
pub struct MkfsOptions {
    /// The repository directory to create.
    pub repo: PathBuf,
    /// Directory of the keys; missing ones are generated there.
    pub keys: PathBuf,
    /// Repository name (fqrn).
    pub fqrn: String,
    /// Hash algorithm of the repository's objects.
    pub algo: HashAlgo,
    /// Days the first whitelist is valid.
    pub whitelist_days: i64,
    /// Manifest and root catalog TTL in seconds.
    pub ttl: u64,
}

/// Creates a repository: keys (those missing), whitelist, and revision 1 with an empty root.
pub fn mkfs(o: &MkfsOptions) -> Result<Manifest, PublishError> {
    crate::cvmfs::fqrn::validate(&o.fqrn)?;
    let store = LocalStore::new(&o.repo);
    if store.path_of(crate::repository::MANIFEST_PATH).exists() {
        return Err(PublishError::AlreadyExists(o.repo.clone()));
    }
    let paths = KeyPaths::new(&o.keys, &o.fqrn);
    keys::ensure_keys(&paths)?;
    let signing = SigningKeys::load(&paths)?;
    store.create_layout()?;
    let _lock = lock(&store)?;
    write_whitelist(&store, &paths, &signing, o.algo, o.whitelist_days)?;

    let now = timefmt::now();
    let meta = Meta {
        mode: libc::S_IFDIR | 0o755,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        size: 4096,
        mtime: now,
        mtime_ns: 0,
        ctime: now,
        ctime_ns: 0,
        rdev: 0,
        dev: 0,
        ino: 0,
        nlink: 2,
    };
    let mut content = CatalogContent::new(Vec::new());
    let key = PathKey::of(b"");
    content.rows.insert(
        key,
        Row {
            key,
            parent: PathKey::NONE,
            entry: dir_entry(b"", &meta, None, 0, flags::DIR),
        },
    );
    let counters = Counters::of(&content);
    let props = CatalogProperties {
        revision: 1,
        last_modified: now,
        previous_revision: None,
        ttl: Some(o.ttl),
    };
    let bytes = writer::write(&content, &props, &counters, &Counters::default())
        .map_err(|e| PublishError::Catalog(e.to_string()))?;
    let name = store.put(ObjectKind::Catalog, o.algo, &bytes)?;
    let root = NestedRef {
        path: Vec::new(),
        hash: name.hash,
        size: bytes.len() as u64,
    };
    let manifest = commit(CommitInput {
        store: &store,
        keys: &signing,
        fqrn: &o.fqrn,
        algo: o.algo,
        root: &root,
        revision: 1,
        now,
        ttl: o.ttl,
        old_manifest: None,
        history: None,
        tags: Vec::new(),
        move_trunk: true,
    })?;
    // Marks the repository as replicable by Stratum 1 servers.
    store.write_atomic(".cvmfs_master_replica", b"")?;
    Ok(manifest)
}

fn write_whitelist(
    store: &LocalStore,
    paths: &KeyPaths,
    signing: &SigningKeys,
    algo: HashAlgo,
    days: i64,
) -> Result<Whitelist, PublishError> {
    let master = keys::load_master_key(paths).map_err(crate::cvmfs::keys::KeysError::from)?;
    let fp = signing.certificate().fingerprint(algo);
    let wl = Whitelist::new(&paths.fqrn, fp, timefmt::now(), days);
    store.write_atomic(WHITELIST_PATH, &wl.sign(&master)?)?;
    Ok(wl)
}

/// Signs a new whitelist for the repository's certificate, valid `days` from now.
pub fn resign(repo: &Path, keys_dir: &Path, days: i64) -> Result<Whitelist, PublishError> {
    use crate::repository::source::ObjectSource;
    let store = LocalStore::new(repo);
    let _lock = lock(&store)?;
    let raw = store
        .fetch(
            crate::repository::MANIFEST_PATH,
            crate::cvmfs::letter::MAX_LETTER as u64,
        )
        .map_err(RepoError::from)?;
    let (m, letter) = Manifest::parse_unverified(&raw)?;
    let paths = KeyPaths::new(keys_dir, &m.fqrn);
    let signing = SigningKeys::load(&paths)?;
    // Only re-sign a manifest our own certificate signed.
    Manifest::verify_letter(&letter, &signing.repo_key.to_public_key())?;
    write_whitelist(&store, &paths, &signing, m.hash_algo(), days)
}

/// Adds (or moves) a tag to `root` (default: the current root) or removes one; the
/// manifest is re-signed with a new history, revision and root unchanged.
pub fn edit_tag(
    repo: &Path,
    keys_dir: &Path,
    add: Option<(&str, Option<ContentHash>, &str)>,
    remove: Option<&str>,
) -> Result<Manifest, PublishError> {
    let store = LocalStore::new(repo);
    let _lock = lock(&store)?;
    let (current, paths) = open_current(&store, keys_dir)?;
    let signing = super::signing_keys(&current, &paths)?;

    let m = current.manifest().clone();
    let history = current.history()?;
    let history = match history {
        Some(h) => h,
        None => crate::cvmfs::history::History::create(&m.fqrn)?,
    };
    if let Some(name) = remove {
        if !history.remove(name)? {
            return Err(RepoError::UnknownTag(name.to_string()).into());
        }
    }
    let mut tags = Vec::new();
    if let Some((name, root, description)) = add {
        validate_tag_name(name)?;
        if let Some(root) = root.filter(|r| *r != m.root_catalog) {
            // Tagging an older root: it must exist and be a catalog of this repository.
            let bytes = current.catalog_bytes(&root, 0)?;
            let tag = crate::cvmfs::history::Tag {
                name: name.to_string(),
                root_hash: root,
                revision: crate::cvmfs::catalog::CatalogDb::from_bytes(&bytes)
                    .ok()
                    .and_then(|db| db.property("revision").ok().flatten())
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0),
                timestamp: timefmt::now(),
                description: description.to_string(),
                size: bytes.len() as u64,
            };
            history.insert(&tag)?;
        } else {
            tags.push((name.to_string(), description.to_string()));
        }
    }
    let root = NestedRef {
        path: Vec::new(),
        hash: m.root_catalog,
        size: m.root_catalog_size,
    };
    commit(CommitInput {
        store: &store,
        keys: &signing,
        fqrn: &m.fqrn,
        algo: m.hash_algo(),
        root: &root,
        revision: m.revision,
        now: timefmt::now().max(m.timestamp),
        ttl: m.ttl,
        old_manifest: Some(&m),
        history: Some(history),
        tags,
        move_trunk: false,
    })
}
