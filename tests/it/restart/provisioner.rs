//! The provisioner with a keeper, under a task running under runc on one of its images:
//! SIGKILLed 50 times and restarted each time, upgraded in place, its keeper killed. The
//! task never fails and its image is mounted once, at the same path, throughout.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::harness::Keeper;
use crate::provision::harness::*;

/// A world whose daemon runs with a keeper, an image prepared and pinned, and a task under
/// runc reading and listing through it `rounds` times, 20 ms apart (each failure said).
fn world_with_a_task(rounds: u32) -> (World, Keeper, lazyroot::provisioner::api::Image, Child) {
    world_with_a_task_and_keeper(rounds, Duration::from_secs(60))
}

/// The same with a keeper that aborts what no daemon takes over within `timeout`.
fn world_with_a_task_and_keeper(
    rounds: u32,
    timeout: Duration,
) -> (World, Keeper, lazyroot::provisioner::api::Image, Child) {
    let mut w = World::new(600);
    assert!(w.daemon.as_mut().unwrap().stop().success());
    let keeper = Keeper::start(timeout);
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&w.config).unwrap()).unwrap();
    c["keeper_socket"] = keeper.socket.display().to_string().into();
    std::fs::write(&w.config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    w.daemon = Some(Daemon::start(&w.config).unwrap_or_else(|e| panic!("{e}")));
    let img = w.prepare("").unwrap();
    w.pin("reader", &img.id).unwrap();

    let scratch = w.repo.dir.path().join("runc");
    let state = scratch.join("state");
    let b = scratch.join("bundle");
    // Reads and lists through the image the whole time; every failure is said.
    bundle(
        &b,
        Path::new(&img.rootfs),
        true,
        &[
            "/bin/sh",
            "-c",
            &format!(
                "i=0; while [ $i -lt {rounds} ]; do v=$(cat /etc/version) || echo FAIL-read; \
                 [ \"$v\" = v1 ] || echo \"FAIL-bytes $v\"; ls /bin > /dev/null || echo FAIL-list; \
                 i=$((i+1)); sleep 0.02; done; echo done $i"
            ),
        ],
    );
    let task = runc(&state, &b, "reader")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (w, keeper, img, task)
}

/// The task ended well: every one of its `rounds` read the right bytes and listed.
fn assert_task_ok(task: Child, rounds: u32) {
    let out = task.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && !stdout.contains("FAIL")
            && stdout.contains(&format!("done {rounds}")),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_task_under_runc_survives_50_sigkills_of_the_provisioner() {
    let (mut w, keeper, img, task) = world_with_a_task(1500);
    for i in 0..50 {
        std::thread::sleep(Duration::from_millis(100 + (i * 37) % 200));
        // The kernel forgets the image's dentries: the task's next lookups reach a daemon.
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        crash(w.daemon.take());
        w.daemon = Some(Daemon::start(&w.config).unwrap_or_else(|e| panic!("restart {i}: {e}")));
        assert_eq!(
            w.image_mounts(),
            1,
            "restart {i}: taken over, not mounted again"
        );
    }
    assert_task_ok(task, 1500);
    let list = w.client().list().unwrap();
    assert_eq!(list.images.len(), 1);
    assert_eq!(list.images[0].rootfs, img.rootfs);
    println!("50 SIGKILLs of the provisioner under a runc task: 1500 rounds, none failed");
    // A clean stop unmounts and lets the keeper go.
    assert!(w.daemon.as_mut().unwrap().stop().success());
    assert_eq!(w.image_mounts(), 0);
    assert!(!keeper.list().contains("images"), "{}", keeper.list());
}

/// `lazyroot provisioner --upgrade`, three times under the task: each new daemon takes
/// every mount over, the old one exits, the task never fails.
#[test]
fn provisioner_upgrade_hands_every_image_over_under_a_runc_task() {
    let (mut w, keeper, img, task) = world_with_a_task(300);
    let mut pids = vec![w.daemon.as_ref().unwrap().pid()];
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        let started = Instant::now();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_lazyroot"))
            .args(["provisioner", "--upgrade", "--config"])
            .arg(&w.config)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "upgrade {i}: {said}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let new: i32 = said.trim().rsplit(' ').next().unwrap().parse().unwrap();
        println!(
            "upgrade {i}: pid {} -> {new} in {} ms",
            pids.last().unwrap(),
            started.elapsed().as_millis()
        );
        assert!(!pids.contains(&new));
        pids.push(new);
        assert_eq!(
            w.image_mounts(),
            1,
            "upgrade {i}: handed over, not mounted again"
        );
    }
    // The first daemon (our child) exited cleanly after handing over.
    let mut first = w.daemon.take().unwrap();
    assert!(first.stop().success());
    assert_task_ok(task, 300);
    let list = w.client().list().unwrap();
    assert_eq!(list.images[0].rootfs, img.rootfs);
    assert_eq!(list.images[0].pinned_by, vec!["reader".to_string()]);
    // The last one stops cleanly: images unmounted, the keeper holds nothing.
    let last = nix::unistd::Pid::from_raw(*pids.last().unwrap());
    nix::sys::signal::kill(last, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{last}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(w.image_mounts(), 0);
    assert!(!keeper.list().contains("images"), "{}", keeper.list());
}

/// The keeper SIGKILLed under a live provisioner: the daemon starts a new one within its
/// 2 s watch and gives it every mount, so a SIGKILL of the daemon after that is survived as
/// before; the task never fails.
#[test]
fn the_keeper_killed_under_the_provisioner_is_replaced_and_a_later_crash_survived() {
    let (mut w, mut keeper, img, task) = world_with_a_task(300);
    std::thread::sleep(Duration::from_millis(300));
    keeper.kill_and_await_successor("images", Duration::from_secs(30));
    crash(w.daemon.take());
    w.daemon = Some(Daemon::start(&w.config).unwrap_or_else(|e| panic!("restart: {e}")));
    assert_eq!(
        w.image_mounts(),
        1,
        "taken over from the new keeper, not mounted again"
    );
    assert_task_ok(task, 300);
    assert_eq!(w.client().list().unwrap().images[0].rootfs, img.rootfs);
    assert!(w.daemon.as_mut().unwrap().stop().success());
    assert_eq!(w.image_mounts(), 0);
}

/// SIGKILL the daemon `d` (a crash) and reap it.
fn crash(d: Option<Daemon>) {
    let mut d = d.unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = d.stop();
}

/// The daemon killed and never started again: after the keeper's timeout the task's calls
/// fail (they do not hang), the image's mount is gone; a daemon started later mounts the
/// image anew and serves it.
#[test]
fn a_provisioner_that_never_comes_back_has_its_mounts_aborted_in_bounded_time() {
    let (mut w, keeper, img, task) = world_with_a_task_and_keeper(400, Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(300));
    crash(w.daemon.take());
    let killed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.image_mounts() != 0 {
        assert!(
            Instant::now() < deadline,
            "the orphaned mount is still there after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = killed.elapsed();
    println!(
        "no provisioner: its image's mount was aborted after {} ms",
        gone.as_millis()
    );
    assert!(
        gone >= Duration::from_millis(1500),
        "aborted before the timeout: {gone:?}"
    );
    // The task fails (its root is gone) rather than hanging: it ends.
    let out = task.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL") || !out.status.success(), "{stdout}");
    assert!(!keeper.list().contains("images"), "{}", keeper.list());
    w.daemon = Some(Daemon::start(&w.config).unwrap_or_else(|e| panic!("restart: {e}")));
    assert_eq!(w.image_mounts(), 1);
    assert_eq!(
        std::fs::read_to_string(Path::new(&img.rootfs).join("etc/version")).unwrap(),
        "v1\n"
    );
}

/// 200 crash-and-restart cycles of the provisioner with a pinned image: the keeper's
/// descriptors, threads and memory, and the mounts, stay flat; the image still reads.
#[test]
fn two_hundred_provisioner_restarts_leave_everything_flat() {
    let (mut w, keeper, img, task) = world_with_a_task(100);
    assert_task_ok(task, 100);
    let version = Path::new(&img.rootfs).join("etc/version");
    let mut at20 = None;
    for i in 1..=200 {
        assert_eq!(
            std::fs::read_to_string(&version).unwrap(),
            "v1\n",
            "cycle {i}"
        );
        crash(w.daemon.take());
        w.daemon = Some(Daemon::start(&w.config).unwrap_or_else(|e| panic!("cycle {i}: {e}")));
        if i == 20 {
            at20 = Some((super::harness::usage(keeper.child.id()), w.image_mounts()));
        }
    }
    let (k20, m20) = at20.unwrap();
    let k200 = super::harness::usage(keeper.child.id());
    println!(
        "200 provisioner restarts: keeper fds {} -> {}, threads {} -> {}, RSS {} -> {} KiB; image mounts {} -> {}",
        k20.0, k200.0, k20.1, k200.1, k20.2, k200.2, m20, w.image_mounts()
    );
    super::harness::assert_flat(k20, k200);
    assert_eq!((m20, w.image_mounts()), (1, 1));
    assert_eq!(std::fs::read_to_string(&version).unwrap(), "v1\n");
    assert!(w.daemon.as_mut().unwrap().stop().success());
}
