//! What a Mesos agent does with a prepared image, done by hand: the appc entry read as its
//! appc store reads it, the rootfs bind-mounted (or overlaid) as its backends do, a task
//! run in it with runc; a version switch under a running task; a daemon killed and
//! restarted.

use std::path::Path;
use std::process::Stdio;

use super::harness::*;
use crate::rootfs::run;

/// The host files Mesos's `network/cni` isolator binds into every container's root.
const HOST_FILES: [&str; 3] = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// The appc store's view: `images/<id>/manifest` and `rootfs`.
fn read_appc_entry(img: &lazyroot::provisioner::api::Image) -> serde_json::Value {
    let dir = Path::new(&img.appc_dir);
    assert_eq!(dir.file_name().unwrap().to_str().unwrap(), img.id);
    assert!(img.id.starts_with("sha512-") && img.id.len() == 7 + 128);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest")).unwrap()).unwrap();
    assert_eq!(m["acKind"], "ImageManifest");
    assert!(m["acVersion"].is_string());
    assert_eq!(m["name"], img.appc_name);
    let rootfs = dir.join("rootfs");
    assert_eq!(std::fs::read_link(&rootfs).unwrap(), Path::new(&img.rootfs));
    assert!(
        rootfs.join("bin/busybox").is_file(),
        "rootfs resolves into the mount"
    );
    m
}

#[test]
fn bind_and_overlay_backends_run_tasks_and_versions_switch_under_a_running_task() {
    let w = World::new(600);
    let v1 = w.prepare("").unwrap();
    let m = read_appc_entry(&v1);
    let labels = m["labels"].as_array().unwrap();
    assert!(labels
        .iter()
        .any(|l| l["name"] == "version" && l["value"] == v1.root_hash.as_str()));
    // What Mesos mounts onto exists in the image although it was not published.
    let rootfs = Path::new(&v1.appc_dir).join("rootfs");
    for d in ["proc", "sys", "dev", "tmp", "mnt/mesos/sandbox"] {
        assert!(rootfs.join(d).is_dir(), "{d} missing");
    }
    // What `network/cni` binds the host's files onto (issue 11: the bind backend failed on
    // an image without /etc/hostname): empty files, since the image has none.
    for f in HOST_FILES {
        let md = std::fs::metadata(rootfs.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(md.is_file() && md.len() == 0, "{f}: {md:?}");
    }
    // The same request again is the same image.
    assert_eq!(w.prepare("").unwrap().id, v1.id);
    w.pin("task-1", &v1.id).unwrap();

    let scratch = w.repo.dir.path().join("agent");
    let state = scratch.join("runc");
    // Bind backend: read-only root.
    let bound = scratch.join("bind-rootfs");
    bind(&rootfs, &bound);
    // As `network/cni` does on a real agent: the host's files bound onto the root's.
    for f in HOST_FILES {
        bind(&Path::new("/").join(f), &bound.join(f));
    }
    let b1 = scratch.join("bundle-bind");
    bundle(
        &b1,
        &bound,
        true,
        &[
            "/bin/sh",
            "-c",
            "cat /etc/version; id -u; cat /etc/hostname",
        ],
    );
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap();
    assert_eq!(
        run(&mut runc(&state, &b1, "bind")),
        format!("v1\n0\n{hostname}")
    );
    for f in HOST_FILES {
        umount(&bound.join(f));
    }

    // Overlay backend: a writable upper layer over the lazy mount.
    let ov = scratch.join("overlay");
    for d in ["upper", "work", "rootfs"] {
        std::fs::create_dir_all(ov.join(d)).unwrap();
    }
    run(std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            rootfs.canonicalize().unwrap().display(),
            ov.join("upper").display(),
            ov.join("work").display()
        ))
        .arg(ov.join("rootfs")));
    let b2 = scratch.join("bundle-overlay");
    bundle(
        &b2,
        &ov.join("rootfs"),
        false,
        &[
            "/bin/sh",
            "-c",
            "echo changed > /etc/version; cat /etc/version",
        ],
    );
    assert_eq!(run(&mut runc(&state, &b2, "overlay")), "changed\n");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/version")).unwrap(),
        "v1\n",
        "the lower layer is untouched"
    );
    umount(&ov.join("rootfs"));

    // A long task on v1 while v2 is published and prepared: each sees its own revision.
    let b3 = scratch.join("bundle-long");
    bundle(
        &b3,
        &bound,
        true,
        &[
            "/bin/sh",
            "-c",
            "cat /etc/version; sleep 2; cat /etc/version",
        ],
    );
    let long = runc(&state, &b3, "long")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    w.publish_version("v2");
    let v2 = w.prepare("").unwrap();
    assert_ne!(v2.id, v1.id);
    assert_ne!(v2.root_hash, v1.root_hash);
    assert_ne!(v2.rootfs, v1.rootfs);
    w.pin("task-2", &v2.id).unwrap();
    let b4 = scratch.join("bundle-v2");
    bundle(
        &b4,
        Path::new(&v2.rootfs),
        true,
        &["/bin/cat", "/etc/version"],
    );
    assert_eq!(run(&mut runc(&state, &b4, "v2")), "v2\n");
    let out = long.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v1\nv1\n");
    // v1 by root hash is still v1.
    assert_eq!(w.prepare(&v1.root_hash).unwrap().id, v1.id);

    let list = w.client().list().unwrap();
    assert_eq!(list.images.len(), 2);
    assert_eq!(list.pins.len(), 2);
    umount(&bound);
}

#[test]
fn a_killed_daemon_restarts_with_the_same_images_pins_and_paths() {
    let mut w = World::new(600);
    let img = w.prepare("").unwrap();
    w.pin("survivor", &img.id).unwrap();
    w.daemon.take().unwrap().kill9();
    // The old mount is dead now; a restart must bring the image back at the same path.
    let d = Daemon::start(&w.config).unwrap_or_else(|e| panic!("restart: {e}"));
    w.daemon = Some(d);
    assert_eq!(
        std::fs::read_to_string(Path::new(&img.rootfs).join("etc/version")).unwrap(),
        "v1\n"
    );
    let list = w.client().list().unwrap();
    assert_eq!(list.images.len(), 1);
    assert_eq!(list.images[0].rootfs, img.rootfs);
    assert_eq!(list.images[0].pinned_by, vec!["survivor".to_string()]);
    read_appc_entry(&list.images[0]);
    assert_eq!(
        w.image_mounts(),
        1,
        "the dead mount was replaced, not stacked"
    );
    // A clean stop removes the appc entries, then unmounts everything, and keeps the
    // state: no entry points at an empty directory while the daemon is away.
    let st = w.daemon.as_mut().unwrap().stop();
    assert!(st.success());
    assert_eq!(w.image_mounts(), 0);
    assert_eq!(w.appc_entries(), 0, "an entry outlived the daemon's mounts");
    assert!(
        !std::path::Path::new(&img.rootfs).exists(),
        "an empty rootfs stayed"
    );
    // Started again, the daemon serves the image and writes its entry anew.
    w.daemon = Some(Daemon::start(&w.config).unwrap());
    read_appc_entry(&w.client().list().unwrap().images[0]);
}

#[test]
fn unpinned_images_are_released_after_the_grace_time_unless_still_bound() {
    let w = World::new(1);
    let img = w.prepare("").unwrap();
    w.pin("c", &img.id).unwrap();
    let bound = w.repo.dir.path().join("bound");
    bind(Path::new(&img.appc_dir).join("rootfs").as_path(), &bound);
    assert!(w.unpin("c"));
    assert!(!w.unpin("c"), "unpinning twice is fine");
    // Bound elsewhere (a container's root): kept past the grace time.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(w.client().list().unwrap().images.len(), 1);
    assert_eq!(
        std::fs::read_to_string(bound.join("etc/version")).unwrap(),
        "v1\n"
    );
    umount(&bound);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while w.client().list().unwrap().images.len() == 1 {
        assert!(std::time::Instant::now() < deadline, "never released");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(w.image_mounts(), 0);
    assert_eq!(w.appc_entries(), 0);
}

#[test]
fn a_prepare_stuck_on_a_slow_server_holds_up_no_other_call() {
    let w = World::with_faults(600);
    let v1 = w.prepare("").unwrap();
    w.publish_version("v2");
    // The image's own (nested) catalog in v2 never arrives, until the client gives up: the
    // revision resolves, and the mount hangs while it looks for the image's directory.
    let root = w.repo.open().manifest().root_catalog.to_string();
    w.faulty
        .as_ref()
        .unwrap()
        .set(crate::faulty::Fault::Hang, move |rel| {
            rel.ends_with('C') && !rel.replace('/', "").contains(&root)
        });
    let socket = w.work.join("control.sock");
    let fqrn = w.repo.fqrn.clone();
    let stuck = std::thread::spawn(move || {
        lazyroot::provisioner::control_client::ControlClient::new(&socket).prepare(
            &lazyroot::provisioner::api::PrepareImageRequest {
                fqrn,
                path: "/images/busybox".into(),
                ..Default::default()
            },
        )
    });
    // Wait until the daemon is in the middle of it: the server has a request hanging.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while w.faulty.as_ref().unwrap().faulted() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the prepare never asked for a catalog"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Meanwhile the agent's other calls are answered, while that prepare still waits.
    w.pin("busy-1", &v1.id).unwrap();
    assert!(w.client().health().is_ok());
    assert!(w.unpin("busy-1"));
    assert_eq!(w.client().list().unwrap().images.len(), 1);
    assert!(
        !stuck.is_finished(),
        "the slow prepare ended before the other calls were answered"
    );
    // It ends by itself, with an error that says what failed.
    let r = stuck.join().unwrap();
    let err = r.expect_err("a prepare whose catalogs never arrive must fail");
    assert!(
        err.to_string().contains("unavailable") || err.to_string().contains("not_found"),
        "{err}"
    );
    assert_eq!(w.image_mounts(), 1, "nothing half-mounted");
    assert_eq!(w.appc_entries(), 1);
}

#[test]
fn with_no_server_a_restarted_daemon_serves_its_images_from_the_cache() {
    let mut w = World::new(600);
    let img = w.prepare("").unwrap();
    w.pin("offline-task", &img.id).unwrap();
    let version = Path::new(&img.rootfs).join("etc/version");
    assert_eq!(std::fs::read_to_string(&version).unwrap(), "v1\n");
    // The agent reboots while the servers are down.
    w.stop_server();
    w.daemon.take().unwrap().kill9();
    w.daemon = Some(Daemon::start(&w.config).unwrap_or_else(|e| panic!("restart: {e}")));
    assert_eq!(
        std::fs::read_to_string(&version).unwrap(),
        "v1\n",
        "read before: cached"
    );
    assert_eq!(w.client().list().unwrap().pins.len(), 1);
    // What was never read cannot be had, and says so (EIO), instead of hanging.
    assert!(std::fs::read(Path::new(&img.rootfs).join("bin/busybox")).is_err());
    // The same image prepared again (by root hash) comes from the cache too.
    assert_eq!(w.prepare(&img.root_hash).unwrap().id, img.id);
}

#[test]
fn many_simultaneous_prepares_of_one_image_mount_it_once() {
    let w = World::new(600);
    let socket = w.work.join("control.sock");
    let fqrn = w.repo.fqrn.clone();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (socket, fqrn) = (socket.clone(), fqrn.clone());
                s.spawn(move || {
                    lazyroot::provisioner::control_client::ControlClient::new(&socket)
                        .prepare(&lazyroot::provisioner::api::PrepareImageRequest {
                            fqrn,
                            path: "/images/busybox".into(),
                            ..Default::default()
                        })
                        .unwrap()
                        .id
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|i| *i == ids[0]));
    assert_eq!(w.image_mounts(), 1);
    assert_eq!(w.appc_entries(), 1);
}

/// Health says what is wrong: an image whose remount failed after a restart (no server, no
/// cache) is listed with the reason, and the status is "degraded" rather than a constant
/// "ok".
#[test]
fn health_names_images_whose_remount_failed() {
    let mut w = World::new(600);
    let img = w.prepare("").unwrap();
    assert_eq!(w.client().health().unwrap().status, "ok");
    w.daemon.take().unwrap().kill9();
    w.stop_server();
    // The dead mount, then the cache: nothing left to mount the image from.
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&img.rootfs)
        .status();
    std::fs::remove_dir_all(w.work.join("cache")).unwrap();
    w.daemon = Some(Daemon::start(&w.config).unwrap());
    let h = w.client().health().unwrap();
    assert_eq!(h.status, "degraded", "{h:?}");
    // The image, and the repository whose servers failed to give it.
    assert_eq!(h.problems.len(), 2, "{h:?}");
    assert!(h.problems[0].contains(&img.id), "{h:?}");
    assert!(h.problems[0].contains("no server answered"), "{h:?}");
    assert!(h.problems[1].contains("servers are failing"), "{h:?}");
}
