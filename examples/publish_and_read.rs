//! The library in a few lines: create a repository, publish a tree under a path, open it
//! with the master public key, and read a file back, verified.
//!
//! `cargo run --example publish_and_read`

use std::sync::Arc;

use lazyroot::cvmfs::keys::{load_master_public, KeyPaths};
use lazyroot::publish::{self, lifecycle, NoProgress, PublishOptions};
use lazyroot::repository::local::LocalStore;
use lazyroot::repository::{At, Repository, Trust};

fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let (repo, keys, image) = (
        work.path().join("repo"),
        work.path().join("keys"),
        work.path().join("image"),
    );
    std::fs::create_dir_all(image.join("etc"))?;
    std::fs::write(image.join("etc/os-release"), "NAME=example\n")?;

    lifecycle::mkfs(&lifecycle::MkfsOptions {
        repo: repo.clone(),
        keys: keys.clone(),
        fqrn: "example.lazyroot.org".into(),
        algo: lazyroot::cvmfs::hash::HashAlgo::Sha1,
        whitelist_days: 30,
        ttl: 240,
    })?;
    let mut opts = PublishOptions::new(&repo, &keys, &image);
    opts.path = b"/images/example".to_vec();
    opts.tag = Some("example-1".into());
    let report = publish::publish(&opts, &NoProgress)?;
    println!(
        "published revision {} with root hash {}",
        report.revision, report.root.hash
    );

    // A reader needs only the directory (or, later, a URL) and the master public key.
    let master = load_master_public(&KeyPaths::new(&keys, "example.lazyroot.org").master_public())?;
    let trust = Trust {
        master_keys: vec![master],
        fqrn: None,
        now: lazyroot::cvmfs::timefmt::now(),
    };
    let r = Repository::open(Arc::new(LocalStore::new(&repo)), &trust)?;
    let snap = r.snapshot(&At::Tag("example-1".into()))?;
    let mut out = Vec::new();
    snap.read_file(b"/images/example/etc/os-release", &mut out)?;
    print!("{}", String::from_utf8_lossy(&out));
    Ok(())
}
