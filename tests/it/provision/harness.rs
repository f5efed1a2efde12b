//! A provisioner daemon (the built binary) over a served test repository.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use lazyroot::provisioner::api;
use lazyroot::provisioner::control_client::{CallError, ControlClient};

use crate::common::*;
use crate::net::*;

/// A rootfs of busybox and `/etc/version`, without `/proc`, `/sys`, `/dev`, `/tmp` or
/// `/mnt/mesos/sandbox`: the mount must offer those itself.
pub fn bare_busybox(dir: &Path, version: &str) {
    for d in ["bin", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("busybox-static must be installed");
    for applet in ["sh", "echo", "id", "cat", "ls", "sleep", "touch"] {
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
    }
    write(&dir.join("etc/version"), format!("{version}\n").as_bytes());
    write(
        &dir.join("etc/passwd"),
        b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    );
}

/// A repository with a busybox image at /images/busybox, served over HTTP.
pub struct World {
    pub daemon: Option<Daemon>,
    /// Kept alive for the daemon (dropped after it, before the repository).
    _server: Option<Server>,
    /// The server instead, when the world was made with faults in mind.
    pub faulty: Option<crate::faulty::Faulty>,
    pub repo: TestRepo,
    pub config: PathBuf,
    pub work: PathBuf,
}

impl World {
    pub fn new(grace_secs: u64) -> World {
        Self::build(grace_secs, false, 5)
    }

    /// Served by a fault-injecting server (faultless until told otherwise).
    pub fn with_faults(grace_secs: u64) -> World {
        Self::build(grace_secs, true, 1)
    }

    /// Served by a fault-injecting server, with downloads given `timeout_secs`.
    pub fn with_faults_and_timeout(grace_secs: u64, timeout_secs: u64) -> World {
        Self::build(grace_secs, true, timeout_secs)
    }

    fn build(grace_secs: u64, faults: bool, timeout_secs: u64) -> World {
        let repo = TestRepo::new();
        let src = repo.dir.path().join("src-v1");
        bare_busybox(&src, "v1");
        repo.publish_at(&src, "/images/busybox");
        let (server, faulty, url) = if faults {
            let f = crate::faulty::Faulty::start(&repo.repo, &repo.fqrn);
            let url = f.url();
            (None, Some(f), url)
        } else {
            let s = Server::start(&[&repo.repo]);
            let url = s.url(&repo.fqrn);
            (Some(s), None, url)
        };
        let work = repo.dir.path().join("provisioner");
        std::fs::create_dir_all(&work).unwrap();
        // Containers run as other uids: the path to the mounts must be traversable.
        std::fs::set_permissions(
            repo.dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let config = work.join("provisioner.json");
        let csi_targets = repo.dir.path().join("csi-mounts");
        std::fs::create_dir_all(&csi_targets).unwrap();
        let c = serde_json::json!({
            "repositories": {
                (repo.fqrn.clone()): {
                    "servers": [url],
                    "keys": [repo.keys.join(format!("{}.pub", repo.fqrn))],
                }
            },
            "cache": work.join("cache"),
            "mount_root": work.join("images"),
            "appc_store_dir": work.join("appc"),
            "state": work.join("state.sqlite"),
            "control_socket": work.join("control.sock"),
            "csi_socket": work.join("csi.sock"),
            "grace_secs": grace_secs,
            "discovery_listen": "127.0.0.1:0",
            "csi_target_roots": [csi_targets],
            // Faults end in failures sooner.
            "timeout_secs": timeout_secs,
        });
        std::fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        let daemon = Some(Daemon::start(&config).unwrap_or_else(|e| panic!("{e}")));
        World {
            daemon,
            _server: server,
            faulty,
            repo,
            config,
            work,
        }
    }

    /// Stops the repository's server: from now on only the cache can answer.
    pub fn stop_server(&mut self) {
        self._server.take();
        self.faulty.take();
    }

    /// The daemon's appc simple-discovery prefix (`http://127.0.0.1:PORT/`), from its ready
    /// line: what the agent's `--appc_simple_discovery_uri_prefix` is set to.
    pub fn discovery_prefix(&self) -> String {
        let ready = &self.daemon.as_ref().expect("daemon running").ready;
        let at = ready.find("discovery ").expect("discovery is served") + "discovery ".len();
        ready[at..].split([' ', ',']).next().unwrap().to_string()
    }

    pub fn client(&self) -> ControlClient {
        ControlClient::new(&self.work.join("control.sock"))
    }

    pub fn publish_version(&self, version: &str) {
        let src = self.repo.dir.path().join(format!("src-{version}"));
        bare_busybox(&src, version);
        self.repo.publish_at(&src, "/images/busybox");
    }

    pub fn prepare(&self, root_hash: &str) -> Result<api::Image, CallError> {
        self.client().prepare(&api::PrepareImageRequest {
            fqrn: self.repo.fqrn.clone(),
            path: "/images/busybox".into(),
            root_hash: root_hash.into(),
            tag: String::new(),
        })
    }

    pub fn pin(&self, container: &str, image: &str) -> Result<api::Pin, CallError> {
        self.client().pin(&api::PinRequest {
            container_id: container.into(),
            image_id: image.into(),
            ..Default::default()
        })
    }

    pub fn unpin(&self, container: &str) -> bool {
        self.client()
            .unpin(&api::UnpinRequest {
                container_id: container.into(),
            })
            .unwrap()
            .was_pinned
    }

    /// Mounts of the daemon's images that this mount namespace sees.
    pub fn image_mounts(&self) -> usize {
        mounts_under(&self.work.join("images"))
    }

    pub fn appc_entries(&self) -> usize {
        std::fs::read_dir(self.work.join("appc/images"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        drop(self.daemon.take());
        // Whatever a failed test left (binds of images), so the temp dir can go.
        let root = self.work.to_string_lossy().into_owned();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut left: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| {
                m.starts_with(root.as_str())
                    || m.starts_with(self.repo.dir.path().to_str().unwrap())
            })
            .collect();
        left.reverse();
        for m in left {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// The daemon process; SIGTERM (bounded) when dropped.
pub struct Daemon {
    pub child: Child,
    /// Its "provisioner ready: …" line.
    pub ready: String,
}

impl Daemon {
    /// Starts `lazyroot provisioner --config` and waits (bounded) for it to be ready; on
    /// failure, what it printed on stderr.
    pub fn start(config: &Path) -> Result<Daemon, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lazyroot"));
        cmd.arg("provisioner").arg("--config").arg(config);
        let (mut child, ready) = spawn_until_ready(&mut cmd, "provisioner ready")?;
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut BufReader::new(stderr), &mut std::io::stderr());
        });
        Ok(Daemon { child, ready })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        terminate(&mut self.child, Duration::from_secs(30), || {})
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// Mounts below `dir` that this mount namespace sees.
pub fn mounts_under(dir: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| Path::new(m).starts_with(dir))
        })
        .count()
}

/// An OCI bundle running `args` from `rootfs`.
pub fn bundle(dir: &Path, rootfs: &Path, readonly: bool, args: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    crate::rootfs::run(Command::new("runc").arg("spec").current_dir(dir));
    let path = dir.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["root"] = serde_json::json!({"path": rootfs, "readonly": readonly});
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(args);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
}

/// `runc run` of a bundle: the command, to run or spawn.
pub fn runc(state: &Path, bundle: &Path, id: &str) -> Command {
    let mut c = Command::new("runc");
    c.arg("--root")
        .arg(state)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(format!("{id}-{}", std::process::id()));
    c
}

/// Bind-mounts `src` (following a symlink, as Mesos's bind backend does) at `dst`.
pub fn bind(src: &Path, dst: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).unwrap();
    }
    crate::rootfs::run(Command::new("mount").arg("--bind").arg(src).arg(dst));
}

pub fn umount(dst: &Path) {
    crate::rootfs::run(Command::new("umount").arg(dst));
}

/// What a process holds: descriptors other than sockets (files, `/dev/fuse`, databases),
/// sockets (pooled HTTP connections come and go), threads, resident KiB.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub files: usize,
    pub sockets: usize,
    pub threads: usize,
    pub rss_kib: u64,
}

pub fn footprint(pid: i32) -> Footprint {
    let (mut files, mut sockets) = (0, 0);
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        match std::fs::read_link(e.path()) {
            Ok(t) if t.to_string_lossy().starts_with("socket:") => sockets += 1,
            Ok(_) => files += 1,
            Err(_) => {} // closed meanwhile
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Footprint {
        files,
        sockets,
        threads: field("Threads:") as usize,
        rss_kib: field("VmRSS:"),
    }
}
