//! Hostile but validly signed catalogs: a publisher (compromised, or buggy) signs rows that
//! no honest writer makes. Readers refuse them clearly, the mount with EIO, and never hand
//! out short or misplaced bytes.

use crate::common::*;
use crate::net::*;

/// A chunked file of 200 KB in small chunks, published and signed, then its chunk list
/// rewritten by `sql` and signed again.
fn chunked_then(sql: &str) -> TestRepo {
    let repo = TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("big"), &noise(7, 200_000));
    write(&src.path().join("small"), b"fine\n");
    let mut o = repo.options(src.path());
    o.chunking = Some(lazyroot::publish::ChunkSizes {
        min: 1024,
        avg: 4096,
        max: 16384,
    });
    lazyroot::publish::publish(&o, &lazyroot::publish::NoProgress).unwrap();
    resign_root_catalog_with(&repo, sql);
    repo
}

/// The chunk with the second-lowest offset (never the first, which starts at 0).
const SECOND: &str = "(SELECT offset FROM chunks ORDER BY offset LIMIT 1 OFFSET 1)";

#[test]
fn chunk_lists_that_do_not_cover_the_file_are_refused_by_every_reader() {
    let cases = [
        (
            "gap",
            format!("UPDATE chunks SET offset = offset + 1 WHERE offset = {SECOND};"),
        ),
        (
            "overlap",
            format!("UPDATE chunks SET offset = offset - 1 WHERE offset = {SECOND};"),
        ),
        (
            "negative offset",
            "UPDATE chunks SET offset = -4096 WHERE offset = 0;".to_string(),
        ),
        (
            "negative size",
            format!("UPDATE chunks SET size = -1 WHERE offset = {SECOND};"),
        ),
        (
            "missing chunk",
            format!("DELETE FROM chunks WHERE offset = {SECOND};"),
        ),
        (
            "size beyond the chunks",
            "UPDATE catalog SET size = size + 10 WHERE name = 'big';".to_string(),
        ),
    ];
    for (what, sql) in cases {
        let repo = chunked_then(&sql);
        let keys = repo.keys.to_str().unwrap();
        let cat = repo.cli("cat", &["/big"]);
        assert!(
            !cat.status.success(),
            "{what}: cat printed {} bytes",
            cat.stdout.len()
        );
        let check = repo.cli("check", &[]);
        assert!(!check.status.success(), "{what}: check found nothing");

        let server = Server::start(&[&repo.repo]);
        let dir = tempfile::tempdir().unwrap();
        let key = format!("{keys}/{}.pub", repo.fqrn);
        let cache = dir.path().join("cache");
        let m = Mount::start(
            &repo.fqrn,
            &dir.path().join("mnt"),
            &[
                "--server",
                &server.url(&repo.fqrn),
                "--key",
                &key,
                "--cache",
                cache.to_str().unwrap(),
            ],
        );
        let read = std::fs::read(m.dir.join("big"));
        match read {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{what}: {e}"),
            Ok(bytes) => panic!(
                "{what}: the mount read {} bytes of a file whose chunk list is wrong{}",
                bytes.len(),
                if bytes == noise(7, 200_000) {
                    ""
                } else {
                    " (and they are wrong)"
                }
            ),
        }
        // The rest of the revision reads as it should.
        assert_eq!(std::fs::read(m.dir.join("small")).unwrap(), b"fine\n");
        drop(m);
    }
}

/// A small tree published, then its root catalog rewritten by `sql` and signed again.
fn tree_then(sql: &str) -> TestRepo {
    let repo = TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("med/x"), b"x\n");
    write(&src.path().join("small"), b"fine\n");
    write(&src.path().join("other"), b"other\n");
    repo.publish(src.path());
    resign_root_catalog_with(&repo, sql);
    repo
}

/// Mounts `repo` (served over HTTP) or returns the mount's refusal.
fn try_mount(repo: &TestRepo, dir: &std::path::Path, server: &Server) -> Result<Mount, String> {
    let key = repo.keys.join(format!("{}.pub", repo.fqrn));
    let cache = dir.join("cache");
    Mount::try_start(
        &repo.fqrn,
        &dir.join("mnt"),
        &[
            "--server",
            &server.url(&repo.fqrn),
            "--key",
            key.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ],
    )
}

fn check_fails(repo: &TestRepo, what: &str) {
    let out = repo.cli("check", &[]);
    assert!(
        !out.status.success(),
        "{what}: check found nothing: {}",
        stdout(&out)
    );
}

/// A directory that names itself as its parent vanishes from every listing: check reports
/// it and the mount answers EIO for it rather than a directory no listing shows.
#[test]
fn a_directory_that_is_its_own_parent_is_refused() {
    let repo = tree_then(
        "UPDATE catalog SET parent_1 = md5path_1, parent_2 = md5path_2 WHERE name = 'med';",
    );
    check_fails(&repo, "self-parent");
    let server = Server::start(&[&repo.repo]);
    let d = tempfile::tempdir().unwrap();
    let m = try_mount(&repo, d.path(), &server).unwrap();
    let e = std::fs::metadata(m.dir.join("med")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_eq!(std::fs::read(m.dir.join("small")).unwrap(), b"fine\n");
}

/// Two children with one name (one under a key that is not its path's): the listing is
/// refused (EIO), never two entries of one name.
#[test]
fn duplicate_children_are_refused() {
    let repo = tree_then("UPDATE catalog SET name = 'small' WHERE name = 'other';");
    check_fails(&repo, "duplicate names");
    let server = Server::start(&[&repo.repo]);
    let d = tempfile::tempdir().unwrap();
    let m = try_mount(&repo, d.path(), &server).unwrap();
    let e = std::fs::read_dir(&m.dir)
        .and_then(|rd| rd.collect::<Result<Vec<_>, _>>())
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
}

/// A root catalog without a root directory, of an unknown schema revision, or empty: the
/// mount refuses to come up, naming why, and check reports it.
#[test]
fn unusable_root_catalogs_refuse_the_mount() {
    let cases = [
        (
            "no root entry",
            "DELETE FROM catalog WHERE name = '';",
            "no root directory",
        ),
        (
            "unknown schema revision",
            "UPDATE properties SET value = '8' WHERE key = 'schema_revision';",
            "not one this reader knows",
        ),
        (
            "newer schema",
            "UPDATE properties SET value = '3.0' WHERE key = 'schema';",
            "not one this reader knows",
        ),
    ];
    for (what, sql, why) in cases {
        let repo = tree_then(sql);
        check_fails(&repo, what);
        let server = Server::start(&[&repo.repo]);
        let d = tempfile::tempdir().unwrap();
        match try_mount(&repo, d.path(), &server) {
            Ok(_) => panic!("{what}: mounted"),
            Err(e) => assert!(e.contains(why), "{what}: {e}"),
        }
    }
    // An empty database as the root catalog.
    let repo = tree_then("SELECT 1;");
    let store = lazyroot::repository::local::LocalStore::new(&repo.repo);
    let algo = repo.open().manifest().hash_algo();
    let name = store
        .put(lazyroot::cvmfs::object::ObjectKind::Catalog, algo, b"")
        .unwrap();
    commit_root(
        &repo,
        lazyroot::cvmfs::catalog::NestedRef {
            path: Vec::new(),
            hash: name.hash,
            size: 0,
        },
        Vec::new(),
    );
    check_fails(&repo, "empty catalog");
    let server = Server::start(&[&repo.repo]);
    let d = tempfile::tempdir().unwrap();
    match try_mount(&repo, d.path(), &server) {
        Ok(_) => panic!("empty catalog: mounted"),
        Err(e) => assert!(e.contains("empty catalog"), "empty catalog: {e}"),
    }
}
