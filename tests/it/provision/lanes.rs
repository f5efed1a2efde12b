//! Pins and unpins never wait for prepares: eight prepares hung on a server that never
//! answers, while 200 pins and unpins (the agent module's path) are answered.

use std::time::{Duration, Instant};

use super::harness::*;
use crate::faulty::Fault;

#[test]
fn pins_and_unpins_are_answered_while_prepares_hang() {
    const HUNG: usize = 8;
    const CALLS: usize = 100; // pin + unpin each: 200 calls
                              // Each download attempt against the hung server lasts the 5 s low-speed window.
    let w = World::with_faults_and_timeout(600, 5);
    let img = w.prepare("").unwrap();
    let faulty = w.faulty.as_ref().unwrap();
    faulty.set(Fault::Hang, |_| true);
    let control = w.work.join("control.sock");
    let started = Instant::now();
    let hung: Vec<_> = (0..HUNG)
        .map(|i| {
            let c = lazyroot::provisioner::control_client::ControlClient::new(&control);
            let fqrn = w.repo.fqrn.clone();
            std::thread::spawn(move || {
                // Distinct paths: eight independent prepares, not one shared mount.
                let _ = c.prepare(&lazyroot::provisioner::api::PrepareImageRequest {
                    fqrn,
                    path: format!("/images/hung-{i}"),
                    root_hash: String::new(),
                    tag: String::new(),
                });
                started.elapsed()
            })
        })
        .collect();
    // Let the prepares reach the server.
    let t0 = Instant::now();
    while faulty.requests() < HUNG as u64 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut slowest = Duration::ZERO;
    for i in 0..CALLS {
        let t = Instant::now();
        w.pin(&format!("c-{i}"), &img.id).unwrap();
        assert!(w.unpin(&format!("c-{i}")));
        slowest = slowest.max(t.elapsed());
    }
    let pins_done = started.elapsed();
    let first_prepare_done = hung.into_iter().map(|h| h.join().unwrap()).min().unwrap();
    println!(
        "{} pins and unpins in {:.0} ms (slowest pair {:.1} ms) while {HUNG} prepares hung; the first prepare gave up after {:.1} s",
        2 * CALLS,
        pins_done.as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3,
        first_prepare_done.as_secs_f64()
    );
    assert!(
        pins_done < first_prepare_done,
        "the pins waited for the hung prepares ({pins_done:?} against {first_prepare_done:?})"
    );
}
