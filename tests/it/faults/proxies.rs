//! Squid between client and server: hits, and a proxy that is down.

use super::*;

// --- g. Proxies ----------------------------------------------------------------------------

#[test]
fn squid_serves_the_second_client_from_its_cache() {
    let fx = fixture();
    let d = fx.dir();
    let server = Server::start(&[&fx.repo.repo]);
    let squid = Squid::start();
    let proxy = format!("http://127.0.0.1:{}", squid.port);
    // Two clients with caches of their own: the second can only get its bytes from squid
    // (or the server).
    for i in 1..=2 {
        let mnt = d.join(format!("mnt{i}"));
        let m = fx
            .mount(
                &server.url(FQRN),
                &d.join(format!("cache{i}")),
                &mnt,
                &["--proxy", &proxy],
            )
            .unwrap();
        assert_bytes(
            &read_mounted(mnt.join(BIG)).unwrap(),
            &fx.big,
            &format!("client {i}"),
        );
        assert!(m.stop().success());
    }
    let obj = fx.file_object(BIG);
    // squid writes its log asynchronously: wait for both lines, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let log = squid.access_log();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains(&obj))
            .map(String::from)
            .collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        lines.len(),
        2,
        "two requests for {obj} through squid: {lines:#?}"
    );
    assert!(
        lines[0].contains("MISS"),
        "the first is a miss: {}",
        lines[0]
    );
    assert!(
        lines[1].contains("TCP_MEM_HIT") || lines[1].contains("TCP_HIT"),
        "the second is a hit: {}",
        lines[1]
    );
}

#[test]
fn dead_proxy_fails_over_to_direct() {
    let fx = fixture();
    let d = fx.dir();
    let server = Server::start(&[&fx.repo.repo]);
    let dead = free_port();
    let chain = format!("http://127.0.0.1:{dead};DIRECT");
    let mnt = d.join("mnt");
    let t0 = Instant::now();
    let m = fx
        .mount(
            &server.url(FQRN),
            &d.join("cache"),
            &mnt,
            &["--proxy", &chain],
        )
        .unwrap();
    assert_bytes(
        &read_mounted(mnt.join(BIG)).unwrap(),
        &fx.big,
        "through DIRECT",
    );
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    assert!(m.stop().success());
}

#[test]
fn only_a_dead_proxy_fails_naming_it() {
    let fx = fixture();
    let d = fx.dir();
    let server = Server::start(&[&fx.repo.repo]);
    let dead = free_port();
    let proxy = format!("http://127.0.0.1:{dead}");
    let mnt = d.join("mnt");
    let t0 = Instant::now();
    match fx.mount(
        &server.url(FQRN),
        &d.join("cache"),
        &mnt,
        &["--proxy", &proxy],
    ) {
        Ok(_) => panic!("mounted through a proxy nobody listens on"),
        Err(e) => assert!(
            e.contains(&format!("127.0.0.1:{dead}")),
            "names the proxy: {e}"
        ),
    }
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    assert!(!is_mounted(&mnt));
}
