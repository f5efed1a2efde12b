//! Images on demand through appc simple discovery, with the agent replayed exactly as
//! Mesos 1.11.0's appc store does it (appc/{fetcher,store,cache}.cpp, observed on a real
//! agent): one plain GET of `<prefix><name>-<version>-<os>-<arch>.aci`, the body gunzipped,
//! the id `sha512-` + SHA-512 of the tar, the tar unpacked into `<store>/staging/XXXXXX`
//! and renamed to `<store>/images/<id>`; the next launch uses `images/<id>` while it exists.
//! Then the bind backend and `network/cni`'s host files, and the task under runc.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha512};

use super::harness::*;
use crate::rootfs::run;

/// An HTTP answer: status and body.
pub(super) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One plain GET, as the agent's curl sends it (HTTP/1.1, no conditional headers).
pub(super) fn get(url: &str) -> Answer {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        body: raw[split + 4..].to_vec(),
    }
}

/// The discovery GET of `name` at `version`: the image id the agent computes and the tar,
/// or the HTTP status and body it would log.
pub(super) fn discover(
    prefix: &str,
    name: &str,
    version: &str,
) -> Result<(String, Vec<u8>), (u16, String)> {
    let arch = if cfg!(target_arch = "x86_64") {
        "amd64"
    } else {
        std::env::consts::ARCH
    };
    let a = get(&format!("{prefix}{name}-{version}-linux-{arch}.aci"));
    if a.status != 200 {
        return Err((a.status, String::from_utf8_lossy(&a.body).into_owned()));
    }
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(a.body.as_slice())
        .read_to_end(&mut tar)
        .expect("gunzip");
    let hex: String = Sha512::digest(&tar)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((format!("sha512-{hex}"), tar))
}

/// The agent's fetch into the appc store `store`: unpacked in its staging directory and
/// renamed to `images/<id>`. The id.
pub(super) fn agent_fetch(
    prefix: &str,
    name: &str,
    version: &str,
    store: &Path,
) -> Result<String, (u16, String)> {
    let (id, tar) = discover(prefix, name, version)?;
    let staging = tempfile::Builder::new()
        .tempdir_in(store.join("staging"))
        .unwrap()
        .keep();
    tar::Archive::new(tar.as_slice()).unpack(&staging).unwrap();
    std::fs::rename(&staging, store.join("images").join(&id)).unwrap();
    Ok(id)
}

pub(super) fn store(w: &World) -> PathBuf {
    w.work.join("appc")
}

/// A task names the image by name and version only; nothing was prepared on the agent.
/// The fetched entry is the image's lazy mount, a second fetch gives the same id (the
/// agent's "exists" rule then reuses it), and the task runs on the bind backend with the
/// host's files bound in as `network/cni` binds them.
#[test]
fn a_task_that_names_an_image_runs_on_it_with_nothing_prepared() {
    let w = World::new(600);
    let prefix = w.discovery_prefix();
    let name = format!("{}/images/busybox", w.repo.fqrn);
    let id = agent_fetch(&prefix, &name, "latest", &store(&w)).unwrap();
    let entry = store(&w).join("images").join(&id);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entry.join("manifest")).unwrap()).unwrap();
    assert_eq!(m["name"], name.as_str());
    let labels: Vec<(String, String)> = m["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().into(),
                l["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        labels.len(),
        3,
        "exactly what the agent asked with: {labels:?}"
    );
    assert!(labels.contains(&("version".into(), "latest".into())));
    let rootfs = entry.join("rootfs");
    assert!(
        rootfs.join("bin/busybox").is_file(),
        "rootfs resolves into the mount"
    );
    // Asked again (another agent, or this one after the entry went): the same bytes, so
    // the same id, which the daemon recorded as its own.
    assert_eq!(discover(&prefix, &name, "latest").unwrap().0, id);

    let scratch = w.repo.dir.path().join("agent");
    let bound = scratch.join("bind-rootfs");
    bind(&rootfs, &bound);
    for f in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        bind(&Path::new("/").join(f), &bound.join(f));
    }
    let b = scratch.join("bundle");
    bundle(&b, &bound, true, &["/bin/sh", "-c", "cat /etc/version"]);
    assert_eq!(
        run(&mut runc(&scratch.join("runc"), &b, "discovered")),
        "v1\n"
    );
    for f in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        umount(&bound.join(f));
    }
    umount(&bound);
}

/// What is no image gets an answer the agent logs: 404 naming the missing image or
/// repository, 400 for what is not a discovery request at all.
#[test]
fn unknown_names_get_answers_that_say_why() {
    let w = World::new(600);
    let prefix = w.discovery_prefix();
    let fqrn = w.repo.fqrn.clone();
    let (status, body) =
        discover(&prefix, &format!("{fqrn}/images/nothing"), "latest").unwrap_err();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("/images/nothing"), "{body}");
    let (status, body) =
        discover(&prefix, "other.example.org/images/busybox", "latest").unwrap_err();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no repository other.example.org"), "{body}");
    let (status, body) =
        discover(&prefix, &format!("{fqrn}/images/busybox"), "no-such-tag").unwrap_err();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no-such-tag"), "{body}");
    let a = get(&format!("{prefix}{fqrn}/images/busybox.tar"));
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(w.appc_entries(), 0, "nothing prepared for a miss");
}

/// Names and tags with dashes: every reading is tried, and the one that names an image
/// wins.
#[test]
fn names_and_tags_with_dashes_resolve() {
    let w = World::new(600);
    let src = w.repo.dir.path().join("src-dashed");
    bare_busybox(&src, "dashed");
    let mut o = w.repo.options(&src);
    o.path = "/images/my-box".into();
    o.tag = Some("v1-rc".into());
    lazyroot::publish::publish(&o, &lazyroot::publish::NoProgress).unwrap();
    let prefix = w.discovery_prefix();
    let name = format!("{}/images/my-box", w.repo.fqrn);
    let id = agent_fetch(&prefix, &name, "v1-rc", &store(&w)).unwrap();
    let rootfs = store(&w).join("images").join(id).join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/version")).unwrap(),
        "dashed\n"
    );
}

/// An image nobody pins is released after the grace time, its entries first: the one the
/// agent made from the discovered ACI and the daemon's own by-id entry go, then the mount.
/// The next launch would discover it again.
#[test]
fn release_removes_the_discovered_entry_with_the_image() {
    let w = World::new(1);
    let prefix = w.discovery_prefix();
    let name = format!("{}/images/busybox", w.repo.fqrn);
    let id = agent_fetch(&prefix, &name, "latest", &store(&w)).unwrap();
    let entry = store(&w).join("images").join(&id);
    assert!(entry.exists());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (entry.exists() || w.image_mounts() > 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!entry.exists(), "the discovered entry outlived its image");
    assert_eq!(w.image_mounts(), 0, "the image stays mounted");
    assert_eq!(w.appc_entries(), 0, "every entry of the image went");
}

/// Entries the daemon did not write (images the agent fetched from elsewhere) and the
/// agent's own staging directories survive a daemon restart.
#[test]
fn a_restart_never_touches_entries_it_does_not_own() {
    let mut w = World::new(600);
    let foreign = store(&w)
        .join("images")
        .join(format!("sha512-{}", "ab".repeat(64)));
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("manifest"), b"{\"acKind\":\"ImageManifest\"}").unwrap();
    let agent_staging = store(&w).join("staging").join("Xq3abc");
    std::fs::create_dir_all(&agent_staging).unwrap();
    let mine = w.prepare("").unwrap();
    w.daemon.take().unwrap().stop();
    w.daemon = Some(Daemon::start(&w.config).unwrap());
    assert!(
        foreign.join("manifest").exists(),
        "a foreign entry was removed"
    );
    assert!(
        agent_staging.exists(),
        "the agent's staging directory was removed"
    );
    assert!(Path::new(&mine.appc_dir)
        .join("rootfs/bin/busybox")
        .exists());
}
