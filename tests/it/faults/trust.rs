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

/// Writes a whitelist of the fixture's repository, signed by its master key, valid from
/// `created` to `expires` (Unix seconds), into repository directory `dir`.
fn write_whitelist(fx: &Fixture, dir: &Path, created: i64, expires: i64) {
    let trust = fx.repo.trust();
    let path = fx.repo.repo.join(".cvmfswhitelist");
    let current = Whitelist::verify(&std::fs::read(&path).unwrap(), &trust.master_keys).unwrap();
    let master = load_private_key(&fx.repo.keys.join(format!("{FQRN}.masterkey"))).unwrap();
    let w = Whitelist {
        created,
        expires,
        ..current
    };
    std::fs::write(dir.join(".cvmfswhitelist"), w.sign(&master).unwrap()).unwrap();
}

/// A long-lived unpinned mount checks the whitelist against the clock at every refresh,
/// not at its start: a mount that started 50 days ago, when the whitelist was valid, must
/// not take a new revision under a whitelist that expired 10 days ago. Once the whitelist
/// is re-signed, the same mount moves on.
#[test]
fn a_refresh_checks_whitelist_expiry_against_the_clock_now() {
    let fx = fixture();
    // Revisions with a one-second TTL, so the mount looks for a newer one at once.
    let publish = |fx: &Fixture| {
        let mut o = fx.repo.options(&fx.src);
        o.ttl = 1;
        lazyroot::publish::publish(&o, &lazyroot::publish::NoProgress).unwrap();
    };
    publish(&fx);
    let served = fx.dir().join("served");
    let copy = |from: &Path| {
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(&served)
            .status()
            .unwrap();
        assert!(st.success());
    };
    std::fs::create_dir_all(&served).unwrap();
    copy(&fx.repo.repo);
    let now = lazyroot::cvmfs::timefmt::now();
    write_whitelist(&fx, &served, now - 100 * 86_400, now - 10 * 86_400);

    let server = Server::start(&[&served]);
    let mut trust = fx.repo.trust();
    trust.now = now - 50 * 86_400;
    let src = source(FQRN, &server.url(FQRN), &fx.dir().join("cache"));
    let (repo, mode) = remote::open(src.clone(), &trust).unwrap();
    let (root, size) = (
        repo.manifest().root_catalog,
        repo.manifest().root_catalog_size,
    );
    let opened = lazyroot::remote::stack::Opened { repo, mode, trust };
    let tree = MountedTree::new(src, opened, root, size, false).unwrap();
    let etc = tree.lookup(ROOT, b"etc").unwrap().ino;
    assert!(tree.lookup(etc, b"added").is_err());

    // A new revision on the server, still under the expired whitelist.
    write(&fx.src.join("etc/added"), b"new in the next revision\n");
    publish(&fx);
    copy(&fx.repo.repo);
    write_whitelist(&fx, &served, now - 100 * 86_400, now - 10 * 86_400);
    std::thread::sleep(Duration::from_millis(1500));
    let etc = tree.lookup(ROOT, b"etc").unwrap().ino;
    assert!(
        tree.lookup(etc, b"added").is_err(),
        "a revision under a whitelist expired 10 days ago was taken"
    );

    // Re-signed: the next refresh takes it.
    write_whitelist(&fx, &served, now - 86_400, now + 30 * 86_400);
    std::thread::sleep(Duration::from_millis(1500));
    let etc = tree.lookup(ROOT, b"etc").unwrap().ino;
    tree.lookup(etc, b"added")
        .expect("the new revision, once the whitelist is valid");
}
