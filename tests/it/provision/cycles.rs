//! 200 prepare → pin → unpin (→ release) cycles: no mounts, descriptors, threads or memory
//! left behind. With a grace time of 0 an image goes with its last pin, so every cycle
//! mounts and unmounts for real.

use super::harness::*;

#[test]
fn two_hundred_cycles_leave_nothing_behind() {
    const CYCLES: usize = 200;
    const WARMUP: usize = 10;
    let w = World::new(0);
    let pid = w.daemon.as_ref().unwrap().pid();
    let cycle = |i: usize| {
        let img = w.prepare("").unwrap();
        let container = format!("cycle-{i}");
        w.pin(&container, &img.id).unwrap();
        assert_eq!(
            std::fs::read_to_string(std::path::Path::new(&img.rootfs).join("etc/version")).unwrap(),
            "v1\n"
        );
        assert!(w.unpin(&container));
    };
    for i in 0..WARMUP {
        cycle(i);
    }
    // Threads come and go with the runtime's blocking pool (its idle threads linger 10 s);
    // with nothing mounted there can be no more than main, the workers, the pool and the
    // one repository's download runtime. A leak adds threads with every cycle.
    let ceiling = 1
        + lazyroot::provisioner::run::WORKERS
        + lazyroot::provisioner::run::BLOCKING
        + lazyroot::remote::download::RUNTIME_THREADS;
    // An unmounted image's session threads end shortly after the kernel closes the channel
    // (later on a loaded machine): a leak is a thread that stays, so each sample waits up to
    // 10 s for the count to settle.
    let settled = || {
        let t0 = std::time::Instant::now();
        loop {
            let f = footprint(pid);
            if f.threads <= ceiling || t0.elapsed() > std::time::Duration::from_secs(10) {
                return f;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let mut seen = vec![settled()];
    for half in 0..2 {
        for i in 0..CYCLES / 2 {
            cycle(WARMUP + half * CYCLES / 2 + i);
        }
        seen.push(settled());
    }
    for (n, f) in [WARMUP, WARMUP + CYCLES / 2, WARMUP + CYCLES]
        .iter()
        .zip(&seen)
    {
        println!(
            "after {n:3} cycles: {} descriptors and {} sockets, {} threads, {} KiB resident",
            f.files, f.sockets, f.threads, f.rss_kib
        );
    }
    assert_eq!(w.image_mounts(), 0, "mounts left");
    assert_eq!(w.appc_entries(), 0, "appc entries left");
    assert_eq!(w.client().list().unwrap().images.len(), 0);
    assert!(
        seen.iter().all(|s| s.files == seen[0].files),
        "file descriptors leaked: {seen:?}"
    );
    // Sockets: the downloader's pooled connections to the server open and close with its
    // idle timeouts; a leak would add one per cycle, a hundred per half.
    assert!(
        seen[2].sockets <= seen[0].sockets + 4,
        "sockets leaked: {seen:?}"
    );
    assert!(seen[2].threads <= ceiling, "threads leaked: {seen:?}");
    // The allocator settles in the first half (arenas of pool threads); a leak keeps
    // growing in the second. Even 20 KiB a cycle would show here.
    assert!(
        seen[2].rss_kib < seen[1].rss_kib + 2 * 1024,
        "resident memory grew in the second half: {seen:?}"
    );
}
