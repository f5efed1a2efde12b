//! A real root filesystem (busybox-static from Debian) published, served over HTTP, mounted
//! lazily, and used as a container root: with `unshare` + `chroot`, and with `runc` from an
//! OCI bundle whose root is the mount, as root and as an unprivileged uid.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::net::*;

/// A minimal rootfs: busybox and the directories a runtime mounts onto.
fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("busybox-static must be installed");
    for applet in ["sh", "echo", "id", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    write(
        &dir.join("etc/passwd"),
        b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    );
}

/// Fields drop in order: unmount and stop the server first, then remove the directories.
struct Served {
    m: Mounted,
    repo: TestRepo,
}

fn mounted_busybox() -> Served {
    let repo = TestRepo::new();
    let src = repo.dir.path().join("rootfs");
    busybox_rootfs(&src);
    repo.publish_at(&src, "/images/busybox");
    // Containers run as other uids: allow_other.
    let m = serve_and_mount(&repo, "mnt", &["--allow-other"]);
    // The directory above the mount must be traversable by the unprivileged uid.
    std::fs::set_permissions(
        repo.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    Served { m, repo }
}

pub fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn chroot_as_root_and_as_nobody() {
    let s = mounted_busybox();
    let root = s.m.mount.dir.join("images/busybox");
    let out = run(Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "chroot"])
        .arg(&root)
        .args(["/bin/sh", "-c", "echo hello; id -u"]));
    assert_eq!(out, "hello\n0\n");
    let out = run(Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "chroot",
            "--userspec=65534:65534",
        ])
        .arg(&root)
        .args(["/bin/sh", "-c", "echo hello; id -u"]));
    assert_eq!(out, "hello\n65534\n");
    drop(s.repo);
}

pub fn runc_bundle(dir: &Path, rootfs: &Path, uid: u32) {
    std::fs::create_dir_all(dir).unwrap();
    run(Command::new("runc").arg("spec").current_dir(dir));
    let path = dir.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "echo hello; id -u"]);
    spec["process"]["user"] = serde_json::json!({"uid": uid, "gid": uid});
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
}

#[test]
fn runc_runs_from_the_mount_as_root_and_as_nobody() {
    let s = mounted_busybox();
    let rootfs = s.m.mount.dir.join("images/busybox");
    let state = s.repo.dir.path().join("runc-state");
    for (i, uid) in [0u32, 65534].into_iter().enumerate() {
        let bundle = s.repo.dir.path().join(format!("bundle{i}"));
        runc_bundle(&bundle, &rootfs, uid);
        let id = format!("lazyroot-test-{}-{i}", std::process::id());
        let out = run(Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id));
        assert_eq!(out, format!("hello\n{uid}\n"));
    }
}
