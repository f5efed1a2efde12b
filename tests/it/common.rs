//! Shared helpers: repositories in temporary directories, the built CLI, the stock fixture.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use lazyroot::cvmfs::keys::{load_master_public, KeyPaths};
use lazyroot::publish::{self, lifecycle, NoProgress, PublishOptions, PublishReport};
use lazyroot::repository::check::check;
use lazyroot::repository::local::LocalStore;
use lazyroot::repository::{Repository, Trust};

pub const FQRN: &str = "test.example.org";

/// A repository with its keys in a temporary directory.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub keys: PathBuf,
    pub fqrn: String,
}

impl TestRepo {
    pub fn new() -> Self {
        Self::with_algo(lazyroot::cvmfs::hash::HashAlgo::Sha1)
    }

    pub fn with_algo(algo: lazyroot::cvmfs::hash::HashAlgo) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let keys = dir.path().join("keys");
        lifecycle::mkfs(&lifecycle::MkfsOptions {
            repo: repo.clone(),
            keys: keys.clone(),
            fqrn: FQRN.into(),
            algo,
            whitelist_days: 30,
            ttl: 240,
        })
        .unwrap();
        TestRepo {
            dir,
            repo,
            keys,
            fqrn: FQRN.into(),
        }
    }

    pub fn options(&self, source: &Path) -> PublishOptions {
        PublishOptions::new(&self.repo, &self.keys, source)
    }

    pub fn publish(&self, source: &Path) -> PublishReport {
        publish::publish(&self.options(source), &NoProgress).unwrap()
    }

    /// Publishes `source` at `path` inside the repository (an image of its own).
    pub fn publish_at(&self, source: &Path, path: &str) -> PublishReport {
        let mut o = self.options(source);
        o.path = path.as_bytes().to_vec();
        publish::publish(&o, &NoProgress).unwrap()
    }

    pub fn trust(&self) -> Trust {
        let pubkey =
            load_master_public(&KeyPaths::new(&self.keys, &self.fqrn).master_public()).unwrap();
        Trust {
            master_keys: vec![pubkey],
            fqrn: Some(self.fqrn.clone()),
            now: lazyroot::cvmfs::timefmt::now(),
        }
    }

    pub fn open(&self) -> Repository {
        Repository::open(Arc::new(LocalStore::new(&self.repo)), &self.trust()).unwrap()
    }

    /// Opens, verifies, and audits every object: the repository is whole and readable.
    pub fn assert_healthy(&self) -> Repository {
        let r = self.open();
        let report = check(&r);
        assert!(
            report.problems.is_empty(),
            "check found: {:#?}",
            report.problems
        );
        r
    }

    /// `lazyroot SUBCOMMAND --repo … --keys … ARGS` on this repository.
    pub fn cli(&self, subcommand: &str, args: &[&str]) -> Output {
        let (repo, keys) = (self.repo.to_str().unwrap(), self.keys.to_str().unwrap());
        lazyroot(&[&[subcommand, "--repo", repo, "--keys", keys], args].concat())
    }

    pub fn listing(&self) -> Vec<String> {
        let r = self.open();
        let snap = r.snapshot(&lazyroot::repository::At::Latest).unwrap();
        lazyroot::repository::listing::listing(&snap, b"").unwrap()
    }
}

/// Runs the built `lazyroot` binary.
pub fn lazyroot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lazyroot"))
        .args(args)
        .output()
        .expect("running lazyroot")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The shared folder beside the project (as CI lays it out).
pub fn shared() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(
        p.is_dir(),
        "../shared is missing beside the project: {}",
        p.display()
    );
    p
}

/// The stock fixture unpacked into a temporary directory: (dir, repo path, keys dir).
pub fn unpack_fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let fx = shared().join("fixtures/cvmfs-legacy-repo");
    for tarball in ["legacy_aufs_repo.tar.gz", "keys.tar.gz"] {
        let st = Command::new("tar")
            .arg("xzf")
            .arg(fx.join(tarball))
            .arg("-C")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "unpacking {tarball}");
    }
    // Unpacked read-only trees must be writable to re-sign them.
    let st = Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let repo = dir.path().join("srv/cvmfs/legacy_aufs.cern.ch");
    let keys = dir.path().join("etc/cvmfs/keys");
    (dir, repo, keys)
}

pub fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

/// Deterministic pseudo-random bytes (incompressible enough to exercise chunking).
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// Chunk sizes small enough that a few MiB make many chunks.
pub const SMALL_CHUNKS: lazyroot::publish::ChunkSizes = lazyroot::publish::ChunkSizes {
    min: 64 << 10,
    avg: 128 << 10,
    max: 256 << 10,
};

/// The verified content of `path` at revision `at`.
pub fn read_at(r: &Repository, at: lazyroot::repository::At, path: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    r.snapshot(&at).unwrap().read_file(path, &mut out).unwrap();
    out
}

/// Sets a file's mtime (and atime) without following symlinks.
pub fn set_mtime(path: &Path, secs: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// One catalog row as SQLite stores it, read without lazyroot's reader.
#[derive(Debug, Clone)]
pub struct RawRow {
    pub rowid: i64,
    pub key: (i64, i64),
    pub parent: (i64, i64),
    pub name: Vec<u8>,
    pub flags: i64,
    pub hardlinks: i64,
}

/// A catalog of the current revision: its mountpoint and its rows in row-id order.
#[derive(Debug, Clone)]
pub struct RawCatalog {
    pub mountpoint: Vec<u8>,
    pub rows: Vec<RawRow>,
}

/// The md5 path key as stock computes it: two little-endian signed 64-bit halves.
pub fn raw_path_key(path: &[u8]) -> (i64, i64) {
    use md5::Digest;
    let d = md5::Md5::digest(path);
    (
        i64::from_le_bytes(d[..8].try_into().unwrap()),
        i64::from_le_bytes(d[8..].try_into().unwrap()),
    )
}

/// Every catalog of the current revision, read straight from the repository's object files
/// (zlib, then SQLite): what a stock client or `cvmfs_swissknife` sees, independent of
/// lazyroot's reader.
pub fn raw_catalogs(repo: &Path) -> Vec<RawCatalog> {
    use std::io::Read;
    let manifest = std::fs::read(repo.join(".cvmfspublished")).unwrap();
    let root = manifest
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"C"))
        .map(|h| String::from_utf8(h.to_vec()).unwrap())
        .unwrap();
    let mut out = Vec::new();
    let mut todo = vec![(Vec::new(), root)];
    while let Some((mountpoint, hash)) = todo.pop() {
        let object = repo.join(format!("data/{}/{}C", &hash[..2], &hash[2..]));
        let mut bytes = Vec::new();
        flate2::read::ZlibDecoder::new(std::fs::File::open(&object).unwrap())
            .read_to_end(&mut bytes)
            .unwrap();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &bytes).unwrap();
        let db = rusqlite::Connection::open(tmp.path()).unwrap();
        let rows = db
            .prepare("SELECT rowid, md5path_1, md5path_2, parent_1, parent_2, CAST(name AS BLOB), flags, hardlinks FROM catalog ORDER BY rowid")
            .unwrap()
            .query_map([], |r| {
                Ok(RawRow {
                    rowid: r.get(0)?,
                    key: (r.get(1)?, r.get(2)?),
                    parent: (r.get(3)?, r.get(4)?),
                    name: r.get(5)?,
                    flags: r.get(6)?,
                    hardlinks: r.get(7)?,
                })
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let nested: Vec<(Vec<u8>, String)> = db
            .prepare("SELECT CAST(path AS BLOB), sha1 FROM nested_catalogs")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        todo.extend(nested);
        out.push(RawCatalog { mountpoint, rows });
    }
    out
}

/// What stock CernVM-FS's client and checker rely on, on the raw rows of every catalog:
/// row 1 is the catalog's own root entry (stock gives the root catalog's row 1 the mount
/// root's inode); hard-link groups lie within one directory, with as many links as members
/// there; every nested catalog has a `.cvmfscatalog` in its root directory.
pub fn assert_stock_rows(repo: &TestRepo) {
    assert_stock_rows_at(&repo.repo)
}

/// [`assert_stock_rows`] on any repository directory.
pub fn assert_stock_rows_at(repo: &Path) {
    for c in raw_catalogs(repo) {
        let at = String::from_utf8_lossy(&c.mountpoint).into_owned();
        let first = c
            .rows
            .first()
            .unwrap_or_else(|| panic!("catalog {at:?} is empty"));
        assert_eq!(
            (first.rowid, first.key),
            (1, raw_path_key(&c.mountpoint)),
            "row 1 of catalog {at:?} is {:?}, not the catalog's root entry",
            String::from_utf8_lossy(&first.name)
        );
        let mut groups: std::collections::HashMap<i64, Vec<&RawRow>> = Default::default();
        for r in c
            .rows
            .iter()
            .filter(|r| r.flags & 1 == 0 && r.hardlinks >> 32 != 0)
        {
            groups.entry(r.hardlinks >> 32).or_default().push(r);
        }
        for (g, members) in groups {
            let parents: std::collections::HashSet<_> = members.iter().map(|r| r.parent).collect();
            assert_eq!(
                parents.len(),
                1,
                "hard-link group {g} of {at:?} spans directories"
            );
            for m in &members {
                assert_eq!(
                    (m.hardlinks & 0xffff_ffff) as usize,
                    members.len(),
                    "link count of {:?} in {at:?}",
                    String::from_utf8_lossy(&m.name)
                );
            }
        }
        if !c.mountpoint.is_empty() {
            let root = raw_path_key(&c.mountpoint);
            assert!(
                c.rows
                    .iter()
                    .any(|r| r.parent == root && r.name == b".cvmfscatalog"),
                "nested catalog {at:?} has no .cvmfscatalog marker"
            );
        }
    }
}

/// Signs a hostile but valid next revision: the current root catalog with `sql` applied to
/// it (a single-catalog repository), stored, listed in the manifest and signed with the
/// repository's own keys, as a compromised or buggy publisher would.
pub fn resign_root_catalog_with(repo: &TestRepo, sql: &str) {
    use lazyroot::cvmfs::catalog::NestedRef;
    use lazyroot::cvmfs::object::ObjectKind;
    let r = repo.open();
    let m = r.manifest().clone();
    let bytes = r
        .catalog_bytes(&m.root_catalog, m.root_catalog_size)
        .unwrap();
    let conn = lazyroot::cvmfs::sqlite::from_bytes(&bytes, false).unwrap();
    conn.execute_batch(sql).unwrap();
    let bytes = lazyroot::cvmfs::sqlite::to_bytes(&conn).unwrap();
    let store = LocalStore::new(&repo.repo);
    let name = store
        .put(ObjectKind::Catalog, m.hash_algo(), &bytes)
        .unwrap();
    commit_root(
        repo,
        NestedRef {
            path: Vec::new(),
            hash: name.hash,
            size: bytes.len() as u64,
        },
        Vec::new(),
    );
}

/// Signs `root` (a root catalog already stored) as the next revision with the repository's
/// own keys, setting `tags` (name, description) on it.
pub fn commit_root(
    repo: &TestRepo,
    root: lazyroot::cvmfs::catalog::NestedRef,
    tags: Vec<(String, String)>,
) {
    use lazyroot::cvmfs::keys::SigningKeys;
    let r = repo.open();
    let m = r.manifest().clone();
    let keys = SigningKeys::load(&KeyPaths::new(&repo.keys, &repo.fqrn)).unwrap();
    publish::commit::commit(publish::commit::CommitInput {
        store: &LocalStore::new(&repo.repo),
        keys: &keys,
        fqrn: &repo.fqrn,
        algo: m.hash_algo(),
        root: &root,
        revision: m.revision + 1,
        now: m.timestamp + 1,
        ttl: m.ttl,
        old_manifest: Some(&m),
        history: r.history().unwrap(),
        tags,
        move_trunk: true,
    })
    .unwrap();
}

/// Every object file under `repo/data/00`…`ff`, as `XX/rest`, sorted.
pub fn object_names(repo: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..=255u8 {
        let d = format!("{i:02x}");
        if let Ok(rd) = std::fs::read_dir(repo.join("data").join(&d)) {
            for e in rd.flatten() {
                out.push(format!("{d}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}
