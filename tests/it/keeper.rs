//! The keeper as a process (`lazyroot keeper`), driven through `KeeperClient` and raw
//! sockets. Pipes stand in for `/dev/fuse` and journal descriptors: a byte written to a
//! write end the keeper handed back shows the descriptor really travelled, and the read
//! end seeing end of file shows every write end (the keeper's too) was closed.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lazyroot::keeper::protocol::{self, Refusal, Reply, Request};
use lazyroot::keeper::{KeeperClient, KeeperError, KeptRef, KeyState};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    connect, getsockopt, recvmsg, sendmsg, socket, sockopt, AddressFamily, ControlMessage,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_lazyroot");

/// A `lazyroot keeper` child in a temporary directory; killed when dropped.
struct Keeper {
    child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Keeper {
    /// A keeper with a `takeover` s timeout that never exits when idle.
    fn start(takeover: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("keeper.sock");
        Self::start_at(
            dir,
            socket,
            &[
                "--takeover-timeout",
                &takeover.to_string(),
                "--idle-exit",
                "0",
            ],
        )
    }

    fn start_at(dir: tempfile::TempDir, socket: PathBuf, args: &[&str]) -> Self {
        let child = spawn_keeper(&socket, args);
        let k = Keeper { child, socket, dir };
        k.wait_ready();
        k
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while KeeperClient::connect(&self.socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the keeper did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client(&self) -> KeeperClient {
        KeeperClient::connect(&self.socket).unwrap()
    }

    /// A mount point that is not mounted (the keeper detaches only FUSE mounts).
    fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits up to `d` for the keeper to exit; its status, or `None` if it still runs.
    fn exited_within(&mut self, d: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if start.elapsed() >= d {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_keeper(socket: &Path, args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("keeper")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Inherited: its warnings show beside a failing test (and never fill a pipe).
        .spawn()
        .unwrap()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe().unwrap()
}

/// What the read end `r` yields within `d`: `Some(bytes)` (empty at end of file), or
/// `None` if nothing came.
fn read_within(r: &OwnedFd, d: Duration) -> Option<Vec<u8>> {
    let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(d.as_millis() as u64).unwrap();
    if poll(&mut fds, ms).unwrap() == 0 {
        return None;
    }
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(r, &mut buf).unwrap();
    Some(buf[..n].to_vec())
}

fn write_byte(w: &OwnedFd, b: u8) {
    assert_eq!(nix::unistd::write(w, &[b]).unwrap(), 1);
}

fn deposit(client: &KeeperClient, key: &str, mountpoint: &Path, fds: &[BorrowedFd<'_>]) {
    client
        .deposit(
            key,
            &KeptRef {
                mountpoint,
                fusectl: None,
                fds,
            },
        )
        .unwrap();
}

#[test]
fn an_orphan_is_claimed_with_working_duplicates() {
    let k = Keeper::start(60);
    let (r, w) = pipe();
    let (jr, jw) = pipe();
    let mp = k.mountpoint("a");
    let a = k.client();
    deposit(&a, "a", &mp, &[w.as_fd(), jw.as_fd()]);
    // The daemon dies: its connection closes, and with it its own copies.
    drop(a);
    drop((w, jw));
    let b = k.client();
    let listed = b.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "a");
    assert_eq!(listed[0].mountpoint, mp);
    assert_eq!(listed[0].fds, 2);
    assert!(
        matches!(listed[0].state, KeyState::Orphaned { abort_in } if abort_in > Duration::from_secs(50)),
        "{listed:?}"
    );
    // The keeper's copies keep the pipes open.
    assert_eq!(read_within(&r, Duration::from_millis(100)), None);

    let claimed = b
        .claim("a", Duration::ZERO)
        .unwrap()
        .expect("the key is held");
    assert!(claimed.orphaned);
    assert_eq!(claimed.mountpoint, mp);
    assert_eq!(claimed.fds.len(), 2);
    write_byte(&claimed.fds[0], b'f');
    write_byte(&claimed.fds[1], b'j');
    assert_eq!(read_within(&r, Duration::from_secs(5)), Some(b"f".to_vec()));
    assert_eq!(
        read_within(&jr, Duration::from_secs(5)),
        Some(b"j".to_vec())
    );
    assert_eq!(b.list().unwrap()[0].state, KeyState::Owned);
    // Its own key, claimed again: not an orphan. The keeper still holds its copies.
    drop(claimed);
    let again = b.claim("a", Duration::ZERO).unwrap().unwrap();
    assert!(!again.orphaned);
    assert_eq!(read_within(&r, Duration::from_millis(100)), None);
    assert!(b.claim("nothing", Duration::ZERO).unwrap().is_none());
}

#[test]
fn a_key_with_a_live_owner_is_busy() {
    let k = Keeper::start(60);
    let (_r, w) = pipe();
    let mp = k.mountpoint("a");
    let a = k.client();
    deposit(&a, "a", &mp, &[w.as_fd()]);
    let b = k.client();
    let start = Instant::now();
    let e = b.claim("a", Duration::from_millis(300)).unwrap_err();
    assert!(
        matches!(e, KeeperError::Busy { ref key } if key == "a"),
        "{e}"
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(start.elapsed() < Duration::from_secs(5));
    let e = b
        .deposit(
            "a",
            &KeptRef {
                mountpoint: &mp,
                fusectl: None,
                fds: &[w.as_fd()],
            },
        )
        .unwrap_err();
    assert!(matches!(e, KeeperError::Busy { .. }), "{e}");
    assert!(matches!(b.release("a"), Err(KeeperError::Busy { .. })));

    // The owner dies while a claim waits: the claim gets it.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(a);
    });
    let claimed = b.claim("a", Duration::from_secs(10)).unwrap().unwrap();
    assert!(claimed.orphaned);
    killer.join().unwrap();
}

#[test]
fn a_deposit_replaces_and_closes_the_old_descriptors() {
    let k = Keeper::start(60);
    let (r1, w1) = pipe();
    let (r2, w2) = pipe();
    let mp = k.mountpoint("a");
    let a = k.client();
    deposit(&a, "a", &mp, &[w1.as_fd()]);
    drop(w1);
    assert_eq!(read_within(&r1, Duration::from_millis(100)), None);
    deposit(&a, "a", &mp, &[w2.as_fd()]);
    drop(w2);
    assert_eq!(
        read_within(&r1, Duration::from_secs(5)),
        Some(vec![]),
        "old one closed"
    );
    assert_eq!(
        read_within(&r2, Duration::from_millis(100)),
        None,
        "new one held"
    );

    // An orphan is taken over by a deposit, too.
    drop(a);
    let (_r3, w3) = pipe();
    let b = k.client();
    deposit(&b, "a", &mp, &[w3.as_fd()]);
    assert_eq!(read_within(&r2, Duration::from_secs(5)), Some(vec![]));
    assert_eq!(b.list().unwrap()[0].state, KeyState::Owned);
}

#[test]
fn release_closes_and_forgets() {
    let k = Keeper::start(60);
    let (r, w) = pipe();
    let a = k.client();
    deposit(&a, "a", &k.mountpoint("a"), &[w.as_fd()]);
    drop(w);
    a.release("a").unwrap();
    assert_eq!(read_within(&r, Duration::from_secs(5)), Some(vec![]));
    assert!(a.list().unwrap().is_empty());
    a.release("a").unwrap();
}

#[test]
fn an_unclaimed_orphan_is_aborted_after_the_timeout() {
    let k = Keeper::start(1);
    let (r, w) = pipe();
    let (_r2, w2) = pipe();
    let a = k.client();
    deposit(&a, "gone", &k.mountpoint("gone"), &[w.as_fd()]);
    let alive = k.client();
    deposit(&alive, "alive", &k.mountpoint("alive"), &[w2.as_fd()]);
    drop(w);
    let start = Instant::now();
    drop(a);
    assert_eq!(read_within(&r, Duration::from_millis(500)), None);
    assert_eq!(read_within(&r, Duration::from_secs(5)), Some(vec![]));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "aborted after {waited:?}"
    );
    let listed = alive.list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].key, "alive");
}

#[test]
fn sigterm_aborts_orphans_and_leaves_live_owners_their_copies() {
    let mut k = Keeper::start(60);
    let (r_orphan, w_orphan) = pipe();
    let (r_live, w_live) = pipe();
    let gone = k.client();
    deposit(&gone, "gone", &k.mountpoint("gone"), &[w_orphan.as_fd()]);
    drop((gone, w_orphan));
    let live = k.client();
    deposit(&live, "live", &k.mountpoint("live"), &[w_live.as_fd()]);
    // Listing waits for the keeper to have seen the first client go.
    wait_until(|| {
        live.list()
            .unwrap()
            .iter()
            .any(|l| l.state != KeyState::Owned)
    });

    kill(k.pid(), Signal::SIGTERM).unwrap();
    let status = k
        .exited_within(Duration::from_secs(10))
        .expect("the keeper exits");
    assert!(status.success(), "{status:?}");
    assert_eq!(read_within(&r_orphan, Duration::from_secs(1)), Some(vec![]));
    // The live daemon's own descriptor still works.
    write_byte(&w_live, b'x');
    assert_eq!(
        read_within(&r_live, Duration::from_secs(1)),
        Some(b"x".to_vec())
    );
    assert!(live.keeper_gone());
    assert!(matches!(live.list(), Err(KeeperError::Disconnected)));
    assert!(!k.socket.exists(), "the socket file is removed");
}

#[test]
fn a_killed_keeper_is_noticed_through_the_client_descriptor() {
    let mut k = Keeper::start(60);
    let (r, w) = pipe();
    let a = k.client();
    deposit(&a, "a", &k.mountpoint("a"), &[w.as_fd()]);
    assert!(!a.keeper_gone());
    kill(k.pid(), Signal::SIGKILL).unwrap();
    k.exited_within(Duration::from_secs(10)).expect("killed");
    let mut fds = [PollFd::new(a.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::from(1000u16)).unwrap(), 1);
    assert!(fds[0].revents().unwrap().contains(PollFlags::POLLHUP));
    assert!(a.keeper_gone());
    assert!(matches!(a.list(), Err(KeeperError::Disconnected)));
    // The daemon's own copy is unaffected.
    write_byte(&w, b'y');
    assert_eq!(read_within(&r, Duration::from_secs(1)), Some(b"y".to_vec()));
    // The next keeper replaces the stale socket file.
    let socket = k.socket.clone();
    k.child = spawn_keeper(&socket, &["--idle-exit", "0"]);
    k.wait_ready();
    assert!(k.client().list().unwrap().is_empty());
}

#[test]
fn an_idle_keeper_exits() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: created 0700.
    let socket = dir.path().join("run/lazyroot/k.sock");
    let mut k = Keeper::start_at(dir, socket.clone(), &["--idle-exit", "1"]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&socket), 0o600);
    // Connected, or holding a key, it stays.
    let a = k.client();
    assert!(k.exited_within(Duration::from_millis(1500)).is_none());
    let (_r, w) = pipe();
    deposit(&a, "a", &k.mountpoint("a"), &[w.as_fd()]);
    a.release("a").unwrap();
    drop(a);
    let status = k.exited_within(Duration::from_secs(10)).expect("idle exit");
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists());
}

#[test]
fn a_second_keeper_on_the_same_socket_is_refused() {
    let k = Keeper::start(60);
    let out = Command::new(BIN)
        .args(["keeper", "--idle-exit", "0", "--socket"])
        .arg(&k.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another keeper already serves"), "{err}");
    assert!(
        k.client().list().unwrap().is_empty(),
        "the first still serves"
    );
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("k.sock");
    // Bound and closed: the file stays, nothing accepts.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let k = Keeper::start_at(dir, socket, &["--idle-exit", "0"]);
    assert!(k.client().list().unwrap().is_empty());
}

#[test]
fn connect_or_spawn_starts_a_detached_keeper() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("k.sock");
    let a = KeeperClient::connect_or_spawn_with(Path::new(BIN), &socket, Duration::from_secs(5))
        .unwrap();
    let pid = getsockopt(&a.as_fd(), sockopt::PeerCredentials)
        .unwrap()
        .pid();
    let pid = Pid::from_raw(pid);
    let stop = scopeguard(pid);
    assert_eq!(
        nix::unistd::getpgid(Some(pid)).unwrap(),
        pid,
        "its own group"
    );
    // A second caller finds it.
    let b = KeeperClient::connect_or_spawn_with(Path::new(BIN), &socket, Duration::from_secs(5))
        .unwrap();
    let pid_b = getsockopt(&b.as_fd(), sockopt::PeerCredentials)
        .unwrap()
        .pid();
    assert_eq!(pid_b, pid.as_raw());
    assert!(a.list().unwrap().is_empty());
    drop(stop);
}

/// Terminates `pid` when dropped (even when the test fails).
fn scopeguard(pid: Pid) -> impl Drop {
    struct Stop(Pid);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGTERM);
        }
    }
    Stop(pid)
}

/// A raw SEQPACKET connection to the keeper, for what `KeeperClient` never sends.
fn raw(path: &Path) -> OwnedFd {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    let t = nix::sys::time::TimeVal::new(10, 0);
    nix::sys::socket::setsockopt(&fd, sockopt::ReceiveTimeout, &t).unwrap();
    fd
}

fn raw_request(fd: &OwnedFd, body: &[u8], fds: &[RawFd]) -> Reply {
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(
        fd.as_raw_fd(),
        &[IoSlice::new(body)],
        cmsgs,
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    let mut buf = vec![0u8; protocol::MAX_MESSAGE];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let n = recvmsg::<()>(fd.as_raw_fd(), &mut iov, None, MsgFlags::empty())
        .unwrap()
        .bytes;
    protocol::decode(&buf[..n]).unwrap()
}

fn refusal(reply: Reply) -> Refusal {
    match reply {
        Reply::Refused { reason, .. } => reason,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn messages_beyond_the_bounds_are_refused_and_their_descriptors_closed() {
    let k = Keeper::start(60);
    let fd = raw(&k.socket);
    let deposit = protocol::encode(&Request::Deposit {
        key: "many".into(),
        mountpoint: k.mountpoint("many"),
        fusectl: None,
    })
    .unwrap();
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..9).map(|_| pipe()).collect();
    let writers: Vec<RawFd> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
    assert_eq!(
        refusal(raw_request(&fd, &deposit, &writers)),
        Refusal::TooManyFds
    );
    let readers: Vec<OwnedFd> = pipes.into_iter().map(|(r, _w)| r).collect();
    for r in &readers {
        assert_eq!(
            read_within(r, Duration::from_secs(5)),
            Some(vec![]),
            "closed by the keeper"
        );
    }

    // Oversize: the keeper sees a truncated packet.
    let mut big = b"{\"op\":\"claim\",\"key\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', protocol::MAX_MESSAGE + 1000));
    big.extend(b"\"}");
    let (r, w) = pipe();
    assert_eq!(
        refusal(raw_request(&fd, &big, &[w.as_raw_fd()])),
        Refusal::TooLarge
    );
    drop(w);
    assert_eq!(read_within(&r, Duration::from_secs(5)), Some(vec![]));

    assert_eq!(
        refusal(raw_request(&fd, b"{not json", &[])),
        Refusal::Malformed
    );
    let claim = protocol::encode(&Request::Claim { key: "k".into() }).unwrap();
    let (r, w) = pipe();
    assert_eq!(
        refusal(raw_request(&fd, &claim, &[w.as_raw_fd()])),
        Refusal::UnexpectedFds
    );
    drop(w);
    assert_eq!(read_within(&r, Duration::from_secs(5)), Some(vec![]));
    let empty = protocol::encode(&Request::Claim { key: String::new() }).unwrap();
    assert_eq!(refusal(raw_request(&fd, &empty, &[])), Refusal::BadKey);
    let relative = protocol::encode(&Request::Deposit {
        key: "rel".into(),
        mountpoint: "relative".into(),
        fusectl: None,
    })
    .unwrap();
    assert_eq!(
        refusal(raw_request(&fd, &relative, &[])),
        Refusal::BadMountpoint
    );

    // The same connection, and others, are still served.
    let list = protocol::encode(&Request::List { after: None }).unwrap();
    assert_eq!(
        raw_request(&fd, &list, &[]),
        Reply::Listed {
            entries: vec![],
            more: false
        }
    );
    assert!(k.client().list().unwrap().is_empty());
}

#[test]
fn a_client_refuses_too_many_descriptors_itself() {
    let k = Keeper::start(60);
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..9).map(|_| pipe()).collect();
    let fds: Vec<BorrowedFd<'_>> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
    let mp = k.mountpoint("a");
    let e = k
        .client()
        .deposit(
            "a",
            &KeptRef {
                mountpoint: &mp,
                fusectl: None,
                fds: &fds,
            },
        )
        .unwrap_err();
    assert!(
        matches!(e, KeeperError::TooManyFds { count: 9, max: 8 }),
        "{e}"
    );
}

#[test]
fn listing_pages_through_many_keys() {
    let k = Keeper::start(60);
    let (_r, w) = pipe();
    let a = k.client();
    // Long keys: a few hundred of them fill more than one 64 KiB page.
    let keys: Vec<String> = (0..300)
        .map(|i| format!("{i:04}-{}", "k".repeat(400)))
        .collect();
    for key in &keys {
        deposit(&a, key, &k.mountpoint("m"), &[w.as_fd()]);
    }
    let listed: Vec<String> = a.list().unwrap().into_iter().map(|l| l.key).collect();
    assert_eq!(listed, keys);
}

#[test]
fn requests_from_several_threads_each_get_their_reply() {
    let k = Keeper::start(60);
    let a = std::sync::Arc::new(k.client());
    let mp = k.mountpoint("m");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (a, mp) = (a.clone(), mp.clone());
            std::thread::spawn(move || {
                let (r, w) = pipe();
                for i in 0..50 {
                    let key = format!("t{t}-{i}");
                    deposit(&a, &key, &mp, &[w.as_fd()]);
                    let c = a.claim(&key, Duration::ZERO).unwrap().unwrap();
                    assert!(!c.orphaned);
                    write_byte(&c.fds[0], t);
                    assert_eq!(read_within(&r, Duration::from_secs(5)), Some(vec![t]));
                    a.release(&key).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(a.list().unwrap().is_empty());
}

#[test]
fn list_cli_prints_the_keys() {
    let k = Keeper::start(60);
    let (_r, w) = pipe();
    let a = k.client();
    deposit(&a, "shown", &k.mountpoint("shown"), &[w.as_fd()]);
    let out = Command::new(BIN)
        .args(["keeper", "--list", "--socket"])
        .arg(&k.socket)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mp = k.mountpoint("shown");
    assert_eq!(
        text.trim_end(),
        format!("shown\towned\t-\t1\t-\t{}", mp.display())
    );
}

/// Waits (up to 10 s) until `cond` holds.
fn wait_until(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "condition not reached"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
