//! Mounting through HTTP: the stock fixture served by lazyroot and by nginx reads exactly as
//! its expected listing says, through a real FUSE mount; hard links share inodes; signals
//! unmount cleanly; a second image re-downloads nothing it shares with the first.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use sha1::Digest;

use crate::common::*;
use crate::net::*;

/// The fixture's listing format, read from a real filesystem.
fn fs_listing(root: &Path) -> String {
    let mut lines = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes();
        let path = if rel.is_empty() {
            "/".to_string()
        } else {
            format!("/{}", lazyroot::repository::listing::escape(rel))
        };
        let ft = m.file_type();
        let (kind, size, nlink, sha, target) = if ft.is_dir() {
            let mut children: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            stack.extend(children.into_iter().rev());
            (
                'd',
                "0".to_string(),
                "-".to_string(),
                String::new(),
                String::new(),
            )
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            (
                'l',
                m.size().to_string(),
                "-".to_string(),
                String::new(),
                lazyroot::repository::listing::escape(t.as_os_str().as_bytes()),
            )
        } else {
            let data = std::fs::read(&p).unwrap();
            (
                'f',
                m.size().to_string(),
                m.nlink().to_string(),
                hex::encode(sha1::Sha1::digest(&data)),
                String::new(),
            )
        };
        lines.push((
            path.clone(),
            format!(
                "{path}\t{kind}\t{:04o}\t{}:{}\t{}\t{size}\t{nlink}\t{sha}\t{target}\t",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.mtime()
            ),
        ));
    }
    lines.sort();
    lines.into_iter().map(|(_, l)| l + "\n").collect()
}

fn expected() -> String {
    std::fs::read_to_string(shared().join("fixtures/cvmfs-legacy-repo/expected-listing.tsv"))
        .unwrap()
}

/// The fixture, re-signed so it verifies today.
fn fixture() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let (d, repo, keys) = unpack_fixture();
    let o = lazyroot(&[
        "resign",
        "--repo",
        repo.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (d, repo, keys)
}

/// Mounts the fixture from `url` at `<dir>/mnt` with the cache `<dir>/cache`.
fn mount_fixture(url: &str, keys: &Path, dir: &Path) -> Mount {
    let key = keys.join("legacy_aufs.cern.ch.pub").display().to_string();
    let cache = dir.join("cache").display().to_string();
    let args = [
        "--server",
        url,
        "--key",
        key.as_str(),
        "--cache",
        cache.as_str(),
    ];
    Mount::start("legacy_aufs.cern.ch", &dir.join("mnt"), &args)
}

#[test]
fn fixture_through_lazyroot_serve_reads_as_expected() {
    let (d, repo, keys) = fixture();
    let server = Server::start(&[&repo]);
    let url = server.url("legacy_aufs.cern.ch");
    let mnt = d.path().join("mnt");
    let m = mount_fixture(&url, &keys, d.path());
    assert!(is_mounted(&mnt));
    assert_eq!(fs_listing(&mnt), expected());
    // Hard links share one inode.
    let ino = |p: &str| std::fs::symlink_metadata(mnt.join(p)).unwrap().ino();
    assert_eq!(ino("bar"), ino("hardlink_bar"));
    assert_eq!(
        ino("needs_commit_due_to_child/needs_migration/hardlink_bar_1"),
        ino("needs_commit_due_to_child/needs_migration/bar")
    );
    assert_ne!(ino("bar"), ino("baz"));
    // Magic attributes.
    let x = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "user.revision"])
        .arg(mnt.join("foo"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&x.stdout), "2");
    // Read-only.
    assert!(std::fs::write(mnt.join("new"), b"x").is_err());
    let st = m.stop();
    assert!(st.success(), "SIGTERM unmounts and exits 0: {st:?}");
    assert!(!is_mounted(&mnt), "no dead mount left behind");
}

#[test]
fn fixture_through_nginx_reads_as_expected() {
    let (d, repo, keys) = fixture();
    // nginx workers run as www-data: the tree must be readable by others.
    for dir in [
        d.path(),
        d.path().join("srv").as_path(),
        d.path().join("srv/cvmfs").as_path(),
    ] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let nginx = Nginx::start("legacy_aufs.cern.ch", &repo);
    let url = nginx.url("legacy_aufs.cern.ch");
    let mnt = d.path().join("mnt");
    let m = mount_fixture(&url, &keys, d.path());
    assert_eq!(fs_listing(&mnt), expected());
    assert!(m.stop().success());
}

#[test]
fn second_image_downloads_only_what_it_does_not_share() {
    let repo = TestRepo::new();
    let shared_blob = noise(1, 1 << 20);
    for name in ["a", "b"] {
        let src = repo.dir.path().join(format!("src-{name}"));
        write(&src.join("lib/libshared.so"), &shared_blob);
        write(
            &src.join(format!("etc/{name}")),
            format!("image {name}\n").as_bytes(),
        );
        repo.publish_at(&src, &format!("/images/{name}"));
    }
    let m = serve_and_mount(&repo, "mnt", &[]);
    let mnt = m.mount.dir.clone();
    let rx = |p: &str| {
        let o = std::process::Command::new("getfattr")
            .args(["--only-values", "-n", "user.rx"])
            .arg(mnt.join(p))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).parse::<u64>().unwrap()
    };
    assert_eq!(
        std::fs::read(mnt.join("images/a/lib/libshared.so")).unwrap(),
        shared_blob
    );
    let after_a = rx("images");
    assert_eq!(
        std::fs::read(mnt.join("images/b/lib/libshared.so")).unwrap(),
        shared_blob
    );
    assert_eq!(
        std::fs::read(mnt.join("images/b/etc/b")).unwrap(),
        b"image b\n"
    );
    let after_b = rx("images");
    // Image b costs its catalog and its own small file, not the shared 1 MiB again.
    assert!(
        after_b - after_a < 64,
        "second image downloaded {} KiB",
        after_b - after_a
    );
    drop(m);
}

#[test]
fn chunked_files_read_correctly_at_any_offset() {
    use std::os::unix::fs::FileExt;
    let repo = TestRepo::new();
    let src = repo.dir.path().join("src");
    let data = noise(9, 3 << 20);
    write(&src.join("big"), &data);
    let mut o = repo.options(&src);
    o.chunking = Some(SMALL_CHUNKS);
    lazyroot::publish::publish(&o, &lazyroot::publish::NoProgress).unwrap();
    let m = serve_and_mount(&repo, "mnt", &[]);
    let path = m.mount.dir.join("big");
    let chunks = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "user.chunks"])
        .arg(&path)
        .output()
        .unwrap();
    let chunks: usize = String::from_utf8_lossy(&chunks.stdout).parse().unwrap();
    assert!(chunks > 10, "{chunks} chunks");
    // Reads that start and end anywhere, across chunk boundaries, backwards too.
    let f = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; 300_000];
    for &off in &[3_000_000u64, 0, 131_071, 1_000_003, 2_900_000, 65_536] {
        let n = f.read_at(&mut buf, off).unwrap();
        let end = (off as usize + n).min(data.len());
        assert_eq!(&buf[..n], &data[off as usize..end], "at offset {off}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[test]
fn passthrough_mounts_read_the_same_bytes() {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("src");
    let small = noise(3, 200_000);
    let big = noise(4, 3 << 20);
    write(&src.join("small"), &small);
    write(&src.join("big"), &big);
    let mut o = repo.options(&src);
    o.chunking = Some(SMALL_CHUNKS);
    lazyroot::publish::publish(&o, &lazyroot::publish::NoProgress).unwrap();
    // Two mounts sharing one cache, one with kernel passthrough for whole files.
    let plain = serve_and_mount(&repo, "plain", &[]);
    let pt = mount_from(
        &repo,
        &plain.server.url(FQRN),
        "pt",
        "plain.cache",
        &["--passthrough"],
    )
    .unwrap();

    for _ in 0..2 {
        assert_eq!(std::fs::read(pt.dir.join("small")).unwrap(), small);
        assert_eq!(
            std::fs::read(pt.dir.join("big")).unwrap(),
            big,
            "chunked files read through the daemon"
        );
        assert_eq!(std::fs::read(plain.mount.dir.join("small")).unwrap(), small);
    }
}

#[test]
fn path_mounts_show_one_image_as_the_root() {
    let repo = TestRepo::new();
    for (name, text) in [("a", "image a"), ("b", "image b")] {
        let src = repo.dir.path().join(format!("src-{name}"));
        write(&src.join("etc/which"), text.as_bytes());
        repo.publish_at(&src, &format!("/images/{name}"));
    }
    let m = serve_and_mount(&repo, "a", &["--path", "/images/a"]);
    assert_eq!(
        std::fs::read_to_string(m.mount.dir.join("etc/which")).unwrap(),
        "image a"
    );
    let mut names: Vec<_> = std::fs::read_dir(&m.mount.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // The image is a nested catalog, whose root holds the marker stock writes there.
    assert_eq!(
        names,
        [".cvmfscatalog", "etc"],
        "only the image, no skeleton for plain mounts"
    );
    let err = mount_from(
        &repo,
        &m.server.url(FQRN),
        "none",
        "a.cache",
        &["--path", "/images/c"],
    )
    .err()
    .expect("a missing path must not mount");
    assert!(err.contains("/images/c"), "{err}");
}
