//! The Mesos module's daemon client (C++, isolator/client, no Mesos headers) against the
//! real daemon: built with g++ here, driven through its command-line program, which makes
//! the same calls the isolator makes in prepare(), cleanup() and recover().

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::harness::*;

/// Builds the client once per test run.
fn client_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("isolator");
            let out = Command::new("make")
                .arg("-C")
                .arg(&dir)
                .arg("all")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "make -C isolator: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            dir.join("build/lazyroot-isolator-client")
        })
        .clone()
}

fn client(socket: &Path, args: &[&str]) -> Output {
    Command::new(client_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn failed(o: Output) -> String {
    assert_eq!(o.status.code(), Some(1), "expected a failure, got {o:?}");
    String::from_utf8(o.stderr).unwrap()
}

#[test]
fn the_modules_client_prepares_pins_syncs_and_unpins() {
    let w = World::new(600);
    let socket = w.work.join("control.sock");
    assert!(ok(client(&socket, &["health"])).starts_with("ok images=0 pins=0"));
    let line = ok(client(
        &socket,
        &["prepare", &w.repo.fqrn, "/images/busybox"],
    ));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (id, rootfs) = (fields[0], fields[1]);
    assert!(id.starts_with("sha512-"), "{line}");
    assert_eq!(
        std::fs::read_to_string(Path::new(rootfs).join("etc/version")).unwrap(),
        "v1\n"
    );
    // prepare(): pin; a second container on the same image; cleanup() of one.
    assert!(ok(client(&socket, &["pin", "mesos-c1", id])).contains(rootfs));
    ok(client(&socket, &["pin", "mesos-c1.nested", id]));
    assert_eq!(
        ok(client(&socket, &["unpin", "mesos-c1.nested"])).trim(),
        "unpinned"
    );
    assert_eq!(
        ok(client(&socket, &["unpin", "never-seen"])).trim(),
        "not pinned"
    );
    let listed = ok(client(&socket, &["list"]));
    assert!(
        listed.contains(id) && listed.contains("mesos-c1"),
        "{listed}"
    );
    // recover(): the agent knows c2 only; c1's pin goes.
    ok(client(&socket, &["pin", "mesos-c2", id]));
    assert_eq!(
        ok(client(&socket, &["sync", "mesos-c2"])).trim(),
        "mesos-c1"
    );
    assert_eq!(w.client().list().unwrap().pins.len(), 1);
    // Errors carry the daemon's code: an image that is not lazyroot's is `not_ours`, the
    // one code the isolator treats as "launch without a pin".
    let err = failed(client(&socket, &["pin", "mesos-c3", "sha512-00"]));
    assert!(err.contains("not_ours"), "{err}");
    let err = failed(client(&socket, &["prepare", "nope.example.org", "/x"]));
    assert!(err.contains("not_found"), "{err}");
    let err = failed(client(&w.work.join("absent.sock"), &["health"]));
    assert!(err.contains("unavailable"), "{err}");
}

#[test]
fn ensure_daemon_starts_it_detached_once() {
    let mut w = World::new(600);
    let socket = w.work.join("control.sock");
    w.daemon.take().unwrap().stop();
    assert!(!socket.exists());
    let start = || {
        client(
            &socket,
            &[
                "ensure-daemon",
                "--timeout",
                "60",
                "--",
                env!("CARGO_BIN_EXE_lazyroot"),
                "provisioner",
                "--config",
                w.config.to_str().unwrap(),
            ],
        )
    };
    assert_eq!(ok(start()).trim(), "started");
    assert_eq!(ok(start()).trim(), "running");
    let health = w.client().health().unwrap();
    let pid = health.pid as i32;
    // Detached: not a child of this process (nor of the client that started it), and in a
    // session of its own (setsid), so the agent's session ending does not reach it. (The parent check
    // alone would pass for any grandchild; the session is what detaching changes.)
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<i32> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .take(4)
        .map(|f| f.parse().unwrap())
        .collect();
    let (ppid, session) = (fields[0], fields[2]);
    assert_ne!(ppid, std::process::id() as i32);
    assert_ne!(session, nix::unistd::getsid(None).unwrap().as_raw());
    // It serves: an image prepared through it, then a clean stop.
    w.prepare("").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Gone, or a zombie (its parent is whatever reaps orphans here).
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit(')').next().unwrap().split_whitespace().next() != Some("Z"))
            .unwrap_or(false)
    };
    while alive() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(w.image_mounts(), 0);
}
