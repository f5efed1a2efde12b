//! Incremental publishing: unchanged files are not read again, unchanged catalogs are kept,
//! a changed file costs only itself, and images under --path leave each other alone.

use lazyroot::publish::{self, NoProgress};
use lazyroot::repository::At;

use crate::common::*;

fn tree(root: &std::path::Path, n: usize) {
    for i in 0..n {
        write(
            &root.join(format!("d{}/f{i}", i % 7)),
            format!("file {i}\n").as_bytes(),
        );
    }
    write(&root.join("d0/.cvmfscatalog"), b"");
    write(&root.join("d1/.cvmfscatalog"), b"");
}

#[test]
fn unchanged_republish_reads_nothing_and_keeps_catalogs() {
    let repo = TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    tree(src.path(), 100);
    let first = repo.publish(src.path());
    assert_eq!(first.files_read, 102);
    let second = repo.publish(src.path());
    assert_eq!((second.files_read, second.files_reused), (0, 102));
    assert_eq!(second.catalogs_kept, 2, "the two nested catalogs are kept");
    assert_eq!(
        second.catalogs_written, 1,
        "the root catalog always names the new revision"
    );
    // One changed file: read alone; only its catalog and the root are rewritten.
    write(&src.path().join("d0/f0"), b"changed\n");
    let third = repo.publish(src.path());
    assert_eq!(third.files_read, 1);
    assert_eq!((third.catalogs_written, third.catalogs_kept), (2, 1));
    let r = repo.assert_healthy();
    assert_eq!(read_at(&r, At::Latest, b"/d0/f0"), b"changed\n");
    // Older revisions stay readable by root hash.
    assert_eq!(
        read_at(&r, At::RootHash(first.root.hash), b"/d0/f0"),
        b"file 0\n"
    );
}

#[test]
fn same_size_and_mtime_but_new_content_is_noticed() {
    // Reproducible builds give files fixed mtimes; the index also compares inode and ctime.
    let repo = TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    let f = src.path().join("conf");
    write(&f, b"aaaa");
    set_mtime(&f, 1_000_000);
    repo.publish(src.path());
    std::thread::sleep(std::time::Duration::from_millis(20)); // a distinct ctime
    write(&f, b"bbbb");
    set_mtime(&f, 1_000_000);
    let r = repo.publish(src.path());
    assert_eq!(r.files_read, 1);
    assert_eq!(read_at(&repo.open(), At::Latest, b"/conf"), b"bbbb");
}

#[test]
fn chunks_are_shared_after_an_insertion() {
    let repo = TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    let data = noise(7, 3 << 20);
    write(&src.path().join("big"), &data);
    let mut o = repo.options(src.path());
    o.chunking = Some(SMALL_CHUNKS);
    publish::publish(&o, &NoProgress).unwrap();
    let objects = |repo: &TestRepo| {
        walkdir(&repo.repo.join("data"))
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with('P'))
            .count()
    };
    let before = objects(&repo);
    assert!(before >= 8, "a 3 MiB file in 64-256 KiB chunks: {before}");
    let mut shifted = b"inserted at the front".to_vec();
    shifted.extend_from_slice(&data);
    write(&src.path().join("big"), &shifted);
    publish::publish(&o, &NoProgress).unwrap();
    let added = objects(&repo) - before;
    assert!(
        added <= 2,
        "content-defined chunks re-align after an insertion: {added} new chunks"
    );
    let mut out = Vec::new();
    repo.assert_healthy()
        .snapshot(&At::Latest)
        .unwrap()
        .read_file(b"/big", &mut out)
        .unwrap();
    assert_eq!(out, shifted);
}

#[test]
fn images_under_paths_leave_each_other_alone() {
    let repo = TestRepo::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    tree(a.path(), 20);
    write(&b.path().join("bin/sh"), b"#!shell");
    let mut o = repo.options(a.path());
    o.path = b"/images/a".to_vec();
    publish::publish(&o, &NoProgress).unwrap();
    let before: Vec<String> = repo
        .listing()
        .into_iter()
        .filter(|l| l.starts_with("/images/a"))
        .collect();
    let mut o = repo.options(b.path());
    o.path = b"/images/b".to_vec();
    o.tag = Some("b-v1".into());
    let r = publish::publish(&o, &NoProgress).unwrap();
    assert_eq!(
        r.catalogs_written, 2,
        "the new image's catalog and the root"
    );
    let after: Vec<String> = repo
        .listing()
        .into_iter()
        .filter(|l| l.starts_with("/images/a"))
        .collect();
    assert_eq!(before, after);
    let rr = repo.assert_healthy();
    let snap = rr.snapshot(&At::Tag("b-v1".into())).unwrap();
    let mut out = Vec::new();
    snap.read_file(b"/images/b/bin/sh", &mut out).unwrap();
    assert_eq!(out, b"#!shell");
    // Each image is a nested catalog of its own.
    let root = rr.catalog(&snap.root_hash(), 0).unwrap();
    let nested: Vec<Vec<u8>> = root
        .lock()
        .unwrap()
        .nested()
        .unwrap()
        .into_iter()
        .map(|n| n.path)
        .collect();
    assert_eq!(nested, vec![b"/images/a".to_vec(), b"/images/b".to_vec()]);
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}
