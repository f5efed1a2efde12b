//! Opening a program fetches what the dynamic loader will open next (its interpreter,
//! `/etc/ld.so.cache`, its libraries) before the loader asks; nothing else.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lazyroot::repository::At;

use crate::common::*;
use crate::net::*;

/// A merged-/usr image with this machine's dash, its loader and libc, laid out with the
/// symlinks Debian has (`/bin`, `/lib`, `/lib64` → `usr/…`, the loader's own link).
fn dash_image(dir: &Path) {
    let usr = dir.join("usr");
    for d in ["bin", "lib/x86_64-linux-gnu", "lib64"] {
        std::fs::create_dir_all(usr.join(d)).unwrap();
    }
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/bin/dash", usr.join("bin/dash")).unwrap();
    for lib in ["ld-linux-x86-64.so.2", "libc.so.6"] {
        std::fs::copy(
            Path::new("/lib/x86_64-linux-gnu").join(lib),
            usr.join("lib/x86_64-linux-gnu").join(lib),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(
        "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        usr.join("lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    for (link, to) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(to, dir.join(link)).unwrap();
    }
    write(&dir.join("etc/ld.so.cache"), &noise(7, 20_000));
    write(&dir.join("etc/unrelated"), &noise(8, 20_000));
}

/// The cache file of the object behind `path` in the published image.
fn cached(repo: &TestRepo, cache: &Path, path: &str) -> PathBuf {
    let r = repo.open();
    let s = r.snapshot(&At::Latest).unwrap();
    let f = s.lookup(path.as_bytes()).unwrap().unwrap();
    let hash = f.entry.hash.unwrap().to_hex();
    cache.join("objects").join(&hash[..2]).join(&hash[2..])
}

#[test]
fn opening_a_program_fetches_its_loader_and_libraries() {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("image");
    dash_image(&src);
    repo.publish_at(&src, "/images/dash");
    let server = Server::start(&[&repo.repo]);
    // The image as the mount's root (as the provisioner mounts it), and inside a mount of
    // the whole repository (the image's root is then found above the program).
    for (name, args, image) in [
        ("image", &["--path", "/images/dash"][..], ""),
        ("whole", &[][..], "images/dash"),
    ] {
        let m = mount_from(
            &repo,
            &server.url(FQRN),
            name,
            &format!("{name}.cache"),
            args,
        )
        .unwrap();
        let root = m.dir.join(image);
        let cache = repo.dir.path().join(format!("{name}.cache"));
        let wanted = [
            "/images/dash/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/images/dash/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/images/dash/etc/ld.so.cache",
        ]
        .map(|p| cached(&repo, &cache, p));
        assert!(
            wanted.iter().all(|p| !p.exists()),
            "{name}: nothing fetched yet"
        );
        // Open the program and read one byte, as exec does first: nothing else is opened.
        let mut one = [0u8; 1];
        std::fs::File::open(root.join("bin/dash"))
            .unwrap()
            .read_exact(&mut one)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !wanted.iter().all(|p| p.exists()) {
            assert!(
                Instant::now() < deadline,
                "{name}: not prefetched: {wanted:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !cached(&repo, &cache, "/images/dash/etc/unrelated").exists(),
            "{name}: only what the loader will open"
        );
        // And the program runs from the mount, reading the prefetched libraries.
        let out = std::process::Command::new("chroot")
            .arg(&root)
            .args(["/bin/dash", "-c", "echo started"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "started\n",
            "{name}: {out:?}"
        );
    }
}
