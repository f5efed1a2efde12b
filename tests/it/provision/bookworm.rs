//! A real image end to end (issue 12): a debootstrap minbase bookworm tree as a two-layer
//! image (the base, then what `apt-get install python3-minimal` in a chroot changed) built
//! with umoci, pushed with skopeo into Debian's docker-registry, ingested by the `lazyroot
//! ingest` CLI as an operator runs it, prepared by the daemon by its reference, and run with
//! runc from the lazy mount: `python3 -c 'print(1)'` prints 1.
//!
//! The trees are made once outside the clone by `scripts/bookworm-trees.sh` (scripts/test.sh
//! runs it and exports their paths), because debootstrap takes minutes and needs the Debian
//! archive. The base tree may have been modified by bench-publish.sh (it appends lines to
//! files): the second layer is made by `rsync --delete` of the python tree over the unpacked
//! base, so the image is the python tree exactly either way, and that is what is checked.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use lazyroot::ingest::names;
use lazyroot::mount::skeleton::{MESOS_ROOTFS, MESOS_ROOTFS_FILES};
use lazyroot::provisioner::api;

use super::harness::*;
use crate::ingest::fixtures::{run, Registry, RegistryAuth};

/// A tree made by scripts/bookworm-trees.sh: from `var`, else its default place. Missing is
/// a failure, not a skip: CI must run this test.
fn tree(var: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/var/tmp/lazyroot-bench").join(default));
    assert!(
        p.join("usr/bin").is_dir(),
        "no Debian tree at {} (${var}): run `bash scripts/bookworm-trees.sh` (scripts/test.sh does) \
         to make it once",
        p.display()
    );
    p
}

/// `cmd` bounded by coreutils' `timeout` (TERM after `secs`, KILL 10 s later), so that a
/// hung tool fails the test instead of hanging CI.
fn bounded(secs: u64, cmd: &mut Command) -> Command {
    let mut c = Command::new("timeout");
    c.arg("--kill-after=10")
        .arg(secs.to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}

fn umoci(args: &[&str], path: Option<&Path>) -> String {
    let mut c = Command::new("umoci");
    c.args(args);
    if let Some(p) = path {
        c.arg(p);
    }
    run(&mut bounded(300, &mut c))
}

/// The OCI architecture name of this host (what ingest picks from an image by default).
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Image `image` (`LAYOUT:TAG`): layer 1 = `base`, layer 2 = `python` over it; entrypoint
/// python3 and cmd `-c print(1)`, so that the appc `exec` the daemon derives is the command.
fn build_image(layout: &Path, image: &str, base: &Path, python: &Path) {
    umoci(&["init", "--layout"], Some(layout));
    umoci(&["new", "--image", image], None);
    let bundle = layout.with_extension("bundle");
    umoci(&["unpack", "--image", image], Some(&bundle));
    let rootfs = bundle.join("rootfs");
    run(&mut bounded(
        300,
        Command::new("cp")
            .arg("-a")
            .arg(base.join("."))
            .arg(&rootfs),
    ));
    // --refresh-bundle: the next repack's layer is the difference from this one.
    umoci(
        &["repack", "--refresh-bundle", "--image", image],
        Some(&bundle),
    );
    // Whatever python3's installation added, changed (also files bench-publish appended
    // to in the base) or removed (apt's .deb cache: whiteouts) becomes layer 2.
    run(&mut bounded(
        300,
        Command::new("rsync")
            .args(["-aHAX", "--numeric-ids", "--delete"])
            .arg(format!("{}/", python.display()))
            .arg(format!("{}/", rootfs.display())),
    ));
    umoci(&["repack", "--image", image], Some(&bundle));
    std::fs::remove_dir_all(&bundle).unwrap();
    umoci(
        &[
            "config",
            "--image",
            image,
            "--os",
            "linux",
            "--architecture",
            oci_arch(),
            "--config.entrypoint",
            "/usr/bin/python3",
            "--config.cmd",
            "-c",
            "--config.cmd",
            "print(1)",
        ],
        None,
    );
}

/// One entry as `lstat` sees it: kind and permissions, owners, size (not of directories:
/// theirs is the filesystem's own), mtime (seconds, nanoseconds), link target.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    target: Option<PathBuf>,
}

impl Entry {
    /// As umoci writes it into a layer: Go's archive/tar rounds mtimes to the nearest second
    /// (it writes no PAX times unless asked), so that is what the image holds.
    fn in_a_layer(self) -> Entry {
        let (s, ns) = self.mtime;
        Entry {
            mtime: (s + i64::from(ns >= 500_000_000), 0),
            ..self
        }
    }
}

/// Every entry under `root` by relative path, without following symlinks; metadata only
/// (through the lazy mount this reads catalogs, never file contents).
fn listing(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let m = std::fs::symlink_metadata(root.join(&rel)).unwrap();
            let target = m
                .file_type()
                .is_symlink()
                .then(|| std::fs::read_link(root.join(&rel)).unwrap());
            if m.is_dir() {
                todo.push(rel.clone());
            }
            let entry = Entry {
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                size: if m.is_dir() { 0 } else { m.size() },
                mtime: (m.mtime(), m.mtime_nsec()),
                target,
            };
            out.insert(rel, entry);
        }
    }
    out
}

/// Bytes of all files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            bytes_under(&e.path())
        } else {
            m.len()
        };
    }
    n
}

#[test]
fn a_debootstrap_bookworm_image_is_ingested_prepared_by_reference_and_runs_python3() {
    let base = tree("LAZYROOT_BOOKWORM", "bookworm");
    let python = tree("LAZYROOT_BOOKWORM_PYTHON", "bookworm-python");
    // What proves layer 2 went through: python3 is in the python tree only.
    assert!(!base.join("usr/bin/python3").exists(), "{}", base.display());
    assert!(
        python.join("usr/bin/python3").exists(),
        "{}",
        python.display()
    );
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = format!("{}:bookworm", layout.display());
    build_image(&layout, &image, &base, &python);
    let reg = Registry::start(RegistryAuth::None);
    let reference = format!("{}/debian/python:bookworm", reg.addr());
    run(&mut bounded(
        300,
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{image}"))
            .arg(format!("docker://{reference}")),
    ));
    drop(tmp); // the layout: the registry holds the image now
    let built = t0.elapsed();

    // As an operator ingests: the CLI, into the repository the daemon's server serves.
    let t1 = Instant::now();
    let mut w = World::new(600);
    let out = run(&mut bounded(
        600,
        Command::new(env!("CARGO_BIN_EXE_lazyroot"))
            .arg("ingest")
            .arg(&reference)
            .arg("--insecure-registry")
            .arg(reg.addr())
            .arg("--repo")
            .arg(&w.repo.repo)
            .arg("--keys")
            .arg(&w.repo.keys),
    ));
    let summary = out
        .lines()
        .find(|l| l.starts_with("layers fetched "))
        .unwrap_or_else(|| panic!("no summary line in: {out}"));
    assert!(summary.starts_with("layers fetched 2, reused 0; "), "{out}");
    let downloaded: u64 = summary
        .split("; ")
        .nth(1)
        .and_then(|s| s.strip_suffix(" bytes downloaded"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in: {summary}"));
    let hex = out
        .lines()
        .find(|l| l.starts_with(&format!("{reference} new: ")))
        .and_then(|l| l.rsplit_once(" -> sha256:"))
        .map(|(_, h)| h.to_string())
        .unwrap_or_else(|| panic!("no new image in: {out}"));
    let ingested = t1.elapsed();

    // By reference, as a task names it: the link resolved to the content-named directory.
    let t2 = Instant::now();
    let img = w
        .client()
        .prepare(&api::PrepareImageRequest {
            fqrn: w.repo.fqrn.clone(),
            path: reference.clone(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(img.path, names::flat_dir("", &hex));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&img.appc_dir).join("manifest")).unwrap())
            .unwrap();
    let exec: Vec<String> = serde_json::from_value(manifest["app"]["exec"].clone()).unwrap();
    assert_eq!(exec, ["/usr/bin/python3", "-c", "print(1)"], "{manifest}");

    // The image's own command under runc, on the read-only lazy root.
    let rootfs = PathBuf::from(&img.rootfs);
    let scratch = w.repo.dir.path().join("task");
    let b = scratch.join("bundle");
    let args: Vec<&str> = exec.iter().map(String::as_str).collect();
    bundle(&b, &rootfs, true, &args);
    let out = run(&mut bounded(
        120,
        &mut runc(&scratch.join("runc"), &b, "bookworm"),
    ));
    assert_eq!(out, "1\n");
    let ran = t2.elapsed();

    // Lazily: the cache holds what starting python3 read (about 4 MiB of files, catalogs),
    // not the image (the layers were `downloaded` bytes compressed).
    let cached = bytes_under(&w.work.join("cache"));
    eprintln!("bookworm: {downloaded} bytes of layers; {cached} bytes in the mount's cache after python3 ran");
    assert!(
        cached * 4 < downloaded,
        "the cache holds {cached} bytes of a {downloaded}-byte image"
    );

    // Layer 2 through the mount, as the image means: python3 added, the base's changed files
    // replaced and its removed files (apt's .deb cache) gone. The root equals the python
    // tree entry for entry.
    let want: BTreeMap<_, _> = listing(&python)
        .into_iter()
        .map(|(p, e)| (p, e.in_a_layer()))
        .collect();
    let removed = listing(&base)
        .into_keys()
        .filter(|p| !want.contains_key(p))
        .count();
    assert!(
        removed > 0,
        "no whiteouts exercised: layer 2 removes nothing"
    );
    let got = listing(&rootfs);
    let missing: Vec<_> = want.keys().filter(|p| !got.contains_key(*p)).collect();
    // The mount points the daemon shows where the image has none (for Mesos's isolators).
    let skeleton = |p: &Path| {
        MESOS_ROOTFS
            .iter()
            .chain(MESOS_ROOTFS_FILES)
            .any(|s| p == Path::new(s))
    };
    let extra: Vec<_> = got
        .keys()
        .filter(|p| !want.contains_key(*p) && !skeleton(p))
        .collect();
    let differ: Vec<_> = want
        .iter()
        .filter(|(p, e)| got.get(*p).is_some_and(|g| g != *e))
        .map(|(p, e)| (p, e, &got[p]))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "the mounted root differs from {}: missing {:?}, extra {:?}, differing {:?}",
        python.display(),
        &missing[..missing.len().min(5)],
        &extra[..extra.len().min(5)],
        differ
    );

    // Clean: a daemon stop releases every mount.
    assert!(w.daemon.as_mut().unwrap().stop().success());
    assert_eq!(w.image_mounts(), 0);
    eprintln!(
        "bookworm: image built and pushed in {:.1} s, ingested in {:.1} s, prepared and run in {:.1} s ({} entries, {removed} removed by layer 2)",
        built.as_secs_f64(),
        ingested.as_secs_f64(),
        ran.as_secs_f64(),
        want.len()
    );
}
