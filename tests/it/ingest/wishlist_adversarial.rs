//! Adversarial cases for `lazyroot ingest --wishlist … --prune` and the credential
//! helpers: inputs the main tests do not try (OCI layouts and docker archives as wishlist
//! lines, names that collide, links and trees that are not ingest's, helpers that misbehave).
//! Everything is local: OCI layouts made with `umoci`, archives with `skopeo`, no registry
//! beyond a closed loopback port.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lazyroot::ingest::names;
use lazyroot::repository::At;

use super::fixtures::*;
use super::wishlist::{cron_lines as cron, leads_to, revision, which};
use crate::common::*;

/// Images `tags` (one layer, `etc/which` = "image <tag>") in the layout `layout`.
fn layout_with(layout: &Path, tags: &[&str]) {
    for tag in tags {
        let content = format!("image {tag}\n");
        build_image(
            layout,
            tag,
            &[&[("etc/which", content.as_bytes())]],
            "amd64",
        );
    }
}

/// What the latest revision holds of ingest's: the image directories (`…/.flat/xx/hex`),
/// the `.flat/xx` directories, and every symlink anywhere with the repository path it
/// resolves to.
struct Shape {
    images: Vec<String>,
    twos: BTreeMap<String, usize>,
    links: BTreeMap<String, Option<String>>,
}

fn shape(repo: &TestRepo) -> Shape {
    let r = repo.open();
    let s = r.snapshot(&At::Latest).unwrap();
    let mut out = Shape {
        images: Vec::new(),
        twos: BTreeMap::new(),
        links: BTreeMap::new(),
    };
    s.walk(b"", &mut |f| {
        let path = String::from_utf8_lossy(&f.path).into_owned();
        let parts: Vec<&str> = path.split('/').collect();
        let n = parts.len();
        if f.entry.is_dir() && n >= 3 && parts[n - 2] == names::FLAT {
            out.twos.entry(path.clone()).or_insert(0);
        }
        if f.entry.is_dir() && n >= 4 && parts[n - 3] == names::FLAT {
            out.images.push(path.clone());
            let two = parts[..n - 1].join("/");
            *out.twos.entry(two).or_insert(0) += 1;
        }
        if !f.entry.symlink.is_empty() {
            let target = String::from_utf8_lossy(&f.entry.symlink).into_owned();
            out.links
                .insert(path.clone(), names::resolve_link(&path, &target));
        }
        Ok(())
    })
    .unwrap();
    out
}

/// No half state: every link into `.flat` leads to an image's root filesystem that is
/// there, every image is led to by some link, no `.flat/xx` is empty.
fn assert_names_whole(repo: &TestRepo) {
    let sh = shape(repo);
    let r = repo.open();
    let s = r.snapshot(&At::Latest).unwrap();
    for (link, to) in &sh.links {
        let Some(to) = to else { continue };
        if !to.contains("/.flat/") {
            continue;
        }
        assert!(
            matches!(s.lookup(to.as_bytes()), Ok(Some(f)) if f.entry.is_dir()),
            "{link} leads to {to}, which is gone"
        );
    }
    for image in &sh.images {
        let rootfs = format!("{image}/{}", names::ROOTFS);
        assert!(
            sh.links
                .values()
                .any(|t| t.as_deref() == Some(rootfs.as_str())),
            "{image} is named by no link: {:#?}",
            sh.links
        );
    }
    for (two, n) in &sh.twos {
        assert!(*n > 0, "{two} is empty");
    }
}

/// Publishes, at `at`, a tree of one symlink `name -> target` (made under `tmp`).
fn publish_link(repo: &TestRepo, tmp: &Path, name: &str, target: &str, at: &str) {
    let tree = tmp.join(format!("link-{name}"));
    std::fs::create_dir_all(&tree).unwrap();
    std::os::unix::fs::symlink(target, tree.join(name)).unwrap();
    repo.publish_at(&tree, at);
}

/// Images a and b in the layout `<tmp>/app`, ingested by a wishlist as `localhost/app:a`
/// and `:b`; returns what a's name leads to as well.
fn a_and_b_ingested() -> (tempfile::TempDir, std::path::PathBuf, TestRepo, String) {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("app");
    layout_with(&layout, &["a", "b"]);
    let repo = TestRepo::new();
    let l = |t: &str| format!("oci:{}:{t}", layout.display());
    let out = cron(&repo, &format!("{}\n{}\n", l("a"), l("b")), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let a = leads_to(&repo, "/localhost/app:a").unwrap();
    (tmp, layout, repo, a)
}

/// `oci:` and `docker-archive:` wishlist lines with `--prune`: a tag moved in the same call
/// onto an image another pruned name led to keeps that image; the rest is pruned whole
/// (no empty `.flat/xx`, no dangling link), the repository checks clean, and the same
/// wishlist again publishes nothing. (Passes: covers the local-source path of prune.)
#[test]
fn local_sources_prune_whole_and_an_unchanged_wishlist_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("app");
    layout_with(&layout, &["a", "b", "c"]);
    let archive = tmp.path().join("saved.tar");
    skopeo_copy(
        &format!("oci:{}:c", layout.display()),
        &format!("docker-archive:{}", archive.display()),
        &[],
    );
    let repo = TestRepo::new();
    let l = |t: &str| format!("oci:{}:{t}", layout.display());
    let arch = format!("docker-archive:{}", archive.display());
    let all = format!("{}\n{}\n{}\n{arch}\n", l("a"), l("b"), l("c"));
    let out = cron(&repo, &all, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let link = |t: &str| format!("/localhost/app:{t}");
    let (a, b) = (
        leads_to(&repo, &link("a")).unwrap(),
        leads_to(&repo, &link("b")).unwrap(),
    );
    let saved = leads_to(&repo, "/localhost/saved.tar:latest").unwrap();
    assert_eq!(which(&repo, &saved), "image c\n");
    assert_names_whole(&repo);

    // Tag a moves onto b's image; b and c are no longer wished for; the archive is.
    run(std::process::Command::new("umoci")
        .args(["tag", "--image"])
        .arg(format!("{}:b", layout.display()))
        .arg("a"));
    let fewer = format!("{}\n{arch}\n", l("a"));
    let out = cron(&repo, &fewer, &["--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains(&format!("pruned: {}", link("b"))),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("pruned: {}", link("c"))),
        "{printed}"
    );
    assert_eq!(leads_to(&repo, &link("a")), Some(b.clone()));
    assert_eq!(which(&repo, &b), "image b\n");
    assert_eq!(leads_to(&repo, "/localhost/saved.tar:latest"), Some(saved));
    let r = repo.open();
    let s = r.snapshot(&At::Latest).unwrap();
    assert!(s.lookup(a.as_bytes()).unwrap().is_none(), "image a stayed");
    assert_names_whole(&repo);
    repo.assert_healthy();
    let check = repo.cli("check", &[]);
    assert!(check.status.success(), "{}", stderr(&check));

    let rev = revision(&repo);
    let out = cron(&repo, &fewer, &["--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing changed"), "{}", stdout(&out));
    assert_eq!(revision(&repo), rev, "an unchanged wishlist published");
}

/// `--path-prefix` with `--prune`: only the names and images under the prefix are
/// considered; images ingested at the root stay. (Passes.)
#[test]
fn a_prune_under_a_prefix_leaves_the_root_images_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("app");
    layout_with(&layout, &["a", "b"]);
    let repo = TestRepo::new();
    let l = |t: &str| format!("oci:{}:{t}", layout.display());
    let out = cron(&repo, &format!("{}\n", l("a")), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let root_a = leads_to(&repo, "/localhost/app:a").unwrap();
    let both = format!("{}\n{}\n", l("a"), l("b"));
    let out = cron(&repo, &both, &["--path-prefix", "/images/"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cron(
        &repo,
        &format!("{}\n", l("b")),
        &["--path-prefix", "/images", "--prune"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(leads_to(&repo, "/images/localhost/app:a"), None);
    assert!(leads_to(&repo, "/images/localhost/app:b").is_some());
    assert_eq!(leads_to(&repo, "/localhost/app:a"), Some(root_a.clone()));
    assert_eq!(which(&repo, &root_a), "image a\n");
    assert_names_whole(&repo);
    repo.assert_healthy();
}

/// Two references in one call that get one name (`oci:/x/app:v1` and `oci:/y/app:v1` are
/// both `localhost/app:v1`) but are different images: one of them ends up in the repository
/// with no name at all, and the report says both were ingested. Expected: the second is
/// refused (a failure naming both), nothing unnamed is published.
#[test]
fn two_references_giving_one_name_to_two_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (x, y) = (tmp.path().join("x/app"), tmp.path().join("y/app"));
    std::fs::create_dir_all(x.parent().unwrap()).unwrap();
    std::fs::create_dir_all(y.parent().unwrap()).unwrap();
    build_image(&x, "v1", &[&[("etc/which", b"x\n")]], "amd64");
    build_image(&y, "v1", &[&[("etc/which", b"y\n")]], "amd64");
    let repo = TestRepo::new();
    let (rx, ry) = (
        format!("oci:{}:v1", x.display()),
        format!("oci:{}:v1", y.display()),
    );
    let out = repo.cli("ingest", &[&rx, &ry]);
    assert!(
        !out.status.success(),
        "both accepted under one name: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("localhost/app:v1"),
        "{}",
        stderr(&out)
    );
    assert_names_whole(&repo);
    // In a wishlist: the first is published, the second listed as failed.
    let out = cron(&repo, &format!("{rx}\n{ry}\n"), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stderr(&out).contains(&ry), "{}", stderr(&out));
    assert_eq!(
        which(&repo, &leads_to(&repo, "/localhost/app:v1").unwrap()),
        "x\n"
    );
    assert_names_whole(&repo);
    repo.assert_healthy();
}

/// A link of the repository's own outside the registry directories (`/sw/current`) into
/// an ingested image is not a name: the policy the README states is that `.flat` is
/// ingest's and only the registry directories' links keep an image, because finding every
/// link in a repository would mean reading every catalog of it on every cron run. So a
/// prune that drops the image's last name removes it (and says so), and the operator who
/// wants it kept lists it in the wishlist. The revision before still has it.
#[test]
fn a_link_outside_the_registry_directories_does_not_keep_an_image_through_a_prune() {
    let (tmp, layout, repo, a) = a_and_b_ingested();
    let l = |t: &str| format!("oci:{}:{t}", layout.display());
    publish_link(&repo, tmp.path(), "current", &format!("..{a}"), "/sw");
    assert_eq!(leads_to(&repo, "/sw/current"), Some(a.clone()));
    let before = repo.open().manifest().root_catalog;
    let out = cron(&repo, &format!("{}\n", l("b")), &["--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let image = a.strip_suffix("/rootfs").unwrap();
    let two = &image[..image.rfind('/').unwrap()];
    let printed = stdout(&out);
    assert!(
        printed.contains(&format!("pruned: {image}"))
            || printed.contains(&format!("pruned: {two}")),
        "the prune names the image it removes: {printed}"
    );
    let r = repo.open();
    let s = r.snapshot(&At::Latest).unwrap();
    assert!(s.lookup(image.as_bytes()).unwrap().is_none());
    // The repository's own tree itself is left as it was.
    assert!(s.lookup(b"/sw/current").unwrap().is_some());
    assert_eq!(
        read_at(
            &r,
            At::RootHash(before),
            format!("{a}/etc/which").as_bytes()
        ),
        b"image a\n"
    );
    repo.assert_healthy();
}

/// A tree of the repository's own whose name has a `.` (`/data.d`, `/sft.example.org`: any
/// host-like name) is taken for a registry directory by every prune, and since it holds
/// files it makes every prune fail ("not a name ingest made"), though no ingest name was
/// ever there. Expected: a directory that holds no link into `.flat` is not a registry
/// directory; the prune goes on and leaves it alone.
#[test]
fn a_prune_is_not_refused_for_a_dotted_tree_of_the_repository_own() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("app");
    layout_with(&layout, &["a", "b"]);
    let repo = TestRepo::new();
    let own = tmp.path().join("own");
    write(&own.join("README"), b"data, not images\n");
    repo.publish_at(&own, "/data.d");
    let l = |t: &str| format!("oci:{}:{t}", layout.display());
    let out = cron(&repo, &format!("{}\n{}\n", l("a"), l("b")), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cron(&repo, &format!("{}\n", l("b")), &["--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(leads_to(&repo, "/localhost/app:a"), None);
    assert_eq!(
        read_at(&repo.open(), At::Latest, b"/data.d/README"),
        b"data, not images\n"
    );
    // A dotted directory holding a file and a link into `.flat` is still refused: a prune
    // can neither rebuild it whole nor leave the image its link leads to unaccounted.
    let b = leads_to(&repo, "/localhost/app:b").unwrap();
    let mixed = tmp.path().join("mixed");
    write(&mixed.join("README"), b"mixed\n");
    std::os::unix::fs::symlink(format!("..{b}"), mixed.join("b")).unwrap();
    repo.publish_at(&mixed, "/mixed.d");
    let rev = revision(&repo);
    let out = cron(&repo, &format!("{}\n", l("b")), &["--prune"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/mixed.d/README is not a name ingest made"),
        "{}",
        stderr(&out)
    );
    assert_eq!(revision(&repo), rev);
}

/// A Docker config whose helper `body` (a shell script) answers for a registry at a closed
/// loopback port; the ingest's stderr and how long it took. The registry is never reached
/// when the credentials fail (they are read before anything is sent).
fn with_helper(config: &str, helpers: &[(&str, &str)]) -> (bool, String, Duration) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for (name, body) in helpers {
        let p = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let port = free_port();
    let registry = format!("127.0.0.1:{port}");
    let file = tmp.path().join("config.json");
    std::fs::write(&file, config.replace('@', &registry)).unwrap();
    let repo = TestRepo::new();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lazyroot"))
        .env("PATH", &path)
        .args(["ingest", &format!("{registry}/team/app:v1")])
        .args(["--insecure-registry", &registry, "--timeout", "5"])
        .arg("--docker-config")
        .arg(&file)
        .arg("--repo")
        .arg(&repo.repo)
        .arg("--keys")
        .arg(&repo.keys)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), stderr(&out), started.elapsed())
}

/// A helper that prints far more than an answer can be: the reader stops at 64 KiB (the
/// helper then dies of SIGPIPE, so this is quick) and the truncated answer is reported as
/// "not JSON", which sends the operator looking for a syntax error. Expected: refused as
/// too large, saying so.
#[test]
fn a_helper_printing_megabytes_is_refused_quickly_as_too_large() {
    let (ok, err, took) = with_helper(
        r#"{"credHelpers":{"@":"chatty"}}"#,
        &[("chatty", "head -c 4000000 /dev/zero | tr '\\0' x; exit 0")],
    );
    assert!(!ok);
    assert!(took < Duration::from_secs(15), "took {took:?}: {err}");
    assert!(err.contains("docker-credential-chatty"), "{err}");
    assert!(err.contains("larger than"), "{err}");
}

/// A helper that answers and exits but leaves a background process holding its stdout (a
/// daemon it started, say): the answer is never taken, the pipe readers wait for the
/// grandchild, and the 30 s bound does not apply. Expected: bounded by the helper timeout.
#[test]
fn a_helper_whose_child_keeps_its_output_open_is_bounded_in_time() {
    let (ok, err, took) = with_helper(
        r#"{"credHelpers":{"@":"forks"}}"#,
        &[(
            "forks",
            "sleep 60 &\necho '{\"ServerURL\":\"x\",\"Username\":\"u\",\"Secret\":\"s\"}'",
        )],
    );
    assert!(took < Duration::from_secs(45), "took {took:?}: {err}");
    let _ = ok;
}

/// A helper that fails with a message of its own (not "credentials not found"): the error
/// names the helper, the registry, the exit status and the helper's first stderr line.
/// (Passes.)
#[test]
fn a_helper_failing_with_its_own_message_is_named_with_it() {
    let (ok, err, _) = with_helper(
        r#"{"credHelpers":{"@":"broken"},"auths":{"@":{"auth":"dTpw"}}}"#,
        &[(
            "broken",
            "echo 'token expired: run the login again' >&2; echo second line >&2; exit 3",
        )],
    );
    assert!(!ok);
    assert_parts(
        &err,
        &[
            "credential helper docker-credential-broken for 127.0.0.1:",
            "exit status: 3",
            "token expired: run the login again",
        ],
    );
    assert!(!err.contains("second line"), "{err}");
}

/// Docker's rule: a `credHelpers` entry that is empty means the credentials are in the
/// file (`auths`), and `credsStore` is not asked. Here an empty name is refused as "not a
/// plain name" and nothing can be pulled. Expected: the `auths` entry is used (the call
/// then fails only at the closed port).
#[test]
fn an_empty_cred_helper_entry_means_the_config_file_as_docker_reads_it() {
    let (ok, err, _) = with_helper(
        r#"{"credHelpers":{"@":""},"credsStore":"broken","auths":{"@":{"auth":"dTpw"}}}"#,
        &[("broken", "echo broken >&2; exit 3")],
    );
    assert!(!ok, "the port is closed");
    assert!(!err.contains("credential helper"), "{err}");
}

/// Odd helper names: a NUL byte, `..`, spaces. None runs anything but
/// `docker-credential-<name>` from PATH, and each is an error naming the helper. (Passes.)
#[test]
fn odd_helper_names_are_errors_not_other_programs() {
    for name in ["a\\u0000b", "..", ".hidden", "with space", "-rf"] {
        let (ok, err, _) = with_helper(
            &format!(r#"{{"credHelpers":{{"@":"{name}"}}}}"#),
            &[("with space", "echo ran >&2; exit 9")],
        );
        assert!(!ok, "{name}");
        assert!(err.contains("credential helper"), "{name}: {err}");
    }
}

/// A repository name may have many components (`a/a/…/a`, up to 255 characters): its link
/// lies deeper than the 64 levels `existing_names` walks, so the next ingest that touches
/// the registry directory rebuilds it without that link, silently, and the image is left
/// with no name. Expected: the deep name survives an unrelated ingest into the same
/// registry directory.
#[test]
fn a_deep_repository_name_survives_the_next_ingest_into_its_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("app");
    layout_with(&layout, &["a", "b"]);
    let deep = vec!["a"; 70].join("/");
    let (da, db) = (tmp.path().join("deep.tar"), tmp.path().join("shallow.tar"));
    skopeo_copy(
        &format!("oci:{}:a", layout.display()),
        &format!("docker-archive:{}:r.example.org/{deep}:1", da.display()),
        &[],
    );
    skopeo_copy(
        &format!("oci:{}:b", layout.display()),
        &format!("docker-archive:{}:r.example.org/b:1", db.display()),
        &[],
    );
    let repo = TestRepo::new();
    let ra = format!("docker-archive:{}:r.example.org/{deep}:1", da.display());
    let out = repo.cli("ingest", &[&ra]);
    assert!(out.status.success(), "{}", stderr(&out));
    let link = format!("/r.example.org/{deep}:1");
    let a = leads_to(&repo, &link).unwrap();
    let rb = format!("docker-archive:{}:r.example.org/b:1", db.display());
    let out = repo.cli("ingest", &[&rb]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(leads_to(&repo, &link), Some(a), "the deep name was dropped");
    assert_names_whole(&repo);
}

/// An empty directory someone made in a registry directory (`/localhost/reserved`) is
/// not ingest's; a prune that removes a name beside it removes it too, as if the prune had
/// emptied it. Expected: only directories the prune emptied go.
#[test]
fn a_prune_leaves_an_empty_directory_it_did_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("app");
    layout_with(&layout, &["a", "b"]);
    let repo = TestRepo::new();
    let l = |t: &str| format!("oci:{}:{t}", layout.display());
    let out = cron(&repo, &format!("{}\n{}\n", l("a"), l("b")), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    repo.publish_at(&empty, "/localhost/reserved");
    let out = cron(&repo, &format!("{}\n", l("b")), &["--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(leads_to(&repo, "/localhost/app:a"), None);
    let r = repo.open();
    let s = r.snapshot(&At::Latest).unwrap();
    assert!(
        s.lookup(b"/localhost/reserved").unwrap().is_some(),
        "the prune removed /localhost/reserved"
    );
}

/// Tag globs against a registry with `--prune`: `**` (valid alone, so expand takes every
/// tag) keeps what it ingested; a glob that matches nothing is no failure and keeps
/// nothing; `[!…]` prunes exactly the tag it excludes. Before the Keep fix the `**` run
/// pruned both names it had just made.
#[test]
fn registry_tag_globs_with_prune_keep_what_they_match() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    layout_with(&layout, &["a", "b"]);
    let reg = Registry::start(RegistryAuth::None);
    let addr = reg.addr();
    for (image, to) in [("a", "team/py:3.10"), ("b", "team/py:3.11")] {
        skopeo_copy(
            &format!("oci:{}:{image}", layout.display()),
            &format!("docker://{addr}/{to}"),
            &[],
        );
    }
    let repo = TestRepo::new();
    let insecure = ["--insecure-registry", addr.as_str()];
    let lines = format!("{addr}/team/py:**\n{addr}/team/py:9.?\n");
    let out = cron(&repo, &lines, &[&insecure[..], &["--prune"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let (p10, p11) = (
        format!("/{addr}/team/py:3.10"),
        format!("/{addr}/team/py:3.11"),
    );
    assert!(leads_to(&repo, &p10).is_some(), "{}", stdout(&out));
    assert!(leads_to(&repo, &p11).is_some(), "{}", stdout(&out));
    assert_names_whole(&repo);
    let rev = revision(&repo);
    let out = cron(&repo, &lines, &[&insecure[..], &["--prune"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing changed"), "{}", stdout(&out));
    assert_eq!(revision(&repo), rev);

    let out = cron(
        &repo,
        &format!("{addr}/team/py:3.1[!1]\n"),
        &[&insecure[..], &["--prune"]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(leads_to(&repo, &p10).is_some());
    assert_eq!(leads_to(&repo, &p11), None);
    assert_names_whole(&repo);
    repo.assert_healthy();
}

/// A prune that empties a whole registry directory (its own nested catalog) and removes
/// images in the same revision as it relinks a tag elsewhere: the repository checks clean,
/// the removed registry directory is gone, and the revision before still reads. (Passes.)
#[test]
fn a_prune_removing_a_whole_registry_directory_keeps_the_catalogs_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("app");
    layout_with(&layout, &["a", "b"]);
    let saved = tmp.path().join("saved.tar");
    skopeo_copy(
        &format!("oci:{}:b", layout.display()),
        &format!("docker-archive:{}:r.example.org/team/b:1", saved.display()),
        &[],
    );
    let arch = format!("docker-archive:{}:r.example.org/team/b:1", saved.display());
    let l = |t: &str| format!("oci:{}:{t}", layout.display());
    let repo = TestRepo::new();
    let out = cron(&repo, &format!("{}\n{}\n{arch}\n", l("a"), l("b")), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let b = leads_to(&repo, "/localhost/app:b").unwrap();
    let saved_image = leads_to(&repo, "/r.example.org/team/b:1").unwrap();
    let before = repo.open().manifest().root_catalog;
    // Now only `app:a`, which moved onto b's image: r.example.org goes whole with the
    // archive's image, a's image goes, b's image stays (app:a leads to it).
    run(std::process::Command::new("umoci")
        .args(["tag", "--image"])
        .arg(format!("{}:b", layout.display()))
        .arg("a"));
    let out = cron(&repo, &format!("{}\n", l("a")), &["--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("pruned: /r.example.org/team/b:1"),
        "{}",
        stdout(&out)
    );
    assert_eq!(leads_to(&repo, "/localhost/app:a"), Some(b.clone()));
    let r = repo.assert_healthy();
    let s = r.snapshot(&At::Latest).unwrap();
    assert!(s.lookup(b"/r.example.org").unwrap().is_none());
    assert!(s.lookup(saved_image.as_bytes()).unwrap().is_none());
    assert_names_whole(&repo);
    assert_eq!(
        read_at(
            &r,
            At::RootHash(before),
            format!("{saved_image}/etc/which").as_bytes()
        ),
        b"image b\n"
    );
    let check = repo.cli("check", &[]);
    assert!(check.status.success(), "{}", stderr(&check));
}

/// `--path-prefix` with `..`, `.` or empty components is taken as it is: the publish writes
/// a catalog entry named `..` (caught on reading back as "previous revision: catalog is
/// invalid", a misleading message); a prefix inside `.flat` (`/.flat`) is published, and a
/// prune at the root then removes that prefix's images as unnamed, leaving its links
/// dangling. Expected: such a prefix is refused up front, naming `--path-prefix`.
#[test]
fn a_path_prefix_with_dot_components_or_inside_flat_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("app");
    layout_with(&layout, &["a"]);
    let repo = TestRepo::new();
    let r = format!("oci:{}:a", layout.display());
    let rev = revision(&repo);
    for prefix in ["/a/../b", "//b", "/c/./d", "/.flat", "/x/.flat/y", "/x/.."] {
        let out = repo.cli("ingest", &[&r, "--path-prefix", prefix]);
        assert!(!out.status.success(), "{prefix}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("--path-prefix"),
            "{prefix}: {}",
            stderr(&out)
        );
        assert_eq!(revision(&repo), rev, "{prefix}");
    }
    for prefix in ["/images/", "/a.b/c", "/..x"] {
        let out = repo.cli("ingest", &[&r, "--path-prefix", prefix]);
        assert!(out.status.success(), "{prefix}: {}", stderr(&out));
    }
    repo.assert_healthy();
}

/// A link in a registry directory that leads into an image but not to its root filesystem
/// (`/localhost/tools -> ../.flat/xx/hex/rootfs/etc`, someone's shortcut): not a name
/// ingest made, so a prune keeps it, but it does not count as leading to the image, so the
/// image is removed under it and the link dangles. Expected: the image stays while a link
/// leads into it.
#[test]
fn a_prune_keeps_an_image_a_link_in_a_registry_directory_leads_into() {
    let (tmp, layout, repo, a) = a_and_b_ingested();
    let l = |t: &str| format!("oci:{}:{t}", layout.display());
    publish_link(
        &repo,
        tmp.path(),
        "etc",
        &format!("../..{a}/etc"),
        "/localhost/tools",
    );
    assert_eq!(
        leads_to(&repo, "/localhost/tools/etc"),
        Some(format!("{a}/etc"))
    );
    let out = cron(&repo, &format!("{}\n", l("b")), &["--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(leads_to(&repo, "/localhost/app:a"), None);
    assert_eq!(
        leads_to(&repo, "/localhost/tools/etc"),
        Some(format!("{a}/etc"))
    );
    assert_eq!(
        which(&repo, &a),
        "image a\n",
        "the image the shortcut leads into"
    );
}

/// The nested catalog mounted at `mountpoint` in the current revision's root catalog, as
/// an object file of the repository.
fn nested_catalog_file(repo: &TestRepo, mountpoint: &str) -> std::path::PathBuf {
    use std::io::Read;
    let manifest = std::fs::read(repo.repo.join(".cvmfspublished")).unwrap();
    let root = manifest
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"C"))
        .map(|h| String::from_utf8(h.to_vec()).unwrap())
        .unwrap();
    let object = |h: &str| repo.repo.join(format!("data/{}/{}C", &h[..2], &h[2..]));
    let mut bytes = Vec::new();
    flate2::read::ZlibDecoder::new(std::fs::File::open(object(&root)).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &bytes).unwrap();
    let db = rusqlite::Connection::open(tmp.path()).unwrap();
    let hash: String = db
        .query_row(
            "SELECT sha1 FROM nested_catalogs WHERE CAST(path AS BLOB) = ?1",
            [mountpoint.as_bytes()],
            |r| r.get(0),
        )
        .unwrap();
    object(&hash)
}

/// A registry directory whose catalog cannot be loaded (a damaged object in the
/// publisher's own store) fails the ingest and loses no name. Two guards stand here: the
/// names' rebuild refuses a listing that fails, and the publisher's graft verifies the
/// previous revision's catalogs on the way ("previous revision: … hash mismatch"); either
/// alone makes this pass, so it guards the outcome, not one of them.
#[test]
fn a_registry_directory_that_cannot_be_read_fails_the_ingest_and_loses_no_name() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("app");
    layout_with(&layout, &["a", "b"]);
    let repo = TestRepo::new();
    let out = repo.cli("ingest", &[&format!("oci:{}:a", layout.display())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = revision(&repo);
    let file = nested_catalog_file(&repo, "/localhost");
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"not a catalog").unwrap();
    let out = repo.cli("ingest", &[&format!("oci:{}:b", layout.display())]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(revision(&repo), before, "nothing published");
    std::fs::write(&file, good).unwrap();
    assert!(leads_to(&repo, "/localhost/app:a").is_some());
    repo.assert_healthy();
}
