//! Shared helpers: repositories in temporary directories, the built CLI, the stock fixture.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use lazyroot::check::check;
use lazyroot::keys::{load_master_public, KeyPaths};
use lazyroot::publish::{self, mkfs, NoProgress, PublishOptions, PublishReport};
use lazyroot::repository::{Repository, Trust};
use lazyroot::store::LocalStore;

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
        Self::with_algo(lazyroot::hash::HashAlgo::Sha1)
    }

    pub fn with_algo(algo: lazyroot::hash::HashAlgo) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let keys = dir.path().join("keys");
        mkfs::mkfs(&mkfs::MkfsOptions {
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
            now: lazyroot::timefmt::now(),
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

    pub fn listing(&self) -> Vec<String> {
        let r = self.open();
        let snap = r.snapshot(&lazyroot::repository::At::Latest).unwrap();
        lazyroot::listing::listing(&snap, b"").unwrap()
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
