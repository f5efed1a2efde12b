//! Property test: random trees with every entry kind and all metadata → publish → read back
//! identical (content, type, mode with setuid/setgid/sticky, owner, mtime with nanoseconds,
//! symlink targets, device numbers, xattrs, hard-link groups, names that are not UTF-8).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use lazyroot::cvmfs::catalog::EntryKind;
use lazyroot::publish::{self, ChunkSizes, NoProgress};
use lazyroot::repository::At;
use proptest::prelude::*;

use crate::common::*;

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(usize, u64),
    Symlink(Vec<u8>),
    HardLink(usize),
    Fifo,
    Socket,
    CharDev(u32, u32),
    BlockDev(u32, u32),
}

#[derive(Debug, Clone)]
struct Spec {
    parent: usize,
    name: Vec<u8>,
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    xattr: Option<(String, Vec<u8>)>,
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|s| s.into_bytes()),
        proptest::collection::vec(
            any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
            1..12
        ),
        Just(b"new\nline".to_vec()),
        Just(b"bad\xffutf8".to_vec()),
    ]
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn spec() -> impl Strategy<Value = Spec> {
    let kind = prop_oneof![
        3 => Just(Kind::Dir),
        4 => (0usize..70_000, any::<u64>()).prop_map(|(n, s)| Kind::File(n, s)),
        1 => proptest::collection::vec(1u8..=255, 1..40).prop_map(Kind::Symlink),
        1 => any::<usize>().prop_map(Kind::HardLink),
        1 => Just(Kind::Fifo),
        1 => Just(Kind::Socket),
        1 => (0u32..300, 0u32..300).prop_map(|(a, b)| Kind::CharDev(a, b)),
        1 => (0u32..300, 0u32..300).prop_map(|(a, b)| Kind::BlockDev(a, b)),
    ];
    let xattr = proptest::option::of(prop_oneof![
        (
            "user\\.[a-z]{1,10}",
            proptest::collection::vec(any::<u8>(), 0..40)
        ),
        Just((
            "security.capability".to_string(),
            vec![1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        )),
    ]);
    (
        any::<usize>(),
        name(),
        kind,
        0u32..0o10000,
        0u32..70_000,
        0u32..70_000,
        (0i64..4_000_000_000, 0u32..1_000_000_000),
        xattr,
    )
        .prop_map(|(parent, name, kind, mode, uid, gid, mtime, xattr)| Spec {
            parent,
            name,
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattr,
        })
}

/// Creates the tree; returns the paths created (index 0 is the root).
fn materialize(root: &Path, specs: &[Spec]) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    let mut files: Vec<PathBuf> = Vec::new();
    let mut all = vec![root.to_path_buf()];
    let mut fixups: Vec<(PathBuf, &Spec)> = Vec::new();
    for s in specs {
        let parent = dirs[s.parent % dirs.len()].clone();
        let p = parent.join(OsStr::from_bytes(&s.name));
        if p.symlink_metadata().is_ok() {
            continue;
        }
        let made = match &s.kind {
            Kind::Dir => std::fs::create_dir(&p).is_ok(),
            Kind::File(n, seed) => std::fs::write(&p, noise(*seed, *n)).is_ok(),
            Kind::Symlink(t) => std::os::unix::fs::symlink(OsStr::from_bytes(t), &p).is_ok(),
            Kind::HardLink(i) if !files.is_empty() => {
                std::fs::hard_link(&files[i % files.len()], &p).is_ok()
            }
            Kind::HardLink(_) => false,
            Kind::Fifo => {
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).is_ok()
            }
            Kind::Socket => std::os::unix::net::UnixListener::bind(&p).is_ok(),
            Kind::CharDev(a, b) | Kind::BlockDev(a, b) => {
                let kind = if matches!(s.kind, Kind::CharDev(..)) {
                    nix::sys::stat::SFlag::S_IFCHR
                } else {
                    nix::sys::stat::SFlag::S_IFBLK
                };
                nix::sys::stat::mknod(
                    &p,
                    kind,
                    nix::sys::stat::Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(*a as u64, *b as u64),
                )
                .is_ok()
            }
        };
        if !made {
            continue;
        }
        match s.kind {
            Kind::Dir => dirs.push(p.clone()),
            Kind::File(..) => files.push(p.clone()),
            _ => {}
        }
        all.push(p.clone());
        fixups.push((p, s));
    }
    // Metadata last, deepest first, so that setting a directory's mtime is not undone by
    // creating entries in it.
    for (p, s) in fixups.iter().rev() {
        let is_link = p.symlink_metadata().unwrap().file_type().is_symlink();
        let _ = nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            p,
            Some(nix::unistd::Uid::from_raw(s.uid)),
            Some(nix::unistd::Gid::from_raw(s.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        if !is_link && !matches!(s.kind, Kind::HardLink(_)) {
            // chown clears setuid bits, so mode comes after it.
            let mode = if matches!(s.kind, Kind::Dir) {
                s.mode | 0o700
            } else {
                s.mode
            };
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        }
        // After chown, which would drop security.capability.
        if let Some((k, v)) = &s.xattr {
            if !is_link {
                let _ = xattr_set(p, k, v);
            }
        }
        let t = nix::sys::time::TimeSpec::new(s.mtime.0, s.mtime.1 as i64);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            p,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
    all
}

#[allow(unsafe_code)]
fn xattr_set(p: &Path, k: &str, v: &[u8]) -> std::io::Result<()> {
    let cp = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let ck = std::ffi::CString::new(k).unwrap();
    // SAFETY: both strings are NUL-terminated and outlive the call; `v` is valid for its length.
    let r =
        unsafe { libc::lsetxattr(cp.as_ptr(), ck.as_ptr(), v.as_ptr() as *const _, v.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn xattrs_of(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let out = std::process::Command::new("getfattr")
        .args(["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
        .arg(p)
        .output()
        .unwrap();
    let mut m = BTreeMap::new();
    // Attribute lines are `name=0xhex`; the `# file: …` header is skipped (a file name may
    // itself contain `=`).
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
    {
        if let Some((k, v)) = line.split_once('=') {
            if k != "security.selinux" {
                m.insert(
                    k.as_bytes().to_vec(),
                    hex::decode(v.trim_start_matches("0x")).unwrap(),
                );
            }
        }
    }
    m
}

/// Hard links are kept per directory, as stock CernVM-FS keeps them: names of one inode in
/// one directory form a group with that many links; a name alone in its directory is a
/// plain file. A nested catalog's root holds a `.cvmfscatalog` marker, as stock writes it.
fn check_identical(repo: &TestRepo, root: &Path, paths: &[PathBuf]) {
    let r = repo.assert_healthy();
    assert_stock_rows(repo);
    let snap = r.snapshot(&At::Latest).unwrap();
    let mut groups: HashMap<(PathBuf, u64), u32> = HashMap::new();
    let mut names_here: HashMap<(PathBuf, u64), u32> = HashMap::new();
    for p in paths {
        let m = p.symlink_metadata().unwrap();
        if m.is_file() && m.nlink() > 1 {
            *names_here
                .entry((p.parent().unwrap().to_path_buf(), m.ino()))
                .or_insert(0) += 1;
        }
    }
    let mut count = 0;
    for p in paths {
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes();
        let repo_path: Vec<u8> = if rel.is_empty() {
            Vec::new()
        } else {
            [b"/", rel].concat()
        };
        let m = p.symlink_metadata().unwrap();
        let f = snap
            .lookup(&repo_path)
            .unwrap()
            .unwrap_or_else(|| panic!("{p:?} missing"));
        let e = &f.entry;
        let what = format!("{p:?}");
        assert_eq!(e.mode, m.mode(), "mode {what}");
        assert_eq!((e.uid, e.gid), (m.uid(), m.gid()), "owner {what}");
        assert_eq!(
            (e.mtime, e.mtime_ns),
            (m.mtime(), Some(m.mtime_nsec() as u32)),
            "mtime {what}"
        );
        let x = xattrs_of(p);
        assert_eq!(e.xattrs.clone().unwrap_or_default(), x, "xattrs {what}");
        match e.kind() {
            EntryKind::File => {
                let mut buf = Vec::new();
                snap.read_found(&f, &mut buf).unwrap();
                assert_eq!(buf, std::fs::read(p).unwrap(), "content {what}");
                let id = (p.parent().unwrap().to_path_buf(), m.ino());
                match names_here.get(&id).copied().unwrap_or(1) {
                    1 => assert_eq!(
                        (e.hardlink_group(), e.link_count()),
                        (0, 1),
                        "a name alone in its directory is a plain file: {what}"
                    ),
                    n => {
                        let g = *groups.entry(id).or_insert(e.hardlink_group());
                        assert!(g != 0 && g == e.hardlink_group(), "hard-link group {what}");
                        assert_eq!(e.link_count(), n, "link count {what}");
                    }
                }
            }
            EntryKind::Symlink => assert_eq!(
                e.symlink,
                std::fs::read_link(p).unwrap().as_os_str().as_bytes(),
                "{what}"
            ),
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                assert_eq!(e.rdev(), m.rdev(), "rdev {what}")
            }
            EntryKind::Directory => {
                let mut want: Vec<Vec<u8>> = std::fs::read_dir(p)
                    .unwrap()
                    .map(|d| d.unwrap().file_name().as_bytes().to_vec())
                    .collect();
                want.sort();
                let listed = snap.list(&repo_path).unwrap();
                let marker = listed.iter().find(|c| c.entry.name == b".cvmfscatalog");
                let got: Vec<Vec<u8>> = listed
                    .iter()
                    .map(|c| c.entry.name.clone())
                    .filter(|n| want.contains(n) || n != b".cvmfscatalog")
                    .collect();
                assert_eq!(got, want, "children {what}");
                if let Some(mk) = marker.filter(|_| !want.iter().any(|n| n == b".cvmfscatalog")) {
                    assert_eq!(mk.entry.mode, libc::S_IFREG | 0o644, "marker in {what}");
                    assert_eq!(mk.entry.size, 0, "marker in {what}");
                    assert!(!repo_path.is_empty(), "the root catalog needs no marker");
                }
            }
            EntryKind::Fifo | EntryKind::Socket => {}
        }
        count += 1;
    }
    assert_eq!(count, paths.len());
}

#[test]
fn random_trees_round_trip() {
    let repo = TestRepo::new();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(proptest::collection::vec(spec(), 1..40), 0u8..4),
            |(specs, cut)| {
                let src = tempfile::tempdir().unwrap();
                let root = src.path().join("tree");
                std::fs::create_dir(&root).unwrap();
                let paths = materialize(&root, &specs);
                let mut o = repo.options(&root);
                o.chunking = Some(ChunkSizes {
                    min: 1024,
                    avg: 4096,
                    max: 16384,
                });
                // Vary the catalog layout: sometimes every directory gets a catalog of its own.
                o.auto_catalogs = (cut == 0).then_some(publish::AutoCatalogs { min: 1, max: 2 });
                publish::publish(&o, &NoProgress).unwrap();
                check_identical(&repo, &root, &paths);
                Ok(())
            },
        )
        .unwrap();
}
