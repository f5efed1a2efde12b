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
        let rp = repo.repo.to_str().unwrap();
        let keys = repo.keys.to_str().unwrap();
        let cat = lazyroot(&["cat", "--repo", rp, "--keys", keys, "/big"]);
        assert!(
            !cat.status.success(),
            "{what}: cat printed {} bytes",
            cat.stdout.len()
        );
        let check = lazyroot(&["check", "--repo", rp, "--keys", keys]);
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
