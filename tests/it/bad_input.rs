//! Bad input to the publisher: unreadable, changing, vanishing and oddly named files,
//! trees too deep for paths, symlink loops, wrong keys, a second publisher and a full
//! disk. Every refusal must name what was wrong and why, and leave the previous revision
//! whole and unchanged.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lazyroot::cvmfs::catalog::EntryKind;
use lazyroot::publish::{self, lifecycle, Progress, PublishError};
use lazyroot::repository::local::LocalStore;
use lazyroot::repository::At;

use crate::common::{lazyroot, noise, object_names, stderr, write, TestRepo, FQRN};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A few files and a directory, published as the revision every test starts from.
fn populate_v1(src: &Path) {
    write(&src.join("README"), b"first revision\n");
    write(&src.join("etc/hosts"), b"127.0.0.1 localhost\n");
    write(&src.join("bin/tool"), &noise(1, 10_000));
    std::os::unix::fs::symlink("tool", src.join("bin/alias")).unwrap();
}

/// A repository with one published revision beyond mkfs, and its listing.
fn seeded() -> (TestRepo, Vec<String>) {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("v1");
    populate_v1(&src);
    repo.publish(&src);
    let before = repo.listing();
    assert!(
        before.iter().any(|l| l.starts_with("/etc/hosts\t")),
        "{before:#?}"
    );
    (repo, before)
}

/// The revision published before a failed attempt is still whole and unchanged.
fn assert_intact(repo: &TestRepo, before: &[String]) {
    repo.assert_healthy();
    assert_eq!(repo.listing(), before, "the previous revision changed");
}

/// A fresh source tree under the repository's temporary directory.
fn source(repo: &TestRepo, name: &str) -> PathBuf {
    let src = repo.dir.path().join(name);
    write(&src.join("kept"), b"an ordinary file\n");
    write(&src.join("sub/other"), b"another ordinary file\n");
    src
}

/// `lazyroot publish SRC --repo REPO --keys KEYS`.
fn cli_publish(repo: &TestRepo, src: &Path, keys: &Path) -> Output {
    lazyroot(&[
        "publish",
        path_str(src),
        "--repo",
        path_str(&repo.repo),
        "--keys",
        path_str(keys),
    ])
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// The command failed, and its stderr mentions every one of `needles`.
fn assert_failed_with(o: &Output, needles: &[&str]) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure; stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr should mention {n:?}: {err}");
    }
    err
}

/// The cause is stated once: an error that shows its source in its own message must not
/// also return it from `source()`, or `{:#}` (anyhow, the CLI) repeats it.
fn assert_said_once(err: &str, cause: &str) {
    assert_eq!(
        err.matches(cause).count(),
        1,
        "{cause:?} should appear exactly once: {err}"
    );
}

/// The publish succeeded.
fn assert_succeeded(o: &Output) {
    assert!(
        o.status.success(),
        "publish failed: {}{}",
        crate::common::stdout(o),
        stderr(o)
    );
}

fn run(cmd: &mut Command) {
    let st = cmd.status().expect("running a helper command");
    assert!(st.success(), "{cmd:?} failed");
}

/// Reads a file of the latest revision.
fn read_latest(repo: &TestRepo, path: &[u8]) -> Vec<u8> {
    let r = repo.open();
    let snap = r.snapshot(&At::Latest).unwrap();
    let mut out = Vec::new();
    snap.read_file(path, &mut out).unwrap();
    out
}

/// A progress reporter that acts on one file right before the publisher opens it.
struct OnRead {
    target: PathBuf,
    act: fn(&Path),
}

impl Progress for OnRead {
    fn before_read(&self, path: &Path) {
        if path == self.target {
            (self.act)(path);
        }
    }
}

/// Publishes `src` with the library, acting on `target` right before it is read.
fn publish_acting(repo: &TestRepo, src: &Path, target: &Path, act: fn(&Path)) -> PublishError {
    let progress = OnRead {
        target: target.to_path_buf(),
        act,
    };
    match publish::publish(&repo.options(src), &progress) {
        Ok(r) => panic!(
            "publish should have failed; it made revision {}",
            r.revision
        ),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------
// 1. Unreadable file
// ---------------------------------------------------------------------------------------

/// A file the publisher may not read stops the publish with an error naming the file and
/// "Permission denied"; nothing is committed. Root reads everything, so the CLI runs as
/// nobody (65534), owning the repository and keys but not the source.
#[test]
fn unreadable_file_is_refused_by_name() {
    let (repo, before) = seeded();
    let src = source(&repo, "v2");
    let secret = src.join("sub/secret");
    write(&secret, b"not for you\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();

    // nobody must reach everything but the secret: the temporary directory is traversable,
    // the repository and keys are nobody's, the binary is a copy in that directory (the
    // target directory may sit under a home only root may enter).
    std::fs::set_permissions(repo.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in [&repo.repo, &repo.keys] {
        run(Command::new("chown").args(["-R", "65534:65534"]).arg(d));
    }
    let bin = repo.dir.path().join("lazyroot-bin");
    std::fs::copy(env!("CARGO_BIN_EXE_lazyroot"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args([
            "publish",
            path_str(&src),
            "--repo",
            path_str(&repo.repo),
            "--keys",
        ])
        .arg(&repo.keys)
        .output()
        .expect("running setpriv");
    let err = assert_failed_with(&o, &[path_str(&secret), "Permission denied"]);
    assert_said_once(&err, "Permission denied");
    assert_intact(&repo, &before);
}

// ---------------------------------------------------------------------------------------
// 2, 3. Files that change or vanish while being published
// ---------------------------------------------------------------------------------------

/// A file that grows between the walk and the read is detected: `Changed(path)`, and the
/// previous revision stays.
#[test]
fn file_changing_during_publish_is_detected() {
    let (repo, before) = seeded();
    let src = source(&repo, "v2");
    let victim = src.join("sub/growing");
    write(&victim, b"before\n");

    let e = publish_acting(&repo, &src, &victim, |p| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(b"appended while publishing\n").unwrap();
    });
    match &e {
        PublishError::Changed(p) => assert_eq!(p, &victim),
        other => panic!("expected Changed({}), got {other:?}", victim.display()),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(path_str(&victim)) && msg.contains("changed during publish"),
        "{msg}"
    );
    assert_intact(&repo, &before);
}

/// A file deleted between the walk and the read is detected: `Vanished(path)`, and the
/// previous revision stays.
#[test]
fn file_vanishing_during_publish_is_detected() {
    let (repo, before) = seeded();
    let src = source(&repo, "v2");
    let victim = src.join("sub/fleeting");
    write(&victim, b"here for now\n");

    let e = publish_acting(&repo, &src, &victim, |p| std::fs::remove_file(p).unwrap());
    match &e {
        PublishError::Vanished(p) => assert_eq!(p, &victim),
        other => panic!("expected Vanished({}), got {other:?}", victim.display()),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(path_str(&victim)) && msg.contains("vanished during publish"),
        "{msg}"
    );
    assert_intact(&repo, &before);
}

// ---------------------------------------------------------------------------------------
// 4. Source that is not a directory
// ---------------------------------------------------------------------------------------

/// A regular file, or nothing at all, given as the source is refused by name.
#[test]
fn source_that_is_not_a_directory_is_refused() {
    let (repo, before) = seeded();

    let file = repo.dir.path().join("plain-file");
    write(&file, b"not a tree\n");
    let o = cli_publish(&repo, &file, &repo.keys);
    assert_failed_with(
        &o,
        &[&format!("source {} is not a directory", file.display())],
    );
    assert_intact(&repo, &before);

    let missing = repo.dir.path().join("no-such-source");
    let o = cli_publish(&repo, &missing, &repo.keys);
    let err = assert_failed_with(&o, &["No such file or directory"]);
    assert_said_once(&err, "No such file or directory");
    // Named in the cause itself, not only in the CLI's "publishing X into Y" context.
    assert!(err.matches(path_str(&missing)).count() >= 2, "{err}");
    assert_intact(&repo, &before);
}

// ---------------------------------------------------------------------------------------
// 5. Names that are not tidy text
// ---------------------------------------------------------------------------------------

/// Names with a newline or bytes that are not UTF-8 are kept byte for byte: they publish,
/// look up, read back, and appear escaped in listings.
#[test]
fn names_with_newlines_and_invalid_utf8_round_trip() {
    let (repo, _) = seeded();
    let src = source(&repo, "v2");
    let bad = OsStr::from_bytes(b"bad\xffname");
    write(&src.join(bad), b"latin-1 was here\n");
    write(&src.join("new\nline"), b"two\nlines\n");
    write(&src.join("dir\nwith\tcontrol").join(bad), b"nested\n");

    repo.publish(&src);
    let r = repo.assert_healthy();
    let snap = r.snapshot(&At::Latest).unwrap();
    for (path, content) in [
        (&b"/bad\xffname"[..], &b"latin-1 was here\n"[..]),
        (b"/new\nline", b"two\nlines\n"),
        (b"/dir\nwith\tcontrol/bad\xffname", b"nested\n"),
    ] {
        let found = snap.lookup(path).unwrap();
        let found = found.unwrap_or_else(|| {
            panic!("{} is missing", lazyroot::repository::listing::escape(path))
        });
        assert_eq!(found.entry.kind(), EntryKind::File);
        let mut out = Vec::new();
        snap.read_file(path, &mut out).unwrap();
        assert_eq!(
            out,
            content,
            "content of {}",
            lazyroot::repository::listing::escape(path)
        );
    }
    let listing = repo.listing();
    for shown in [
        "/bad\\xffname\t",
        "/new\\x0aline\t",
        "/dir\\x0awith\\x09control/bad\\xffname\t",
    ] {
        assert!(
            listing.iter().any(|l| l.starts_with(shown)),
            "no {shown:?} in {listing:#?}"
        );
    }
    assert!(
        listing.iter().all(|l| !l.contains('\n')),
        "a listing line holds a raw newline"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Deep trees
// ---------------------------------------------------------------------------------------

/// 1000 nested directories publish, and the file at the bottom reads back.
#[test]
fn thousand_directories_deep_publishes() {
    let (repo, _) = seeded();
    let src = source(&repo, "v2");
    let mut deep = src.join("deep");
    let mut repo_path = b"/deep".to_vec();
    for _ in 0..1000 {
        deep.push("d");
        repo_path.extend_from_slice(b"/d");
    }
    write(&deep.join("bottom"), b"at the bottom\n");
    repo_path.extend_from_slice(b"/bottom");

    repo.publish(&src);
    repo.assert_healthy();
    assert_eq!(read_latest(&repo, &repo_path), b"at the bottom\n");
}

/// A tree whose paths exceed PATH_MAX (built with *at calls, relative to directory fds) is
/// refused with an error naming a path and saying why; the previous revision stays.
#[test]
fn tree_deeper_than_path_max_is_refused() {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};

    let (repo, before) = seeded();
    let src = source(&repo, "v2");
    let top = src.join("deep");
    std::fs::create_dir(&top).unwrap();
    let levels = 2100; // 4200 bytes of "d/" alone: beyond PATH_MAX (4096)
    let mut fd =
        nix::fcntl::open(&top, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).unwrap();
    for _ in 0..levels {
        mkdirat(&fd, "d", Mode::from_bits_truncate(0o755)).unwrap();
        fd = openat(
            &fd,
            "d",
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .unwrap();
    }
    let leaf = openat(
        &fd,
        "leaf",
        OFlag::O_CREAT | OFlag::O_WRONLY,
        Mode::from_bits_truncate(0o644),
    );
    drop(leaf.unwrap());
    drop(fd);

    let result = publish::publish(&repo.options(&src), &publish::NoProgress);
    // Removed before asserting: a failed test must not leave a tree most tools choke on.
    remove_deep_tree(&top);
    let e = match result {
        Ok(r) => panic!(
            "publish should have failed; it made revision {}",
            r.revision
        ),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(
        msg.contains(path_str(&top)),
        "the error should name a path below {}: {msg:.300}",
        top.display()
    );
    assert!(
        msg.contains("File name too long") || msg.contains("directories deep"),
        "the error should say why: {msg:.300}…{}",
        &msg[msg.len().saturating_sub(200)..]
    );
    assert_intact(&repo, &before);
}

/// Removes a tree of any depth (GNU rm walks relative to directory fds).
fn remove_deep_tree(top: &Path) {
    run(Command::new("rm").arg("-rf").arg(top));
    assert!(!top.exists(), "{} survived rm -rf", top.display());
}

// ---------------------------------------------------------------------------------------
// 7. Symlink loops
// ---------------------------------------------------------------------------------------

/// Symlinks that loop (a -> b -> a, self -> self, up -> ..) are published as symlinks with
/// their targets, never followed.
#[test]
fn symlink_loops_are_published_not_followed() {
    let (repo, _) = seeded();
    let src = source(&repo, "v2");
    let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, src.join(at)).unwrap();
    link("b", "a");
    link("a", "b");
    link("self", "self");
    link("..", "sub/up");
    link(".", "sub/here");

    let report = repo.publish(&src);
    assert!(
        report.entries < 20,
        "the walk followed a loop: {} entries",
        report.entries
    );
    let r = repo.assert_healthy();
    let snap = r.snapshot(&At::Latest).unwrap();
    for (path, target) in [
        (&b"/a"[..], &b"b"[..]),
        (b"/b", b"a"),
        (b"/self", b"self"),
        (b"/sub/up", b".."),
        (b"/sub/here", b"."),
    ] {
        let found = snap.lookup(path).unwrap().expect("the link is published");
        assert_eq!(
            found.entry.kind(),
            EntryKind::Symlink,
            "{}",
            String::from_utf8_lossy(path)
        );
        assert_eq!(
            found.entry.symlink,
            target,
            "{}",
            String::from_utf8_lossy(path)
        );
    }
    assert!(
        snap.lookup(b"/sub/up/kept").unwrap().is_none(),
        "lookup went through a symlink"
    );
}

// ---------------------------------------------------------------------------------------
// 8. Wrong or missing keys
// ---------------------------------------------------------------------------------------

/// A copy of the repository's keys directory.
fn copy_keys(repo: &TestRepo, name: &str) -> PathBuf {
    let dest = repo.dir.path().join(name);
    run(Command::new("cp").arg("-a").arg(&repo.keys).arg(&dest));
    dest
}

/// Without `<fqrn>.key` the publish is refused, naming the missing file.
#[test]
fn missing_repository_key_is_refused_by_name() {
    let (repo, before) = seeded();
    let src = source(&repo, "v2");
    let keys = copy_keys(&repo, "keys-without-key");
    let key_file = keys.join(format!("{FQRN}.key"));
    std::fs::remove_file(&key_file).unwrap();

    let o = cli_publish(&repo, &src, &keys);
    let err = assert_failed_with(&o, &[path_str(&key_file), "No such file or directory"]);
    assert_said_once(&err, "No such file or directory");
    assert_intact(&repo, &before);
}

/// Another repository's key and certificate (a pair that belongs together, but that this
/// repository's master key never approved) must not sign a revision: readers would refuse
/// it, so the publisher refuses first, saying which certificate is wrong.
#[test]
fn another_repositorys_signing_key_is_refused() {
    let (repo, before) = seeded();
    let other = TestRepo::new();
    let src = source(&repo, "v2");
    let keys = copy_keys(&repo, "keys-of-another");
    for ext in ["key", "crt"] {
        let name = format!("{FQRN}.{ext}");
        std::fs::remove_file(keys.join(&name)).unwrap();
        std::fs::copy(other.keys.join(&name), keys.join(&name)).unwrap();
    }

    let o = cli_publish(&repo, &src, &keys);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "publish signed with a certificate the whitelist does not list; stderr: {err}"
    );
    let named = |ext: &str| err.contains(path_str(&keys.join(format!("{FQRN}.{ext}"))));
    assert!(
        named("crt") || named("key"),
        "the error should name the key or certificate file: {err}"
    );
    let lower = err.to_lowercase();
    assert!(
        ["whitelist", "signature", "does not belong"]
            .iter()
            .any(|w| lower.contains(w)),
        "the error should say what is wrong with it: {err}"
    );
    assert_intact(&repo, &before);
}

/// Reading with another repository's master public key fails on the whitelist signature.
#[test]
fn reading_with_another_master_key_is_refused() {
    let (repo, before) = seeded();
    let other = TestRepo::new();
    let other_pub = other.keys.join(format!("{FQRN}.pub"));

    let o = lazyroot(&[
        "ls",
        "--repo",
        path_str(&repo.repo),
        "--keys",
        path_str(&repo.keys),
        "-R",
        "--key",
        path_str(&other_pub),
    ]);
    assert!(
        crate::common::stdout(&o).is_empty(),
        "nothing may be listed untrusted"
    );
    assert_failed_with(&o, &["whitelist", "signature"]);
    assert_intact(&repo, &before);
}

// ---------------------------------------------------------------------------------------
// 9. A second publisher
// ---------------------------------------------------------------------------------------

/// While another publisher holds the lock, publish is refused naming the lock file; once it
/// is released, the same publish succeeds.
#[test]
fn second_publisher_waits_for_the_lock() {
    let (repo, before) = seeded();
    let src = source(&repo, "v2");
    let lock_path = repo.repo.join("data/txn/publish.lock");

    let held = publish::lock(&LocalStore::new(&repo.repo)).unwrap();
    let o = cli_publish(&repo, &src, &repo.keys);
    assert_failed_with(&o, &["another publisher", path_str(&lock_path)]);
    assert_intact(&repo, &before);

    drop(held);
    assert_succeeded(&cli_publish(&repo, &src, &repo.keys));
    repo.assert_healthy();
    assert_eq!(
        read_latest(&repo, b"/sub/other"),
        b"another ordinary file\n"
    );
    assert!(repo
        .open()
        .snapshot(&At::Latest)
        .unwrap()
        .lookup(b"/README")
        .unwrap()
        .is_none());
}

// ---------------------------------------------------------------------------------------
// 10. Full disk
// ---------------------------------------------------------------------------------------

/// A tmpfs mounted for the life of the guard.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("tmpfs")
            .arg(at));
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A repository on a 3 MiB tmpfs, its keys outside. Fields drop in order: the tmpfs is
/// unmounted before the temporary directory holding its mount point is removed.
struct SmallDisk {
    _mount: Mounted,
    repo: TestRepo,
}

fn small_disk() -> SmallDisk {
    let dir = tempfile::tempdir().unwrap();
    let mount = Mounted::tmpfs(&dir.path().join("small"), "3m");
    let repo = dir.path().join("small/repo");
    let keys = dir.path().join("keys");
    lifecycle::mkfs(&lifecycle::MkfsOptions {
        repo: repo.clone(),
        keys: keys.clone(),
        fqrn: FQRN.into(),
        algo: lazyroot::cvmfs::hash::HashAlgo::Sha1,
        whitelist_days: 30,
        ttl: 240,
    })
    .unwrap();
    SmallDisk {
        _mount: mount,
        repo: TestRepo {
            dir,
            repo,
            keys,
            fqrn: FQRN.into(),
        },
    }
}

/// Files in `dir` other than the lock file.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// Running out of space is reported with the path and "No space left on device"; the
/// previous revision stays whole and no temporary files are left behind.
#[test]
fn full_disk_is_reported_and_cleaned_up() {
    let disk = small_disk();
    let repo = &disk.repo;
    let v1 = repo.dir.path().join("v1");
    populate_v1(&v1);
    repo.publish(&v1);
    let before = repo.listing();
    let objects = object_names(&repo.repo);
    let reflog = std::fs::read(repo.repo.join(".cvmfsreflog")).unwrap();

    let src = source(repo, "v2");
    // Files that fit, stored before the one that does not.
    for i in 0..20 {
        write(&src.join(format!("small/{i}")), &noise(100 + i, 20_000));
    }
    write(&src.join("huge"), &noise(7, 12 << 20));
    let e = match publish::publish(&repo.options(&src), &publish::NoProgress) {
        Ok(r) => panic!(
            "a 12 MiB file fitted on a 3 MiB disk (revision {})",
            r.revision
        ),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(
        msg.contains(path_str(&repo.repo)) || msg.contains(path_str(&src)),
        "the error should name a path: {msg}"
    );
    assert_intact(repo, &before);
    assert_eq!(
        object_names(&repo.repo),
        objects,
        "the failed publish's objects are taken back"
    );
    assert_eq!(
        std::fs::read(repo.repo.join(".cvmfsreflog")).unwrap(),
        reflog,
        "the reflog is as before"
    );
    let txn = repo.repo.join("data/txn");
    assert_eq!(
        leftovers(&txn, &["publish.lock"]),
        Vec::<String>::new(),
        "temporary files left in {}",
        txn.display()
    );
    let stray: Vec<String> = leftovers(&repo.repo, &[])
        .into_iter()
        .filter(|n| n.starts_with(".lazyroot-tmp."))
        .collect();
    assert!(
        stray.is_empty(),
        "temporary bootstrap files left: {stray:?}"
    );
}
