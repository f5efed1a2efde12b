//! The publisher's own state after a bad day: objects an earlier run left short (a crash
//! that lost unsynced data) are never trusted for existing, and a reflog that disagrees
//! with the manifest (a publish killed between the two) keeps its list of roots.

use std::path::Path;

use lazyroot::cvmfs::hash::HashAlgo;
use lazyroot::cvmfs::object::{compress_and_hash, ObjectKind, ObjectName};
use lazyroot::cvmfs::reflog::{RefType, Reflog};
use lazyroot::repository::At;

use crate::common::*;

/// The path of the whole-file object `data` becomes.
fn object_of(repo: &Path, data: &[u8]) -> std::path::PathBuf {
    let (_, hash) = compress_and_hash(HashAlgo::Sha1, data);
    repo.join(ObjectName::new(hash, ObjectKind::File).path())
}

/// What a killed publish leaves under an object's final name after a power loss: the
/// object cut short, emptied, or the right length with other bytes.
fn damage(path: &Path, how: &str) {
    let whole = std::fs::read(path).unwrap();
    let bad = match how {
        "truncated" => whole[..whole.len() / 2].to_vec(),
        "empty" => Vec::new(),
        "zeroed" => vec![0; whole.len()],
        _ => unreachable!(),
    };
    std::fs::write(path, bad).unwrap();
}

/// A later publish whose files become objects that an earlier, killed run left damaged
/// writes them again: the signed revision reads back whole. Before, `put` skipped any
/// existing name and signed a manifest over the damaged file.
#[test]
fn damaged_objects_of_an_earlier_run_are_written_again() {
    for how in ["truncated", "empty", "zeroed"] {
        let repo = TestRepo::new();
        let src = repo.dir.path().join("src");
        let content = noise(3, 40_000);
        write(&src.join("etc/new.bin"), &content);
        // The killed run: it had written the object, not synced it, and lost it.
        let obj = object_of(&repo.repo, &content);
        std::fs::create_dir_all(obj.parent().unwrap()).unwrap();
        std::fs::write(&obj, compress_and_hash(HashAlgo::Sha1, &content).0).unwrap();
        damage(&obj, how);
        repo.publish(&src);
        let r = repo.assert_healthy();
        assert_eq!(
            read_at(&r, At::Latest, b"/etc/new.bin"),
            content,
            "{how} object"
        );
    }
}

/// The publish index reuses an unchanged file's objects only while they are stored at the
/// length recorded: one cut short since is read from the source and written again.
#[test]
fn index_reuse_checks_the_stored_length() {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("src");
    let content = noise(4, 50_000);
    write(&src.join("a.bin"), &content);
    write(&src.join("b.txt"), b"unchanged\n");
    repo.publish(&src);
    damage(&object_of(&repo.repo, &content), "truncated");
    let second = repo.publish(&src);
    assert_eq!(
        (second.files_read, second.files_reused),
        (1, 1),
        "the damaged file is read again, the other reused"
    );
    let r = repo.assert_healthy();
    assert_eq!(read_at(&r, At::Latest, b"/a.bin"), content);
}

fn reflog_roots(repo: &Path) -> u64 {
    let bytes = std::fs::read(repo.join(".cvmfsreflog")).unwrap();
    Reflog::from_bytes(&bytes)
        .unwrap()
        .count(RefType::Catalog)
        .unwrap()
}

/// A publish killed after writing its reflog but before its manifest leaves a reflog that
/// the manifest's checksum does not match. The next publish keeps its list of every root
/// ever published (and adds its own) instead of starting an empty one.
#[test]
fn a_reflog_ahead_of_the_manifest_keeps_its_roots() {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("src");
    for i in 0..3 {
        write(&src.join("f"), format!("v{i}\n").as_bytes());
        repo.publish(&src);
    }
    let roots = reflog_roots(&repo.repo);
    assert!(roots >= 4, "mkfs and three publishes: {roots} roots");
    // The killed publish: its root went into the reflog, its manifest never came.
    let bytes = std::fs::read(repo.repo.join(".cvmfsreflog")).unwrap();
    let reflog = Reflog::from_bytes(&bytes).unwrap();
    let killed = HashAlgo::Sha1.digest(b"the killed publish's root catalog");
    reflog.add(&killed, RefType::Catalog, 0).unwrap();
    std::fs::write(repo.repo.join(".cvmfsreflog"), reflog.to_bytes().unwrap()).unwrap();

    write(&src.join("f"), b"after the kill\n");
    repo.publish(&src);
    assert_eq!(
        reflog_roots(&repo.repo),
        roots + 2,
        "every earlier root, the killed one's and the new one"
    );
    repo.assert_healthy();
}

/// A reflog that is not a reflog at all is started anew from the current revision (with
/// a warning), and the publish goes through.
#[test]
fn an_unreadable_reflog_is_started_anew() {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("src");
    write(&src.join("f"), b"one\n");
    repo.publish(&src);
    std::fs::write(repo.repo.join(".cvmfsreflog"), b"not a database").unwrap();
    write(&src.join("f"), b"two\n");
    repo.publish(&src);
    assert_eq!(
        reflog_roots(&repo.repo),
        2,
        "the previous root and the new one"
    );
    repo.assert_healthy();
}
