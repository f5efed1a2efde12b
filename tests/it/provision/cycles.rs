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
    let mut seen = vec![footprint(pid)];
    for half in 0..2 {
        for i in 0..CYCLES / 2 {
            cycle(WARMUP + half * CYCLES / 2 + i);
        }
        seen.push(footprint(pid));
    }
    for (n, (fds, threads, rss)) in [WARMUP, WARMUP + CYCLES / 2, WARMUP + CYCLES]
        .iter()
        .zip(&seen)
    {
        println!("after {n:3} cycles: {fds} fds, {threads} threads, {rss} KiB resident");
    }
    assert_eq!(w.image_mounts(), 0, "mounts left");
    assert_eq!(w.appc_entries(), 0, "appc entries left");
    assert_eq!(w.client().list().unwrap().images.len(), 0);
    assert!(
        seen.iter().all(|s| s.0 == seen[0].0),
        "file descriptors leaked: {seen:?}"
    );
    // Threads come and go with the runtime's blocking pool; with nothing mounted there
    // can be no more than main, the workers and the pool.
    let ceiling = 1 + lazyroot::provisioner::run::WORKERS + lazyroot::provisioner::run::BLOCKING;
    assert!(seen[2].1 <= ceiling, "threads leaked: {seen:?}");
    // The allocator settles in the first half (arenas of pool threads); a leak keeps
    // growing in the second. Even 20 KiB a cycle would show here.
    assert!(
        seen[2].2 < seen[1].2 + 2 * 1024,
        "resident memory grew in the second half: {seen:?}"
    );
}
