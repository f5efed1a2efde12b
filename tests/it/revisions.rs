//! Revisions seen through a mount: an unpinned mount picks up a new revision after the TTL,
//! a pinned one never changes, and with no server the cached revision still mounts.

use std::time::{Duration, Instant};

use lazyroot::publish::{self, NoProgress};

use crate::common::*;
use crate::net::*;

fn publish_with_ttl(
    repo: &TestRepo,
    src: &std::path::Path,
    ttl: u64,
) -> lazyroot::publish::PublishReport {
    let mut o = repo.options(src);
    o.ttl = ttl;
    publish::publish(&o, &NoProgress).unwrap()
}

#[test]
fn unpinned_mount_follows_new_revisions_and_pinned_does_not() {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("src");
    write(&src.join("v"), b"one\n");
    let first = publish_with_ttl(&repo, &src, 1);
    let server = Server::start(&[&repo.repo]);
    let url = server.url(FQRN);
    let latest = mount_from(&repo, &url, "latest", "c1", &[]).unwrap();
    let root = first.root.hash.to_hex();
    let pinned = mount_from(&repo, &url, "pinned", "c2", &["--root-hash", &root]).unwrap();
    assert!(pinned.line.contains("(pinned)"));

    write(&src.join("new"), b"two\n");
    publish_with_ttl(&repo, &src, 1);
    // After the TTL, a new lookup sees revision 3 (bounded wait: the TTL is 1 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read(latest.dir.join("new")).is_err() {
        assert!(
            Instant::now() < deadline,
            "the unpinned mount never picked up the new revision"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(std::fs::read(latest.dir.join("new")).unwrap(), b"two\n");
    assert!(
        std::fs::read(pinned.dir.join("new")).is_err(),
        "a pinned mount never changes"
    );
    assert_eq!(std::fs::read(pinned.dir.join("v")).unwrap(), b"one\n");
}

#[test]
fn offline_mount_serves_what_is_cached() {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("src");
    write(&src.join("cached"), b"in the cache\n");
    write(&src.join("uncached"), b"never read\n");
    repo.publish(&src);
    let server = Server::start(&[&repo.repo]);
    let url = server.url(FQRN);
    let mnt = repo.dir.path().join("mnt");
    let mount = || mount_from(&repo, &url, "mnt", "cache", &["--timeout", "1"]).unwrap();
    let m = mount();
    assert_eq!(
        std::fs::read(mnt.join("cached")).unwrap(),
        b"in the cache\n"
    );
    assert!(m.stop().success());
    drop(server);

    let m = mount();
    assert!(m.line.contains("offline"), "{}", m.line);
    assert_eq!(
        std::fs::read(mnt.join("cached")).unwrap(),
        b"in the cache\n"
    );
    let err = std::fs::read(mnt.join("uncached")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    drop(m);

    // With no cache at all there is nothing to mount: a clear refusal.
    let err = mount_from(&repo, &url, "mnt2", "fresh-cache", &["--timeout", "1"])
        .err()
        .expect("nothing cached: refused");
    assert!(err.contains("no server answered"), "{err}");
}

#[test]
fn listings_follow_new_revisions_in_unpinned_mounts() {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("src");
    write(&src.join("top"), b"1\n");
    write(&src.join("dir/inner"), b"1\n");
    publish_with_ttl(&repo, &src, 1);
    let m = serve_and_mount(&repo, "mnt", &[]);
    let names = |p: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&m.mount.dir), ["dir", "top"]);
    assert_eq!(names(&m.mount.dir.join("dir")), ["inner"]);
    write(&src.join("top2"), b"2\n");
    write(&src.join("dir/inner2"), b"2\n");
    publish_with_ttl(&repo, &src, 1);
    // Bounded wait for the TTL; listings must not stay cached from the old revision.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = std::fs::metadata(m.mount.dir.join("top2")); // a lookup triggers the revision check
        if names(&m.mount.dir) == ["dir", "top", "top2"]
            && names(&m.mount.dir.join("dir")) == ["inner", "inner2"]
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "listings never showed the new revision"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
