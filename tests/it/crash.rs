//! A publisher killed with SIGKILL in the middle of its work: the previous revision still
//! verifies and reads, the lock is free again, and the next publish succeeds.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn object_count(repo: &std::path::Path) -> usize {
    object_names(repo).len()
}

#[test]
fn killed_publisher_leaves_previous_revision_intact() {
    let repo = TestRepo::new();
    let small = tempfile::tempdir().unwrap();
    write(&small.path().join("etc/motd"), b"before\n");
    repo.publish(small.path());
    let before = repo.listing();

    // Enough incompressible data that the publish is still writing objects when killed.
    let big = tempfile::tempdir().unwrap();
    for i in 0..64 {
        write(&big.path().join(format!("d/f{i}")), &noise(i, 3 << 20));
    }
    let objects_before = object_count(&repo.repo);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lazyroot"))
        .args(["publish", big.path().to_str().unwrap(), "--repo"])
        .arg(&repo.repo)
        .arg("--keys")
        .arg(&repo.keys)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until it has written new objects, then kill it mid-way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while object_count(&repo.repo) < objects_before + 3 && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the publisher was killed before it finished"
    );

    assert_eq!(
        repo.listing(),
        before,
        "the previous revision is what readers see"
    );
    repo.assert_healthy();
    let txn: Vec<_> = std::fs::read_dir(repo.repo.join("data/txn"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        txn,
        vec![std::ffi::OsString::from("publish.lock")],
        "no temporary files left behind"
    );
    // The lock died with the process; publishing works and keeps what was already uploaded.
    let r = repo.publish(big.path());
    assert_eq!(r.files_read, 64);
    repo.assert_healthy();
}
