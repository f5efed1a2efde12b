//! Launches as a Mesos 1.11 agent and the lazyroot module make them, replayed (no agent
//! can be installed here): the store's lookup (an entry is used while `images/<id>`
//! exists, else fetched through discovery), the backend's bind of `images/<id>/rootfs`,
//! and the module's Pin by id or by name and labels. Then what goes wrong around a launch:
//! the daemon down, a mount that died, a release racing the launch, an agent re-sync.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lazyroot::provisioner::api;
use lazyroot::provisioner::control_client::CallError;

use super::discovery::{agent_fetch, discover, store};
use super::harness::*;

fn arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else {
        std::env::consts::ARCH
    }
}

/// The module's Pin for a task that names its image by name with these labels.
fn pin_by_name(
    w: &World,
    container: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<api::Pin, CallError> {
    w.client().pin(&api::PinRequest {
        container_id: container.into(),
        appc_name: name.into(),
        appc_labels: labels
            .iter()
            .map(|(k, v)| api::AppcLabel {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
        ..Default::default()
    })
}

fn code<T: std::fmt::Debug>(r: Result<T, CallError>) -> (String, String) {
    match r {
        Err(CallError::Daemon { code, message }) => (code, message),
        other => panic!("expected a daemon error, got {other:?}"),
    }
}

/// `mount --bind`, as the bind backend does; the error text when it fails.
fn try_bind(src: &Path, dst: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dst).unwrap();
    let out = std::process::Command::new("mount")
        .arg("--bind")
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A task that names its image by name (and only the labels `mesos-execute` sends) is
/// pinned: through the entry the agent fetched, to the revision the agent got, even after
/// `latest` moved on. A name of no configured repository is not the daemon's (the module
/// launches it unpinned); a lazyroot name the daemon never served fails the launch.
#[test]
fn a_task_named_by_name_is_pinned_to_what_the_agent_fetched() {
    let w = World::new(600);
    let prefix = w.discovery_prefix();
    let name = format!("{}/images/busybox", w.repo.fqrn);
    let entry_id = agent_fetch(&prefix, &name, "latest", &store(&w)).unwrap();
    let image = w.client().list().unwrap().images.remove(0);

    let by_name = pin_by_name(&w, "mesos-a", &name, &[("os", "linux"), ("arch", arch())]).unwrap();
    assert_eq!(by_name.image_id, image.id);
    assert!(!by_name.operator_pin);
    // The task that named the entry's id (the agent's id for it) pins the same image.
    let by_entry = w.pin("mesos-b", &entry_id).unwrap();
    assert_eq!(by_entry.image_id, image.id);
    // `latest` moves: the agent keeps its entry, so a new task still runs on v1 and is
    // pinned to v1, not to what `latest` means now.
    w.publish_version("v2");
    let later = pin_by_name(
        &w,
        "mesos-c",
        &name,
        &[("version", "latest"), ("os", "linux"), ("arch", arch())],
    )
    .unwrap();
    assert_eq!(later.root_hash, image.root_hash);
    // The daemon's own entry has the root hash as its version: a task naming that is
    // pinned too.
    let by_hash = pin_by_name(
        &w,
        "mesos-d",
        &name,
        &[
            ("version", image.root_hash.as_str()),
            ("os", "linux"),
            ("arch", arch()),
        ],
    )
    .unwrap();
    assert_eq!(by_hash.image_id, image.id);

    let (k, m) = code(pin_by_name(
        &w,
        "mesos-e",
        "other.example.org/app",
        &[("os", "linux"), ("arch", arch())],
    ));
    assert_eq!(k, "not_ours", "{m}");
    let (k, m) = code(pin_by_name(&w, "mesos-e", &name, &[("arch", arch())]));
    assert_eq!(
        k, "not_ours",
        "without os Mesos's fetcher never asked the daemon: {m}"
    );
    let (k, m) = code(pin_by_name(
        &w,
        "mesos-e",
        &name,
        &[("version", "v9"), ("os", "linux"), ("arch", arch())],
    ));
    assert_eq!(k, "not_found", "{m}");
    assert!(m.contains("not served"), "{m}");
    assert_eq!(w.client().list().unwrap().pins.len(), 4);
}

/// SyncPins (the module's recover) drops the pins of containers the agent forgot, never
/// an operator's (`lazyroot pin`), which stays until unpinned by hand.
#[test]
fn sync_pins_keeps_operator_pins() {
    let w = World::new(600);
    let img = w.prepare("").unwrap();
    w.pin("mesos-gone", &img.id).unwrap();
    w.pin("mesos-alive", &img.id).unwrap();
    let socket = w.work.join("control.sock");
    let out = crate::common::lazyroot(&[
        "pin",
        "--socket",
        socket.to_str().unwrap(),
        "keep-for-debugging",
        &img.id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let synced = w
        .client()
        .sync_pins(&api::SyncPinsRequest {
            container_ids: vec!["mesos-alive".into()],
        })
        .unwrap();
    assert_eq!(synced.removed, vec!["mesos-gone".to_string()]);
    let pins = w.client().list().unwrap().pins;
    let kept: Vec<(&str, bool)> = pins
        .iter()
        .map(|p| (p.container_id.as_str(), p.operator_pin))
        .collect();
    assert_eq!(kept, [("keep-for-debugging", true), ("mesos-alive", false)]);
    // An agent that knows no container at all still leaves the operator's pin.
    w.client()
        .sync_pins(&api::SyncPinsRequest::default())
        .unwrap();
    assert_eq!(w.client().list().unwrap().pins.len(), 1);
    assert!(w.unpin("keep-for-debugging"));
}

/// The daemon killed under an entry: the entry's rootfs answers an error (the dead FUSE
/// connection), never an empty directory, and the backend's bind fails. Restarted while
/// its servers fail and its cache is gone, it cannot mount the image again: its entries
/// go (the agent then asks discovery, and gets a 503 saying why), Health says degraded.
/// With the servers back, the next launch works.
#[test]
fn a_daemon_down_at_launch_never_gives_an_empty_root() {
    let mut w = World::with_faults(600);
    let prefix = w.discovery_prefix();
    let name = format!("{}/images/busybox", w.repo.fqrn);
    let id = agent_fetch(&prefix, &name, "latest", &store(&w)).unwrap();
    let entry = store(&w).join("images").join(&id);
    let own = PathBuf::from(&w.client().list().unwrap().images[0].appc_dir);

    w.daemon.take().unwrap().kill9();
    let listing = std::fs::read_dir(entry.join("rootfs"));
    assert!(
        listing.is_err(),
        "a dead daemon's entry lists as a directory"
    );
    // The bind backend's bind of a dead mount may succeed (it looks up no more than the
    // mount's root), but what Mesos does next in it, making the sandbox mount point, fails
    // on the dead connection: the launch fails, and no task runs on an empty root.
    let dst = w.repo.dir.path().join("agent/rootfs");
    if try_bind(&entry.join("rootfs"), &dst).is_ok() {
        let err = std::fs::create_dir_all(dst.join("mnt/mesos/sandbox")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
        assert!(
            std::fs::read_dir(&dst).is_err(),
            "the bound root lists as a directory"
        );
        umount(&dst);
    }

    let faulty = w.faulty.as_ref().unwrap();
    faulty.set(crate::faulty::Fault::Status(503), |_| true);
    std::fs::remove_dir_all(w.work.join("cache")).unwrap();
    w.daemon = Some(Daemon::start(&w.config).unwrap());
    assert!(!entry.exists(), "the discovered entry outlived the mount");
    assert!(!own.exists(), "the daemon's own entry outlived the mount");
    let health = w.client().health().unwrap();
    assert_eq!(health.status, "degraded", "{health:?}");
    // The agent, finding no entry, asks discovery: a clear answer while servers fail.
    let (status, body) = discover(&w.discovery_prefix(), &name, "latest").unwrap_err();
    assert_eq!(status, 503, "{body}");

    w.faulty
        .as_ref()
        .unwrap()
        .set(crate::faulty::Fault::None, |_| true);
    let again = agent_fetch(&w.discovery_prefix(), &name, "latest", &store(&w)).unwrap();
    assert_eq!(again, id, "the same ACI, so the same entry id");
    assert_eq!(
        std::fs::read_to_string(entry.join("rootfs/etc/version")).unwrap(),
        "v1\n"
    );
    assert_eq!(w.client().health().unwrap().status, "ok");
}

/// A mount that dies under a running daemon (unmounted by someone else): its entries go
/// within the watch interval and the image is mounted again, with its own entry back;
/// the agent's next launch by name fetches it again and runs on a live root.
#[test]
fn a_dead_mount_loses_its_entries_and_is_mounted_again() {
    let w = World::new(600);
    let prefix = w.discovery_prefix();
    let name = format!("{}/images/busybox", w.repo.fqrn);
    let id = agent_fetch(&prefix, &name, "latest", &store(&w)).unwrap();
    let entry = store(&w).join("images").join(&id);
    let image = w.client().list().unwrap().images.remove(0);
    let own = PathBuf::from(&image.appc_dir);

    umount(Path::new(&image.rootfs));
    wait_until(
        "the discovered entry removed",
        Duration::from_secs(20),
        || !entry.exists(),
    );
    wait_until("the image mounted again", Duration::from_secs(20), || {
        own.join("rootfs/bin/busybox").exists()
    });
    assert_eq!(w.image_mounts(), 1);
    assert_eq!(w.client().health().unwrap().status, "ok");
    let again = agent_fetch(&prefix, &name, "latest", &store(&w)).unwrap();
    assert_eq!(again, id);
    assert_eq!(
        std::fs::read_to_string(entry.join("rootfs/etc/version")).unwrap(),
        "v1\n"
    );
}

/// Launches racing releases (no grace time: an image goes when its last pin does). One
/// thread launches as the agent does (entry used if it exists, else fetched; bind; Pin by
/// name; read; unbind; Unpin), another unpins and releases. A launch either runs on a live
/// root or fails with a clear error; no bind ever shows an empty root, and nothing is left.
#[test]
fn a_release_racing_a_launch_never_gives_an_empty_root() {
    let w = World::new(0);
    let prefix = w.discovery_prefix();
    let name = format!("{}/images/busybox", w.repo.fqrn);
    let scratch = w.repo.dir.path().join("agent");
    let (mut ran, mut refused) = (0, 0);
    let mut known: Option<String> = None;
    for round in 0..25 {
        let container = format!("mesos-{round}");
        // The store's rule: the entry it has for this name is used while it exists, and
        // fetched again when it does not.
        let id = match known.take() {
            Some(id) if store(&w).join("images").join(&id).exists() => id,
            _ => agent_fetch(&prefix, &name, "latest", &store(&w))
                .unwrap_or_else(|(status, body)| panic!("discovery {status}: {body}")),
        };
        known = Some(id.clone());
        let rootfs = store(&w).join("images").join(&id).join("rootfs");
        let dst = scratch.join(&container);
        // Racing: the previous round's container stops as this one starts.
        let previous = (round > 0).then(|| format!("mesos-{}", round - 1));
        let releaser = previous.map(|c| {
            let socket = w.work.join("control.sock");
            std::thread::spawn(move || {
                lazyroot::provisioner::control_client::ControlClient::new(&socket)
                    .unpin(&api::UnpinRequest { container_id: c })
                    .unwrap()
            })
        });
        match try_bind(&rootfs, &dst) {
            Ok(()) => {
                let pinned =
                    pin_by_name(&w, &container, &name, &[("os", "linux"), ("arch", arch())]);
                let version = std::fs::read_to_string(dst.join("etc/version"));
                assert_eq!(
                    version.as_deref().ok(),
                    Some("v1\n"),
                    "round {round}: a bound root that is not the image ({version:?})"
                );
                match pinned {
                    Ok(_) => ran += 1,
                    Err(e) => {
                        // Released between the bind and the pin: the launch fails with the
                        // daemon's reason, and the bind still reads the image.
                        let (k, m) = code::<api::Pin>(Err(e));
                        assert_eq!(k, "not_found", "round {round}: {m}");
                        refused += 1;
                    }
                }
                umount(&dst);
            }
            Err(why) => {
                // The entry went between the lookup and the bind: Mesos fails the launch.
                assert!(
                    why.contains("does not exist") || why.contains("No such file"),
                    "round {round}: {why}"
                );
                refused += 1;
            }
        }
        if let Some(t) = releaser {
            t.join().unwrap();
        }
    }
    eprintln!("launches run: {ran}, refused with a reason: {refused}");
    w.unpin("mesos-24");
    wait_until("every image released", Duration::from_secs(20), || {
        w.image_mounts() == 0 && w.appc_entries() == 0
    });
}

/// Mounts under a `mount_root` reached through a symlink are listed in the mount table by
/// their resolved path: the liveness check must not take them for dead (it would remove
/// their entries every few seconds).
#[test]
fn mounts_behind_a_symlinked_root_are_not_taken_for_dead() {
    let mut w = World::new(600);
    w.daemon.take().unwrap().stop();
    let real = w.work.join("images-real");
    std::fs::create_dir_all(&real).unwrap();
    let link = w.work.join("images-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&w.config).unwrap()).unwrap();
    c["mount_root"] = link.to_str().unwrap().into();
    c["grace_secs"] = 0.into();
    std::fs::write(&w.config, serde_json::to_vec(&c).unwrap()).unwrap();
    w.daemon = Some(Daemon::start(&w.config).unwrap());
    let name = format!("{}/images/busybox", w.repo.fqrn);
    let id = agent_fetch(&w.discovery_prefix(), &name, "latest", &store(&w)).unwrap();
    w.pin("mesos-1", &id).unwrap();
    let entry = store(&w).join("images").join(&id);
    // Three checks of the mounts.
    std::thread::sleep(Duration::from_secs(7));
    assert!(entry.exists(), "a live mount's entry was removed");
    assert_eq!(w.client().health().unwrap().status, "ok");
    // Nor is the mount taken for a bind of itself: with no grace time, it goes with its
    // last pin.
    assert_eq!(mounts_under(&real), 1);
    w.unpin("mesos-1");
    assert_eq!(
        mounts_under(&real),
        0,
        "the image was kept as if bound elsewhere"
    );
    assert_eq!(w.appc_entries(), 0);
}
