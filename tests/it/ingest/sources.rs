//! Image sources against a real registry and real image tools: multi-layer pulls, indexes
//! and platforms, OCI layouts and docker-save archives giving the same image, tag lists.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use lazyroot::ingest::digest::Digest;
use lazyroot::ingest::media::{self, Descriptor, LayerCompression};
use lazyroot::ingest::source::{ImageSource, Platform, ResolvedImage};

use super::fixtures::*;

pub fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

/// Reads a blob to its end through the source (verified while streaming).
pub fn read_blob(src: &dyn ImageSource, d: &Descriptor) -> Vec<u8> {
    let mut out = Vec::new();
    src.open_blob(d)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("reading {}: {e}", d.digest));
    out
}

/// Reads every layer: each hashes to its digest, and uncompressed to its diff_id; returns
/// the file names of every layer's tar.
pub fn read_layers(src: &dyn ImageSource, img: &ResolvedImage) -> Vec<Vec<String>> {
    img.layers
        .iter()
        .zip(&img.diff_ids)
        .map(|(d, diff_id)| {
            let bytes = read_blob(src, d);
            assert_eq!(Digest::sha256(&bytes), d.digest);
            assert_eq!(bytes.len() as u64, d.size);
            let plain = match LayerCompression::of(d).unwrap() {
                LayerCompression::None => bytes,
                LayerCompression::Gzip => {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&bytes[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
                LayerCompression::Zstd => panic!("the tools here write no zstd layers"),
            };
            assert_eq!(Digest::sha256(&plain), *diff_id, "layer {}", d.digest);
            let mut names = Vec::new();
            for e in tar::Archive::new(&plain[..]).entries().unwrap() {
                names.push(e.unwrap().path().unwrap().display().to_string());
            }
            names
        })
        .collect()
}

fn has(names: &[String], want: &str) -> bool {
    names.iter().any(|n| n.trim_start_matches("./") == want)
}

/// The config fields `three_layers` and `build_image` set.
pub fn check_config(img: &ResolvedImage, arch: &str) {
    let c = &img.config;
    assert_eq!((c.os.as_str(), c.architecture.as_str()), ("linux", arch));
    let run = c.config.as_ref().expect("a run config");
    assert_eq!(
        run.entrypoint.as_deref(),
        Some(&["/bin/sh".to_string()][..])
    );
    assert!(run
        .env
        .as_ref()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING=hello"));
    assert_eq!(run.working_dir.as_deref(), Some("/srv"));
    assert_eq!(run.labels.as_ref().unwrap()["org.example.test"], "1");
    assert_eq!(img.diff_ids, c.rootfs.diff_ids);
    assert_eq!(img.manifest_digest, Digest::sha256(&img.manifest_bytes));
}

#[test]
fn ingest_registry_anonymous_multi_layer() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = registry_with_three_layers(tmp.path());
    let reference = format!("{}/team/app:v1", reg.addr());
    let src = open(&reference, &insecure(&reg.addr()));
    let img = src.resolve(&amd64()).unwrap();
    assert_eq!(img.reference, reference);
    assert_eq!(img.layers.len(), 3);
    assert_eq!(img.index_digest, None);
    check_config(&img, "amd64");
    let names = read_layers(&*src, &img);
    assert!(
        has(&names[0], "etc/os-release") && has(&names[0], "bin/tool"),
        "{names:?}"
    );
    assert!(has(&names[1], "etc/motd"), "{names:?}");
    assert!(has(&names[2], "srv/data.txt"), "{names:?}");

    // The same image pinned by its digest: the bytes served must hash to it.
    let pinned = format!("{}/team/app@{}", reg.addr(), img.manifest_digest);
    let by_digest = open(&pinned, &insecure(&reg.addr()))
        .resolve(&amd64())
        .unwrap();
    assert_eq!(by_digest.manifest_digest, img.manifest_digest);
    assert_eq!(by_digest.config_bytes, img.config_bytes);
    assert_eq!(by_digest.reference, pinned);
    eprintln!("anonymous pull took {:?}", t0.elapsed());
}

/// Writes an index over the layout's images `tags` (with their platforms) as `name`.
pub fn write_index(layout: &Path, name: &str, tags: &[(&str, &str, Option<&str>)]) -> Digest {
    let index: media::Index =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut manifests = Vec::new();
    for (tag, arch, variant) in tags {
        let mut d = index
            .manifests
            .iter()
            .find(|d| d.annotations.as_ref().unwrap()["org.opencontainers.image.ref.name"] == *tag)
            .unwrap()
            .clone();
        d.annotations = None;
        d.platform = Some(media::DescriptorPlatform {
            architecture: arch.to_string(),
            os: "linux".into(),
            variant: variant.map(str::to_string),
            os_version: None,
        });
        manifests.push(d);
    }
    let multi = media::Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&multi).unwrap();
    let digest = Digest::sha256(&bytes);
    std::fs::write(layout.join("blobs/sha256").join(&digest.hex), &bytes).unwrap();
    let mut top = index.clone();
    top.manifests.push(Descriptor {
        media_type: media::OCI_INDEX.into(),
        digest: digest.clone(),
        size: bytes.len() as u64,
        platform: None,
        annotations: Some(
            [(
                "org.opencontainers.image.ref.name".to_string(),
                name.to_string(),
            )]
            .into(),
        ),
        urls: None,
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    digest
}

#[test]
fn ingest_registry_multi_platform_index() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    build_image(&layout, "amd64", &[&[("arch", b"amd64\n")]], "amd64");
    build_image(
        &layout,
        "arm64",
        &[&[("arch", b"arm64\n")], &[("etc/v8", b"v8\n")]],
        "arm64",
    );
    let index_digest = write_index(
        &layout,
        "multi",
        &[("amd64", "amd64", None), ("arm64", "arm64", Some("v8"))],
    );
    let reg = Registry::start(RegistryAuth::None);
    skopeo_copy(
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{}/test/multi:1", reg.addr()),
        &["--all"],
    );
    let reference = format!("{}/test/multi:1", reg.addr());
    let src = open(&reference, &insecure(&reg.addr()));
    let a = src.resolve(&amd64()).unwrap();
    let b = src
        .resolve(&Platform::parse("linux/arm64").unwrap())
        .unwrap();
    let b8 = src
        .resolve(&Platform::parse("linux/arm64/v8").unwrap())
        .unwrap();
    check_config(&a, "amd64");
    check_config(&b, "arm64");
    assert_eq!((a.layers.len(), b.layers.len()), (1, 2));
    assert_ne!(a.manifest_digest, b.manifest_digest);
    assert_eq!(b8.manifest_digest, b.manifest_digest);
    assert_eq!(a.index_digest.as_ref(), Some(&index_digest));
    read_layers(&*src, &b);

    let e = src
        .resolve(&Platform::parse("linux/s390x").unwrap())
        .unwrap_err()
        .to_string();
    assert_parts(
        &e,
        &[&reference, "linux/s390x", "linux/amd64", "linux/arm64/v8"],
    );
    let e = src
        .resolve(&Platform::parse("linux/arm64/v9").unwrap())
        .unwrap_err()
        .to_string();
    assert_parts(&e, &["linux/arm64/v9", "linux/arm64/v8"]);

    // The layout's nested index picks the same manifests.
    let local = open(&format!("oci:{}:multi", layout.display()), &options());
    assert_eq!(
        local
            .resolve(&Platform::parse("linux/arm64").unwrap())
            .unwrap()
            .manifest_digest,
        b.manifest_digest
    );
    assert_eq!(
        local.resolve(&amd64()).unwrap().manifest_digest,
        a.manifest_digest
    );
}

#[test]
fn ingest_layout_and_archive_match_the_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, layout) = registry_with_three_layers(tmp.path());
    let archive = tmp.path().join("app.tar");
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker-archive:{}:test/app:v1", archive.display()),
        &[],
    );
    let remote = open(
        &format!("{}/team/app:v1", reg.addr()),
        &insecure(&reg.addr()),
    );
    let r = remote.resolve(&amd64()).unwrap();

    let oci_ref = format!("oci:{}:v1", layout.display());
    let oci = open(&oci_ref, &options());
    let o = oci.resolve(&amd64()).unwrap();
    assert_eq!(o.reference, oci_ref);
    assert_eq!(o.manifest_digest, r.manifest_digest);
    assert_eq!(o.config_bytes, r.config_bytes);
    assert_eq!(o.layers, r.layers);
    assert_eq!(oci.tags().unwrap(), ["v1"]);
    read_layers(&*oci, &o);

    let arc_ref = format!("docker-archive:{}:test/app:v1", archive.display());
    let arc = open(&arc_ref, &options());
    let a = arc.resolve(&amd64()).unwrap();
    assert_eq!(a.reference, arc_ref);
    assert_eq!(a.diff_ids, r.diff_ids);
    assert_eq!(a.config_bytes, r.config_bytes);
    check_config(&a, "amd64");
    // skopeo stores the layers uncompressed: each one's digest is its diff_id.
    for (l, diff_id) in a.layers.iter().zip(&a.diff_ids) {
        assert_eq!(
            (l.media_type.as_str(), &l.digest),
            (media::OCI_LAYER, diff_id)
        );
    }
    read_layers(&*arc, &a);
    // The synthesized manifest is deterministic: another opening gives the same digest.
    let again = open(&format!("docker-archive:{}", archive.display()), &options());
    assert_eq!(
        again.resolve(&amd64()).unwrap().manifest_digest,
        a.manifest_digest
    );
    assert_eq!(arc.tags().unwrap(), ["docker.io/test/app:v1"]);
    let e = match lazyroot::ingest::source::open(
        &lazyroot::ingest::reference::Reference::parse(&format!(
            "docker-archive:{}:other:v2",
            archive.display()
        ))
        .unwrap(),
        &options(),
    ) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an absent name was found"),
    };
    assert_parts(&e, &["docker.io/library/other:v2", "docker.io/test/app:v1"]);
}

#[test]
fn ingest_registry_tags_paginate() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    build_image(&layout, "v1", &[&[("a", b"a")]], "amd64");
    let reg = Registry::start(RegistryAuth::None);
    let want = ["t1", "t2", "t3", "t4", "t5"];
    for t in want {
        skopeo_copy(
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/test/tags:{t}", reg.addr()),
            &[],
        );
    }
    // distribution 2.8 answers tags/list whole, ignoring `n`; a proxy of our own pages
    // the registry's real list as the distribution spec says (`n`, `last`, `Link`).
    let upstream = reg.addr();
    let proxy = Server::start(move |req, conn| {
        let Some((path, query)) = req.path.split_once('?') else {
            return relay(conn, &forward(req, &upstream));
        };
        let mut whole = req.clone();
        whole.path = path.to_string();
        let up = forward(&whole, &upstream);
        let mut all: Vec<String> = serde_json::from_slice::<serde_json::Value>(&up.body).unwrap()
            ["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        all.sort();
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")[..]))
        };
        let n: usize = param("n").unwrap().parse().unwrap();
        let after: Vec<String> = all
            .into_iter()
            .filter(|t| param("last").is_none_or(|l| t.as_str() > l))
            .collect();
        let page = &after[..n.min(after.len())];
        let body = serde_json::json!({"name": "test/tags", "tags": page}).to_string();
        let link;
        let mut headers = vec![("Content-Type", "application/json")];
        if after.len() > n {
            link = format!("<{path}?last={}&n={n}>; rel=\"next\"", page[n - 1]);
            headers.push(("Link", link.as_str()));
        }
        respond(conn, 200, &headers, body.as_bytes());
    });
    let mut o = insecure(&proxy.addr());
    o.tags_page_size = Some(2);
    let src = open(&format!("{}/test/tags", proxy.addr()), &o);
    let mut tags = src.tags().unwrap();
    tags.sort();
    assert_eq!(tags, want);
    let pages: Vec<String> = proxy
        .paths()
        .into_iter()
        .filter(|p| p.contains("/tags/list"))
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(pages[0], "/v2/test/tags/tags/list?n=2");
    assert!(pages[1].contains("last=t2"), "{pages:?}");
}
