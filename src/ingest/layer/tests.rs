//! Layers built by hand with the tar crate's Builder, read and applied: OCI semantics and
//! refusals, checked on the tree the publisher would get.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::EntryType;

use super::*;
use crate::cvmfs::hash::HashAlgo;
use crate::publish::content::FileContent;
use crate::publish::walk::{Node, NodeKind};
use crate::publish::ChunkSizes;
use crate::repository::local::LocalStore;

const MTIME: u64 = 1_600_000_000;

/// A layer under construction.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    /// A member with `name` and `link` written as they are (so that hostile names can be
    /// made), or through a GNU long name when `name` is longer than a header holds.
    fn entry(
        &mut self,
        name: &[u8],
        et: EntryType,
        mode: u32,
        link: &[u8],
        data: &[u8],
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(et);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        if name.len() <= 100 {
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
        } else {
            self.0
                .append_data(&mut h, Path::new(OsStr::from_bytes(name)), data)
                .unwrap();
        }
        self
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(name.as_bytes(), EntryType::Directory, mode, b"", b"")
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), EntryType::Regular, 0o644, b"", data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            name.as_bytes(),
            EntryType::Symlink,
            0o777,
            target.as_bytes(),
            b"",
        )
    }

    fn link(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            name.as_bytes(),
            EntryType::Link,
            0o644,
            target.as_bytes(),
            b"",
        )
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.0
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self
    }

    fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

struct Store {
    _dir: tempfile::TempDir,
    store: LocalStore,
}

fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    store.create_layout().unwrap();
    Store { _dir: dir, store }
}

fn read_with(
    s: &Store,
    name: &str,
    tar: &[u8],
    chunking: Option<ChunkSizes>,
    limits: &ReadLimits,
) -> Result<LayerEntries, LayerError> {
    read_layer(
        tar,
        Compression::None,
        name,
        None,
        &s.store,
        HashAlgo::Sha1,
        chunking,
        limits,
    )
    .map(|(e, _)| e)
}

fn read(s: &Store, name: &str, tar: &[u8]) -> LayerEntries {
    read_with(s, name, tar, None, &ReadLimits::default()).unwrap()
}

fn tree_of(s: &Store, layers: &[Vec<u8>]) -> Result<Tree, LayerError> {
    let mut t = Tree::new();
    for (i, l) in layers.iter().enumerate() {
        let e = read_with(s, &format!("sha256:{i}"), l, None, &ReadLimits::default())?;
        t.apply(&e)?;
    }
    Ok(t)
}

/// path → (kind letter, mode, uid, content or target, inode, nlink)
type Flat = BTreeMap<String, (char, u32, u32, String, u64, u64)>;

fn flatten(t: Tree) -> Flat {
    let (root, contents) = t.into_publish(None);
    let mut out = Flat::new();
    fn walk(n: &Node, path: String, contents: &[FileContent], out: &mut Flat) {
        let m = &n.meta;
        let (k, what) = match &n.kind {
            NodeKind::Dir(children) => {
                for c in children {
                    let p = format!("{path}/{}", crate::repository::listing::escape(&c.name));
                    walk(c, p, contents, out);
                }
                ('d', String::new())
            }
            NodeKind::File(i) => ('f', contents[*i].encode()),
            NodeKind::Symlink(t) => ('l', String::from_utf8_lossy(t).into_owned()),
            NodeKind::Special => ('s', format!("{:o}:{}", m.mode & libc::S_IFMT, m.rdev)),
        };
        out.insert(path, (k, m.mode & 0o7777, m.uid, what, m.ino, m.nlink));
    }
    walk(&root, String::new(), &contents, &mut out);
    out
}

fn paths(f: &Flat) -> Vec<&str> {
    f.keys().map(|k| k.as_str()).collect()
}

#[test]
fn whiteouts_remove_lower_entries_but_never_their_own_layers() {
    let s = store();
    let l1 = Tar::new()
        .dir("a", 0o755)
        .file("a/x", b"x")
        .file("a/y", b"y")
        .file("b", b"b")
        .dir("gone", 0o755)
        .file("gone/deep", b"d")
        .bytes();
    // `c` comes before its whiteout and `e` after: both stay, as whiteouts only act on
    // lower layers.
    let l2 = Tar::new()
        .file("c", b"c")
        .file("a/.wh.x", b"")
        .file(".wh.c", b"")
        .file(".wh.gone", b"")
        .file(".wh.e", b"")
        .file("e", b"e")
        .file(".wh.never-existed", b"")
        .bytes();
    let f = flatten(tree_of(&s, &[l1, l2]).unwrap());
    assert_eq!(paths(&f), ["", "/a", "/a/y", "/b", "/c", "/e"]);
}

#[test]
fn opaque_directories_hide_lower_children_and_keep_their_own_layers() {
    let s = store();
    let l1 = Tar::new()
        .dir("d", 0o755)
        .file("d/old", b"o")
        .dir("d/sub", 0o755)
        .file("d/sub/f", b"f")
        .file("other", b"x")
        .bytes();
    let l2 = Tar::new()
        .dir("d", 0o750)
        .file("d/new", b"n")
        .file("d/.wh..wh..opq", b"")
        .bytes();
    let f = flatten(tree_of(&s, &[l1, l2]).unwrap());
    assert_eq!(paths(&f), ["", "/d", "/d/new", "/other"]);
    assert_eq!(f["/d"].1, 0o750);
}

#[test]
fn later_layers_replace_entries_of_another_kind() {
    let s = store();
    let l1 = Tar::new()
        .file("p", b"file")
        .dir("q", 0o755)
        .file("q/child", b"c")
        .symlink("r", "p")
        .file("keep", b"k")
        .bytes();
    let l2 = Tar::new()
        .dir("p", 0o700)
        .file("p/in", b"i")
        .file("q", b"now a file")
        .dir("r", 0o755)
        .symlink("keep", "p/in")
        .bytes();
    let f = flatten(tree_of(&s, &[l1, l2]).unwrap());
    assert_eq!(paths(&f), ["", "/keep", "/p", "/p/in", "/q", "/r"]);
    assert_eq!((f["/p"].0, f["/q"].0, f["/r"].0), ('d', 'f', 'd'));
    assert_eq!((f["/keep"].0, f["/keep"].3.as_str()), ('l', "p/in"));
}

#[test]
fn a_directory_seen_again_takes_the_new_metadata_and_keeps_its_children() {
    let s = store();
    let mut h = Tar::new();
    h.entry(b"d", EntryType::Directory, 0o700, b"", b"");
    let l1 = h.file("d/f", b"f").bytes();
    let l2 = Tar::new()
        .pax(&[("uid", b"70000"), ("mtime", b"1700000000.5")])
        .dir("d", 0o2775)
        .bytes();
    let t = tree_of(&s, &[l1, l2]).unwrap();
    let (root, _) = t.into_publish(None);
    let NodeKind::Dir(top) = &root.kind else {
        panic!()
    };
    let d = &top[0];
    assert_eq!((d.meta.mode & 0o7777, d.meta.uid), (0o2775, 70000));
    assert_eq!(
        (d.meta.mtime, d.meta.mtime_ns),
        (1_700_000_000, 500_000_000)
    );
    let NodeKind::Dir(children) = &d.kind else {
        panic!()
    };
    assert_eq!(children.len(), 1);
}

#[test]
fn missing_parents_are_made_0755_root_and_the_root_entry_sets_the_root() {
    let s = store();
    let l1 = Tar::new().file("x/y/z", b"z").dir("./", 0o700).bytes();
    let t = tree_of(&s, &[l1]).unwrap();
    let (root, _) = t.into_publish(None);
    assert_eq!(root.meta.mode, libc::S_IFDIR | 0o700);
    let NodeKind::Dir(top) = &root.kind else {
        panic!()
    };
    assert_eq!(top[0].meta.mode, libc::S_IFDIR | 0o755);
    assert_eq!(
        (top[0].meta.uid, top[0].meta.gid, top[0].meta.mtime),
        (0, 0, 0)
    );
}

#[test]
fn hard_links_within_and_across_layers_share_content_and_inode() {
    let s = store();
    let l1 = Tar::new()
        .file("a", b"first")
        .link("b", "a")
        .dir("dir", 0o755)
        .link("dir/c", "./a")
        .bytes();
    // A link to a lower layer's file; then `a` replaced: its other names keep the old
    // inode, as unlink-and-create leaves them.
    let l2 = Tar::new().link("e", "b").file("a", b"second").bytes();
    let f = flatten(tree_of(&s, &[l1, l2]).unwrap());
    let (b, c, e, a) = (&f["/b"], &f["/dir/c"], &f["/e"], &f["/a"]);
    assert_eq!((b.4, b.5), (c.4, 3));
    assert_eq!((e.4, e.3.as_str()), (b.4, b.3.as_str()));
    assert_ne!(a.4, b.4);
    assert_ne!(a.3, b.3);
    assert_eq!(a.5, 1);
}

#[test]
fn pax_headers_give_long_names_xattrs_nanoseconds_and_owners() {
    let s = store();
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    let cap = [
        1u8, 0, 0, 2, b'\n', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut t = Tar::new();
    t.pax(&[
        ("SCHILY.xattr.security.capability", &cap),
        (
            "SCHILY.xattr.security.selinux",
            b"system_u:object_r:bin_t:s0",
        ),
        ("SCHILY.xattr.user.empty", b""),
        ("SCHILY.xattr.user.k", b"v"),
        ("mtime", b"1600000000.123456789"),
        ("uid", b"4000000000"),
        ("gid", b"77"),
    ])
    .entry(b"bin", EntryType::Regular, 0o4755, b"", b"elf");
    t.pax(&[("path", long.as_bytes())])
        .file("ignored-short-name", b"long");
    t.entry(b"caf\xe9", EntryType::Regular, 0o1777, b"", b"latin-1 name");
    t.entry(
        &[b"x".repeat(90), b"/\xff".repeat(10)].concat(),
        EntryType::Regular,
        0o644,
        b"",
        b"gnu long",
    );
    let e = read(&s, "sha256:pax", &t.bytes());
    let bin = &e.entries[0];
    let What::File { attrs, .. } = &bin.what else {
        panic!("{bin:?}")
    };
    assert_eq!(bin.path, b"bin");
    assert_eq!(attrs.mode, 0o4755);
    assert_eq!((attrs.uid, attrs.gid), (4_000_000_000, 77));
    assert_eq!((attrs.mtime, attrs.mtime_ns), (1_600_000_000, 123_456_789));
    let names: Vec<&[u8]> = attrs.xattrs.keys().map(|k| k.as_slice()).collect();
    assert_eq!(names, [&b"security.capability"[..], b"user.k"]);
    assert_eq!(attrs.xattrs[&b"security.capability"[..]], cap);
    assert_eq!(e.entries[1].path, long.as_bytes());
    assert_eq!(e.entries[2].path, b"caf\xe9");
    let What::File { attrs, .. } = &e.entries[2].what else {
        panic!()
    };
    assert_eq!(attrs.mode, 0o1777);
    assert_eq!(
        e.entries[3].path,
        [b"x".repeat(90), b"/\xff".repeat(10)].concat()
    );
}

#[test]
fn devices_fifos_and_chunked_files() {
    let s = store();
    let mut t = Tar::new();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Block);
    h.set_path("sda1").unwrap();
    h.set_mode(0o660);
    h.set_device_major(8).unwrap();
    h.set_device_minor(1).unwrap();
    h.set_size(0);
    h.set_cksum();
    t.0.append(&h, &b""[..]).unwrap();
    t.entry(b"pipe", EntryType::Fifo, 0o600, b"", b"");
    let big: Vec<u8> = (0..600_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    t.file("big", &big);
    let sizes = ChunkSizes {
        min: 16 << 10,
        avg: 32 << 10,
        max: 64 << 10,
    };
    let e = read_with(
        &s,
        "sha256:dev",
        &t.bytes(),
        Some(sizes),
        &ReadLimits::default(),
    )
    .unwrap();
    let What::File { content, .. } = &e.entries[2].what else {
        panic!()
    };
    let FileContent::Chunked { chunks, size } = content else {
        panic!("{content:?}")
    };
    assert_eq!(*size, big.len() as u64);
    assert!(chunks.len() > 4);
    assert!(e.objects().iter().all(|o| s.store.contains(o)));
    let mut tree = Tree::new();
    tree.apply(&e).unwrap();
    let f = flatten(tree);
    assert_eq!(
        f["/sda1"].3,
        format!("{:o}:{}", libc::S_IFBLK, libc::makedev(8, 1))
    );
    assert_eq!(f["/sda1"].1, 0o660);
    assert_eq!(f["/pipe"].3, format!("{:o}:0", libc::S_IFIFO));
}

#[test]
fn remembered_entries_apply_as_the_stream_did() {
    let s = store();
    let l1 = Tar::new()
        .dir("a", 0o755)
        .file("a/x", b"x")
        .file("y", b"y")
        .bytes();
    let l2 = Tar::new().file("a/.wh.x", b"").link("z", "y").bytes();
    let direct = flatten(tree_of(&s, &[l1.clone(), l2.clone()]).unwrap());
    let mut t = Tree::new();
    for l in [l1, l2] {
        let json = read(&s, "sha256:l", &l).to_json();
        t.apply(&LayerEntries::from_json(&json).unwrap()).unwrap();
    }
    assert_eq!(flatten(t), direct);
}

/// The refusal's message names the layer, the member and the reason.
fn refused(layers: &[Vec<u8>], member: &str, reason: &str) {
    let s = store();
    let e = match tree_of(&s, layers) {
        Ok(_) => panic!("accepted; expected a refusal of {member:?} ({reason})"),
        Err(e) => e,
    };
    let msg = e.to_string();
    let layer = format!("sha256:{}", layers.len() - 1);
    assert!(msg.contains(&layer), "{msg} does not name {layer}");
    assert!(
        msg.contains(&format!("{member:?}")),
        "{msg} does not name {member:?}"
    );
    assert!(msg.contains(reason), "{msg} does not say {reason:?}");
}

#[test]
fn names_that_escape_the_root_are_refused() {
    let one = |name: &[u8]| {
        vec![Tar::new()
            .entry(name, EntryType::Regular, 0o644, b"", b"evil")
            .bytes()]
    };
    refused(
        &one(b"../etc/passwd"),
        "../etc/passwd",
        "escapes the image root",
    );
    refused(&one(b"a/../../x"), "a/../../x", "escapes the image root");
    refused(&one(b"/etc/passwd"), "/etc/passwd", "absolute name");
    refused(&one(b""), "", "empty name");
    let through = vec![
        Tar::new().symlink("s", "/etc").bytes(),
        Tar::new().file("s/passwd", b"evil").bytes(),
    ];
    refused(&through, "s/passwd", "symlink in the image");
    // Within one layer too, and for whiteouts.
    let same = vec![Tar::new()
        .symlink("s", "../../..")
        .file("s/x", b"evil")
        .bytes()];
    refused(&same, "s/x", "symlink in the image");
    let wh = vec![
        Tar::new().symlink("s", "/").bytes(),
        Tar::new().file("s/.wh.etc", b"").bytes(),
    ];
    refused(&wh, "s/etc", "symlink in the image");
    let parent_file = vec![Tar::new().file("f", b"").file("f/x", b"").bytes()];
    refused(&parent_file, "f/x", "is not a directory");
    refused(&one(b"./"), "./", "only be a directory");
}

#[test]
fn bad_hard_links_and_whiteouts_are_refused() {
    let link = |target: &str| vec![Tar::new().file("a", b"a").link("l", target).bytes()];
    refused(&link("/etc/shadow"), "l", "outside the image");
    refused(&link("../a"), "l", "outside the image");
    refused(&link("missing"), "l", "does not exist");
    refused(&link("a/under-a-file"), "l", "does not exist");
    let to_dir = vec![Tar::new().dir("d", 0o755).link("l", "d").bytes()];
    refused(&to_dir, "l", "is a directory");
    let wh = |name: &str| vec![Tar::new().file(name, b"").bytes()];
    refused(&wh(".wh.."), ".wh..", "not a name");
    refused(&wh("d/.wh..."), "d/.wh...", "not a name");
    refused(&wh(".wh."), ".wh.", "not a name");
}

#[test]
fn oversized_headers_and_too_many_members_are_refused() {
    let s = store();
    let long = "n".repeat(5000);
    let tar = Tar::new()
        .pax(&[("path", long.as_bytes())])
        .file("x", b"")
        .bytes();
    let limits = ReadLimits {
        max_header_bytes: 4096,
        ..ReadLimits::default()
    };
    let e = read_with(&s, "sha256:big", &tar, None, &limits).unwrap_err();
    assert!(
        matches!(e.problem, Problem::HeaderTooLarge { limit: 4096, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("sha256:big"), "{e}");
    let tar = Tar::new()
        .file("a", b"")
        .file("b", b"")
        .file("c", b"")
        .bytes();
    let limits = ReadLimits {
        max_entries: 2,
        ..ReadLimits::default()
    };
    let e = read_with(&s, "sha256:many", &tar, None, &limits).unwrap_err();
    assert!(matches!(e.problem, Problem::TooManyMembers(2)), "{e}");
}

#[test]
fn a_wrong_diff_id_or_a_truncated_stream_is_refused() {
    let s = store();
    let tar = Tar::new().file("a", b"content").bytes();
    let e = read_layer(
        &tar[..],
        Compression::None,
        "sha256:layer",
        Some("sha256:0000"),
        &s.store,
        HashAlgo::Sha1,
        None,
        &ReadLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(e.problem, Problem::DiffId { .. }), "{e}");
    assert!(e.to_string().contains("sha256:layer"), "{e}");
    let good = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&tar))
    );
    read_layer(
        &tar[..],
        Compression::None,
        "l",
        Some(&good),
        &s.store,
        HashAlgo::Sha1,
        None,
        &ReadLimits::default(),
    )
    .unwrap();
    let e = read_with(&s, "sha256:cut", &tar[..520], None, &ReadLimits::default()).unwrap_err();
    assert!(matches!(e.problem, Problem::Read(_)), "{e}");
    assert!(e.to_string().contains("\"a\""), "{e}");
    let mut bad = tar.clone();
    bad[0] ^= 1;
    let e = read_with(&s, "sha256:sum", &bad, None, &ReadLimits::default()).unwrap_err();
    assert!(matches!(e.problem, Problem::BadHeader(_)), "{e}");
}

#[test]
fn a_gzip_bomb_is_stopped_early() {
    let s = store();
    // 256 MiB of zeros in one file, about 256 KiB compressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    {
        let mut b = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_path("zeros").unwrap();
        h.set_size(256 << 20);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, std::io::repeat(0).take(256 << 20)).unwrap();
        b.finish().unwrap();
    }
    let gz = gz.finish().unwrap();
    let e = read_layer(
        &gz[..],
        Compression::Gzip,
        "sha256:bomb",
        None,
        &s.store,
        HashAlgo::Sha1,
        None,
        &ReadLimits::default(),
    )
    .unwrap_err();
    let Problem::Expansion { uncompressed, .. } = e.problem else {
        panic!("{e}")
    };
    assert!(
        uncompressed < 64 << 20,
        "stopped only after {uncompressed} bytes"
    );
    assert!(e.to_string().contains("\"zeros\""), "{e}");
}

use std::io::Read as _;
