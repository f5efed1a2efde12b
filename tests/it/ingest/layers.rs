//! Layers of real images built with umoci (deletions, an opaque directory, a file replaced
//! by a directory, hard links across layers, xattrs with security.capability, setuid,
//! devices, a fifo, long and non-UTF-8 names, a chunked file), read and applied in memory
//! and published; the oracle is `umoci unpack` of the same image, published from disk: the
//! two revisions must list the same, nanoseconds included. Then hostile layers: each
//! refused with the layer, the member and the reason, the previous revision intact.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lazyroot::ingest::layer::{read_layer, Compression, LayerError, Problem, ReadLimits, Tree};
use lazyroot::publish::{self, NoProgress, PublishReport};
use lazyroot::repository::At;

use crate::common::*;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn umoci(args: &[&OsStr]) {
    run(Command::new("umoci").args(args));
}

#[allow(unsafe_code)]
fn set_xattr(p: &Path, k: &str, v: &[u8]) {
    let cp = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let ck = std::ffi::CString::new(k).unwrap();
    // SAFETY: both strings are NUL-terminated and outlive the call; `v` is valid for its length.
    let r =
        unsafe { libc::lsetxattr(cp.as_ptr(), ck.as_ptr(), v.as_ptr() as *const _, v.len(), 0) };
    assert_eq!(
        r,
        0,
        "setxattr {k} on {p:?}: {}",
        std::io::Error::last_os_error()
    );
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// One layer of an OCI layout: media type, digest, diff_id.
struct Layer {
    media_type: String,
    digest: String,
    diff_id: String,
}

/// The layers of the image tagged `tag` in the layout at `layout`, bottom first.
fn layers_of(layout: &Path, tag: &str) -> Vec<Layer> {
    let blob = |digest: &str| -> serde_json::Value {
        let path = blob_path(layout, digest);
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let manifest = blob(manifest["digest"].as_str().unwrap());
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    layers
        .iter()
        .zip(diff_ids)
        .map(|(l, d)| Layer {
            media_type: l["mediaType"].as_str().unwrap().to_string(),
            digest: l["digest"].as_str().unwrap().to_string(),
            diff_id: d.as_str().unwrap().to_string(),
        })
        .collect()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (algo, hex) = digest.split_once(':').unwrap();
    layout.join("blobs").join(algo).join(hex)
}

/// A layer as bytes to read: the blob, or (for `zstd`) its tar stream recompressed with
/// zstd (the diff_id stays that of the tar stream).
fn layer_bytes(layout: &Path, l: &Layer, zstd: bool) -> (Vec<u8>, Compression) {
    let bytes = std::fs::read(blob_path(layout, &l.digest)).unwrap();
    let c = Compression::from_media_type(&l.media_type).unwrap();
    if !zstd {
        return (bytes, c);
    }
    assert_eq!(c, Compression::Gzip);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
        &mut plain,
    )
    .unwrap();
    (zstd::encode_all(&plain[..], 3).unwrap(), Compression::Zstd)
}

/// Ingests `layers` into `repo` as its next revision, in one transaction.
fn ingest(
    repo: &TestRepo,
    layers: &[(String, Option<String>, Vec<u8>, Compression)],
    limits: &ReadLimits,
) -> anyhow::Result<PublishReport> {
    let algo = repo.open().manifest().hash_algo();
    publish::transaction(&repo.repo, |store| -> anyhow::Result<PublishReport> {
        let mut tree = Tree::new();
        for (digest, diff_id, bytes, c) in layers {
            let (entries, _) = read_layer(
                &bytes[..],
                *c,
                digest,
                diff_id.as_deref(),
                store,
                algo,
                Some(SMALL_CHUNKS),
                limits,
            )?;
            tree.apply(&entries)?;
        }
        let (root, contents) = tree.into_publish(None);
        let mut o = repo.options(Path::new("/nonexistent"));
        o.chunking = Some(SMALL_CHUNKS);
        Ok(publish::publish_tree(
            store,
            &o,
            root,
            &contents,
            &NoProgress,
        )?)
    })
}

/// The round-trip listing of the latest revision, each line with the mtime's nanoseconds.
fn full_listing(repo: &TestRepo) -> Vec<String> {
    let r = repo.assert_healthy();
    assert_stock_rows(repo);
    let snap = r.snapshot(&At::Latest).unwrap();
    let mut found = Vec::new();
    snap.walk(b"", &mut |f| {
        found.push(f.clone());
        Ok(())
    })
    .unwrap();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
        .iter()
        .map(|f| {
            let line = lazyroot::repository::listing::line(&snap, f).unwrap();
            format!("{line}\tns={:?}", f.entry.mtime_ns)
        })
        .collect()
}

/// Builds the image: three layers by `umoci repack` and one by `umoci raw add-layer`.
fn build_image(dir: &Path) -> PathBuf {
    let layout = dir.join("img");
    let bundle = dir.join("bundle");
    let image = format!("{}:t", layout.display());
    umoci(&["init".as_ref(), "--layout".as_ref(), layout.as_os_str()]);
    umoci(&["new".as_ref(), "--image".as_ref(), image.as_ref()]);
    umoci(&[
        "unpack".as_ref(),
        "--image".as_ref(),
        image.as_ref(),
        bundle.as_os_str(),
    ]);
    // Each repack diffs against the bundle's last state, so each makes a layer of its own.
    let repack = || {
        umoci(&[
            "repack".as_ref(),
            "--refresh-bundle".as_ref(),
            "--image".as_ref(),
            image.as_ref(),
            bundle.as_os_str(),
        ])
    };
    let r = bundle.join("rootfs");
    // Layer 1: every kind of entry.
    write(&r.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n");
    write(&r.join("bin/ping"), b"\x7fELF ping");
    set_xattr(
        &r.join("bin/ping"),
        "security.capability",
        &[
            1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    chmod(&r.join("bin/ping"), 0o4755);
    write(&r.join("bin/sgid"), b"sgid");
    chmod(&r.join("bin/sgid"), 0o2711);
    std::fs::create_dir_all(r.join("tmp")).unwrap();
    chmod(&r.join("tmp"), 0o1777);
    write(&r.join("home/user/notes"), b"mine");
    chown(&r.join("home/user/notes"), 1000, 1000);
    chown(&r.join("home/user"), 1000, 100);
    set_xattr(&r.join("home/user/notes"), "user.tag", b"\x00bin\nary");
    let long_dir = r.join("d".repeat(120));
    write(&long_dir.join("f".repeat(150)), b"long name");
    write(&r.join(OsStr::from_bytes(b"caf\xe9-\xff")), b"not utf-8");
    write(&r.join("big/blob"), &noise(7, 3 << 20));
    write(&r.join("data/h1"), b"linked three times");
    std::fs::hard_link(r.join("data/h1"), r.join("data/h2")).unwrap();
    std::fs::create_dir_all(r.join("dev")).unwrap();
    let mknod = |name: &str, kind, dev| {
        nix::sys::stat::mknod(
            &r.join(name),
            kind,
            nix::sys::stat::Mode::from_bits_truncate(0o620),
            dev,
        )
        .unwrap()
    };
    mknod(
        "dev/null",
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::makedev(1, 3),
    );
    chmod(&r.join("dev/null"), 0o666); // mknod's mode goes through the umask
    mknod(
        "dev/sda1",
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::makedev(8, 1),
    );
    std::fs::create_dir_all(r.join("run")).unwrap();
    nix::unistd::mkfifo(
        &r.join("run/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
    write(&r.join("usr/lib/libc.so"), b"libc");
    write(&r.join("victim"), b"deleted in layer 2");
    write(&r.join("gone/a/b"), b"whole directory deleted in layer 2");
    write(&r.join("becomes-dir"), b"a file in layer 1");
    write(&r.join("opt/old1"), b"hidden by the opaque marker");
    write(&r.join("opt/sub/old2"), b"hidden too");
    set_mtime(&r.join("etc/passwd"), 1_000_000_000);
    repack();
    // Layer 2: deletions, a file replaced by a directory, a changed file.
    std::fs::remove_file(r.join("victim")).unwrap();
    std::fs::remove_dir_all(r.join("gone")).unwrap();
    std::fs::remove_file(r.join("becomes-dir")).unwrap();
    write(&r.join("becomes-dir/inside"), b"now a directory");
    write(
        &r.join("etc/passwd"),
        b"root:x:0:0::/root:/bin/sh\nuser:x:1000:100::/home/user:/bin/sh\n",
    );
    repack();
    // Layer 3, by hand: an opaque directory that keeps its own new child, a hard link to
    // layer 1's file, nanosecond times and xattrs from PAX headers.
    let tar_path = dir.join("layer3.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
        let add = |b: &mut tar::Builder<std::fs::File>,
                   path: &str,
                   et: tar::EntryType,
                   mode: u32,
                   link: &str,
                   data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(et);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_500_000_000);
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, path, data).unwrap();
        };
        add(&mut b, "opt/", tar::EntryType::Directory, 0o750, "", b"");
        add(
            &mut b,
            "opt/fresh",
            tar::EntryType::Regular,
            0o644,
            "",
            b"new in layer 3",
        );
        add(
            &mut b,
            "opt/.wh..wh..opq",
            tar::EntryType::Regular,
            0o644,
            "",
            b"",
        );
        add(
            &mut b,
            "data/h3",
            tar::EntryType::Link,
            0o644,
            "data/h1",
            b"",
        );
        b.append_pax_extensions([
            ("mtime", &b"1500000000.123456789"[..]),
            ("SCHILY.xattr.user.note", &b"from pax"[..]),
        ])
        .unwrap();
        add(
            &mut b,
            "etc/nanos",
            tar::EntryType::Regular,
            0o600,
            "",
            b"ns",
        );
        b.finish().unwrap();
    }
    umoci(&[
        "raw".as_ref(),
        "add-layer".as_ref(),
        "--image".as_ref(),
        image.as_ref(),
        tar_path.as_os_str(),
    ]);
    layout
}

#[test]
fn umoci_images_ingest_exactly_as_umoci_unpacks_them() {
    let dir = tempfile::tempdir().unwrap();
    let layout = build_image(dir.path());
    let layers = layers_of(&layout, "t");
    assert_eq!(layers.len(), 3, "two repacks and the raw layer");
    let oracle = dir.path().join("oracle");
    umoci(&[
        "unpack".as_ref(),
        "--image".as_ref(),
        format!("{}:t", layout.display()).as_ref(),
        oracle.as_os_str(),
    ]);
    let expected = TestRepo::new();
    let mut o = expected.options(&oracle.join("rootfs"));
    o.chunking = Some(SMALL_CHUNKS);
    publish::publish(&o, &NoProgress).unwrap();
    let want = full_listing(&expected);

    // Once as the image has them (gzip), once with every layer recompressed as zstd.
    for zstd in [false, true] {
        let repo = TestRepo::new();
        let input: Vec<_> = layers
            .iter()
            .map(|l| {
                let (bytes, c) = layer_bytes(&layout, l, zstd);
                (l.digest.clone(), Some(l.diff_id.clone()), bytes, c)
            })
            .collect();
        let report = ingest(&repo, &input, &ReadLimits::default()).unwrap();
        assert_eq!(report.revision, 2);
        let got = full_listing(&repo);
        assert_eq!(got, want, "zstd: {zstd}");
    }
    // The features are there, not just equal.
    let has = |needle: &str| {
        assert!(
            want.iter().any(|l| l.contains(needle)),
            "no line with {needle:?}:\n{}",
            want.join("\n")
        )
    };
    has("/bin/ping\tf\t4755\t0:0");
    has("security.capability=01000002");
    has("/bin/sgid\tf\t2711");
    has("/tmp\td\t1777");
    has("/dev/null\tc\t0666\t0:0");
    has("\t1:3\t");
    has("/dev/sda1\tb");
    has("/run/fifo\tp");
    has("/data/h3\tf\t0644\t0:0\t");
    has("/becomes-dir/inside\tf");
    has("/opt/fresh\tf");
    has("/caf\\xe9-\\xff\tf");
    has(&format!("/{}/{}\tf", "d".repeat(120), "f".repeat(150)));
    has("/home/user/notes\tf\t0644\t1000:1000");
    has("user.tag=0062696e0a617279");
    has("/etc/nanos\tf\t0600\t0:0\t1500000000\t");
    has("ns=Some(123456789)");
    let lines = |p: &str| want.iter().filter(|l| l.starts_with(p)).count();
    assert_eq!(lines("/victim"), 0);
    assert_eq!(lines("/gone"), 0);
    assert_eq!(lines("/opt/old1") + lines("/opt/sub"), 0);
    // Three names of one file in one directory: one group of three.
    assert!(want
        .iter()
        .filter(|l| l.starts_with("/data/h"))
        .all(|l| l.split('\t').nth(6) == Some("3")));
}

/// A hostile layer: its digest is that of its gzip bytes.
fn hostile(tar: Vec<u8>) -> (String, Option<String>, Vec<u8>, Compression) {
    use sha2::Digest;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&gz)));
    (digest, None, gz, Compression::Gzip)
}

fn member(name: &[u8], et: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    append_raw(&mut b, name, et, link, data);
    b.into_inner().unwrap()
}

/// A member whose name and link are written as given (the tar crate's own setters refuse
/// `..` and absolute names, as they should).
fn append_raw(
    b: &mut tar::Builder<Vec<u8>>,
    name: &[u8],
    et: tar::EntryType,
    link: &[u8],
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(et);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h.set_size(data.len() as u64);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn hostile_layers_are_refused_and_nothing_is_published() {
    let repo = TestRepo::new();
    let base = hostile(member(b"etc/motd", tar::EntryType::Regular, b"", b"hello"));
    ingest(&repo, &[base], &ReadLimits::default()).unwrap();
    let before = (repo.listing(), object_names(&repo.repo));
    let manifest = std::fs::read(repo.repo.join(".cvmfspublished")).unwrap();

    let symlink_out = hostile(member(b"s", tar::EntryType::Symlink, b"/etc", b""));
    let mut big_pax = tar::Builder::new(Vec::new());
    big_pax
        .append_pax_extensions([("path", "p".repeat(2 << 20).as_bytes())])
        .unwrap();
    append_raw(&mut big_pax, b"x", tar::EntryType::Regular, b"", b"");
    let cases: Vec<(Vec<_>, &str, &str)> = vec![
        (
            vec![hostile(member(
                b"../escape",
                tar::EntryType::Regular,
                b"",
                b"x",
            ))],
            "../escape",
            "escapes the image root",
        ),
        (
            vec![hostile(member(b"/abs", tar::EntryType::Regular, b"", b"x"))],
            "/abs",
            "absolute name",
        ),
        (
            vec![
                symlink_out,
                hostile(member(b"s/passwd", tar::EntryType::Regular, b"", b"x")),
            ],
            "s/passwd",
            "symlink in the image",
        ),
        (
            vec![hostile(member(
                b"l",
                tar::EntryType::Link,
                b"/etc/shadow",
                b"",
            ))],
            "l",
            "outside the image",
        ),
        (
            vec![hostile(member(b"l", tar::EntryType::Link, b"nothing", b""))],
            "l",
            "does not exist",
        ),
        (
            vec![hostile(member(b".wh..", tar::EntryType::Regular, b"", b""))],
            ".wh..",
            "not a name",
        ),
        (
            vec![hostile(member(
                b"a/.wh...",
                tar::EntryType::Regular,
                b"",
                b"",
            ))],
            "a/.wh...",
            "not a name",
        ),
        (
            vec![hostile(big_pax.into_inner().unwrap())],
            "",
            "larger than the limit",
        ),
    ];
    for (layers, name, reason) in cases {
        let bad = &layers.last().unwrap().0;
        let err = ingest(&repo, &layers, &ReadLimits::default()).unwrap_err();
        let e = err
            .downcast_ref::<LayerError>()
            .unwrap_or_else(|| panic!("not a layer error: {err:#}"));
        let msg = e.to_string();
        assert!(msg.contains(bad.as_str()), "{msg} does not name {bad}");
        if !name.is_empty() {
            assert!(
                msg.contains(&format!("{name:?}")),
                "{msg} does not name {name}"
            );
        }
        assert!(msg.contains(reason), "{msg}: not {reason:?}");
        assert_eq!(
            std::fs::read(repo.repo.join(".cvmfspublished")).unwrap(),
            manifest,
            "{msg}: a new revision"
        );
        assert_eq!(
            (repo.listing(), object_names(&repo.repo)),
            before,
            "{msg}: objects left behind"
        );
    }
    assert_eq!(repo.open().manifest().revision, 2);
}

#[test]
fn a_decompression_bomb_is_refused_after_a_few_megabytes() {
    let repo = TestRepo::new();
    // 200 MB of zeros, about 200 KB of gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    {
        let mut b = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_path("zeros").unwrap();
        h.set_size(200_000_000);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_cksum();
        b.append(&h, std::io::Read::take(std::io::repeat(0), 200_000_000))
            .unwrap();
        b.finish().unwrap();
    }
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 1 << 20, "{} bytes", gz.len());
    let before = object_names(&repo.repo);
    let started = std::time::Instant::now();
    let layer = ("sha256:bomb".to_string(), None, gz, Compression::Gzip);
    let err = ingest(&repo, &[layer], &ReadLimits::default()).unwrap_err();
    let e = err.downcast_ref::<LayerError>().unwrap();
    let msg = e.to_string();
    assert!(
        msg.contains("sha256:bomb") && msg.contains("\"zeros\""),
        "{msg}"
    );
    assert!(msg.contains("decompression bomb"), "{msg}");
    // Stopped after a bounded amount of output (what memory and disk are spent on): the
    // slack plus the ratio times the compressed bytes, which the decoder takes 64 KiB at
    // a time.
    let Problem::Expansion { uncompressed, .. } = e.problem else {
        panic!("{msg}")
    };
    assert!(uncompressed < 64 << 20, "{msg}");
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    assert_eq!(object_names(&repo.repo), before);
    assert_eq!(repo.open().manifest().revision, 1);
}
