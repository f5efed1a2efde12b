//! What the restart tests share: a repository with a chunked file and a tree, a keeper
//! the test owns, `lazyroot mount` daemons started, killed and upgraded, and a reader that
//! runs the whole time and notes every failure and every stall.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::net::*;

/// The chunked file's size: 6 MiB in 64–256 KiB chunks.
pub const BIG: usize = 6 << 20;
/// Directories of the tree walked, and files in each.
pub const DIRS: usize = 8;
pub const FILES: usize = 16;

/// A published repository served over HTTP, with what it holds.
pub struct Fixture {
    pub repo: TestRepo,
    pub server: Server,
    pub big: Vec<u8>,
    /// What was published (the reader compares with it).
    pub src: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let repo = TestRepo::new();
        let src = repo.dir.path().join("src");
        let big = noise(13, BIG);
        write(&src.join("big"), &big);
        for d in 0..DIRS {
            for f in 0..FILES {
                write(
                    &src.join(format!("tree/d{d}/f{f}")),
                    format!("file {d}/{f}\n").as_bytes(),
                );
            }
        }
        let mut o = repo.options(&src);
        o.chunking = Some(SMALL_CHUNKS);
        lazyroot::publish::publish(&o, &lazyroot::publish::NoProgress).unwrap();
        let server = Server::start(&[&repo.repo]);
        std::fs::create_dir_all(repo.dir.path().join("mnt")).unwrap();
        Fixture {
            repo,
            server,
            big,
            src,
        }
    }

    pub fn mountpoint(&self) -> PathBuf {
        self.repo.dir.path().join("mnt")
    }

    /// `lazyroot mount` arguments for this repository, the test's keeper and cache.
    pub fn args(&self, keeper: &Keeper) -> Vec<String> {
        let key = self.repo.keys.join(format!("{}.pub", self.repo.fqrn));
        vec![
            "mount".into(),
            self.repo.fqrn.clone(),
            self.mountpoint().display().to_string(),
            "--server".into(),
            self.server.url(&self.repo.fqrn),
            "--key".into(),
            key.display().to_string(),
            "--cache".into(),
            self.repo.dir.path().join("cache").display().to_string(),
            "--keeper".into(),
            keeper.socket.display().to_string(),
        ]
    }
}

/// A keeper this test started (and kills on drop).
pub struct Keeper {
    pub socket: PathBuf,
    pub child: Child,
    _dir: tempfile::TempDir,
}

impl Keeper {
    /// A keeper aborting what no daemon takes over within `timeout`.
    pub fn start(timeout: Duration) -> Keeper {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("keeper.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_lazyroot"))
            .args(["keeper", "--socket"])
            .arg(&socket)
            .args(["--takeover-timeout", &timeout.as_secs().to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err()
            && !socket.exists()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        Keeper {
            socket,
            child,
            _dir: dir,
        }
    }

    /// SIGKILLs this keeper and waits (bounded by `within`) until the keeper a daemon
    /// starts in its place lists a key containing `holding`.
    pub fn kill_and_await_successor(&mut self, holding: &str, within: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + within;
        while !self.list().contains(holding) {
            assert!(
                Instant::now() < deadline,
                "no new keeper holds {holding}: {}",
                self.list()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The keys it holds (`lazyroot keeper --list`).
    pub fn list(&self) -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_lazyroot"))
            .args(["keeper", "--list", "--socket"])
            .arg(&self.socket)
            .output()
            .unwrap();
        stdout(&o) + &stderr(&o)
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where every daemon of a test writes its log (and the keepers they start theirs).
pub fn log_of(args: &[String]) -> PathBuf {
    Path::new(&args[2]).with_extension("log")
}

/// Starts a daemon with `args` and waits (bounded) for its "mounted" line; its standard
/// error is appended to [`log_of`] (a pipe nobody reads would stall its logging).
pub fn daemon(args: &[String]) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_of(args))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lazyroot"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    match first_line(&mut child).recv_timeout(Duration::from_secs(60)) {
        Ok(line) if line.starts_with("mounted") => (child, line),
        other => {
            let stacks = stacks(child.id());
            kill(&mut child);
            let log = std::fs::read_to_string(log_of(args)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "the daemon did not come up ({other:?}); its threads:\n{stacks}\nlog (last lines first):\n{}",
                tail.join("\n")
            );
        }
    }
}

/// Each thread of `pid` and where it waits in the kernel.
pub fn stacks(pid: u32) -> String {
    let mut out = String::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let wchan = std::fs::read_to_string(p.join("wchan")).unwrap_or_default();
        let stack = std::fs::read_to_string(p.join("stack")).unwrap_or_default();
        out.push_str(&format!("{} {wchan}\n{stack}", comm.trim()));
    }
    out
}

/// SIGTERM, then the exit status.
pub fn term(child: &mut Child) -> std::process::ExitStatus {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    child.wait().unwrap()
}

/// Asserts that the keeper's descriptors, threads and memory (`usage` at two moments)
/// did not grow.
pub fn assert_flat(before: (usize, usize, u64), after: (usize, usize, u64)) {
    assert_eq!(before.0, after.0, "keeper descriptors");
    assert_eq!(before.1, after.1, "keeper threads");
    assert!(
        after.2 < before.2 + 1024,
        "keeper memory grew: {} -> {} KiB",
        before.2,
        after.2
    );
}

/// SIGKILL and reap.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The `lazyroot mount` processes serving `mountpoint` now.
pub fn daemons_of(mountpoint: &Path) -> Vec<u32> {
    let want = mountpoint.display().to_string();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) == Some("mount") && args.contains(&want) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Not a zombie waiting to be reaped.
            if !stat.contains(") Z ") {
                pids.push(pid);
            }
        }
    }
    pids
}

/// One timed operation of the reader.
#[derive(Clone, Copy)]
pub struct Op {
    pub start: f64,
    pub took: Duration,
}

/// The task: scripts/restart-reader.sh (the restart benchmark runs it too).
fn reader_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/restart-reader.sh")
}

/// A task reading through the mount the whole time (a separate process, as tasks are),
/// until stopped; every failure and every operation's duration is kept.
pub struct Reader {
    child: Child,
    stop: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    /// `src`: the directory the repository was published from (the expected bytes).
    pub fn start(mnt: &Path, src: &Path) -> Reader {
        use std::io::{BufRead, BufReader};
        let stop = mnt.with_extension("stop");
        let _ = std::fs::remove_file(&stop);
        let mut child = Command::new("bash")
            .arg(reader_script())
            .arg(mnt)
            .arg(src)
            .arg(&stop)
            .env("BIG", BIG.to_string())
            .env("DIRS", DIRS.to_string())
            .env("FILES", FILES.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let thread = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Reader {
            child,
            stop,
            lines,
            thread: Some(thread),
        }
    }

    /// Stops it (bounded); the number of rounds it made.
    pub fn stop(&mut self) -> u64 {
        std::fs::write(&self.stop, b"").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the reader did not stop within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix("rounds "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// What went wrong so far.
    pub fn failures(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("FAIL"))
            .cloned()
            .collect()
    }

    fn ops(&self) -> Vec<Op> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let mut w = l.strip_prefix("op ")?.split(' ');
                let (a, b): (f64, f64) = (w.next()?.parse().ok()?, w.next()?.parse().ok()?);
                Some(Op {
                    start: a,
                    took: Duration::from_secs_f64((b - a).max(0.0)),
                })
            })
            .collect()
    }

    /// Whether an operation was under way at `at` (started before, ended after).
    pub fn in_flight(&self, at: f64) -> bool {
        self.ops()
            .iter()
            .any(|o| o.start <= at && at <= o.start + o.took.as_secs_f64())
    }

    /// The longest operation overlapping `[from, to]` (seconds since the epoch, as
    /// [`now`] gives).
    pub fn stall(&self, from: f64, to: f64) -> Duration {
        self.ops()
            .into_iter()
            .filter(|o| o.start + o.took.as_secs_f64() >= from && o.start <= to)
            .map(|o| o.took)
            .max()
            .unwrap_or_default()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, b"");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seconds since the epoch (the reader's clock: bash's `$EPOCHREALTIME`).
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Median and maximum.
pub fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], *v.last().unwrap())
}

/// Open descriptors, threads and resident KiB of process `pid`.
pub fn usage(pid: u32) -> (usize, usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    };
    (fds, field("Threads:") as usize, field("VmRSS:"))
}

/// How many mounts this namespace has at `mountpoint`.
pub fn mounts_at(mountpoint: &Path) -> usize {
    let want = mountpoint.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .count()
}
