//! Images in the layout `lazyroot ingest` writes (content-named flat directories, links
//! named by registry, repository and tag, metadata beside each root filesystem): prepared
//! by their name, fixed to the directory the name meant at prepare time, with the image's
//! entrypoint, environment and working directory as the appc entry's `app`.

use std::path::Path;

use lazyroot::ingest::meta::ImageMeta;
use lazyroot::ingest::names;
use lazyroot::provisioner::api;

use super::harness::*;
use crate::rootfs::run;

/// Lays out image `hex` (a busybox tree saying `version`) with its metadata and the link
/// `r.example.org/team/app:<tag>` under `root`.
fn lay_out(root: &Path, hex: &str, version: &str, tag: &str) {
    let flat = names::flat_dir("", hex);
    bare_busybox(&root.join(&flat[1..]), version);
    let meta = ImageMeta {
        source: format!("r.example.org/team/app:{tag}"),
        manifest_digest: format!("sha256:{hex}"),
        config_digest: format!("sha256:{}", "0".repeat(64)),
        platform: "linux/amd64".into(),
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        cmd: vec!["echo $GREETING from $(pwd)".into()],
        env: vec!["GREETING=hello".into(), "PATH=/bin".into()],
        working_dir: "/etc".into(),
        user: "nobody".into(),
        labels: Default::default(),
    };
    std::fs::write(root.join(&names::meta_file("", hex)[1..]), meta.to_bytes()).unwrap();
    let link = names::link_path(
        "",
        "r.example.org",
        "team/app",
        &names::Version::Tag(tag.into()),
    );
    std::fs::create_dir_all(root.join(&link[1..]).parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(root.join(&link[1..]));
    std::os::unix::fs::symlink(names::link_target(&link, &flat), root.join(&link[1..])).unwrap();
}

#[test]
fn an_ingested_image_is_prepared_by_name_and_runs_its_entrypoint() {
    let w = World::new(600);
    let src = w.repo.dir.path().join("ingested");
    let (one, two) = ("1a".repeat(32), "2b".repeat(32));
    lay_out(&src, &one, "one", "1.0");
    w.repo.publish_at(&src, "/");
    let prepare = |path: &str| {
        w.client().prepare(&api::PrepareImageRequest {
            fqrn: w.repo.fqrn.clone(),
            path: path.into(),
            ..Default::default()
        })
    };
    let img = prepare("/r.example.org/team/app:1.0").unwrap();
    assert_eq!(
        img.path,
        names::flat_dir("", &one),
        "fixed to the directory the name meant"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&img.appc_dir).join("manifest")).unwrap())
            .unwrap();
    let app = &manifest["app"];
    assert_eq!(
        app["exec"],
        serde_json::json!(["/bin/sh", "-c", "echo $GREETING from $(pwd)"])
    );
    assert_eq!(
        (app["user"].as_str(), app["group"].as_str()),
        (Some("nobody"), Some("65534"))
    );
    assert_eq!(app["workingDirectory"], "/etc");

    // What Mesos's appc/runtime does with it: exec, environment and working directory,
    // under runc on the read-only root.
    let env: Vec<String> = app["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}={}",
                e["name"].as_str().unwrap(),
                e["value"].as_str().unwrap()
            )
        })
        .collect();
    let exec: Vec<String> = app["exec"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let scratch = w.repo.dir.path().join("task");
    let b = scratch.join("bundle");
    let args: Vec<&str> = exec.iter().map(String::as_str).collect();
    bundle(&b, Path::new(&img.rootfs), true, &args);
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    spec["process"]["env"] = env.into();
    spec["process"]["cwd"] = "/etc".into();
    std::fs::write(b.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    assert_eq!(
        run(&mut runc(&scratch.join("runc"), &b, "ingested")),
        "hello from /etc\n"
    );

    // By reference, as a task or an operator names it: the same image.
    let by_ref = prepare("r.example.org/team/app:1.0").unwrap();
    assert_eq!(by_ref.id, img.id);
    let err = prepare("r.example.org/team/App:1.0")
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid_argument"), "{err}");
    // The tag moves to another image: a new prepare follows it, the first image stays.
    lay_out(&src, &two, "two", "1.0");
    w.repo.publish_at(&src, "/");
    let moved = prepare("/r.example.org/team/app:1.0").unwrap();
    assert_eq!(moved.path, names::flat_dir("", &two));
    assert_eq!(
        std::fs::read_to_string(Path::new(&img.rootfs).join("etc/version")).unwrap(),
        "one\n"
    );
    // A link out of the repository is refused by name.
    let bad = src.join("r.example.org/team/app:evil");
    std::os::unix::fs::symlink("../../../../etc", &bad).unwrap();
    w.repo.publish_at(&src, "/");
    let err = prepare("/r.example.org/team/app:evil")
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the repository"), "{err}");
    // A directory that is no ingested image mounts without an app.
    let plain = prepare("/.flat").unwrap();
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(&plain.appc_dir).join("manifest")).unwrap(),
    )
    .unwrap();
    assert!(m.get("app").is_none());
}
