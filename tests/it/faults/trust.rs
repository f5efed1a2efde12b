//! Trust failures: a forged manifest, an expired whitelist, a wrong name, a rollback.

use super::*;

// --- e. Trust failures -----------------------------------------------------------------

fn open_err(fqrn: &str, url: &str, cache: &Path, trust: Trust) -> RemoteError {
    match open_remote(fqrn, url, cache, trust) {
        Ok((r, _)) => panic!(
            "opened revision {} though it must be refused",
            r.manifest().revision
        ),
        Err(e) => e,
    }
}

#[test]
fn manifest_signed_by_another_repository_key_is_refused() {
    let fx = fixture();
    let other = TestRepo::new();
    let path = fx.repo.repo.join(".cvmfspublished");
    let (m, _) = Manifest::parse_unverified(&std::fs::read(&path).unwrap()).unwrap();
    let key = load_private_key(&other.keys.join(format!("{FQRN}.key"))).unwrap();
    std::fs::write(&path, m.sign(&key).unwrap()).unwrap();

    let server = Server::start(&[&fx.repo.repo]);
    let e = open_err(
        FQRN,
        &server.url(FQRN),
        &fx.dir().join("cache"),
        fx.repo.trust(),
    );
    let msg = e.to_string();
    assert!(
        ["signature", "certificate", "whitelist"]
            .iter()
            .any(|w| msg.contains(w)),
        "{msg}"
    );
}

#[test]
fn expired_whitelist_is_refused() {
    let fx = fixture();
    let path = fx.repo.repo.join(".cvmfswhitelist");
    let trust = fx.repo.trust();
    let current = Whitelist::verify(&std::fs::read(&path).unwrap(), &trust.master_keys).unwrap();
    let now = lazyroot::cvmfs::timefmt::now();
    let expired = Whitelist {
        created: now - 40 * 86_400,
        expires: now - 10 * 86_400,
        ..current
    };
    let master = load_private_key(&fx.repo.keys.join(format!("{FQRN}.masterkey"))).unwrap();
    std::fs::write(&path, expired.sign(&master).unwrap()).unwrap();

    let server = Server::start(&[&fx.repo.repo]);
    let msg = open_err(FQRN, &server.url(FQRN), &fx.dir().join("cache"), trust).to_string();
    assert!(msg.contains("expired"), "{msg}");
}

#[test]
fn wrong_repository_name_is_refused_naming_both() {
    let fx = fixture();
    let server = Server::start(&[&fx.repo.repo]);
    let mut trust = fx.repo.trust();
    trust.fqrn = Some("other.example.org".into());
    // A client configured for other.example.org, pointed at test.example.org's server.
    let msg = open_err(
        "other.example.org",
        &server.url(FQRN),
        &fx.dir().join("cache"),
        trust,
    )
    .to_string();
    assert!(
        msg.contains("other.example.org") && msg.contains(FQRN),
        "{msg}"
    );
}

/// The fixture (revision 2) copied aside, then revision 3 published: (fixture, the copy).
fn revision_3_beside_a_copy_of_revision_2() -> (Fixture, PathBuf) {
    let fx = fixture();
    let old = fx.dir().join("repo-r2");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&fx.repo.repo)
        .arg(&old)
        .status()
        .unwrap();
    assert!(st.success());
    write(&fx.src.join("etc/motd"), b"welcome to revision 3\n");
    fx.repo.publish(&fx.src);
    (fx, old)
}

#[test]
fn older_revision_than_the_breadcrumb_is_a_rollback() {
    let (fx, old) = revision_3_beside_a_copy_of_revision_2();
    let d = fx.dir();

    let cache = d.join("cache");
    let new_server = Server::start(&[&fx.repo.repo]);
    let (r, mode) = open_remote(FQRN, &new_server.url(FQRN), &cache, fx.repo.trust()).unwrap();
    assert_eq!((r.manifest().revision, mode), (3, Mode::Online));
    drop(new_server);

    let old_server = Server::start(&[&old]);
    match open_err(FQRN, &old_server.url(FQRN), &cache, fx.repo.trust()) {
        RemoteError::Rollback { offered, seen, .. } => assert_eq!((offered, seen), (2, 3)),
        other => panic!("expected a rollback refusal, got: {other}"),
    }
    // A fresh cache has no breadcrumb: revision 2 itself is fine (the refusal was memory).
    let (r, _) = open_remote(
        FQRN,
        &old_server.url(FQRN),
        &d.join("cache2"),
        fx.repo.trust(),
    )
    .unwrap();
    assert_eq!(r.manifest().revision, 2);
}

/// A newer revision signed by a publisher whose clock stepped back (an older timestamp) is
/// no rollback: as upstream, revisions decide, and every client takes it.
#[test]
fn a_newer_revision_with_an_older_timestamp_is_accepted() {
    let fx = fixture(); // revision 2
    let d = fx.dir();
    let cache = d.join("cache");
    let server = Server::start(&[&fx.repo.repo]);
    let (r, _) = open_remote(FQRN, &server.url(FQRN), &cache, fx.repo.trust()).unwrap();
    let m = r.manifest().clone();
    assert_eq!(m.revision, 2);
    // Revision 3, its timestamp an hour before revision 2's.
    let keys = lazyroot::cvmfs::keys::SigningKeys::load(&lazyroot::cvmfs::keys::KeyPaths::new(
        &fx.repo.keys,
        FQRN,
    ))
    .unwrap();
    lazyroot::publish::commit::commit(lazyroot::publish::commit::CommitInput {
        store: &lazyroot::repository::local::LocalStore::new(&fx.repo.repo),
        keys: &keys,
        fqrn: FQRN,
        algo: m.hash_algo(),
        root: &lazyroot::cvmfs::catalog::NestedRef {
            path: Vec::new(),
            hash: m.root_catalog,
            size: m.root_catalog_size,
        },
        revision: 3,
        now: m.timestamp - 3600,
        ttl: m.ttl,
        old_manifest: Some(&m),
        history: r.history().unwrap(),
        tags: Vec::new(),
        move_trunk: true,
    })
    .unwrap();
    let (r, mode) = open_remote(FQRN, &server.url(FQRN), &cache, fx.repo.trust())
        .unwrap_or_else(|e| panic!("revision 3 with an older timestamp: {e}"));
    assert_eq!((r.manifest().revision, mode), (3, Mode::Online));
}

/// A damaged breadcrumb does not switch rollback protection off: the revision of the
/// manifest saved with it still refuses an older one.
#[test]
fn a_damaged_breadcrumb_still_refuses_a_rollback() {
    let (fx, old) = revision_3_beside_a_copy_of_revision_2();
    let d = fx.dir();
    let cache = d.join("cache");
    let new_server = Server::start(&[&fx.repo.repo]);
    let (r, _) = open_remote(FQRN, &new_server.url(FQRN), &cache, fx.repo.trust()).unwrap();
    assert_eq!(r.manifest().revision, 3);
    drop(new_server);
    let crumb = cache.join("repos").join(FQRN).join("breadcrumb");
    assert!(crumb.exists());
    std::fs::write(&crumb, b"\x00garbage").unwrap();
    let old_server = Server::start(&[&old]);
    match open_err(FQRN, &old_server.url(FQRN), &cache, fx.repo.trust()) {
        RemoteError::Rollback { offered, seen, .. } => assert_eq!((offered, seen), (2, 3)),
        other => panic!("expected a rollback refusal with a damaged breadcrumb, got: {other}"),
    }
}
