//! A plain `lazyroot mount` killed, upgraded, left alone, and its keeper killed, while a
//! reader reads a chunked file and walks a tree through it the whole time.

use std::time::{Duration, Instant};

use super::harness::*;

/// Kill the daemon 50 times at moments spread over the reader's work: the reads stay
/// byte-exact and never fail; the largest stall per restart is printed.
#[test]
fn a_mount_survives_50_sigkills_with_every_read_byte_exact() {
    let fx = Fixture::new();
    let keeper = Keeper::start(Duration::from_secs(60));
    let args = fx.args(&keeper);
    let (mut child, _) = daemon(&args);
    let mut reader = Reader::start(&fx.mountpoint(), &fx.src);
    let mut stalls = Vec::new();
    let mut kills = Vec::new();
    for i in 0..50u64 {
        // 10–150 ms into the reader's work: mid-read, mid-walk, mid-open.
        std::thread::sleep(Duration::from_millis(10 + (i * 37) % 140));
        let killed = now();
        kill(&mut child);
        kills.push(killed);
        let (next, line) = daemon(&args);
        assert!(line.contains("took over"), "restart {i}: {line}");
        child = next;
        std::thread::sleep(Duration::from_millis(100));
        stalls.push(reader.stall(killed, now()));
    }
    std::thread::sleep(Duration::from_millis(300));
    let rounds = reader.stop();
    let failures = reader.failures();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    // An open the dead daemon had written down but not answered is answered, when the
    // kernel sends it again, with that same handle: no handle is left that nobody holds.
    let log = std::fs::read_to_string(log_of(&args)).unwrap();
    let open: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split(" inodes, ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(open.len(), 50, "every restart took over");
    let most = *open.iter().max().unwrap();
    assert!(
        most <= 4,
        "open handles taken over grew to {most}: {open:?}"
    );
    // The kills must land on calls under way, not between them.
    let hit = kills.iter().filter(|&&k| reader.in_flight(k)).count();
    assert!(
        hit >= 10,
        "only {hit} of 50 kills came while a call was under way"
    );
    let (median, max) = median_max(stalls);
    println!(
        "50 SIGKILLs of lazyroot mount: {rounds} reader rounds, none failed, {hit} kills mid-call; stall per restart median {} ms, max {} ms",
        median.as_millis(),
        max.as_millis()
    );
    assert_eq!(mounts_at(&fx.mountpoint()), 1);
    let st = term(&mut child);
    assert!(st.success(), "{st}");
    assert_eq!(mounts_at(&fx.mountpoint()), 0, "SIGTERM unmounts");
    assert!(
        !keeper.list().contains("mnt"),
        "released: {}",
        keeper.list()
    );
}

/// SIGUSR2 starts the binary again; the old daemon hands the connection over once the new
/// one is ready and exits. Five upgrades under the reader: nothing fails.
#[test]
fn sigusr2_upgrades_in_place_while_the_mount_is_read() {
    let fx = Fixture::new();
    let keeper = Keeper::start(Duration::from_secs(60));
    let args = fx.args(&keeper);
    let (mut first, _) = daemon(&args);
    let mut reader = Reader::start(&fx.mountpoint(), &fx.src);
    let mut pauses = Vec::new();
    let mut pid = first.id();
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(200));
        let asked = now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGUSR2,
        )
        .unwrap();
        // The old one exits once the new one is ready and has the connection.
        let deadline = Instant::now() + Duration::from_secs(60);
        let next = loop {
            let now = daemons_of(&fx.mountpoint());
            if !now.contains(&pid) && now.len() == 1 {
                break now[0];
            }
            assert!(
                Instant::now() < deadline,
                "upgrade {i} did not finish: {now:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        if i == 0 {
            let st = first.wait().unwrap();
            assert!(
                st.success(),
                "the old daemon exits 0 after handing over: {st}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        pauses.push(reader.stall(asked, now()));
        pid = next;
    }
    let rounds = reader.stop();
    let failures = reader.failures();
    let log = std::fs::read_to_string(log_of(&args)).unwrap_or_default();
    assert!(failures.is_empty(), "{failures:#?}\n{log}");
    let (median, max) = median_max(pauses);
    println!(
        "5 upgrades by SIGUSR2: {rounds} reader rounds, none failed; longest operation per upgrade median {} ms, max {} ms",
        median.as_millis(),
        max.as_millis()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemons_of(&fx.mountpoint()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(mounts_at(&fx.mountpoint()), 0);
    drop(keeper);
}

/// The keeper killed while the daemon lives: the mount goes on (the daemon holds the
/// connection), the daemon starts a new keeper and deposits again, and a later SIGKILL of
/// the daemon is survived as before.
#[test]
fn the_keeper_killed_under_a_live_daemon_is_replaced_and_nothing_is_lost() {
    let fx = Fixture::new();
    let mut keeper = Keeper::start(Duration::from_secs(60));
    let args = fx.args(&keeper);
    let (mut child, _) = daemon(&args);
    let mut reader = Reader::start(&fx.mountpoint(), &fx.src);
    std::thread::sleep(Duration::from_millis(300));
    // The daemon notices within its 200 ms loop and starts one at the same socket.
    keeper.kill_and_await_successor("mnt", Duration::from_secs(20));
    kill(&mut child);
    let (mut child, line) = daemon(&args);
    assert!(line.contains("took over"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    reader.stop();
    let failures = reader.failures();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(term(&mut child).success());
}

/// No daemon comes back: after the takeover timeout the keeper aborts the connection. A
/// reader waiting on it gets an error (not a hang, no process left in D state) and the
/// mount is gone.
#[test]
fn a_connection_no_daemon_takes_over_is_aborted_after_the_timeout() {
    let fx = Fixture::new();
    let keeper = Keeper::start(Duration::from_secs(2));
    let args = fx.args(&keeper);
    let (mut child, _) = daemon(&args);
    let mnt = fx.mountpoint();
    assert!(std::fs::read(mnt.join("tree/d0/f0")).is_ok());
    kill(&mut child);
    let killed = Instant::now();
    // Nothing serves: this waits in the kernel until the keeper gives up.
    let waiting = {
        let mnt = mnt.clone();
        std::thread::spawn(move || std::fs::read(mnt.join("tree/d1/f1")).map(|_| ()))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !waiting.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the reader still hangs after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = waiting.join().unwrap();
    let after = killed.elapsed();
    let e = r.expect_err("no daemon: the read cannot succeed");
    println!(
        "no daemon: the waiting reader got \"{e}\" after {} ms",
        after.as_millis()
    );
    assert!(
        after >= Duration::from_millis(1500),
        "aborted too early: {after:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while mounts_at(&mnt) != 0 {
        assert!(
            Instant::now() < deadline,
            "the aborted mount is still listed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!keeper.list().contains("mnt"), "{}", keeper.list());
}

/// 200 kill-and-restart cycles: the keeper's descriptors, threads and memory, the mounts
/// and the journal's effect (inode numbers held) stay flat.
#[test]
fn two_hundred_restarts_leave_everything_flat() {
    let fx = Fixture::new();
    let keeper = Keeper::start(Duration::from_secs(60));
    let args = fx.args(&keeper);
    let mnt = fx.mountpoint();
    let (mut child, _) = daemon(&args);
    let mut at20 = None;
    for i in 1..=200 {
        // Each daemon serves some work: opens, reads, a walk.
        for d in 0..DIRS {
            for e in std::fs::read_dir(mnt.join(format!("tree/d{d}"))).unwrap() {
                std::fs::read(e.unwrap().path()).unwrap();
            }
        }
        kill(&mut child);
        let (next, line) = daemon(&args);
        assert!(line.contains("took over"), "cycle {i}: {line}");
        child = next;
        if i == 20 {
            at20 = Some((usage(keeper.child.id()), mounts_at(&mnt)));
        }
    }
    let (k20, m20) = at20.unwrap();
    let k200 = usage(keeper.child.id());
    let d200 = usage(child.id());
    println!(
        "200 restarts: keeper fds {} -> {}, threads {} -> {}, RSS {} -> {} KiB; mounts {} -> {}; daemon at 200: fds {}, threads {}, RSS {} KiB",
        k20.0, k200.0, k20.1, k200.1, k20.2, k200.2, m20, mounts_at(&mnt), d200.0, d200.1, d200.2
    );
    assert_flat(k20, k200);
    assert_eq!((m20, mounts_at(&mnt)), (1, 1));
    // Still byte-exact.
    assert_eq!(std::fs::read(mnt.join("big")).unwrap(), fx.big);
    assert!(term(&mut child).success());
}

/// A mount whose kernel looks up and forgets thousands of inodes over and over: the
/// journal is compacted (its memfd stays small), and a daemon killed afterwards is taken
/// over with every file still reading right.
#[test]
fn a_journal_compacted_under_churn_is_taken_over() {
    let repo = crate::common::TestRepo::new();
    let src = repo.dir.path().join("src");
    for d in 0..20 {
        for f in 0..100 {
            crate::common::write(
                &src.join(format!("many/d{d}/file-with-a-longish-name-{f}")),
                format!("{d}/{f}\n").as_bytes(),
            );
        }
    }
    repo.publish(&src);
    let server = crate::net::Server::start(&[&repo.repo]);
    let keeper = Keeper::start(Duration::from_secs(60));
    let mnt = repo.dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let key = repo.keys.join(format!("{}.pub", repo.fqrn));
    let args: Vec<String> = [
        "mount",
        &repo.fqrn,
        mnt.to_str().unwrap(),
        "--server",
        &server.url(&repo.fqrn),
        "--key",
        key.to_str().unwrap(),
        "--cache",
        repo.dir.path().join("cache").to_str().unwrap(),
        "--keeper",
        keeper.socket.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let (mut child, _) = daemon(&args);
    let journal_kib = || -> u64 {
        // The keeper's copy of the memfd: what it really takes in memory.
        for fd in std::fs::read_dir(format!("/proc/{}/fd", keeper.child.id())).unwrap() {
            let fd = fd.unwrap().path();
            let target = std::fs::read_link(&fd).unwrap_or_default();
            if target.to_string_lossy().contains("lazyroot-journal") {
                use std::os::unix::fs::MetadataExt;
                return std::fs::metadata(&fd).unwrap().blocks() / 2;
            }
        }
        panic!("the keeper holds no journal");
    };
    let mut peak = 0;
    for round in 0..150 {
        for d in 0..20 {
            for e in std::fs::read_dir(mnt.join(format!("many/d{d}"))).unwrap() {
                let _ = std::fs::metadata(e.unwrap().path()).unwrap();
            }
        }
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        if round % 10 == 9 {
            peak = peak.max(journal_kib());
        }
    }
    println!("journal under churn: at most {peak} KiB in memory over 150 rounds of 2000 lookups and forgets");
    let log = std::fs::read_to_string(log_of(&args)).unwrap_or_default();
    assert!(
        log.contains("compacted the mount's journal"),
        "never compacted:\n{log}"
    );
    // Uncompacted, 150 rounds left 40 MiB in memory (measured); compaction starts past 8 MiB.
    assert!(peak < 12 << 10, "the journal took {peak} KiB");
    kill(&mut child);
    let (mut child, line) = daemon(&args);
    assert!(line.contains("took over"), "{line}");
    for d in [0, 7, 19] {
        for f in [0, 50, 99] {
            assert_eq!(
                std::fs::read_to_string(
                    mnt.join(format!("many/d{d}/file-with-a-longish-name-{f}"))
                )
                .unwrap(),
                format!("{d}/{f}\n")
            );
        }
    }
    assert!(term(&mut child).success());
}

/// The daemon dies after writing an open down and before answering it (a failpoint): the
/// next daemon answers the kernel's resent request with that same handle, so once the file
/// is closed no handle is left open (a new handle would stay open for ever, pinning its
/// object in the cache).
#[test]
fn an_open_the_dead_daemon_never_answered_gets_its_own_handle() {
    let fx = Fixture::new();
    let keeper = Keeper::start(Duration::from_secs(60));
    let args = fx.args(&keeper);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_of(&args))
        .unwrap();
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_lazyroot"))
        .args(&args)
        .env("LAZYROOT_FAILPOINT", "die-before-open-reply")
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let line = crate::net::first_line(&mut first)
        .recv_timeout(Duration::from_secs(60))
        .unwrap();
    assert!(line.starts_with("mounted"), "{line}");
    let file = fx.mountpoint().join("tree/d3/f5");
    // This open kills the daemon; it completes once the next one serves.
    let opener = std::thread::spawn(move || std::fs::read_to_string(file));
    let st = first.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );
    let (mut second, line) = daemon(&args);
    assert!(line.contains("took over"), "{line}");
    assert_eq!(opener.join().unwrap().unwrap(), "file 3/5\n");
    // Closed now: a third daemon finds no open handle.
    std::thread::sleep(Duration::from_millis(200));
    kill(&mut second);
    let (mut third, _) = daemon(&args);
    let log = std::fs::read_to_string(log_of(&args)).unwrap();
    let last = log
        .lines()
        .rfind(|l| l.contains(" inodes, "))
        .unwrap()
        .to_string();
    assert!(last.contains(" 0 open files"), "{last}");
    assert!(term(&mut third).success());
}
