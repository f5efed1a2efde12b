//! Bad input and faults: every failure names the image, the manifest or blob, and the
//! cause. Faults come from a proxy of the test's own in front of a real registry, from
//! the registry's storage losing a blob, from a token service that is down, and from
//! local layouts that break their rules.

use std::io::Read;
use std::time::{Duration, Instant};

use lazyroot::ingest::media::Descriptor;
use lazyroot::ingest::reference::Reference;
use lazyroot::ingest::source::{self, ImageSource, SourceOptions};

use super::fixtures::*;
use super::sources::amd64;

/// A registry holding `team/app:v1` (three layers), and its layout.
fn pushed() -> (tempfile::TempDir, Registry) {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = registry_with_three_layers(tmp.path());
    (tmp, reg)
}

fn through(proxy: &Server) -> (String, SourceOptions) {
    let mut o = options();
    o.insecure_registries = vec![proxy.addr()];
    o.retries = 1;
    (format!("{}/team/app:v1", proxy.addr()), o)
}

fn read_err(src: &dyn ImageSource, d: &Descriptor) -> String {
    let mut out = Vec::new();
    match src.open_blob(d) {
        Err(e) => e.to_string(),
        Ok(mut r) => r
            .read_to_end(&mut out)
            .expect_err("the blob read whole")
            .to_string(),
    }
}

fn json_error(code: &str, message: &str) -> String {
    format!(r#"{{"errors":[{{"code":"{code}","message":"{message}","detail":null}}]}}"#)
}

#[test]
fn ingest_faults_http_statuses() {
    let (_tmp, reg) = pushed();
    let upstream = reg.addr();
    // The good image, for its digests.
    let mut direct = options();
    direct.insecure_registries = vec![upstream.clone()];
    let good = open(&format!("{upstream}/team/app:v1"), &direct)
        .resolve(&amd64())
        .unwrap();
    let layer = good.layers[1].clone();
    let layer_path = format!("/v2/team/app/blobs/{}", layer.digest);

    // 404: a tag the registry does not have.
    let reference = format!("{upstream}/team/app:nope");
    let e = open(&reference, &direct)
        .resolve(&amd64())
        .unwrap_err()
        .to_string();
    assert_parts(
        &e,
        &[
            &reference,
            "GET /v2/team/app/manifests/nope",
            "HTTP 404",
            "MANIFEST_UNKNOWN",
        ],
    );

    let lp = layer_path.clone();
    let proxy = fault_proxy(upstream.clone(), move |req, n| {
        let json = vec![("Content-Type".to_string(), "application/json".to_string())];
        if req.path.ends_with("/manifests/v1") && n == 0 {
            // 429 once, then the answer.
            let mut h = json.clone();
            h.push(("Retry-After".into(), "1".into()));
            return Fault::Answer(429, h, json_error("TOOMANYREQUESTS", "slow down"));
        }
        if req.path == lp {
            return Fault::Answer(
                403,
                json,
                json_error("DENIED", "requested access to the resource is denied"),
            );
        }
        if req.path.ends_with("/manifests/broken") {
            return Fault::Answer(500, json, json_error("UNKNOWN", "storage on fire"));
        }
        if req.path.ends_with("/manifests/locked") {
            let mut h = json.clone();
            h.push(("WWW-Authenticate".into(), r#"Basic realm="locked""#.into()));
            return Fault::Answer(
                401,
                h,
                json_error("UNAUTHORIZED", "authentication required"),
            );
        }
        Fault::Pass
    });
    let (reference, o) = through(&proxy);
    let src = open(&reference, &o);
    let t0 = Instant::now();
    let img = src.resolve(&amd64()).unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "Retry-After was not honoured"
    );
    assert_eq!(img.manifest_digest, good.manifest_digest);
    assert_eq!(
        proxy
            .paths()
            .iter()
            .filter(|p| p.ends_with("/manifests/v1"))
            .count(),
        2
    );

    // 403 on a layer.
    let e = read_err(&*src, &layer);
    assert_parts(
        &e,
        &[
            &reference,
            &layer.digest.to_string(),
            "HTTP 403",
            "forbidden",
            "DENIED",
        ],
    );

    // 500, still after the retry.
    let broken = format!("{}/team/app:broken", proxy.addr());
    let e = open(&broken, &o).resolve(&amd64()).unwrap_err().to_string();
    assert_parts(
        &e,
        &[&broken, "manifests/broken", "HTTP 500", "storage on fire"],
    );
    assert_eq!(
        proxy
            .paths()
            .iter()
            .filter(|p| p.ends_with("/manifests/broken"))
            .count(),
        2
    );

    // 401 with a Basic challenge: without credentials, then with refused ones.
    let locked = format!("{}/team/app:locked", proxy.addr());
    let e = open(&locked, &o).resolve(&amd64()).unwrap_err().to_string();
    assert_parts(&e, &[&locked, "manifests/locked", "credentials", "--creds"]);
    let mut with = o.clone();
    with.creds = Some(("u".into(), "p".into()));
    let e = open(&locked, &with)
        .resolve(&amd64())
        .unwrap_err()
        .to_string();
    assert_parts(
        &e,
        &[
            &locked,
            "manifests/locked",
            "HTTP 401",
            "UNAUTHORIZED: authentication required",
        ],
    );
}

#[test]
fn ingest_faults_bad_blob_bytes() {
    let (_tmp, reg) = pushed();
    let mut direct = options();
    direct.insecure_registries = vec![reg.addr()];
    let good = open(&format!("{}/team/app:v1", reg.addr()), &direct)
        .resolve(&amd64())
        .unwrap();
    let (corrupt, cut) = (
        good.layers[0].digest.to_string(),
        good.layers[2].digest.to_string(),
    );
    let config = good.config_bytes.clone();
    let (c2, t2) = (corrupt.clone(), cut.clone());
    let proxy = fault_proxy(reg.addr(), move |req, _| {
        if req.path.ends_with(&c2) {
            Fault::Corrupt
        } else if req.path.ends_with(&t2) {
            Fault::Truncate
        } else {
            Fault::Pass
        }
    });
    let (reference, o) = through(&proxy);
    let src = open(&reference, &o);
    let img = src.resolve(&amd64()).unwrap();
    assert_eq!(img.config_bytes, config);
    let e = read_err(&*src, &img.layers[0]);
    assert_parts(
        &e,
        &[
            &reference,
            &format!("blob {corrupt}"),
            "hashes to sha256:",
            "not to the blob's digest",
        ],
    );
    let e = read_err(&*src, &img.layers[2]);
    assert_parts(&e, &[&reference, &format!("blob {cut}"), "reading it"]);
    // A descriptor claiming fewer bytes than served: cut off at its size.
    let mut short = img.layers[1].clone();
    short.size -= 1;
    let e = read_err(&*src, &short);
    assert_parts(
        &e,
        &[
            &reference,
            &short.digest.to_string(),
            "more than the blob's",
        ],
    );
    // A descriptor over the configured maximum is refused before any request.
    let mut small = o.clone();
    small.max_layer_size = 1000;
    let e = open(&reference, &small)
        .resolve(&amd64())
        .unwrap_err()
        .to_string();
    assert_parts(
        &e,
        &[&reference, "layer sha256:", "more than the 1000 allowed"],
    );

    // A corrupt config fails the resolve, naming the config.
    let config_digest =
        serde_json::from_slice::<lazyroot::ingest::media::Manifest>(&img.manifest_bytes)
            .unwrap()
            .config
            .digest
            .to_string();
    let cd = config_digest.clone();
    let proxy2 = fault_proxy(reg.addr(), move |req, _| {
        if req.path.ends_with(&cd) {
            Fault::Corrupt
        } else {
            Fault::Pass
        }
    });
    let (reference2, o2) = through(&proxy2);
    let e = open(&reference2, &o2)
        .resolve(&amd64())
        .unwrap_err()
        .to_string();
    assert_parts(
        &e,
        &[&reference2, &format!("blob {config_digest}"), "hashes to"],
    );
}

#[test]
fn ingest_faults_manifest_names_a_missing_blob() {
    let (_tmp, reg) = pushed();
    let mut o = options();
    o.insecure_registries = vec![reg.addr()];
    let reference = format!("{}/team/app:v1", reg.addr());
    let src = open(&reference, &o);
    let img = src.resolve(&amd64()).unwrap();
    let gone = img.layers[1].clone();
    std::fs::remove_file(reg.blob_data(&gone.digest.hex)).unwrap();
    let e = read_err(&*src, &gone);
    assert_parts(
        &e,
        &[
            &reference,
            &format!("blobs/{}", gone.digest),
            "HTTP 404",
            "BLOB_UNKNOWN",
        ],
    );
    // The config gone: the image does not resolve.
    let config = serde_json::from_slice::<lazyroot::ingest::media::Manifest>(&img.manifest_bytes)
        .unwrap()
        .config;
    std::fs::remove_file(reg.blob_data(&config.digest.hex)).unwrap();
    let e = src.resolve(&amd64()).unwrap_err().to_string();
    assert_parts(
        &e,
        &[&reference, &format!("blobs/{}", config.digest), "HTTP 404"],
    );
}

#[test]
fn ingest_faults_token_service_down() {
    // A registry whose token realm is a port nobody listens on.
    let dead = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new(); // any certificate will do as the (unused) bundle
    let realm = format!("http://127.0.0.1:{dead}/token");
    let reg = Registry::start(RegistryAuth::Token(&realm, "svc", "iss", &ca.ca));
    let mut o = options();
    o.insecure_registries = vec!["127.0.0.1".into()];
    o.retries = 1;
    let reference = format!("{}/team/app:v1", reg.addr());
    let t0 = Instant::now();
    let e = open(&reference, &o)
        .resolve(&amd64())
        .unwrap_err()
        .to_string();
    assert_parts(
        &e,
        &[
            &reference,
            "manifests/v1",
            "token service",
            &realm,
            "cannot connect",
            "refused",
        ],
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    drop(tmp);
}

#[test]
fn ingest_faults_bad_references_and_layouts() {
    for (bad, parts) in [
        (
            "127.0.0.1:5000/Team/App:v1",
            &["\"127.0.0.1:5000/Team/App:v1\"", "\"Team\"", "lowercase"][..],
        ),
        ("team/app:v1!", &["\"team/app:v1!\"", "tag"][..]),
        ("team/app@sha256:12", &["sha256:12", "hex digits"][..]),
    ] {
        let e = Reference::parse(bad).unwrap_err().to_string();
        assert_parts(&e, parts);
    }
    let open_err = |r: &str| match source::open(&Reference::parse(r).unwrap(), &options()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{r} opened"),
    };
    let e = open_err("oci:/nonexistent/layout:v1");
    assert_parts(
        &e,
        &[
            "oci:/nonexistent/layout:v1",
            "/nonexistent/layout",
            "No such file",
        ],
    );

    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    three_layers(&layout, "v1");
    let e = open_err(&format!("oci:{}:v2", layout.display()));
    assert_parts(&e, &["no image is named \"v2\"", "v1"]);
    let src = open(&format!("oci:{}:v1", layout.display()), &options());
    let img = src.resolve(&amd64()).unwrap();
    // A blob path that is a symlink out of the layout is refused.
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, b"not a layer").unwrap();
    let victim = layout.join("blobs/sha256").join(&img.layers[0].digest.hex);
    std::fs::remove_file(&victim).unwrap();
    std::os::unix::fs::symlink(&outside, &victim).unwrap();
    let e = read_err(&*src, &img.layers[0]);
    assert_parts(
        &e,
        &[
            &img.layers[0].digest.to_string(),
            "symlink leading out of the layout",
        ],
    );
    // A blob whose bytes changed is caught while it streams.
    let other = layout.join("blobs/sha256").join(&img.layers[1].digest.hex);
    let mut bytes = std::fs::read(&other).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&other, bytes).unwrap();
    let e = read_err(&*src, &img.layers[1]);
    assert_parts(&e, &[&img.layers[1].digest.to_string(), "hashes to"]);
    // No oci-layout file: not a layout.
    std::fs::remove_file(layout.join("oci-layout")).unwrap();
    let e = open_err(&format!("oci:{}:v1", layout.display()));
    assert_parts(&e, &["not an OCI image layout", "oci-layout"]);
}
