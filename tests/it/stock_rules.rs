//! What stock CernVM-FS's client and `cvmfs_swissknife check` rely on beyond the schema:
//! the root entry in row 1 of every catalog (stock gives the root catalog's row 1 the mount
//! root's inode, so the entry there read as EIO), hard-link groups per directory, and a
//! `.cvmfscatalog` marker in every nested catalog. Catalogs as lazyroot wrote them before
//! are replayed here (rows in path-key order, one group across directories, no markers):
//! `check` names each problem, the reader still reads them, `repair` rewrites them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use lazyroot::cvmfs::catalog::writer::{self, CatalogProperties};
use lazyroot::cvmfs::catalog::{CatalogContent, Counters, NestedRef};
use lazyroot::cvmfs::hash::PathKey;
use lazyroot::cvmfs::object::ObjectKind;
use lazyroot::repository::check::check;
use lazyroot::repository::local::LocalStore;
use lazyroot::repository::At;

use crate::common::*;

/// A tree with enough names that path keys sort before the root's, a nested catalog
/// (`/sub`, by marker), and hard links within and across directories, as in the issue.
fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::create_dir_all(root.join("sub/deep")).unwrap();
    std::fs::create_dir_all(root.join("many")).unwrap();
    std::fs::write(root.join("sub/.cvmfscatalog"), b"").unwrap();
    for i in 0..300 {
        std::fs::write(root.join(format!("many/f{i}")), format!("file {i}\n")).unwrap();
    }
    std::fs::write(root.join("plain"), b"linked content\n").unwrap();
    std::fs::hard_link(root.join("plain"), root.join("hardlink_same_dir")).unwrap();
    std::fs::hard_link(root.join("plain"), root.join("dir/hardlink_other_dir")).unwrap();
    std::fs::write(root.join("sub/deep/a"), b"two in one dir\n").unwrap();
    std::fs::hard_link(root.join("sub/deep/a"), root.join("sub/deep/b")).unwrap();
}

/// A repository with [`tree`] published at its root.
fn published_tree() -> (TestRepo, tempfile::TempDir) {
    let repo = TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    repo.publish(src.path());
    (repo, src)
}

fn raw_row<'a>(cats: &'a [RawCatalog], path: &[u8]) -> &'a RawRow {
    let key = raw_path_key(path);
    cats.iter()
        .flat_map(|c| &c.rows)
        .find(|r| r.key == key && r.flags & 2 == 0)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(path)))
}

#[test]
fn every_catalog_starts_with_its_root_entry_and_nested_ones_have_markers() {
    let repo = TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let mut o = repo.options(src.path());
    o.auto_catalogs = Some(lazyroot::publish::AutoCatalogs { min: 10, max: 200 });
    lazyroot::publish::publish(&o, &lazyroot::publish::NoProgress).unwrap();
    // And an image of its own under --path, grafted into the root catalog.
    repo.publish_at(src.path(), "/images/one");
    let cats = raw_catalogs(&repo.repo);
    assert!(
        cats.len() >= 4,
        "root, /sub, /many (auto) and /images/one: {}",
        cats.len()
    );
    assert_stock_rows(&repo);
    let report = check(&repo.open());
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    // The marker publish adds is what stock writes: an empty regular file, owned and
    // timed as its directory.
    let opened = repo.open();
    let snap = opened.snapshot(&At::Latest).unwrap();
    let marker = snap.lookup(b"/images/one/.cvmfscatalog").unwrap().unwrap();
    let dir = std::fs::metadata(src.path()).unwrap();
    assert_eq!(marker.entry.mode, libc::S_IFREG | 0o644);
    assert_eq!(marker.entry.size, 0);
    assert_eq!((marker.entry.uid, marker.entry.gid), (dir.uid(), dir.gid()));
    assert_eq!(marker.entry.mtime, dir.mtime());
    let mut content = Vec::new();
    snap.read_found(&marker, &mut content).unwrap();
    assert!(content.is_empty());
}

#[test]
fn hard_links_are_grouped_per_directory() {
    let (repo, _src) = published_tree();
    let cats = raw_catalogs(&repo.repo);
    let plain = raw_row(&cats, b"/plain");
    let same = raw_row(&cats, b"/hardlink_same_dir");
    let other = raw_row(&cats, b"/dir/hardlink_other_dir");
    assert_ne!(plain.hardlinks >> 32, 0);
    assert_eq!(plain.hardlinks, same.hardlinks);
    assert_eq!(plain.hardlinks & 0xffff_ffff, 2, "two names in /");
    assert_eq!(other.hardlinks, 1, "alone in /dir: a plain file");
    let (a, b) = (
        raw_row(&cats, b"/sub/deep/a"),
        raw_row(&cats, b"/sub/deep/b"),
    );
    assert_eq!(a.hardlinks, b.hardlinks);
    assert_eq!(a.hardlinks & 0xffff_ffff, 2);
    assert_stock_rows(&repo);
    // The separated name still reads the same bytes.
    let opened = repo.open();
    let snap = opened.snapshot(&At::Latest).unwrap();
    let mut x = Vec::new();
    let f = snap.lookup(b"/dir/hardlink_other_dir").unwrap().unwrap();
    snap.read_found(&f, &mut x).unwrap();
    assert_eq!(x, b"linked content\n");
    repo.assert_healthy();
}

/// Rewrites a catalog as lazyroot wrote catalogs before: rows inserted in path-key order
/// (so the root entry lands wherever its key sorts).
fn in_key_order(bytes: &[u8]) -> Vec<u8> {
    let conn = lazyroot::cvmfs::sqlite::from_bytes(bytes, false).unwrap();
    conn.execute_batch(
        "CREATE TEMP TABLE t AS SELECT * FROM catalog;
         DELETE FROM catalog;
         INSERT INTO catalog SELECT * FROM t ORDER BY md5path_1, md5path_2;
         DROP TABLE t; VACUUM;",
    )
    .unwrap();
    lazyroot::cvmfs::sqlite::to_bytes(&conn).unwrap()
}

/// Replays the old writer on the current revision: nested catalog `/sub` without its
/// marker, the three names of `/plain` in one group of three, every catalog's rows in
/// path-key order; signed as the next revision and tagged.
fn publish_as_the_old_writer(repo: &TestRepo) {
    let r = repo.open();
    let m = r.manifest().clone();
    let store = LocalStore::new(&repo.repo);
    let load = |n: &NestedRef| {
        let db = r.catalog(&n.hash, n.size).unwrap();
        let c = CatalogContent::load(&db.lock().unwrap()).unwrap();
        c
    };
    let props = |ttl| CatalogProperties {
        revision: m.revision + 1,
        last_modified: m.timestamp,
        previous_revision: None,
        ttl,
    };
    let root_ref = NestedRef {
        path: Vec::new(),
        hash: m.root_catalog,
        size: m.root_catalog_size,
    };
    let mut root = load(&root_ref);
    let sub_ref = root.nested[&b"/sub".to_vec()].clone();
    let mut sub = load(&sub_ref);
    sub.rows
        .remove(&PathKey::of(b"/sub/.cvmfscatalog"))
        .unwrap();
    let sub_bytes = in_key_order(
        &writer::write(
            &sub,
            &props(None),
            &Counters::of(&sub),
            &Counters::default(),
        )
        .unwrap(),
    );
    let sub_name = store
        .put(ObjectKind::Catalog, m.hash_algo(), &sub_bytes)
        .unwrap();
    root.nested.insert(
        b"/sub".to_vec(),
        NestedRef {
            path: b"/sub".to_vec(),
            hash: sub_name.hash,
            size: sub_bytes.len() as u64,
        },
    );
    for p in [
        &b"/plain"[..],
        b"/hardlink_same_dir",
        b"/dir/hardlink_other_dir",
    ] {
        root.rows.get_mut(&PathKey::of(p)).unwrap().entry.hardlinks = (1 << 32) | 3;
    }
    let root_bytes = in_key_order(
        &writer::write(
            &root,
            &props(Some(m.ttl)),
            &Counters::of(&root),
            &Counters::of(&sub),
        )
        .unwrap(),
    );
    let root_name = store
        .put(ObjectKind::Catalog, m.hash_algo(), &root_bytes)
        .unwrap();
    commit_root(
        repo,
        NestedRef {
            path: Vec::new(),
            hash: root_name.hash,
            size: root_bytes.len() as u64,
        },
        vec![("old-writer".into(), String::new())],
    );
}

#[test]
fn check_names_what_the_old_writer_wrote_the_reader_reads_it_and_repair_rewrites_it() {
    let (repo, _src) = published_tree();
    let before = repo.listing();
    publish_as_the_old_writer(&repo);

    // The replay is what the issue saw: row 1 of the root catalog is not the root entry.
    let cats = raw_catalogs(&repo.repo);
    let root_cat = cats.iter().find(|c| c.mountpoint.is_empty()).unwrap();
    assert_ne!(root_cat.rows[0].key, raw_path_key(b""));

    let problems = check(&repo.open()).problems;
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("root entry is row"), "{problems:#?}");
    assert!(
        has("stock clients give row 1 the root's inode"),
        "{problems:#?}"
    );
    assert!(
        has("hard-link group 1 has link count 3 but 2 members"),
        "{problems:#?}"
    );
    assert!(
        has("hard-link group 1 has link count 3 but 1 members"),
        "{problems:#?}"
    );
    assert!(has("without a .cvmfscatalog marker"), "{problems:#?}");
    // The CLI says so and exits non-zero.
    let out = repo.cli("check", &[]);
    assert!(!out.status.success());

    // lazyroot's reader reads catalogs written either way.
    let old_listing = repo.listing();
    let without_marker: Vec<String> = before
        .iter()
        .filter(|l| !l.starts_with("/sub/.cvmfscatalog\t"))
        .cloned()
        .collect();
    assert_eq!(
        strip_links(&old_listing),
        strip_links(&without_marker),
        "the replayed revision lists the same tree"
    );

    let out = repo.cli("repair", &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("2 of 2 catalogs rewritten"), "{said}");
    assert!(said.contains("1 markers added"), "{said}");
    assert!(
        said.contains("old-writer"),
        "the tag moves with the repair: {said}"
    );
    assert_stock_rows(&repo);
    repo.assert_healthy();
    assert_eq!(
        repo.listing(),
        before,
        "repair gives back the tree as publish writes it"
    );
    let r = repo.open();
    let tagged = r.snapshot(&At::Tag("old-writer".into())).unwrap();
    assert_eq!(tagged.root_hash(), r.manifest().root_catalog);

    // A second repair finds nothing to do and publishes nothing.
    let revision = r.manifest().revision;
    let out = repo.cli("repair", &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing published"));
    assert_eq!(repo.open().manifest().revision, revision);
}

/// Republishing the same source over catalogs the old writer made rewrites them.
#[test]
fn a_republish_rewrites_catalogs_the_old_writer_made() {
    let (repo, src) = published_tree();
    publish_as_the_old_writer(&repo);
    repo.publish(src.path());
    assert_stock_rows(&repo);
    repo.assert_healthy();
}

/// Link counts are compared elsewhere; listings here compare the rest of each line.
fn strip_links(listing: &[String]) -> Vec<String> {
    listing
        .iter()
        .map(|l| {
            let mut f: Vec<&str> = l.split('\t').collect();
            if f.len() > 6 {
                f[6] = "";
            }
            f.join("\t")
        })
        .collect()
}

/// The stock fixture, written by `cvmfs_server` 2.1, follows every rule `check` holds
/// lazyroot to, on its raw rows too.
#[test]
fn the_stock_fixture_follows_the_rules() {
    let (_d, repo, _keys) = unpack_fixture();
    let cats = raw_catalogs(&repo);
    assert!(cats.len() > 1, "the fixture has nested catalogs");
    assert_stock_rows_at(&repo);
}
