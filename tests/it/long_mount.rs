//! A mount that lives for months and follows many revisions holds what its current
//! revision and the kernel need, not everything it ever saw: 200 revisions are published
//! under a live unpinned `lazyroot mount` (each switched to at once with SIGHUP), every
//! changed file read back byte-exact through it, and the process's descriptors, resident
//! memory, inode table, loaded catalogs and pinned cache bytes are compared between the
//! 20th revision and the 200th.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::net::*;

const REVISIONS: u64 = 200;
/// Where the first figures are taken: after the cache and the allocator have warmed up.
const WARM: u64 = 20;

fn xattr(mnt: &Path, name: &str) -> u64 {
    let mut buf = [0u8; 64];
    let c = std::ffi::CString::new(mnt.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the length given.
    #[allow(unsafe_code)]
    let len = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len > 0,
        "{name} on {}: {}",
        mnt.display(),
        std::io::Error::last_os_error()
    );
    std::str::from_utf8(&buf[..len as usize])
        .unwrap()
        .parse()
        .unwrap()
}

/// The tree of revision `n`: three files whose content changes, one in a nested catalog.
fn tree(dir: &Path, n: u64) {
    write(
        &dir.join("etc/version"),
        format!("revision {n}\n").as_bytes(),
    );
    write(&dir.join("sub/.cvmfscatalog"), b"");
    write(&dir.join("sub/data"), &noise(n, 4096 + n as usize));
    write(&dir.join("sub/deep/note"), format!("note {n}\n").as_bytes());
    write(
        &dir.join("static/unchanged"),
        b"the same in every revision\n",
    );
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    fds: u64,
    rss_kib: u64,
    inodes: u64,
    catalogs: u64,
    pinned: u64,
    pinned_kib: u64,
}

fn figures(pid: u32, mnt: &Path) -> Figures {
    // The kernel forgets the inodes it no longer needs when its caches are dropped: what
    // stays in the table after that is what someone still holds.
    std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    Figures {
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count() as u64,
        rss_kib,
        inodes: xattr(mnt, "user.ninode"),
        catalogs: xattr(mnt, "user.nclg"),
        pinned: xattr(mnt, "user.npinned"),
        pinned_kib: xattr(mnt, "user.pinned_kib"),
    }
}

#[test]
fn a_mount_following_200_revisions_stays_flat() {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("src");
    tree(&src, 1);
    repo.publish(&src);
    let m = serve_and_mount(&repo, "mnt", &[]);
    let mnt = m.mount.dir.clone();
    let pid = m.mount.pid();
    let mut warm = None;
    for n in 1..=REVISIONS {
        if n > 1 {
            tree(&src, n);
            let r = repo.publish(&src);
            // SIGHUP: look for the new revision now rather than after the TTL.
            let deadline = Instant::now() + Duration::from_secs(20);
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGHUP,
            )
            .unwrap();
            while xattr(&mnt, "user.revision") != r.revision {
                assert!(
                    Instant::now() < deadline,
                    "revision {} never showed",
                    r.revision
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            // The kernel keeps what it looked up for the mount's entry timeout (60 s):
            // dropping its dentries makes the next reads look up the new revision, and
            // the inodes of the old one are forgotten.
            std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        }
        // Every changed file, byte-exact, and a walk of the whole tree.
        assert_eq!(
            std::fs::read(mnt.join("etc/version")).unwrap(),
            format!("revision {n}\n").as_bytes()
        );
        assert_eq!(
            std::fs::read(mnt.join("sub/data")).unwrap(),
            noise(n, 4096 + n as usize)
        );
        assert_eq!(
            std::fs::read(mnt.join("sub/deep/note")).unwrap(),
            format!("note {n}\n").as_bytes()
        );
        for d in ["", "etc", "sub", "sub/deep", "static"] {
            for e in std::fs::read_dir(mnt.join(d)).unwrap() {
                std::fs::symlink_metadata(e.unwrap().path()).unwrap();
            }
        }
        if n == WARM {
            warm = Some(figures(pid, &mnt));
        }
    }
    let (w, last) = (warm.unwrap(), figures(pid, &mnt));
    eprintln!("after {WARM} revisions: {w:?}; after {REVISIONS}: {last:?}");
    assert!(last.fds <= w.fds + 2, "descriptors grew: {w:?} -> {last:?}");
    assert!(
        last.inodes <= w.inodes + 16,
        "inode table grew: {w:?} -> {last:?}"
    );
    assert!(
        last.catalogs <= w.catalogs,
        "loaded catalogs grew: {w:?} -> {last:?}"
    );
    assert!(
        last.pinned <= w.pinned + 2,
        "pinned objects grew: {w:?} -> {last:?}"
    );
    assert!(
        last.pinned_kib <= w.pinned_kib + 64,
        "pinned bytes grew: {w:?} -> {last:?}"
    );
    assert!(
        last.rss_kib <= w.rss_kib + 8192,
        "memory grew: {w:?} -> {last:?}"
    );
    assert!(m.mount.stop().success());
}
