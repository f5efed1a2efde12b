//! `lazyroot ingest --wishlist` as cron runs it, against Debian's docker-registry: tag
//! globs resolved through the registry's tag list, what is missing converted, moved tags
//! repaired, failures listed with a non-zero exit while the rest is published, `--prune`
//! removing the names no wish gives and the images no name leads to, and the publisher
//! lock keeping two runs apart.

use std::path::Path;

use lazyroot::ingest::names;
use lazyroot::repository::At;

use super::fixtures::*;
use crate::common::*;

/// Four small one-layer images, `a` to `d`, in one OCI layout.
fn images(layout: &Path) {
    for tag in ["a", "b", "c", "d"] {
        let content = format!("image {tag}\n");
        build_image(
            layout,
            tag,
            &[&[("etc/which", content.as_bytes())]],
            "amd64",
        );
    }
}

/// The four images in a layout, a registry, and image a pushed as `team/py:3.10`.
fn registry_with_images() -> (tempfile::TempDir, std::path::PathBuf, Registry) {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    images(&layout);
    let reg = Registry::start(RegistryAuth::None);
    push(&layout, &reg, "a", "team/py:3.10");
    (tmp, layout, reg)
}

fn push(layout: &Path, reg: &Registry, image: &str, to: &str) {
    skopeo_copy(
        &format!("oci:{}:{image}", layout.display()),
        &format!("docker://{}/{to}", reg.addr()),
        &[],
    );
}

/// `lazyroot ingest --wishlist` with the lines `wishes` and the flags `extra`.
pub(super) fn cron_lines(repo: &TestRepo, wishes: &str, extra: &[&str]) -> std::process::Output {
    let file = repo.dir.path().join("wishlist");
    std::fs::write(&file, wishes).unwrap();
    let file = file.to_str().unwrap().to_string();
    repo.cli("ingest", &[&["--wishlist", &file][..], extra].concat())
}

/// [`cron_lines`] against the registry at `reg_addr` (`@` in `wishes` is its address).
fn cron(repo: &TestRepo, reg_addr: &str, wishes: &str, extra: &[&str]) -> std::process::Output {
    let insecure = ["--insecure-registry", reg_addr];
    cron_lines(
        repo,
        &wishes.replace('@', reg_addr),
        &[&insecure[..], extra].concat(),
    )
}

/// What `link` leads to in the latest revision (`None`: no such link).
pub(super) fn leads_to(repo: &TestRepo, link: &str) -> Option<String> {
    let r = repo.open();
    let s = r.snapshot(&At::Latest).unwrap();
    let e = s.lookup(link.as_bytes()).unwrap()?.entry;
    names::resolve_link(link, &String::from_utf8(e.symlink).unwrap())
}

/// The test images' `etc/which` in the root filesystem `rootfs`.
pub(super) fn which(repo: &TestRepo, rootfs: &str) -> String {
    String::from_utf8(read_at(
        &repo.open(),
        At::Latest,
        format!("{rootfs}/etc/which").as_bytes(),
    ))
    .unwrap()
}

pub(super) fn revision(repo: &TestRepo) -> u64 {
    repo.open().manifest().revision
}

#[test]
fn a_wishlist_converts_what_is_missing_repairs_moved_tags_and_lists_failures() {
    let (_tmp, layout, reg) = registry_with_images();
    push(&layout, &reg, "b", "team/py:3.11");
    push(&layout, &reg, "c", "team/py:2.7");
    push(&layout, &reg, "a", "team/tool:1");
    let repo = TestRepo::new();
    let addr = reg.addr();
    let wishes = "# the farm's images\n\
                  @/team/py:3.1*   # every 3.1x\n\
                  @/team/tool:1\n\
                  @/team/missing:1\n";
    let before = revision(&repo);

    let out = cron(&repo, &addr, wishes, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("1 references failed") && err.contains(&format!("{addr}/team/missing:1")),
        "{err}"
    );
    assert!(
        !err.contains("team/py"),
        "only the missing one failed: {err}"
    );
    assert_eq!(revision(&repo), before + 1, "the others in one revision");
    let py = |t: &str| format!("/{addr}/team/py:{t}");
    let (a, b) = (
        leads_to(&repo, &py("3.10")).unwrap(),
        leads_to(&repo, &py("3.11")).unwrap(),
    );
    assert_eq!(which(&repo, &a), "image a\n");
    assert_eq!(which(&repo, &b), "image b\n");
    assert_eq!(
        leads_to(&repo, &format!("/{addr}/team/tool:1")),
        Some(a.clone())
    );
    assert_eq!(leads_to(&repo, &py("2.7")), None, "the glob left 2.7 out");
    repo.assert_healthy();

    // Cron again, nothing moved: nothing published, the failure still listed.
    let out = cron(&repo, &addr, wishes, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("nothing changed"), "{}", stdout(&out));
    assert_eq!(revision(&repo), before + 1);

    // 3.11 moves to image c and 3.12 appears: both in the next run, one revision.
    push(&layout, &reg, "c", "team/py:3.11");
    push(&layout, &reg, "d", "team/py:3.12");
    let out = cron(&repo, &addr, wishes, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(revision(&repo), before + 2);
    let c = leads_to(&repo, &py("3.11")).unwrap();
    assert_eq!(which(&repo, &c), "image c\n");
    assert_eq!(
        which(&repo, &leads_to(&repo, &py("3.12")).unwrap()),
        "image d\n"
    );
    // Without --prune the image 3.11 named before stays.
    assert_eq!(which(&repo, &b), "image b\n");
    repo.assert_healthy();
}

#[test]
fn prune_removes_what_no_wish_names_and_keeps_what_a_failing_wish_names() {
    let (tmp, layout, reg) = registry_with_images();
    push(&layout, &reg, "b", "team/py:3.11");
    push(&layout, &reg, "c", "team/tool:1");
    push(&layout, &reg, "d", "other/x:1");
    let repo = TestRepo::new();
    // Something of the repository's own that no prune may touch.
    let own = tmp.path().join("own");
    write(&own.join("README"), b"not an image\n");
    repo.publish_at(&own, "/images/own");
    let addr = reg.addr();
    let all = "@/team/py:3.1*\n@/team/tool:1\n@/other/x:1\n";
    let out = cron(&repo, &addr, all, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let py10 = format!("/{addr}/team/py:3.10");
    let tool = format!("/{addr}/team/tool:1");
    let other = format!("/{addr}/other/x:1");
    let (a, c, d) = (
        leads_to(&repo, &py10).unwrap(),
        leads_to(&repo, &tool).unwrap(),
        leads_to(&repo, &other).unwrap(),
    );
    let b = leads_to(&repo, &format!("/{addr}/team/py:3.11")).unwrap();
    let image_dir = |rootfs: &str| rootfs.strip_suffix("/rootfs").unwrap().to_string();
    let before = revision(&repo);
    let before_root = repo.open().manifest().root_catalog;

    // An empty wishlist would prune everything: refused, nothing published.
    let out = cron(&repo, &addr, "# nothing\n", &["--prune"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("would remove every image"),
        "{}",
        stderr(&out)
    );
    assert_eq!(revision(&repo), before);

    // 3.11 is deleted from the wishes' view by moving it onto a's image; tool:1 and the
    // whole `other` repository are no longer wished for.
    push(&layout, &reg, "a", "team/py:3.11");
    let out = cron(&repo, &addr, "@/team/py:3.1*\n", &["--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    for gone in [
        &tool,
        &other,
        &image_dir(&b),
        &image_dir(&c),
        &image_dir(&d),
    ] {
        let dir = gone
            .rsplit_once("/.flat/")
            .map_or(gone.to_string(), |(p, rest)| {
                format!("{p}/.flat/{}", &rest[..2])
            });
        assert!(
            printed.contains(&format!("pruned: {gone}"))
                || printed.contains(&format!("pruned: {dir}")),
            "{gone} not pruned: {printed}"
        );
    }
    assert_eq!(revision(&repo), before + 1, "the prune is one revision");
    assert_eq!(leads_to(&repo, &tool), None);
    assert_eq!(leads_to(&repo, &other), None);
    let r = repo.open();
    let s = r.snapshot(&At::Latest).unwrap();
    for dir in [&b, &c, &d] {
        assert!(
            s.lookup(image_dir(dir).as_bytes()).unwrap().is_none(),
            "{dir} stayed"
        );
    }
    // The `other` repository's directory went with its last name; a stays, and so does
    // the repository's own tree.
    assert!(s
        .lookup(format!("/{addr}/other").as_bytes())
        .unwrap()
        .is_none());
    assert_eq!(
        leads_to(&repo, &format!("/{addr}/team/py:3.11")),
        Some(a.clone())
    );
    assert_eq!(which(&repo, &a), "image a\n");
    assert_eq!(
        read_at(&r, At::Latest, b"/images/own/README"),
        b"not an image\n"
    );
    // The revision before is whole: a task prepared on it keeps reading.
    assert_eq!(
        read_at(
            &r,
            At::RootHash(before_root),
            format!("{d}/etc/which").as_bytes()
        ),
        b"image d\n"
    );
    repo.assert_healthy();

    // The registry is down: every wish fails, and a wish that fails keeps its names.
    drop(reg);
    let out = cron(&repo, &addr, "@/team/py:3.1*\n", &["--prune"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("team/py:3.1*"), "{}", stderr(&out));
    assert_eq!(revision(&repo), before + 1, "nothing pruned");
    assert_eq!(leads_to(&repo, &py10), Some(a));
}

#[test]
fn a_second_run_while_one_publishes_is_refused_by_the_publisher_lock() {
    let (_tmp, _layout, reg) = registry_with_images();
    let repo = TestRepo::new();
    let before = revision(&repo);
    let store = lazyroot::repository::local::LocalStore::new(&repo.repo);
    let held = lazyroot::publish::lock(&store).unwrap();
    let out = cron(&repo, &reg.addr(), "@/team/py:3.10\n", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("publish.lock"), "{}", stderr(&out));
    assert_eq!(revision(&repo), before);
    drop(held);
    let out = cron(&repo, &reg.addr(), "@/team/py:3.10\n", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(revision(&repo), before + 1);
}

#[test]
fn a_registry_directory_holding_what_ingest_did_not_make_is_refused_not_rebuilt() {
    let (tmp, _layout, reg) = registry_with_images();
    let repo = TestRepo::new();
    let notes = tmp.path().join("notes");
    write(&notes.join("README"), b"the registry's mirror policy\n");
    let inside = format!("/{}/notes", reg.addr());
    repo.publish_at(&notes, &inside);
    let before = revision(&repo);
    let out = cron(&repo, &reg.addr(), "@/team/py:3.10\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{inside}/README is not a name ingest made")),
        "{}",
        stderr(&out)
    );
    assert_eq!(revision(&repo), before, "nothing published");
    assert_eq!(
        read_at(
            &repo.open(),
            At::Latest,
            format!("{inside}/README").as_bytes()
        ),
        b"the registry's mirror policy\n"
    );
}
