//! `ingest` end to end: umoci-built images pushed to Debian's docker-registry, ingested
//! into a repository (one revision per call), read back; unchanged tags publish nothing,
//! moved tags only relink, shared layers are neither downloaded nor read again.

use lazyroot::ingest::layer::ReadLimits;
use lazyroot::ingest::meta::ImageMeta;
use lazyroot::ingest::names;
use lazyroot::ingest::run::{ingest, IngestOptions, Outcome};
use lazyroot::ingest::source::Platform;
use lazyroot::repository::At;

use super::fixtures::*;
use crate::common::*;

fn opts(repo: &TestRepo, registry: &str, refs: &[String]) -> IngestOptions {
    let source = insecure(registry);
    IngestOptions {
        repo: repo.repo.clone(),
        keys: repo.keys.clone(),
        references: refs.to_vec(),
        prefix: String::new(),
        platform: Platform::parse("linux/amd64").unwrap(),
        source,
        limits: ReadLimits::default(),
        wishes: Vec::new(),
        keep_going: false,
        prune: false,
    }
}

fn read(repo: &TestRepo, path: &str) -> Vec<u8> {
    let r = repo.open();
    let s = r.snapshot(&At::Latest).unwrap();
    let mut out = Vec::new();
    s.read_file(path.as_bytes(), &mut out).unwrap();
    out
}

#[test]
fn images_from_a_registry_are_ingested_once_and_named_by_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    three_layers(&layout, "v1");
    // A second image: the first one's three layers and one more on top.
    run(std::process::Command::new("umoci")
        .args(["tag", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg("v2"));
    let bundle = tmp.path().join("bundle");
    run(std::process::Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:v2", layout.display()))
        .arg(&bundle));
    std::fs::write(bundle.join("rootfs/srv/data.txt"), b"version two\n").unwrap();
    run(std::process::Command::new("umoci")
        .args(["repack", "--image"])
        .arg(format!("{}:v2", layout.display()))
        .arg(&bundle));
    let reg = Registry::start(RegistryAuth::None);
    for tag in ["v1", "v2"] {
        skopeo_copy(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{}/team/app:{tag}", reg.addr()),
            &[],
        );
    }
    let repo = TestRepo::new();
    let v1 = format!("{}/team/app:v1", reg.addr());
    let before = repo.open().manifest().revision;

    let r = ingest(&opts(&repo, &reg.addr(), std::slice::from_ref(&v1))).unwrap();
    assert_eq!(r.images[0].outcome, Outcome::New);
    assert_eq!((r.layers_fetched, r.layers_reused), (3, 0));
    assert_eq!(r.revision, Some(before + 1));
    let hex = r.images[0]
        .manifest_digest
        .split_once(':')
        .unwrap()
        .1
        .to_string();
    let rootfs = names::flat_dir("", &hex);
    assert_eq!(
        read(&repo, &format!("{rootfs}/srv/data.txt")),
        b"layer three\n"
    );
    assert_eq!(
        read(&repo, &format!("{rootfs}/bin/tool")),
        noise(7, 300 << 10)
    );
    let meta = ImageMeta::from_bytes(&read(&repo, &names::meta_file("", &hex))).unwrap();
    assert_eq!(meta.entrypoint, ["/bin/sh"]);
    assert_eq!(meta.env, ["GREETING=hello"]);
    assert_eq!(meta.working_dir, "/srv");
    assert_eq!(meta.source, v1);
    // The name is a relative link to the root filesystem.
    let link = format!("/{}/team/app:v1", reg.addr());
    let listing = repo.open();
    let snap = listing.snapshot(&At::Latest).unwrap();
    let found = snap.lookup(link.as_bytes()).unwrap().expect("the link");
    let target = String::from_utf8(found.entry.symlink.clone()).unwrap();
    assert_eq!(
        names::resolve_link(&link, &target).as_deref(),
        Some(rootfs.as_str())
    );

    repo.assert_healthy();

    // Again: nothing changed, nothing published, nothing downloaded.
    let again = ingest(&opts(&repo, &reg.addr(), std::slice::from_ref(&v1))).unwrap();
    assert_eq!(again.images[0].outcome, Outcome::Unchanged);
    assert_eq!(again.revision, None);
    assert_eq!(again.layers_fetched + again.layers_reused, 0);
    assert_eq!(repo.open().manifest().revision, before + 1);

    // Another tag of the same image only relinks; a second image reuses the shared layers.
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:stable", reg.addr()),
        &[],
    );
    let stable = format!("{}/team/app:stable", reg.addr());
    let v2 = format!("{}/team/app:v2", reg.addr());
    let both = ingest(&opts(&repo, &reg.addr(), &[stable, v2])).unwrap();
    assert_eq!(both.images[0].outcome, Outcome::Relinked);
    assert_eq!(both.images[1].outcome, Outcome::New);
    assert_eq!(
        (both.layers_fetched, both.layers_reused),
        (1, 3),
        "{both:?}"
    );
    assert_eq!(both.revision, Some(before + 2), "one revision for the call");
    let hex2 = both.images[1]
        .manifest_digest
        .split_once(':')
        .unwrap()
        .1
        .to_string();
    assert_eq!(
        read(
            &repo,
            &format!("{}/srv/data.txt", names::flat_dir("", &hex2))
        ),
        b"version two\n"
    );
    // Both names of the first image, and the first image itself, are still there.
    for tag in ["v1", "stable"] {
        let l = format!("/{}/team/app:{tag}", reg.addr());
        let r = repo.open();
        let s = r.snapshot(&At::Latest).unwrap();
        let f = s.lookup(l.as_bytes()).unwrap().expect("link");
        let t = String::from_utf8(f.entry.symlink.clone()).unwrap();
        assert_eq!(
            names::resolve_link(&l, &t).as_deref(),
            Some(rootfs.as_str()),
            "{tag}"
        );
    }
    assert_eq!(
        read(&repo, &format!("{rootfs}/srv/data.txt")),
        b"layer three\n"
    );
    repo.assert_healthy();
}

/// A layer refused midway (here: a registry that lost a blob) publishes nothing, and the
/// previous revision stays as it was.
#[test]
fn a_failed_ingest_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = registry_with_three_layers(tmp.path());
    let repo = TestRepo::new();
    let before = repo.open().manifest().clone();
    let reference = format!("{}/team/app:v1", reg.addr());
    let img = open(&reference, &insecure(&reg.addr()))
        .resolve(&Platform::parse("linux/amd64").unwrap())
        .unwrap();
    std::fs::remove_file(reg.blob_data(&img.layers[2].digest.hex)).unwrap();
    let err = ingest(&opts(&repo, &reg.addr(), std::slice::from_ref(&reference))).unwrap_err();
    let msg = chain(&err);
    assert!(msg.contains(&img.layers[2].digest.hex), "{msg}");
    let after = repo.open().manifest().clone();
    assert_eq!(after.revision, before.revision);
    assert_eq!(after.root_catalog, before.root_catalog);
    repo.assert_healthy();
}
