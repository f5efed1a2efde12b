//! The stock-published fixture: read exactly as its expected listing says, expired whitelist
//! refused, re-signed whitelist accepted, and a lazyroot publish into it keeps it whole.

use std::sync::Arc;

use lazyroot::cvmfs::keys::{load_master_key, load_master_public, KeyPaths};
use lazyroot::cvmfs::whitelist::{Whitelist, WhitelistError};
use lazyroot::repository::local::LocalStore;
use lazyroot::repository::{RepoError, Repository, Trust};

use crate::common::*;

const FQRN: &str = "legacy_aufs.cern.ch";

fn trust(keys: &std::path::Path) -> Trust {
    let pubkey = load_master_public(&KeyPaths::new(keys, FQRN).master_public()).unwrap();
    Trust {
        master_keys: vec![pubkey],
        fqrn: Some(FQRN.into()),
        now: lazyroot::cvmfs::timefmt::now(),
    }
}

fn expected() -> String {
    std::fs::read_to_string(shared().join("fixtures/cvmfs-legacy-repo/expected-listing.tsv"))
        .unwrap()
}

#[test]
fn expired_whitelist_is_refused() {
    let (_d, repo, keys) = unpack_fixture();
    let err = Repository::open(Arc::new(LocalStore::new(&repo)), &trust(&keys))
        .err()
        .expect("must be refused");
    assert!(
        matches!(err, RepoError::Whitelist(WhitelistError::Expired(_))),
        "{err}"
    );
    assert!(err.to_string().contains("2015-11-20"), "{err}");
}

#[test]
fn whitelist_resigned_by_our_code_is_accepted_and_listing_matches() {
    let (_d, repo, keys) = unpack_fixture();
    // Re-sign with lazyroot's own signing code and the fixture's master key, keeping the
    // fingerprints of the stock whitelist.
    let raw = std::fs::read(repo.join(".cvmfswhitelist")).unwrap();
    let master = load_master_key(&KeyPaths::new(&keys, FQRN)).unwrap();
    let old = Whitelist::verify(&raw, &[master.to_public_key()])
        .expect("the stock whitelist signature verifies");
    let now = lazyroot::cvmfs::timefmt::now();
    let fresh = Whitelist {
        created: now,
        expires: now + 86_400,
        ..old
    };
    std::fs::write(repo.join(".cvmfswhitelist"), fresh.sign(&master).unwrap()).unwrap();

    let r = Repository::open(Arc::new(LocalStore::new(&repo)), &trust(&keys)).unwrap();
    assert_eq!(r.manifest().revision, 2);
    let snap = r.snapshot(&lazyroot::repository::At::Latest).unwrap();
    let got = lazyroot::repository::listing::listing(&snap, b"")
        .unwrap()
        .join("\n")
        + "\n";
    assert_eq!(got, expected());
    let report = lazyroot::repository::check::check(&r);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.catalogs, 7);
}

#[test]
fn cli_resign_then_ls_reproduces_expected_listing() {
    let (_d, repo, keys) = unpack_fixture();
    let (repo, keys) = (repo.to_str().unwrap(), keys.to_str().unwrap());
    let o = lazyroot(&["ls", "--repo", repo, "--keys", keys]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("expired"), "{}", stderr(&o));
    let o = lazyroot(&["resign", "--repo", repo, "--keys", keys]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lazyroot(&["ls", "-R", "--repo", repo, "--keys", keys]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected());
    // Tags written by stock CernVM-FS pin older revisions.
    let o = lazyroot(&[
        "ls",
        "--repo",
        repo,
        "--keys",
        keys,
        "--tag",
        "trunk-previous",
        "/",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn publishing_into_a_stock_repository_keeps_everything_else() {
    let (d, repo, keys) = unpack_fixture();
    let (rs, ks) = (repo.to_str().unwrap(), keys.to_str().unwrap());
    assert!(lazyroot(&["resign", "--repo", rs, "--keys", ks])
        .status
        .success());
    let src = d.path().join("img");
    write(&src.join("etc/hostname"), b"lazy\n");
    let o = lazyroot(&[
        "publish",
        src.to_str().unwrap(),
        "--repo",
        rs,
        "--keys",
        ks,
        "--path",
        "/images/one",
        "--tag",
        "one",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lazyroot(&["ls", "-R", "--repo", rs, "--keys", ks]);
    let listing = stdout(&o);
    let old: Vec<&str> = listing
        .lines()
        .filter(|l| !l.starts_with("/images"))
        .collect();
    assert_eq!(
        old.join("\n") + "\n",
        expected(),
        "entries outside --path are untouched"
    );
    assert!(listing.contains("/images/one/etc/hostname\tf\t"));
    let o = lazyroot(&["check", "--repo", rs, "--keys", ks]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = lazyroot(&[
        "cat",
        "--repo",
        rs,
        "--keys",
        ks,
        "--tag",
        "one",
        "/images/one/etc/hostname",
    ]);
    assert_eq!(stdout(&o), "lazy\n");
}
