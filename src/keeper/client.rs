//! A daemon's connection to the keeper: deposit, claim, release, list.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, setsockopt, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;

use super::error::KeeperError;
use super::protocol::{decode, encode, Listed, Reply, Request, MAX_FDS};
use super::{wire, Claimed, KeptRef};

/// How long one request may take before the keeper is taken for stuck. The keeper
/// answers from memory; seconds mean it is stopped (SIGSTOP) or the host is in trouble.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`KeeperClient::connect_or_spawn`] waits for a keeper it started.
const SPAWN_WAIT: Duration = Duration::from_secs(5);

/// How often a claim of a key owned by a live client asks again.
const CLAIM_RETRY: Duration = Duration::from_millis(10);

/// A connection to the keeper. The keys this client deposits or claims are owned by this
/// connection: when it closes (the client is dropped, or its process dies), they become
/// orphaned.
///
/// `Send + Sync`: requests from several threads are serialized, and each gets exactly its
/// own reply.
#[derive(Debug)]
pub struct KeeperClient {
    socket: OwnedFd,
    /// Held for a whole request and its reply. `true` once a request failed midway: its
    /// reply might still come and be taken for the next one's, so the connection is done.
    broken: Mutex<bool>,
}

impl KeeperClient {
    /// Connects to the keeper at `socket`.
    pub fn connect(socket: &Path) -> Result<Self, KeeperError> {
        let connect_error = |source| KeeperError::Connect {
            socket: socket.to_owned(),
            source,
        };
        let fd = nix::sys::socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(connect_error)?;
        let addr = UnixAddr::new(socket).map_err(connect_error)?;
        connect(fd.as_raw_fd(), &addr).map_err(connect_error)?;
        let timeout = TimeVal::new(REQUEST_TIMEOUT.as_secs() as _, 0);
        let io = |source| KeeperError::Io {
            what: "setting a timeout",
            source,
        };
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(io)?;
        setsockopt(&fd, sockopt::SendTimeout, &timeout).map_err(io)?;
        Ok(KeeperClient {
            socket: fd,
            broken: Mutex::new(false),
        })
    }

    /// Connects, or when nothing listens at `socket` (no file, or a stale one), starts
    /// this program as `keeper --socket <socket> --takeover-timeout <secs>` and waits up
    /// to 5 s until it accepts.
    ///
    /// The keeper is started in a process group of its own, so that a Ctrl-C meant for
    /// the daemon's group does not reach it; its standard input and output are
    /// `/dev/null` and its standard error is the daemon's, so that its warnings (which
    /// mount was orphaned, which aborted) land in the same log or journal. A caller that
    /// reads the daemon's standard error from a pipe to its end should know that the
    /// keeper holds that pipe open too, until it exits. The keeper's exit is reaped by a
    /// thread here, so it leaves no zombie. If several daemons start a keeper at once,
    /// one wins the socket and the others exit; every caller connects to the winner.
    pub fn connect_or_spawn(
        socket: &Path,
        takeover_timeout: Duration,
    ) -> Result<Self, KeeperError> {
        let exe = std::env::current_exe().map_err(|source| KeeperError::Spawn {
            exe: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        Self::connect_or_spawn_with(&exe, socket, takeover_timeout)
    }

    /// [`KeeperClient::connect_or_spawn`] with `program` (a `lazyroot` binary) as the
    /// keeper to start, for callers that are not `lazyroot` themselves (tests, tools).
    pub fn connect_or_spawn_with(
        program: &Path,
        socket: &Path,
        takeover_timeout: Duration,
    ) -> Result<Self, KeeperError> {
        match Self::connect(socket) {
            Err(KeeperError::Connect {
                source: Errno::ENOENT | Errno::ECONNREFUSED,
                ..
            }) => {}
            other => return other,
        }
        let exe = program.to_owned();
        // The CLI takes whole seconds; rounding up never aborts earlier than asked.
        let secs = takeover_timeout.as_secs() + u64::from(takeover_timeout.subsec_nanos() > 0);
        let mut child = Command::new(&exe)
            .arg("keeper")
            .arg("--socket")
            .arg(socket)
            .arg("--takeover-timeout")
            .arg(secs.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| KeeperError::Spawn { exe, source })?;
        tracing::info!(
            "started a keeper (pid {}) at {}",
            child.id(),
            socket.display()
        );
        std::thread::spawn(move || child.wait());
        let start = Instant::now();
        loop {
            match Self::connect(socket) {
                Err(KeeperError::Connect {
                    source: source @ (Errno::ENOENT | Errno::ECONNREFUSED),
                    ..
                }) => {
                    if start.elapsed() >= SPAWN_WAIT {
                        return Err(KeeperError::SpawnTimeout {
                            socket: socket.to_owned(),
                            waited: SPAWN_WAIT,
                            source,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Keeps `kept` under `key`, owned by this connection. A key this client owns is
    /// replaced (the keeper closes the old descriptors only after storing the new: how a
    /// compacted journal is swapped in atomically); so is an orphaned key (the caller took
    /// it over). A key owned by another live client is refused with
    /// [`KeeperError::Busy`].
    pub fn deposit(&self, key: &str, kept: &KeptRef<'_>) -> Result<(), KeeperError> {
        if kept.fds.len() > MAX_FDS {
            return Err(KeeperError::TooManyFds {
                count: kept.fds.len(),
                max: MAX_FDS,
            });
        }
        let request = Request::Deposit {
            key: key.to_owned(),
            mountpoint: kept.mountpoint.to_owned(),
            fusectl: kept.fusectl,
        };
        let (reply, fds) = self.request(&request, kept.fds)?;
        expect_no_fds(&fds)?;
        match reply {
            Reply::Done => Ok(()),
            other => Err(unexpected(key, other)),
        }
    }

    /// Takes over `key`. If it is orphaned, this client becomes its owner and gets
    /// duplicates of its descriptors (the keeper keeps its own), with `orphaned` true; if
    /// this client already owns it, the same with `orphaned` false. If another live client
    /// owns it, asks again every few milliseconds until `wait` has passed, then
    /// [`KeeperError::Busy`]. No such key: `Ok(None)`.
    pub fn claim(&self, key: &str, wait: Duration) -> Result<Option<Claimed>, KeeperError> {
        let start = Instant::now();
        let request = Request::Claim {
            key: key.to_owned(),
        };
        loop {
            let (reply, fds) = self.request(&request, &[])?;
            match reply {
                Reply::Claimed {
                    mountpoint,
                    fusectl,
                    orphaned,
                } => {
                    return Ok(Some(Claimed {
                        mountpoint,
                        fusectl,
                        fds,
                        orphaned,
                    }))
                }
                Reply::Missing => return expect_no_fds(&fds).map(|()| None),
                Reply::Busy => {
                    expect_no_fds(&fds)?;
                    let waited = start.elapsed();
                    if waited >= wait {
                        return Err(KeeperError::Busy {
                            key: key.to_owned(),
                        });
                    }
                    std::thread::sleep(CLAIM_RETRY.min(wait - waited));
                }
                other => return Err(unexpected(key, other)),
            }
        }
    }

    /// The daemon unmounted cleanly: the keeper closes its copies and forgets `key`. A key
    /// the keeper does not hold is no error; one owned by another live client is
    /// [`KeeperError::Busy`].
    pub fn release(&self, key: &str) -> Result<(), KeeperError> {
        let request = Request::Release {
            key: key.to_owned(),
        };
        let (reply, fds) = self.request(&request, &[])?;
        expect_no_fds(&fds)?;
        match reply {
            Reply::Done => Ok(()),
            other => Err(unexpected(key, other)),
        }
    }

    /// Every key the keeper holds, in key order, with its state.
    pub fn list(&self) -> Result<Vec<Listed>, KeeperError> {
        let mut all: Vec<Listed> = Vec::new();
        loop {
            let request = Request::List {
                after: all.last().map(|l| l.key.clone()),
            };
            let (reply, fds) = self.request(&request, &[])?;
            expect_no_fds(&fds)?;
            match reply {
                Reply::Listed { entries, more } => {
                    let empty = entries.is_empty();
                    all.extend(entries);
                    if !more || empty {
                        return Ok(all);
                    }
                }
                other => return Err(unexpected("", other)),
            }
        }
    }

    /// The connection's socket: it polls readable with `POLLHUP` when the keeper goes
    /// away, so that a daemon can notice, start a new keeper and deposit again. (While a
    /// request is in flight its reply makes it readable too: watch for `POLLHUP`, or ask
    /// [`KeeperClient::keeper_gone`].) Do not read from or write to it.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Whether the keeper has closed this connection (it exited or was killed).
    pub fn keeper_gone(&self) -> bool {
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
            Err(_) => false,
        }
    }

    /// Sends one request and waits for its one reply.
    fn request(
        &self,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(Reply, Vec<OwnedFd>), KeeperError> {
        let body = encode(request)?;
        let mut broken = self.broken.lock().unwrap_or_else(|e| e.into_inner());
        if *broken {
            return Err(KeeperError::Disconnected);
        }
        // Until the reply is in, a failure leaves the connection's state unknown.
        *broken = true;
        match wire::send(self.socket.as_fd(), &body, fds, MsgFlags::empty()) {
            Ok(()) => {}
            Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(KeeperError::Disconnected),
            Err(source) => {
                return Err(KeeperError::Io {
                    what: "sending",
                    source,
                })
            }
        }
        let packet = loop {
            match wire::recv(self.socket.as_fd(), MsgFlags::empty()) {
                Ok(Some(p)) => break p,
                Ok(None) | Err(Errno::ECONNRESET) => return Err(KeeperError::Disconnected),
                Err(Errno::EINTR) => continue,
                Err(source) => {
                    return Err(KeeperError::Io {
                        what: "receiving",
                        source,
                    })
                }
            }
        };
        if packet.truncated || packet.fds_lost {
            return Err(KeeperError::Protocol(
                "a reply larger than the limit, or with descriptors that could not be received",
            ));
        }
        let reply = decode(&packet.body)?;
        *broken = false;
        Ok((reply, packet.fds))
    }
}

/// Only a claim's answer carries descriptors (dropping them here would close them anyway;
/// this says the keeper is not the expected one).
fn expect_no_fds(fds: &[OwnedFd]) -> Result<(), KeeperError> {
    if fds.is_empty() {
        Ok(())
    } else {
        Err(KeeperError::Protocol(
            "descriptors came with a reply that takes none",
        ))
    }
}

/// The error for a reply that is not a success of the request made.
fn unexpected(key: &str, reply: Reply) -> KeeperError {
    match reply {
        Reply::Busy => KeeperError::Busy {
            key: key.to_owned(),
        },
        Reply::Refused { reason, message } => KeeperError::Refused { reason, message },
        _ => KeeperError::Protocol("a reply that does not answer the request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<KeeperClient>();
    }
}
