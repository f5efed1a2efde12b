//! Test infrastructure for the network side: a lazyroot server on 127.0.0.1 port 0 in a
//! background runtime, nginx and squid from Debian with configs of our own, and a mounted
//! repository (the built `lazyroot mount`) that unmounts itself when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A lazyroot server for some repository directories; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(repos: &[&Path]) -> Self {
        let served: Vec<_> = repos
            .iter()
            .map(|d| lazyroot::server::discover(d).unwrap())
            .collect();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let _ = lazyroot::server::run(listener, served, async move {
                    let _ = rx.await;
                })
                .await;
            });
        });
        Server {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// The base URL of repository `fqrn`.
    pub fn url(&self, fqrn: &str) -> String {
        format!("http://{}/cvmfs/{fqrn}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A free port on 127.0.0.1 for daemons that cannot bind port 0 themselves (nginx, squid).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// nginx serving `root` (which holds `cvmfs/<fqrn>/…` or is mapped with an alias).
pub struct Nginx {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Nginx {
    /// Serves the repository directory `repo` at `/cvmfs/<fqrn>/`, with the README's rule
    /// that keeps publisher-private files (`.lazyroot/`, `data/txn/`) from readers.
    pub fn start(fqrn: &str, repo: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let deny = readme_nginx_deny_rule();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
             events {{ worker_connections 256; }}
             http {{ access_log {d}/access.log; client_body_temp_path {d}; proxy_temp_path {d};
               fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
               server {{ listen 127.0.0.1:{port}; {deny} location /cvmfs/{fqrn}/ {{ alias {r}/; }} }} }}",
            d = dir.path().display(),
            r = repo.display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx) must be installed");
        wait_for_port(port, "nginx");
        Nginx { port, dir, child }
    }

    pub fn url(&self, fqrn: &str) -> String {
        format!("http://127.0.0.1:{}/cvmfs/{fqrn}", self.port)
    }
}

/// The nginx rule the README gives for serving a repository directory: the one line of its
/// `nginx` block that starts with `location ~`. Tests use exactly what operators are told.
pub fn readme_nginx_deny_rule() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("location ~ ") && l.contains(".lazyroot"))
        .expect("the README gives the nginx rule that hides .lazyroot/ and data/txn/")
        .to_string()
}

/// The status code of a plain `GET target` on 127.0.0.1:`port` (bounded in time).
pub fn get_status(port: u16, target: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// squid as a forward proxy on 127.0.0.1, caching in memory.
pub struct Squid {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Squid {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // squid drops root for the `proxy` user, which must be able to write its logs here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let port = free_port();

        let d = dir.path().display();
        // Debian's config denies to_localhost; this one allows exactly loopback.
        let conf = format!(
            "http_port 127.0.0.1:{port}\n\
             acl localnet src 127.0.0.0/8\n\
             http_access allow localnet\n\
             http_access deny all\n\
             cache_mem 64 MB\n\
             maximum_object_size_in_memory 16 MB\n\
             pid_filename {d}/squid.pid\n\
             access_log stdio:{d}/access.log\n\
             cache_log {d}/cache.log\n\
             coredump_dir {d}\n\
             shutdown_lifetime 0 seconds\n"
        );
        std::fs::write(dir.path().join("squid.conf"), conf).unwrap();
        let child = Command::new("squid")
            .args(["-N", "-f"])
            .arg(dir.path().join("squid.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squid (Debian package squid) must be installed");
        wait_for_port(port, "squid");
        Squid { port, dir, child }
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `lazyroot mount`; SIGTERM and wait on drop (and a lazy umount if it hung).
pub struct Mount {
    pub dir: PathBuf,
    child: Child,
    pub line: String,
}

impl Mount {
    /// Mounts and waits (bounded) for the "mounted" line; panics with stderr on failure.
    pub fn start(fqrn: &str, dir: &Path, args: &[&str]) -> Self {
        Self::try_start(fqrn, dir, args).unwrap_or_else(|e| panic!("mount failed: {e}"))
    }

    /// Mounts; on failure returns what the command printed on stderr.
    pub fn try_start(fqrn: &str, dir: &Path, args: &[&str]) -> Result<Self, String> {
        std::fs::create_dir_all(dir).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lazyroot"));
        cmd.arg("mount").arg(fqrn).arg(dir).args(args);
        let (child, line) = spawn_until_ready(&mut cmd, "mounted")?;
        Ok(Mount {
            dir: dir.to_path_buf(),
            child,
            line,
        })
    }

    /// The `lazyroot mount` process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        terminate(&mut self.child, Duration::from_secs(20), || {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        })
    }
}

/// Starts `cmd` and waits (bounded) for its first line of output to start with `ready`;
/// then the child (its stdout drained from now on, so it never blocks on a full pipe) and
/// that line. Otherwise the child is killed and what it said on stderr is the error.
pub fn spawn_until_ready(cmd: &mut Command, ready: &str) -> Result<(Child, String), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    match first_line(&mut child).recv_timeout(Duration::from_secs(60)) {
        Ok(line) if line.starts_with(ready) => Ok((child, line)),
        _ => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

/// The first line `child` writes on its piped standard output (the rest is drained from
/// then on, so that it never blocks on a full pipe).
pub fn first_line(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    rx
}

/// SIGTERM, then waits (bounded) for the exit; past the deadline SIGKILL, after `on_kill`.
pub fn terminate(
    child: &mut Child,
    within: Duration,
    on_kill: impl FnOnce(),
) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            on_kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

/// Whether `dir` is a mount point right now.
pub fn is_mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.canonicalize().unwrap_or(dir.to_path_buf());
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(d.to_str().unwrap()))
}

/// A repository served by lazyroot and mounted from it. Fields drop in order: unmount
/// first, then stop the server.
pub struct Mounted {
    pub mount: Mount,
    pub server: Server,
}

/// Serves `repo` and mounts it at `<repo dir>/<name>` with the cache `<repo dir>/<name>.cache`.
pub fn serve_and_mount(repo: &crate::common::TestRepo, name: &str, extra: &[&str]) -> Mounted {
    let server = Server::start(&[&repo.repo]);
    let mount = mount_from(
        repo,
        &server.url(&repo.fqrn),
        name,
        &format!("{name}.cache"),
        extra,
    )
    .unwrap_or_else(|e| panic!("mount failed: {e}"));
    Mounted { mount, server }
}

/// Mounts `repo` from `url` at `<repo dir>/<name>` with the cache `<repo dir>/<cache>`;
/// on failure, what the command said.
pub fn mount_from(
    repo: &crate::common::TestRepo,
    url: &str,
    name: &str,
    cache: &str,
    extra: &[&str],
) -> Result<Mount, String> {
    let mut args = client_args(repo, url, cache);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Mount::try_start(&repo.fqrn, &repo.dir.path().join(name), &args)
}

/// `--server URL --key <repo key> --cache <repo dir>/<cache>`: what every test mount passes.
fn client_args(repo: &crate::common::TestRepo, url: &str, cache: &str) -> Vec<String> {
    let key = repo.keys.join(format!("{}.pub", repo.fqrn));
    let cache = repo.dir.path().join(cache);
    [
        "--server",
        url,
        "--key",
        &key.display().to_string(),
        "--cache",
        &cache.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}
